//! A pass: one drive of the engine over a run, forward or in undo. [`super::start`],
//! [`super::resume`] and [`super::undo`] each decide a [`Pass`]; this module turns it into the
//! engine that carries it out, from the run's spec alone, so that a resumed or undone run is
//! driven with what it was started with and not with what the command line says now.

use std::sync::Arc;

use journal::{Journal, RunId, RunState, RunStatus};

use super::spec::RunSpec;
use crate::engine::{Direction, Engine, EngineOptions, Faults, Limits, Observer};
use crate::steps::{Daemons, RunEnv, RunOptions};

/// How to drive one pass over a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    /// The run.
    pub run: RunId,
    /// What the run was started with.
    pub spec: RunSpec,
    /// The instances this pass drives, in order.
    pub instances: Vec<String>,
    /// Forward, or undo.
    pub direction: Direction,
    /// How many at once, and how failures count, in this pass.
    pub limits: Limits,
    /// Undo rolls the filesystems back too (`undo --data`).
    pub undo_data: bool,
}

impl Pass {
    /// The pass that takes `run` forward over all its instances with the limits it was started
    /// with: its first pass, and every resume that is not an undo.
    pub fn forward(run: RunId, spec: RunSpec, instances: Vec<String>) -> Pass {
        Pass {
            run,
            limits: spec.limits,
            spec,
            instances,
            direction: Direction::Forward,
            undo_data: false,
        }
    }

    /// The engine that carries out this pass, telling `observer` what happens.
    pub fn engine(
        &self,
        journal: Arc<Journal>,
        daemons: Daemons,
        observer: Option<Arc<dyn Observer>>,
    ) -> Engine<RunEnv> {
        let mut options = self.engine_options(observer);
        options.groups = Arc::new(
            self.spec
                .plans
                .iter()
                .map(|p| (p.name.clone(), daemons.group(p)))
                .collect(),
        );
        let env = Arc::new(RunEnv::new(
            daemons,
            self.spec.plans.clone(),
            self.run_options(),
        ));
        Engine::new(journal, env, self.spec.kind.pipeline(), options)
    }

    /// What the steps are told besides the plans.
    fn run_options(&self) -> RunOptions {
        RunOptions {
            stop_timeout_s: self.spec.stop_timeout_s,
            undo_data: self.undo_data,
            snapshot: self.spec.snapshot.clone(),
            rollback: self.spec.rollback.clone(),
            rename_to: self.spec.rename_to.clone(),
            publish: self.spec.publish.clone(),
            archive: self.spec.archive.clone(),
            copy: self.spec.copy.clone(),
        }
    }

    /// How the engine runs: this pass's limits, the kind's downtime window, and the failure
    /// policy the run was started with.
    fn engine_options(&self, observer: Option<Arc<dyn Observer>>) -> EngineOptions {
        EngineOptions {
            limits: self.limits,
            faults: Faults::from_env(),
            window: self.spec.kind.window(),
            on_failure: self.spec.on_failure,
            observer,
            ..EngineOptions::default()
        }
    }

    /// Whether, now that this pass left the run in `after`, the previous succeeded rebuilds
    /// of its instances are to be pruned: the run was started with `--prune-previous` and this
    /// forward pass (the first or a resume) made it succeed. An undo never prunes.
    pub fn prunes_previous(&self, after: &RunState) -> bool {
        self.spec.prune_previous
            && self.direction == Direction::Forward
            && after.status == RunStatus::Succeeded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::OnFailure;
    use crate::run::testing;
    use crate::steps::{RunKind, SnapshotRequest};

    #[test]
    fn the_engine_gets_the_pass_limits_and_the_kinds_window_and_the_runs_policy() {
        let mut spec = RunSpec::new(
            RunKind::Rebuild,
            vec![testing::plan("a")],
            Limits::default(),
        );
        spec.on_failure = OnFailure::Hold;
        spec.stop_timeout_s = Some(7);
        let mut pass = Pass::forward(RunId::from_u128(1), spec, vec!["a".into()]);
        pass.limits = Limits::without_budget(3);
        pass.undo_data = true;
        let o = pass.engine_options(None);
        assert_eq!(o.limits, Limits::without_budget(3));
        assert_eq!(o.window, RunKind::Rebuild.window());
        assert!(o.window.is_some());
        assert_eq!(o.on_failure, OnFailure::Hold);
        assert!(o.observer.is_none());
        let r = pass.run_options();
        assert_eq!(
            (r.stop_timeout_s, r.undo_data, r.snapshot),
            (Some(7), true, None)
        );

        let mut snap = RunSpec::new(RunKind::Snapshot, vec![], Limits::default());
        snap.snapshot = Some(SnapshotRequest {
            name: "v2".into(),
            root_only: false,
            filesystems_only: false,
        });
        let pass = Pass::forward(RunId::from_u128(2), snap.clone(), vec![]);
        assert_eq!(pass.engine_options(None).window, None);
        assert_eq!(pass.engine_options(None).on_failure, OnFailure::Revert);
        assert_eq!(pass.run_options().snapshot, snap.snapshot);
        assert!(!pass.run_options().undo_data);
    }

    #[test]
    fn a_forward_pass_takes_the_limits_the_run_was_started_with() {
        let limits = Limits {
            parallel: 4,
            max_failures: 1,
            canaries: 2,
            retries: 5,
            max_down: 2,
        };
        let spec = RunSpec::new(RunKind::Rebuild, vec![], limits);
        let pass = Pass::forward(RunId::from_u128(1), spec, vec!["a".into(), "b".into()]);
        assert_eq!(pass.limits, limits);
        assert_eq!(pass.direction, Direction::Forward);
        assert!(!pass.undo_data);
        assert_eq!(pass.instances, ["a", "b"]);
    }

    #[test]
    fn only_a_forward_pass_that_made_an_asking_run_succeed_prunes_the_previous_ones() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let mut spec = RunSpec::new(
            RunKind::Rebuild,
            vec![testing::plan("a")],
            Limits::default(),
        );
        spec.prune_previous = true;
        let run = testing::create(&j, &spec);
        let pass = Pass::forward(run, spec.clone(), vec!["a".into()]);
        // Still running (or failed): nothing to prune yet.
        assert!(!pass.prunes_previous(&j.replay(run).unwrap()));
        testing::finish(&j, run, journal::Outcome::Succeeded);
        let succeeded = j.replay(run).unwrap();
        assert!(pass.prunes_previous(&succeeded));
        let undo = Pass {
            direction: Direction::Undo,
            ..pass.clone()
        };
        assert!(!undo.prunes_previous(&succeeded));
        spec.prune_previous = false;
        let not_asked = Pass::forward(run, spec, vec!["a".into()]);
        assert!(!not_asked.prunes_previous(&succeeded));
    }
}
