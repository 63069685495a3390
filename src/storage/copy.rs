//! Copying a filesystem's snapshot into another filesystem, on this machine or over `ssh`:
//! `zfs send | zfs receive`, `btrfs send | btrfs receive`, `tar | tar` for plain directories.
//!
//! The two sides are two processes (each an argument vector, see [`Host`]) joined by this
//! one, which copies the sender's stdout into the receiver's stdin and so can bound a stall;
//! no shell pipe is ever built.
//!
//! What a copy may do to the target is decided by [`mode`], read-only, from the live state:
//!
//! - absent: a full copy, the target arrives with the snapshot;
//! - ZFS, present, and its newest snapshot is one of the source's (same GUID): an incremental
//!   copy from that snapshot. `zfs receive` runs without `-F`, so a target written to since
//!   that snapshot is refused by ZFS itself ("destination has been modified"): nothing on the
//!   target is ever rolled back or overwritten;
//! - ZFS, present with the snapshot already (same GUID): up to date, nothing to send;
//! - anything else present (a btrfs subvolume, a directory, a ZFS dataset that shares no
//!   snapshot with the source or has a newer one of its own) is refused.
//!
//! Incremental btrfs copies are not made: `btrfs receive -p` needs the target's parent to be a
//! received subvolume, and the target's live subvolume would then have to be replaced by a
//! snapshot of the new one, discarding what was written to it.

use std::ffi::OsString;
use std::process::Stdio;

use serde::{Deserialize, Serialize};

use super::archive::{self, Input, SEND_TIMEOUT};
use super::command::FS_COMMAND_TIMEOUT;
use super::host::Host;
use super::{btrfs, zfs, Filesystem, FsKind, StorageError};

/// What a copy of one filesystem does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Mode {
    /// The target is absent: everything up to the snapshot.
    Full,
    /// The target's newest snapshot `base` is the source's: only what changed since.
    Incremental { base: String },
    /// The target has the snapshot already.
    UpToDate,
    /// A btrfs subvolume or directory is at the target (refused by a check; after a full copy
    /// of this run it is the copy).
    Present,
}

impl Mode {
    /// For people: `full`, `incremental from @base`, `up to date`, `present`.
    pub fn describe(&self) -> String {
        match self {
            Mode::Full => "full".to_string(),
            Mode::Incremental { base } => format!("incremental from @{base}"),
            Mode::UpToDate => "up to date".to_string(),
            Mode::Present => "present".to_string(),
        }
    }
}

fn unsupported(fs: &Filesystem, problem: String) -> StorageError {
    StorageError::Unsupported {
        id: fs.id.clone(),
        location: fs.kind.location(),
        problem,
    }
}

fn kind_word(kind: &FsKind) -> &'static str {
    match kind {
        FsKind::Zfs { .. } => "a ZFS dataset",
        FsKind::Btrfs { .. } => "a btrfs subvolume",
        FsKind::Dir { .. } => "a plain directory",
    }
}

/// Checks that `source` on `from` can be copied into `target` on `to` and says how, reading
/// the live state only. `snapshot` is what is copied; it may not exist yet on the source (the
/// run takes it), and then the target cannot have it either.
pub async fn mode(
    source: &Filesystem,
    from: &Host,
    target: &Filesystem,
    to: &Host,
    snapshot: &str,
) -> Result<Mode, StorageError> {
    source.validate()?;
    target.validate()?;
    super::validate_snapshot_name(snapshot)?;
    if std::mem::discriminant(&source.kind) != std::mem::discriminant(&target.kind) {
        return Err(unsupported(
            target,
            format!(
                "the source {} is {}, the target {}: a copy keeps the kind",
                source.kind.location(),
                kind_word(&source.kind),
                kind_word(&target.kind)
            ),
        ));
    }
    if from == to && source.kind == target.kind {
        return Err(unsupported(
            target,
            "is the source itself: give another target (--name, --from-config, a host)".to_string(),
        ));
    }
    match (&source.kind, &target.kind) {
        (FsKind::Zfs { dataset: src }, FsKind::Zfs { dataset: dst }) => {
            let Some(theirs) = zfs::snapshots_on(from, src).await? else {
                return Err(StorageError::Missing {
                    id: source.id.clone(),
                    location: format!("{src} on {}", from.describe()),
                });
            };
            let Some(ours) = zfs::snapshots_on(to, dst).await? else {
                return Ok(Mode::Full);
            };
            zfs_mode(target, &theirs, &ours, snapshot)
        }
        _ => {
            for (fs, host) in [(source, from), (target, to)] {
                if !host.is_local() {
                    return Err(unsupported(
                        fs,
                        format!(
                            "{} is copied on this machine only; over ssh, ZFS datasets are",
                            kind_word(&fs.kind)
                        ),
                    ));
                }
            }
            if !source.exists().await? {
                return Err(source.missing());
            }
            Ok(if target.exists().await? {
                Mode::Present
            } else {
                Mode::Full
            })
        }
    }
}

