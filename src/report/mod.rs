//! What a person reads: tables of runs, of an instance's steps, and of a pass's outcome, built
//! from journal records. Runs of hundreds of instances stay readable: commands are shortened,
//! a run's overview (counts by result, downtime percentiles, wall time) comes before its
//! tables, and filters pick instances. `--json` documents, the same data in versioned schemas,
//! are built in [`json`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use journal::{InstanceState, RunState, RunStatus, RunSummary, StepStatus};
use serde::Serialize;

use crate::engine::{InstanceOutcome, Output, RunReport};
use crate::steps::Started;

pub mod json;
pub mod lineage;
pub mod svg;

/// `2026-11-22 03:41:07Z` from milliseconds since the epoch (UTC; humantime's RFC 3339 with a
/// space for the `T`, which reads better in a table). humantime panics on a time before 1970,
/// and an imported journal may carry any time: outside 1970..=9999 the time is clamped there.
pub fn utc(ms: i64) -> String {
    humantime::format_rfc3339_seconds(clamped(ms))
        .to_string()
        .replacen('T', " ", 1)
}

/// `2026-11-22T03:41:07.250Z`: RFC 3339 with milliseconds (UTC), as the event stream gives
/// times; clamped like [`utc`].
pub fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(clamped(ms)).to_string()
}

/// `ms` since the epoch as a time humantime can format: clamped to 1970..=9999, since it
/// panics before the epoch and an imported journal may carry any time.
fn clamped(ms: i64) -> std::time::SystemTime {
    const LAST_MS: i64 = 253_402_300_799_999; // 9999-12-31 23:59:59.999Z
    let ms = ms.clamp(0, LAST_MS).unsigned_abs();
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
}

/// `1.234 s` or `87 ms`.
pub fn duration(ms: i64) -> String {
    if ms >= 1000 {
        format!("{:.3} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

/// Pads each column to its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// The short form of a run id that users type.
pub fn short_id(id: &journal::RunId) -> String {
    journal::short_id(id)
}

/// How many operands a shortened command line keeps: the subcommand and the first path or two
/// (or, for `undo`, the run id and the first instance).
const KEPT_OPERANDS: usize = 3;

/// A command line short enough for one line of a table, whatever the number of config files:
/// the program by its file name, every flag, the word after each flag, and the first
/// [`KEPT_OPERANDS`] operands (subcommand, config paths, run id, instance names); the other
/// operands become `… (+N more)`. Which flags take a value is not known here (the command may
/// have been recorded by another version of reroot), so the word after a flag is always kept:
/// a flag's value is never hidden, at the cost of an extra path after a flag that takes none.
/// Words a shell would need quoted are quoted. `--json` output keeps the full command.
pub fn short_command(argv: &[String]) -> String {
    let Some((program, args)) = argv.split_first() else {
        return String::new();
    };
    let program = std::path::Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(program);
    // (word, is an operand)
    let mut words: Vec<(&str, bool)> = Vec::with_capacity(args.len());
    let mut value_may_follow = false;
    let mut flags_ended = false;
    for arg in args {
        if !flags_ended && arg.len() > 1 && arg.starts_with('-') {
            flags_ended = arg == "--";
            value_may_follow = !flags_ended && !arg.contains('=');
            words.push((arg, false));
        } else if value_may_follow {
            value_may_follow = false;
            words.push((arg, false));
        } else {
            words.push((arg, true));
        }
    }
    let operands = words.iter().filter(|(_, operand)| *operand).count();
    // Hiding a single operand would not make the line any shorter.
    let keep = if operands > KEPT_OPERANDS + 1 {
        KEPT_OPERANDS
    } else {
        operands
    };
    let mut parts = vec![shell_word(program)];
    let mut seen = 0;
    let mut hidden = 0;
    for (word, operand) in words {
        if operand {
            seen += 1;
            if seen > keep {
                hidden += 1;
                continue;
            }
        }
        if hidden > 0 {
            parts.push(format!("… (+{hidden} more)"));
            hidden = 0;
        }
        parts.push(shell_word(word));
    }
    if hidden > 0 {
        parts.push(format!("… (+{hidden} more)"));
    }
    parts.join(" ")
}

use crate::shell::quote as shell_word;

/// `reroot history`: one line per run, with its number of instances and its command shortened.
pub fn runs_table(runs: &[RunSummary], instance: Option<&str>) -> String {
    runs_table_named(runs.iter().map(|r| (r, instance)))
}

/// [`runs_table`] with each run's name for the instance (an instance's runs across renames).
pub fn runs_table_named<'a>(
    runs: impl Iterator<Item = (&'a RunSummary, Option<&'a str>)>,
) -> String {
    let rows: Vec<Vec<String>> = runs
        .map(|(r, instance)| {
            vec![
                short_id(&r.id),
                utc(r.started_at_ms),
                r.status.to_string(),
                r.instances.len().to_string(),
                crate::run::spec::daemons_listed(&r.options, instance),
                short_command(&r.command),
            ]
        })
        .collect();
    table(
        &["RUN", "STARTED", "STATUS", "INSTANCES", "DAEMON", "COMMAND"],
        &rows,
    )
}

/// The downtime an instance's `start` step recorded, if any.
pub fn downtime_ms(state: &RunState, instance: &str) -> Option<i64> {
    let step = state.step(instance, Started::STEP)?;
    Started::from_recorded(&step.name, step.output.as_deref())?.downtime_ms
}

/// Each instance's recorded downtime (`None`: none recorded), by name: what `--json` gives at
/// the end of a run.
pub fn downtimes(state: &RunState) -> BTreeMap<String, Option<i64>> {
    state
        .instances
        .iter()
        .map(|i| (i.name.clone(), downtime_ms(state, &i.name)))
        .collect()
}

fn status_word(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Started => "started",
        StepStatus::Succeeded => "ok",
        StepStatus::Failed => "FAILED",
        StepStatus::UndoStarted => "undo started",
        StepStatus::UndoFinished => "undone",
        StepStatus::UndoFailed => "UNDO FAILED",
    }
}

/// Where one instance of a run stands, read from its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceResult {
    /// Every step of its run's kind succeeded.
    Succeeded,
    /// A step failed (it may be retried, or undone); with `--on-failure hold` inside the
    /// downtime window, the instance is left down.
    Failed,
    /// A step failed inside the downtime window and the engine put the instance back on its
    /// old root: every step undone, though nobody asked for an undo.
    Reverted,
    /// The undo of a step failed.
    UndoFailed,
    /// A step or an undo is under way, or the instance stopped between two steps: still
    /// running, or its process died (then `status` says the run is interrupted).
    InProgress,
    /// Every step that ran was undone, after an undo was asked for.
    Undone,
    /// No step ran.
    NotStarted,
}

