//! `final-stop` and `final-snapshot`: lxdops's `stop: true` and `snapshot: NAME`, the last
//! steps of a launch or rebuild. A template is built, configured and verified like any
//! instance, then stopped, then the snapshot its websites are copied from is taken of its root
//! (stopped, so the copy is consistent). Without those keys both steps record that they had
//! nothing to do.

use serde::{Deserialize, Serialize};

use super::names::{built_by, new_root};
use super::RunEnv;
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd::OptionalExt;

pub(super) struct FinalStop;

/// What `final-stop` recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinallyStopped {
    /// The config asked for it (`stop: true`) and the new root is stopped.
    pub stopped: bool,
}

impl Output for FinallyStopped {
    const STEP: &'static str = "final-stop";
}

impl Step<RunEnv> for FinalStop {
    fn name(&self) -> &'static str {
        FinallyStopped::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            if !plan.final_stop {
                return FinallyStopped { stopped: false }.record();
            }
            let inst = new_root(&lxd, cx.instance, cx.run).await?.value;
            if inst.status != "Stopped" {
                // Cleanly when the config allows it: a template's services flush their state
                // before its root is snapshotted.
                let timeout = cx.env.options.stop_timeout_s.unwrap_or(plan.stop_timeout_s);
                super::stop::stop_cleanly_or_force(&lxd, cx.instance, timeout).await?;
            }
            FinallyStopped { stopped: true }.record()
        })
    }

    /// With `stop: true`, the new root is not running (a daemon restart would not start it
    /// again, but a person may have).
    fn holds<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<bool, StepError>> {
        Box::pin(async move {
            if !cx.env.plan(cx.instance)?.final_stop {
                return Ok(true);
            }
            let live = cx.env.live(cx.instance, cx.instance).await?;
            Ok(live.is_some_and(|i| built_by(&i, cx.run) && !i.is_running()))
        })
    }

    /// Nothing: an undo goes on to the undo of `start`, which stops the new root anyway, and
    /// then deletes it; starting it in between would only cost time.
    fn undo<'a>(&'a self, _cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }
}

pub(super) struct FinalSnapshot;

/// What `final-snapshot` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalSnapshotTaken {
    /// `INSTANCE/NAME`, or `None` when the config asks for no snapshot.
    pub snapshot: Option<String>,
}

impl Output for FinalSnapshotTaken {
    const STEP: &'static str = "final-snapshot";
}

impl Step<RunEnv> for FinalSnapshot {
    fn name(&self) -> &'static str {
        FinalSnapshotTaken::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            let Some(name) = &plan.final_snapshot else {
                return FinalSnapshotTaken { snapshot: None }.record();
            };
            // Only on this run's new root: a fresh copy has no snapshots, so one of this name
            // there was taken by an earlier attempt of this step.
            new_root(&lxd, cx.instance, cx.run).await?;
            if lxd
                .get_snapshot(cx.instance, name)
                .await
                .optional()?
                .is_none()
            {
                match lxd.create_snapshot(cx.instance, name, None).await {
                    Ok(()) => {}
                    // A create cut short by a crash may have finished meanwhile.
                    Err(e) if e.is_conflict() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            FinalSnapshotTaken {
                snapshot: Some(format!("{}/{name}", cx.instance)),
            }
            .record()
        })
    }

    /// Deletes the snapshot from this run's new root (never from another instance); the undo
    /// of `prepare` would delete it with the root anyway, this keeps a partial undo exact.
    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            let Some(name) = &plan.final_snapshot else {
                return Ok(());
            };
            let Some(root) = cx.env.new_root_name(cx.instance, cx.run).await? else {
                return Ok(());
            };
            lxd.delete_snapshot(&root, name).await?;
            Ok(())
        })
    }
}
