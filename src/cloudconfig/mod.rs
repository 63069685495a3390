//! `#cloud-config` files applied to a container through the LXD API, without cloud-init in the
//! guest.
//!
//! The supported subset: `packages`, `write_files` (encodings plain, b64/base64,
//! gzip+b64/gz+b64/gzip+base64; `owner`, `permissions`, `append`, `defer`), `users`, `timezone`
//! and `runcmd`. Unknown keys are errors. Work goes in three stages:
//!
//! 1. [`parse_file`] every file (all of them before anything is applied);
//! 2. [`plan`] them for an [`OsType`] into ordered [`Step`]s: per file, non-deferred
//!    `write_files`, `packages`, `users`, `timezone`, deferred `write_files`, `runcmd`;
//! 3. [`apply`] the plan through a [`Guest`] (one container), converging: existing users are
//!    updated, appends are not repeated, authorized keys are merged.
//!
//! A failed command stops the apply with an error that shows its argument vector, exit code
//! and stderr.

mod accounts;
mod apply;
mod lxd_guest;

mod parse;
mod plan;

use std::future::Future;
use std::path::PathBuf;

pub use crate::input::OsType;
pub use accounts::{AccountFile, GroupEntry, PasswdEntry};
pub use apply::{apply, detect_ostype, Outcome};
pub use lxd_guest::{LxdGuest, DEFAULT_EXEC_TIMEOUT};

pub use parse::{
    parse_file, parse_str, valid_account_name, CloudConfig, User, WriteFile, MAX_CONTENT, SUDO_ALL,
};
pub use plan::{display_argv, plan, Action, Plan, Step};

use crate::input::ConfigError;

/// What a command run in the container returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A failure of the transport to the container (not a command's non-zero exit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GuestError(pub String);

/// One container, as cloud-config needs it.
pub trait Guest {
    /// The content of a file; `None` if it does not exist.
    fn read_file(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, GuestError>> + Send;
    /// Create or overwrite a file with this owner and mode. The parent must exist.
    fn write_file(
        &self,
        path: &str,
        content: &[u8],
        uid: u32,
        gid: u32,
        mode: u32,
    ) -> impl Future<Output = Result<(), GuestError>> + Send;
    /// Create a directory and its missing parents with this owner and mode; existing
    /// directories are left as they are.
    fn mkdir_p(
        &self,
        path: &str,
        uid: u32,
        gid: u32,
        mode: u32,
    ) -> impl Future<Output = Result<(), GuestError>> + Send;
    /// Run an argument vector as root and wait for it.
    fn exec(&self, argv: &[String]) -> impl Future<Output = Result<ExecOutput, GuestError>> + Send;
}

/// A problem with cloud-config: in a file, or while applying it.
#[derive(Debug, thiserror::Error)]
pub enum CloudConfigError {
    /// A problem in the files themselves (syntax, keys, values, what the OS type cannot do).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A command exited non-zero.
    #[error("{}: {key}: command `{}` exited with {exit_code}{}", file.display(), display_argv(argv), stderr_text(stderr))]
    Command {
        file: PathBuf,
        key: String,
        argv: Vec<String>,
        exit_code: i32,
        stderr: String,
    },
    /// The container refused a step (missing owner, missing zoneinfo, ...).
    #[error("{}: {key}: {message}", file.display())]
    Apply {
        file: PathBuf,
        key: String,
        message: String,
    },
    /// The transport to the container failed.
    #[error("{}: {key}: {source}", file.display())]
    Guest {
        file: PathBuf,
        key: String,
        #[source]
        source: GuestError,
    },
}

fn stderr_text(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

/// Every problem of an instance's cloud-config files, in order: each parsed, then (with an OS
/// type) planned, so that what the OS cannot do is found before a rebuild begins. The checker
/// `config` is given ([`crate::config::LoadOptions::cloud_config_check`]).
pub fn check_files(files: &[PathBuf], ostype: Option<OsType>) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    for f in files {
        match parse::parse_file(f) {
            Ok(c) => parsed.push(c),
            Err(e) => errors.extend(e.into_list()),
        }
    }
    if let (Some(os), true) = (ostype, errors.is_empty()) {
        if let Err(e) = plan(&parsed, Some(os)) {
            errors.extend(e.into_list());
        }
    }
    errors
}

/// Parses the files, in order; fails with every problem found.
pub fn parse_files(files: &[PathBuf]) -> Result<Vec<CloudConfig>, ConfigError> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match parse_file(f) {
            Ok(c) => out.push(c),
            Err(e) => errors.extend(e.into_list()),
        }
    }
    match ConfigError::from_list(errors) {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Parse, plan and apply files to one container. The OS type is detected from the container
/// when not given.
pub async fn apply_files<G: Guest + Sync>(
    guest: &G,
    files: &[PathBuf],
    ostype: Option<OsType>,
) -> Result<Vec<Outcome>, CloudConfigError> {
    let configs = parse_files(files)?;
    let os = match ostype {
        Some(o) => o,
        None => detect_ostype(guest)
            .await
            .map_err(|source| CloudConfigError::Guest {
                file: files.first().cloned().unwrap_or_default(),
                key: "(OS type detection)".into(),
                source,
            })?,
    };
    let plan = plan(&configs, Some(os))?;
    apply(guest, &plan).await
}

#[cfg(test)]
mod tests;
