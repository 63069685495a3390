//! `verify`: the new root is running, and the health check (if any) exits 0 within its
//! deadline, tried once a second.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::names::new_root;
use super::RunEnv;
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd::ExecRequest;

pub(super) struct Verify;

/// What `verify` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// `ok`, or `none` when the config has no health check.
    pub health: String,
    /// How many times the health check ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tries: Option<u32>,
}

impl Output for Verified {
    const STEP: &'static str = "verify";
}

impl Step<RunEnv> for Verify {
    fn name(&self) -> &'static str {
        Verified::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            let inst = new_root(&lxd, cx.instance, cx.run).await?.value;
            if !inst.is_running() {
                return Err(StepError::new(format!(
                    "{} is {}, not running",
                    cx.instance, inst.status
                )));
            }
            let Some(health) = &plan.health else {
                let verified = Verified {
                    health: "none".into(),
                    tries: None,
                };
                return verified.record();
            };
            let deadline = Instant::now() + Duration::from_secs(health.timeout_s.max(1));
            let mut tries = 0;
            loop {
                tries += 1;
                let left = deadline.saturating_duration_since(Instant::now());
                let req =
                    ExecRequest::new(&health.command).timeout(left.max(Duration::from_secs(1)));
                let last = match lxd.exec(cx.instance, &req).await {
                    Ok(out) if out.success() => {
                        let verified = Verified {
                            health: "ok".into(),
                            tries: Some(tries),
                        };
                        return verified.record();
                    }
                    Ok(out) => format!("exit code {}: {}", out.exit_code, out.stderr_text().trim()),
                    Err(e) => e.to_string(),
                };
                if Instant::now() + Duration::from_secs(1) > deadline {
                    return Err(StepError::new(format!(
                        "health check `{}` did not succeed within {} s ({tries} tries); last: {last}",
                        health.command.join(" "),
                        health.timeout_s
                    )));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    fn undo<'a>(&'a self, _cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }
}
