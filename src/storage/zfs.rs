//! ZFS datasets, through the `zfs` and `zpool` commands (zfs-fuse on the testbed).
//!
//! The directory of a dataset is its mountpoint as ZFS reports it, never `/<dataset>`.
//! `zfs create -p` succeeds on an existing dataset, so [`create`] checks existence first.
//! zfs-fuse sometimes answers "dataset is busy" to a destroy, unmount or rename right after a
//! mount or unmount; those are retried a few times for that message only.

use std::path::PathBuf;
use std::time::Duration;

use super::command::{self, CommandOutput, FS_COMMAND_TIMEOUT};
use super::host::Host;
use super::{Ensured, Filesystem, Removed, RollbackOutcome, SnapshotOutcome, StorageError};

const BUSY_RETRIES: u32 = 10;
const BUSY_PAUSE: Duration = Duration::from_millis(300);

async fn zfs<const N: usize>(args: [&str; N]) -> Result<CommandOutput, StorageError> {
    command::run("zfs", args, FS_COMMAND_TIMEOUT).await
}

async fn zfs_vec(args: Vec<String>) -> Result<CommandOutput, StorageError> {
    command::run("zfs", args, FS_COMMAND_TIMEOUT).await
}

/// Whether a failed command said that its dataset, snapshot or pool does not exist.
fn says_missing(err: &StorageError) -> bool {
    matches!(err, StorageError::CommandFailed { stderr, .. }
        if stderr.contains("does not exist") || stderr.contains("no such pool"))
}

fn says_busy(err: &StorageError) -> bool {
    matches!(err, StorageError::CommandFailed { stderr, .. } if stderr.contains("dataset is busy"))
}

fn pool_of(dataset: &str) -> &str {
    dataset.split('/').next().unwrap_or(dataset)
}

/// Errors with [`StorageError::PoolMissing`] if the dataset's pool does not exist.
pub async fn check_pool(dataset: &str) -> Result<(), StorageError> {
    check_pool_on(&Host::local(), dataset).await
}

async fn run_on(host: &Host, args: Vec<String>) -> Result<CommandOutput, StorageError> {
    let (program, args) = host.argv("zfs", args.into_iter().map(Into::into).collect());
    command::run(&program, args, FS_COMMAND_TIMEOUT).await
}

async fn check_pool_on(host: &Host, dataset: &str) -> Result<(), StorageError> {
    let pool = pool_of(dataset);
    let (program, args) = host.argv(
        "zpool",
        vec![
            "list".into(),
            "-H".into(),
            "-o".into(),
            "name".into(),
            pool.into(),
        ],
    );
    match command::run(&program, args, FS_COMMAND_TIMEOUT).await {
        Ok(_) => Ok(()),
        Err(StorageError::CommandFailed { stderr, .. }) if stderr.contains("no such pool") => {
            Err(StorageError::PoolMissing {
                pool: pool.to_string(),
                dataset: dataset.to_string(),
            })
        }
        Err(other) => Err(other),
    }
}

/// Whether the dataset exists; a missing pool is an error, not "absent".
pub async fn exists(dataset: &str) -> Result<bool, StorageError> {
    exists_on(&Host::local(), dataset).await
}

