//! Storage: an instance's external filesystems (ZFS datasets, btrfs subvolumes, plain
//! directories) behind one interface, plus the device directories inside them.
//!
//! The engine describes each filesystem with a [`Filesystem`] and calls its async methods:
//! [`exists`](Filesystem::exists), [`host_dir`](Filesystem::host_dir),
//! [`create`](Filesystem::create), [`snapshot`](Filesystem::snapshot),
//! [`has_snapshot`](Filesystem::has_snapshot), [`list_snapshots`](Filesystem::list_snapshots),
//! [`delete_snapshot`](Filesystem::delete_snapshot), [`rollback`](Filesystem::rollback),
//! [`clone_from`](Filesystem::clone_from) and [`destroy`](Filesystem::destroy).
//! Device directories are made with [`ensure_device_dir`] and filled once with
//! [`rsync_template`].
//!
//! # Data safety
//!
//! No operation here deletes or overwrites a filesystem's live data, except
//! [`Filesystem::destroy`], which exists only for the `destroy` command. In particular:
//! - `create` and `clone_from` never touch an existing filesystem (they report
//!   [`Ensured::AlreadyExisted`]); ZFS's `zfs create -p`, which succeeds silently on an existing
//!   dataset, is only run after checking that the dataset is absent;
//! - the directory of a ZFS dataset is its real mountpoint, queried from ZFS, never assumed to
//!   be `/<dataset>`;
//! - a device directory is chowned only when this call created it, never recursively;
//! - a btrfs rollback keeps the current state as a read-only snapshot (see [`btrfs`]).
//!
//! # Snapshot layouts
//!
//! - ZFS: `<dataset>@<name>`.
//! - btrfs: a read-only sibling subvolume `<path>@<name>` beside the subvolume `<path>`, so the
//!   snapshots never show inside the instance's disk device (which mounts `<path>` or a
//!   directory below it).
//! - plain directories have no snapshots: [`Filesystem::snapshot`] reports
//!   [`SnapshotOutcome::Skipped`].
//!
//! Every host command runs as an argument vector with a time bound (see [`command`]).

pub mod archive;
pub mod btrfs;
pub mod command;
pub mod copy;
pub mod device;
pub mod dir;
pub mod host;
pub mod manifest;
pub mod owner;
pub mod rsync;
mod size;
pub mod zfs;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

pub use device::{ensure_device_dir, set_owner};
pub use owner::{IdMap, IdMapEntry, Owner};
pub use rsync::rsync_template;

/// One external filesystem of an instance, as the engine resolved it from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filesystem {
    /// The filesystem's id in the config (used in messages).
    pub id: String,
    /// What it is and where.
    pub kind: FsKind,
    /// Transient filesystems hold disposable data: they are never snapshotted or rolled back,
    /// and [`Filesystem::clone_from`] creates them empty instead of cloning them.
    pub transient: bool,
    /// `-o key=value` properties given to `zfs create` / `zfs clone` (ZFS only; ignored otherwise).
    pub zfs_properties: BTreeMap<String, String>,
}

/// The three kinds of filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsKind {
    /// A ZFS dataset, e.g. `rerootz/app/data`. Its directory is its mountpoint.
    Zfs { dataset: String },
    /// A btrfs subvolume at an absolute path.
    Btrfs { path: PathBuf },
    /// A plain directory at an absolute path.
    Dir { path: PathBuf },
}

/// Result of making sure something exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// This call created it.
    Created,
    /// It was already there and was left untouched.
    AlreadyExisted,
}

/// Why an operation was skipped rather than done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Plain directories have no snapshots.
    PlainDirectory,
    /// Transient filesystems are not snapshotted or rolled back.
    Transient,
}

/// Result of [`Filesystem::snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// The snapshot was taken by this call.
    Taken,
    /// A snapshot of that name already existed: done.
    AlreadyExisted,
    /// Nothing to do for this filesystem.
    Skipped(SkipReason),
}

/// Result of removing something ([`Filesystem::delete_snapshot`], [`Filesystem::destroy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    /// This call removed it.
    Removed,
    /// It was already absent: done.
    AlreadyAbsent,
}

/// Result of [`Filesystem::rollback`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackOutcome {
    /// The filesystem now holds the snapshot's content. `kept_as` names the snapshot that keeps
    /// the state from before the rollback (btrfs); `None` when that state was discarded (ZFS).
    RolledBack { kept_as: Option<String> },
    /// Nothing to do for this filesystem.
    Skipped(SkipReason),
}

