//! The plan of one instance: everything the rebuild steps need to know about it, as plain data.
//!
//! A plan is made from a resolved config when a run starts and is stored in the run's header in
//! the journal. `resume` and `undo` read it back from there, so they never depend on config
//! files that may have changed or disappeared since.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::config::DevicePlacement;

/// Where a new root comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RootSource {
    /// A copy of a template instance's snapshot (`origin: template/snapshot`).
    Snapshot {
        /// The template instance.
        instance: String,
        /// Its snapshot.
        snapshot: String,
    },
    /// A new instance from an image alias (`image:`), when no origin is given.
    Image {
        /// The image alias.
        alias: String,
        /// `image: REMOTE:ALIAS`: the remote of the `lxc`/`incus` client configuration that
        /// serves the image (none: the daemon's own images).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remote: Option<String>,
        /// The image on that remote, as the run found it when it was planned (see
        /// `run::images`): every root of the run, and its resume, is built from that one
        /// image even if the alias moves meanwhile.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pull: Option<RemoteImage>,
    },
}

/// An image on another server, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteImage {
    /// The image the alias pointed to.
    pub fingerprint: String,
    /// `https://HOST:PORT`.
    pub server: String,
    /// The server's certificate, PEM (pinned by the daemon as it pulls).
    pub certificate: String,
}

impl RootSource {
    /// How the source is written in configs and messages (`tpl/snap` or `image:alias`).
    pub fn describe(&self) -> String {
        match self {
            RootSource::Snapshot { instance, snapshot } => format!("{instance}/{snapshot}"),
            RootSource::Image {
                alias,
                remote: Some(remote),
                ..
            } => format!("image:{remote}:{alias}"),
            RootSource::Image { alias, .. } => format!("image:{alias}"),
        }
    }
}

/// What kind of external filesystem, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FilesystemKind {
    /// A ZFS dataset.
    Zfs {
        /// The dataset name (`pool/a/b`).
        dataset: String,
    },
    /// A btrfs subvolume at an absolute path.
    Btrfs {
        /// Its path.
        path: String,
    },
    /// A plain directory at an absolute path.
    Dir {
        /// Its path.
        path: String,
    },
}

/// One external filesystem of the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesystemPlan {
    /// The id used by devices.
    pub id: String,
    /// Kind and location.
    pub kind: FilesystemKind,
    /// Transient filesystems hold nothing worth a snapshot.
    pub transient: bool,
    /// `destroy: true`: `reroot destroy` removes it (nothing else ever does).
    #[serde(default)]
    pub destroy: bool,
    /// ZFS properties used when the dataset is created.
    #[serde(default)]
    pub zfs_properties: BTreeMap<String, String>,
    /// `device-origin`: a missing filesystem is created as a clone of this one at a snapshot.
    #[serde(default)]
    pub clone_of: Option<Box<CloneSource>>,
}

/// The filesystem and snapshot a new filesystem is cloned from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneSource {
    /// The source filesystem.
    pub filesystem: FilesystemPlan,
    /// Its snapshot.
    pub snapshot: String,
}

/// Where a new device directory gets its first content (`device-template`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateDir {
    /// The template instance's filesystem holding the same device.
    pub filesystem: FilesystemPlan,
    /// The device's directory in it.
    pub subdir: String,
}

/// One disk device of the instance's device profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePlan {
    /// The device name in the profile.
    pub name: String,
    /// Where it is mounted inside the container.
    pub path: String,
    /// The filesystem it lives on, or `None` for a standalone absolute host directory.
    pub filesystem: Option<String>,
    /// The directory: relative to the filesystem (`""` = its root), or absolute when standalone.
    pub dir: String,
    /// Mounted read-only.
    pub readonly: bool,
    /// A template directory rsynced into the device directory when that is newly created.
    pub template: Option<TemplateDir>,
}

/// A command run inside the container after start; the rebuild is verified when it exits 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// The command, as an argument vector.
    pub command: Vec<String>,
    /// How long it may take to succeed, retried once a second, in seconds.
    pub timeout_s: u64,
}

/// One cloud-config file: its path (for messages) and its text as read when the run started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudConfigFile {
    /// Where it was read from.
    pub path: String,
    /// Its text.
    pub text: String,
}

