//! The `--json` documents of the commands that read the journal (`history`, `show`, `status`,
//! `journal verify`), described in docs/json.md. Each is a versioned schema of its own
//! (`"schema": "reroot.show/1"`, ...), built here from the journal's records rather than by
//! serializing the journal crate's types, so that the journal's internals can change without
//! changing what scripts read. Every time is given twice: milliseconds since the epoch
//! (`*_at_ms`) and RFC 3339 UTC with milliseconds beside it (`*_at`); a step's output is the
//! JSON object it recorded, not JSON text inside a string.

use std::collections::BTreeMap;

use journal::{RunState, RunStatus, RunSummary, StepState, StepStatus, VerifyReport, WriterInfo};
use serde::Serialize;
use serde_json::Value;

use super::{instance_results, overview, rfc3339, short_id, InstanceResult, RunOverview};

/// The schema of `history --json`.
pub const HISTORY: &str = "reroot.history/1";
/// The schema of `show --json`.
pub const SHOW: &str = "reroot.show/1";
/// The schema of `status --json`.
pub const STATUS: &str = "reroot.status/1";
/// The schema of `log --json`.
pub const LOG: &str = "reroot.log/1";
/// The schema of `journal verify --json`.
pub const VERIFY: &str = "reroot.verify/1";

/// A step's recorded output as JSON: the value it holds (an object, or null for a step that
/// records nothing); text that is not JSON (old journals) as a string; none or empty: null.
pub fn output(text: Option<&str>) -> Value {
    match text {
        None | Some("") => Value::Null,
        Some(t) => serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_string())),
    }
}

/// A header option as JSON: the value it holds when that is a JSON array or object (the
/// plans), else the text itself (`"8"`, `"v2"`: an option is text, whatever it looks like).
pub fn option(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => v,
        _ => Value::String(text.to_string()),
    }
}

/// A run in `history --json`.
#[derive(Debug, Clone, Serialize)]
pub struct ListedRun {
    pub id: String,
    pub short_id: String,
    pub status: RunStatus,
    pub command: Vec<String>,
    pub user: String,
    pub instance_count: usize,
    pub instances: Vec<String>,
    pub started_at_ms: i64,
    pub started_at: String,
    pub last_at_ms: i64,
    pub last_at: String,
    pub events: u64,
    /// Where its instances live, as the table's DAEMON column says it (with `--instance`,
    /// that instance's daemon).
    pub daemon: String,
}

/// `history --json`.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    pub schema: &'static str,
    pub runs: Vec<ListedRun>,
}

/// The `history --json` document of `runs` (newest first, as listed).
pub fn history(runs: &[RunSummary], instance: Option<&str>) -> History {
    history_named(runs.iter().map(|r| (r, instance)))
}

/// [`history`] with each run's name for the instance (an instance's runs across renames).
pub fn history_named<'a>(runs: impl Iterator<Item = (&'a RunSummary, Option<&'a str>)>) -> History {
    History {
        schema: HISTORY,
        runs: runs
            .map(|(r, instance)| ListedRun {
                id: r.id.to_string(),
                short_id: short_id(&r.id),
                status: r.status,
                command: r.command.clone(),
                user: r.user.clone(),
                instance_count: r.instances.len(),
                instances: r.instances.clone(),
                started_at_ms: r.started_at_ms,
                started_at: rfc3339(r.started_at_ms),
                last_at_ms: r.last_at_ms,
                last_at: rfc3339(r.last_at_ms),
                events: r.events,
                daemon: crate::run::spec::daemons_listed(&r.options, instance),
            })
            .collect(),
    }
}

/// A step of an instance.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    pub status: StepStatus,
    pub attempt: u32,
    pub started_at_ms: i64,
    pub started_at: String,
    pub ended_at_ms: Option<i64>,
    pub ended_at: Option<String>,
    pub duration_ms: Option<i64>,
    /// What the step recorded when it succeeded (kept through its undo): an object.
    pub output: Value,
    pub error: Option<String>,
}

