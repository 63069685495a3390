//! [`Guest`] for a container reached through the LXD REST client: files through the file API,
//! commands through recorded exec.

use std::time::Duration;

use super::{ExecOutput, Guest, GuestError};
use crate::lxd::{self, ExecRequest, FileOptions, FileType};

/// Default bound of one command (package installs can be slow).
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(600);

/// Symlinks followed when reading a file.
const MAX_SYMLINKS: usize = 8;

/// One container of an LXD client (in the client's project).
#[derive(Debug, Clone)]
pub struct LxdGuest<'a> {
    pub client: &'a lxd::Client,
    pub instance: String,
    /// Bound of each command.
    pub exec_timeout: Duration,
}

impl<'a> LxdGuest<'a> {
    pub fn new(client: &'a lxd::Client, instance: impl Into<String>) -> Self {
        LxdGuest {
            client,
            instance: instance.into(),
            exec_timeout: DEFAULT_EXEC_TIMEOUT,
        }
    }

    fn err(&self, what: &str, path: &str, e: lxd::Error) -> GuestError {
        GuestError(format!("{}: {what} {path}: {e}", self.instance))
    }
}

/// `target` of a symlink at `path`, as an absolute path.
fn resolve_link(path: &str, target: &str) -> String {
    if target.starts_with('/') {
        return target.to_string();
    }
    let dir = match path.rfind('/') {
        Some(i) => &path[..i],
        None => "",
    };
    let mut parts: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

impl Guest for LxdGuest<'_> {
    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, GuestError> {
        let mut current = path.to_string();
        for _ in 0..=MAX_SYMLINKS {
            match self.client.get_file(&self.instance, &current).await {
                Ok(f) => match f.file_type {
                    FileType::File => return Ok(Some(f.data)),
                    FileType::Symlink => {
                        let target = String::from_utf8_lossy(&f.data).trim_end().to_string();
                        current = resolve_link(&current, &target);
                    }
                    FileType::Directory => {
                        return Err(GuestError(format!(
                            "{}: {path} is a directory",
                            self.instance
                        )))
                    }
                    FileType::Other(kind) => {
                        return Err(GuestError(format!(
                            "{}: {path} is a {kind}, not a file",
                            self.instance
                        )))
                    }
                },
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(self.err("read", path, e)),
            }
        }
        Err(GuestError(format!(
            "{}: {path}: more than {MAX_SYMLINKS} symlinks",
            self.instance
        )))
    }

    async fn write_file(
        &self,
        path: &str,
        content: &[u8],
        uid: u32,
        gid: u32,
        mode: u32,
    ) -> Result<(), GuestError> {
        let options = FileOptions::new().owner(uid, gid).mode(mode);
        self.client
            .push_file(&self.instance, path, content.to_vec(), &options)
            .await
            .map_err(|e| self.err("write", path, e))
    }

    async fn mkdir_p(&self, path: &str, uid: u32, gid: u32, mode: u32) -> Result<(), GuestError> {
        let options = FileOptions::new().owner(uid, gid).mode(mode);
        self.client
            .mkdir_p(&self.instance, path, &options)
            .await
            .map_err(|e| self.err("mkdir -p", path, e))
    }

    async fn exec(&self, argv: &[String]) -> Result<ExecOutput, GuestError> {
        let req = ExecRequest::new(argv).timeout(self.exec_timeout);
        match self.client.exec(&self.instance, &req).await {
            Ok(out) => Ok(ExecOutput {
                exit_code: out.exit_code,
                stdout: out.stdout,
                stderr: out.stderr,
            }),
            Err(e) => Err(GuestError(format!(
                "{}: exec {}: {e}",
                self.instance,
                super::display_argv(argv)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::resolve_link;

    #[test]
    fn symlink_targets_resolve_against_the_link_directory() {
        assert_eq!(
            resolve_link("/etc/os-release", "../usr/lib/os-release"),
            "/usr/lib/os-release"
        );
        assert_eq!(
            resolve_link("/etc/localtime", "/usr/share/zoneinfo/UTC"),
            "/usr/share/zoneinfo/UTC"
        );
        assert_eq!(resolve_link("/a/b/c", "./d"), "/a/b/d");
    }
}
