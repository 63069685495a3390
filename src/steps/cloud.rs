//! Cloud-config in a rebuild, in two parts: the early files (non-deferred `write_files`) are
//! pushed into the stopped new root by the `files` step, just before it starts; the rest
//! (packages, users, timezone, deferred files, runcmd) is applied by the `cloud-config` step
//! once it runs.
//!
//! The files' text was stored in the plan when the run started, so a resumed run applies
//! exactly what the first attempt would have.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::plan::InstancePlan;
use super::RunEnv;
use crate::cloudconfig::{self, Action, LxdGuest, OsType};
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd;

/// Which part of the cloud-config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// Non-deferred `write_files`: plain file pushes, fine on a stopped container.
    EarlyFiles,
    /// Everything else, in the usual order; needs the container running.
    Rest,
}

/// What `files` recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesPushed {
    /// How many files changed.
    pub changed: usize,
}

impl Output for FilesPushed {
    const STEP: &'static str = "files";
}

/// What `cloud-config` recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudConfigApplied {
    /// How many actions changed something.
    pub changed: usize,
}

impl Output for CloudConfigApplied {
    const STEP: &'static str = "cloud-config";
}

fn is_early(action: &Action) -> bool {
    matches!(action, Action::WriteFile(w) if !w.defer)
}

/// Applies one part of the plan's cloud-config to `instance`; returns how many actions changed
/// something.
pub(super) async fn apply_part(
    lxd: &lxd::Client,
    instance: &str,
    plan: &InstancePlan,
    part: Part,
) -> Result<usize, StepError> {
    if plan.cloud_config.is_empty() {
        return Ok(0);
    }
    let mut configs = Vec::new();
    for file in &plan.cloud_config {
        configs.push(cloudconfig::parse_str(Path::new(&file.path), &file.text)?);
    }
    let guest = LxdGuest::new(lxd, instance);
    let ostype = match &plan.ostype {
        Some(s) => s.parse::<OsType>().map_err(StepError::new)?,
        None => cloudconfig::detect_ostype(&guest)
            .await
            .map_err(|e| StepError::new(format!("cannot detect the OS type of {instance}: {e}")))?,
    };
    let mut full = cloudconfig::plan(&configs, Some(ostype))?;
    full.steps
        .retain(|s| is_early(&s.action) == (part == Part::EarlyFiles));
    let outcomes = cloudconfig::apply(&guest, &full).await?;
    Ok(outcomes.iter().filter(|o| o.changed).count())
}

/// One part of the cloud-config as a step: `files` ([`Part::EarlyFiles`]) pushes the early
/// files into the stopped new root under its final name; `cloud-config` ([`Part::Rest`])
/// applies the rest to the running new root.
pub(super) struct CloudConfigPart(pub Part);

impl Step<RunEnv> for CloudConfigPart {
    fn name(&self) -> &'static str {
        match self.0 {
            Part::EarlyFiles => FilesPushed::STEP,
            Part::Rest => CloudConfigApplied::STEP,
        }
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            let changed = apply_part(&lxd, cx.instance, plan, self.0).await?;
            match self.0 {
                Part::EarlyFiles => FilesPushed { changed }.record(),
                Part::Rest => CloudConfigApplied { changed }.record(),
            }
        })
    }

    /// Nothing to undo: what either part changed lives in the new root, which the undo of
    /// `prepare` removes.
    fn undo<'a>(&'a self, _cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }
}
