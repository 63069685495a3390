//! Files inside an instance: push (write), get (read), `mkdir_p`, symlink, delete.
//!
//! Works on stopped instances too. Every push is sent as `application/octet-stream`: without
//! that content type LXD parses the body as a form and writes an empty file while answering
//! 200. Ownership and mode travel in `X-LXD-*` headers (`X-Incus-*` on Incus).
//!
//! LXD serves file requests through a per-instance helper process (`lxd forkfile`) that it
//! reaches on a socket in the instance's log directory and that exits after about 15 s without
//! requests. LXD 5.0 can lose that socket (canonical/lxd#18403: a closing listener unlinks a
//! path through a recycled file descriptor); from then on every request fails with `dial unix
//! .../forkfile.sock: connect: no such file or directory`, and each failed request starts a
//! new helper that makes the next request fail the same way. Only a pause longer than the
//! helper's life breaks that cycle, so file requests that fail so wait it out (bounded) and
//! are sent again: every file request here is idempotent.

use std::time::Duration;

use hyper::body::Bytes;
use hyper::Method;

use super::client::{decode, Client};
use super::error::{Error, RequestInfo, Result};
use super::instances::instance_path;
use super::transport::{error_from_answer, Body, RawResponse};

/// How a push treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    #[default]
    Overwrite,
    Append,
}

/// Owner and mode of a pushed file or directory; unset fields take LXD's defaults
/// (uid 0, gid 0, mode 0644 for files and 0755 for directories).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileOptions {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Permission bits, e.g. `0o640`.
    pub mode: Option<u32>,
    pub write: WriteMode,
}

impl FileOptions {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = Some(uid);
        self.gid = Some(gid);
        self
    }
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }
    pub fn append(mut self) -> Self {
        self.write = WriteMode::Append;
        self
    }
}

/// What kind of file a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileType {
    File,
    Directory,
    Symlink,
    Other(String),
}

impl FileType {
    fn parse(s: &str) -> FileType {
        match s {
            "file" => FileType::File,
            "directory" => FileType::Directory,
            "symlink" => FileType::Symlink,
            other => FileType::Other(other.to_string()),
        }
    }
}

/// A file read from an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileContent {
    /// The bytes of a file (or a symlink's target); empty for a directory.
    pub data: Vec<u8>,
    /// The names in a directory; empty otherwise.
    pub entries: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits, e.g. `0o640`.
    pub mode: u32,
    pub file_type: FileType,
}

/// How long a file request that lost LXD's file helper waits before it is sent again: longer
/// than an idle helper lives (10 s of no connections, then 5 s of no requests), so the helper
/// the failed request started has gone and the next request starts a fresh one.
const FILE_HELPER_QUIET: Duration = Duration::from_secs(17);

/// How many times a file request is sent again after losing the file helper.
const FILE_HELPER_RETRIES: u32 = 2;

/// True when an error answer says LXD could not reach the instance's file helper.
fn file_helper_lost(e: &Error) -> bool {
    matches!(e, Error::Server { .. }) && e.message().contains("forkfile")
}

impl Client {
    /// Sends a file request; one that failed because LXD lost the instance's file helper is
    /// sent again after the helper's lifetime, at most [`FILE_HELPER_RETRIES`] times. Error
    /// answers other than that are returned as answers, for the caller to read.
    async fn file_raw(
        &self,
        method: Method,
        url: &str,
        headers: &[(String, String)],
        body: Body,
    ) -> Result<RawResponse> {
        let request = RequestInfo::new(method.as_str(), url);
        let mut retried = 0;
        loop {
            let raw = self
                .raw(method.clone(), url, headers, body.clone(), None)
                .await?;
            if raw.status.is_success() || retried == FILE_HELPER_RETRIES {
                return Ok(raw);
            }
            let e = error_from_answer(&request, &raw);
            if !file_helper_lost(&e) {
                return Ok(raw);
            }
            retried += 1;
            tracing::warn!(
                %request,
                error = %e.message(),
                "LXD lost the instance's file helper; waiting {}s for it to exit, then trying again ({retried}/{FILE_HELPER_RETRIES})",
                FILE_HELPER_QUIET.as_secs()
            );
            tokio::time::sleep(FILE_HELPER_QUIET).await;
        }
    }