impl InstanceResult {
    /// Every result, in the order summaries list them.
    pub const ALL: [InstanceResult; 7] = [
        InstanceResult::Succeeded,
        InstanceResult::Failed,
        InstanceResult::Reverted,
        InstanceResult::UndoFailed,
        InstanceResult::InProgress,
        InstanceResult::Undone,
        InstanceResult::NotStarted,
    ];

    /// The words of summaries and headings ("not started", ...).
    pub fn word(self) -> &'static str {
        match self {
            InstanceResult::Succeeded => "succeeded",
            InstanceResult::Failed => "failed",
            InstanceResult::Reverted => "reverted",
            InstanceResult::UndoFailed => "undo failed",
            InstanceResult::InProgress => "in progress",
            InstanceResult::Undone => "undone",
            InstanceResult::NotStarted => "not started",
        }
    }

    /// The instances `show --failed` and `status` single out: those that ran and whose steps
    /// did not all succeed, except those undone on request (where an undo means to end).
    pub fn needs_attention(self) -> bool {
        matches!(
            self,
            InstanceResult::Failed
                | InstanceResult::Reverted
                | InstanceResult::UndoFailed
                | InstanceResult::InProgress
        )
    }
}

/// What, besides an instance's own steps, tells where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFacts {
    /// The step names of the run's kind, in order; `None` for a kind this build does not know
    /// (a run written by a newer reroot).
    pub steps: Option<Vec<&'static str>>,
    /// The run's status.
    pub status: RunStatus,
    /// Whether an undo was asked for: only then are steps undone other than by a revert.
    pub undo_requested: bool,
}

impl RunFacts {
    /// The facts of `state`.
    pub fn of(state: &RunState) -> RunFacts {
        RunFacts {
            steps: crate::run::spec::kind_of(state)
                .ok()
                .map(|kind| kind.pipeline().iter().map(|s| s.name()).collect()),
            status: state.status,
            undo_requested: state.undo_requested.is_some(),
        }
    }
}

/// Where `inst` stands in its run. An instance whose recorded steps all succeeded but that
/// lacks one of its run's steps stopped between two steps, unless the run succeeded (a
/// succeeded run finished every instance, even with steps this build does not have, e.g. one
/// recorded by an older reroot). An instance with every step undone was reverted by the engine
/// unless an undo was asked for (the journal records a revert like an undo).
pub fn instance_result(inst: &InstanceState, run: &RunFacts) -> InstanceResult {
    let any = |status: StepStatus| inst.steps.iter().any(|s| s.status == status);
    let all = |status: StepStatus| inst.steps.iter().all(|s| s.status == status);
    let has_every_step = || {
        run.steps.as_ref().is_none_or(|names| {
            names
                .iter()
                .all(|n| inst.steps.iter().any(|s| s.name == *n))
        })
    };
    if inst.steps.is_empty() {
        InstanceResult::NotStarted
    } else if any(StepStatus::Started) || any(StepStatus::UndoStarted) {
        InstanceResult::InProgress
    } else if any(StepStatus::UndoFailed) {
        InstanceResult::UndoFailed
    } else if any(StepStatus::Failed) {
        InstanceResult::Failed
    } else if all(StepStatus::UndoFinished) {
        if run.undo_requested {
            InstanceResult::Undone
        } else {
            InstanceResult::Reverted
        }
    } else if all(StepStatus::Succeeded) && (run.status == RunStatus::Succeeded || has_every_step())
    {
        InstanceResult::Succeeded
    } else {
        // Some steps succeeded, others are missing or undone: between two steps of a pass.
        InstanceResult::InProgress
    }
}

/// Every instance of the run with where it stands, in the run's order.
pub fn instance_results(state: &RunState) -> Vec<(&InstanceState, InstanceResult)> {
    let facts = RunFacts::of(state);
    state
        .instances
        .iter()
        .map(|i| (i, instance_result(i, &facts)))
        .collect()
}

/// The distribution of some durations, by nearest rank (p50 is a value that occurred).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Spread {
    /// How many values.
    pub count: usize,
    /// The median.
    pub p50: i64,
    /// The 95th percentile.
    pub p95: i64,
    /// The largest.
    pub max: i64,
}

/// The spread of `values` (in any order); `None` for none.
pub fn spread(values: &[i64]) -> Option<Spread> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let max = *sorted.last()?;
    let n = sorted.len();
    // Nearest rank: the smallest value with at least p% of the values at or below it.
    let rank = |p: usize| sorted[(p * n).div_ceil(100).clamp(1, n) - 1];
    Some(Spread {
        count: n,
        p50: rank(50),
        p95: rank(95),
        max,
    })
}

/// From the run's start to the latest time one of its steps recorded (started or ended): its
/// wall time, or so far for one under way; `None` before any step. Later notes (a `prune`
/// days after) are not counted: they are not work of the run.
pub fn wall_time_ms(state: &RunState) -> Option<i64> {
    let last = state
        .instances
        .iter()
        .flat_map(|i| &i.steps)
        .map(|s| s.ended_at_ms.unwrap_or(s.started_at_ms))
        .max()?;
    Some((last - state.header.started_at_ms).max(0))
}

/// What `show` and `status` print before any table, and `--json` gives as `summary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunOverview {
    /// How many instances the run has.
    pub instance_count: usize,
    /// How many instances stand where, every result listed (0 for none).
    pub results: BTreeMap<InstanceResult, usize>,
    /// The downtimes the instances' `start` steps recorded (ms); `None` when none did.
    pub downtime_ms: Option<Spread>,
    /// See [`wall_time_ms`].
    pub wall_time_ms: Option<i64>,
}

/// The overview of a whole run.
pub fn overview(state: &RunState) -> RunOverview {
    let mut results: BTreeMap<InstanceResult, usize> =
        InstanceResult::ALL.iter().map(|r| (*r, 0)).collect();
    for (_, result) in instance_results(state) {
        *results.entry(result).or_default() += 1;
    }
    let downtimes: Vec<i64> = state
        .instances
        .iter()
        .filter_map(|i| downtime_ms(state, &i.name))
        .collect();
    RunOverview {
        instance_count: state.instances.len(),
        results,
        downtime_ms: spread(&downtimes),
        wall_time_ms: wall_time_ms(state),
    }
}