/// The view of one recorded step.
pub fn step(s: &StepState) -> Step {
    Step {
        name: s.name.clone(),
        status: s.status,
        attempt: s.attempt,
        started_at_ms: s.started_at_ms,
        started_at: rfc3339(s.started_at_ms),
        ended_at_ms: s.ended_at_ms,
        ended_at: s.ended_at_ms.map(rfc3339),
        duration_ms: s.ended_at_ms.map(|e| (e - s.started_at_ms).max(0)),
        output: output(s.output.as_deref()),
        error: s.error.clone(),
    }
}

/// An instance of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub name: String,
    pub result: InstanceResult,
    pub downtime_ms: Option<i64>,
    pub steps: Vec<Step>,
}

/// A config file a run read, with its digest.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigDigest {
    pub file: String,
    pub sha256: String,
}

/// What a run was started with.
#[derive(Debug, Clone, Serialize)]
pub struct Header {
    pub command: Vec<String>,
    pub user: String,
    pub host: String,
    pub started_at_ms: i64,
    pub started_at: String,
    pub config_digests: Vec<ConfigDigest>,
    pub instances: Vec<String>,
    /// The run's options; those holding JSON (the plans) as that JSON.
    pub options: BTreeMap<String, Value>,
}

/// Something a prune deleted for good.
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    pub instance: String,
    pub what: String,
}

/// A run as `show` and `status` give it.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: String,
    pub short_id: String,
    pub status: RunStatus,
    pub header: Header,
    pub instances: Vec<Instance>,
    pub notes: Vec<String>,
    pub undo_requested: Option<bool>,
    pub pruned: Vec<Pruned>,
    pub last_seq: u64,
}

/// The view of `state`, with the instances `keep` accepts.
pub fn run(state: &RunState, keep: impl Fn(&str) -> bool) -> Run {
    let h = &state.header;
    Run {
        id: h.id.to_string(),
        short_id: short_id(&h.id),
        status: state.status,
        header: Header {
            command: h.command.clone(),
            user: h.user.clone(),
            host: h.host.clone(),
            started_at_ms: h.started_at_ms,
            started_at: rfc3339(h.started_at_ms),
            config_digests: h
                .config_digests
                .iter()
                .map(|(file, sha256)| ConfigDigest {
                    file: file.clone(),
                    sha256: sha256.clone(),
                })
                .collect(),
            instances: h.instances.clone(),
            options: h
                .options
                .iter()
                .map(|(k, v)| (k.clone(), option(v)))
                .collect(),
        },
        instances: instance_results(state)
            .into_iter()
            .filter(|(i, _)| keep(&i.name))
            .map(|(i, result)| Instance {
                name: i.name.clone(),
                result,
                downtime_ms: super::downtime_ms(state, &i.name),
                steps: i.steps.iter().map(step).collect(),
            })
            .collect(),
        notes: state.notes.clone(),
        undo_requested: state.undo_requested,
        pruned: state
            .pruned
            .iter()
            .map(|p| Pruned {
                instance: p.instance.clone(),
                what: p.what.clone(),
            })
            .collect(),
        last_seq: state.last_seq,
    }
}

/// `show --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Show {
    pub schema: &'static str,
    #[serde(flatten)]
    pub run: Run,
    /// The overview of the whole run, whichever instances are shown.
    pub summary: RunOverview,
}

/// The `show --json` document of `state`, with the instances `keep` accepts.
pub fn show(state: &RunState, keep: impl Fn(&str) -> bool) -> Show {
    Show {
        schema: SHOW,
        run: run(state, keep),
        summary: overview(state),
    }
}

/// A run in `status --json`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRun {
    /// What the run needs, as the text says it.
    pub activity: String,
    pub instance_count: usize,
    pub summary: RunOverview,
    pub run: Run,
}

/// `status --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub schema: &'static str,
    /// The process holding the journal, if one does.
    pub writer: Option<WriterInfo>,
    pub runs: Vec<StatusRun>,
}

/// The `status --json` document: each run with what it needs.
pub fn status(writer: Option<WriterInfo>, runs: &[(RunState, String)]) -> Status {
    Status {
        schema: STATUS,
        writer,
        runs: runs
            .iter()
            .map(|(state, activity)| StatusRun {
                activity: activity.clone(),
                instance_count: state.instances.len(),
                summary: overview(state),
                run: run(state, |_| true),
            })
            .collect(),
    }
}

