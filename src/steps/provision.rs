//! `provision`: makes the instance's data ready for the new root while the old root still
//! runs, so none of it costs downtime. Missing external filesystems are created (or cloned,
//! with `device-origin`), missing device directories are created with the right owner and
//! seeded from the template, and with `device-placement: instance` (the default) the disk
//! devices are set on the new root, still under its temporary name. Existing filesystems and
//! directories are never touched, so the old root, which uses them, is not disturbed.
//!
//! With `device-placement: profile` the device profile is left to `reattach`, after `stop`:
//! the old root has that profile too, and changing its devices while it runs would hot-plug
//! them into the running website.

use serde::{Deserialize, Serialize};

use super::plan::DevicePlacement;
use super::profile::{device_host_dir, filesystem, wanted_devices};
use super::RunEnv;
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd::{self, InstancePatch};
use crate::storage::{self, Ensured, IdMap, Owner};

pub(super) struct Provision;

/// What `provision` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provisioned {
    /// The host owner of directories it made, `uid:gid`.
    pub owner: String,
    /// Ids (config keys) of the filesystems it made (or cloned).
    pub new_filesystems: Vec<String>,
    /// The device directories it made.
    pub new_directories: Vec<String>,
}

impl Output for Provisioned {
    const STEP: &'static str = "provision";
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

impl Step<RunEnv> for Provision {
    fn name(&self) -> &'static str {
        Provisioned::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            let root = cx
                .env
                .new_root_name(cx.instance, cx.run)
                .await?
                .ok_or_else(|| {
                    StepError::new(format!("the new root of {} is missing", cx.instance))
                })?;
            let owner = owner(&lxd, &root, plan.device_owner).await?;

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

            if plan.device_placement == DevicePlacement::Instance {
                // On the new root itself; a device profile an earlier rebuild left is not
                // attached to it (`prepare` leaves it out) and stays for the retired root.
                let devices = wanted_devices(plan).await?;
                lxd.update_instance(&root, |now| {
                    let missing = devices.iter().any(|(k, d)| now.devices.get(k) != Some(d));
                    missing.then(|| InstancePatch {
                        devices: Some(devices.clone()),
                        ..Default::default()
                    })
                })
                .await?;
            }
            Provisioned {
                owner: format!("{}:{}", owner.uid, owner.gid),
                new_filesystems,
                new_directories: new_dirs,
            }
            .record()
        })
    }

    /// Nothing to undo: the filesystems and directories stay (no undo deletes data), and the
    /// devices set on the new root go with it (the undo of `prepare` deletes it).
    fn undo<'a>(&'a self, _cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }
}
