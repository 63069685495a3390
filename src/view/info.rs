//! `reroot instance info`: one instance as it is now. Its status, profiles and devices come
//! from the daemon; its filesystems from the config (where each is, its host directory, how
//! much it holds, the devices on it and where they are mounted inside); the run that built its
//! root from the `user.reroot.*` keys that run set on it; and the runs that touched it from
//! the journal.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::ViewError;
use crate::lxd::{self, OptionalExt};
use crate::report::{self, json::ListedRun};
use crate::steps::plan::{FilesystemKind, FilesystemPlan};
use crate::steps::InstancePlan;
use crate::steps::{RUN_KEY, SOURCE_ID_KEY, SOURCE_KEY};

/// The schema of the `--json` document.
pub const INFO: &str = "reroot.instance-info/1";

/// What the run that built the root recorded on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuiltFrom {
    /// `tpl/snapshot` or `image:alias`.
    pub source: Option<String>,
    /// What identified the source's content (the snapshot's creation time, the image's
    /// fingerprint).
    pub source_id: Option<String>,
    /// The run's id.
    pub run: Option<String>,
}

/// The `user.reroot.*` keys of an instance's config, or `None` when no reroot run built it.
pub fn built_from(config: &lxd::Config) -> Option<BuiltFrom> {
    let get = |k: &str| config.get(k).cloned();
    let b = BuiltFrom {
        source: get(SOURCE_KEY),
        source_id: get(SOURCE_ID_KEY),
        run: get(RUN_KEY),
    };
    (b.source.is_some() || b.run.is_some()).then_some(b)
}

/// A device on a filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FsDevice {
    pub name: String,
    /// Where it is mounted inside the instance.
    pub path: String,
    /// Its directory on the host (null when the filesystem has no host directory now).
    pub host_dir: Option<String>,
    pub readonly: bool,
}

/// One filesystem of the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FsView {
    pub id: String,
    /// `zfs`, `btrfs` or `dir`.
    pub kind: String,
    /// The dataset or the path.
    pub location: String,
    pub transient: bool,
    pub exists: bool,
    /// Where its data is on the host: a ZFS dataset's mountpoint, else the path.
    pub host_dir: Option<String>,
    /// The bytes it takes (ZFS `used`; `du` of a btrfs subvolume or directory).
    pub size_bytes: Option<u64>,
    /// What could not be found out, if anything.
    pub error: Option<String>,
    pub devices: Vec<FsDevice>,
}

/// One device of the instance, as the daemon has it (its profiles' and its own, merged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceView {
    pub name: String,
    /// `disk`, `nic`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// `instance`, or `profile NAME` for the profile it comes from.
    pub from: String,
    /// Its other keys (`path`, `source`, `pool`, `readonly`, ...).
    pub keys: BTreeMap<String, String>,
}

/// `reroot instance info --json`.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceInfo {
    pub schema: &'static str,
    pub name: String,
    pub project: String,
    pub status: String,
    pub created_at: String,
    /// Null when no reroot run built its root.
    pub built_from: Option<BuiltFrom>,
    pub profiles: Vec<String>,
    pub devices: Vec<DeviceView>,
    pub filesystems: Vec<FsView>,
    /// The runs that touched it, newest first, as `history --json` lists them.
    pub runs: Vec<ListedRun>,
}

/// Where each device comes from: the instance's own devices win over its profiles', and a
/// later profile over an earlier one, as LXD expands them.
pub fn device_origins(
    own: &lxd::Devices,
    profiles: &[(String, lxd::Devices)],
    expanded: &lxd::Devices,
) -> Vec<DeviceView> {
    expanded
        .iter()
        .map(|(name, keys)| {
            let from = if own.contains_key(name) {
                "instance".to_string()
            } else {
                profiles
                    .iter()
                    .rev()
                    .find(|(_, d)| d.contains_key(name))
                    .map_or_else(|| "unknown".to_string(), |(p, _)| format!("profile {p}"))
            };
            let mut keys = keys.clone();
            let kind = keys.remove("type").unwrap_or_default();
            DeviceView {
                name: name.clone(),
                kind,
                from,
                keys,
            }
        })
        .collect()
}

/// `1.5 KiB`, `20.0 MiB`: sizes for people (binary units, one decimal).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