/// What [`Filesystem::move_to`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// It was moved.
    Moved,
    /// It was where it goes already (and no longer where it was).
    AlreadyMoved,
}

/// What went wrong in a storage operation.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A host command exited with a non-zero status.
    #[error("`{argv}` failed ({}): {stderr}", describe_code(*.code))]
    CommandFailed {
        argv: String,
        code: Option<i32>,
        stderr: String,
    },
    /// A host command did not finish in time and was killed.
    #[error("`{argv}` did not finish within {timeout:?} and was killed")]
    Timeout { argv: String, timeout: Duration },
    /// A host command could not be started (or waited for).
    #[error("cannot run `{argv}`: {source}")]
    Spawn {
        argv: String,
        #[source]
        source: std::io::Error,
    },
    /// A filesystem operation on the host failed.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A name, path, setting or value is not acceptable.
    #[error("invalid {what}: {problem}")]
    Invalid { what: String, problem: String },
    /// The ZFS pool of a dataset does not exist.
    #[error("ZFS pool `{pool}` (of dataset `{dataset}`) does not exist: is zfs-fuse running and the pool imported?")]
    PoolMissing { pool: String, dataset: String },
    /// A ZFS dataset has no usable directory.
    #[error("ZFS dataset `{dataset}` is not mounted (mountpoint {mountpoint:?}, mounted {mounted:?}): it has no directory to use")]
    NotMounted {
        dataset: String,
        mountpoint: String,
        mounted: String,
    },
    /// The filesystem does not exist.
    #[error("filesystem `{id}` ({location}) does not exist")]
    Missing { id: String, location: String },
    /// The snapshot does not exist.
    #[error("filesystem `{id}` ({location}) has no snapshot `{snapshot}`")]
    SnapshotMissing {
        id: String,
        location: String,
        snapshot: String,
    },
    /// The operation makes no sense for this kind of filesystem.
    #[error("filesystem `{id}` ({location}): {problem}")]
    Unsupported {
        id: String,
        location: String,
        problem: String,
    },
}

fn describe_code(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_string(),
    }
}

impl FsKind {
    /// Where the filesystem is, for messages: `zfs dataset rerootz/a`, `btrfs subvolume /srv/a`,
    /// `directory /srv/a`.
    pub fn location(&self) -> String {
        match self {
            FsKind::Zfs { dataset } => format!("zfs dataset {dataset}"),
            FsKind::Btrfs { path } => format!("btrfs subvolume {}", path.display()),
            FsKind::Dir { path } => format!("directory {}", path.display()),
        }
    }
}

impl fmt::Display for Filesystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "filesystem `{}` ({})", self.id, self.kind.location())
    }
}

impl Filesystem {
    /// Whether this kind of filesystem has snapshots (false for plain directories).
    pub fn supports_snapshots(&self) -> bool {
        !matches!(self.kind, FsKind::Dir { .. })
    }

    /// Whether reroot snapshots it: it has snapshots and is not transient (what
    /// [`Filesystem::snapshot`] does not skip).
    pub fn takes_snapshots(&self) -> bool {
        self.supports_snapshots() && !self.transient
    }

    /// Whether the filesystem exists. For btrfs, a path that exists but is not a subvolume is
    /// an error (it would silently lose snapshots); for a directory, a path that is not a
    /// directory is an error.
    pub async fn exists(&self) -> Result<bool, StorageError> {
        self.validate()?;
        match &self.kind {
            FsKind::Zfs { dataset } => zfs::exists(dataset).await,
            FsKind::Btrfs { path } => btrfs::exists(self, path).await,
            FsKind::Dir { path } => dir::exists(self, path).await,
        }
    }

    /// The host directory holding the filesystem's data: for ZFS the dataset's real mountpoint
    /// (an error if it is not mounted or has mountpoint `none`/`legacy`), otherwise the path.
    /// An error if the filesystem does not exist.
    pub async fn host_dir(&self) -> Result<PathBuf, StorageError> {
        self.validate()?;
        match &self.kind {
            FsKind::Zfs { dataset } => zfs::host_dir(self, dataset).await,
            FsKind::Btrfs { path } => {
                self.require_exists().await?;
                Ok(path.clone())
            }
            FsKind::Dir { path } => {
                self.require_exists().await?;
                Ok(path.clone())
            }
        }
    }

    /// Creates the filesystem if it does not exist (parents included); never touches an
    /// existing one.
    pub async fn create(&self) -> Result<Ensured, StorageError> {
        self.validate()?;
        match &self.kind {
            FsKind::Zfs { dataset } => zfs::create(self, dataset).await,
            FsKind::Btrfs { path } => btrfs::create(self, path).await,
            FsKind::Dir { path } => dir::create(self, path).await,
        }
    }