/// Everything a rebuild needs about one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstancePlan {
    /// The instance name.
    pub name: String,
    /// The LXD project.
    pub project: String,
    /// The remote (of the `lxc`/`incus` client configuration) the instance lives on, as its
    /// config names it; `None`: the daemon the run was started on. Not written when `None`, so
    /// that plans of one daemon keep the shape runs recorded before it existed have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The OS type, for cloud-config commands (`busybox`, `alpine`, `debian`, ...).
    pub ostype: Option<String>,
    /// Where the new root comes from.
    pub source: RootSource,
    /// The profiles, in order, without the device profile.
    pub profiles: Vec<String>,
    /// The per-instance profile holding the disk devices (with [`DevicePlacement::Profile`];
    /// with `Instance`, the name of the profile an earlier rebuild may have left, which the new
    /// root does not get).
    pub device_profile: String,
    /// Where the disk devices are set. Runs recorded before this existed used the profile.
    #[serde(default = "profile_placement")]
    pub device_placement: DevicePlacement,
    /// Instance config keys to set on the new root (from `lxc-options`).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// The external filesystems.
    pub filesystems: Vec<FilesystemPlan>,
    /// The disk devices.
    pub devices: Vec<DevicePlan>,
    /// Owner (host uid, gid) of new device directories; `None` derives it from the instance's
    /// id map (container root).
    pub device_owner: Option<(u32, u32)>,
    /// The cloud-config files, applied in order.
    pub cloud_config: Vec<CloudConfigFile>,
    /// Seconds of clean stop before a force stop (0 = force at once).
    pub stop_timeout_s: u64,
    /// The optional health check.
    pub health: Option<HealthCheck>,
    /// The config files this plan was made from, with their sha256 digests.
    #[serde(default)]
    pub config_files: Vec<(String, String)>,
    /// `stop: true`: stop the new root once it is verified (`final-stop`).
    #[serde(default)]
    pub final_stop: bool,
    /// `snapshot: NAME`: then take this snapshot of the new root (`final-snapshot`).
    #[serde(default)]
    pub final_snapshot: Option<String>,
    /// `-e`/`--ephemeral` in `lxc-options`: the new root is ephemeral (the daemon deletes it
    /// when it stops; reroot clears the flag on an old root before it stops it).
    #[serde(default)]
    pub ephemeral: bool,
    /// Seconds `ready` waits, after the start, for the container to be up before cloud-config
    /// (`None`: recorded before the step existed, no wait; `Some(0)`: no wait).
    #[serde(default)]
    pub wait_ready_s: Option<u64>,
}

fn profile_placement() -> DevicePlacement {
    DevicePlacement::Profile
}

impl FilesystemPlan {
    /// The storage module's view of this filesystem (what it is and where, to create, snapshot
    /// and find it).
    pub fn storage(&self) -> crate::storage::Filesystem {
        use crate::storage::FsKind;
        crate::storage::Filesystem {
            id: self.id.clone(),
            kind: match &self.kind {
                FilesystemKind::Zfs { dataset } => FsKind::Zfs {
                    dataset: dataset.clone(),
                },
                FilesystemKind::Btrfs { path } => FsKind::Btrfs { path: path.into() },
                FilesystemKind::Dir { path } => FsKind::Dir { path: path.into() },
            },
            transient: self.transient,
            zfs_properties: self.zfs_properties.clone(),
        }
    }

    fn from_config(fs: &crate::config::Filesystem) -> FilesystemPlan {
        use crate::config::FilesystemPath;
        FilesystemPlan {
            id: fs.id.clone(),
            kind: match &fs.path {
                FilesystemPath::Zfs { dataset } => FilesystemKind::Zfs {
                    dataset: dataset.clone(),
                },
                FilesystemPath::Btrfs { path } => FilesystemKind::Btrfs {
                    path: path.display().to_string(),
                },
                FilesystemPath::Dir { path } => FilesystemKind::Dir {
                    path: path.display().to_string(),
                },
            },
            transient: fs.transient,
            destroy: fs.destroy,
            zfs_properties: fs.zfs_properties.clone(),
            clone_of: None,
        }
    }
}

