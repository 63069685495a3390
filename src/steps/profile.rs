//! The device profile: one disk device per planned device, with its host directory as source.

use std::path::PathBuf;

use super::plan::{DevicePlan, FilesystemPlan, InstancePlan};
use crate::engine::StepError;
use crate::lxd::{Device, Devices};

/// The host directory of a device: its filesystem's real directory (a ZFS dataset's mountpoint
/// is asked of ZFS) joined with the device's `dir`, or the absolute `dir` of a standalone one.
pub(super) async fn device_host_dir(
    plan: &InstancePlan,
    device: &DevicePlan,
) -> Result<PathBuf, StepError> {
    match &device.filesystem {
        None => Ok(PathBuf::from(&device.dir)),
        Some(id) => {
            let fs = filesystem(plan, id)?;
            let root = fs.storage().host_dir().await?;
            Ok(if device.dir.is_empty() {
                root
            } else {
                root.join(&device.dir)
            })
        }
    }
}

/// The planned filesystem with this id.
pub(super) fn filesystem<'p>(
    plan: &'p InstancePlan,
    id: &str,
) -> Result<&'p FilesystemPlan, StepError> {
    plan.filesystems.iter().find(|f| f.id == id).ok_or_else(|| {
        StepError::new(format!(
            "device filesystem {id} is not among the filesystems of {}",
            plan.name
        ))
    })
}

/// The disk devices the device profile must hold.
pub async fn wanted_devices(plan: &InstancePlan) -> Result<Devices, StepError> {
    let mut devices = Devices::new();
    for d in &plan.devices {
        let source = device_host_dir(plan, d).await?;
        let mut device = Device::new();
        device.insert("type".into(), "disk".into());
        device.insert("path".into(), d.path.clone());
        device.insert("source".into(), source.display().to_string());
        if d.readonly {
            device.insert("readonly".into(), "true".into());
        }
        devices.insert(d.name.clone(), device);
    }
    Ok(devices)
}