    /// Takes a read-only snapshot `name` of the filesystem. Idempotent: an existing snapshot of
    /// that name means done. Skipped for plain directories and transient filesystems.
    pub async fn snapshot(&self, name: &str) -> Result<SnapshotOutcome, StorageError> {
        self.validate()?;
        validate_snapshot_name(name)?;
        match &self.kind {
            FsKind::Dir { .. } => Ok(SnapshotOutcome::Skipped(SkipReason::PlainDirectory)),
            _ if self.transient => Ok(SnapshotOutcome::Skipped(SkipReason::Transient)),
            FsKind::Zfs { dataset } => zfs::snapshot(self, dataset, name).await,
            FsKind::Btrfs { path } => btrfs::snapshot(self, path, name).await,
        }
    }

    /// Whether snapshot `name` exists (false when the filesystem itself is absent, and always
    /// false for plain directories).
    pub async fn has_snapshot(&self, name: &str) -> Result<bool, StorageError> {
        self.validate()?;
        validate_snapshot_name(name)?;
        match &self.kind {
            FsKind::Zfs { dataset } => zfs::has_snapshot(dataset, name).await,
            FsKind::Btrfs { path } => btrfs::has_snapshot(path, name).await,
            FsKind::Dir { .. } => Ok(false),
        }
    }

    /// The names of the filesystem's snapshots, oldest first (empty when the filesystem is
    /// absent, and for plain directories).
    pub async fn list_snapshots(&self) -> Result<Vec<String>, StorageError> {
        self.validate()?;
        match &self.kind {
            FsKind::Zfs { dataset } => zfs::list_snapshots(dataset).await,
            FsKind::Btrfs { path } => btrfs::list_snapshots(path).await,
            FsKind::Dir { .. } => Ok(Vec::new()),
        }
    }

    /// Deletes snapshot `name` (for prune, or to undo a snapshot step). Never touches the live
    /// filesystem. An absent snapshot (or filesystem) means done.
    pub async fn delete_snapshot(&self, name: &str) -> Result<Removed, StorageError> {
        self.validate()?;
        validate_snapshot_name(name)?;
        match &self.kind {
            FsKind::Zfs { dataset } => zfs::delete_snapshot(dataset, name).await,
            FsKind::Btrfs { path } => btrfs::delete_snapshot(self, path, name).await,
            FsKind::Dir { .. } => Ok(Removed::AlreadyAbsent),
        }
    }

