//! `reattach`: makes sure the new root gets the instance's data. Missing external filesystems
//! are created (or cloned, with `device-origin`), missing device directories are created with
//! the right owner and seeded from the template, the device profile holds exactly the planned
//! disk devices, and it is attached to the new root. Existing filesystems and directories are
//! never touched.

use serde::{Deserialize, Serialize};

use super::names::{built_by, new_root};
use super::plan::DevicePlacement;
use super::preflight::Preflight;
use super::profile::{device_host_dir, filesystem, wanted_devices};
use super::RunEnv;
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd::{self, InstancePatch, OptionalExt, ProfilePut};
use crate::storage::{self, Ensured, IdMap, Owner};

pub(super) struct Reattach;

/// What `reattach` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reattached {
    /// The host owner of directories it made, `uid:gid`.
    pub owner: String,
    /// Ids (config keys) of the filesystems it made (or cloned).
    pub new_filesystems: Vec<String>,
    /// The device directories it made.
    pub new_directories: Vec<String>,
    /// Where the disk devices went: `instance`, or the device profile (`None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<String>,
}

impl Output for Reattached {
    const STEP: &'static str = "reattach";
}

/// Held while a process makes filesystems: the instances of a parallel run may have datasets
/// under a parent that does not exist yet, and of two concurrent `zfs create -p` one fails
/// (seen on the testbed's zfs-fuse: "dataset already exists", or "cannot mount ...:
/// Input/output error").
static MAKING_FILESYSTEMS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The host owner of new directories: the configured `device-owner`, else the host ids that
/// the instance's root (0:0 inside) maps to.
async fn owner(
    lxd: &lxd::Client,
    instance: &str,
    configured: Option<(u32, u32)>,
) -> Result<Owner, StepError> {
    if let Some((uid, gid)) = configured {
        return Ok(Owner { uid, gid });
    }
    let inst = lxd.get_instance(instance).await?.value;
    let map = IdMap::from_instance_config(inst.config.iter().chain(inst.expanded_config.iter()))?;
    Ok(map.owner(Owner { uid: 0, gid: 0 })?)
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
            let owner = owner(&lxd, cx.instance, plan.device_owner).await?;

            let mut new_filesystems = Vec::new();
            let one_at_a_time = MAKING_FILESYSTEMS.lock().await;
            for fs in &plan.filesystems {
                let target = fs.storage();
                let made = match &fs.clone_of {
                    Some(src) => {
                        target
                            .clone_from(&src.filesystem.storage(), &src.snapshot)
                            .await?
                    }
                    None => target.create().await?,
                };
                if made == Ensured::Created {
                    if fs.clone_of.is_none() {
                        storage::set_owner(&target.host_dir().await?, owner).await?;
                    }
                    new_filesystems.push(fs.id.clone());
                }
            }
            drop(one_at_a_time);

            let mut new_dirs = Vec::new();
            for d in &plan.devices {
                let Some(fs_id) = &d.filesystem else {
                    continue; // standalone: an existing host directory, never created
                };
                let dir = device_host_dir(plan, d).await?;
                let fresh = if d.dir.is_empty() {
                    new_filesystems.contains(fs_id)
                } else {
                    storage::ensure_device_dir(&dir, Some(owner)).await? == Ensured::Created
                };
                if !fresh {
                    continue;
                }
                new_dirs.push(dir.display().to_string());
                let transient = filesystem(plan, fs_id)?.transient;
                if let (Some(t), false) = (&d.template, transient) {
                    let root = t.filesystem.storage().host_dir().await?;
                    let src = if t.subdir.is_empty() {
                        root
                    } else {
                        root.join(&t.subdir)
                    };
                    if !src.is_dir() {
                        return Err(StepError::new(format!(
                            "template directory {} of device {} does not exist",
                            src.display(),
                            d.name
                        )));
                    }
                    storage::rsync_template(&src, &dir).await?;
                }
            }

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
                    owner: format!("{}:{}", owner.uid, owner.gid),
                    new_filesystems,
                    new_directories: new_dirs,
                    devices: Some("instance".into()),
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
                owner: format!("{}:{}", owner.uid, owner.gid),
                new_filesystems,
                new_directories: new_dirs,
                devices: None,
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