impl InstancePlan {
    /// The plan of a resolved config: reads the cloud-config files' text now, so the run is
    /// self-contained. Fails with a message naming the config file when the config cannot be
    /// rebuilt (no `origin` snapshot and no `image`, a cross-project origin, an unreadable file).
    pub fn from_resolved(r: &crate::config::ResolvedInstance) -> Result<InstancePlan, String> {
        use crate::config::DeviceSource;
        let file = r.config_file.display();
        let source = match (&r.origin, &r.image) {
            (Some(o), _) => {
                if o.project.as_ref().is_some_and(|p| *p != r.project) {
                    return Err(format!(
                        "{file}: origin: a template in another project is not supported yet"
                    ));
                }
                let Some(snapshot) = &o.snapshot else {
                    return Err(format!(
                        "{file}: origin: `{}` names no snapshot; a rebuild copies a template \
                         snapshot (write `{}/SNAPSHOT`)",
                        o.instance, o.instance
                    ));
                };
                RootSource::Snapshot {
                    instance: o.instance.clone(),
                    snapshot: snapshot.clone(),
                }
            }
            (None, Some(image)) => match image.split_once(':') {
                // `local:` is the daemon itself, as in lxc and incus.
                Some(("local", alias)) => RootSource::Image {
                    alias: alias.to_string(),
                    remote: None,
                    pull: None,
                },
                Some((remote, alias)) => RootSource::Image {
                    alias: alias.to_string(),
                    remote: Some(remote.to_string()),
                    pull: None,
                },
                None => RootSource::Image {
                    alias: image.clone(),
                    remote: None,
                    pull: None,
                },
            },
            (None, None) => {
                return Err(format!(
                    "{file}: neither `origin` nor `image` says where the root comes from"
                ))
            }
        };
        let mut filesystems: Vec<FilesystemPlan> = r
            .filesystems
            .iter()
            .map(FilesystemPlan::from_config)
            .collect();
        let mut devices = Vec::new();
        for d in &r.devices {
            let dir = match &d.filesystem {
                Some(_) => d.subdir.display().to_string(),
                None => d.host_dir.display().to_string(),
            };
            let mut template = None;
            if let (Some(DeviceSource::Template { instance }), Some(_)) =
                (&r.device_source, &d.filesystem)
            {
                if let Some(td) = instance.devices.iter().find(|t| t.name == d.name) {
                    let tfs = td
                        .filesystem
                        .as_ref()
                        .and_then(|id| instance.filesystems.iter().find(|f| &f.id == id));
                    if let Some(tfs) = tfs {
                        template = Some(TemplateDir {
                            filesystem: FilesystemPlan::from_config(tfs),
                            subdir: td.subdir.display().to_string(),
                        });
                    }
                }
            }
            devices.push(DevicePlan {
                name: d.name.clone(),
                path: d.path.clone(),
                filesystem: d.filesystem.clone(),
                dir,
                readonly: d.readonly,
                template,
            });
        }
        if let Some(DeviceSource::Origin { instance, snapshot }) = &r.device_source {
            for fs in &mut filesystems {
                if let Some(src) = instance.filesystems.iter().find(|s| s.id == fs.id) {
                    fs.clone_of = Some(Box::new(CloneSource {
                        filesystem: FilesystemPlan::from_config(src),
                        snapshot: snapshot.clone(),
                    }));
                }
            }
        }
        let mut cloud_config = Vec::new();
        for path in &r.cloud_config_files {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("{file}: cloud-config-files: {}: {e}", path.display()))?;
            cloud_config.push(CloudConfigFile {
                path: path.display().to_string(),
                text,
            });
        }
        Ok(InstancePlan {
            name: r.name.clone(),
            project: r.project.clone(),
            remote: r.remote.clone(),
            ostype: r.ostype.map(|o| o.as_str().to_string()),
            source,
            profiles: r.profiles.clone(),
            device_profile: r.profile.clone(),
            device_placement: r.device_placement,
            config: r.instance_config.clone(),
            filesystems,
            devices,
            device_owner: r.device_owner.map(|o| (o.uid, o.gid)),
            cloud_config,
            stop_timeout_s: r.stop_timeout,
            health: r.health_check.as_ref().map(|h| HealthCheck {
                command: h.command.clone(),
                timeout_s: h.timeout,
            }),
            config_files: r
                .files
                .iter()
                .map(|f| (f.path.display().to_string(), f.sha256.clone()))
                .collect(),
            final_stop: r.stop,
            final_snapshot: r.snapshot.clone(),
            ephemeral: r.ephemeral,
            wait_ready_s: Some(r.wait_ready),
        })
    }
}