    fn file_url(&self, instance: &str, path: &str) -> String {
        self.url(
            &format!("{}/files", instance_path(instance)),
            &[("path", path)],
        )
    }

    fn file_headers(&self, kind: &str, options: &FileOptions) -> Vec<(String, String)> {
        let p = self.header_prefix();
        let mut h = vec![(format!("{p}type"), kind.to_string())];
        if let Some(uid) = options.uid {
            h.push((format!("{p}uid"), uid.to_string()));
        }
        if let Some(gid) = options.gid {
            h.push((format!("{p}gid"), gid.to_string()));
        }
        if let Some(mode) = options.mode {
            h.push((format!("{p}mode"), format!("{mode:04o}")));
        }
        if kind == "file" {
            let w = match options.write {
                WriteMode::Overwrite => "overwrite",
                WriteMode::Append => "append",
            };
            h.push((format!("{p}write"), w.to_string()));
        }
        h
    }

    async fn post_file(
        &self,
        instance: &str,
        path: &str,
        kind: &str,
        data: Bytes,
        options: &FileOptions,
    ) -> Result<()> {
        let url = self.file_url(instance, path);
        let request = RequestInfo::new("POST", &url);
        let raw = self
            .file_raw(
                Method::POST,
                &url,
                &self.file_headers(kind, options),
                Body::Bytes {
                    content_type: "application/octet-stream",
                    data,
                },
            )
            .await?;
        expect_success(&request, &raw)
    }

    /// Writes `data` to `path` in the instance (the parent directory must exist: see
    /// [`Client::mkdir_p`]).
    pub async fn push_file(
        &self,
        instance: &str,
        path: &str,
        data: impl Into<Bytes>,
        options: &FileOptions,
    ) -> Result<()> {
        self.post_file(instance, path, "file", data.into(), options)
            .await
    }

    /// Creates one directory (its parent must exist; an existing directory is fine).
    pub async fn mkdir(&self, instance: &str, path: &str, options: &FileOptions) -> Result<()> {
        self.post_file(instance, path, "directory", Bytes::new(), options)
            .await
    }

    /// Creates a directory and its missing parents (LXD's own mkdir is not recursive).
    /// Existing directories are left as they are; new ones get `options`.
    pub async fn mkdir_p(&self, instance: &str, path: &str, options: &FileOptions) -> Result<()> {
        let trimmed = path.trim_end_matches('/');
        if trimmed.is_empty() {
            return Ok(());
        }
        // Find the deepest existing ancestor (without touching it), then create downwards.
        let components: Vec<&str> = trimmed.split('/').filter(|c| !c.is_empty()).collect();
        let prefix = |n: usize| format!("/{}", components[..n].join("/"));
        let mut existing = components.len();
        while existing > 0 {
            // A path below a regular file gives a bare 500 to HEAD: keep going up, the file
            // itself is reported below.
            let found = match self.file_type(instance, &prefix(existing)).await {
                Ok(found) => found,
                Err(Error::Server { .. }) if existing > 1 => None,
                Err(e) => return Err(e),
            };
            match found {
                None => existing -= 1,
                Some(FileType::Directory) => break,
                Some(other) => {
                    return Err(Error::Conflict {
                        request: RequestInfo::new("POST", &self.file_url(instance, path)),
                        message: format!(
                            "{} exists and is not a directory ({other:?})",
                            prefix(existing)
                        ),
                    })
                }
            }
        }
        for n in (existing + 1)..=components.len() {
            self.mkdir(instance, &prefix(n), options).await?;
        }
        Ok(())
    }

