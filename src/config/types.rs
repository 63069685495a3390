//! The plain data a config resolves to: what the rest of reroot acts on. Nothing here knows LXD.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

pub use crate::input::OsType;

/// What kind of storage a filesystem pattern names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FilesystemKind {
    Zfs,
    Btrfs,
    Dir,
}

impl FilesystemKind {
    pub const NAMES: &'static [&'static str] = &["zfs", "btrfs", "dir"];
}

impl FromStr for FilesystemKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zfs" => Ok(FilesystemKind::Zfs),
            "btrfs" => Ok(FilesystemKind::Btrfs),
            "dir" => Ok(FilesystemKind::Dir),
            _ => Err(format!(
                "unknown filesystem kind `{s}` (known: zfs, btrfs, dir)"
            )),
        }
    }
}

/// Where a filesystem lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FilesystemPath {
    /// A ZFS dataset. Its directory is its mountpoint, which only the storage module can
    /// query; [`FilesystemPath::default_dir`] assumes the default `/<dataset>`.
    Zfs { dataset: String },
    /// A btrfs subvolume at an absolute host path.
    Btrfs { path: PathBuf },
    /// A plain host directory.
    Dir { path: PathBuf },
}

impl FilesystemPath {
    pub fn kind(&self) -> FilesystemKind {
        match self {
            FilesystemPath::Zfs { .. } => FilesystemKind::Zfs,
            FilesystemPath::Btrfs { .. } => FilesystemKind::Btrfs,
            FilesystemPath::Dir { .. } => FilesystemKind::Dir,
        }
    }

    /// The host directory of the filesystem, assuming a ZFS dataset is mounted at its default
    /// mountpoint `/<dataset>`.
    pub fn default_dir(&self) -> PathBuf {
        match self {
            FilesystemPath::Zfs { dataset } => Path::new("/").join(dataset),
            FilesystemPath::Btrfs { path } | FilesystemPath::Dir { path } => path.clone(),
        }
    }

    /// The dataset name or the path, as text.
    pub fn display(&self) -> String {
        match self {
            FilesystemPath::Zfs { dataset } => dataset.clone(),
            FilesystemPath::Btrfs { path } | FilesystemPath::Dir { path } => {
                path.display().to_string()
            }
        }
    }
}

/// One external filesystem of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Filesystem {
    /// The key under `filesystems:`.
    pub id: String,
    pub path: FilesystemPath,
    /// `destroy` removes it (default false).
    pub destroy: bool,
    /// Never snapshotted, exported or cloned; created fresh instead.
    pub transient: bool,
    /// `-o key=value` options for `zfs create`/`zfs clone`.
    pub zfs_properties: BTreeMap<String, String>,
}

/// One disk device of the instance's own profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// The key under `devices:` (the LXD device name).
    pub name: String,
    /// Mount path inside the container.
    pub path: String,
    /// The filesystem id it lives in; `None` for a standalone device (an absolute host dir that
    /// reroot never creates or destroys).
    pub filesystem: Option<String>,
    /// Directory relative to the filesystem root (empty for the root itself, `dir: .`).
    pub subdir: PathBuf,
    /// The host directory: the filesystem's [`FilesystemPath::default_dir`] joined with
    /// `subdir`, or the absolute `dir` of a standalone device.
    pub host_dir: PathBuf,
    pub readonly: bool,
}

/// `uid:gid` that owns newly created filesystems and device directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// `origin: [project_]instance[/snapshot]`: what the instance's root is copied from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// Project of the template instance; `None` = the instance's own project.
    pub project: Option<String>,
    pub instance: String,
    pub snapshot: Option<String>,
}

/// An instance whose filesystems and devices are the source for this instance's data:
/// resolved with `(instance)` = its own name (and the same `-P` and global properties).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceInstance {
    pub name: String,
    pub project: String,
    /// The config it was resolved from (`source-config`, or the instance's own config).
    pub config_file: PathBuf,
    pub filesystems: Vec<Filesystem>,
    pub devices: Vec<Device>,
}

/// Where new device directories get their initial content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DeviceSource {
    /// `device-template: NAME`: new device directories are copied (`rsync -a`) from the same
    /// device of the template instance.
    Template { instance: SourceInstance },
    /// `device-origin: NAME@SNAPSHOT`: filesystems are ZFS clones of the source's
    /// filesystems at that snapshot. Takes precedence over `device-template`.
    Origin {
        instance: SourceInstance,
        snapshot: String,
    },
}

/// A command run inside the container after a start to tell whether it is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    /// The argument vector (a string in the config becomes `sh -c STRING`).
    pub command: Vec<String>,
    /// Seconds to wait for it (default 30).
    pub timeout: u64,
}

/// A config file that contributed to an instance, with the sha256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigFileDigest {
    pub path: PathBuf,
    pub sha256: String,
}

