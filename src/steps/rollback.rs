//! The steps of `reroot rollback -s NAME`: an instance's filesystems (and with `--root` its
//! root) back to the snapshot `NAME`, as `reroot snapshot -s NAME` (or a rebuild, `reroot-RUN`)
//! took it.
//!
//! | step | effect | undo |
//! |---|---|---|
//! | `check` | refuses a running instance (unless `--stop`) and a snapshot missing anywhere it is to be rolled back to; records what will be rolled back | nothing |
//! | `stop` | stops the instance if it runs (clean, then forced; only with `--stop` can it run) | none: refused |
//! | `rollback-fs` | each non-transient ZFS and btrfs filesystem back to the snapshot | none: refused |
//! | `rollback-root` | with `--root`, the root back to its LXD snapshot | none: refused |
//! | `start` | starts the instance again if `check` found it running | none: refused |
//!
//! What a rollback discards cannot be brought back by reroot (ZFS `rollback -r` discards the
//! changes since the snapshot and the later snapshots; btrfs keeps the replaced subvolume as a
//! read-only `pre-rollback-*` snapshot, recorded in the step's output), so the run is resumed,
//! never undone. A failure after `stop` leaves the instance stopped: its data may be rolled back
//! only in part, and serving it so would be worse than not serving it; `resume` finishes the
//! rollback and starts it. Plain directories have no snapshots and are left as they are (the
//! `check` output says so).

use serde::{Deserialize, Serialize};

use super::{InstancePlan, RunEnv};
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd::{self, OptionalExt};
use crate::storage::{self, RollbackOutcome};

/// What a `reroot rollback` run rolls back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRequest {
    /// The snapshot name.
    pub name: String,
    /// Also the root (its LXD snapshot of that name).
    pub root: bool,
    /// Stop a running instance first, and start it again at the end.
    pub stop: bool,
}

/// What `check` recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RollbackCheck {
    /// The instance was running (and `--stop` was given).
    pub was_running: bool,
    /// Locations of the filesystems to roll back.
    pub filesystems: Vec<String>,
    /// Locations of the filesystems left as they are (plain directories, transient ones).
    pub left: Vec<String>,
}

impl Output for RollbackCheck {
    const STEP: &'static str = "check";
}

/// What `stop` recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackStopped {
    /// It ran, and this step stopped it.
    pub stopped: bool,
}

impl Output for RollbackStopped {
    const STEP: &'static str = "stop";
}

/// One filesystem rolled back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledBack {
    /// Its location.
    pub location: String,
    /// The snapshot keeping what it held before (btrfs), if one does.
    pub kept_as: Option<String>,
}

/// What `rollback-fs` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesystemsRolledBack {
    /// The snapshot.
    pub snapshot: String,
    /// Each filesystem rolled back.
    pub rolled_back: Vec<RolledBack>,
}

impl Output for FilesystemsRolledBack {
    const STEP: &'static str = "rollback-fs";
}

/// What `rollback-root` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRolledBack {
    /// `instance/snapshot`; `None` without `--root`.
    pub snapshot: Option<String>,
}

impl Output for RootRolledBack {
    const STEP: &'static str = "rollback-root";
}

/// What `start` recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackStarted {
    /// This step started it (false: it was not running before the run, or ran already).
    pub started: bool,
}

impl Output for RollbackStarted {
    const STEP: &'static str = "start";
}

/// The steps of a rollback run, in order: always the same five (the pipeline is chosen by the
/// run's kind alone); `stop` and `start` do nothing to an instance that was not running, and
/// `rollback-root` nothing without `--root`.
pub(super) fn steps() -> Vec<std::sync::Arc<dyn Step<RunEnv>>> {
    vec![
        std::sync::Arc::new(CheckStep),
        std::sync::Arc::new(StopStep),
        std::sync::Arc::new(RollbackFilesystems),
        std::sync::Arc::new(RollbackRoot),
        std::sync::Arc::new(StartStep),
    ]
}

fn request(env: &RunEnv) -> Result<&RollbackRequest, StepError> {
    env.options
        .rollback
        .as_ref()
        .ok_or_else(|| StepError::new("this run records no rollback"))
}

fn irreversible(what: &str) -> StepError {
    StepError::new(format!(
        "{what} cannot be undone by reroot (a rollback run is resumed, never undone)"
    ))
}

/// The filesystems a rollback takes back, and those it leaves as they are.
fn split(plan: &InstancePlan) -> (Vec<storage::Filesystem>, Vec<String>) {
    let mut taken = Vec::new();
    let mut left = Vec::new();
    for fs in &plan.filesystems {
        let fs = fs.storage();
        if fs.takes_snapshots() {
            taken.push(fs);
        } else {
            left.push(fs.kind.location());
        }
    }
    (taken, left)
}