    /// Moves the filesystem to where `to` is (the same kind): `zfs rename -p` for a dataset
    /// (its snapshots and inherited mountpoint go with it), a rename on the same filesystem
    /// for a btrfs subvolume or a directory (its parent directories made first). Nothing is
    /// copied and nothing deleted: a move across filesystems is refused by the kernel
    /// (`EXDEV`) and reported. Idempotent: moved already (`to` there, this gone) is done;
    /// both there is an error, since neither may be overwritten.
    pub async fn move_to(&self, to: &Filesystem) -> Result<Moved, StorageError> {
        self.validate()?;
        to.validate()?;
        let here = self.exists().await?;
        let there = to.exists().await?;
        match (here, there) {
            (false, true) => return Ok(Moved::AlreadyMoved),
            (true, true) => {
                return Err(StorageError::Unsupported {
                    id: self.id.clone(),
                    location: self.kind.location(),
                    problem: format!(
                        "cannot move it to {}: that exists already (nothing is overwritten)",
                        to.kind.location()
                    ),
                })
            }
            (false, false) => return Err(self.missing()),
            (true, false) => {}
        }
        match (&self.kind, &to.kind) {
            (FsKind::Zfs { dataset: from }, FsKind::Zfs { dataset: dest }) => {
                zfs::rename(from, dest).await?;
            }
            (FsKind::Btrfs { path: from }, FsKind::Btrfs { path: dest })
            | (FsKind::Dir { path: from }, FsKind::Dir { path: dest }) => {
                let (from, dest) = (from.clone(), dest.clone());
                blocking(move || {
                    if let Some(parent) = dest.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(io_error("create the parent of", parent))?;
                    }
                    std::fs::rename(&from, &dest).map_err(io_error("move", &from))
                })
                .await?;
            }
            _ => {
                return Err(StorageError::Unsupported {
                    id: self.id.clone(),
                    location: self.kind.location(),
                    problem: format!(
                        "cannot move it to {}: another kind of filesystem",
                        to.kind.location()
                    ),
                })
            }
        }
        Ok(Moved::Moved)
    }

    /// Makes the filesystem's content that of snapshot `name`. Only for `undo --data`, with the
    /// instance stopped.
    ///
    /// - ZFS: `zfs rollback -r`, which **discards** the changes made since the snapshot and
    ///   destroys the snapshots taken after it.
    /// - btrfs: a writable copy of the snapshot replaces the subvolume; the replaced subvolume
    ///   is kept, made read-only, as snapshot `pre-rollback-<unix time>` (returned in
    ///   `kept_as`). Nothing is deleted.
    /// - plain directories: an error ([`StorageError::Unsupported`]).
    /// - transient filesystems: skipped.
    pub async fn rollback(&self, name: &str) -> Result<RollbackOutcome, StorageError> {
        self.validate()?;
        validate_snapshot_name(name)?;
        match &self.kind {
            FsKind::Dir { path } => Err(StorageError::Unsupported {
                id: self.id.clone(),
                location: self.kind.location(),
                problem: format!(
                    "a plain directory has no snapshots: cannot roll {} back to `{name}`",
                    path.display()
                ),
            }),
            _ if self.transient => Ok(RollbackOutcome::Skipped(SkipReason::Transient)),
            FsKind::Zfs { dataset } => zfs::rollback(self, dataset, name).await,
            FsKind::Btrfs { path } => btrfs::rollback(self, path, name).await,
        }
    }

    /// Creates this filesystem as a copy-on-write clone of snapshot `snapshot` of `source`
    /// (the same filesystem of the device-origin instance). An existing filesystem is left
    /// untouched ([`Ensured::AlreadyExisted`]). A transient filesystem is created empty instead.
    /// Plain directories cannot be cloned.
    pub async fn clone_from(
        &self,
        source: &Filesystem,
        snapshot: &str,
    ) -> Result<Ensured, StorageError> {
        self.validate()?;
        source.validate()?;
        validate_snapshot_name(snapshot)?;
        if let FsKind::Dir { .. } = self.kind {
            return Err(StorageError::Unsupported {
                id: self.id.clone(),
                location: self.kind.location(),
                problem: "cannot clone a plain directory".to_string(),
            });
        }
        if self.transient {
            return self.create().await;
        }
        match (&self.kind, &source.kind) {
            (FsKind::Zfs { dataset }, FsKind::Zfs { dataset: from }) => {
                zfs::clone_from(self, dataset, from, snapshot).await
            }
            (FsKind::Btrfs { path }, FsKind::Btrfs { path: from }) => {
                btrfs::clone_from(self, path, source, from, snapshot).await
            }
            _ => Err(StorageError::Unsupported {
                id: self.id.clone(),
                location: self.kind.location(),
                problem: format!("cannot clone from {source}: not the same kind of filesystem"),
            }),
        }
    }

    /// **Deletes the filesystem and all its data and snapshots.** Only for the `destroy`
    /// command. ZFS: `zfs destroy -r`; btrfs: its snapshots, then the subvolume; directory:
    /// removed recursively. An absent filesystem means done.
    pub async fn destroy(&self) -> Result<Removed, StorageError> {
        self.validate()?;
        tracing::info!(filesystem = %self, "destroying filesystem and its data");
        match &self.kind {
            FsKind::Zfs { dataset } => zfs::destroy(dataset).await,
            FsKind::Btrfs { path } => btrfs::destroy(self, path).await,
            FsKind::Dir { path } => dir::destroy(path).await,
        }
    }

    /// Checks the description: a valid dataset name or an absolute path, valid properties.
    pub fn validate(&self) -> Result<(), StorageError> {
        let invalid = |problem: String| StorageError::Invalid {
            what: format!("filesystem `{}`", self.id),
            problem,
        };
        match &self.kind {
            FsKind::Zfs { dataset } => validate_dataset(dataset).map_err(invalid)?,
            FsKind::Btrfs { path } => {
                validate_path(path).map_err(invalid)?;
                let base = file_name(path).map_err(invalid)?;
                if base.contains('@') || base.starts_with('.') {
                    return Err(invalid(format!(
                        "btrfs subvolume name {base:?} must not contain '@' or start with '.' (reserved for its snapshots)"
                    )));
                }
            }
            FsKind::Dir { path } => validate_path(path).map_err(invalid)?,
        }
        for (key, value) in &self.zfs_properties {
            if key.is_empty() || key.contains('=') || key.starts_with('-') {
                return Err(invalid(format!("bad zfs property name {key:?}")));
            }
            if value.contains('\n') {
                return Err(invalid(format!(
                    "zfs property {key} has a multi-line value"
                )));
            }
        }
        Ok(())
    }

    async fn require_exists(&self) -> Result<(), StorageError> {
        if self.exists().await? {
            Ok(())
        } else {
            Err(self.missing())
        }
    }

    fn missing(&self) -> StorageError {
        StorageError::Missing {
            id: self.id.clone(),
            location: self.kind.location(),
        }
    }
}

