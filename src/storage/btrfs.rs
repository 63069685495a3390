//! btrfs subvolumes, through the `btrfs` command.
//!
//! Layout, for a filesystem at `/srv/pool/app`:
//! - snapshot `s1` is the read-only subvolume `/srv/pool/app@s1`, a sibling, so it never shows
//!   inside the instance's disk device (which mounts `/srv/pool/app` or a directory below it);
//! - [`rollback`] to `s1` makes a writable snapshot `/srv/pool/.app@s1.rollback`, renames the
//!   live subvolume to `/srv/pool/app@pre-rollback-<unix time>` (then made read-only: it is
//!   listed as a snapshot like any other), and renames the writable copy to `/srv/pool/app`.
//!   Each step can be re-run after a crash; none deletes data. (A rollback finished after an
//!   interruption between the two renames reports `kept_as: None`; the kept state is then the
//!   newest `pre-rollback-*` snapshot, possibly still writable.)
//!
//! A subvolume is recognised by its inode number (256 on btrfs), confirmed with
//! `btrfs subvolume show`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::command::{self, CommandOutput, FS_COMMAND_TIMEOUT};
use super::{
    blocking, io_error, validate_snapshot_name, Ensured, Filesystem, Removed, RollbackOutcome,
    SnapshotOutcome, StorageError,
};

/// The inode number of the root directory of every btrfs subvolume.
const SUBVOLUME_INODE: u64 = 256;

/// Prefix of the snapshot that keeps the state replaced by a rollback.
pub const PRE_ROLLBACK_PREFIX: &str = "pre-rollback-";

async fn btrfs<const N: usize>(args: [&std::ffi::OsStr; N]) -> Result<CommandOutput, StorageError> {
    command::run("btrfs", args, FS_COMMAND_TIMEOUT).await
}

fn parent_and_base(path: &Path) -> (PathBuf, String) {
    let parent = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (parent, base)
}

/// The path of snapshot `name` of the subvolume at `path`: `<path>@<name>`.
pub fn snapshot_path(path: &Path, name: &str) -> PathBuf {
    let (parent, base) = parent_and_base(path);
    parent.join(format!("{base}@{name}"))
}

/// The writable copy made while rolling back to `name`: `<parent>/.<base>@<name>.rollback`.
fn rollback_copy_path(path: &Path, name: &str) -> PathBuf {
    let (parent, base) = parent_and_base(path);
    parent.join(format!(".{base}@{name}.rollback"))
}

/// `None` if nothing is at `path`; otherwise whether it is a btrfs subvolume.
async fn probe(path: &Path) -> Result<Option<bool>, StorageError> {
    let p = path.to_path_buf();
    let metadata = blocking(move || match std::fs::symlink_metadata(&p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("inspect", &p)(e)),
    })
    .await?;
    let Some(metadata) = metadata else {
        return Ok(None);
    };
    if !metadata.is_dir() || metadata.ino() != SUBVOLUME_INODE {
        return Ok(Some(false));
    }
    match btrfs(["subvolume".as_ref(), "show".as_ref(), path.as_os_str()]).await {
        Ok(_) => Ok(Some(true)),
        Err(StorageError::CommandFailed { .. }) => Ok(Some(false)),
        Err(err) => Err(err),
    }
}

fn not_a_subvolume(fs: &Filesystem, path: &Path) -> StorageError {
    StorageError::Invalid {
        what: format!("filesystem `{}`", fs.id),
        problem: format!(
            "{} exists but is not a btrfs subvolume (it is left untouched)",
            path.display()
        ),
    }
}

pub(super) async fn exists(fs: &Filesystem, path: &Path) -> Result<bool, StorageError> {
    match probe(path).await? {
        None => Ok(false),
        Some(true) => Ok(true),
        Some(false) => Err(not_a_subvolume(fs, path)),
    }
}

async fn create_parent(path: &Path) -> Result<(), StorageError> {
    if let Some(parent) = path.parent() {
        let parent = parent.to_path_buf();
        blocking(move || {
            std::fs::create_dir_all(&parent).map_err(io_error("create directory", &parent))
        })
        .await?;
    }
    Ok(())
}

pub(super) async fn create(fs: &Filesystem, path: &Path) -> Result<Ensured, StorageError> {
    if exists(fs, path).await? {
        return Ok(Ensured::AlreadyExisted);
    }
    create_parent(path).await?;
    btrfs(["subvolume".as_ref(), "create".as_ref(), path.as_os_str()]).await?;
    Ok(Ensured::Created)
}

pub(super) async fn snapshot(
    fs: &Filesystem,
    path: &Path,
    name: &str,
) -> Result<SnapshotOutcome, StorageError> {
    if !exists(fs, path).await? {
        return Err(fs.missing());
    }
    let target = snapshot_path(path, name);
    match probe(&target).await? {
        Some(true) => return Ok(SnapshotOutcome::AlreadyExisted),
        Some(false) => return Err(not_a_subvolume(fs, &target)),
        None => {}
    }
    btrfs([
        "subvolume".as_ref(),
        "snapshot".as_ref(),
        "-r".as_ref(),
        path.as_os_str(),
        target.as_os_str(),
    ])
    .await?;
    Ok(SnapshotOutcome::Taken)
}

pub(super) async fn has_snapshot(path: &Path, name: &str) -> Result<bool, StorageError> {
    Ok(probe(&snapshot_path(path, name)).await? == Some(true))
}

