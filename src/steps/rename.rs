//! `retire` and `swap`: the two renames that put the new root in the old one's place. The old
//! root is kept under its retired name until `reroot prune`, so undo can bring it back.

use serde::{Deserialize, Serialize};

use super::names::{built_by, retired_name, temporary_name};
use super::RunEnv;
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd::{OptionalExt, Stop};

/// `retire`: renames the (stopped) old root to `<instance>-old-<run8>`.
pub(super) struct Retire;

/// What `retire` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    /// The old root's name now (`None`: there was no old root, the rebuild launches).
    pub retired: Option<String>,
}

impl Output for Retired {
    const STEP: &'static str = "retire";
}

/// What `swap` recorded: nothing beyond its success (the new root's name is the instance's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swapped;

impl Output for Swapped {
    const STEP: &'static str = "swap";
}

impl Step<RunEnv> for Retire {
    fn name(&self) -> &'static str {
        Retired::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (_, lxd) = cx.env.scope(cx.instance)?;
            let retired = retired_name(cx.instance, cx.run);
            match lxd.get_instance(cx.instance).await.optional()? {
                Some(i) if !built_by(&i.value, cx.run) => {
                    if i.value.is_running() {
                        // `stop` stopped it, so something started it again: LXD does, at its
                        // own restart, for instances it had seen running. The window is
                        // open already; stopping it again is what `stop` would do.
                        tracing::warn!(
                            instance = cx.instance,
                            "the old root is running again (a daemon restart?); stopping it again"
                        );
                        lxd.stop_instance(cx.instance, Stop::Force)
                            .await
                            .map_err(super::state_change_error)?;
                    }
                    if lxd.instance_exists(&retired).await? {
                        if settled(&lxd, cx.instance, &retired).await? {
                            return Retired {
                                retired: Some(retired),
                            }
                            .record();
                        }
                        return Err(StepError::new(format!(
                            "both {} and {retired} exist; refusing to guess which is the old root",
                            cx.instance
                        )));
                    }
                    rename(&lxd, cx.instance, &retired).await?;
                    Retired {
                        retired: Some(retired),
                    }
                    .record()
                }
                // Already retired (and maybe swapped) by a previous attempt, or launching.
                _ => {
                    let exists = lxd.instance_exists(&retired).await?;
                    Retired {
                        retired: exists.then_some(retired),
                    }
                    .record()
                }
            }
        })
    }

    /// The old root is no longer under the instance's name.
    fn holds<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<bool, StepError>> {
        Box::pin(async move {
            let live = cx.env.live(cx.instance, cx.instance).await?;
            Ok(live.is_none_or(|i| built_by(&i, cx.run)))
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let (_, lxd) = cx.env.scope(cx.instance)?;
            let retired = retired_name(cx.instance, cx.run);
            if !lxd.instance_exists(&retired).await? {
                // A daemon killed inside the retire's rename leaves the old root under its
                // name with its volume under the retired name: it cannot start until that
                // rename is finished, and then it is brought back as any retired root.
                if !lxd.finish_interrupted_rename(cx.instance, &retired).await? {
                    return Ok(());
                }
            }
            if lxd.instance_exists(cx.instance).await? {
                return Err(StepError::new(format!(
                    "cannot bring {retired} back: {} is taken",
                    cx.instance
                )));
            }
            rename(&lxd, &retired, cx.instance).await
        })
    }
}

/// How long a rename of the same instance still under way in the daemon is waited for.
const RENAME_SETTLE: std::time::Duration = std::time::Duration::from_secs(30);

/// Renames `from` to `to`. A refusal because `to` is taken is checked against the live state:
/// a rename started by a process that was killed goes on in the daemon without it (seen with
/// Incus 6.0.4 on a resume right after a SIGKILL: the new attempt saw `from` and no `to`, then
/// its own rename failed with "Name ... already in use" as the first one ended), so the
/// rename is done if `from` is gone and `to` is there once that settles.
pub(super) async fn rename(
    lxd: &crate::lxd::Client,
    from: &str,
    to: &str,
) -> Result<(), StepError> {
    match lxd.rename_instance(from, to).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() => {
            if settled(lxd, from, to).await? {
                Ok(())
            } else {
                Err(e.into())
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Waits, within [`RENAME_SETTLE`], for `from` to be gone while `to` exists: true once it is,
/// false if both are still there (or `to` is not) at the bound.
async fn settled(lxd: &crate::lxd::Client, from: &str, to: &str) -> Result<bool, StepError> {
    let deadline = std::time::Instant::now() + RENAME_SETTLE;
    loop {
        if !lxd.instance_exists(from).await? && lxd.instance_exists(to).await? {
            tracing::info!(from, to, "a rename still under way in the daemon ended it");
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// `swap`: renames the new root from its temporary name to the instance's name.
pub(super) struct Swap;

impl Step<RunEnv> for Swap {
    fn name(&self) -> &'static str {
        Swapped::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (_, lxd) = cx.env.scope(cx.instance)?;
            let tmp = temporary_name(cx.instance, cx.run);
            if let Some(i) = lxd.get_instance(cx.instance).await.optional()? {
                if built_by(&i.value, cx.run) {
                    return Swapped.record();
                }
                return Err(StepError::new(format!(
                    "{} still exists and is not the new root",
                    cx.instance
                )));
            }
            rename(&lxd, &tmp, cx.instance).await?;
            Swapped.record()
        })
    }

    /// The new root is under the instance's name.
    fn holds<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<bool, StepError>> {
        Box::pin(async move {
            let live = cx.env.live(cx.instance, cx.instance).await?;
            Ok(live.is_some_and(|i| built_by(&i, cx.run)))
        })
    }

    /// Moves the new root back to its temporary name (stopping it first), so the old root can
    /// take its name again.
    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let (_, lxd) = cx.env.scope(cx.instance)?;
            let Some(i) = lxd.get_instance(cx.instance).await.optional()? else {
                return Ok(());
            };
            if !built_by(&i.value, cx.run) {
                return Ok(());
            }
            let tmp = temporary_name(cx.instance, cx.run);
            lxd.stop_instance(cx.instance, Stop::Force)
                .await
                .map_err(super::state_change_error)?;
            rename(&lxd, cx.instance, &tmp).await
        })
    }
}