/// Which instances `show` prints. The default prints all; both parts together keep only the
/// instances that pass both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceFilter {
    /// Only these instances (empty: any).
    pub names: Vec<String>,
    /// Only those that need attention (see [`InstanceResult::needs_attention`]).
    pub failed: bool,
}

/// How many names an error message lists before `…`.
const NAMES_IN_ERRORS: usize = 5;

/// The instances of `state` that `filter` selects, with where they stand, in the run's order.
/// A name the run does not have is an error naming it (a typo must not look like "nothing
/// failed").
pub fn select<'a>(
    state: &'a RunState,
    filter: &InstanceFilter,
) -> Result<Vec<(&'a InstanceState, InstanceResult)>, String> {
    let unknown: Vec<&String> = filter
        .names
        .iter()
        .filter(|n| state.instance(n).is_none())
        .collect();
    if !unknown.is_empty() {
        let asked: Vec<String> = unknown.iter().map(|n| format!("{n:?}")).collect();
        let mut have: Vec<&str> = state
            .instances
            .iter()
            .take(NAMES_IN_ERRORS)
            .map(|i| i.name.as_str())
            .collect();
        if state.instances.len() > NAMES_IN_ERRORS {
            have.push("…");
        }
        return Err(format!(
            "run {} has no instance {} (its {} instances: {})",
            short_id(&state.header.id),
            asked.join(", "),
            state.instances.len(),
            have.join(", ")
        ));
    }
    Ok(instance_results(state)
        .into_iter()
        .filter(|(i, _)| filter.names.is_empty() || filter.names.contains(&i.name))
        .filter(|(_, r)| !filter.failed || r.needs_attention())
        .collect())
}