/// The ZFS rule of [`mode`], on the two snapshot lists (oldest first).
fn zfs_mode(
    target: &Filesystem,
    source: &[zfs::SnapshotId],
    present: &[zfs::SnapshotId],
    snapshot: &str,
) -> Result<Mode, StorageError> {
    let on_source = |s: &zfs::SnapshotId| source.iter().any(|x| x == s);
    if let Some(there) = present.iter().find(|s| s.name == snapshot) {
        return if on_source(there) {
            Ok(Mode::UpToDate)
        } else {
            Err(unsupported(
                target,
                format!("has a snapshot @{snapshot} that is not the source's (another GUID): nothing is overwritten"),
            ))
        };
    }
    let Some(newest) = present.last() else {
        return Err(unsupported(
            target,
            "exists and has no snapshot, so it shares none with the source: nothing is \
             overwritten (copy to a new dataset, or remove this one)"
                .to_string(),
        ));
    };
    if on_source(newest) {
        return Ok(Mode::Incremental {
            base: newest.name.clone(),
        });
    }
    match present.iter().rev().find(|s| on_source(s)) {
        Some(common) => Err(unsupported(
            target,
            format!(
                "its newest snapshot @{} is not the source's; the newest they share is @{}: \
                 nothing is overwritten (delete the newer snapshots on the target first)",
                newest.name, common.name
            ),
        )),
        None => Err(unsupported(
            target,
            "exists and shares no snapshot with the source: nothing is overwritten (copy to a \
             new dataset, or remove this one)"
                .to_string(),
        )),
    }
}

/// Takes `snapshot` of `source` on `from` unless it has it; a plain directory has none
/// (`Ok(false)`). Returns whether this call took it.
pub async fn take_snapshot(
    source: &Filesystem,
    from: &Host,
    snapshot: &str,
) -> Result<bool, StorageError> {
    let outcome = match &source.kind {
        FsKind::Zfs { dataset } => zfs::snapshot_on(from, dataset, snapshot).await?,
        _ => source.snapshot(snapshot).await?,
    };
    Ok(outcome == super::SnapshotOutcome::Taken)
}

/// The argv that sends `source` at `snapshot` (from `base` for an incremental copy).
fn send_argv(
    source: &Filesystem,
    snapshot: &str,
    base: Option<&str>,
) -> (&'static str, Vec<OsString>) {
    match (&source.kind, base) {
        (FsKind::Zfs { dataset }, Some(base)) => (
            "zfs",
            vec![
                "send".into(),
                "-i".into(),
                format!("{dataset}@{base}").into(),
                format!("{dataset}@{snapshot}").into(),
            ],
        ),
        (FsKind::Btrfs { path }, _) => (
            "btrfs",
            vec![
                "send".into(),
                btrfs::snapshot_path(path, snapshot).into_os_string(),
            ],
        ),
        _ => archive::send_argv(source, snapshot),
    }
}

