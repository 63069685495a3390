//! `snapshot`: with the application stopped, snapshots the instance's external filesystems
//! (ZFS snapshot, read-only btrfs snapshot; plain directories and transient filesystems are
//! skipped), named after the run. The snapshots are kept: they are the way back for the data.
//! They are taken beside the renames (see [`Step::beside_until`]).

use serde::{Deserialize, Serialize};

use super::provision::Provisioned;
use super::start::Started;
use super::{snapshot_name, RunEnv};
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::storage::{RollbackOutcome, SnapshotOutcome};

pub(super) struct SnapshotData;

/// What `snapshot` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSnapshots {
    /// The snapshot name (`reroot-<run>`).
    pub snapshot: String,
    /// Locations of the filesystems that have it.
    pub filesystems: Vec<String>,
}

impl Output for DataSnapshots {
    const STEP: &'static str = "snapshot";
}

impl Step<RunEnv> for SnapshotData {
    fn name(&self) -> &'static str {
        DataSnapshots::STEP
    }

    /// The snapshots need the application stopped and nothing else: they are taken while the
    /// old root is renamed away and the new one takes its name, and `start` waits for them,
    /// as nothing may write to the data before they exist. On ZFS through zfs-fuse one takes
    /// about 60 ms, which came on top of the renames inside the window.
    fn beside_until(&self) -> Option<&'static str> {
        Some(Started::STEP)
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let plan = cx.env.plan(cx.instance)?;
            let name = snapshot_name(cx.run);
            // A filesystem `provision` made in this run holds nothing from before it: no
            // snapshot (an instance being launched gets none).
            let made = cx
                .outputs
                .try_of::<Provisioned>()?
                .map(|p| p.new_filesystems)
                .unwrap_or_default();
            let mut taken = Vec::new();
            for fs in plan.filesystems.iter().filter(|fs| !made.contains(&fs.id)) {
                let fs = fs.storage();
                if !fs.supports_snapshots() || !fs.exists().await? {
                    continue;
                }
                match fs.snapshot(&name).await? {
                    SnapshotOutcome::Taken | SnapshotOutcome::AlreadyExisted => {
                        taken.push(fs.kind.location())
                    }
                    SnapshotOutcome::Skipped(_) => {}
                }
            }
            DataSnapshots {
                snapshot: name,
                filesystems: taken,
            }
            .record()
        })
    }

    /// Rolls the filesystems back to the run's snapshot only when the undo was asked for with
    /// `--data`; otherwise the data is left as it is (the snapshot stays for later use).
    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            if !cx.env.options.undo_data {
                return Ok(());
            }
            let plan = cx.env.plan(cx.instance)?;
            let name = snapshot_name(cx.run);
            for fs in &plan.filesystems {
                let fs = fs.storage();
                if !fs.supports_snapshots() || !fs.has_snapshot(&name).await? {
                    continue;
                }
                match fs.rollback(&name).await? {
                    RollbackOutcome::RolledBack { kept_as } => tracing::info!(
                        filesystem = fs.kind.location(),
                        kept_as = kept_as.as_deref().unwrap_or("-"),
                        "rolled back to {name}"
                    ),
                    RollbackOutcome::Skipped(_) => {}
                }
            }
            Ok(())
        })
    }
}
