//! Archives of filesystems: a filesystem's snapshot streamed into a file (`zfs send`, `btrfs
//! send`, `tar` of a plain directory), and such a file received back as a new filesystem
//! (`zfs receive`, `btrfs receive`, `tar` extract), plus the [`manifest`](super::manifest) that
//! lists them.
//!
//! The host command runs as an argument vector; its stdout is copied into the file (or the
//! file into its stdin) by this process, never through a shell redirection, and hashed with
//! SHA-256 on the way. A file is written as `<name>.partial`, synced, then renamed, so a file
//! under its final name is always complete (a killed export leaves at most a `.partial`).
//!
//! Bounds: a stream has no size known beforehand, so it is bounded by a stall limit (no byte
//! for [`STALL_TIMEOUT`]: zfs-fuse can hang) and an overall limit; a receive's overall limit
//! grows with the file's size ([`receive_timeout`]).
//!
//! A receive never overwrites: `zfs receive` without `-F` refuses an existing dataset, and the
//! btrfs and directory receives work in a staging directory beside the target and move the
//! result into place only when the target is absent.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::command::{self, display_argv, FS_COMMAND_TIMEOUT};
use super::host::Host;
use super::{blocking, btrfs, io_error, Filesystem, FsKind, StorageError};

/// A stream that produces or takes no byte for this long is killed.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Overall bound of a `send` (the stall bound is what catches a hang).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The overall bound of receiving `size` bytes: 10 minutes plus a second per 4 MiB (a slow
/// disk's pace, so a healthy receive never meets it).
pub fn receive_timeout(size: u64) -> Duration {
    Duration::from_secs(600 + size / (4 << 20))
}

/// An archive file as written or checked: its size and SHA-256 (lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digested {
    pub size: u64,
    pub sha256: String,
}

/// The archive format of each kind, the extension of its file: `zfs`, `btrfs`, `tar`.
pub fn extension(kind: &FsKind) -> &'static str {
    match kind {
        FsKind::Zfs { .. } => "zfs",
        FsKind::Btrfs { .. } => "btrfs",
        FsKind::Dir { .. } => "tar",
    }
}

/// The argv that streams `fs` at `snapshot` to stdout. A plain directory has no snapshot: its
/// live content is archived (`tar`, numeric owners kept, so the container's shifted ids stay).
pub(super) fn send_argv(fs: &Filesystem, snapshot: &str) -> (&'static str, Vec<OsString>) {
    match &fs.kind {
        FsKind::Zfs { dataset } => (
            "zfs",
            vec!["send".into(), format!("{dataset}@{snapshot}").into()],
        ),
        FsKind::Btrfs { path } => (
            "btrfs",
            vec![
                "send".into(),
                btrfs::snapshot_path(path, snapshot).into_os_string(),
            ],
        ),
        FsKind::Dir { path } => (
            "tar",
            vec![
                "--create".into(),
                "--numeric-owner".into(),
                "--file=-".into(),
                "--directory".into(),
                path.clone().into_os_string(),
                ".".into(),
            ],
        ),
    }
}

pub(super) fn argv_text(program: &str, args: &[OsString]) -> String {
    let argv: Vec<String> = std::iter::once(program.to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect();
    display_argv(&argv)
}

fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    file.with_file_name(name)
}

