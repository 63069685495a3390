//! The steps of a `reroot snapshot` run: a named snapshot of each instance's root (what a
//! template's `origin` names) and of its non-transient ZFS and btrfs filesystems.
//!
//! | step | effect | undo |
//! |---|---|---|
//! | `survey` | records which of those snapshots exist already | nothing |
//! | `snapshot-root` | takes the LXD snapshot of the root, if missing | deletes it, unless it existed before the run |
//! | `snapshot-fs` | snapshots the filesystems, if missing (skipped with `--root-only`) | deletes those that did not exist before the run |
//!
//! `survey` is recorded before anything is taken, so after a crash at any point the undo still
//! knows which snapshots the run made and never deletes one it found.

use serde::{Deserialize, Serialize};

use super::{RunEnv, SnapshotRequest};
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd::OptionalExt;
use crate::storage::{self, SnapshotOutcome};

/// What `survey` recorded: the snapshots of the requested name that existed before the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Survey {
    /// The root's LXD snapshot existed.
    pub root: bool,
    /// Locations of the filesystems that had the snapshot.
    pub filesystems: Vec<String>,
}

impl Output for Survey {
    const STEP: &'static str = "survey";
}

/// What `snapshot-root` recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootSnapshot {
    /// `instance/name`.
    pub snapshot: String,
    /// This run took it (false: it was there already).
    pub taken: bool,
}

impl Output for RootSnapshot {
    const STEP: &'static str = "snapshot-root";
}

/// What `snapshot-fs` recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilesystemSnapshots {
    /// The snapshot name.
    pub snapshot: String,
    /// Locations of the filesystems this run took it of.
    pub taken: Vec<String>,
}

impl Output for FilesystemSnapshots {
    const STEP: &'static str = "snapshot-fs";
}

/// The snapshot run's steps, in order.
pub(super) fn steps() -> Vec<std::sync::Arc<dyn Step<RunEnv>>> {
    vec![
        std::sync::Arc::new(SurveyStep),
        std::sync::Arc::new(SnapshotRoot),
        std::sync::Arc::new(SnapshotFilesystems),
    ]
}

fn request(env: &RunEnv) -> Result<&SnapshotRequest, StepError> {
    env.options
        .snapshot
        .as_ref()
        .ok_or_else(|| StepError::new("this run records no snapshot name"))
}

/// The instance's filesystems that can have snapshots.
fn snapshotted(env: &RunEnv, instance: &str) -> Result<Vec<storage::Filesystem>, StepError> {
    Ok(env
        .plan(instance)?
        .filesystems
        .iter()
        .map(|fs| fs.storage())
        .filter(storage::Filesystem::takes_snapshots)
        .collect())
}

struct SurveyStep;

impl Step<RunEnv> for SurveyStep {
    fn name(&self) -> &'static str {
        Survey::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let name = &request(cx.env)?.name;
            let (_, lxd) = cx.env.scope(cx.instance)?;
            if !lxd.instance_exists(cx.instance).await? {
                return Err(StepError::new(format!(
                    "instance {} does not exist",
                    cx.instance
                )));
            }
            let root = lxd
                .get_snapshot(cx.instance, name)
                .await
                .optional()?
                .is_some();
            let mut filesystems = Vec::new();
            for fs in snapshotted(cx.env, cx.instance)? {
                if fs.has_snapshot(name).await? {
                    filesystems.push(fs.kind.location());
                }
            }
            Survey { root, filesystems }.record()
        })
    }

    fn undo<'a>(&'a self, _: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }
}

struct SnapshotRoot;

impl Step<RunEnv> for SnapshotRoot {
    fn name(&self) -> &'static str {
        RootSnapshot::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let request = request(cx.env)?;
            let name = &request.name;
            if request.filesystems_only {
                return RootSnapshot {
                    snapshot: format!("{}/{name}", cx.instance),
                    taken: false,
                }
                .record();
            }
            let (_, lxd) = cx.env.scope(cx.instance)?;
            let taken = match lxd.get_snapshot(cx.instance, name).await.optional()? {
                Some(_) => false,
                // A create cut short by a crash may have finished meanwhile: a conflict is done.
                None => match lxd.create_snapshot(cx.instance, name, None).await {
                    Ok(()) => true,
                    Err(e) if e.is_conflict() => false,
                    Err(e) => return Err(e.into()),
                },
            };
            RootSnapshot {
                snapshot: format!("{}/{name}", cx.instance),
                taken,
            }
            .record()
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let survey: Survey = cx.outputs.of()?;
            let request = request(cx.env)?;
            if survey.root || request.filesystems_only {
                return Ok(());
            }
            let name = &request.name;
            let (_, lxd) = cx.env.scope(cx.instance)?;
            lxd.delete_snapshot(cx.instance, name).await?;
            Ok(())
        })
    }
}