pub(super) async fn list_snapshots(path: &Path) -> Result<Vec<String>, StorageError> {
    let (parent, base) = parent_and_base(path);
    let prefix = format!("{base}@");
    let mut found = blocking(move || {
        let entries = match std::fs::read_dir(&parent) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("list directory", &parent)(e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error("list directory", &parent))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            if validate_snapshot_name(name).is_err() {
                continue;
            }
            let metadata = entry
                .metadata()
                .map_err(io_error("inspect", &entry.path()))?;
            if metadata.is_dir() && metadata.ino() == SUBVOLUME_INODE {
                let born = metadata.created().unwrap_or(UNIX_EPOCH);
                found.push((born, name.to_string()));
            }
        }
        Ok(found)
    })
    .await?;
    found.sort();
    Ok(found.into_iter().map(|(_, name)| name).collect())
}

pub(super) async fn delete_snapshot(
    fs: &Filesystem,
    path: &Path,
    name: &str,
) -> Result<Removed, StorageError> {
    let target = snapshot_path(path, name);
    match probe(&target).await? {
        None => Ok(Removed::AlreadyAbsent),
        Some(false) => Err(not_a_subvolume(fs, &target)),
        Some(true) => {
            btrfs(["subvolume".as_ref(), "delete".as_ref(), target.as_os_str()]).await?;
            Ok(Removed::Removed)
        }
    }
}

async fn rename(from: &Path, to: &Path) -> Result<(), StorageError> {
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    tracing::debug!(from = %from.display(), to = %to.display(), "renaming subvolume");
    blocking(move || {
        // Refuse to replace anything: rename(2) would silently replace an empty directory.
        if std::fs::symlink_metadata(&to).is_ok() {
            return Err(StorageError::Io {
                action: "rename onto",
                path: to,
                source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            });
        }
        std::fs::rename(&from, &to).map_err(io_error("rename", &from))
    })
    .await
}

/// A free `pre-rollback-<unix time>[-n]` snapshot name for the subvolume at `path`.
async fn free_pre_rollback_name(path: &Path) -> Result<String, StorageError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut candidate = format!("{PRE_ROLLBACK_PREFIX}{now}");
    let mut n = 1;
    while probe(&snapshot_path(path, &candidate)).await?.is_some() {
        n += 1;
        candidate = format!("{PRE_ROLLBACK_PREFIX}{now}-{n}");
    }
    Ok(candidate)
}

pub(super) async fn rollback(
    fs: &Filesystem,
    path: &Path,
    name: &str,
) -> Result<RollbackOutcome, StorageError> {
    let source = snapshot_path(path, name);
    match probe(&source).await? {
        Some(true) => {}
        Some(false) => return Err(not_a_subvolume(fs, &source)),
        None => {
            return Err(StorageError::SnapshotMissing {
                id: fs.id.clone(),
                location: fs.kind.location(),
                snapshot: name.to_string(),
            })
        }
    }
    let copy = rollback_copy_path(path, name);
    let live = probe(path).await?;
    let copy_state = probe(&copy).await?;
    if copy_state == Some(false) {
        return Err(not_a_subvolume(fs, &copy));
    }
    match live {
        Some(false) => return Err(not_a_subvolume(fs, path)),
        None => {
            // A rollback was interrupted after the live subvolume was renamed away: finish it.
            if copy_state == Some(true) {
                rename(&copy, path).await?;
                return Ok(RollbackOutcome::RolledBack { kept_as: None });
            }
            return Err(fs.missing());
        }
        Some(true) => {}
    }
    if copy_state.is_none() {
        // A writable snapshot of the read-only one.
        btrfs([
            "subvolume".as_ref(),
            "snapshot".as_ref(),
            source.as_os_str(),
            copy.as_os_str(),
        ])
        .await?;
    }
    let kept = free_pre_rollback_name(path).await?;
    let kept_path = snapshot_path(path, &kept);
    rename(path, &kept_path).await?;
    rename(&copy, path).await?;
    btrfs([
        "property".as_ref(),
        "set".as_ref(),
        kept_path.as_os_str(),
        "ro".as_ref(),
        "true".as_ref(),
    ])
    .await?;
    Ok(RollbackOutcome::RolledBack {
        kept_as: Some(kept),
    })
}

pub(super) async fn clone_from(
    fs: &Filesystem,
    path: &Path,
    source: &Filesystem,
    source_path: &Path,
    snapshot: &str,
) -> Result<Ensured, StorageError> {
    if exists(fs, path).await? {
        return Ok(Ensured::AlreadyExisted);
    }
    let from = snapshot_path(source_path, snapshot);
    if probe(&from).await? != Some(true) {
        return Err(StorageError::SnapshotMissing {
            id: source.id.clone(),
            location: source.kind.location(),
            snapshot: snapshot.to_string(),
        });
    }
    create_parent(path).await?;
    btrfs([
        "subvolume".as_ref(),
        "snapshot".as_ref(),
        from.as_os_str(),
        path.as_os_str(),
    ])
    .await?;
    Ok(Ensured::Created)
}

pub(super) async fn destroy(fs: &Filesystem, path: &Path) -> Result<Removed, StorageError> {
    let mut removed = Removed::AlreadyAbsent;
    for name in list_snapshots(path).await? {
        // Leftover writable copies of an interrupted rollback go too.
        for target in [snapshot_path(path, &name), rollback_copy_path(path, &name)] {
            if probe(&target).await? == Some(true) {
                btrfs(["subvolume".as_ref(), "delete".as_ref(), target.as_os_str()]).await?;
                removed = Removed::Removed;
            }
        }
    }
    match probe(path).await? {
        None => {}
        Some(false) => return Err(not_a_subvolume(fs, path)),
        Some(true) => {
            btrfs(["subvolume".as_ref(), "delete".as_ref(), path.as_os_str()]).await?;
            removed = Removed::Removed;
        }
    }
    Ok(removed)
}
