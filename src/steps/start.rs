//! `start`: starts the new root. The downtime ends here: it is recorded, from the start of
//! `stop` to now, in this step's output.

use serde::{Deserialize, Serialize};

use super::finish::FinallyStopped;
use super::names::{built_by, new_root};
use super::preflight::Preflight;
use super::stop::Stopped;
use super::RunEnv;
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd::{OptionalExt, Stop};

pub(super) struct Start;

/// What `start` recorded: the instance's downtime, from the start of `stop` to the start of
/// the new root (`None`: it was not running before the run, so nothing was down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub downtime_ms: Option<i64>,
}

impl Output for Started {
    const STEP: &'static str = "start";
}

impl Step<RunEnv> for Start {
    fn name(&self) -> &'static str {
        Started::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (_, lxd) = cx.env.scope(cx.instance)?;
            new_root(&lxd, cx.instance, cx.run).await?;
            lxd.start_instance(cx.instance)
                .await
                .map_err(super::state_change_error)?;
            let pre: Preflight = cx.outputs.of()?;
            // Downtime: the old root was running until `stop` began.
            let downtime_ms = match (pre.running, cx.times.get(Stopped::STEP)) {
                (true, Some((stop_started, _))) => Some(journal::now_ms() - stop_started),
                _ => None,
            };
            Started { downtime_ms }.record()
        })
    }

    /// The new root runs under the instance's name; once `final-stop` stopped it (a
    /// template), it only has to be there: starting it again would run its cloud-config again.
    fn holds<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<bool, StepError>> {
        Box::pin(async move {
            let parked = cx
                .outputs
                .try_of::<FinallyStopped>()?
                .is_some_and(|f| f.stopped);
            let live = cx.env.live(cx.instance, cx.instance).await?;
            Ok(live.is_some_and(|i| built_by(&i, cx.run) && (parked || i.is_running())))
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let (_, lxd) = cx.env.scope(cx.instance)?;
            if let Some(i) = lxd.get_instance(cx.instance).await.optional()? {
                if built_by(&i.value, cx.run) {
                    lxd.stop_instance(cx.instance, Stop::Force)
                        .await
                        .map_err(super::state_change_error)?;
                }
            }
            Ok(())
        })
    }
}
