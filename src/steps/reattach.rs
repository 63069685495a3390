//! `reattach`: once the new root has the instance's name, makes sure it has the disk devices.
//! With `device-placement: instance` `provision` set them before `stop`, so this is one read
//! that finds them there (or sets them again after a crash). With `device-placement: profile`
//! the device profile is made to hold exactly the planned devices and attached: the old root,
//! which has the profile too, is stopped by now, so nothing is hot-plugged into a running
//! website. The filesystems and directories are `provision`'s work.

use serde::{Deserialize, Serialize};

use super::names::{built_by, new_root};
use super::plan::DevicePlacement;
use super::preflight::Preflight;
use super::profile::wanted_devices;
use super::RunEnv;
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd::{InstancePatch, OptionalExt, ProfilePut};

pub(super) struct Reattach;

/// What `reattach` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reattached {
    /// Where the disk devices are: on the new root, or in the device profile.
    pub devices: DevicePlacement,
}

impl Output for Reattached {
    const STEP: &'static str = "reattach";
}

impl Step<RunEnv> for Reattach {
    fn name(&self) -> &'static str {
        Reattached::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            let current = new_root(&lxd, cx.instance, cx.run).await?;
            let devices = wanted_devices(plan).await?;
            if plan.device_placement == DevicePlacement::Instance {
                // On the new root itself; a device profile an earlier rebuild left is not
                // attached to it (`prepare` leaves it out) and stays for the retired root.
                lxd.update_instance(cx.instance, |now| {
                    let missing = devices.iter().any(|(k, d)| now.devices.get(k) != Some(d));
                    missing.then(|| InstancePatch {
                        devices: Some(devices.clone()),
                        ..Default::default()
                    })
                })
                .await?;
                return Reattached {
                    devices: plan.device_placement,
                }
                .record();
            }
            match lxd.get_profile(&plan.device_profile).await.optional()? {
                None => {
                    let put = ProfilePut {
                        description: format!("disk devices of {} (reroot)", plan.name),
                        config: Default::default(),
                        devices,
                    };
                    if let Err(e) = lxd.create_profile(&plan.device_profile, &put).await {
                        if !e.is_conflict() {
                            return Err(e.into());
                        }
                        lxd.put_profile(&plan.device_profile, &put, None).await?;
                    }
                }
                Some(p) if p.value.devices != devices => {
                    lxd.update_profile(&plan.device_profile, |now| {
                        (now.devices != devices).then(|| {
                            let mut put = now.to_put();
                            put.devices = devices.clone();
                            put
                        })
                    })
                    .await?;
                }
                Some(_) => {}
            }
            if !current.value.profiles.contains(&plan.device_profile) {
                // Read-modify-write: LXD rewrites volatile keys of a just-renamed instance, so
                // the ETag read above may be stale by now (seen at 100 instances in flight).
                lxd.update_instance(cx.instance, |now| {
                    (!now.profiles.contains(&plan.device_profile)).then(|| {
                        let mut list = now.profiles.clone();
                        list.push(plan.device_profile.clone());
                        InstancePatch {
                            profiles: Some(list),
                            ..Default::default()
                        }
                    })
                })
                .await?;
            }
            Reattached {
                devices: plan.device_placement,
            }
            .record()
        })
    }

    /// The new root, under the instance's name, has its disk devices (on itself, or through the
    /// device profile attached).
    fn holds<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<bool, StepError>> {
        Box::pin(async move {
            let plan = cx.env.plan(cx.instance)?;
            let live = cx.env.live(cx.instance, cx.instance).await?;
            Ok(live.is_some_and(|i| {
                built_by(&i, cx.run)
                    && match plan.device_placement {
                        DevicePlacement::Profile => i.profiles.contains(&plan.device_profile),
                        DevicePlacement::Instance => {
                            plan.devices.iter().all(|d| i.devices.contains_key(&d.name))
                        }
                    }
            }))
        })
    }

    /// Puts the device profile back as it was before the run (or removes it if the run made
    /// it). Filesystems and directories the step created are kept: no undo deletes data.
    /// With the devices on the instance there is nothing to put back: they live on the new
    /// root, which the undo of `prepare` deletes, and the device profile was not touched.
    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            if plan.device_placement == DevicePlacement::Instance {
                return Ok(());
            }
            let pre: Preflight = cx.outputs.of()?;
            match pre.device_profile {
                Some(before) => {
                    let restored = lxd
                        .update_profile(&plan.device_profile, |now| {
                            (now.devices != before.devices).then(|| before.clone())
                        })
                        .await;
                    match restored {
                        Err(e) if e.is_not_found() => {
                            lxd.create_profile(&plan.device_profile, &before).await?
                        }
                        other => {
                            other?;
                        }
                    }
                }
                None => {
                    // Made by this run: detach it from the new root, then remove it.
                    let detached = lxd
                        .update_instance(cx.instance, |now| {
                            let attached = built_by(now, cx.run)
                                && now.profiles.contains(&plan.device_profile);
                            attached.then(|| InstancePatch {
                                profiles: Some(
                                    now.profiles
                                        .iter()
                                        .filter(|p| **p != plan.device_profile)
                                        .cloned()
                                        .collect(),
                                ),
                                ..Default::default()
                            })
                        })
                        .await;
                    match detached {
                        Err(e) if e.is_not_found() => {}
                        other => {
                            other?;
                        }
                    }
                    if let Err(e) = lxd.delete_profile(&plan.device_profile).await {
                        if !e.is_in_use() {
                            return Err(e.into());
                        }
                        tracing::warn!(
                            profile = plan.device_profile,
                            "device profile is used by another instance; leaving it"
                        );
                    }
                }
            }
            Ok(())
        })
    }
}
