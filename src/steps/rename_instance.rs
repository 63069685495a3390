//! The steps of `reroot rename CONFIG NEW`: an instance, its external filesystems whose
//! location follows its name, and its disk devices, under the new name.
//!
//! | step | effect | undo |
//! |---|---|---|
//! | `check` | refuses a running instance, a taken name, a filesystem or device profile in the way; records the moves and the devices as they are | nothing |
//! | `rename-instance` | renames the instance | renames it back |
//! | `move-fs` | moves each filesystem whose location changes (`zfs rename`, a btrfs subvolume or directory renamed in place), then points the disk devices at the moved directories (on the instance, or in the new device profile that replaces the old one in its list) | moves them back, then puts the recorded devices and profiles back |
//!
//! The moves and the devices are one step because LXD checks that a disk device's source
//! exists whenever an instance's devices change (LXD 5.0.2: "Missing source path"): the devices
//! can follow the filesystems only once they are moved, and go back only once they are back.
//!
//! Nothing is copied or deleted: a filesystem is moved where it is (a move across
//! filesystems is refused by the kernel and the run fails, changing nothing), and the old device
//! profile is deleted only once no instance uses it, after its successor is attached. The old
//! name's plan is the run's; the new name's (the same config resolved with `--name NEW`) is in
//! the run's options, so that resume and undo need no config file.

use serde::{Deserialize, Serialize};

use super::plan::DevicePlacement;
use super::{InstancePlan, RunEnv};
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd::{Devices, InstancePatch, OptionalExt, ProfilePut};
use crate::storage::{self, Filesystem};

/// One filesystem moved by the rename.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// The filesystem's id in the config.
    pub id: String,
    /// Where it is (as the storage module writes locations).
    pub from: String,
    /// Where it goes.
    pub to: String,
}

/// What `check` recorded: the moves, and the devices as they were.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RenameCheck {
    /// The new name.
    pub to: String,
    /// The filesystems whose location changes.
    pub moves: Vec<Move>,
    /// The disk devices of the plan, as they were (on the instance, or in its device profile).
    pub devices: Devices,
    /// The instance's profiles, in order, as they were.
    pub profiles: Vec<String>,
}

impl Output for RenameCheck {
    const STEP: &'static str = "check";
}

/// What `move-fs` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesystemsMoved {
    /// The locations moved to by this run (not those found moved already).
    pub moved: Vec<String>,
    /// Where the disk devices are.
    pub placement: DevicePlacement,
    /// The device profile the instance has now (with the profile placement).
    pub profile: Option<String>,
}

impl Output for FilesystemsMoved {
    const STEP: &'static str = "move-fs";
}

/// What `rename-instance` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRenamed {
    /// `OLD -> NEW`.
    pub renamed: String,
}

impl Output for InstanceRenamed {
    const STEP: &'static str = "rename-instance";
}

/// The rename run's steps, in order.
pub(super) fn steps() -> Vec<std::sync::Arc<dyn Step<RunEnv>>> {
    vec![
        std::sync::Arc::new(CheckStep),
        std::sync::Arc::new(RenameInstance),
        std::sync::Arc::new(MoveFilesystems),
    ]
}

/// The plan under the new name.
fn target(env: &RunEnv) -> Result<&InstancePlan, StepError> {
    env.options
        .rename_to
        .as_ref()
        .ok_or_else(|| StepError::new("this run records no new name"))
}

/// Each filesystem of `old` with where it is and where it goes in `new`, when that differs.
fn pairs(
    old: &InstancePlan,
    new: &InstancePlan,
) -> Result<Vec<(Filesystem, Filesystem)>, StepError> {
    let mut out = Vec::new();
    for fs in &old.filesystems {
        let Some(dest) = new.filesystems.iter().find(|f| f.id == fs.id) else {
            return Err(StepError::new(format!(
                "filesystem {} of {} is not in the config under the name {}",
                fs.id, old.name, new.name
            )));
        };
        let (from, to) = (fs.storage(), dest.storage());
        if from.kind.location() != to.kind.location() {
            out.push((from, to));
        }
    }
    Ok(out)
}