/// Copies `source` at `snapshot` into `target` as `mode` says (see [`mode`]); `tag` names
/// the staging place of a btrfs or directory receive (the run), as for an import.
pub async fn copy(
    source: &Filesystem,
    from: &Host,
    target: &Filesystem,
    to: &Host,
    snapshot: &str,
    mode: &Mode,
    tag: &str,
) -> Result<(), StorageError> {
    let base = match mode {
        Mode::Full => None,
        Mode::Incremental { base } => Some(base.as_str()),
        Mode::UpToDate | Mode::Present => return Ok(()),
    };
    if let FsKind::Btrfs { path } = &target.kind {
        // Killed between receiving and making the live subvolume: only the last part is left.
        if tokio::fs::metadata(btrfs::snapshot_path(path, snapshot))
            .await
            .is_ok()
        {
            return archive::receive_input(
                target,
                snapshot,
                Input::Received,
                SEND_TIMEOUT,
                tag,
                to,
            )
            .await;
        }
    }
    let (program, args) = send_argv(source, snapshot, base);
    let (program, args) = from.argv(program, args);
    let argv = archive::argv_text(&program, &args);
    tracing::debug!(%argv, to = %target.kind.location(), "copying filesystem");
    let mut sender = archive::spawn_streaming(&program, &args, Stdio::null(), &argv)?;
    let stdout = sender.stdout.take().expect("piped stdout");
    let stderr = archive::collect_stderr(&mut sender);
    let received = archive::receive_input(
        target,
        snapshot,
        Input::Stream(stdout),
        SEND_TIMEOUT,
        tag,
        to,
    )
    .await;
    // The receiver has read to the end (the sender closed its output: it is exiting) or has
    // failed, and then the sender is killed rather than waited for (it may be stalled).
    if received.is_err() {
        let _ = sender.start_kill();
    }
    let sent = match tokio::time::timeout(FS_COMMAND_TIMEOUT, sender.wait()).await {
        Ok(sent) => sent.map_err(|source| StorageError::Spawn {
            argv: argv.clone(),
            source,
        })?,
        Err(_) => {
            return Err(StorageError::Timeout {
                argv: format!("{argv} (after its stream ended)"),
                timeout: FS_COMMAND_TIMEOUT,
            })
        }
    };
    let stderr = stderr.text().await.trim().to_string();
    match received {
        // The receiver's error says what the target refused; the sender's, if any, is then
        // only its broken pipe.
        Err(e) => Err(e),
        Ok(()) if !sent.success() => Err(StorageError::CommandFailed {
            argv,
            code: sent.code(),
            stderr,
        }),
        Ok(()) => match (&target.kind, mode) {
            (FsKind::Zfs { dataset }, Mode::Incremental { .. }) => {
                zfs::refresh_mount_on(to, dataset).await
            }
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn zfs_fs(dataset: &str) -> Filesystem {
        Filesystem {
            id: "data".into(),
            kind: FsKind::Zfs {
                dataset: dataset.into(),
            },
            transient: false,
            zfs_properties: BTreeMap::new(),
        }
    }

    fn snaps(list: &[(&str, &str)]) -> Vec<zfs::SnapshotId> {
        list.iter()
            .map(|(n, g)| zfs::SnapshotId {
                name: n.to_string(),
                guid: g.to_string(),
            })
            .collect()
    }

    #[test]
    fn the_zfs_rule_sends_only_onto_a_target_whose_newest_snapshot_is_the_sources() {
        let t = zfs_fs("b/web");
        let source = snaps(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let ok = |present: &[(&str, &str)], snapshot: &str| {
            zfs_mode(&t, &source, &snaps(present), snapshot)
        };
        assert_eq!(
            ok(&[("a", "1")], "c").unwrap(),
            Mode::Incremental { base: "a".into() }
        );
        assert_eq!(
            ok(&[("a", "1"), ("b", "2")], "c").unwrap(),
            Mode::Incremental { base: "b".into() }
        );
        assert_eq!(
            ok(&[("a", "1"), ("b", "2"), ("c", "3")], "c").unwrap(),
            Mode::UpToDate
        );
        // The snapshot not taken yet on the source (the run takes it): the same rule.
        assert_eq!(
            ok(&[("b", "2")], "d").unwrap(),
            Mode::Incremental { base: "b".into() }
        );
        let refused = |present: &[(&str, &str)], snapshot: &str, says: &str| {
            let e = ok(present, snapshot).unwrap_err().to_string();
            assert!(e.contains(says), "{present:?} {snapshot}: {e}");
            assert!(e.contains("nothing is overwritten"), "{e}");
        };
        refused(&[], "c", "has no snapshot");
        refused(&[("a", "9")], "c", "shares no snapshot");
        refused(&[("a", "1"), ("x", "8")], "c", "newest they share is @a");
        refused(&[("c", "7")], "c", "another GUID");
    }

    #[tokio::test]
    async fn a_copy_keeps_the_kind_and_is_never_onto_itself() {
        let dir = Filesystem {
            kind: FsKind::Dir {
                path: "/srv/web".into(),
            },
            ..zfs_fs("x")
        };
        let e = mode(&zfs_fs("a/web"), &Host::local(), &dir, &Host::local(), "s")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("a copy keeps the kind"), "{e}");
        let e = mode(&dir, &Host::local(), &dir, &Host::local(), "s")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("is the source itself"), "{e}");
        let far = Host::ssh("backup", vec![]).unwrap();
        let e = mode(&dir, &Host::local(), &dir, &far, "s")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("on this machine only"), "{e}");
    }
}
