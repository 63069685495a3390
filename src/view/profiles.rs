//! `reroot profile list` and `profile diff`: the profiles a config wants for its instance (in
//! order, then the device profile with `device-placement: profile`), whether the daemon has
//! each, the instance's live list, and what reroot knows the content of: the disk devices the
//! plan computes (the same [`steps::wanted_devices`] a rebuild writes) against the device
//! profile's (or, with `device-placement: instance`, the instance's own), and the instance
//! config keys of `lxc-options`. The other profiles a config names are the user's: the config
//! says only that they exist and where they go in the list.
//!
//! Read-only: the fix is `reroot profile apply`.

use serde::Serialize;

use super::ViewError;
use crate::lxd::{self, Devices, OptionalExt};
use crate::report;
use crate::steps::plan::DevicePlacement;
use crate::steps::{self, InstancePlan};

/// The schema of `profile list --json`.
pub const PROFILE_LIST: &str = "reroot.profile-list/1";
/// The schema of `profile diff --json`.
pub const PROFILE_DIFF: &str = "reroot.profile-diff/1";
/// The schema of `profile apply --dry-run --json`.
pub const PROFILE_APPLY_PLAN: &str = "reroot.profile-apply-plan/1";

/// What `profile apply` would do to one instance (its `--dry-run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplyPlan {
    pub instance: String,
    /// Whether the run would change anything: the profile list or the device profile's
    /// devices differ (what else differs is the diff's, for a rebuild to fix).
    pub changes: bool,
    /// The profile list it would set, in order.
    pub profiles: Vec<String>,
    /// What differs now.
    pub diff: ProfileDiff,
}

impl ApplyPlan {
    pub fn of(plan: &InstancePlan, diff: ProfileDiff) -> ApplyPlan {
        ApplyPlan {
            instance: plan.name.clone(),
            changes: diff.apply_changes(),
            profiles: wanted_names(plan),
            diff,
        }
    }
}

/// One profile the config wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WantedProfile {
    pub name: String,
    /// Whether the daemon has it.
    pub exists: bool,
    /// The instance's own device profile (created by a rebuild, not by hand).
    pub device_profile: bool,
}

/// The profiles of one instance, wanted and live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceProfiles {
    pub instance: String,
    /// In the order the instance must have them.
    pub wanted: Vec<WantedProfile>,
    /// The instance's profile list now; `None` when the instance does not exist.
    pub live: Option<Vec<String>>,
}

/// How one device of the device profile differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceDrift {
    pub device: String,
    /// `missing` (the config has it, the profile not), `extra` (the other way) or `changed`.
    pub kind: &'static str,
    /// What the config says (absent for `extra`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wanted: Option<lxd::Device>,
    /// What the profile has (absent for `missing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<lxd::Device>,
}

/// How one instance config key the config sets (`lxc-options: [-c KEY=VALUE]`) differs on the
/// instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigDrift {
    pub key: String,
    pub wanted: String,
    /// The instance's own value; `None` when it has none.
    pub live: Option<String>,
}

/// What differs between a config's profiles and its instance's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProfileDiff {
    pub instance: String,
    /// False when the instance does not exist (nothing else is then compared).
    pub instance_exists: bool,
    /// Wanted profiles the daemon does not have.
    pub missing_on_daemon: Vec<String>,
    /// Wanted profiles the instance does not have.
    pub not_attached: Vec<String>,
    /// Profiles the instance has that the config does not name.
    pub extra: Vec<String>,
    /// The wanted profiles the instance has, in the wrong order.
    pub order_differs: bool,
    /// The wanted list and the live list, for the reader.
    pub wanted: Vec<String>,
    pub live: Vec<String>,
    /// The disk devices against the plan's: those of the device profile, or with
    /// `device-placement: instance` the instance's own.
    pub devices: Vec<DeviceDrift>,
    /// Where `devices` were compared: `profile NAME` or `instance`.
    pub devices_on: String,
    /// The instance config keys the config sets that differ on the instance (a rebuild sets
    /// them; `profile apply` does not).
    pub config: Vec<ConfigDrift>,
}

impl ProfileDiff {
    pub fn drift(&self) -> bool {
        !self.instance_exists
            || !self.missing_on_daemon.is_empty()
            || !self.not_attached.is_empty()
            || !self.extra.is_empty()
            || self.order_differs
            || !self.devices.is_empty()
            || !self.config.is_empty()
    }

    /// Whether `profile apply` would change something: the profile list, or the device
    /// profile's devices (instance devices and config keys are a rebuild's to set).
    pub fn apply_changes(&self) -> bool {
        self.instance_exists
            && (!self.not_attached.is_empty()
                || !self.extra.is_empty()
                || self.order_differs
                || (self.devices_on != "instance" && !self.devices.is_empty()))
    }
}

fn lxd_err(instance: &str) -> impl Fn(lxd::Error) -> ViewError + '_ {
    move |source| ViewError::Lxd {
        instance: instance.to_string(),
        source: Box::new(source),
    }
}

/// The profile names `plan` wants on its instance, in order (what `profile apply` sets).
pub fn wanted_names(plan: &InstancePlan) -> Vec<String> {
    steps::profile_apply::wanted_profiles(plan)
}