async fn filesystem(plan: &InstancePlan, fs: &FilesystemPlan) -> FsView {
    let storage = fs.storage();
    let (kind, location) = match &fs.kind {
        FilesystemKind::Zfs { dataset } => ("zfs", dataset.clone()),
        FilesystemKind::Btrfs { path } => ("btrfs", path.clone()),
        FilesystemKind::Dir { path } => ("dir", path.clone()),
    };
    let mut view = FsView {
        id: fs.id.clone(),
        kind: kind.to_string(),
        location,
        transient: fs.transient,
        exists: false,
        host_dir: None,
        size_bytes: None,
        error: None,
        devices: Vec::new(),
    };
    match storage.exists().await {
        Ok(true) => {
            view.exists = true;
            match storage.host_dir().await {
                Ok(dir) => view.host_dir = Some(dir.display().to_string()),
                Err(e) => view.error = Some(e.to_string()),
            }
            match storage.size_bytes().await {
                Ok(size) => view.size_bytes = size,
                Err(e) => view.error = Some(e.to_string()),
            }
        }
        Ok(false) => {}
        Err(e) => view.error = Some(e.to_string()),
    }
    for d in plan
        .devices
        .iter()
        .filter(|d| d.filesystem.as_deref() == Some(fs.id.as_str()))
    {
        view.devices.push(FsDevice {
            name: d.name.clone(),
            path: d.path.clone(),
            host_dir: view.host_dir.as_ref().map(|h| {
                let dir = d.dir.trim_start_matches("./");
                if dir.is_empty() || dir == "." {
                    h.clone()
                } else {
                    Path::new(h).join(dir).display().to_string()
                }
            }),
            readonly: d.readonly,
        });
    }
    view
}

/// The runs of the journal at `journal` that touched `instance`, newest first (none when
/// there is no journal yet).
fn runs_touching(journal: &Path, instance: &str) -> Result<Vec<ListedRun>, ViewError> {
    if !journal.exists() {
        return Ok(Vec::new());
    }
    let reader = journal::Reader::open(journal)?;
    // Its runs across renames, each with the name it had then.
    let runs = report::lineage::instance_runs(&reader, instance, &journal::RunFilter::default())?;
    Ok(report::json::history_named(runs.iter().map(|r| (&r.run, Some(r.name.as_str())))).runs)
}

/// The view of `plan`'s instance through `lxd` (its daemon, in its project), with the runs of
/// the journal at `journal`. A missing instance is an error.
pub async fn instance_info(
    lxd: &lxd::Client,
    plan: &InstancePlan,
    journal: &Path,
) -> Result<InstanceInfo, ViewError> {
    let name = &plan.name;
    let lxd_err = |source| ViewError::Lxd {
        instance: name.clone(),
        source: Box::new(source),
    };
    let Some(current) = lxd.get_instance(name).await.optional().map_err(lxd_err)? else {
        return Err(ViewError::Missing {
            instance: name.clone(),
            project: plan.project.clone(),
        });
    };
    let inst = current.value;
    let mut profiles = Vec::new();
    for p in &inst.profiles {
        let profile = lxd.get_profile(p).await.map_err(lxd_err)?;
        profiles.push((p.clone(), profile.value.devices));
    }
    let devices = device_origins(&inst.devices, &profiles, &inst.expanded_devices);
    let mut filesystems = Vec::new();
    for fs in &plan.filesystems {
        filesystems.push(filesystem(plan, fs).await);
    }
    Ok(InstanceInfo {
        schema: INFO,
        name: name.clone(),
        project: plan.project.clone(),
        status: inst.status,
        created_at: inst.created_at,
        built_from: built_from(&inst.config),
        profiles: inst.profiles,
        devices,
        filesystems,
        runs: runs_touching(journal, name)?,
    })
}

