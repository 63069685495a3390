//! Instance config files: the `#lxdops` / `#lxops-v1` YAML format, read with its includes and
//! properties into a [`ResolvedInstance`], plain data that knows nothing of LXD.
//!
//! A config file describes one instance (its name is the file name without extension, or
//! `--name`): the template it is copied from (`origin`) or its `image`, its profiles, its
//! external filesystems (ZFS datasets, btrfs subvolumes, plain directories) with the disk
//! devices in them, and the cloud-config files applied to it.
//!
//! * [`load`] resolves config files and fails with every problem found;
//! * [`verify`] returns every problem of every file (`reroot config verify`);
//! * [`properties`] lists each instance's effective properties and where they come from.
//!
//! Rules worth knowing (see the README for the whole format):
//! * includes are merged post-order and the including file wins everywhere, `ostype` and
//!   `image` included (lxops let an included file override those);
//! * property precedence: built-ins > `-P` > config `properties` > global property files;
//!   include paths see only `(instance)`, `-P` and the global properties, cloud-config file paths
//!   see every property; either kind of path is dropped when it names an undefined or empty
//!   property;
//! * the source instance of `device-template` / `device-origin` is resolved with `(instance)`
//!   = its own name and the same `-P` and global properties as the instance (lxops hid `-P`
//!   from it, so a root given as `-P fsroot=...` could not resolve the template's devices);
//! * unknown keys are errors, with a suggestion for near misses;
//! * the instance's own profile is `(instance).reroot` unless `profile-pattern` says otherwise.

mod file;
mod merge;
mod properties;
mod resolve;
mod types;

use std::path::{Path, PathBuf};

pub use crate::input::ConfigError;
pub use properties::{global_properties, parse_property_arg, set_property, GlobalProperty};
pub use resolve::{check_instance_name, DEFAULT_STOP_TIMEOUT, DEFAULT_WAIT_READY, PROFILE_SUFFIX};
pub use types::*;

/// Options that change how config files resolve (the command-line flags).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--name`: the instance name, only with a single config file.
    pub name: Option<String>,
    /// `-P key=value`, in order (a later one wins).
    pub properties: Vec<(String, String)>,
    /// `--properties FILE`: a global property file that wins over the others.
    pub properties_file: Option<PathBuf>,
    /// `--project`: overrides the config's `project`.
    pub project: Option<String>,
    /// Directory of `properties.yaml` and `properties.d/` (see [`default_config_dir`]);
    /// `None` reads no global property files besides `properties_file`.
    pub config_dir: Option<PathBuf>,
    /// Checks an instance's cloud-config files (in order) for its OS type, if known: every
    /// problem found. Given by the caller (`cloudconfig::check_files`), so that this module
    /// reads no cloud-config itself; `None` checks only that the files exist.
    pub cloud_config_check: Option<CloudConfigCheck>,
}

/// See [`LoadOptions::cloud_config_check`].
pub type CloudConfigCheck = fn(&[PathBuf], Option<OsType>) -> Vec<ConfigError>;

/// `$XDG_CONFIG_HOME/reroot`, else `$HOME/.config/reroot`.
pub fn default_config_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("reroot"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".config").join("reroot"))
}

fn global_values(opts: &LoadOptions) -> Result<Vec<properties::GlobalValue>, Vec<ConfigError>> {
    properties::load_global(opts.config_dir.as_deref(), opts.properties_file.as_deref())
}

/// Resolve every file; problems are collected across all of them.
fn resolve_all(
    files: &[PathBuf],
    opts: &LoadOptions,
) -> (
    Vec<(ResolvedInstance, properties::Properties)>,
    Vec<ConfigError>,
) {
    let mut errors = Vec::new();
    if opts.name.is_some() && files.len() > 1 {
        errors.push(ConfigError::NameWithManyFiles { count: files.len() });
        return (Vec::new(), errors);
    }
    let globals = match global_values(opts) {
        Ok(g) => g,
        Err(e) => return (Vec::new(), e),
    };
    let mut out = Vec::new();
    for f in files {
        if let Some(r) = resolve::resolve_file(f, opts.name.as_deref(), opts, &globals, &mut errors)
        {
            out.push(r);
        }
    }
    (out, errors)
}

/// Read, merge, substitute and check config files: one resolved instance per file, in order.
/// Any problem in any file fails the whole call with every problem found.
pub fn load(files: &[PathBuf], opts: &LoadOptions) -> Result<Vec<ResolvedInstance>, ConfigError> {
    let (resolved, errors) = resolve_all(files, opts);
    match ConfigError::from_list(errors) {
        Some(e) => Err(e),
        None => Ok(resolved.into_iter().map(|(i, _)| i).collect()),
    }
}

/// Every problem of every file (empty when all are fine), including problems in their
/// cloud-config files.
pub fn verify(files: &[PathBuf], opts: &LoadOptions) -> Vec<ConfigError> {
    resolve_all(files, opts).1
}

/// The effective properties of each instance.
pub fn properties(
    files: &[PathBuf],
    opts: &LoadOptions,
) -> Result<Vec<InstanceProperties>, ConfigError> {
    let (resolved, errors) = resolve_all(files, opts);
    if let Some(e) = ConfigError::from_list(errors) {
        return Err(e);
    }
    Ok(resolved
        .into_iter()
        .map(|(i, p)| InstanceProperties {
            instance: i.name,
            config_file: i.config_file,
            properties: p.list(),
        })
        .collect())
}

/// Parse the text of one instance config file on its own (no includes, no properties): every
/// problem of its syntax, header and keys. Used by tests and editors' checks.
pub fn parse_str(file: &Path, text: &str) -> Result<(), ConfigError> {
    let (_, errors) = file::parse(file, text)?;
    match ConfigError::from_list(errors) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