/// The wanted and live profiles of `plan`'s instance.
pub async fn instance_profiles(
    lxd: &lxd::Client,
    plan: &InstancePlan,
) -> Result<InstanceProfiles, ViewError> {
    let err = lxd_err(&plan.name);
    let mut wanted = Vec::new();
    for name in wanted_names(plan) {
        let exists = lxd
            .get_profile(&name)
            .await
            .optional()
            .map_err(&err)?
            .is_some();
        wanted.push(WantedProfile {
            device_profile: plan.device_placement == DevicePlacement::Profile
                && name == plan.device_profile,
            name,
            exists,
        });
    }
    let live = lxd
        .get_instance(&plan.name)
        .await
        .optional()
        .map_err(&err)?
        .map(|i| i.value.profiles);
    Ok(InstanceProfiles {
        instance: plan.name.clone(),
        wanted,
        live,
    })
}

/// The disk devices of the device profile against `wanted`, by device name.
pub fn device_drift(wanted: &Devices, live: &Devices) -> Vec<DeviceDrift> {
    let mut out = Vec::new();
    for (name, w) in wanted {
        match live.get(name) {
            None => out.push(DeviceDrift {
                device: name.clone(),
                kind: "missing",
                wanted: Some(w.clone()),
                live: None,
            }),
            Some(l) if l != w => out.push(DeviceDrift {
                device: name.clone(),
                kind: "changed",
                wanted: Some(w.clone()),
                live: Some(l.clone()),
            }),
            Some(_) => {}
        }
    }
    for (name, l) in live {
        if !wanted.contains_key(name) {
            out.push(DeviceDrift {
                device: name.clone(),
                kind: "extra",
                wanted: None,
                live: Some(l.clone()),
            });
        }
    }
    out
}

/// The keys of `wanted` whose value in `live` differs or is missing.
pub fn config_drift(
    wanted: &std::collections::BTreeMap<String, String>,
    live: &lxd::Config,
) -> Vec<ConfigDrift> {
    wanted
        .iter()
        .filter(|(k, v)| live.get(*k) != Some(*v))
        .map(|(k, v)| ConfigDrift {
            key: k.clone(),
            wanted: v.clone(),
            live: live.get(k).cloned(),
        })
        .collect()
}

/// Compares a wanted list with a live one: (not attached, extra, order differs).
pub fn list_drift(wanted: &[String], live: &[String]) -> (Vec<String>, Vec<String>, bool) {
    let not_attached = wanted
        .iter()
        .filter(|p| !live.contains(p))
        .cloned()
        .collect();
    let extra = live
        .iter()
        .filter(|p| !wanted.contains(p))
        .cloned()
        .collect();
    // Order among the profiles both have: LXD applies them in list order, later ones winning,
    // so the same set in another order is a different instance.
    let common_wanted: Vec<&String> = wanted.iter().filter(|p| live.contains(p)).collect();
    let common_live: Vec<&String> = live.iter().filter(|p| wanted.contains(p)).collect();
    (not_attached, extra, common_wanted != common_live)
}