/// `journal verify --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Verify<'a> {
    pub schema: &'static str,
    /// True when no problem was found.
    pub sound: bool,
    #[serde(flatten)]
    pub report: &'a VerifyReport,
    /// The first run's start and the last event's time, over the runs checked.
    pub first_at_ms: Option<i64>,
    pub first_at: Option<String>,
    pub last_at_ms: Option<i64>,
    pub last_at: Option<String>,
}

/// The `journal verify --json` document; `span` is the first and last time the runs cover.
pub fn verify(report: &VerifyReport, span: Option<(i64, i64)>) -> Verify<'_> {
    Verify {
        schema: VERIFY,
        sound: report.is_ok(),
        report,
        first_at_ms: span.map(|s| s.0),
        first_at: span.map(|s| rfc3339(s.0)),
        last_at_ms: span.map(|s| s.1),
        last_at: span.map(|s| rfc3339(s.1)),
    }
}

/// What one run did to the instance, in `log --json`.
#[derive(Debug, Clone, Serialize)]
pub struct LogRun {
    pub id: String,
    pub short_id: String,
    pub kind: Option<&'static str>,
    /// The name the instance had in the run (before a rename, its old one).
    pub name: String,
    /// A rename run: the name it gave the instance.
    pub renamed_to: Option<String>,
    /// The run's status.
    pub status: RunStatus,
    pub command: Vec<String>,
    pub user: String,
    pub host: String,
    pub started_at_ms: i64,
    pub started_at: String,
    /// The instance's result in the run.
    pub result: InstanceResult,
    pub downtime_ms: Option<i64>,
    /// The template (or image) the instance runs on after the run, when the run rebuilt it.
    pub template: Option<String>,
    pub steps: Vec<Step>,
    /// Every failure of its steps and undos, in order (retried or undone ones included).
    pub failures: Vec<LogFailure>,
    /// What a prune deleted for good of this instance's.
    pub pruned: Vec<String>,
}

/// A failed step or undo in `log --json`.
#[derive(Debug, Clone, Serialize)]
pub struct LogFailure {
    pub step: String,
    pub attempt: u32,
    pub undo: bool,
    pub at_ms: i64,
    pub at: String,
    pub error: String,
}

/// `log --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Log {
    pub schema: &'static str,
    pub instance: String,
    pub runs: Vec<LogRun>,
}

/// The `log --json` document of `instance`'s entries (in the order given).
pub fn log(instance: &str, entries: &[super::LogEntry<'_>]) -> Log {
    Log {
        schema: LOG,
        instance: instance.to_string(),
        runs: entries
            .iter()
            .map(|e| {
                let h = &e.state.header;
                LogRun {
                    id: h.id.to_string(),
                    short_id: short_id(&h.id),
                    kind: e.kind,
                    name: e.name.to_string(),
                    renamed_to: e.renamed_to.clone(),
                    status: e.state.status,
                    command: h.command.clone(),
                    user: h.user.clone(),
                    host: h.host.clone(),
                    started_at_ms: h.started_at_ms,
                    started_at: rfc3339(h.started_at_ms),
                    result: e.result,
                    downtime_ms: super::downtime_ms(e.state, e.name),
                    template: e.template.clone(),
                    steps: e.instance.steps.iter().map(step).collect(),
                    failures: e
                        .failures
                        .iter()
                        .map(|f| LogFailure {
                            step: f.step.clone(),
                            attempt: f.attempt,
                            undo: f.undo,
                            at_ms: f.at_ms,
                            at: rfc3339(f.at_ms),
                            error: f.error.clone(),
                        })
                        .collect(),
                    pruned: e
                        .state
                        .pruned
                        .iter()
                        .filter(|p| p.instance == e.name)
                        .map(|p| p.what.clone())
                        .collect(),
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_their_json_and_options_only_structures() {
        assert_eq!(output(Some("{\"downtime_ms\":5}"))["downtime_ms"], 5);
        assert_eq!(output(Some("null")), Value::Null);
        assert_eq!(output(Some("")), Value::Null);
        assert_eq!(output(None), Value::Null);
        assert_eq!(output(Some("not json")), "not json");
        assert_eq!(option("[{\"name\":\"a\"}]")[0]["name"], "a");
        assert_eq!(option("8"), "8");
        assert_eq!(option("true"), "true");
        assert_eq!(option("v2"), "v2");
    }
}
