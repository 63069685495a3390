//! `preflight`: checks that the rebuild can happen and records the instance as it is, before
//! anything changes. Everything the undo needs to put the instance back comes from here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::names::{built_by, retired_name, temporary_name, MAX_NAME_LEN};
use super::plan::RootSource;
use super::RebuildEnv;
use crate::engine::{BoxFuture, Step, StepCx, StepError};
use crate::lxd::{OptionalExt, ProfilePut};

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
}

pub(super) struct PreflightStep;

impl Step<RebuildEnv> for PreflightStep {
    fn name(&self) -> &'static str {
        "preflight"
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RebuildEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let plan = cx.env.plan(cx.instance)?;
            let lxd = cx.env.lxd(plan);
            if plan.name.len() > MAX_NAME_LEN {
                return Err(StepError::new(format!(
                    "instance name {} is longer than {MAX_NAME_LEN} characters: no room for the \
                     temporary names a rebuild needs",
                    plan.name
                )));
            }
            match &plan.source {
                RootSource::Snapshot { instance, snapshot } => {
                    lxd.get_snapshot(instance, snapshot).await.map_err(|e| {
                        StepError::new(format!(
                            "template snapshot {instance}/{snapshot} is not usable: {e}"
                        ))
                    })?;
                }
                RootSource::Image { alias } => {
                    lxd.get_image_alias(alias)
                        .await
                        .map_err(|e| StepError::new(format!("image {alias} is not usable: {e}")))?;
                }
            }
            // Preflight runs before anything is created, so both names must be free.
            for other in [
                temporary_name(cx.instance, cx.run),
                retired_name(cx.instance, cx.run),
            ] {
                if lxd.instance_exists(&other).await? {
                    return Err(StepError::new(format!(
                        "an instance named {other} already exists; this run needs that name"
                    )));
                }
            }
            let mut record = Preflight::default();
            if let Some(current) = lxd.get_instance(cx.instance).await.optional()? {
                let inst = current.value;
                if built_by(&inst, cx.run) {
                    return Err(StepError::new(format!(
                        "instance {} is already this run's new root: the journal and LXD disagree",
                        cx.instance
                    )));
                }
                if inst.instance_type != "container" && !inst.instance_type.is_empty() {
                    return Err(StepError::new(format!(
                        "instance {} is a {}: reroot rebuilds containers only",
                        cx.instance, inst.instance_type
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
            Ok(serde_json::to_value(record)?)
        })
    }

    fn undo<'a>(&'a self, _cx: &'a StepCx<'a, RebuildEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }
}
