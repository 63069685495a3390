//! The steps of a `reroot profile apply` run: the instance's profile list and its device
//! profile made what the config says. Never touches filesystems.
//!
//! | step | effect | undo |
//! |---|---|---|
//! | `record-profiles` | refuses a missing named profile or instance; records the profile list and the device profile as they are | nothing |
//! | `apply-profiles` | device profile's disk devices set (created if absent), the profile list replaced | the recorded profile list and device profile put back (a device profile this run created is deleted) |
//!
//! The state before is recorded by a step of its own that changes nothing, so that a resume
//! after a kill inside `apply-profiles` does not take the half-applied state for the one to
//! go back to.

use serde::{Deserialize, Serialize};

use super::plan::DevicePlacement;
use super::{profile, InstancePlan, RunEnv};
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd::{self, InstancePatch, OptionalExt, ProfilePut};

/// The profile names the plan wants on its instance, in order: its `profiles`, then the device
/// profile with `device-placement: profile`.
pub fn wanted_profiles(plan: &InstancePlan) -> Vec<String> {
    let mut names = plan.profiles.clone();
    if plan.device_placement == DevicePlacement::Profile && !names.contains(&plan.device_profile) {
        names.push(plan.device_profile.clone());
    }
    names
}

/// What `record-profiles` recorded: the instance's profiles as they were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfilesBefore {
    pub profiles: Vec<String>,
    /// The device profile as it was; `None`: it did not exist.
    pub device_profile: Option<ProfilePut>,
}

impl Output for ProfilesBefore {
    const STEP: &'static str = "record-profiles";
}

/// What `apply-profiles` recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfilesApplied {
    pub profiles: Vec<String>,
}

impl Output for ProfilesApplied {
    const STEP: &'static str = "apply-profiles";
}

pub(super) fn steps() -> Vec<std::sync::Arc<dyn Step<RunEnv>>> {
    vec![
        std::sync::Arc::new(RecordProfiles),
        std::sync::Arc::new(ApplyProfiles),
    ]
}

/// The refusals of an apply, read-only: the instance must exist and every profile the config
/// names (the device profile aside: the run makes it) must exist on the daemon. The error
/// names the config file and the key.
pub async fn precheck(lxd: &lxd::Client, plan: &InstancePlan) -> Result<(), StepError> {
    if !lxd.instance_exists(&plan.name).await? {
        return Err(StepError::new(format!(
            "instance {} does not exist: nothing changed",
            plan.name
        )));
    }
    for p in &plan.profiles {
        if p == &plan.device_profile && plan.device_placement == DevicePlacement::Profile {
            continue;
        }
        if lxd.get_profile(p).await.optional()?.is_none() {
            let file = plan
                .config_files
                .first()
                .map(|(f, _)| f.as_str())
                .unwrap_or("(config)");
            return Err(StepError::new(format!(
                "{file}: key profiles: profile {p} does not exist on the daemon: nothing changed"
            )));
        }
    }
    Ok(())
}

struct RecordProfiles;

impl Step<RunEnv> for RecordProfiles {
    fn name(&self) -> &'static str {
        ProfilesBefore::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            precheck(&lxd, plan).await?;
            let inst = lxd.get_instance(cx.instance).await?.value;
            let device_profile = match plan.device_placement {
                DevicePlacement::Profile => lxd
                    .get_profile(&plan.device_profile)
                    .await
                    .optional()?
                    .map(|p| p.value.to_put()),
                DevicePlacement::Instance => None,
            };
            ProfilesBefore {
                profiles: inst.profiles,
                device_profile,
            }
            .record()
        })
    }

    fn undo<'a>(&'a self, _cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }
}

struct ApplyProfiles;

impl Step<RunEnv> for ApplyProfiles {
    fn name(&self) -> &'static str {
        ProfilesApplied::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            if plan.device_placement == DevicePlacement::Profile {
                let devices = profile::wanted_devices(plan).await?;
                match lxd.get_profile(&plan.device_profile).await.optional()? {
                    None => {
                        let put = ProfilePut {
                            description: format!("reroot devices of {}", plan.name),
                            devices,
                            ..Default::default()
                        };
                        lxd.create_profile(&plan.device_profile, &put).await?;
                    }
                    Some(_) => {
                        // Only the devices: the profile's description and config are not
                        // the config's to say.
                        lxd.update_profile(&plan.device_profile, |now| {
                            (now.devices != devices).then(|| {
                                let mut put = now.to_put();
                                put.devices = devices.clone();
                                put
                            })
                        })
                        .await?;
                    }
                }
            }
            let wanted = wanted_profiles(plan);
            lxd.update_instance(cx.instance, |now| {
                (now.profiles != wanted).then(|| InstancePatch {
                    profiles: Some(wanted.clone()),
                    ..Default::default()
                })
            })
            .await?;
            ProfilesApplied { profiles: wanted }.record()
        })
    }

    /// Puts the recorded list back first (so that a device profile this run created is no
    /// longer in use and can be deleted), then the device profile.
    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            let before: ProfilesBefore = cx.outputs.of()?;
            // A profile of the old list deleted since cannot be attached again: LXD refuses
            // the whole list with a bare "not found", so say which.
            for p in &before.profiles {
                let is_device_profile =
                    p == &plan.device_profile && plan.device_placement == DevicePlacement::Profile;
                if !is_device_profile && lxd.get_profile(p).await.optional()?.is_none() {
                    return Err(StepError::new(format!(
                        "profile {p}, which {} had before this run, no longer exists: create \
                         it again (profile import), then undo again",
                        cx.instance
                    )));
                }
            }
            lxd.update_instance(cx.instance, |now| {
                (now.profiles != before.profiles).then(|| InstancePatch {
                    profiles: Some(before.profiles.clone()),
                    ..Default::default()
                })
            })
            .await?;
            if plan.device_placement != DevicePlacement::Profile {
                return Ok(());
            }
            match &before.device_profile {
                Some(put) => {
                    lxd.update_profile(&plan.device_profile, |now| {
                        (now.to_put() != *put).then(|| put.clone())
                    })
                    .await?;
                }
                None => {
                    lxd.delete_profile(&plan.device_profile).await?;
                }
            }
            Ok(())
        })
    }
}
