//! `ready`: after `start`, before cloud-config, waits (bounded by `wait-ready`, 300 s by
//! default as lxdops waited for an address) until the container is up: when it has a NIC, an
//! address of global scope on it; and a command (`sh -c true`) runs. Without it, packages and
//! runcmd may run before DHCP has answered, or before init has mounted what they need.
//!
//! Only an instance with cloud-config to apply waits: the wait is for cloud-config, and an
//! instance without it (a website whose NIC has no address yet) is left to its health check.
//! Runs recorded before this step existed have no bound in their plans and do not wait.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::names::new_root;
use super::RunEnv;
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd::ExecRequest;

pub(super) struct Ready;

/// What `ready` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyOutput {
    /// How long it waited (`None`: it did not wait: no cloud-config, or no bound).
    pub waited_ms: Option<u64>,
    /// The address it saw, as `IFACE ADDRESS` (`None` without a NIC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl Output for ReadyOutput {
    const STEP: &'static str = "ready";
}

/// How often the state is read while waiting.
const POLL: Duration = Duration::from_millis(500);

impl Step<RunEnv> for Ready {
    fn name(&self) -> &'static str {
        ReadyOutput::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            let bound = match plan.wait_ready_s {
                Some(s) if s > 0 && !plan.cloud_config.is_empty() => Duration::from_secs(s),
                _ => {
                    return ReadyOutput {
                        waited_ms: None,
                        address: None,
                    }
                    .record()
                }
            };
            let inst = new_root(&lxd, cx.instance, cx.run).await?.value;
            let has_nic = inst
                .expanded_devices
                .values()
                .any(|d| d.get("type").map(String::as_str) == Some("nic"));
            let started = Instant::now();
            let deadline = started + bound;
            let mut address = None;
            let mut last = String::from("not checked yet");
            loop {
                let state = lxd.instance_state(cx.instance).await?;
                if !state.is_running() {
                    return Err(StepError::new(format!(
                        "{} is {} while waiting for it to be ready",
                        cx.instance, state.status
                    )));
                }
                if has_nic && address.is_none() {
                    address = state.global_address();
                    if address.is_none() {
                        last = "no address of global scope on its NIC yet".into();
                    }
                }
                if !has_nic || address.is_some() {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let req = ExecRequest::new(&["sh", "-c", "true"])
                        .timeout(left.max(Duration::from_secs(1)));
                    match lxd.exec(cx.instance, &req).await {
                        Ok(out) if out.success() => {
                            return ReadyOutput {
                                waited_ms: Some(started.elapsed().as_millis() as u64),
                                address,
                            }
                            .record();
                        }
                        Ok(out) => last = format!("`sh -c true` exited {}", out.exit_code),
                        Err(e) => last = format!("`sh -c true`: {e}"),
                    }
                }
                if Instant::now() + POLL > deadline {
                    return Err(StepError::new(format!(
                        "{} was not ready within {} s (wait-ready): {last}; nothing of its \
                         cloud-config was applied",
                        cx.instance,
                        bound.as_secs()
                    )));
                }
                tokio::time::sleep(POLL).await;
            }
        })
    }

    fn undo<'a>(&'a self, _cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }
}