/// The `check` of a rollback, read-only: refuses a running instance without `--stop`, and a
/// snapshot missing anywhere it is to be rolled back to, so that nothing is changed before
/// every snapshot is known to be there. The CLI asks it before the run is recorded (a refused
/// run would hold its instance); the step asks it again when the run starts.
pub async fn check(
    lxd: &lxd::Client,
    plan: &InstancePlan,
    req: &RollbackRequest,
) -> Result<RollbackCheck, StepError> {
    let name = &plan.name;
    let Some(inst) = lxd.get_instance(name).await.optional()? else {
        return Err(StepError::new(format!("instance {name} does not exist")));
    };
    let running = inst.value.status != "Stopped";
    if running && !req.stop {
        return Err(StepError::new(format!(
            "instance {name} is {}: a rollback changes its data under it; stop it first, or \
             pass --stop (stopped for the rollback, started again after it)",
            inst.value.status
        )));
    }
    let (taken, left) = split(plan);
    let mut missing = Vec::new();
    for fs in &taken {
        if !fs.has_snapshot(&req.name).await? {
            missing.push(format!("{}@{}", fs.kind.location(), req.name));
        }
    }
    if req.root
        && lxd
            .get_snapshot(name, &req.name)
            .await
            .optional()?
            .is_none()
    {
        missing.push(format!("{name}/{} (the root)", req.name));
    }
    if !missing.is_empty() {
        return Err(StepError::new(format!(
            "no snapshot {} of {name}: {}; nothing was rolled back",
            req.name,
            missing.join(", ")
        )));
    }
    if taken.is_empty() && !req.root {
        return Err(StepError::new(format!(
            "instance {name} has no filesystem with snapshots (plain directories and transient \
             filesystems have none): nothing to roll back (--root rolls back its root)"
        )));
    }
    Ok(RollbackCheck {
        was_running: running,
        filesystems: taken.iter().map(|f| f.kind.location()).collect(),
        left,
    })
}

struct CheckStep;

impl Step<RunEnv> for CheckStep {
    fn name(&self) -> &'static str {
        RollbackCheck::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let req = request(cx.env)?;
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            check(&lxd, plan, req).await?.record()
        })
    }

    fn undo<'a>(&'a self, _: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }
}

struct StopStep;

impl Step<RunEnv> for StopStep {
    fn name(&self) -> &'static str {
        RollbackStopped::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            let state = lxd.instance_state(cx.instance).await?;
            if state.is_stopped() {
                return RollbackStopped { stopped: false }.record();
            }
            let timeout = cx.env.options.stop_timeout_s.unwrap_or(plan.stop_timeout_s);
            super::stop::stop_cleanly_or_force(&lxd, cx.instance, timeout).await?;
            RollbackStopped { stopped: true }.record()
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move { Err(irreversible(&format!("the stop of {}", cx.instance))) })
    }
}

struct RollbackFilesystems;

impl Step<RunEnv> for RollbackFilesystems {
    fn name(&self) -> &'static str {
        FilesystemsRolledBack::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let req = request(cx.env)?;
            let (_, lxd) = cx.env.scope(cx.instance)?;
            // Started meanwhile (by a person, or by a daemon restart): its data is not changed
            // under it.
            if !lxd.instance_state(cx.instance).await?.is_stopped() {
                return Err(StepError::new(format!(
                    "instance {} runs again: its filesystems are not rolled back under it",
                    cx.instance
                )));
            }
            let (taken, _) = split(cx.env.plan(cx.instance)?);
            let mut rolled_back = Vec::new();
            // Applied again after a crash, a filesystem already rolled back is rolled back once
            // more: its content is the snapshot's either way (btrfs keeps one more copy).
            for fs in &taken {
                let kept_as = match fs.rollback(&req.name).await? {
                    RollbackOutcome::RolledBack { kept_as } => kept_as,
                    RollbackOutcome::Skipped(_) => continue,
                };
                rolled_back.push(RolledBack {
                    location: fs.kind.location(),
                    kept_as,
                });
            }
            FilesystemsRolledBack {
                snapshot: req.name.clone(),
                rolled_back,
            }
            .record()
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            Err(irreversible(&format!(
                "the rollback of the filesystems of {}",
                cx.instance
            )))
        })
    }
}

struct RollbackRoot;

impl Step<RunEnv> for RollbackRoot {
    fn name(&self) -> &'static str {
        RootRolledBack::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let req = request(cx.env)?;
            if !req.root {
                return RootRolledBack { snapshot: None }.record();
            }
            let (_, lxd) = cx.env.scope(cx.instance)?;
            if !lxd.instance_state(cx.instance).await?.is_stopped() {
                return Err(StepError::new(format!(
                    "instance {} runs again: its root is not rolled back under it",
                    cx.instance
                )));
            }
            lxd.restore_snapshot(cx.instance, &req.name)
                .await
                .map_err(|e| match e {
                    lxd::Error::OperationFailed { .. } => StepError::transient(e.to_string()),
                    other => other.into(),
                })?;
            RootRolledBack {
                snapshot: Some(format!("{}/{}", cx.instance, req.name)),
            }
            .record()
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            Err(irreversible(&format!(
                "the rollback of the root of {}",
                cx.instance
            )))
        })
    }
}

struct StartStep;

impl Step<RunEnv> for StartStep {
    fn name(&self) -> &'static str {
        RollbackStarted::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let check: RollbackCheck = cx.outputs.of()?;
            if !check.was_running {
                return RollbackStarted { started: false }.record();
            }
            let (_, lxd) = cx.env.scope(cx.instance)?;
            let started = lxd
                .start_instance(cx.instance)
                .await
                .map_err(super::state_change_error)?;
            RollbackStarted { started }.record()
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move { Err(irreversible(&format!("the start of {}", cx.instance))) })
    }
}