/// [`exists`] on any host.
pub async fn exists_on(host: &Host, dataset: &str) -> Result<bool, StorageError> {
    match run_on(
        host,
        vec![
            "list".into(),
            "-H".into(),
            "-o".into(),
            "name".into(),
            dataset.into(),
        ],
    )
    .await
    {
        Ok(_) => Ok(true),
        Err(err) if says_missing(&err) => {
            check_pool_on(host, dataset).await?;
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

/// A snapshot with its GUID: two snapshots of the same name are the same data only if their
/// GUIDs match (a `zfs send` carries the GUID to the received snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotId {
    pub name: String,
    pub guid: String,
}

/// The snapshots of `dataset` on `host`, oldest first, with their GUIDs; `None` when the
/// dataset does not exist. (zfs-fuse's `zfs list` has no `-p` and prints a GUID rounded, so
/// the GUIDs come from one `zfs get -p`.)
pub async fn snapshots_on(
    host: &Host,
    dataset: &str,
) -> Result<Option<Vec<SnapshotId>>, StorageError> {
    if !exists_on(host, dataset).await? {
        return Ok(None);
    }
    let listed = run_on(
        host,
        [
            "list", "-H", "-t", "snapshot", "-o", "name", "-s", "creation", "-d", "1", dataset,
        ]
        .map(String::from)
        .to_vec(),
    )
    .await?;
    let names: Vec<String> = listed
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(&format!("{dataset}@")))
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let mut args: Vec<String> = ["get", "-H", "-p", "-o", "name,value", "guid"]
        .map(String::from)
        .to_vec();
    args.extend(names.iter().cloned());
    let got = run_on(host, args).await?;
    let guids: std::collections::HashMap<&str, &str> = got
        .stdout
        .lines()
        .filter_map(|l| l.trim().split_once('\t'))
        .collect();
    names
        .iter()
        .map(|full| {
            let guid = guids
                .get(full.as_str())
                .ok_or_else(|| StorageError::Invalid {
                    what: format!("zfs get guid {full}"),
                    problem: "no GUID in its answer".to_string(),
                })?;
            Ok(SnapshotId {
                name: full[dataset.len() + 1..].to_string(),
                guid: guid.trim().to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Turns access-time updates off on `dataset` on `host` (idempotent). A copy's target must
/// stay as its last snapshot left it for the next incremental `zfs receive`, which refuses
/// ("destination has been modified since most recent snapshot") a dataset that merely had a
/// file read while `atime` was on; a real write still makes it refuse, as it must.
pub async fn atime_off_on(host: &Host, dataset: &str) -> Result<(), StorageError> {
    run_on(host, vec!["set".into(), "atime=off".into(), dataset.into()])
        .await
        .map(|_| ())
}

/// Mounts `dataset` on `host` again if it is mounted. After an incremental `zfs receive` into
/// a mounted dataset, zfs-fuse goes on serving the files as they were before it (seen on the
/// testbed: the old content until the next mount), where kernel ZFS shows the new ones. An
/// unmount refused (the dataset busy) is only warned about: kernel ZFS needs none.
pub async fn refresh_mount_on(host: &Host, dataset: &str) -> Result<(), StorageError> {
    let out = run_on(
        host,
        vec![
            "get".into(),
            "-H".into(),
            "-o".into(),
            "value".into(),
            "mounted".into(),
            dataset.into(),
        ],
    )
    .await?;
    if out.stdout.trim() != "yes" {
        return Ok(());
    }
    if let Err(err) = run_on(host, vec!["unmount".into(), dataset.into()]).await {
        tracing::warn!(dataset, %err, "could not remount the copy after an incremental receive");
        return Ok(());
    }
    run_on(host, vec!["mount".into(), dataset.into()])
        .await
        .map(|_| ())
}

/// Takes `dataset@name` on `host` unless it exists.
pub async fn snapshot_on(
    host: &Host,
    dataset: &str,
    name: &str,
) -> Result<SnapshotOutcome, StorageError> {
    let full = format!("{dataset}@{name}");
    match run_on(
        host,
        vec![
            "list".into(),
            "-H".into(),
            "-t".into(),
            "snapshot".into(),
            "-o".into(),
            "name".into(),
            full.clone(),
        ],
    )
    .await
    {
        Ok(_) => return Ok(SnapshotOutcome::AlreadyExisted),
        Err(err) if says_missing(&err) => {}
        Err(err) => return Err(err),
    }
    match run_on(host, vec!["snapshot".into(), full]).await {
        Ok(_) => Ok(SnapshotOutcome::Taken),
        Err(StorageError::CommandFailed { stderr, .. }) if stderr.contains("already exists") => {
            Ok(SnapshotOutcome::AlreadyExisted)
        }
        Err(err) => Err(err),
    }
}

pub(super) async fn host_dir(fs: &Filesystem, dataset: &str) -> Result<PathBuf, StorageError> {
    let out = match zfs(["get", "-H", "-o", "value", "mountpoint,mounted", dataset]).await {
        Ok(out) => out,
        Err(err) if says_missing(&err) => {
            check_pool(dataset).await?;
            return Err(fs.missing());
        }
        Err(err) => return Err(err),
    };
    let mut lines = out.stdout.lines().map(str::trim);
    let mountpoint = lines.next().unwrap_or("").to_string();
    let mounted = lines.next().unwrap_or("").to_string();
    if !mountpoint.starts_with('/') || mounted != "yes" {
        return Err(StorageError::NotMounted {
            dataset: dataset.to_string(),
            mountpoint,
            mounted,
        });
    }
    Ok(PathBuf::from(mountpoint))
}

fn property_args(fs: &Filesystem) -> Vec<String> {
    fs.zfs_properties
        .iter()
        .flat_map(|(k, v)| ["-o".to_string(), format!("{k}={v}")])
        .collect()
}

pub(super) async fn create(fs: &Filesystem, dataset: &str) -> Result<Ensured, StorageError> {
    if exists(dataset).await? {
        return Ok(Ensured::AlreadyExisted);
    }
    let mut args = vec!["create".to_string(), "-p".to_string()];
    args.extend(property_args(fs));
    args.push(dataset.to_string());
    zfs_vec(args).await?;
    Ok(Ensured::Created)
}

pub(super) async fn snapshot(
    fs: &Filesystem,
    dataset: &str,
    name: &str,
) -> Result<SnapshotOutcome, StorageError> {
    if has_snapshot(dataset, name).await? {
        return Ok(SnapshotOutcome::AlreadyExisted);
    }
    let full = format!("{dataset}@{name}");
    match zfs(["snapshot", &full]).await {
        Ok(_) => Ok(SnapshotOutcome::Taken),
        Err(StorageError::CommandFailed { stderr, .. }) if stderr.contains("already exists") => {
            Ok(SnapshotOutcome::AlreadyExisted)
        }
        Err(err) if says_missing(&err) => {
            check_pool(dataset).await?;
            Err(fs.missing())
        }
        Err(err) => Err(err),
    }
}

pub(super) async fn has_snapshot(dataset: &str, name: &str) -> Result<bool, StorageError> {
    let full = format!("{dataset}@{name}");
    match zfs(["list", "-H", "-t", "snapshot", "-o", "name", &full]).await {
        Ok(_) => Ok(true),
        Err(err) if says_missing(&err) => {
            check_pool(dataset).await?;
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

pub(super) async fn list_snapshots(dataset: &str) -> Result<Vec<String>, StorageError> {
    let out = match zfs([
        "list", "-H", "-t", "snapshot", "-o", "name", "-s", "creation", "-d", "1", dataset,
    ])
    .await
    {
        Ok(out) => out,
        Err(err) if says_missing(&err) => {
            check_pool(dataset).await?;
            return Ok(Vec::new());
        }
        Err(err) => return Err(err),
    };
    let prefix = format!("{dataset}@");
    Ok(out
        .stdout
        .lines()
        .filter_map(|line| line.trim().strip_prefix(&prefix))
        .map(str::to_string)
        .collect())
}

/// Runs `zfs <args...>`, retrying while zfs-fuse says "dataset is busy" (it says so for a
/// while after a mount or unmount of the dataset, with nothing else using it). Only for
/// commands that change nothing when they fail, so a retry is always safe.
async fn zfs_busy_retry(args: &[&str]) -> Result<CommandOutput, StorageError> {
    let mut attempt = 1;
    loop {
        match command::run("zfs", args.to_vec(), FS_COMMAND_TIMEOUT).await {
            Ok(out) => return Ok(out),
            Err(err) if says_busy(&err) && attempt < BUSY_RETRIES => {
                tracing::debug!(attempt, ?args, "zfs: dataset is busy, retrying");
                attempt += 1;
                tokio::time::sleep(BUSY_PAUSE).await;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Runs `zfs destroy <args...>`, retrying while zfs-fuse says "dataset is busy".
async fn destroy_with_retry(args: &[&str]) -> Result<(), StorageError> {
    let argv: Vec<&str> = std::iter::once("destroy")
        .chain(args.iter().copied())
        .collect();
    zfs_busy_retry(&argv).await.map(|_| ())
}

pub(super) async fn delete_snapshot(dataset: &str, name: &str) -> Result<Removed, StorageError> {
    if !has_snapshot(dataset, name).await? {
        return Ok(Removed::AlreadyAbsent);
    }
    // The argument always names a snapshot (`dataset@name`): this cannot destroy the dataset.
    let full = format!("{dataset}@{name}");
    match destroy_with_retry(&[&full]).await {
        Ok(()) => Ok(Removed::Removed),
        Err(err) if says_missing(&err) => Ok(Removed::AlreadyAbsent),
        Err(err) => Err(err),
    }
}

pub(super) async fn rollback(
    fs: &Filesystem,
    dataset: &str,
    name: &str,
) -> Result<RollbackOutcome, StorageError> {
    if !exists(dataset).await? {
        return Err(fs.missing());
    }
    if !has_snapshot(dataset, name).await? {
        return Err(StorageError::SnapshotMissing {
            id: fs.id.clone(),
            location: fs.kind.location(),
            snapshot: name.to_string(),
        });
    }
    let full = format!("{dataset}@{name}");
    zfs(["rollback", "-r", &full]).await?;
    Ok(RollbackOutcome::RolledBack { kept_as: None })
}

/// `zfs rename -p FROM TO`: the dataset, its children and snapshots under the new name (its
/// missing parents created). zfs-fuse refuses to rename a mounted dataset ("dataset is busy",
/// seen on the testbed even with nothing using it), where kernel ZFS remounts it itself: then
/// it is unmounted, renamed and mounted again under its new name.
pub(super) async fn rename(from: &str, to: &str) -> Result<(), StorageError> {
    match zfs(["rename", "-p", from, to]).await {
        Ok(_) => return Ok(()),
        Err(err) if says_busy(&err) => {
            tracing::debug!(from, to, "zfs rename: dataset is busy; unmounting it first");
        }
        Err(err) => return Err(err),
    }
    // Unmounted, zfs-fuse can still say "busy" for a moment (seen in CI on an undo that moved
    // a dataset back right after the resume had moved and mounted it): retried.
    zfs_busy_retry(&["unmount", from]).await?;
    if let Err(err) = zfs_busy_retry(&["rename", "-p", from, to]).await {
        // Back as it was, mounted, before the failure is reported.
        let _ = zfs(["mount", from]).await;
        return Err(err);
    }
    zfs(["mount", to]).await?;
    Ok(())
}

pub(super) async fn clone_from(
    fs: &Filesystem,
    dataset: &str,
    source_dataset: &str,
    snapshot: &str,
) -> Result<Ensured, StorageError> {
    if exists(dataset).await? {
        return Ok(Ensured::AlreadyExisted);
    }
    let mut args = vec!["clone".to_string(), "-p".to_string()];
    args.extend(property_args(fs));
    args.push(format!("{source_dataset}@{snapshot}"));
    args.push(dataset.to_string());
    zfs_vec(args).await?;
    Ok(Ensured::Created)
}

pub(super) async fn destroy(dataset: &str) -> Result<Removed, StorageError> {
    if !exists(dataset).await? {
        return Ok(Removed::AlreadyAbsent);
    }
    match destroy_with_retry(&["-r", dataset]).await {
        Ok(()) => Ok(Removed::Removed),
        Err(err) if says_missing(&err) => Ok(Removed::AlreadyAbsent),
        Err(err) => Err(err),
    }
}