/// Streams `fs` at `snapshot` into `file` (through `<file>.partial`, then renamed), and returns
/// its size and SHA-256. An existing `file` is an error (nothing is overwritten).
pub async fn send(fs: &Filesystem, snapshot: &str, file: &Path) -> Result<Digested, StorageError> {
    fs.validate()?;
    if tokio::fs::symlink_metadata(file).await.is_ok() {
        return Err(StorageError::Io {
            action: "write archive",
            path: file.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        });
    }
    let (program, args) = send_argv(fs, snapshot);
    let argv = argv_text(program, &args);
    let partial = partial_path(file);
    let mut out = tokio::fs::File::create(&partial)
        .await
        .map_err(io_error("create", &partial))?;
    tracing::debug!(%argv, file = %file.display(), "streaming filesystem into archive");
    let mut child = spawn_streaming(program, &args, Stdio::null(), &argv)?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let stderr = collect_stderr(&mut child);
    let copy = async {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match tokio::time::timeout(STALL_TIMEOUT, stdout.read(&mut buf)).await {
                Ok(read) => read.map_err(io_error("read the stream of", file))?,
                Err(_) => return Err(stalled(&argv)),
            };
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
            out.write_all(&buf[..n])
                .await
                .map_err(io_error("write", &partial))?;
        }
        out.sync_all().await.map_err(io_error("sync", &partial))?;
        let status = child.wait().await.map_err(|source| StorageError::Spawn {
            argv: argv.clone(),
            source,
        })?;
        Ok((status, size, hex(&hasher.finalize())))
    };
    let (status, size, sha256) = match tokio::time::timeout(SEND_TIMEOUT, copy).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(StorageError::Timeout {
                argv,
                timeout: SEND_TIMEOUT,
            })
        }
    };
    let stderr = stderr.text().await.trim().to_string();
    if !status.success() {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(StorageError::CommandFailed {
            argv,
            code: status.code(),
            stderr,
        });
    }
    let (from, to) = (partial.clone(), file.to_path_buf());
    blocking(move || {
        // Refuse to replace a file that appeared meanwhile.
        if std::fs::symlink_metadata(&to).is_ok() {
            return Err(io_error("rename onto", &to)(std::io::Error::from(
                std::io::ErrorKind::AlreadyExists,
            )));
        }
        std::fs::rename(&from, &to).map_err(io_error("rename", &from))?;
        sync_dir(&to)
    })
    .await?;
    Ok(Digested { size, sha256 })
}

fn sync_dir(file: &Path) -> Result<(), StorageError> {
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("sync directory", dir))?;
    }
    Ok(())
}

fn stalled(argv: &str) -> StorageError {
    StorageError::Timeout {
        argv: format!("{argv} (no data)"),
        timeout: STALL_TIMEOUT,
    }
}

