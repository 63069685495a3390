//! Views of instances as they are now, for `reroot instance info` and `instance addresses`:
//! what the daemon says (status, profiles, devices, network state), what the config's
//! filesystems hold on the host, which reroot run built the root (the `user.reroot.*` keys it
//! set) and which runs of the journal touched the instance. Each view is a typed, versioned
//! document (`--json`, docs/json.md) with its text form beside it, so the CLI only prints.
//!
//! Read-only: nothing here changes the daemon, the host or the journal.

mod addresses;
mod info;
mod profiles;

pub use addresses::{addresses, interfaces, Address, Addresses, Interface, ADDRESSES};
pub use info::{
    built_from, device_origins, human_bytes, instance_info, BuiltFrom, DeviceView, FsDevice,
    FsView, InstanceInfo, INFO,
};
pub use profiles::{
    config_drift, device_drift, instance_profiles, list_drift, profile_diff, wanted_names,
    ApplyPlan, ConfigDrift, DeviceDrift, InstanceProfiles, ProfileDiff, WantedProfile,
    PROFILE_APPLY_PLAN, PROFILE_DIFF, PROFILE_LIST,
};

use crate::lxd;

/// Why a view could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// No such instance on its daemon.
    #[error("instance {instance} does not exist{}", in_project(.project))]
    Missing { instance: String, project: String },
    #[error("instance {instance}: {source}")]
    Lxd {
        instance: String,
        // Boxed: an LXD error is large, and the view's result is passed around whole.
        #[source]
        source: Box<lxd::Error>,
    },
    /// The plan's devices could not be computed (a filesystem's directory unknown).
    #[error("instance {instance}: {message}")]
    Plan { instance: String, message: String },
    #[error("journal: {0}")]
    Journal(#[from] journal::Error),
}

fn in_project(project: &str) -> String {
    if project.is_empty() || project == "default" {
        String::new()
    } else {
        format!(" in project {project}")
    }
}
