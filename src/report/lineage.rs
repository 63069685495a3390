//! The runs of an instance across its renames. The journal indexes a run under the names its
//! header and events carry, and a rename run carries the instance's old name only (its steps
//! act on the instance as it was when the run started); the new name is in the run's header
//! (`rename_to`, the plan under the new name). Following those headers backwards gives an
//! instance's whole audit trail under the name it has now, without a change to the journal:
//! its own runs, each rename run that gave it the name, and the runs of the name it had before,
//! up to that rename (a later instance that took the old name is another instance).
//!
//! A rename that was undone is listed under the new name (it touched it), but the past of the
//! old name is not, since the instance went back to that name.

use journal::{Reader, RunFilter, RunStatus, RunSummary};
use std::collections::HashSet;

/// A run of the instance, with the name the instance had in it.
#[derive(Debug, Clone)]
pub struct NamedRun {
    pub run: RunSummary,
    /// The name the run's header and events give the instance.
    pub name: String,
}

/// The new name a rename run's header records, if `run` is a rename run.
pub fn renamed_to(run: &RunSummary) -> Option<String> {
    if run.options.get("kind").map(String::as_str) != Some("rename") {
        return None;
    }
    let plan: serde_json::Value = serde_json::from_str(run.options.get("rename_to")?).ok()?;
    Some(plan.get("name")?.as_str()?.to_string())
}

/// Every run of the instance called `name` now, newest first (by start, then id), each with the
/// name the instance had in it; `since`, `until` and `limit` as in [`RunFilter`], applied to
/// the whole list.
pub fn instance_runs(
    reader: &Reader,
    name: &str,
    filter: &RunFilter,
) -> Result<Vec<NamedRun>, journal::Error> {
    // The rename runs, by the name they gave: read once (a listing of every run's header,
    // as `history` without --instance does).
    let renames: Vec<(String, RunSummary)> = reader
        .runs(&RunFilter::default())?
        .into_iter()
        .filter_map(|r| Some((renamed_to(&r)?, r)))
        .collect();
    let mut out: Vec<NamedRun> = Vec::new();
    let mut seen = HashSet::new();
    // (name, runs of it started before this time count), walked back through the renames;
    // each step back is bounded by an earlier start, so a chain of renames back and forth ends.
    let mut todo = vec![(name.to_string(), i64::MAX)];
    while let Some((current, before)) = todo.pop() {
        for run in reader.runs(&RunFilter {
            instance: Some(current.clone()),
            ..RunFilter::default()
        })? {
            if run.started_at_ms < before && seen.insert(run.id) {
                out.push(NamedRun {
                    run,
                    name: current.clone(),
                });
            }
        }
        for (to, rename) in &renames {
            if to != &current || rename.started_at_ms >= before {
                continue;
            }
            let Some(from) = rename.instances.first() else {
                continue;
            };
            if seen.insert(rename.id) {
                out.push(NamedRun {
                    run: rename.clone(),
                    name: from.clone(),
                });
            }
            if rename.status != RunStatus::Undone {
                todo.push((from.clone(), rename.started_at_ms));
            }
        }
    }
    out.retain(|r| {
        (filter.statuses.is_empty() || filter.statuses.contains(&r.run.status))
            && filter.since_ms.is_none_or(|t| r.run.started_at_ms >= t)
            && filter.until_ms.is_none_or(|t| r.run.started_at_ms < t)
    });
    out.sort_by(|a, b| {
        b.run
            .started_at_ms
            .cmp(&a.run.started_at_ms)
            .then(b.run.id.cmp(&a.run.id))
    });
    if let Some(n) = filter.limit {
        out.truncate(n);
    }
    Ok(out)
}
