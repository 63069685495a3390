//! `stop`: stops the old root, cleanly within a bound and then by force. The downtime starts
//! here.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::names::{built_by, retired_name};
use super::preflight::Preflight;
use super::RunEnv;
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd::{self, InstancePatch, OptionalExt, Stop};

pub(super) struct StopOld;

/// What `stop` recorded: how the old root came to be stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    pub how: How,
    /// What was stopped was the retired old root, started again by a daemon restart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retired: bool,
}

/// How the old root stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum How {
    /// Within the clean-stop timeout.
    #[serde(rename = "clean")]
    Clean,
    /// By force: no timeout, or the clean stop did not end in time.
    #[serde(rename = "forced")]
    Forced,
    /// It was not running (or a previous attempt had stopped it).
    #[serde(rename = "already stopped")]
    AlreadyStopped,
}

impl Output for Stopped {
    const STEP: &'static str = "stop";
}

impl Stopped {
    fn output(how: How) -> Result<serde_json::Value, StepError> {
        Stopped {
            how,
            retired: false,
        }
        .record()
    }
}

/// How long `stop` waits for LXD to finish an operation that a killed run left on the old root.
const SETTLE_BOUND: Duration = Duration::from_secs(60);

/// Waits until LXD has no operation under way on a stopped instance. A run killed while LXD
/// was stopping the old root leaves that stop going on: the instance already shows as Stopped,
/// but LXD holds the operation lock, under the instance's *name*, until the stop's hooks end
/// (~0.5 s). Renaming it meanwhile (`retire`) orphans the lock, and the new root, which takes
/// the name, is refused every change ("Instance is busy running a "stop" operation") for
/// ~30 s. An empty PATCH takes the same lock and changes nothing: once LXD accepts it, the
/// instance is settled.
async fn settle(lxd: &lxd::Client, instance: &str) -> Result<(), StepError> {
    let deadline = Instant::now() + SETTLE_BOUND;
    loop {
        match lxd
            .patch_instance(instance, &InstancePatch::default(), None)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.is_in_use() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Stops a running instance: cleanly within `timeout_s` seconds when that is not 0, forced if
/// the clean stop does not end in time (or fails); then the live state must say stopped, since
/// a stop the daemon reported as failed may have happened and one reported done may not have
/// (a retry is safe). True when the clean stop did it.
pub(super) async fn stop_cleanly_or_force(
    lxd: &lxd::Client,
    instance: &str,
    timeout_s: u64,
) -> Result<bool, StepError> {
    let mut clean = false;
    if timeout_s > 0 {
        let how = Stop::Clean {
            timeout: Duration::from_secs(timeout_s),
        };
        match lxd.stop_instance(instance, how).await {
            Ok(_) => clean = true,
            Err(e) => tracing::info!(
                instance,
                error = %e,
                "clean stop did not finish in {timeout_s} s; forcing"
            ),
        }
    }
    if !clean {
        lxd.stop_instance(instance, Stop::Force)
            .await
            .map_err(super::state_change_error)?;
    }
    let state = lxd.instance_state(instance).await?;
    if !state.is_stopped() {
        return Err(StepError::transient(format!(
            "{instance} is still {} after a forced stop",
            state.status
        )));
    }
    Ok(clean)
}

impl Step<RunEnv> for StopOld {
    fn name(&self) -> &'static str {
        Stopped::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            let current = lxd.get_instance(cx.instance).await.optional()?;
            let Some(current) = current.filter(|c| !built_by(&c.value, cx.run)) else {
                // Launching, or already retired (maybe swapped) by a previous attempt. A daemon
                // restart starts again an instance that was running when the daemon died, the
                // retired old root included: stop it again if so.
                let retired = retired_name(cx.instance, cx.run);
                if let Some(old) = lxd.get_instance(&retired).await.optional()? {
                    if old.value.is_running() {
                        lxd.stop_instance(&retired, Stop::Force)
                            .await
                            .map_err(super::state_change_error)?;
                        let stopped = Stopped {
                            how: How::Forced,
                            retired: true,
                        };
                        return stopped.record();
                    }
                }
                return Stopped::output(How::AlreadyStopped);
            };
            if !current.value.is_running() {
                // Maybe by the stop of a previous attempt, which LXD may still be finishing.
                settle(&lxd, cx.instance).await?;
                return Stopped::output(How::AlreadyStopped);
            }
            if current.value.ephemeral {
                // The daemon deletes an ephemeral instance as it stops: the old root must
                // outlive its stop, to be retired and kept for undo.
                lxd.update_instance(cx.instance, |now| {
                    now.ephemeral.then(|| InstancePatch {
                        ephemeral: Some(false),
                        ..Default::default()
                    })
                })
                .await?;
            }
            let timeout = cx.env.options.stop_timeout_s.unwrap_or(plan.stop_timeout_s);
            let how = if stop_cleanly_or_force(&lxd, cx.instance, timeout).await? {
                How::Clean
            } else {
                How::Forced
            };
            Stopped::output(how)
        })
    }

    /// The old root, under its name or retired, is not running (a daemon restart starts again
    /// the instances that were running when it died).
    fn holds<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<bool, StepError>> {
        Box::pin(async move {
            for name in [cx.instance.to_string(), retired_name(cx.instance, cx.run)] {
                let live = cx.env.live(cx.instance, &name).await?;
                if live.is_some_and(|i| !built_by(&i, cx.run) && i.is_running()) {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// Starts the old root again if it was running before the run, once it is back under its
    /// name (the undo of `retire` has run by then).
    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let (_, lxd) = cx.env.scope(cx.instance)?;
            let pre: Preflight = cx.outputs.of()?;
            if !pre.running {
                return Ok(());
            }
            match lxd.get_instance(cx.instance).await.optional()? {
                Some(i) if !built_by(&i.value, cx.run) => {
                    lxd.start_instance(cx.instance)
                        .await
                        .map_err(super::state_change_error)?;
                    if pre.ephemeral {
                        // Running again, it is ephemeral again, as it was.
                        lxd.update_instance(cx.instance, |now| {
                            (!now.ephemeral).then(|| InstancePatch {
                                ephemeral: Some(true),
                                ..Default::default()
                            })
                        })
                        .await?;
                    }
                    Ok(())
                }
                Some(_) => Err(StepError::new(format!(
                    "{} is still the new root; the old root cannot be started",
                    cx.instance
                ))),
                None => Err(StepError::new(format!(
                    "the old root of {} is not back under its name",
                    cx.instance
                ))),
            }
        })
    }
}
