//! Starting a run: none of its instances may be held by an unfinished run (see
//! [`super::lease`]), and the run is recorded, its spec in the header, before anything is
//! done to an instance, so that whatever happens next can be resumed or undone.

use journal::{Journal, RunHeader, RunId};

use super::pass::Pass;
use super::spec::RunSpec;

/// Who started a run, where and how: recorded in its header for the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The command line.
    pub command: Vec<String>,
    /// The user; through sudo, the one who ran sudo (root did not decide to rebuild).
    pub user: String,
    /// The host's name.
    pub host: String,
}

impl Origin {
    /// This process's.
    pub fn of_this_process() -> Origin {
        Origin {
            command: std::env::args().collect(),
            user: std::env::var("SUDO_USER")
                .or_else(|_| std::env::var("USER"))
                .unwrap_or_else(|_| "root".into()),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
        }
    }
}

/// Why a run was not started. Nothing was recorded.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An instance is part of a run that was neither finished nor undone.
    #[error(
        "instance {instance} is part of run {short} which is not finished: `reroot resume \
         {short}` or `reroot undo {short}` first",
        short = journal::short_id(.run)
    )]
    Leased {
        /// The instance.
        instance: String,
        /// The run that holds it.
        run: RunId,
    },
    /// The leases could not be read.
    #[error("{0}")]
    Leases(String),
    /// The spec could not be encoded into the header.
    #[error(transparent)]
    Spec(#[from] serde_json::Error),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] journal::Error),
}

/// Records a new run of `spec`, started by `origin`, once no unfinished run holds one of its
/// instances; gives its first pass (forward, over every instance).
pub fn start(journal: &Journal, spec: RunSpec, origin: Origin) -> Result<Pass, StartError> {
    let leases = super::lease::leased(journal).map_err(StartError::Leases)?;
    if let Some((instance, run)) = spec
        .plans
        .iter()
        .find_map(|p| leases.get(&p.name).map(|run| (p.name.clone(), *run)))
    {
        return Err(StartError::Leased { instance, run });
    }
    let instances: Vec<String> = spec.plans.iter().map(|p| p.name.clone()).collect();
    let header = RunHeader {
        id: RunHeader::new_id(),
        command: origin.command,
        user: origin.user,
        host: origin.host,
        started_at_ms: journal::now_ms(),
        config_digests: spec
            .plans
            .iter()
            .flat_map(|p| p.config_files.clone())
            .collect(),
        instances: instances.clone(),
        options: spec.to_options()?,
    };
    let run = header.id;
    journal.create_run(header)?;
    Ok(Pass::forward(run, spec, instances))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Direction, Limits};
    use crate::run::testing;
    use crate::steps::RunKind;
    use journal::RunStatus;

    fn origin() -> Origin {
        Origin {
            command: vec!["reroot".into(), "rebuild".into(), "a.yaml".into()],
            user: "alice".into(),
            host: "box".into(),
        }
    }

    fn spec(names: &[&str]) -> RunSpec {
        let plans = names.iter().map(|n| testing::plan(n)).collect();
        let limits = Limits {
            parallel: 2,
            max_failures: 1,
            canaries: 1,
            retries: 3,
            max_down: 1,
        };
        RunSpec::new(RunKind::Rebuild, plans, limits)
    }

    #[test]
    fn a_run_is_recorded_with_its_spec_and_origin_and_goes_forward_over_every_instance() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let mut s = spec(&["a", "b"]);
        s.plans[0].config_files = vec![("a.yaml".into(), "digest".into())];
        let pass = start(&j, s.clone(), origin()).unwrap();
        assert_eq!(
            pass,
            Pass::forward(pass.run, s.clone(), vec!["a".into(), "b".into()])
        );
        assert_eq!(pass.direction, Direction::Forward);
        let state = j.replay(pass.run).unwrap();
        assert_eq!(state.status, RunStatus::Running);
        let h = &state.header;
        assert_eq!(h.instances, ["a", "b"]);
        assert_eq!((h.user.as_str(), h.host.as_str()), ("alice", "box"));
        assert_eq!(h.command, origin().command);
        assert_eq!(
            h.config_digests,
            [("a.yaml".to_string(), "digest".to_string())]
        );
        assert_eq!(RunSpec::of(&state).unwrap(), s);
    }

    #[test]
    fn an_instance_held_by_an_unfinished_run_is_refused_and_nothing_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let holder = start(&j, spec(&["b"]), origin()).unwrap().run;
        let err = start(&j, spec(&["a", "b"]), origin()).unwrap_err();
        match &err {
            StartError::Leased { instance, run } => {
                assert_eq!((instance.as_str(), *run), ("b", holder));
            }
            other => panic!("{other:?}"),
        }
        let short = journal::short_id(&holder);
        assert_eq!(
            err.to_string(),
            format!(
                "instance b is part of run {short} which is not finished: `reroot resume \
                 {short}` or `reroot undo {short}` first"
            )
        );
        assert_eq!(j.runs(&Default::default()).unwrap().len(), 1);
        // Once the holder is finished, the instance is free again.
        testing::finish(&j, holder, journal::Outcome::Succeeded);
        assert!(start(&j, spec(&["a", "b"]), origin()).is_ok());
    }

    #[test]
    fn the_origin_of_this_process_names_its_command_line() {
        let o = Origin::of_this_process();
        assert_eq!(o.command, std::env::args().collect::<Vec<_>>());
        assert!(!o.user.is_empty() && !o.host.is_empty());
    }
}