/// The `check` of a rename, read-only. The CLI asks it before the run is recorded (a refused
/// run would hold its instance); the step asks it again when the run starts.
pub async fn check(
    lxd: &crate::lxd::Client,
    old: &InstancePlan,
    new: &InstancePlan,
) -> Result<RenameCheck, StepError> {
    let Some(inst) = lxd.get_instance(&old.name).await.optional()? else {
        return Err(StepError::new(format!(
            "instance {} does not exist",
            old.name
        )));
    };
    if inst.value.status != "Stopped" {
        return Err(StepError::new(format!(
            "instance {} is {}: stop it first (a running instance is never renamed)",
            old.name, inst.value.status
        )));
    }
    if lxd.instance_exists(&new.name).await? {
        return Err(StepError::new(format!(
            "an instance named {} exists already",
            new.name
        )));
    }
    if new.device_placement == DevicePlacement::Profile
        && new.device_profile != old.device_profile
        && lxd
            .get_profile(&new.device_profile)
            .await
            .optional()?
            .is_some()
    {
        return Err(StepError::new(format!(
            "the device profile {} of the new name exists already",
            new.device_profile
        )));
    }
    let mut moves = Vec::new();
    for (from, to) in pairs(old, new)? {
        if to.exists().await? {
            return Err(StepError::new(format!(
                "{} of {} cannot move to {}: that exists already",
                from.kind.location(),
                old.name,
                to.kind.location()
            )));
        }
        if !from.exists().await? {
            return Err(StepError::new(format!(
                "{} of {} does not exist",
                from.kind.location(),
                old.name
            )));
        }
        moves.push(Move {
            id: from.id.clone(),
            from: from.kind.location(),
            to: to.kind.location(),
        });
    }
    let names: Vec<&String> = old.devices.iter().map(|d| &d.name).collect();
    let devices: Devices = match old.device_placement {
        DevicePlacement::Instance => inst.value.devices.clone(),
        DevicePlacement::Profile => lxd
            .get_profile(&old.device_profile)
            .await
            .optional()?
            .map(|p| p.value.devices)
            .unwrap_or_default(),
    }
    .into_iter()
    .filter(|(k, _)| names.contains(&k))
    .collect();
    Ok(RenameCheck {
        to: new.name.clone(),
        moves,
        devices,
        profiles: inst.value.profiles.clone(),
    })
}

struct CheckStep;

impl Step<RunEnv> for CheckStep {
    fn name(&self) -> &'static str {
        RenameCheck::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (old, lxd) = cx.env.scope(cx.instance)?;
            check(&lxd, old, target(cx.env)?).await?.record()
        })
    }

    fn undo<'a>(&'a self, _: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }
}

struct RenameInstance;

impl Step<RunEnv> for RenameInstance {
    fn name(&self) -> &'static str {
        InstanceRenamed::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (_, lxd) = cx.env.scope(cx.instance)?;
            let new = &target(cx.env)?.name;
            if lxd.instance_exists(cx.instance).await? {
                super::rename::rename(&lxd, cx.instance, new).await?;
            } else if !lxd.instance_exists(new).await? {
                return Err(StepError::new(format!(
                    "neither {} nor {new} exists",
                    cx.instance
                )));
            }
            InstanceRenamed {
                renamed: format!("{} -> {new}", cx.instance),
            }
            .record()
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let (_, lxd) = cx.env.scope(cx.instance)?;
            let new = &target(cx.env)?.name;
            if lxd.instance_exists(new).await? && !lxd.instance_exists(cx.instance).await? {
                super::rename::rename(&lxd, new, cx.instance).await?;
            }
            Ok(())
        })
    }
}

struct MoveFilesystems;