/// The reader of a streaming command's stderr (see [`command::Pipe`]).
pub(super) fn collect_stderr(child: &mut tokio::process::Child) -> command::Pipe {
    command::read_pipe(child.stderr.take().expect("piped stderr"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The size and SHA-256 of a file, read in full. A missing file is an `Io` error naming it.
pub async fn digest(file: &Path) -> Result<Digested, StorageError> {
    let mut input = tokio::fs::File::open(file)
        .await
        .map_err(io_error("open archive", file))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input
            .read(&mut buf)
            .await
            .map_err(io_error("read archive", file))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Digested {
        size,
        sha256: hex(&hasher.finalize()),
    })
}

/// What a receive reads: an archive file, or the stdout of a running send (a copy).
pub(super) enum Input<'a> {
    File(&'a Path),
    Stream(tokio::process::ChildStdout),
    /// Nothing: a btrfs stream an earlier attempt received (its `<path>@<snapshot>` is there)
    /// is only made the live subvolume.
    Received,
}

/// Runs `program args` with `input` fed into its stdin, bounded by `timeout` overall; a
/// stream that gives no byte for [`STALL_TIMEOUT`] ends the feed and is reported as stalled.
async fn run_with_input(
    program: &str,
    args: Vec<OsString>,
    input: Input<'_>,
    timeout: Duration,
) -> Result<(), StorageError> {
    let argv = argv_text(program, &args);
    let mut child = spawn_streaming(program, &args, Stdio::piped(), &argv)?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Read, not waited for: the receiver's exit is what ends the receive (see command::Pipe).
    let stdout = command::read_pipe(child.stdout.take().expect("piped stdout"));
    let stderr = collect_stderr(&mut child);
    let shown = argv.clone();
    let feed = async move {
        // A write the child stops reading (it failed) ends the feed; its exit says why.
        let fed = match input {
            Input::File(file) => {
                tracing::debug!(argv = %shown, file = %file.display(), "receiving archive");
                let mut from = tokio::fs::File::open(file)
                    .await
                    .map_err(io_error("open archive", file))?;
                let _ = tokio::io::copy(&mut from, &mut stdin).await;
                Ok(())
            }
            Input::Received => Ok(()),
            Input::Stream(mut from) => {
                tracing::debug!(argv = %shown, "receiving a stream");
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = match tokio::time::timeout(STALL_TIMEOUT, from.read(&mut buf)).await {
                        Ok(Ok(n)) => n,
                        // The sender's exit status says what went wrong.
                        Ok(Err(_)) => 0,
                        Err(_) => break Err(stalled(&shown)),
                    };
                    if n == 0 || stdin.write_all(&buf[..n]).await.is_err() {
                        break Ok(());
                    }
                }
            }
        };
        drop(stdin);
        fed
    };
    let run = async {
        let (fed, status) = tokio::join!(feed, child.wait());
        fed.map(|()| status)
    };
    let status = match tokio::time::timeout(timeout, run).await {
        Ok(status) => status?.map_err(|source| StorageError::Spawn {
            argv: argv.clone(),
            source,
        })?,
        Err(_) => return Err(StorageError::Timeout { argv, timeout }),
    };
    drop(stdout);
    if status.success() {
        Ok(())
    } else {
        Err(StorageError::CommandFailed {
            argv,
            code: status.code(),
            stderr: stderr.text().await.trim().to_string(),
        })
    }
}

/// Where a receive into `path` stages its work: `<parent>/.<base>.import-<tag>`, beside the
/// target on the same filesystem (so the final move is a rename).
pub fn staging_path(path: &Path, tag: &str) -> PathBuf {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let base = path.file_name().unwrap_or_default().to_string_lossy();
    parent.join(format!(".{base}.import-{tag}"))
}

/// Receives archive `file` (taken at `snapshot`) as the new filesystem `fs`, which must not
/// exist. `tag` names this import's staging place (the run id), so that a receive cut short
/// by a crash is cleaned and started again by the next call, and one that finished is
/// recognised.
///
/// - ZFS: `zfs receive DATASET` (its parent made first if missing); the dataset arrives with
///   its snapshot `@snapshot`.
/// - btrfs: `btrfs receive` into the staging directory, a read-only snapshot of the received
///   subvolume as `<path>@<snapshot>` (reroot's layout), then a writable snapshot of that as
///   `<path>`; the staging directory is removed.
/// - directory: extracted into the staging directory, renamed to `<path>`.
pub async fn receive(
    fs: &Filesystem,
    snapshot: &str,
    file: &Path,
    size: u64,
    tag: &str,
) -> Result<(), StorageError> {
    receive_input(
        fs,
        snapshot,
        Input::File(file),
        receive_timeout(size),
        tag,
        &Host::local(),
    )
    .await
}

/// [`receive`] from any [`Input`], on `host` (a ZFS dataset only, elsewhere than here). With
/// ZFS, an incremental stream into an existing dataset is received as `zfs receive` takes it
/// (without `-F`: ZFS refuses a dataset changed since the stream's base, so nothing written
/// there is ever rolled back); every other receive wants its target absent.
pub(super) async fn receive_input(
    fs: &Filesystem,
    snapshot: &str,
    input: Input<'_>,
    timeout: Duration,
    tag: &str,
    host: &Host,
) -> Result<(), StorageError> {
    fs.validate()?;
    super::validate_snapshot_name(snapshot)?;
    if !host.is_local() && !matches!(fs.kind, FsKind::Zfs { .. }) {
        return Err(StorageError::Unsupported {
            id: fs.id.clone(),
            location: fs.kind.location(),
            problem: format!("only ZFS filesystems are received on {}", host.describe()),
        });
    }
    if matches!(input, Input::Received) && !matches!(fs.kind, FsKind::Btrfs { .. }) {
        return Err(StorageError::Invalid {
            what: format!("receive into {}", fs.kind.location()),
            problem: "nothing to receive".to_string(),
        });
    }
    match &fs.kind {
        FsKind::Zfs { dataset } => {
            // A copy's stream may be incremental, onto the dataset (its mode was checked).
            let present = super::zfs::exists_on(host, dataset).await?;
            if present && !matches!(input, Input::Stream(_)) {
                return Err(exists_already(fs));
            }
            if let Some((parent, _)) = dataset.rsplit_once('/') {
                if !present && !super::zfs::exists_on(host, parent).await? {
                    let (p, a) =
                        host.argv("zfs", vec!["create".into(), "-p".into(), parent.into()]);
                    command::run(&p, a, FS_COMMAND_TIMEOUT).await?;
                }
            }
            let (p, a) = host.argv("zfs", vec!["receive".into(), dataset.into()]);
            run_with_input(&p, a, input, timeout).await
        }
        FsKind::Btrfs { path } => {
            if fs.exists().await? {
                return Err(exists_already(fs));
            }
            let snap = btrfs::snapshot_path(path, snapshot);
            let staging = staging_path(path, tag);
            if !is_dir(&snap).await {
                if matches!(input, Input::Received) {
                    return Err(StorageError::SnapshotMissing {
                        id: fs.id.clone(),
                        location: fs.kind.location(),
                        snapshot: snapshot.to_string(),
                    });
                }
                remove_staging(&staging).await?;
                make_dir(&staging).await?;
                run_with_input(
                    "btrfs",
                    vec!["receive".into(), staging.clone().into_os_string()],
                    input,
                    timeout,
                )
                .await?;
                let received = only_entry(&staging).await?;
                command::run(
                    "btrfs",
                    [
                        OsString::from("subvolume"),
                        "snapshot".into(),
                        "-r".into(),
                        received.into_os_string(),
                        snap.clone().into_os_string(),
                    ],
                    FS_COMMAND_TIMEOUT,
                )
                .await?;
            }
            command::run(
                "btrfs",
                [
                    OsString::from("subvolume"),
                    "snapshot".into(),
                    snap.into_os_string(),
                    path.clone().into_os_string(),
                ],
                FS_COMMAND_TIMEOUT,
            )
            .await?;
            remove_staging(&staging).await
        }
        FsKind::Dir { path } => {
            if fs.exists().await? {
                return Err(exists_already(fs));
            }
            let staging = staging_path(path, tag);
            remove_staging(&staging).await?;
            make_dir(&staging).await?;
            run_with_input(
                "tar",
                vec![
                    "--extract".into(),
                    "--numeric-owner".into(),
                    "--preserve-permissions".into(),
                    "--file=-".into(),
                    "--directory".into(),
                    staging.clone().into_os_string(),
                ],
                input,
                timeout,
            )
            .await?;
            let (from, to) = (staging, path.clone());
            blocking(move || {
                if std::fs::symlink_metadata(&to).is_ok() {
                    return Err(io_error("rename onto", &to)(std::io::Error::from(
                        std::io::ErrorKind::AlreadyExists,
                    )));
                }
                std::fs::rename(&from, &to).map_err(io_error("rename", &from))
            })
            .await
        }
    }
}

/// Removes what an unfinished receive into `fs` left in its staging place (`tag`), if any.
/// Never touches the target itself.
pub async fn clean_staging(fs: &Filesystem, tag: &str) -> Result<(), StorageError> {
    match &fs.kind {
        FsKind::Zfs { .. } => Ok(()),
        FsKind::Btrfs { path } | FsKind::Dir { path } => {
            remove_staging(&staging_path(path, tag)).await
        }
    }
}

fn exists_already(fs: &Filesystem) -> StorageError {
    StorageError::Unsupported {
        id: fs.id.clone(),
        location: fs.kind.location(),
        problem: "exists already: an import never overwrites a filesystem".to_string(),
    }
}

async fn is_dir(path: &Path) -> bool {
    tokio::fs::metadata(path)
        .await
        .map(|m| m.is_dir())
        .unwrap_or(false)
}

async fn make_dir(path: &Path) -> Result<(), StorageError> {
    tokio::fs::create_dir_all(path)
        .await
        .map_err(io_error("create directory", path))
}

/// The one entry `btrfs receive` made in the staging directory.
async fn only_entry(dir: &Path) -> Result<PathBuf, StorageError> {
    let d = dir.to_path_buf();
    blocking(move || {
        let entries: Vec<PathBuf> = std::fs::read_dir(&d)
            .map_err(io_error("list directory", &d))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        match entries.as_slice() {
            [one] => Ok(one.clone()),
            _ => Err(StorageError::Invalid {
                what: format!("btrfs receive into {}", d.display()),
                problem: format!("expected one received subvolume, found {}", entries.len()),
            }),
        }
    })
    .await
}

/// Removes a staging directory: btrfs subvolumes in it with `btrfs subvolume delete` (a
/// partially received one is writable; a finished one is read-only and needs the command),
/// then the rest.
async fn remove_staging(staging: &Path) -> Result<(), StorageError> {
    if tokio::fs::symlink_metadata(staging).await.is_err() {
        return Ok(());
    }
    let d = staging.to_path_buf();
    let entries: Vec<PathBuf> = blocking(move || {
        Ok(std::fs::read_dir(&d)
            .map_err(io_error("list directory", &d))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect())
    })
    .await?;
    for entry in entries {
        use std::os::unix::fs::MetadataExt;
        let is_subvolume = std::fs::symlink_metadata(&entry)
            .map(|m| m.is_dir() && m.ino() == 256)
            .unwrap_or(false);
        if is_subvolume {
            command::run(
                "btrfs",
                [
                    OsString::from("subvolume"),
                    "delete".into(),
                    entry.into_os_string(),
                ],
                FS_COMMAND_TIMEOUT,
            )
            .await?;
        }
    }
    let d = staging.to_path_buf();
    blocking(move || match std::fs::remove_dir_all(&d) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove directory", &d)(e)),
    })
    .await
}