    /// The type of `path` in the instance, or `None` when it does not exist (a HEAD request
    /// where the server has `instance_file_head`, a GET otherwise).
    pub async fn file_type(&self, instance: &str, path: &str) -> Result<Option<FileType>> {
        let url = self.file_url(instance, path);
        let method = if self.has_extension("instance_file_head") {
            Method::HEAD
        } else {
            Method::GET
        };
        let mut request = RequestInfo::new(method.as_str(), &url);
        let mut raw = self
            .file_raw(method.clone(), &url, &[], Body::Empty)
            .await?;
        if method == Method::HEAD && raw.status.is_server_error() {
            // A HEAD answer has no body, so LXD's reason (a path below a regular file, a lost
            // file helper) is unknown: ask again with a GET, which carries it.
            request = RequestInfo::new("GET", &url);
            raw = self.file_raw(Method::GET, &url, &[], Body::Empty).await?;
        }
        if raw.status == hyper::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        expect_success(&request, &raw)?;
        let kind = raw
            .header("X-LXD-type")
            .or_else(|| raw.header("X-Incus-type"))
            .unwrap_or("file");
        Ok(Some(FileType::parse(kind)))
    }

    /// Creates a symlink at `path` pointing to `target`.
    pub async fn symlink(
        &self,
        instance: &str,
        path: &str,
        target: &str,
        options: &FileOptions,
    ) -> Result<()> {
        self.post_file(
            instance,
            path,
            "symlink",
            Bytes::copy_from_slice(target.as_bytes()),
            options,
        )
        .await
    }

    /// Reads a file (bytes, owner, mode) or a directory (its entries).
    pub async fn get_file(&self, instance: &str, path: &str) -> Result<FileContent> {
        let url = self.file_url(instance, path);
        let request = RequestInfo::new("GET", &url);
        let raw = self.file_raw(Method::GET, &url, &[], Body::Empty).await?;
        if !raw.status.is_success() {
            return Err(error_from_answer(&request, &raw));
        }
        let header = |name: &str| {
            raw.header(&format!("X-LXD-{name}"))
                .or_else(|| raw.header(&format!("X-Incus-{name}")))
                .map(str::to_string)
        };
        let number = |name: &str, radix: u32| -> Result<u32> {
            match header(name) {
                None => Ok(0),
                Some(v) => u32::from_str_radix(v.trim(), radix).map_err(|_| Error::Decode {
                    request: request.clone(),
                    message: format!("header {name} is not a number: {v:?}"),
                }),
            }
        };
        let file_type = FileType::parse(&header("type").unwrap_or_else(|| "file".into()));
        let (data, entries) = if file_type == FileType::Directory {
            let env: serde_json::Value =
                serde_json::from_slice(&raw.body).map_err(|e| Error::Decode {
                    request: request.clone(),
                    message: format!("directory listing is not JSON: {e}"),
                })?;
            let entries: Vec<String> = decode(&request, env["metadata"].clone())?;
            (Vec::new(), entries)
        } else {
            (raw.body.to_vec(), Vec::new())
        };
        Ok(FileContent {
            data,
            entries,
            uid: number("uid", 10)?,
            gid: number("gid", 10)?,
            mode: number("mode", 8)?,
            file_type,
        })
    }

    /// Deletes a file or an empty directory. Returns `false` when it did not exist.
    pub async fn delete_file(&self, instance: &str, path: &str) -> Result<bool> {
        let url = self.file_url(instance, path);
        let request = RequestInfo::new("DELETE", &url);
        let raw = self
            .file_raw(Method::DELETE, &url, &[], Body::Empty)
            .await?;
        match expect_success(&request, &raw) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn expect_success(request: &RequestInfo, raw: &RawResponse) -> Result<()> {
    if raw.status.is_success() {
        Ok(())
    } else {
        Err(error_from_answer(request, raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, message: &str) -> Error {
        let request = RequestInfo::new("POST", "/1.0/instances/c1/files?path=/x");
        Error::from_lxd(request, status, None, message.to_string())
    }

    #[test]
    fn only_a_lost_file_helper_is_waited_out() {
        let lost = "dial unix /proc/self/fd/49/forkfile.sock: connect: no such file or directory";
        assert!(file_helper_lost(&answer(500, lost)));
        let reset = "error receiving version packet: read unix @->/proc/self/fd/22/forkfile.sock: read: connection reset by peer";
        assert!(file_helper_lost(&answer(500, reset)));
        // Answers about the file itself are the caller's business, at once.
        assert!(!file_helper_lost(&answer(404, "not found")));
        assert!(!file_helper_lost(&answer(500, "not a directory")));
        assert!(!file_helper_lost(&answer(500, "Internal Server Error")));
    }
}
