//! The `--json` event stream of a run: one JSON object per line (NDJSON) on stdout, in the
//! versioned schema documented in `docs/events.md`.
//!
//! Every line has `schema`, `type`, `run`, `at_ms`, `at` (RFC 3339) and `seq` (the journal
//! event that records the fact, or null), then the fields of its type. Within one schema
//! version fields and types may be added, never removed or changed in meaning; a reader skips
//! what it does not know.

use std::collections::BTreeMap;

use journal::RunId;
use serde_json::{json, Map, Value};

use crate::engine::{Direction, EngineEvent, Fact, InstanceOutcome, RunReport};
use crate::report;

/// The schema every line names. Bumped when a field is removed or changes meaning.
pub const SCHEMA: &str = "reroot.events/1";

/// The line of one fact (`kind`: the run kind, for `run_started`), or `None` for the run's
/// end, which [`run_finished`] writes with the report once the CLI has it.
pub fn fact(event: &EngineEvent, kind: &str) -> Option<Value> {
    let (ty, fields) = match &event.fact {
        Fact::RunStarted {
            direction,
            instances,
            steps,
            parallel,
            resumed,
        } => (
            "run_started",
            json!({
                "kind": kind,
                "direction": direction_word(*direction),
                "instances": instances,
                "steps": steps,
                "parallel": parallel,
                "resumed": resumed,
            }),
        ),
        Fact::InstanceStarted { instance } => ("instance_started", json!({ "instance": instance })),
        Fact::StepStarted {
            instance,
            step,
            attempt,
            direction,
        } => (
            "step_started",
            json!({
                "instance": instance,
                "step": step,
                "attempt": attempt,
                "direction": direction_word(*direction),
            }),
        ),
        Fact::StepFinished {
            instance,
            step,
            attempt,
            direction,
            duration_ms,
            error,
            retry,
            output,
        } => (
            "step_finished",
            json!({
                "instance": instance,
                "step": step,
                "attempt": attempt,
                "direction": direction_word(*direction),
                "result": if error.is_some() { "failed" } else { "succeeded" },
                "duration_ms": duration_ms,
                "error": error,
                "retry": retry,
                "output": output,
            }),
        ),
        Fact::WindowOpened { instance, resumed } => (
            "window_opened",
            json!({ "instance": instance, "resumed": resumed }),
        ),
        Fact::WindowClosed {
            instance,
            down_ms,
            reverted,
        } => (
            "window_closed",
            json!({ "instance": instance, "down_ms": down_ms, "reverted": reverted }),
        ),
        Fact::RevertStarted {
            instance,
            step,
            error,
        } => (
            "revert_started",
            json!({
                "instance": instance,
                "step": if step.is_empty() { None } else { Some(step) },
                "error": error,
            }),
        ),
        Fact::InstanceFinished {
            instance,
            outcome,
            duration_ms,
        } => {
            let (word, step, error) = outcome_fields(outcome);
            (
                "instance_finished",
                json!({
                    "instance": instance,
                    "outcome": word,
                    "step": step,
                    "error": error,
                    "duration_ms": duration_ms,
                }),
            )
        }
        Fact::RunFinished { .. } => return None,
    };
    Some(envelope(ty, event.run, event.at_ms, event.seq, fields))
}

/// The last line of a run that ended: how it finished, and what `--json` gave before the
/// stream existed (the report and each instance's recorded downtime), so scripts keep it.
/// `at_ms` and `seq` are those of the run's end in the journal.
pub fn run_finished(
    report: &RunReport,
    downtime_ms: &BTreeMap<String, Option<i64>>,
    at_ms: i64,
    seq: Option<u64>,
) -> Value {
    envelope(
        "run_finished",
        report.run,
        at_ms,
        seq,
        json!({
            "outcome": report.outcome,
            "report": report,
            "downtime_ms": downtime_ms,
        }),
    )
}

/// The last line of a run that the engine could not drive to its end (the journal refused
/// an event, an internal error): `error` says what happened and what to do.
pub fn run_stopped(run: RunId, error: &str) -> Value {
    let at_ms = journal::now_ms();
    envelope("run_stopped", run, at_ms, None, json!({ "error": error }))
}

/// One line of the stream, without its newline. JSON strings escape control characters, so a
/// compact encoding never holds a raw newline.
pub fn to_line(value: &Value) -> String {
    value.to_string()
}

