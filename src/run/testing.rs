//! What the unit tests of `run` share: plans and runs recorded in a journal in a temporary
//! directory, as a command would leave them, without a daemon.

use std::collections::BTreeMap;

use journal::{EventKind, Journal, Outcome, RunHeader, RunId};

use super::spec::RunSpec;
use crate::steps::InstancePlan;

/// The plan of an instance `name` rebuilt from `tpl/v2`, with nothing else to it.
pub fn plan(name: &str) -> InstancePlan {
    serde_json::from_value(serde_json::json!({
        "name": name, "project": "default", "ostype": null,
        "source": {"type": "snapshot", "instance": "tpl", "snapshot": "v2"},
        "profiles": ["default"], "device_profile": format!("{name}.reroot"),
        "filesystems": [], "devices": [], "device_owner": null, "cloud_config": [],
        "stop_timeout_s": 0, "health": null
    }))
    .expect("a plan")
}

/// The header of a new run over `instances` with `options`, started by nobody in particular.
pub fn header(instances: &[String], options: BTreeMap<String, String>) -> RunHeader {
    RunHeader {
        id: RunHeader::new_id(),
        command: vec!["reroot".into()],
        user: "u".into(),
        host: "h".into(),
        started_at_ms: 1,
        config_digests: vec![],
        instances: instances.to_vec(),
        options,
    }
}

/// Records a run of `spec` over its plans' instances, as `start` would (without its checks).
pub fn create(j: &Journal, spec: &RunSpec) -> RunId {
    let instances: Vec<String> = spec.plans.iter().map(|p| p.name.clone()).collect();
    let header = header(&instances, spec.to_options().expect("options"));
    let id = header.id;
    j.create_run(header).expect("create run");
    id
}

/// Records that `run` finished with `outcome`.
pub fn finish(j: &Journal, run: RunId, outcome: Outcome) {
    j.append(run, None, None, 0, EventKind::RunFinished { outcome })
        .expect("finish run");
}

/// Appends a run-level event (`instance` `None`) or one of an instance, outside any step.
pub fn event(j: &Journal, run: RunId, instance: Option<&str>, kind: EventKind) {
    j.append(run, instance, None, 0, kind).expect("event");
}
