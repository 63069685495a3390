//! Undoing a run: what cannot be undone is refused before anything is recorded; what can is
//! recorded as asked for (a note of the run) before the first step is undone, so that a
//! `resume` after a crash goes on with the undo instead of going forward again.

use journal::{EventKind, Journal, RunId, RunState, RunStatus};

use super::pass::Pass;
use super::prune;
use super::spec::{self, RunSpec};
use crate::engine::{Direction, Limits};
use crate::steps::RunKind;

/// An undo as asked for on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UndoRequest {
    /// Only these instances; every instance of the run when empty.
    pub instances: Vec<String>,
    /// Also roll the external filesystems back to the run's snapshots (`--data`).
    pub data: bool,
    /// How many instances to undo at once.
    pub parallel: usize,
}

/// Why a run cannot be undone as asked. Nothing was recorded.
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    /// It was undone already.
    #[error("run {0} is already undone")]
    AlreadyUndone(RunId),
    /// `--data` was asked of a run that took no filesystem snapshots to roll back to.
    #[error("run {run} is a {} run: --data (roll filesystems back) is for rebuild runs", .kind.word())]
    DataOfNotRebuild {
        /// The run.
        run: RunId,
        /// Its kind.
        kind: RunKind,
    },
    /// The run's kind deletes what it cannot bring back.
    #[error(
        "run {run} is a {} run and cannot be undone: {} (if it is unfinished, `reroot resume` \
         finishes it)",
        .kind.word(),
        .kind.not_undoable_because()
    )]
    NotUndoable {
        /// The run.
        run: RunId,
        /// Its kind.
        kind: RunKind,
    },
    /// The run's retired roots were pruned: what undo would bring back is gone.
    #[error("run {run} cannot be undone: its retired roots were deleted ({note})")]
    Pruned {
        /// The run.
        run: RunId,
        /// The note that says what was pruned.
        note: String,
    },
    /// An instance named is not one of the run's.
    #[error("instance {instance} is not part of run {run}")]
    NotInRun {
        /// The run.
        run: RunId,
        /// The instance.
        instance: String,
    },
    /// The run's spec cannot be read.
    #[error("{0}")]
    Spec(String),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] journal::Error),
}