/// `1.234 s` under a minute, then `4 m 05 s` and `1 h 02 m 03 s`: a run's wall time.
pub fn long_duration(ms: i64) -> String {
    let secs = ms / 1000;
    if secs < 60 {
        duration(ms)
    } else if secs < 3600 {
        format!("{} m {:02} s", secs / 60, secs % 60)
    } else {
        format!(
            "{} h {:02} m {:02} s",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

/// The run's header and overview, one `label  value` line each.
fn run_lines(state: &RunState, o: &RunOverview) -> String {
    let h = &state.header;
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(out, "{label:<10} {value}");
    };
    line("run", &h.id.to_string());
    line("command", &short_command(&h.command));
    line("by", &format!("{}@{}", h.user, h.host));
    if let Some(d) = crate::run::spec::daemon_of(state) {
        line("daemon", &format!("{} (host {})", d.address, d.server_name));
    }
    for (name, d) in crate::run::spec::remotes_of(state) {
        line(
            "remote",
            &format!("{name}: {} (host {})", d.address, d.server_name),
        );
    }
    // A rename run is recorded under the old name: say the new one, which `status` and `show`
    // would otherwise not name.
    if let (Some(to), Some(from)) = (lineage::renamed_in(&h.options), h.instances.first()) {
        line("rename", &format!("{from} to {to}"));
    }
    line("started", &utc(h.started_at_ms));
    line("status", state.status.as_str());
    let counts: Vec<String> = o
        .results
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{n} {}", r.word()))
        .collect();
    if counts.is_empty() {
        line("instances", &o.instance_count.to_string());
    } else {
        line(
            "instances",
            &format!("{}: {}", o.instance_count, counts.join(", ")),
        );
    }
    if let Some(d) = o.downtime_ms {
        line(
            "downtime",
            &format!(
                "p50 {}, p95 {}, max {} ({} instances)",
                duration(d.p50),
                duration(d.p95),
                duration(d.max),
                d.count
            ),
        );
    }
    if let Some(w) = o.wall_time_ms {
        line("wall time", &long_duration(w));
    }
    out
}

/// One instance: a heading with where it stands and its downtime, then its steps.
/// `daemons`: where each instance lives, given only for a run over several daemons
/// ([`several_daemons`]).
fn instance_detail(
    state: &RunState,
    inst: &InstanceState,
    result: InstanceResult,
    daemons: Option<&crate::run::spec::DaemonsListed>,
) -> String {
    let mut out = String::new();
    let downtime = downtime_ms(state, &inst.name)
        .map(|d| format!(" (downtime {})", duration(d)))
        .unwrap_or_default();
    let on = daemons
        .map(|d| format!("  on {}", d.instance(&inst.name)))
        .unwrap_or_default();
    let _ = writeln!(out, "{}  {}{downtime}{on}", inst.name, result.word());
    out.push_str(&steps_table(inst));
    out
}

/// Where a run's instances live, when it is a run over several daemons (read once per view).
fn several_daemons(state: &RunState) -> Option<crate::run::spec::DaemonsListed> {
    (!crate::run::spec::remotes_of(state).is_empty())
        .then(|| crate::run::spec::DaemonsListed::of(&state.header.options))
}

/// The table of an instance's steps (nothing when it has none): result, attempt, duration,
/// error.
fn steps_table(inst: &InstanceState) -> String {
    let rows: Vec<Vec<String>> = inst
        .steps
        .iter()
        .map(|s| {
            vec![
                format!("  {}", s.name),
                status_word(s.status).to_string(),
                s.attempt.to_string(),
                s.ended_at_ms
                    .map(|e| duration(e - s.started_at_ms))
                    .unwrap_or_else(|| "-".into()),
                s.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    table(&["  STEP", "RESULT", "TRY", "TIME", "ERROR"], &rows)
}

/// What one run did to one instance, for `reroot log INSTANCE`.
#[derive(Debug, Clone)]
pub struct LogEntry<'a> {
    /// The run.
    pub state: &'a RunState,
    /// The name the instance had in the run (an older one, before a rename).
    pub name: &'a str,
    /// A rename run: the name it gave the instance.
    pub renamed_to: Option<String>,
    /// The instance as the run left it.
    pub instance: &'a InstanceState,
    /// Where the instance stands in the run.
    pub result: InstanceResult,
    /// The run's kind (`rebuild`, `snapshot`, ...), when its header says.
    pub kind: Option<&'static str>,
    /// The template (or image) the instance runs on after the run: the source of a rebuild
    /// that succeeded for it; `None` for other kinds and results (a reverted or undone
    /// instance is back on its previous root, which the journal does not name).
    pub template: Option<String>,
    /// Every failure of the instance's steps and undos in the run, in order: a step's latest
    /// state forgets a failure that a retry or an undo followed.
    pub failures: Vec<Failure>,
}

/// A step (or its undo) that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub step: String,
    pub attempt: u32,
    /// True for a failed undo.
    pub undo: bool,
    pub at_ms: i64,
    pub error: String,
}

/// The failures of `instance`'s steps among a run's `events`.
pub fn failures(events: &[journal::Event], instance: &str) -> Vec<Failure> {
    events
        .iter()
        .filter(|e| e.instance.as_deref() == Some(instance))
        .filter_map(|e| {
            let (undo, error) = match &e.kind {
                journal::EventKind::StepFailed { error } => (false, error),
                journal::EventKind::UndoFailed { error } => (true, error),
                _ => return None,
            };
            Some(Failure {
                step: e.step.clone().unwrap_or_default(),
                attempt: e.attempt,
                undo,
                at_ms: e.at_ms,
                error: error.clone(),
            })
        })
        .collect()
}

/// The log entries of the instance in `runs`, each run with its events and the name the
/// instance had in it (runs that do not hold it under that name are left out), in the order
/// given.
pub fn log_entries(runs: &[(RunState, Vec<journal::Event>, String)]) -> Vec<LogEntry<'_>> {
    runs.iter()
        .filter_map(|(state, events, instance)| {
            let (inst, result) = instance_results(state)
                .into_iter()
                .find(|(i, _)| &i.name == instance)?;
            let spec = crate::run::spec::RunSpec::of(state).ok();
            let kind = spec.as_ref().map(|s| s.kind);
            let template = spec.as_ref().and_then(|s| {
                let plan = s.plans.iter().find(|p| &p.name == instance)?;
                (s.kind == crate::steps::RunKind::Rebuild && result == InstanceResult::Succeeded)
                    .then(|| plan.source.describe())
            });
            Some(LogEntry {
                state,
                name: instance,
                renamed_to: spec.and_then(|s| s.rename_to).map(|p| p.name),
                instance: inst,
                result,
                kind: kind.map(|k| k.word()),
                template,
                failures: failures(events, instance),
            })
        })
        .collect()
}

/// `reroot log INSTANCE`: a heading, then per run its id, start, kind, the instance's result,
/// downtime and template, who ran what, and the instance's steps.
pub fn instance_log(instance: &str, entries: &[LogEntry<'_>]) -> String {
    let mut out = String::new();
    let starts = entries.iter().map(|e| e.state.header.started_at_ms);
    let span = starts.clone().min().zip(starts.max());
    let _ = write!(
        out,
        "{instance}: {} run{}",
        entries.len(),
        if entries.len() == 1 { "" } else { "s" }
    );
    if let Some((first, last)) = span {
        let _ = write!(out, ", started {} to {}", utc(first), utc(last));
    }
    out.push('\n');
    for e in entries {
        let h = &e.state.header;
        let mut line = format!(
            "\n{}  {}  {}  {}",
            short_id(&h.id),
            utc(h.started_at_ms),
            e.kind.unwrap_or("run"),
            e.result.word()
        );
        if let Some(d) = downtime_ms(e.state, e.name) {
            let _ = write!(line, ", downtime {}", duration(d));
        }
        if let Some(t) = &e.template {
            let _ = write!(line, ", now on {t}");
        }
        if let Some(to) = &e.renamed_to {
            let _ = write!(line, ", {} to {to}", e.name);
        } else if e.name != instance {
            let _ = write!(line, " (as {})", e.name);
        }
        if e.state.status != RunStatus::Succeeded {
            let _ = write!(line, " (run {})", e.state.status.as_str());
        }
        let _ = writeln!(out, "{line}");
        let _ = writeln!(
            out,
            "  by {}@{}: {}",
            h.user,
            h.host,
            short_command(&h.command)
        );
        out.push_str(&steps_table(e.instance));
        for f in &e.failures {
            let _ = writeln!(
                out,
                "  {} {} failed (try {}, {}): {}",
                if f.undo { "undo of" } else { "step" },
                f.step,
                f.attempt,
                utc(f.at_ms),
                f.error
            );
        }
        for p in e.state.pruned.iter().filter(|p| p.instance == e.name) {
            let _ = writeln!(out, "  pruned: {}", p.what);
        }
    }
    out
}

/// `reroot show RUN`: the run and its overview, then the steps of each instance `filter`
/// selects (with their result and duration), then the run's notes.
pub fn run_detail(state: &RunState, filter: &InstanceFilter) -> Result<String, String> {
    let selected = select(state, filter)?;
    let o = overview(state);
    let mut out = run_lines(state, &o);
    if *filter != InstanceFilter::default() {
        let _ = writeln!(
            out,
            "{:<10} {} of {} instances",
            "showing",
            selected.len(),
            o.instance_count
        );
    }
    let daemons = several_daemons(state);
    for (inst, result) in selected {
        let _ = writeln!(out);
        out.push_str(&instance_detail(state, inst, result, daemons.as_ref()));
    }
    for note in &state.notes {
        let _ = writeln!(out, "note: {note}");
    }
    if let Some(data) = state.undo_requested {
        let with = if data { " with --data" } else { "" };
        let _ = writeln!(out, "undo requested{with}");
    }
    for p in &state.pruned {
        let _ = writeln!(out, "pruned {}: {}", p.instance, p.what);
    }
    Ok(out)
}

/// How many instances `status` details per run; `show RUN --failed` lists them all.
const STATUS_INSTANCES: usize = 10;

/// A run in `reroot status`: the run and its overview, then the steps of the instances that
/// need attention (failed, undo failed, in progress), at most [`STATUS_INSTANCES`] of them, so
/// that a run of 500 instances stays a screenful.
pub fn status_detail(state: &RunState) -> String {
    let o = overview(state);
    let mut out = run_lines(state, &o);
    let attention: Vec<_> = instance_results(state)
        .into_iter()
        .filter(|(_, r)| r.needs_attention())
        .collect();
    let daemons = several_daemons(state);
    for (inst, result) in attention.iter().take(STATUS_INSTANCES) {
        let _ = writeln!(out);
        out.push_str(&instance_detail(state, inst, *result, daemons.as_ref()));
    }
    if attention.len() > STATUS_INSTANCES {
        let _ = writeln!(
            out,
            "\n… and {} more instances failed or in progress: `reroot show {} --failed`",
            attention.len() - STATUS_INSTANCES,
            short_id(&state.header.id)
        );
    }
    out
}

/// What `journal verify` checked, in one line: "3 runs, 1204 events from 2026-11-30 10:02:11Z
/// to 2026-12-01 14:00:09Z; checksums, hash chains, sequence numbers, step transitions and
/// indexes, database against live log".
pub fn verified(report: &journal::VerifyReport, span: Option<(i64, i64)>) -> String {
    let source = match report.source {
        journal::Source::Database => "indexes, database against live log",
        journal::Source::LiveLog => "the live log (a writer holds the database)",
    };
    let when = match span {
        Some((first, last)) => format!(" from {} to {}", utc(first), utc(last)),
        None => String::new(),
    };
    format!(
        "{} run{}, {} event{}{when}; checked checksums, hash chains, sequence numbers, step \
         transitions, {source}",
        report.runs,
        if report.runs == 1 { "" } else { "s" },
        report.events,
        if report.events == 1 { "" } else { "s" },
    )
}

/// The instance names `filter` selects from `state` (an error for a name it does not have).
pub fn selected_names(
    state: &RunState,
    filter: &InstanceFilter,
) -> Result<std::collections::BTreeSet<String>, String> {
    Ok(select(state, filter)?
        .into_iter()
        .map(|(i, _)| i.name.clone())
        .collect())
}

/// The end of `rebuild`, `snapshot`, `resume` and `undo`: how each instance ended; `done` is
/// the word for an instance whose steps all succeeded ("rebuilt").
pub fn pass_summary(report: &RunReport, state: &RunState, done: &str) -> String {
    let rows: Vec<Vec<String>> = report
        .instances
        .iter()
        .map(|(name, outcome)| {
            let (result, detail) = match outcome {
                InstanceOutcome::Succeeded => (done.to_string(), String::new()),
                InstanceOutcome::Undone => ("undone".to_string(), String::new()),
                InstanceOutcome::NotStarted => ("not started".to_string(), String::new()),
                InstanceOutcome::Failed { step, error } => {
                    (format!("FAILED at {step}"), error.clone())
                }
                InstanceOutcome::Reverted { step, error } if step.is_empty() => {
                    ("REVERTED to its old root".to_string(), error.clone())
                }
                InstanceOutcome::Reverted { step, error } => (
                    format!("FAILED at {step}, REVERTED to its old root"),
                    error.clone(),
                ),
                InstanceOutcome::UndoFailed { step, error } => {
                    (format!("UNDO FAILED at {step}"), error.clone())
                }
            };
            let downtime = match outcome {
                InstanceOutcome::Succeeded => downtime_ms(state, name)
                    .map(duration)
                    .unwrap_or_else(|| "-".into()),
                _ => "-".into(),
            };
            vec![name.clone(), result, downtime, detail]
        })
        .collect();
    let mut out = table(&["INSTANCE", "RESULT", "DOWNTIME", "DETAIL"], &rows);
    let _ = writeln!(out, "run {} {}", short_id(&report.run), report.outcome);
    out
}

/// `rebuild --dry-run`: one line per instance, what would happen and what changes.
pub fn forecast_table(forecasts: &[crate::steps::forecast::Forecast]) -> String {
    use crate::steps::forecast::Verdict;
    let rows: Vec<Vec<String>> = forecasts
        .iter()
        .map(|f| {
            let (what, detail) = match &f.verdict {
                Verdict::Launch => ("launch".to_string(), String::new()),
                Verdict::Rebuild => ("rebuild".to_string(), String::new()),
                Verdict::Skip { run } => (
                    "skip".to_string(),
                    format!("already built from it by run {}", &run[..run.len().min(8)]),
                ),
                Verdict::Refuse { reason } => ("REFUSED".to_string(), reason.clone()),
            };
            let profiles = if f.profiles_before == f.profiles_after {
                f.profiles_after.join(",")
            } else {
                format!(
                    "{} → {}",
                    f.profiles_before.join(","),
                    f.profiles_after.join(",")
                )
            };
            let created = if f.new_filesystems.is_empty() {
                "-".to_string()
            } else {
                f.new_filesystems.join(", ")
            };
            vec![
                f.instance.clone(),
                what,
                format!("{} → {}", f.from.as_deref().unwrap_or("-"), f.to),
                if f.running { "yes" } else { "no" }.to_string(),
                profiles,
                f.devices.clone(),
                created,
                if f.then.is_empty() {
                    "-".to_string()
                } else {
                    f.then.join(", ")
                },
                detail,
            ]
        })
        .collect();
    table(
        &[
            "INSTANCE",
            "ACTION",
            "SOURCE",
            "DOWN",
            "PROFILES",
            "DEVICES",
            "NEW FILESYSTEMS",
            "THEN",
            "DETAIL",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use journal::{EventKind, Journal, Outcome, RunHeader, RunId};

    fn argv(words: &str) -> Vec<String> {
        words.split(' ').map(str::to_string).collect()
    }

    fn paths(n: usize) -> String {
        (0..n)
            .map(|i| format!("configs/web/w{i:03}.yaml"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn commands_keep_flags_and_the_first_operands() {
        let cases: Vec<(String, &str)> = vec![
            (
                format!("/usr/local/bin/reroot rebuild --parallel 8 {}", paths(100)),
                "reroot rebuild --parallel 8 configs/web/w000.yaml configs/web/w001.yaml … (+98 more)",
            ),
            // Four operands: hiding one would save nothing.
            (
                "reroot rebuild a.yaml b.yaml c.yaml".to_string(),
                "reroot rebuild a.yaml b.yaml c.yaml",
            ),
            (
                "reroot rebuild a.yaml b.yaml c.yaml d.yaml".to_string(),
                "reroot rebuild a.yaml b.yaml … (+2 more)",
            ),
            // Flags after the paths, and their values, stay where they were.
            (
                "reroot rebuild a b c d e --canaries 1 -P tpl=v2".to_string(),
                "reroot rebuild a b … (+3 more) --canaries 1 -P tpl=v2",
            ),
            // Global flags before the subcommand; a value joined with `=` has no word after.
            (
                "reroot --journal /j --socket=/s rebuild a b c d".to_string(),
                "reroot --journal /j --socket=/s rebuild a b … (+2 more)",
            ),
            // A flag that takes no value keeps the word after it: a value is never hidden.
            (
                "reroot rebuild --dry-run a b c d e".to_string(),
                "reroot rebuild --dry-run a b c … (+2 more)",
            ),
            (
                "reroot undo 1a2b3c4d web-1 web-2 web-3 web-4 web-5".to_string(),
                "reroot undo 1a2b3c4d web-1 … (+4 more)",
            ),
            // After `--` everything is an operand.
            (
                "reroot undo -- 1a2b3c4d -w1 -w2 -w3".to_string(),
                "reroot undo -- 1a2b3c4d -w1 … (+2 more)",
            ),
            ("reroot status".to_string(), "reroot status"),
        ];
        for (command, short) in cases {
            assert_eq!(short_command(&argv(&command)), short, "{command}");
        }
        assert_eq!(short_command(&[]), "");
        let odd: Vec<String> = ["reroot", "rebuild", "my site.yaml", "it's.yaml", ""]
            .map(String::from)
            .to_vec();
        // Quoted so that a shell reads back the same words.
        assert_eq!(shlex::split(&short_command(&odd)).unwrap(), odd);
    }

    #[test]
    fn history_lines_count_instances_and_shorten_commands() {
        let instances: Vec<String> = (0..150).map(|i| format!("w{i:03}")).collect();
        let run = RunSummary {
            id: uuid::Uuid::from_u128(0x1a2b3c4d_0000_0000_0000_000000000000),
            command: argv(&format!("reroot rebuild {}", paths(150))),
            instances,
            started_at_ms: 0,
            status: RunStatus::Succeeded,
            events: 1,
            last_at_ms: 0,
            user: "alice".into(),
            options: Default::default(),
        };
        let text = runs_table(std::slice::from_ref(&run), None);
        let line = text.lines().nth(1).expect("a line for the run");
        assert_eq!(
            line,
            "1a2b3c4d  1970-01-01 00:00:00Z  succeeded  150        -       reroot rebuild \
             configs/web/w000.yaml configs/web/w001.yaml … (+148 more)"
        );
        let json = serde_json::to_value(json::history(&[run], None)).unwrap();
        assert_eq!(json["schema"], "reroot.history/1");
        let run = &json["runs"][0];
        assert_eq!(run["instance_count"], 150);
        assert_eq!(run["command"].as_array().unwrap().len(), 152);
        assert_eq!(run["instances"].as_array().unwrap().len(), 150);
        assert_eq!(run["started_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(run["short_id"], "1a2b3c4d");
        assert_eq!(run["daemon"], "-");
    }

    #[test]
    fn spreads_by_nearest_rank() {
        assert_eq!(spread(&[]), None);
        let one = Spread {
            count: 1,
            p50: 7,
            p95: 7,
            max: 7,
        };
        assert_eq!(spread(&[7]), Some(one));
        let hundred: Vec<i64> = (1..=100).rev().collect();
        let s = spread(&hundred).unwrap();
        assert_eq!((s.count, s.p50, s.p95, s.max), (100, 50, 95, 100));
        let s = spread(&[3, 1, 2, 4]).unwrap();
        assert_eq!((s.p50, s.p95, s.max), (2, 4, 4));
        let s = spread(&(0..150).collect::<Vec<_>>()).unwrap();
        assert_eq!((s.p50, s.p95, s.max), (74, 142, 149));
    }

    #[test]
    fn long_durations_read_in_minutes_and_hours() {
        assert_eq!(long_duration(59_999), "59.999 s");
        assert_eq!(long_duration(125_000), "2 m 05 s");
        assert_eq!(long_duration(3_723_000), "1 h 02 m 03 s");
    }

    /// A temporary journal, and runs written into it through the journal's own API.
    struct Fixture {
        _dir: tempfile::TempDir,
        j: Journal,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let j = Journal::open(dir.path()).unwrap();
            Fixture { _dir: dir, j }
        }

        fn run(&self, kind: &str, instances: &[&str]) -> RunId {
            let header = RunHeader {
                id: RunHeader::new_id(),
                command: argv(&format!("reroot {kind} x.yaml")),
                user: "alice".into(),
                host: "host1".into(),
                started_at_ms: journal::now_ms(),
                config_digests: vec![],
                instances: instances.iter().map(|s| s.to_string()).collect(),
                options: [("kind".to_string(), kind.to_string())].into(),
            };
            self.j.create_run(header).unwrap().run
        }

        fn ev(&self, run: RunId, inst: &str, step: &str, attempt: u32, kind: EventKind) {
            self.j
                .append(run, Some(inst), Some(step), attempt, kind)
                .unwrap_or_else(|e| panic!("{inst}/{step}: {e}"));
        }

        /// `steps` succeed in order; `start` records `downtime`.
        fn ok(&self, run: RunId, inst: &str, steps: &[&str], downtime: i64) {
            for s in steps {
                self.ev(run, inst, s, 1, EventKind::StepStarted);
                let output = if *s == "start" {
                    format!("{{\"downtime_ms\":{downtime}}}")
                } else {
                    "{}".to_string()
                };
                self.ev(run, inst, s, 1, EventKind::StepSucceeded { output });
            }
        }

        fn finish(&self, run: RunId, outcome: Outcome) {
            self.j
                .append(run, None, None, 0, EventKind::RunFinished { outcome })
                .unwrap();
        }
    }

    fn rebuild_steps() -> Vec<&'static str> {
        crate::steps::rebuild_pipeline()
            .iter()
            .map(|s| s.name())
            .collect()
    }

    fn failed(error: &str) -> EventKind {
        EventKind::StepFailed {
            error: error.into(),
        }
    }

    #[test]
    fn instance_results_from_journal_records() {
        use InstanceResult::*;
        let all = rebuild_steps();
        let f = Fixture::new();
        type Write = fn(&Fixture, RunId, &str, &[&str]);
        let cases: Vec<(&str, Write, InstanceResult)> = vec![
            ("nothing", |_, _, _, _| {}, NotStarted),
            ("every step", |f, r, i, all| f.ok(r, i, all, 900), Succeeded),
            (
                "between two steps",
                |f, r, i, all| f.ok(r, i, &all[..3], 0),
                InProgress,
            ),
            (
                "a step under way",
                |f, r, i, all| {
                    f.ok(r, i, &all[..1], 0);
                    f.ev(r, i, all[1], 1, EventKind::StepStarted);
                },
                InProgress,
            ),
            (
                "a step failed",
                |f, r, i, all| {
                    f.ok(r, i, &all[..1], 0);
                    f.ev(r, i, all[1], 1, EventKind::StepStarted);
                    f.ev(r, i, all[1], 1, failed("no space"));
                },
                Failed,
            ),
            (
                "a failed step tried again",
                |f, r, i, all| {
                    f.ev(r, i, all[0], 1, EventKind::StepStarted);
                    f.ev(r, i, all[0], 1, failed("busy"));
                    f.ev(r, i, all[0], 2, EventKind::StepStarted);
                },
                InProgress,
            ),
            (
                "every step undone",
                |f, r, i, all| {
                    f.ok(r, i, &all[..2], 0);
                    for s in all[..2].iter().rev() {
                        f.ev(r, i, s, 1, EventKind::UndoStarted);
                        f.ev(r, i, s, 1, EventKind::UndoFinished);
                    }
                },
                Reverted,
            ),
            (
                "failed in the window, then every step undone",
                |f, r, i, all| {
                    f.ok(r, i, &all[..3], 0);
                    f.ev(r, i, all[3], 1, EventKind::StepStarted);
                    f.ev(r, i, all[3], 1, failed("zfs: dataset is busy"));
                    for s in all[..4].iter().rev() {
                        f.ev(r, i, s, 1, EventKind::UndoStarted);
                        f.ev(r, i, s, 1, EventKind::UndoFinished);
                    }
                },
                Reverted,
            ),
            (
                "half undone",
                |f, r, i, all| {
                    f.ok(r, i, &all[..2], 0);
                    f.ev(r, i, all[1], 1, EventKind::UndoStarted);
                    f.ev(r, i, all[1], 1, EventKind::UndoFinished);
                },
                InProgress,
            ),
            (
                "an undo under way",
                |f, r, i, all| {
                    f.ok(r, i, &all[..1], 0);
                    f.ev(r, i, all[0], 1, EventKind::UndoStarted);
                },
                InProgress,
            ),
            (
                "an undo failed",
                |f, r, i, all| {
                    f.ok(r, i, &all[..2], 0);
                    f.ev(r, i, all[1], 1, EventKind::UndoStarted);
                    f.ev(r, i, all[1], 1, EventKind::UndoFailed { error: "x".into() });
                },
                UndoFailed,
            ),
        ];
        let names: Vec<String> = (0..cases.len()).map(|i| format!("web-{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        for undo_requested in [false, true] {
            let run = f.run("rebuild", &refs);
            if undo_requested {
                f.j.append(run, None, None, 0, EventKind::UndoRequested { data: true })
                    .unwrap();
            }
            for ((_, write, _), name) in cases.iter().zip(&names) {
                write(&f, run, name, &all);
            }
            let state = f.j.replay(run).unwrap();
            let results = instance_results(&state);
            for ((what, _, want), (inst, got)) in cases.iter().zip(&results) {
                // The journal records a revert like an undo: only the undo request tells them
                // apart.
                let want = match want {
                    Reverted if undo_requested => Undone,
                    other => *other,
                };
                assert_eq!(
                    *got, want,
                    "{what} ({}), undo asked: {undo_requested}",
                    inst.name
                );
            }
        }

        // A succeeded run finished every instance, even with steps this build does not know.
        let done = f.run("rebuild", &["old-1"]);
        f.ok(done, "old-1", &["preflight", "swap"], 0);
        f.finish(done, Outcome::Succeeded);
        let state = f.j.replay(done).unwrap();
        assert_eq!(instance_results(&state)[0].1, Succeeded);
        // Of a kind this build does not know, recorded steps that all succeeded are all there is.
        let newer = f.run("frobnicate", &["new-1"]);
        f.ok(newer, "new-1", &["frob"], 0);
        let state = f.j.replay(newer).unwrap();
        assert_eq!(instance_results(&state)[0].1, Succeeded);
    }

    /// A rebuild of six instances: three rebuilt (downtimes 300, 100, 200 ms), one failed at
    /// `prepare`, one under way, one not started.
    fn six(f: &Fixture) -> RunState {
        let all = rebuild_steps();
        let names = ["a", "b", "c", "d", "e", "f"];
        let run = f.run("rebuild", &names);
        for (name, downtime) in [("a", 300), ("b", 100), ("c", 200)] {
            f.ok(run, name, &all, downtime);
        }
        f.ok(run, "d", &all[..1], 0);
        f.ev(run, "d", all[1], 1, EventKind::StepStarted);
        f.ev(run, "d", all[1], 1, failed("disk full"));
        f.ok(run, "e", &all[..4], 0);
        f.ev(run, "e", all[4], 1, EventKind::StepStarted);
        f.j.replay(run).unwrap()
    }

    #[test]
    fn overview_counts_results_and_spreads_downtime() {
        let f = Fixture::new();
        let state = six(&f);
        let o = overview(&state);
        assert_eq!(o.instance_count, 6);
        let counts: Vec<(InstanceResult, usize)> =
            o.results.iter().map(|(r, n)| (*r, *n)).collect();
        use InstanceResult::*;
        assert_eq!(
            counts,
            [
                (Succeeded, 3),
                (Failed, 1),
                (Reverted, 0),
                (UndoFailed, 0),
                (InProgress, 1),
                (Undone, 0),
                (NotStarted, 1)
            ]
        );
        let d = o.downtime_ms.unwrap();
        assert_eq!((d.count, d.p50, d.p95, d.max), (3, 200, 300, 300));
        let wall = o.wall_time_ms.unwrap();
        let elapsed = journal::now_ms() - state.header.started_at_ms;
        assert!((0..=elapsed).contains(&wall), "{wall} of {elapsed}");

        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(json["results"]["not_started"], 1);
        assert_eq!(json["results"]["in_progress"], 1);
        assert_eq!(json["downtime_ms"]["p95"], 300);

        let empty = Fixture::new();
        let run = empty.run("snapshot", &["t"]);
        let o = overview(&empty.j.replay(run).unwrap());
        assert_eq!((o.downtime_ms, o.wall_time_ms), (None, None));
    }

    #[test]
    fn show_prints_notes_the_undo_asked_for_and_what_was_pruned() {
        let f = Fixture::new();
        let run = f.run("rebuild", &["web-1"]);
        f.ok(run, "web-1", &["preflight"], 0);
        f.finish(run, Outcome::Succeeded);
        let text = run_detail(&f.j.replay(run).unwrap(), &InstanceFilter::default()).unwrap();
        assert!(
            !text.contains("undo requested") && !text.contains("pruned"),
            "{text}"
        );
        let note = EventKind::Note {
            text: "checked by hand".into(),
        };
        f.j.append(run, None, None, 0, note).unwrap();
        f.j.append(run, None, None, 0, EventKind::UndoRequested { data: true })
            .unwrap();
        let what = "deleted snapshot zfs dataset p/web-1@reroot-1".to_string();
        f.j.append(run, Some("web-1"), None, 0, EventKind::Pruned { what })
            .unwrap();
        let text = run_detail(&f.j.replay(run).unwrap(), &InstanceFilter::default()).unwrap();
        assert!(
            text.ends_with(
                "note: checked by hand\nundo requested with --data\n\
                 pruned web-1: deleted snapshot zfs dataset p/web-1@reroot-1\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn show_prints_the_overview_then_the_selected_instances() {
        let f = Fixture::new();
        let state = six(&f);
        let heading =
            |name: &str, text: &str| text.lines().any(|l| l.starts_with(&format!("{name}  ")));
        let text = run_detail(&state, &InstanceFilter::default()).unwrap();
        assert!(
            text.contains("instances  6: 3 succeeded, 1 failed, 1 in progress, 1 not started\n"),
            "{text}"
        );
        assert!(
            text.contains("downtime   p50 200 ms, p95 300 ms, max 300 ms (3 instances)\n"),
            "{text}"
        );
        assert!(text.contains("\nwall time  "), "{text}");
        assert!(
            text.contains("command    reroot rebuild x.yaml\n"),
            "{text}"
        );
        assert!(!text.contains("showing"), "{text}");
        assert!(text.contains("a  succeeded (downtime 300 ms)\n"), "{text}");
        assert!(text.contains("disk full"), "{text}");
        for name in ["a", "b", "c", "d", "e", "f"] {
            assert!(heading(name, &text), "{name} in {text}");
        }

        let cases: Vec<(InstanceFilter, Vec<&str>)> = vec![
            (
                InstanceFilter {
                    names: vec![],
                    failed: true,
                },
                vec!["d", "e"],
            ),
            (
                InstanceFilter {
                    names: vec!["f".into(), "b".into()],
                    failed: false,
                },
                vec!["b", "f"],
            ),
            (
                InstanceFilter {
                    names: vec!["a".into(), "d".into()],
                    failed: true,
                },
                vec!["d"],
            ),
        ];
        for (filter, want) in cases {
            let text = run_detail(&state, &filter).unwrap();
            let shown: Vec<&str> = ["a", "b", "c", "d", "e", "f"]
                .into_iter()
                .filter(|n| heading(n, &text))
                .collect();
            assert_eq!(shown, want, "{filter:?}: {text}");
            assert!(
                text.contains(&format!("showing    {} of 6 instances\n", want.len())),
                "{text}"
            );
            // The summary covers the whole run whatever is shown.
            assert!(text.contains("instances  6: 3 succeeded"), "{text}");
            let keep = selected_names(&state, &filter).unwrap();
            let json = serde_json::to_value(json::show(&state, |n| keep.contains(n))).unwrap();
            assert_eq!(json["schema"], "reroot.show/1");
            let names: Vec<&str> = json["instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap())
                .collect();
            assert_eq!(names, want, "{filter:?}");
            assert_eq!(json["summary"]["instance_count"], 6);
            assert_eq!(json["status"], "Running");
        }

        let typo = InstanceFilter {
            names: vec!["a".into(), "zz".into()],
            failed: false,
        };
        let err = run_detail(&state, &typo).unwrap_err();
        assert!(
            err.contains("no instance \"zz\"") && err.contains("its 6 instances: a, b, c, d, e, …"),
            "{err}"
        );
        assert_eq!(selected_names(&state, &typo).unwrap_err(), err);
    }

    #[test]
    fn status_details_only_the_instances_that_need_attention() {
        let f = Fixture::new();
        let all = rebuild_steps();
        let names: Vec<String> = (0..30).map(|i| format!("x{i:02}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let run = f.run("rebuild", &refs);
        for (i, name) in names.iter().enumerate() {
            match i % 3 {
                0 => f.ok(run, name, &all, 100),
                1 => {
                    f.ev(run, name, all[0], 1, EventKind::StepStarted);
                    f.ev(run, name, all[0], 1, failed("refused"));
                }
                _ => {}
            }
        }
        f.finish(run, Outcome::Failed);
        let state = f.j.replay(run).unwrap();
        let text = status_detail(&state);
        assert!(
            text.contains("instances  30: 10 succeeded, 10 failed, 10 not started\n"),
            "{text}"
        );
        let headed: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with('x'))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let want: Vec<String> = (0..10).map(|i| format!("x{:02}", 3 * i + 1)).collect();
        assert_eq!(headed, want, "{text}");
        assert!(!text.contains("more instances"), "{text}");

        // 12 failures: ten detailed, two counted.
        let more = f.run("rebuild", &refs[..12]);
        for name in &refs[..12] {
            f.ev(more, name, all[0], 1, EventKind::StepStarted);
            f.ev(more, name, all[0], 1, failed("refused"));
        }
        let text = status_detail(&f.j.replay(more).unwrap());
        assert_eq!(text.matches("  failed\n").count(), 10, "{text}");
        assert!(
            text.contains(&format!(
                "… and 2 more instances failed or in progress: `reroot show {} --failed`",
                short_id(&more)
            )),
            "{text}"
        );
        let doc = json::status(None, &[(state, "failed; ...".to_string())]);
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["schema"], "reroot.status/1");
        assert_eq!(json["writer"], serde_json::Value::Null);
        let json = &json["runs"][0];
        assert_eq!(json["activity"], "failed; ...");
        assert_eq!(json["instance_count"], 30);
        assert_eq!(json["summary"]["results"]["failed"], 10);
        assert_eq!(json["run"]["instances"].as_array().unwrap().len(), 30);
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_795_315_922_000), "2026-11-22 02:52:02Z");
        // Clamped, never a panic, whatever an imported journal holds.
        assert_eq!(utc(-1000), "1970-01-01 00:00:00Z");
        assert_eq!(utc(i64::MIN), "1970-01-01 00:00:00Z");
        assert_eq!(utc(i64::MAX), "9999-12-31 23:59:59Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_315_922_250), "2026-11-22T02:52:02.250Z");
        assert_eq!(rfc3339(-1), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn durations_switch_to_seconds_at_one_second() {
        assert_eq!(duration(87), "87 ms");
        assert_eq!(duration(1234), "1.234 s");
    }

    #[test]
    fn table_pads_columns_to_the_widest_cell() {
        let t = table(
            &["A", "BB", "C"],
            &[vec!["xxx".into(), "y".into(), "z".into()]],
        );
        assert_eq!(t, "A    BB  C\nxxx  y   z\n");
    }
}
