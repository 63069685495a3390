//! `preflight`: checks that the rebuild can happen and records the instance as it is, before
//! anything changes. Everything the undo needs to put the instance back comes from here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::names::{
    built_by, retired_name, temporary_name, MAX_NAME_LEN, RUN_KEY, SOURCE_ID_KEY, SOURCE_KEY,
};
use super::plan::{InstancePlan, RootSource};
use super::RunEnv;
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd::{self, OptionalExt, ProfilePut};

/// What `preflight` recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Preflight {
    /// The instance existed (otherwise the rebuild launches it).
    pub existed: bool,
    /// It was running.
    pub running: bool,
    /// Its profiles.
    pub profiles: Vec<String>,
    /// Its NICs' MAC addresses (`volatile.<nic>.hwaddr`), kept by the new root.
    pub hwaddrs: BTreeMap<String, String>,
    /// Its ETag when read.
    pub etag: Option<String>,
    /// The device profile as it was, if it existed.
    pub device_profile: Option<ProfilePut>,
    /// What identifies the template's content now: the snapshot's creation time, or the
    /// fingerprint of the image the alias points to. Stored on the new root
    /// ([`SOURCE_ID_KEY`]) so a later rebuild can tell that it is already built from it.
    #[serde(default)]
    pub source_id: String,
    /// What reroot recorded on the instance's current root, if reroot built it.
    #[serde(default)]
    pub built: Option<BuiltFrom>,
    /// It was ephemeral: `stop` clears the flag first (else the daemon would delete the old
    /// root as it stops, and nothing could be undone), and its undo sets it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
}

impl Output for Preflight {
    const STEP: &'static str = "preflight";
}

impl Preflight {
    /// The profiles the new root gets: the instance's own, less the device profile (which
    /// `reattach` attaches, with that placement, once the filesystems are ready), or the
    /// config's for an instance being launched.
    pub fn new_root_profiles(&self, plan: &InstancePlan) -> Vec<String> {
        if self.existed {
            self.profiles
                .iter()
                .filter(|p| **p != plan.device_profile)
                .cloned()
                .collect()
        } else {
            plan.profiles.clone()
        }
    }
}

/// What a root built by reroot carries about its making.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltFrom {
    /// The run that built it (`user.reroot.run`).
    pub run: String,
    /// Its source as configs write it (`user.reroot.source`).
    pub source: String,
    /// That source's identity then (`user.reroot.source-id`; empty for roots built before it
    /// was recorded).
    pub source_id: String,
}

impl BuiltFrom {
    /// What the instance's config says about its making, if reroot built it.
    pub fn of(instance: &lxd::Instance) -> Option<BuiltFrom> {
        Some(BuiltFrom {
            run: instance.config.get(RUN_KEY)?.clone(),
            source: instance.config.get(SOURCE_KEY)?.clone(),
            source_id: instance
                .config
                .get(SOURCE_ID_KEY)
                .cloned()
                .unwrap_or_default(),
        })
    }
}

/// What identifies a source's content: a snapshot taken again under the same name, or an
/// alias moved to another image, is another source.
pub(crate) async fn source_id(lxd: &lxd::Client, source: &RootSource) -> Result<String, StepError> {
    match source {
        RootSource::Snapshot { instance, snapshot } => {
            let snap = lxd.get_snapshot(instance, snapshot).await.map_err(|e| {
                StepError::new(format!(
                    "template snapshot {instance}/{snapshot} is not usable: {e}"
                ))
            })?;
            Ok(format!("snapshot created {}", snap.value.created_at))
        }
        RootSource::Image {
            pull: Some(image), ..
        } => Ok(format!("image {}", image.fingerprint)),
        RootSource::Image {
            alias,
            remote: Some(remote),
            pull: None,
        } => Err(StepError::new(format!(
            "image {remote}:{alias} was not looked up on {remote} when the run was planned"
        ))),
        RootSource::Image { alias, .. } => {
            let a = lxd
                .get_image_alias(alias)
                .await
                .map_err(|e| StepError::new(format!("image {alias} is not usable: {e}")))?;
            Ok(format!("image {}", a.target))
        }
    }
}

/// Checks that a rebuild of `plan` can happen in `run` and records the instance as it is.
/// Only reads: `rebuild --dry-run` asks it too.
pub(crate) async fn survey(
    lxd: &lxd::Client,
    plan: &InstancePlan,
    run: journal::RunId,
) -> Result<Preflight, StepError> {
    if plan.name.len() > MAX_NAME_LEN {
        return Err(StepError::new(format!(
            "instance name {} is longer than {MAX_NAME_LEN} characters: no room for the \
             temporary names a rebuild needs",
            plan.name
        )));
    }
    let source_id = source_id(lxd, &plan.source).await?;
    // Preflight runs before anything is created, so both names must be free.
    for other in [
        temporary_name(&plan.name, run),
        retired_name(&plan.name, run),
    ] {
        if lxd.instance_exists(&other).await? {
            return Err(StepError::new(format!(
                "an instance named {other} already exists; this run needs that name"
            )));
        }
    }
    let mut record = Preflight {
        source_id,
        ..Preflight::default()
    };
    if let Some(current) = lxd.get_instance(&plan.name).await.optional()? {
        let inst = current.value;
        if built_by(&inst, run) {
            return Err(StepError::new(format!(
                "instance {} is already this run's new root: the journal and LXD disagree",
                plan.name
            )));
        }
        if inst.instance_type != "container" && !inst.instance_type.is_empty() {
            return Err(StepError::new(format!(
                "instance {} is a {}: reroot rebuilds containers only",
                plan.name, inst.instance_type
            )));
        }
        record.existed = true;
        record.running = inst.is_running();
        record.profiles = inst.profiles.clone();
        record.hwaddrs = inst
            .config
            .iter()
            .filter(|(k, _)| k.starts_with("volatile.") && k.ends_with(".hwaddr"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        record.built = BuiltFrom::of(&inst);
        record.ephemeral = inst.ephemeral;
        record.etag = current.etag;
    }
    for profile in &plan.profiles {
        lxd.get_profile(profile)
            .await
            .map_err(|e| StepError::new(format!("profile {profile} is not usable: {e}")))?;
    }
    record.device_profile = lxd
        .get_profile(&plan.device_profile)
        .await
        .optional()?
        .map(|p| p.value.to_put());
    Ok(record)
}

pub(super) struct PreflightStep;

impl Step<RunEnv> for PreflightStep {
    fn name(&self) -> &'static str {
        Preflight::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            survey(&lxd, plan, cx.run).await?.record()
        })
    }

    fn undo<'a>(&'a self, _cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }
}