fn envelope(ty: &str, run: RunId, at_ms: i64, seq: Option<u64>, fields: Value) -> Value {
    let mut line = Map::new();
    line.insert("schema".into(), json!(SCHEMA));
    line.insert("type".into(), json!(ty));
    line.insert("run".into(), json!(run.to_string()));
    line.insert("at_ms".into(), json!(at_ms));
    line.insert("at".into(), json!(report::rfc3339(at_ms)));
    line.insert("seq".into(), json!(seq));
    if let Value::Object(fields) = fields {
        line.extend(fields);
    }
    Value::Object(line)
}

fn direction_word(d: Direction) -> &'static str {
    match d {
        Direction::Forward => "forward",
        Direction::Undo => "undo",
    }
}

/// The outcome's word (as in the report's JSON), and its step and error if it has them.
fn outcome_fields(o: &InstanceOutcome) -> (&'static str, Option<&str>, Option<&str>) {
    match o {
        InstanceOutcome::Succeeded => ("succeeded", None, None),
        InstanceOutcome::NotStarted => ("not_started", None, None),
        InstanceOutcome::Undone => ("undone", None, None),
        InstanceOutcome::Failed { step, error } => ("failed", Some(step), Some(error)),
        InstanceOutcome::Reverted { step, error } => (
            "reverted",
            (!step.is_empty()).then_some(step.as_str()),
            Some(error),
        ),
        InstanceOutcome::UndoFailed { step, error } => ("undo_failed", Some(step), Some(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> RunId {
        uuid::Uuid::parse_str("0b8f6f2e-8f1e-4c55-9a3e-3c1d2f4b5a69").unwrap()
    }

    fn event(seq: Option<u64>, fact: Fact) -> EngineEvent {
        EngineEvent {
            run: run(),
            at_ms: 1_795_315_922_250,
            seq,
            fact,
        }
    }

    /// One of each fact, as a pass would tell them.
    fn facts() -> Vec<EngineEvent> {
        let i = || "web-017".to_string();
        vec![
            event(
                Some(7),
                Fact::RunStarted {
                    direction: Direction::Forward,
                    instances: vec![i()],
                    steps: vec!["stop".into(), "start".into()],
                    parallel: 4,
                    resumed: true,
                },
            ),
            event(None, Fact::InstanceStarted { instance: i() }),
            event(
                Some(8),
                Fact::StepStarted {
                    instance: i(),
                    step: "stop".into(),
                    attempt: 1,
                    direction: Direction::Forward,
                },
            ),
            event(
                Some(8),
                Fact::WindowOpened {
                    instance: i(),
                    resumed: false,
                },
            ),
            event(
                Some(9),
                Fact::StepFinished {
                    instance: i(),
                    step: "stop".into(),
                    attempt: 1,
                    direction: Direction::Forward,
                    duration_ms: 310,
                    error: Some("daemon busy\nretry".into()),
                    retry: true,
                    output: None,
                },
            ),
            event(
                Some(12),
                Fact::StepFinished {
                    instance: i(),
                    step: "start".into(),
                    attempt: 1,
                    direction: Direction::Forward,
                    duration_ms: 420,
                    error: None,
                    retry: false,
                    output: Some(json!({ "downtime_ms": 1300 })),
                },
            ),
            event(
                Some(12),
                Fact::WindowClosed {
                    instance: i(),
                    down_ms: 1301,
                    reverted: false,
                },
            ),
            event(
                None,
                Fact::RevertStarted {
                    instance: i(),
                    step: "swap".into(),
                    error: "boom".into(),
                },
            ),
            event(
                None,
                Fact::InstanceFinished {
                    instance: i(),
                    outcome: InstanceOutcome::Reverted {
                        step: "swap".into(),
                        error: "boom".into(),
                    },
                    duration_ms: Some(4200),
                },
            ),
            event(
                None,
                Fact::InstanceFinished {
                    instance: "web-018".into(),
                    outcome: InstanceOutcome::NotStarted,
                    duration_ms: None,
                },
            ),
        ]
    }

    /// The fields every line of a type must have (beyond the common ones).
    fn required(ty: &str) -> &'static [&'static str] {
        match ty {
            "run_started" => &[
                "kind",
                "direction",
                "instances",
                "steps",
                "parallel",
                "resumed",
            ],
            "instance_started" => &["instance"],
            "step_started" => &["instance", "step", "attempt", "direction"],
            "step_finished" => &[
                "instance",
                "step",
                "attempt",
                "direction",
                "result",
                "duration_ms",
                "error",
                "retry",
                "output",
            ],
            "window_opened" => &["instance", "resumed"],
            "window_closed" => &["instance", "down_ms", "reverted"],
            "revert_started" => &["instance", "step", "error"],
            "instance_finished" => &["instance", "outcome", "step", "error", "duration_ms"],
            "run_finished" => &["outcome", "report", "downtime_ms"],
            "run_stopped" => &["error"],
            other => panic!("unknown type {other}"),
        }
    }

    fn check_line(line: &str) -> Value {
        assert!(!line.contains('\n'), "{line:?}");
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["schema"], SCHEMA, "{line}");
        assert_eq!(v["run"], run().to_string(), "{line}");
        assert!(v["at_ms"].is_i64(), "{line}");
        assert!(v["at"].as_str().unwrap().ends_with('Z'), "{line}");
        assert!(v.get("seq").is_some(), "{line}");
        let ty = v["type"].as_str().unwrap();
        for field in required(ty) {
            assert!(v.get(*field).is_some(), "{ty} has no {field}: {line}");
        }
        v
    }

    #[test]
    fn every_fact_is_one_line_with_the_schema_and_its_fields() {
        let lines: Vec<String> = facts()
            .iter()
            .map(|e| to_line(&fact(e, "rebuild").expect("a line")))
            .collect();
        let types: Vec<String> = lines
            .iter()
            .map(|l| check_line(l)["type"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            types,
            [
                "run_started",
                "instance_started",
                "step_started",
                "window_opened",
                "step_finished",
                "step_finished",
                "window_closed",
                "revert_started",
                "instance_finished",
                "instance_finished",
            ]
        );
        let v: Vec<Value> = lines.iter().map(|l| check_line(l)).collect();
        assert_eq!(v[0]["kind"], "rebuild");
        assert_eq!(v[0]["seq"], 7);
        assert_eq!(v[0]["at"], "2026-11-22T02:52:02.250Z");
        assert_eq!(v[1]["seq"], Value::Null);
        assert_eq!(v[4]["result"], "failed");
        assert_eq!(v[4]["error"], "daemon busy\nretry");
        assert_eq!(v[4]["retry"], true);
        assert_eq!(v[5]["result"], "succeeded");
        assert_eq!(v[5]["error"], Value::Null);
        assert_eq!(v[5]["output"]["downtime_ms"], 1300);
        assert_eq!(v[6]["down_ms"], 1301);
        assert_eq!(v[8]["outcome"], "reverted");
        assert_eq!(v[8]["step"], "swap");
        assert_eq!(v[8]["duration_ms"], 4200);
        assert_eq!(v[9]["outcome"], "not_started");
        assert_eq!(v[9]["duration_ms"], Value::Null);
        assert_eq!(v[9]["step"], Value::Null);
    }

    #[test]
    fn the_run_end_carries_the_report_and_the_downtimes() {
        let end = event(
            Some(30),
            Fact::RunFinished {
                outcome: "failed".into(),
            },
        );
        assert_eq!(fact(&end, "rebuild"), None, "written by run_finished");
        let report = RunReport {
            run: run(),
            outcome: "failed".into(),
            instances: vec![
                ("web-017".into(), InstanceOutcome::Succeeded),
                (
                    "web-018".into(),
                    InstanceOutcome::Failed {
                        step: "verify".into(),
                        error: "exit 3".into(),
                    },
                ),
            ],
        };
        let downtimes = BTreeMap::from([
            ("web-017".to_string(), Some(1300)),
            ("web-018".to_string(), None),
        ]);
        let line = to_line(&run_finished(&report, &downtimes, 5, Some(30)));
        let v = check_line(&line);
        assert_eq!(v["type"], "run_finished");
        assert_eq!(v["outcome"], "failed");
        assert_eq!(v["seq"], 30);
        // The same document `--json` printed before the stream.
        assert_eq!(v["report"], serde_json::to_value(&report).unwrap());
        assert_eq!(v["report"]["instances"][1][1]["outcome"], "failed");
        assert_eq!(v["downtime_ms"]["web-017"], 1300);
        assert_eq!(v["downtime_ms"]["web-018"], Value::Null);

        let stopped = check_line(&to_line(&run_stopped(run(), "journal: disk full")));
        assert_eq!(stopped["type"], "run_stopped");
        assert_eq!(stopped["error"], "journal: disk full");
    }
}