/// Checks that the run in `state` can be undone as `asked`, records the request, and gives
/// the pass that undoes it: every instance is tried (no failure budget, no canaries), with the
/// retries the run was started with.
pub fn undo(journal: &Journal, state: &RunState, asked: &UndoRequest) -> Result<Pass, UndoError> {
    let run = state.header.id;
    if state.status == RunStatus::Undone {
        return Err(UndoError::AlreadyUndone(run));
    }
    // The kind alone first: its refusals do not need the plans (cheaper, and they name the
    // kind even when the plans cannot be read).
    let kind = spec::kind_of(state).map_err(UndoError::Spec)?;
    if asked.data && kind != RunKind::Rebuild {
        return Err(UndoError::DataOfNotRebuild { run, kind });
    }
    if !kind.undoable() {
        return Err(UndoError::NotUndoable { run, kind });
    }
    if let Some(note) = prune::pruned(state) {
        return Err(UndoError::Pruned {
            run,
            note: note.to_string(),
        });
    }
    let instances = if asked.instances.is_empty() {
        state.header.instances.clone()
    } else {
        if let Some(i) = asked
            .instances
            .iter()
            .find(|i| !state.header.instances.contains(i))
        {
            return Err(UndoError::NotInRun {
                run,
                instance: i.clone(),
            });
        }
        asked.instances.clone()
    };
    // Read before the request is recorded, so that a run whose spec cannot be read is left
    // without a request no pass could carry out.
    let spec = RunSpec::of(state).map_err(UndoError::Spec)?;
    let request = EventKind::UndoRequested { data: asked.data };
    journal.append(run, None, None, 0, request)?;
    Ok(Pass {
        run,
        limits: Limits {
            retries: spec.limits.retries,
            ..Limits::without_budget(asked.parallel)
        },
        spec,
        instances,
        direction: Direction::Undo,
        undo_data: asked.data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::testing;
    use journal::Outcome;

    fn rebuild(names: &[&str]) -> RunSpec {
        let limits = Limits {
            parallel: 5,
            max_failures: 0,
            canaries: 2,
            retries: 4,
            max_down: 0,
        };
        let plans = names.iter().map(|n| testing::plan(n)).collect();
        RunSpec::new(RunKind::Rebuild, plans, limits)
    }

    fn ask(instances: &[&str], data: bool) -> UndoRequest {
        UndoRequest {
            instances: instances.iter().map(|s| s.to_string()).collect(),
            data,
            parallel: 2,
        }
    }

    #[test]
    fn an_undo_is_recorded_before_its_pass_which_tries_every_instance() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let s = rebuild(&["a", "b", "c"]);
        let run = testing::create(&j, &s);
        testing::finish(&j, run, Outcome::Failed);
        let state = j.replay(run).unwrap();
        let pass = undo(&j, &state, &ask(&[], true)).unwrap();
        assert_eq!(pass.direction, Direction::Undo);
        assert!(pass.undo_data);
        assert_eq!(pass.instances, ["a", "b", "c"]);
        assert_eq!(pass.spec, s);
        // Its own parallelism, no budget nor canaries, the run's retries.
        assert_eq!(
            pass.limits,
            Limits {
                parallel: 2,
                max_failures: usize::MAX,
                canaries: 0,
                retries: 4,
                max_down: Limits::default().max_down,
            }
        );
        // Recorded: a resume now goes on with the undo, --data included.
        assert_eq!(spec::undo_requested(&j.replay(run).unwrap()), Some(true));
        let only = undo(&j, &state, &ask(&["c", "a"], false)).unwrap();
        assert_eq!(only.instances, ["c", "a"]);
        assert_eq!(spec::undo_requested(&j.replay(run).unwrap()), Some(false));
    }

    /// The refusal of `asked` for the run in `state`, once it is checked that nothing was
    /// recorded.
    fn refused(j: &Journal, run: RunId, asked: &UndoRequest) -> UndoError {
        let before = j.replay(run).unwrap();
        let err = undo(j, &before, asked).unwrap_err();
        assert_eq!(j.replay(run).unwrap().last_seq, before.last_seq, "{err}");
        err
    }

    #[test]
    fn what_cannot_be_undone_as_asked_is_refused_and_nothing_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();

        let run = testing::create(&j, &rebuild(&["a"]));
        let err = refused(&j, run, &ask(&["a", "x"], false));
        assert!(matches!(&err, UndoError::NotInRun { instance, .. } if instance == "x"));
        assert_eq!(
            err.to_string(),
            format!("instance x is not part of run {run}")
        );

        // Prunes come after a run has ended.
        testing::finish(&j, run, Outcome::Succeeded);
        let what = "deleted a-old-12345678".to_string();
        testing::event(&j, run, Some("a"), EventKind::Pruned { what });
        let err = refused(&j, run, &ask(&[], false));
        assert_eq!(
            err.to_string(),
            format!(
                "run {run} cannot be undone: its retired roots were deleted (pruned a: deleted \
                 a-old-12345678)"
            )
        );

        let undone = testing::create(&j, &rebuild(&["b"]));
        testing::finish(&j, undone, Outcome::Undone);
        let err = refused(&j, undone, &ask(&[], false));
        assert!(matches!(err, UndoError::AlreadyUndone(r) if r == undone));
        assert_eq!(err.to_string(), format!("run {undone} is already undone"));

        let mut snapshot = rebuild(&["c"]);
        snapshot.kind = RunKind::Snapshot;
        let snap = testing::create(&j, &snapshot);
        let err = refused(&j, snap, &ask(&[], true));
        assert!(matches!(err, UndoError::DataOfNotRebuild { .. }));
        assert_eq!(
            err.to_string(),
            format!(
                "run {snap} is a snapshot run: --data (roll filesystems back) is for rebuild runs"
            )
        );
        // Without --data a snapshot run is undone (its snapshots deleted).
        assert!(undo(&j, &j.replay(snap).unwrap(), &ask(&[], false)).is_ok());

        let mut delete = rebuild(&["d"]);
        delete.kind = RunKind::Delete;
        let del = testing::create(&j, &delete);
        let err = refused(&j, del, &ask(&[], false));
        assert!(matches!(
            err,
            UndoError::NotUndoable {
                kind: RunKind::Delete,
                ..
            }
        ));
        assert!(
            err.to_string().starts_with(&format!(
                "run {del} is a delete run and cannot be undone: what it deleted cannot be \
                 brought back"
            )),
            "{err}"
        );
    }
}
