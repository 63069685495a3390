//! What a rebuild would do to each instance, asked of the daemon without changing anything:
//! the plan `rebuild --dry-run` prints, and the test that lets a rebuild skip an instance
//! already built from the requested source.

use serde::Serialize;

use super::plan::{DevicePlacement, InstancePlan};
use super::preflight::{source_id, survey, BuiltFrom};
use crate::lxd::{self, OptionalExt};

/// What a rebuild would do to one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// It does not exist: a rebuild launches it.
    Launch,
    /// Its root is replaced.
    Rebuild,
    /// Already built from the requested source by a run that went through (`--force`
    /// rebuilds it anyway).
    Skip {
        /// The run that built it.
        run: String,
    },
    /// The rebuild would fail at preflight, or another run holds the instance.
    Refuse {
        /// Why.
        reason: String,
    },
}

/// One instance's forecast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Forecast {
    /// The instance.
    pub instance: String,
    /// What would happen.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The source of its root now, if reroot built it (`tpl/snap` or `image:alias`).
    pub from: Option<String>,
    /// The source it would get.
    pub to: String,
    /// It runs now (and so would be down between `stop` and `start`).
    pub running: bool,
    /// Its profiles now and after.
    pub profiles_before: Vec<String>,
    /// The profiles the new root gets.
    pub profiles_after: Vec<String>,
    /// Where the disk devices would be.
    pub devices: String,
    /// Filesystems that do not exist yet and would be created.
    pub new_filesystems: Vec<String>,
    /// What the run does once the new root has started ([`after_start`]).
    pub then: Vec<String>,
}

/// What a rebuild of `plan` does after the new root's start, in order: the readiness wait,
/// cloud-config, the health check, and a template's final stop and snapshot (a template
/// config's `stop` and `snapshot` keys leave it stopped, which a dry run must say).
pub fn after_start(plan: &InstancePlan) -> Vec<String> {
    let mut then = Vec::new();
    if let Some(s) = plan.wait_ready_s.filter(|s| *s > 0) {
        then.push(format!("wait until up (at most {s} s)"));
    }
    match plan.cloud_config.len() {
        0 => {}
        1 => then.push("cloud-config (1 file)".to_string()),
        n => then.push(format!("cloud-config ({n} files)")),
    }
    if plan.health.is_some() {
        then.push("health check".to_string());
    }
    if plan.final_stop {
        then.push("stop".to_string());
    }
    if let Some(snapshot) = &plan.final_snapshot {
        then.push(format!("snapshot {snapshot}"));
    }
    then
}

/// True if the instance's current root was built from exactly the plan's source (same name,
/// same content) by a run that `went_through` (the caller asks the journal).
pub fn built_from_source(
    built: Option<&BuiltFrom>,
    plan: &InstancePlan,
    wanted_id: &str,
    went_through: impl Fn(&str) -> bool,
) -> Option<String> {
    let b = built?;
    let same =
        b.source == plan.source.describe() && !b.source_id.is_empty() && b.source_id == wanted_id;
    (same && went_through(&b.run)).then(|| b.run.clone())
}

/// The run that already built the instance from the plan's source, if any: one request for
/// the instance and one for the source, so a bulk run that stopped half-way can simply be run
/// again.
pub async fn already_built(
    lxd: &lxd::Client,
    plan: &InstancePlan,
    went_through: impl Fn(&str) -> bool,
) -> Result<Option<String>, String> {
    let Some(current) = lxd
        .get_instance(&plan.name)
        .await
        .optional()
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let Some(built) = BuiltFrom::of(&current.value) else {
        return Ok(None);
    };
    let wanted = source_id(lxd, &plan.source)
        .await
        .map_err(|e| e.to_string())?;
    Ok(built_from_source(Some(&built), plan, &wanted, went_through))
}