impl Step<RunEnv> for MoveFilesystems {
    fn name(&self) -> &'static str {
        FilesystemsMoved::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (old, lxd) = cx.env.scope(cx.instance)?;
            let new = target(cx.env)?;
            let mut moved = Vec::new();
            for (from, to) in pairs(old, new)? {
                if from.move_to(&to).await? == storage::Moved::Moved {
                    moved.push(to.kind.location());
                }
            }
            let devices = super::profile::wanted_devices(new).await?;
            if new.device_placement == DevicePlacement::Instance {
                lxd.update_instance(&new.name, |now| {
                    let stale = devices.iter().any(|(k, d)| now.devices.get(k) != Some(d));
                    stale.then(|| InstancePatch {
                        devices: Some(devices.clone()),
                        ..Default::default()
                    })
                })
                .await?;
                return FilesystemsMoved {
                    moved,
                    placement: new.device_placement,
                    profile: None,
                }
                .record();
            }
            let put = ProfilePut {
                description: format!("disk devices of {} (reroot)", new.name),
                config: Default::default(),
                devices,
            };
            match lxd.get_profile(&new.device_profile).await.optional()? {
                None => lxd.create_profile(&new.device_profile, &put).await?,
                Some(p) if p.value.devices != put.devices => {
                    lxd.put_profile(&new.device_profile, &put, None).await?
                }
                Some(_) => {}
            }
            swap_profile(&lxd, &new.name, &old.device_profile, &new.device_profile).await?;
            if old.device_profile != new.device_profile {
                delete_if_unused(&lxd, &old.device_profile).await?;
            }
            FilesystemsMoved {
                moved,
                placement: new.device_placement,
                profile: Some(new.device_profile.clone()),
            }
            .record()
        })
    }

    /// Moves every filesystem back (also those moved by an attempt that crashed before it was
    /// recorded: a move is idempotent either way), then puts back the devices and profiles
    /// `check` recorded. The instance still has its new name: this undo runs before that of
    /// `rename-instance`.
    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let (old, lxd) = cx.env.scope(cx.instance)?;
            let new = target(cx.env)?;
            for (from, to) in pairs(old, new)? {
                to.move_to(&from).await?;
            }
            let was: RenameCheck = cx.outputs.of()?;
            let name = if lxd.instance_exists(&new.name).await? {
                new.name.clone()
            } else {
                old.name.clone()
            };
            if old.device_placement == DevicePlacement::Instance {
                lxd.update_instance(&name, |now| {
                    let stale = was
                        .devices
                        .iter()
                        .any(|(k, d)| now.devices.get(k) != Some(d));
                    stale.then(|| InstancePatch {
                        devices: Some(was.devices.clone()),
                        ..Default::default()
                    })
                })
                .await?;
                return Ok(());
            }
            if lxd
                .get_profile(&old.device_profile)
                .await
                .optional()?
                .is_none()
            {
                let put = ProfilePut {
                    description: format!("disk devices of {} (reroot)", old.name),
                    config: Default::default(),
                    devices: was.devices.clone(),
                };
                lxd.create_profile(&old.device_profile, &put).await?;
            }
            let profiles = was.profiles.clone();
            lxd.update_instance(&name, |now| {
                (now.profiles != profiles).then(|| InstancePatch {
                    profiles: Some(profiles.clone()),
                    ..Default::default()
                })
            })
            .await?;
            if old.device_profile != new.device_profile {
                delete_if_unused(&lxd, &new.device_profile).await?;
            }
            Ok(())
        })
    }
}

/// Replaces `from` by `to` in the instance's profile list, in place (appended if `from` is not
/// there), so the order of the profiles, and so which wins, stays the same.
async fn swap_profile(
    lxd: &crate::lxd::Client,
    instance: &str,
    from: &str,
    to: &str,
) -> Result<(), StepError> {
    lxd.update_instance(instance, |now| {
        if now.profiles.iter().any(|p| p == to) {
            return None;
        }
        let mut list: Vec<String> = now.profiles.clone();
        match list.iter().position(|p| p == from) {
            Some(k) => list[k] = to.to_string(),
            None => list.push(to.to_string()),
        }
        Some(InstancePatch {
            profiles: Some(list),
            ..Default::default()
        })
    })
    .await?;
    Ok(())
}

/// Deletes a profile no instance uses any more (one still used is left: it is not ours alone).
async fn delete_if_unused(lxd: &crate::lxd::Client, profile: &str) -> Result<(), StepError> {
    if let Some(p) = lxd.get_profile(profile).await.optional()? {
        if p.value.used_by.is_empty() {
            lxd.delete_profile(profile).await?;
        }
    }
    Ok(())
}
