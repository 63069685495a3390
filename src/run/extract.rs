//! What an audit extract leaves out. `reroot journal export` hands the journal to someone
//! else; each run's header holds its plans, and they hold the full text of the run's
//! cloud-config files, whose `write_files` carry keys, tokens and passwords. Unless the export
//! is asked for the contents, each file's text is replaced by its length and sha256 digest
//! (so a reader can still tell which file a run used, and compare it with a copy they hold).

use journal::{Event, EventKind};
use serde_json::Value;

use super::spec::PLANS;

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Takes the text of cloud-config files out of `event` (only a run's header holds any).
/// Returns how many texts it took out. Plans that cannot be read are left out whole: an
/// extract never carries what it could not check.
pub fn leave_out_contents(event: &mut Event) -> usize {
    let EventKind::RunCreated(header) = &mut event.kind else {
        return 0;
    };
    let Some(text) = header.options.get_mut(PLANS) else {
        return 0;
    };
    let mut plans: Value = match serde_json::from_str(text) {
        Ok(v @ Value::Array(_)) => v,
        _ => {
            *text = Value::Null.to_string();
            return 1;
        }
    };
    let n = leave_out_plan_texts(&mut plans);
    *text = plans.to_string();
    n
}

/// Replaces the text of each cloud-config file of `plans` (a header's `plans` as JSON) by its
/// length and sha256 digest. Returns how many texts it took out.
fn leave_out_plan_texts(plans: &mut Value) -> usize {
    let mut n = 0;
    for plan in plans.as_array_mut().into_iter().flatten() {
        let files = plan.get_mut("cloud_config").and_then(Value::as_array_mut);
        for file in files.into_iter().flatten() {
            let Some(obj) = file.as_object_mut() else {
                continue;
            };
            if let Some(Value::String(content)) = obj.get("text") {
                let left_out = serde_json::json!({
                    "bytes": content.len(),
                    "sha256": sha256_hex(content.as_bytes()),
                });
                obj.insert("text".into(), Value::Null);
                obj.insert("text_left_out".into(), left_out);
                n += 1;
            }
        }
    }
    n
}

/// Takes the cloud-config texts out of a `--json` document of `show`, `log` or `status`:
/// wherever it holds a run header's `options.plans`. The run's state keeps the texts, because
/// the views read the plans (template, kind) from them; only what is printed loses them.
pub fn leave_out_printed_contents(doc: &mut Value) -> usize {
    match doc {
        Value::Object(obj) => {
            let mut n = 0;
            if let Some(plans) = obj.get_mut("options").and_then(|o| o.get_mut(PLANS)) {
                n += leave_out_plan_texts(plans);
            }
            n + obj
                .iter_mut()
                .filter(|(k, _)| k.as_str() != "options")
                .map(|(_, v)| leave_out_printed_contents(v))
                .sum::<usize>()
        }
        Value::Array(items) => items.iter_mut().map(leave_out_printed_contents).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use journal::RunHeader;
    use std::collections::BTreeMap;

    fn created(plans: Option<&str>) -> Event {
        let mut options = BTreeMap::from([("parallel".to_string(), "2".to_string())]);
        if let Some(p) = plans {
            options.insert(PLANS.to_string(), p.to_string());
        }
        Event {
            run: RunHeader::new_id(),
            seq: 1,
            instance: None,
            step: None,
            attempt: 0,
            at_ms: 0,
            kind: EventKind::RunCreated(RunHeader {
                id: RunHeader::new_id(),
                command: vec!["reroot".into()],
                user: "u".into(),
                host: "h".into(),
                started_at_ms: 0,
                config_digests: vec![],
                instances: vec!["a".into()],
                options,
            }),
        }
    }

    fn plans_of(e: &Event) -> Option<String> {
        match &e.kind {
            EventKind::RunCreated(h) => h.options.get(PLANS).cloned(),
            _ => None,
        }
    }

    #[test]
    fn cloud_config_texts_are_replaced_by_length_and_digest() {
        let secret = "#cloud-config\nwrite_files:\n  - path: /k\n    content: hunter2\n";
        let plans = serde_json::json!([
            {"name": "a", "cloud_config": [{"path": "/c/a.cfg", "text": secret}], "stop_timeout_s": 5},
            {"name": "b", "cloud_config": []},
            {"name": "c", "cloud_config": [{"path": "/c/x.cfg", "text": ""}, {"path": "/c/y.cfg", "text": "y"}]},
        ])
        .to_string();
        let mut e = created(Some(&plans));
        assert_eq!(leave_out_contents(&mut e), 3);
        let out: Value = serde_json::from_str(&plans_of(&e).unwrap()).unwrap();
        assert!(!out.to_string().contains("hunter2"));
        let a = &out[0]["cloud_config"][0];
        assert_eq!(a["path"], "/c/a.cfg");
        assert_eq!(a["text"], Value::Null);
        assert_eq!(a["text_left_out"]["bytes"], secret.len());
        assert_eq!(a["text_left_out"]["sha256"], sha256_hex(secret.as_bytes()));
        // Everything else stays.
        assert_eq!(out[0]["stop_timeout_s"], 5);
        assert_eq!(out[1]["cloud_config"], serde_json::json!([]));
        assert_eq!(out[2]["cloud_config"][0]["text_left_out"]["bytes"], 0);
        assert_eq!(out[2]["cloud_config"][1]["text_left_out"]["bytes"], 1);
        match &e.kind {
            EventKind::RunCreated(h) => assert_eq!(h.options["parallel"], "2"),
            _ => unreachable!(),
        }
        // Done twice, nothing more is taken out and nothing comes back.
        assert_eq!(leave_out_contents(&mut e), 0);
    }

    #[test]
    fn what_holds_no_text_is_unchanged_and_unreadable_plans_are_left_out() {
        let mut none = created(None);
        let before = none.clone();
        assert_eq!(leave_out_contents(&mut none), 0);
        assert_eq!(none, before);

        let mut step = created(None);
        step.kind = EventKind::StepSucceeded {
            output: "{\"text\":\"x\"}".into(),
        };
        let before = step.clone();
        assert_eq!(leave_out_contents(&mut step), 0);
        assert_eq!(step, before);

        for bad in ["not json", "{\"cloud_config\":[]}", "[1"] {
            let mut e = created(Some(bad));
            assert_eq!(leave_out_contents(&mut e), 1, "{bad}");
            assert_eq!(plans_of(&e).as_deref(), Some("null"), "{bad}");
        }
    }
}
