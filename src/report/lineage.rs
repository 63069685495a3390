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
    renamed_in(&run.options)
}

/// The new name recorded in a run's header options, if it is a rename run.
pub fn renamed_in(options: &std::collections::BTreeMap<String, String>) -> Option<String> {
    if options.get("kind").map(String::as_str) != Some("rename") {
        return None;
    }
    let plan: serde_json::Value = serde_json::from_str(options.get("rename_to")?).ok()?;
    Some(plan.get("name")?.as_str()?.to_string())
}

/// Every run of the instance called `name` now, newest first (by start, then id), each with the
/// name the instance had in it; `since`, `until`, `statuses` and `limit` as in [`RunFilter`],
/// applied to the whole list.
pub fn instance_runs(
    reader: &Reader,
    name: &str,
    filter: &RunFilter,
) -> Result<Vec<NamedRun>, journal::Error> {
    // The rename runs: every run's header read once, as `history` without --instance does.
    let all = reader.runs(&RunFilter::default())?;
    lineage(name, &all, filter, |n| {
        reader.runs(&RunFilter {
            instance: Some(n.to_string()),
            ..RunFilter::default()
        })
    })
}

/// [`instance_runs`] over `all` the runs, with `runs_of` the runs the journal indexes under a
/// name.
pub fn lineage<E>(
    name: &str,
    all: &[RunSummary],
    filter: &RunFilter,
    runs_of: impl Fn(&str) -> Result<Vec<RunSummary>, E>,
) -> Result<Vec<NamedRun>, E> {
    let renames: Vec<(String, &RunSummary)> = all
        .iter()
        .filter_map(|r| Some((renamed_to(r)?, r)))
        .collect();
    let mut out: Vec<NamedRun> = Vec::new();
    let mut seen = HashSet::new();
    // (name, runs of it started before this time count), walked back through the renames;
    // each step back is bounded by an earlier start, so a chain of renames back and forth ends.
    let mut todo = vec![(name.to_string(), i64::MAX)];
    while let Some((current, before)) = todo.pop() {
        for run in runs_of(&current)? {
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
                    run: (*rename).clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        n: u128,
        at: i64,
        instance: &str,
        rename_to: Option<&str>,
        status: RunStatus,
    ) -> RunSummary {
        let mut options = std::collections::BTreeMap::new();
        if let Some(to) = rename_to {
            options.insert("kind".to_string(), "rename".to_string());
            options.insert("rename_to".to_string(), format!("{{\"name\":\"{to}\"}}"));
        }
        RunSummary {
            id: uuid::Uuid::from_u128(n),
            command: vec!["reroot".into()],
            instances: vec![instance.to_string()],
            started_at_ms: at,
            status,
            events: 1,
            last_at_ms: at,
            user: "u".into(),
            options,
        }
    }

    /// (run number, name) of `name`'s lineage, newest first.
    fn trail(all: &[RunSummary], name: &str) -> Vec<(u128, String)> {
        let runs_of = |n: &str| -> Result<Vec<RunSummary>, ()> {
            Ok(all
                .iter()
                .filter(|r| r.instances[0] == n)
                .cloned()
                .collect())
        };
        lineage(name, all, &RunFilter::default(), runs_of)
            .unwrap()
            .into_iter()
            .map(|r| (r.run.id.as_u128(), r.name))
            .collect()
    }

    #[test]
    fn follows_renames_back_and_leaves_a_later_namesake_alone() {
        use RunStatus::*;
        let all = [
            run(1, 10, "a", None, Succeeded),
            run(2, 20, "a", Some("b"), Succeeded),
            run(3, 30, "b", None, Succeeded),
            run(4, 40, "a", None, Succeeded), // another instance, named `a` after the rename
            run(5, 50, "b", Some("c"), Succeeded),
            run(6, 60, "c", None, Failed),
        ];
        let s = |v: &[(u128, &str)]| -> Vec<(u128, String)> {
            v.iter().map(|(n, s)| (*n, s.to_string())).collect()
        };
        assert_eq!(
            trail(&all, "c"),
            s(&[(6, "c"), (5, "b"), (3, "b"), (2, "a"), (1, "a")])
        );
        assert_eq!(
            trail(&all, "b"),
            s(&[(5, "b"), (3, "b"), (2, "a"), (1, "a")])
        );
        assert_eq!(trail(&all, "a"), s(&[(4, "a"), (2, "a"), (1, "a")]));
    }

    #[test]
    fn an_undone_rename_is_listed_without_the_old_past_and_back_and_forth_ends() {
        use RunStatus::*;
        let undone = [
            run(1, 10, "a", None, Succeeded),
            run(2, 20, "a", Some("b"), Undone),
        ];
        assert_eq!(trail(&undone, "b"), [(2, "a".to_string())]);
        let back = [
            run(1, 10, "a", None, Succeeded),
            run(2, 20, "a", Some("b"), Succeeded),
            run(3, 30, "b", Some("a"), Succeeded),
            run(4, 40, "a", Some("b"), Succeeded),
        ];
        let ids: Vec<u128> = trail(&back, "b").into_iter().map(|(n, _)| n).collect();
        assert_eq!(ids, [4, 3, 2, 1]);
    }
}