/// What a rebuild would do to `plan`'s instance: the preflight checks, read-only, against the
/// daemon; `held_by` is the run that holds the instance, if one does.
pub async fn forecast(
    lxd: &lxd::Client,
    plan: &InstancePlan,
    held_by: Option<String>,
    force: bool,
    went_through: impl Fn(&str) -> bool,
) -> Forecast {
    let mut f = Forecast {
        instance: plan.name.clone(),
        verdict: Verdict::Rebuild,
        from: None,
        to: plan.source.describe(),
        running: false,
        profiles_before: Vec::new(),
        profiles_after: Vec::new(),
        devices: match plan.device_placement {
            DevicePlacement::Instance => "on the instance".into(),
            DevicePlacement::Profile => format!("in profile {}", plan.device_profile),
        },
        new_filesystems: Vec::new(),
        then: after_start(plan),
    };
    // A fresh id: the new run's temporary names are as free as these.
    let probe = journal::RunHeader::new_id();
    let pre = match survey(lxd, plan, probe).await {
        Ok(pre) => pre,
        Err(e) => {
            f.verdict = Verdict::Refuse {
                reason: e.to_string(),
            };
            return f;
        }
    };
    f.running = pre.running;
    f.from = pre.built.as_ref().map(|b| b.source.clone());
    f.profiles_before = pre.profiles.clone();
    f.profiles_after = pre.new_root_profiles(plan);
    if plan.device_placement == DevicePlacement::Profile {
        f.profiles_after.push(plan.device_profile.clone());
    }
    for fs in &plan.filesystems {
        let storage = fs.storage();
        if !storage.exists().await.unwrap_or(false) {
            f.new_filesystems.push(storage.kind.location());
        }
    }
    f.verdict = if let Some(run) = held_by {
        Verdict::Refuse {
            reason: format!(
                "part of run {run}, which is not finished: `reroot resume` or `reroot undo` it first"
            ),
        }
    } else if !pre.existed {
        Verdict::Launch
    } else if let Some(run) = (!force)
        .then(|| built_from_source(pre.built.as_ref(), plan, &pre.source_id, &went_through))
        .flatten()
    {
        Verdict::Skip { run }
    } else {
        Verdict::Rebuild
    };
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::plan::RootSource;

    fn plan() -> InstancePlan {
        serde_json::from_value(serde_json::json!({
            "name": "web1", "project": "default", "ostype": null,
            "source": {"type": "snapshot", "instance": "tpl", "snapshot": "v2"},
            "profiles": ["default"], "device_profile": "web1.reroot",
            "filesystems": [], "devices": [], "device_owner": null, "cloud_config": [],
            "stop_timeout_s": 0, "health": null
        }))
        .unwrap()
    }

    #[test]
    fn only_the_same_source_with_the_same_content_from_a_run_that_went_through_is_skipped() {
        let p = plan();
        assert_eq!(
            p.source,
            RootSource::Snapshot {
                instance: "tpl".into(),
                snapshot: "v2".into()
            }
        );
        let built = |source: &str, id: &str| BuiltFrom {
            run: "r1".into(),
            source: source.into(),
            source_id: id.into(),
        };
        let yes = |_: &str| true;
        let no = |_: &str| false;
        let b = built("tpl/v2", "snapshot created T");
        assert_eq!(
            built_from_source(Some(&b), &p, "snapshot created T", yes),
            Some("r1".into())
        );
        // The run that built it failed or was undone.
        assert_eq!(
            built_from_source(Some(&b), &p, "snapshot created T", no),
            None
        );
        // The snapshot was taken again under the same name.
        assert_eq!(
            built_from_source(Some(&b), &p, "snapshot created U", yes),
            None
        );
        // Another source.
        let other = built("tpl/v1", "snapshot created T");
        assert_eq!(
            built_from_source(Some(&other), &p, "snapshot created T", yes),
            None
        );
        // A root built before the identity was recorded, or not by reroot.
        let old = built("tpl/v2", "");
        assert_eq!(built_from_source(Some(&old), &p, "", yes), None);
        assert_eq!(built_from_source(None, &p, "snapshot created T", yes), None);
    }
}