/// Everything reroot needs to know about one instance, with includes merged, properties
/// substituted and every value checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedInstance {
    pub name: String,
    /// `--project`, else the config's `project`, else `default`.
    pub project: String,
    /// `remote`: the daemon the instance lives on, a remote of the `lxc`/`incus` client
    /// configuration; `None`: the daemon the command connects to (`--remote`, `--socket`).
    pub remote: Option<String>,
    pub description: String,
    /// The config file named on the command line (absolute).
    pub config_file: PathBuf,
    pub ostype: Option<OsType>,
    /// Image alias or fingerprint to create the instance from when there is no `origin`.
    pub image: Option<String>,
    pub origin: Option<Origin>,
    pub device_source: Option<DeviceSource>,
    /// Profiles to attach before the instance's own profile, in config order (`default` when
    /// the config names none), plus `-p` profiles from `lxc-options`.
    pub profiles: Vec<String>,
    /// The instance's own profile holding its disk devices: `profile-pattern` substituted, or
    /// `(instance).reroot`.
    pub profile: String,
    /// Where the disk devices go (`device-placement`).
    pub device_placement: DevicePlacement,
    pub device_owner: Option<Owner>,
    /// Sorted by path, so a parent comes before its children.
    pub filesystems: Vec<Filesystem>,
    pub devices: Vec<Device>,
    /// Absolute paths, in application order.
    pub cloud_config_files: Vec<PathBuf>,
    /// Instance config keys from `lxc-options` (`-c key=value`).
    pub instance_config: BTreeMap<String, String>,
    /// `--ephemeral` in `lxc-options`.
    pub ephemeral: bool,
    /// Seconds of clean stop before a forced stop (0 = force at once).
    pub stop_timeout: u64,
    pub health_check: Option<HealthCheck>,
    /// `stop: true`: once built, configured and verified, the instance is stopped (a
    /// template, as lxdops stops it).
    pub stop: bool,
    /// `snapshot: NAME`: then the snapshot NAME of its root is taken (what websites copy).
    pub snapshot: Option<String>,
    /// `wait-ready`: seconds to wait after a start, before cloud-config, for an address on
    /// its NIC (if it has one) and a command to run (0 = no wait; default 300, as lxdops).
    pub wait_ready: u64,
    /// Every config file read (the top file first, then its includes in merge order).
    pub files: Vec<ConfigFileDigest>,
}

impl ResolvedInstance {
    /// The filesystem with this id.
    pub fn filesystem(&self, id: &str) -> Option<&Filesystem> {
        self.filesystems.iter().find(|f| f.id == id)
    }
}

/// Where the value of a property comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "file", rename_all = "kebab-case")]
pub enum PropertySource {
    /// `instance`, `project`, `project/`, `project_instance`.
    BuiltIn,
    /// `-P key=value`.
    CommandLine,
    /// `properties:` of a config file.
    Config(PathBuf),
    /// A global property file (`~/.config/reroot/properties.yaml`, `properties.d/*.yaml`,
    /// `--properties FILE`).
    Global(PathBuf),
}

impl fmt::Display for PropertySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertySource::BuiltIn => f.write_str("built-in"),
            PropertySource::CommandLine => f.write_str("-P"),
            PropertySource::Config(p) => write!(f, "config {}", p.display()),
            PropertySource::Global(p) => write!(f, "global {}", p.display()),
        }
    }
}

/// One effective property of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Property {
    pub name: String,
    pub value: String,
    pub source: PropertySource,
}

/// The effective properties of one instance (`reroot config properties`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceProperties {
    pub instance: String,
    pub config_file: PathBuf,
    pub properties: Vec<Property>,
}

/// Where an instance's disk devices are set (`device-placement`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DevicePlacement {
    /// On the instance itself (the default): LXD's cost per operation does not grow with the
    /// number of instances on the host, as it does with one profile per instance (LXD 5.0.2
    /// loads every profile of the project for each copy, start and rename: about 1 ms more
    /// per profile, measured on the testbed). Incus 6.0.4 does not slow down as profiles grow
    /// (benches/profiles.rs: rename 57/48/53 ms, copy 115/93/91 ms at 0/100/200 profiles),
    /// so either placement costs the same there and the default stays one for both daemons:
    /// a config means the same thing wherever it runs.
    #[default]
    Instance,
    /// In the instance's own profile, as lxdops does (`(instance).reroot`, or `profile-pattern`).
    Profile,
}

impl std::str::FromStr for DevicePlacement {
    type Err = String;
    fn from_str(s: &str) -> Result<DevicePlacement, String> {
        match s {
            "instance" => Ok(DevicePlacement::Instance),
            "profile" => Ok(DevicePlacement::Profile),
            other => Err(format!("`{other}`: expected instance or profile")),
        }
    }
}