/// Snapshot names: letters, digits and `_ . : -`, not starting with `-` or `.`, at most 200
/// characters.
pub fn validate_snapshot_name(name: &str) -> Result<(), StorageError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
    if ok {
        Ok(())
    } else {
        Err(StorageError::Invalid {
            what: "snapshot name".to_string(),
            problem: format!(
                "{name:?}: use letters, digits and _ . : - (not first: - or .), at most 200 characters"
            ),
        })
    }
}

fn validate_dataset(dataset: &str) -> Result<(), String> {
    if dataset.is_empty() {
        return Err("empty ZFS dataset name".to_string());
    }
    for component in dataset.split('/') {
        let ok = !component.is_empty()
            && component != "."
            && component != ".."
            && !component.starts_with('-')
            && component
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
        if !ok {
            return Err(format!(
                "ZFS dataset name {dataset:?}: each /-separated part must be letters, digits and _ . : - (not starting with -)"
            ));
        }
    }
    Ok(())
}

fn validate_path(path: &Path) -> Result<(), String> {
    if !path.is_absolute() {
        return Err(format!("{} is not an absolute path", path.display()));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(format!("{} must not contain . or ..", path.display()));
    }
    if path.parent().is_none() {
        return Err("the root directory / cannot be a filesystem".to_string());
    }
    Ok(())
}

fn file_name(path: &Path) -> Result<&str, String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} has no UTF-8 final component", path.display()))
}

/// Runs a blocking filesystem call off the async runtime.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|join| {
        Err(StorageError::Io {
            action: "run blocking storage task",
            path: PathBuf::new(),
            source: std::io::Error::other(join.to_string()),
        })
    })
}

pub(crate) fn io_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |source| StorageError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs(kind: FsKind) -> Filesystem {
        Filesystem {
            id: "data".to_string(),
            kind,
            transient: false,
            zfs_properties: BTreeMap::new(),
        }
    }

    #[test]
    fn dataset_names_are_checked() {
        for good in ["rerootz", "rerootz/a/b", "pool/x_1.2:3-4"] {
            assert!(validate_dataset(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/rerootz/a",
            "rerootz/",
            "rerootz//a",
            "rerootz/a@s",
            "rerootz/-o",
            "-pool",
            "pool/../x",
            "pool/a b",
        ] {
            assert!(validate_dataset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn snapshot_names_are_checked() {
        for good in ["s1", "reroot-20240101T000000Z", "a.b:c_d"] {
            assert!(validate_snapshot_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-r", ".hidden", "a/b", "a@b", "a b", &"x".repeat(201)] {
            let err = validate_snapshot_name(bad).unwrap_err();
            assert!(err.to_string().contains("snapshot name"), "{bad}: {err}");
        }
    }

    #[test]
    fn filesystem_descriptions_are_checked() {
        assert!(fs(FsKind::Dir {
            path: "/srv/a".into()
        })
        .validate()
        .is_ok());
        let err = fs(FsKind::Dir {
            path: "srv/a".into(),
        })
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("filesystem `data`"), "{err}");
        assert!(fs(FsKind::Dir { path: "/".into() }).validate().is_err());
        assert!(fs(FsKind::Dir {
            path: "/srv/../etc".into()
        })
        .validate()
        .is_err());
        assert!(fs(FsKind::Btrfs {
            path: "/srv/a@b".into()
        })
        .validate()
        .is_err());
        let mut with_props = fs(FsKind::Zfs {
            dataset: "p/a".into(),
        });
        with_props
            .zfs_properties
            .insert("a=b".to_string(), "c".to_string());
        assert!(with_props.validate().is_err());
    }

    #[test]
    fn command_failure_message_names_argv_code_and_stderr() {
        let err = StorageError::CommandFailed {
            argv: "zfs snapshot p/a@s".to_string(),
            code: Some(1),
            stderr: "cannot open 'p/a': dataset does not exist".to_string(),
        };
        assert_eq!(
            err.to_string(),
            "`zfs snapshot p/a@s` failed (exit code 1): cannot open 'p/a': dataset does not exist"
        );
    }
}