/// Starts a stream's host command as an argument vector: `stdin` as given, stdout and stderr
/// piped, killed if the stream is dropped (a step cut short leaves no command behind).
pub(super) fn spawn_streaming(
    program: &str,
    args: &[OsString],
    stdin: Stdio,
    argv: &str,
) -> Result<tokio::process::Child, StorageError> {
    tokio::process::Command::new(program)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| StorageError::Spawn {
            argv: argv.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn dir_fs(path: &Path) -> Filesystem {
        Filesystem {
            id: "data".into(),
            kind: FsKind::Dir {
                path: path.to_path_buf(),
            },
            transient: false,
            zfs_properties: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn a_directory_goes_through_tar_and_back_byte_identical() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/a"), b"hello\0world").unwrap();
        let file = tmp.path().join("data.tar");
        let written = send(&dir_fs(&src), "unused", &file).await.unwrap();
        assert_eq!(digest(&file).await.unwrap(), written);
        assert!(!partial_path(&file).exists());
        // Never overwritten.
        assert!(send(&dir_fs(&src), "unused", &file).await.is_err());
        let dest = tmp.path().join("dest");
        receive(&dir_fs(&dest), "s", &file, written.size, "t1")
            .await
            .unwrap();
        assert_eq!(std::fs::read(dest.join("sub/a")).unwrap(), b"hello\0world");
        assert!(!staging_path(&dest, "t1").exists());
        let again = receive(&dir_fs(&dest), "s", &file, written.size, "t1").await;
        assert!(again.unwrap_err().to_string().contains("never overwrites"));
    }

    #[tokio::test]
    async fn a_failing_send_leaves_no_file() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("x.tar");
        let err = send(&dir_fs(&tmp.path().join("absent")), "s", &file)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("tar"), "{err}");
        assert!(!file.exists() && !partial_path(&file).exists());
    }
}
