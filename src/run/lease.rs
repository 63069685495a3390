//! Leases: which instances a run holds, so that a second run leaves them alone until the first
//! is resumed or undone; and which runs went through (a root one of them built is as it left
//! it). Read from the journal at the start of a run.

use std::collections::{BTreeMap, BTreeSet};

use journal::{Reader, RunId, RunStatus, StepStatus};

use super::spec;

/// Instances that are part of a run that is neither finished nor undone: a second run must
/// not touch them until that one is resumed or undone.
pub fn leased(journal: &Reader) -> Result<BTreeMap<String, RunId>, String> {
    let mut out = BTreeMap::new();
    let err = |e: journal::Error| e.to_string();
    for run in journal.unfinished().map_err(err)? {
        for i in run.instances {
            out.insert(i, run.id);
        }
    }
    let failed = journal
        .runs(&journal::RunFilter {
            statuses: vec![RunStatus::Failed],
            ..Default::default()
        })
        .map_err(err)?;
    for run in failed {
        let state = journal.replay(run.id).map_err(err)?;
        let pipeline = spec::kind_of(&state)?.pipeline();
        let (first, steps) = (pipeline[0].name(), pipeline.len());
        for inst in &state.instances {
            // The first step of every pipeline only looks.
            let changed = inst.steps.iter().any(|s| s.name != first);
            let complete = inst.steps.len() == steps
                && inst.steps.iter().all(|s| s.status == StepStatus::Succeeded);
            let undone = inst
                .steps
                .iter()
                .all(|s| s.status == StepStatus::UndoFinished);
            if changed && !complete && !undone {
                out.entry(inst.name.clone()).or_insert(run.id);
            }
        }
    }
    Ok(out)
}

/// The ids of the runs that succeeded: a root one of them built is as that run left it.
pub fn succeeded_runs(reader: &Reader) -> Result<BTreeSet<String>, String> {
    Ok(reader
        .runs(&journal::RunFilter {
            statuses: vec![RunStatus::Succeeded],
            ..Default::default()
        })
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|r| r.id.to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::testing;
    use journal::{EventKind, Journal, Outcome};

    fn run(j: &Journal, instances: &[&str]) -> RunId {
        let names: Vec<String> = instances.iter().map(|s| s.to_string()).collect();
        let header = testing::header(&names, Default::default());
        let id = header.id;
        j.create_run(header).unwrap();
        id
    }

    fn step(j: &Journal, run: RunId, instance: &str, step: &str, kind: EventKind) {
        j.append(run, Some(instance), Some(step), 1, kind).unwrap();
    }

    #[test]
    fn unfinished_runs_hold_all_their_instances_failed_ones_only_those_left_half_done() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let ok = || EventKind::StepSucceeded {
            output: "{}".into(),
        };
        // A run still going: every instance is held, touched or not.
        let going = run(&j, &["a", "b"]);
        // A failed run: c changed something and stopped half-way; d only looked (preflight);
        // e was reverted (every step undone).
        let failed = run(&j, &["c", "d", "e"]);
        for i in ["c", "d", "e"] {
            step(&j, failed, i, "preflight", EventKind::StepStarted);
            step(&j, failed, i, "preflight", ok());
        }
        for i in ["c", "e"] {
            step(&j, failed, i, "prepare", EventKind::StepStarted);
            step(&j, failed, i, "prepare", ok());
        }
        for s in ["prepare", "preflight"] {
            step(&j, failed, "e", s, EventKind::UndoStarted);
            step(&j, failed, "e", s, EventKind::UndoFinished);
        }
        j.append(
            failed,
            None,
            None,
            0,
            EventKind::RunFinished {
                outcome: Outcome::Failed,
            },
        )
        .unwrap();
        let leases = leased(&j).unwrap();
        let held: Vec<(&str, RunId)> = leases.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(held, vec![("a", going), ("b", going), ("c", failed)]);
        assert!(succeeded_runs(&j).unwrap().is_empty());
    }
}