struct SnapshotFilesystems;

impl Step<RunEnv> for SnapshotFilesystems {
    fn name(&self) -> &'static str {
        FilesystemSnapshots::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let request = request(cx.env)?;
            let mut taken = Vec::new();
            if !request.root_only {
                for fs in snapshotted(cx.env, cx.instance)? {
                    if !fs.exists().await? {
                        continue;
                    }
                    if fs.snapshot(&request.name).await? == SnapshotOutcome::Taken {
                        taken.push(fs.kind.location());
                    }
                }
            }
            FilesystemSnapshots {
                snapshot: request.name.clone(),
                taken,
            }
            .record()
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let request = request(cx.env)?;
            if request.root_only {
                return Ok(());
            }
            let survey: Survey = cx.outputs.of()?;
            for fs in snapshotted(cx.env, cx.instance)? {
                if !survey.filesystems.contains(&fs.kind.location()) {
                    fs.delete_snapshot(&request.name).await?;
                }
            }
            Ok(())
        })
    }
}

/// What `delete-snapshot-root` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootSnapshotDeleted {
    /// `instance/name`.
    pub snapshot: String,
    /// It was there, and this run deleted it.
    pub deleted: bool,
}

impl Output for RootSnapshotDeleted {
    const STEP: &'static str = "delete-snapshot-root";
}

/// What `delete-snapshot-fs` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesystemSnapshotsDeleted {
    /// The snapshot name.
    pub snapshot: String,
    /// Locations of the filesystems whose snapshot this run deleted.
    pub deleted: Vec<String>,
}

impl Output for FilesystemSnapshotsDeleted {
    const STEP: &'static str = "delete-snapshot-fs";
}

/// The steps of `reroot snapshot --delete NAME`: the root's snapshot (unless
/// `--filesystems-only`), then the filesystems' (unless `--root-only`). A deleted snapshot
/// cannot be brought back, so the run is resumed, never undone; an absent one counts as
/// deleted, so a resume after a crash goes on where the run stopped.
pub(super) fn delete_steps() -> Vec<std::sync::Arc<dyn Step<RunEnv>>> {
    vec![
        std::sync::Arc::new(DeleteRootSnapshot),
        std::sync::Arc::new(DeleteFilesystemSnapshots),
    ]
}

fn gone(what: String) -> StepError {
    StepError::new(format!("{what} cannot be brought back"))
}

struct DeleteRootSnapshot;

impl Step<RunEnv> for DeleteRootSnapshot {
    fn name(&self) -> &'static str {
        RootSnapshotDeleted::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let request = request(cx.env)?;
            let name = &request.name;
            let mut deleted = false;
            if !request.filesystems_only {
                let (_, lxd) = cx.env.scope(cx.instance)?;
                deleted = lxd.delete_snapshot(cx.instance, name).await?;
            }
            RootSnapshotDeleted {
                snapshot: format!("{}/{name}", cx.instance),
                deleted,
            }
            .record()
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            Err(gone(format!(
                "the deleted root snapshot of {}",
                cx.instance
            )))
        })
    }
}

struct DeleteFilesystemSnapshots;

impl Step<RunEnv> for DeleteFilesystemSnapshots {
    fn name(&self) -> &'static str {
        FilesystemSnapshotsDeleted::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let request = request(cx.env)?;
            let mut deleted = Vec::new();
            if !request.root_only {
                for fs in snapshotted(cx.env, cx.instance)? {
                    if fs.delete_snapshot(&request.name).await? == storage::Removed::Removed {
                        deleted.push(fs.kind.location());
                    }
                }
            }
            FilesystemSnapshotsDeleted {
                snapshot: request.name.clone(),
                deleted,
            }
            .record()
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            Err(gone(format!(
                "the deleted filesystem snapshots of {}",
                cx.instance
            )))
        })
    }
}
