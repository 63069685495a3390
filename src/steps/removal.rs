//! The steps of `reroot delete` and `reroot destroy`.
//!
//! | step | effect | undo |
//! |---|---|---|
//! | `check` | refuses an instance that is not stopped; records whether it exists | nothing |
//! | `delete-root` | deletes the instance (its root and LXD snapshots) | none: refused |
//! | `delete-profile` | deletes the instance's device profile | none: refused |
//! | `destroy-fs` (destroy only) | destroys the filesystems marked `destroy: true`, with their data and snapshots | none: refused |
//!
//! `delete` keeps every external filesystem. `destroy` removes only those the config marks
//! `destroy: true`, after the command has been confirmed; the rest are kept. Neither stops a
//! running instance: the user does that, knowingly. A deleted root or a destroyed filesystem
//! cannot be brought back, so these runs are resumed, never undone (`reroot undo` refuses them
//! before any step's undo is reached).

use serde::{Deserialize, Serialize};

use super::RunEnv;
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd::OptionalExt;
use crate::storage::Removed;

/// What `check` recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// The instance existed.
    pub existed: bool,
}

impl Output for Check {
    const STEP: &'static str = "check";
}

/// What `delete-root` recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootDeleted {
    /// It was there to delete (false: gone already).
    pub deleted: bool,
}

impl Output for RootDeleted {
    const STEP: &'static str = "delete-root";
}

/// What `delete-profile` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileDeleted {
    /// The device profile.
    pub profile: String,
    /// It was there to delete.
    pub deleted: bool,
}

impl Output for ProfileDeleted {
    const STEP: &'static str = "delete-profile";
}

/// What `destroy-fs` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesystemsDestroyed {
    /// Locations of the filesystems destroyed.
    pub destroyed: Vec<String>,
}

impl Output for FilesystemsDestroyed {
    const STEP: &'static str = "destroy-fs";
}

/// The steps of a delete (`destroy` false) or a destroy run, in order.
pub(super) fn steps(destroy: bool) -> Vec<std::sync::Arc<dyn Step<RunEnv>>> {
    let mut steps: Vec<std::sync::Arc<dyn Step<RunEnv>>> = vec![
        std::sync::Arc::new(CheckStep),
        std::sync::Arc::new(DeleteRoot),
        std::sync::Arc::new(DeleteProfile),
    ];
    if destroy {
        steps.push(std::sync::Arc::new(DestroyFilesystems));
    }
    steps
}

/// The `check` of a delete or destroy, read-only: the instance must be stopped (reroot never
/// deletes a running instance). The CLI asks it before any question or run; the step asks it
/// again when the run starts, for an instance started meanwhile.
pub async fn check_stopped(lxd: &crate::lxd::Client, instance: &str) -> Result<Check, StepError> {
    let mut record = Check::default();
    if let Some(inst) = lxd.get_instance(instance).await.optional()? {
        if inst.value.status != "Stopped" {
            return Err(StepError::new(format!(
                "instance {instance} is {}: stop it first (reroot never deletes a running \
                 instance)",
                inst.value.status
            )));
        }
        record.existed = true;
    }
    Ok(record)
}

fn irreversible(what: &str) -> StepError {
    StepError::new(format!("{what} cannot be brought back"))
}

struct CheckStep;

impl Step<RunEnv> for CheckStep {
    fn name(&self) -> &'static str {
        Check::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (_, lxd) = cx.env.scope(cx.instance)?;
            check_stopped(&lxd, cx.instance).await?.record()
        })
    }

    fn undo<'a>(&'a self, _: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }
}

struct DeleteRoot;

impl Step<RunEnv> for DeleteRoot {
    fn name(&self) -> &'static str {
        RootDeleted::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (_, lxd) = cx.env.scope(cx.instance)?;
            // Never forced: LXD refuses to delete a running instance, and so does this step.
            let deleted = lxd.delete_instance(cx.instance).await?;
            RootDeleted { deleted }.record()
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move { Err(irreversible(&format!("the root of {}", cx.instance))) })
    }
}

struct DeleteProfile;

impl Step<RunEnv> for DeleteProfile {
    fn name(&self) -> &'static str {
        ProfileDeleted::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            let deleted = lxd.delete_profile(&plan.device_profile).await?;
            ProfileDeleted {
                profile: plan.device_profile.clone(),
                deleted,
            }
            .record()
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            Err(irreversible(&format!(
                "the device profile of {}",
                cx.instance
            )))
        })
    }
}

struct DestroyFilesystems;

impl Step<RunEnv> for DestroyFilesystems {
    fn name(&self) -> &'static str {
        FilesystemsDestroyed::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let plan = cx.env.plan(cx.instance)?;
            let mut destroyed = Vec::new();
            for fs in plan.filesystems.iter().filter(|fs| fs.destroy) {
                let fs = fs.storage();
                if fs.destroy().await? == Removed::Removed {
                    destroyed.push(fs.kind.location());
                }
            }
            FilesystemsDestroyed { destroyed }.record()
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            Err(irreversible(&format!(
                "the destroyed filesystems of {}",
                cx.instance
            )))
        })
    }
}
