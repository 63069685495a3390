//! Resuming a run cut short (a crash, Ctrl-C, a full disk) or stopped by a failure: which run,
//! when none is named, and which way it goes on: an undo that was asked for (see
//! [`super::undo`]) goes on as an undo, anything else forward.

use journal::{Reader, RunFilter, RunId, RunState, RunStatus};

use super::pass::Pass;
use super::spec::{self, RunSpec};
use crate::engine::Direction;

/// Why there is nothing to resume.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// No run was named, and none is unfinished or failed.
    #[error("no interrupted or failed run to resume")]
    NoneOpen,
    /// No run was named, and more than one could be meant.
    #[error(
        "several runs can be resumed ({}); name one: `reroot resume RUN`",
        .0.iter().map(journal::short_id).collect::<Vec<_>>().join(", ")
    )]
    Several(Vec<RunId>),
    /// The run was undone: nothing of it is left to do either way.
    #[error("run {0} is already undone")]
    Undone(RunId),
    /// The run succeeded and no undo of it was asked for.
    #[error("run {0} already succeeded; nothing to resume")]
    Succeeded(RunId),
    /// The run's spec cannot be read.
    #[error("{0}")]
    Spec(String),
    /// The journal failed (or the named run is not in it).
    #[error(transparent)]
    Journal(#[from] journal::Error),
}

/// The run to resume: the one `named` (an id or its first characters), or else the only one
/// cut short or stopped by a failure.
pub fn choose(journal: &Reader, named: Option<&str>) -> Result<RunId, ResumeError> {
    if let Some(prefix) = named {
        return Ok(journal.resolve_run(prefix)?);
    }
    let open = journal.runs(&RunFilter {
        statuses: vec![RunStatus::Running, RunStatus::Paused, RunStatus::Failed],
        ..Default::default()
    })?;
    match open.as_slice() {
        [one] => Ok(one.id),
        [] => Err(ResumeError::NoneOpen),
        many => Err(ResumeError::Several(many.iter().map(|r| r.id).collect())),
    }
}

/// The pass that goes on with the run in `state`, over all its instances and with the limits
/// it was started with: its undo if one was asked for (with the filesystems if that was asked
/// too), forward otherwise.
pub fn resume(state: &RunState) -> Result<Pass, ResumeError> {
    let run = state.header.id;
    let undo = spec::undo_requested(state);
    match (state.status, undo) {
        (RunStatus::Undone, _) => return Err(ResumeError::Undone(run)),
        (RunStatus::Succeeded, None) => return Err(ResumeError::Succeeded(run)),
        _ => {}
    }
    let spec = RunSpec::of(state).map_err(ResumeError::Spec)?;
    let mut pass = Pass::forward(run, spec, state.header.instances.clone());
    if let Some(data) = undo {
        pass.direction = Direction::Undo;
        pass.undo_data = data;
    }
    Ok(pass)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Limits;
    use crate::run::testing;
    use crate::steps::RunKind;
    use journal::{EventKind, Journal, Outcome};

    fn spec(name: &str) -> RunSpec {
        let limits = Limits {
            parallel: 3,
            max_failures: 2,
            canaries: 1,
            retries: 0,
            max_down: 0,
        };
        RunSpec::new(RunKind::Rebuild, vec![testing::plan(name)], limits)
    }

    #[test]
    fn without_a_name_the_only_unfinished_or_failed_run_is_chosen() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert!(matches!(choose(&j, None), Err(ResumeError::NoneOpen)));
        // Succeeded and undone runs are not candidates.
        let done = testing::create(&j, &spec("a"));
        testing::finish(&j, done, Outcome::Succeeded);
        assert!(matches!(choose(&j, None), Err(ResumeError::NoneOpen)));
        let failed = testing::create(&j, &spec("b"));
        testing::finish(&j, failed, Outcome::Failed);
        assert_eq!(choose(&j, None).unwrap(), failed);
        let running = testing::create(&j, &spec("c"));
        let err = choose(&j, None).unwrap_err();
        let ResumeError::Several(ids) = &err else {
            panic!("{err:?}")
        };
        let mut ids = ids.clone();
        ids.sort();
        let mut want = vec![failed, running];
        want.sort();
        assert_eq!(ids, want);
        let text = err.to_string();
        for id in [failed, running] {
            assert!(text.contains(&journal::short_id(&id)), "{text}");
        }
        assert!(text.ends_with("name one: `reroot resume RUN`"), "{text}");
        // A named run is taken as named, whatever its status.
        let prefix = &done.to_string()[..8];
        assert_eq!(choose(&j, Some(prefix)).unwrap(), done);
        assert!(matches!(
            choose(&j, Some("zzzz")),
            Err(ResumeError::Journal(_))
        ));
    }

    #[test]
    fn a_run_goes_on_forward_with_its_limits_unless_an_undo_was_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let s = spec("a");
        let run = testing::create(&j, &s);
        let pass = resume(&j.replay(run).unwrap()).unwrap();
        assert_eq!(pass, Pass::forward(run, s.clone(), vec!["a".into()]));
        assert_eq!(pass.limits, s.limits);
        testing::finish(&j, run, Outcome::Failed);
        assert_eq!(
            resume(&j.replay(run).unwrap()).unwrap().direction,
            Direction::Forward
        );
        // An undo asked for goes on as an undo, with --data as it was asked.
        testing::event(&j, run, None, EventKind::UndoRequested { data: true });
        let pass = resume(&j.replay(run).unwrap()).unwrap();
        assert_eq!((pass.direction, pass.undo_data), (Direction::Undo, true));
        assert_eq!(pass.instances, ["a"]);
    }

    #[test]
    fn an_undone_run_and_a_succeeded_one_without_an_undo_asked_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let run = testing::create(&j, &spec("a"));
        testing::finish(&j, run, Outcome::Succeeded);
        let err = resume(&j.replay(run).unwrap()).unwrap_err();
        assert!(matches!(err, ResumeError::Succeeded(r) if r == run));
        assert_eq!(
            err.to_string(),
            format!("run {run} already succeeded; nothing to resume")
        );
        // Its undo was asked for and cut short: resume finishes the undo.
        testing::event(&j, run, None, EventKind::UndoRequested { data: false });
        let pass = resume(&j.replay(run).unwrap()).unwrap();
        assert_eq!((pass.direction, pass.undo_data), (Direction::Undo, false));
        testing::finish(&j, run, Outcome::Undone);
        let err = resume(&j.replay(run).unwrap()).unwrap_err();
        assert!(matches!(err, ResumeError::Undone(r) if r == run));
        assert_eq!(err.to_string(), format!("run {run} is already undone"));
    }
}
