//! `reroot profile list` and `profile diff`: the profiles a config wants for its instance (in
//! order, then the device profile with `device-placement: profile`), whether the daemon has
//! each, the instance's live list, and for the device profile its disk devices against the ones
//! the plan computes (the same [`steps::wanted_devices`] a rebuild writes).
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
    /// The device profile's disk devices against the plan's (empty without one).
    pub devices: Vec<DeviceDrift>,
}

impl ProfileDiff {
    pub fn drift(&self) -> bool {
        !self.instance_exists
            || !self.missing_on_daemon.is_empty()
            || !self.not_attached.is_empty()
            || !self.extra.is_empty()
            || self.order_differs
            || !self.devices.is_empty()
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
    let mut devices = Vec::new();
    if plan.device_placement == DevicePlacement::Profile {
        let want = steps::wanted_devices(plan)
            .await
            .map_err(|e| ViewError::Plan {
                instance: plan.name.clone(),
                message: e.to_string(),
            })?;
        let have = lxd
            .get_profile(&plan.device_profile)
            .await
            .optional()
            .map_err(lxd_err(&plan.name))?
            .map(|p| p.value.devices)
            .unwrap_or_default();
        devices = device_drift(&want, &have);
    }
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
                    "{name}: device {} missing ({})\n",
                    d.device,
                    show(&d.wanted)
                ),
                "extra" => format!(
                    "{name}: device {} not in the config ({})\n",
                    d.device,
                    show(&d.live)
                ),
                _ => format!(
                    "{name}: device {} is {}, the config wants {}\n",
                    d.device,
                    show(&d.live),
                    show(&d.wanted)
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