/// What differs for `plan`'s instance.
pub async fn profile_diff(
    lxd: &lxd::Client,
    plan: &InstancePlan,
) -> Result<ProfileDiff, ViewError> {
    let state = instance_profiles(lxd, plan).await?;
    let wanted: Vec<String> = state.wanted.iter().map(|w| w.name.clone()).collect();
    let missing_on_daemon = state
        .wanted
        .iter()
        .filter(|w| !w.exists)
        .map(|w| w.name.clone())
        .collect();
    let live = state.live.clone().unwrap_or_default();
    let (not_attached, extra, order_differs) = list_drift(&wanted, &live);
    let inst = match state.live {
        Some(_) => lxd
            .get_instance(&plan.name)
            .await
            .optional()
            .map_err(lxd_err(&plan.name))?
            .map(|i| i.value),
        None => None,
    };
    // (An instance that does not exist has no devices to compare with its config's.)
    let want = if plan.device_placement == DevicePlacement::Profile || inst.is_some() {
        steps::wanted_devices(plan)
            .await
            .map_err(|e| ViewError::Plan {
                instance: plan.name.clone(),
                message: e.to_string(),
            })?
    } else {
        Devices::new()
    };
    let (devices, devices_on) = match plan.device_placement {
        DevicePlacement::Profile => {
            let have = lxd
                .get_profile(&plan.device_profile)
                .await
                .optional()
                .map_err(lxd_err(&plan.name))?
                .map(|p| p.value.devices)
                .unwrap_or_default();
            (
                device_drift(&want, &have),
                format!("profile {}", plan.device_profile),
            )
        }
        DevicePlacement::Instance => {
            // The instance's own disk devices, but not its root disk (from a profile, or
            // the instance's own) that no config names.
            let have: Devices = inst
                .as_ref()
                .map(|i| {
                    i.devices
                        .iter()
                        .filter(|(name, d)| {
                            want.contains_key(*name)
                                || (d.get("type").map(String::as_str) == Some("disk")
                                    && d.get("path").map(String::as_str) != Some("/"))
                        })
                        .map(|(n, d)| (n.clone(), d.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let drift = if inst.is_some() {
                device_drift(&want, &have)
            } else {
                Vec::new()
            };
            (drift, "instance".to_string())
        }
    };
    let config = match &inst {
        None => Vec::new(),
        Some(i) => config_drift(&plan.config, &i.config),
    };
    Ok(ProfileDiff {
        instance: plan.name.clone(),
        instance_exists: state.live.is_some(),
        missing_on_daemon,
        not_attached,
        extra,
        order_differs,
        wanted,
        live,
        devices,
        devices_on,
        config,
    })
}

impl InstanceProfiles {
    /// The text table of several instances: one row per wanted profile, then the live list.
    pub fn table(all: &[InstanceProfiles]) -> String {
        let mut rows = Vec::new();
        for i in all {
            let live = match &i.live {
                None => "(no such instance)".to_string(),
                Some(l) => l.join(","),
            };
            for (n, w) in i.wanted.iter().enumerate() {
                rows.push(vec![
                    i.instance.clone(),
                    (n + 1).to_string(),
                    w.name.clone(),
                    if w.device_profile { "devices" } else { "" }.into(),
                    if w.exists { "yes" } else { "NO" }.into(),
                    if n == 0 { live.clone() } else { String::new() },
                ]);
            }
            if i.wanted.is_empty() {
                rows.push(vec![
                    i.instance.clone(),
                    "-".into(),
                    "-".into(),
                    String::new(),
                    String::new(),
                    live,
                ]);
            }
        }
        report::table(
            &["INSTANCE", "#", "PROFILE", "ROLE", "EXISTS", "LIVE"],
            &rows,
        )
    }
}

impl ProfileDiff {
    /// The text form: one line per difference, or "no drift".
    pub fn text(&self) -> String {
        let mut out = String::new();
        let name = &self.instance;
        if !self.instance_exists {
            out.push_str(&format!("{name}: instance does not exist\n"));
        }
        for p in &self.missing_on_daemon {
            out.push_str(&format!(
                "{name}: profile {p} does not exist on the daemon\n"
            ));
        }
        for p in &self.not_attached {
            out.push_str(&format!("{name}: profile {p} is not attached\n"));
        }
        for p in &self.extra {
            out.push_str(&format!(
                "{name}: profile {p} is attached but not in the config\n"
            ));
        }
        if self.order_differs {
            out.push_str(&format!(
                "{name}: profile order is {}, the config wants {}\n",
                self.live.join(","),
                self.wanted.join(",")
            ));
        }
        for d in &self.devices {
            let show = |dev: &Option<lxd::Device>| {
                dev.as_ref()
                    .map(|d| {
                        d.iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default()
            };
            out.push_str(&match d.kind {
                "missing" => format!(
                    "{name}: device {} missing on the {} ({})\n",
                    d.device,
                    self.devices_on,
                    show(&d.wanted)
                ),
                "extra" => format!(
                    "{name}: device {} on the {} is not in the config ({})\n",
                    d.device,
                    self.devices_on,
                    show(&d.live)
                ),
                _ => format!(
                    "{name}: device {} on the {} is {}, the config wants {}\n",
                    d.device,
                    self.devices_on,
                    show(&d.live),
                    show(&d.wanted)
                ),
            });
        }
        for c in &self.config {
            out.push_str(&match &c.live {
                None => format!(
                    "{name}: config {} is not set, the config wants {} (a rebuild sets it)\n",
                    c.key, c.wanted
                ),
                Some(v) => format!(
                    "{name}: config {} is {v}, the config wants {} (a rebuild sets it)\n",
                    c.key, c.wanted
                ),
            });
        }
        if out.is_empty() {
            out.push_str(&format!("{name}: no drift\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn list_drift_sees_missing_extra_and_order() {
        let (n, e, o) = list_drift(
            &names(&["default", "a", "x.reroot"]),
            &names(&["default", "a", "x.reroot"]),
        );
        assert!(n.is_empty() && e.is_empty() && !o);
        let (n, e, o) = list_drift(
            &names(&["default", "a", "x.reroot"]),
            &names(&["a", "default", "b"]),
        );
        assert_eq!(n, ["x.reroot"]);
        assert_eq!(e, ["b"]);
        assert!(o);
    }

    #[test]
    fn device_drift_by_name() {
        let dev = |p: &str| {
            lxd::Device::from([
                ("type".to_string(), "disk".to_string()),
                ("path".to_string(), p.to_string()),
            ])
        };
        let want = Devices::from([("a".to_string(), dev("/a")), ("b".to_string(), dev("/b"))]);
        let have = Devices::from([("b".to_string(), dev("/bb")), ("c".to_string(), dev("/c"))]);
        let kinds: Vec<(String, &str)> = device_drift(&want, &have)
            .into_iter()
            .map(|d| (d.device, d.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("a".to_string(), "missing"),
                ("b".to_string(), "changed"),
                ("c".to_string(), "extra")
            ]
        );
        assert!(device_drift(&want, &want).is_empty());
    }
}