impl InstanceInfo {
    /// The text form: a heading, then filesystems, devices and runs.
    pub fn text(&self) -> String {
        let mut out = format!(
            "instance {} (project {}): {}\n",
            self.name, self.project, self.status
        );
        match &self.built_from {
            Some(b) => {
                out.push_str(&format!(
                    "built from: {}",
                    b.source.as_deref().unwrap_or("(source not recorded)")
                ));
                // What identified the source's content: `snapshot created TIME`, an image's
                // fingerprint.
                if let Some(id) = &b.source_id {
                    out.push_str(&format!(" ({id})"));
                }
                if let Some(run) = &b.run {
                    let short = run.get(..8).unwrap_or(run);
                    out.push_str(&format!(" by run {short}"));
                }
                out.push('\n');
            }
            None => out.push_str("built from: not built by reroot\n"),
        }
        out.push_str(&format!("profiles: {}\n", self.profiles.join(", ")));
        out.push_str("filesystems:\n");
        if self.filesystems.is_empty() {
            out.push_str("  (none)\n");
        }
        for fs in &self.filesystems {
            let size = fs.size_bytes.map_or_else(|| "-".to_string(), human_bytes);
            let dir = match (&fs.host_dir, fs.exists) {
                (Some(d), _) => d.clone(),
                (None, false) => "(does not exist)".to_string(),
                (None, true) => "(no host directory)".to_string(),
            };
            out.push_str(&format!(
                "  {} {} {}: {dir}, {size}{}\n",
                fs.id,
                fs.kind,
                fs.location,
                if fs.transient { ", transient" } else { "" }
            ));
            if let Some(e) = &fs.error {
                out.push_str(&format!("    error: {e}\n"));
            }
            for d in &fs.devices {
                out.push_str(&format!(
                    "    {} at {} <- {}{}\n",
                    d.name,
                    d.path,
                    d.host_dir.as_deref().unwrap_or("-"),
                    if d.readonly { " (read-only)" } else { "" }
                ));
            }
        }
        out.push_str("devices:\n");
        for d in &self.devices {
            let keys: Vec<String> = d.keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!(
                "  {} {} ({}): {}\n",
                d.name,
                d.kind,
                d.from,
                keys.join(" ")
            ));
        }
        out.push_str("runs:\n");
        if self.runs.is_empty() {
            out.push_str("  (none in this journal)\n");
        }
        for r in &self.runs {
            out.push_str(&format!(
                "  {}  {:?}  {}  {}\n",
                r.short_id,
                r.status,
                report::utc(r.started_at_ms),
                report::short_command(&r.command)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(entries: &[(&str, &[(&str, &str)])]) -> lxd::Devices {
        entries
            .iter()
            .map(|(n, kv)| {
                (
                    n.to_string(),
                    kv.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn a_device_comes_from_the_instance_else_the_last_profile_that_has_it() {
        let own = devices(&[("www", &[("type", "disk")])]);
        let profiles = vec![
            (
                "default".to_string(),
                devices(&[("root", &[]), ("log", &[])]),
            ),
            ("web.reroot".to_string(), devices(&[("log", &[])])),
        ];
        let expanded = devices(&[
            ("log", &[("type", "disk"), ("path", "/var/log")]),
            ("root", &[("type", "disk"), ("pool", "default")]),
            ("www", &[("type", "disk")]),
            ("gone", &[("type", "nic")]),
        ]);
        let views = device_origins(&own, &profiles, &expanded);
        let from: Vec<(&str, &str, &str)> = views
            .iter()
            .map(|d| (d.name.as_str(), d.kind.as_str(), d.from.as_str()))
            .collect();
        assert_eq!(
            from,
            [
                ("gone", "nic", "unknown"),
                ("log", "disk", "profile web.reroot"),
                ("root", "disk", "profile default"),
                ("www", "disk", "instance"),
            ]
        );
        assert_eq!(
            views[1].keys.get("path").map(String::as_str),
            Some("/var/log")
        );
        assert!(!views[1].keys.contains_key("type"));
    }

    #[test]
    fn built_from_reads_the_keys_a_run_sets() {
        let mut config = lxd::Config::new();
        assert_eq!(built_from(&config), None);
        config.insert(SOURCE_KEY.into(), "tpl/base".into());
        config.insert(RUN_KEY.into(), "1a2b3c4d-0000".into());
        let b = built_from(&config).expect("built");
        assert_eq!(b.source.as_deref(), Some("tpl/base"));
        assert_eq!(b.run.as_deref(), Some("1a2b3c4d-0000"));
        assert_eq!(b.source_id, None);
    }

    #[test]
    fn sizes_read_in_binary_units() {
        let cases = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (20 * 1024 * 1024, "20.0 MiB"),
            (u64::MAX, "16.0 EiB"),
        ];
        for (n, want) in cases {
            assert_eq!(human_bytes(n), want);
        }
    }
}
