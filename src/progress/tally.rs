//! Where a pass stands, from the facts told so far: what the live view and the log lines show.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::engine::{Direction, EngineEvent, Fact, InstanceOutcome, Output};
use crate::steps::Started;

/// An instance under way.
#[derive(Debug, Clone)]
pub struct Flight {
    /// Its current step, once one started.
    pub step: Option<String>,
    /// That step's attempt number.
    pub attempt: u32,
    /// Whether that step is applied or undone.
    pub direction: Direction,
    /// When it started, on this host's clock.
    pub since: Instant,
}

/// Counts and states of the instances of a pass.
#[derive(Debug)]
pub struct Tally {
    /// Instances of the pass.
    pub total: usize,
    /// Instances that started.
    pub started: usize,
    /// Instances whose steps all succeeded, or were all undone.
    pub done: usize,
    /// Instances that failed, were reverted, or whose undo failed.
    pub failed: usize,
    /// Instances that ended the pass without starting.
    pub held: usize,
    /// Instances under way, by name.
    pub in_flight: BTreeMap<String, Flight>,
    /// Instances inside their downtime window right now (those left down included).
    pub down: BTreeSet<String>,
    /// Instances that had a step start in this pass.
    pub stepped: BTreeSet<String>,
    /// The downtime a step recorded in its output (`downtime_ms`, as the rebuild's `start`
    /// step does), by instance: the figure the summary table and `reroot show` give.
    pub downtime_ms: BTreeMap<String, i64>,
    /// When the pass started, on this host's clock.
    pub began: Instant,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            total: 0,
            started: 0,
            done: 0,
            failed: 0,
            held: 0,
            in_flight: BTreeMap::new(),
            down: BTreeSet::new(),
            stepped: BTreeSet::new(),
            downtime_ms: BTreeMap::new(),
            began: Instant::now(),
        }
    }
}

impl Tally {
    /// Takes one fact into account.
    pub fn apply(&mut self, event: &EngineEvent) {
        match &event.fact {
            Fact::RunStarted { instances, .. } => {
                self.total = instances.len();
                self.began = Instant::now();
            }
            Fact::InstanceStarted { instance } => {
                self.started += 1;
                self.in_flight.insert(
                    instance.clone(),
                    Flight {
                        step: None,
                        attempt: 0,
                        direction: Direction::Forward,
                        since: Instant::now(),
                    },
                );
            }
            Fact::StepStarted {
                instance,
                step,
                attempt,
                direction,
            } => {
                self.stepped.insert(instance.clone());
                if let Some(f) = self.in_flight.get_mut(instance) {
                    f.step = Some(step.clone());
                    f.attempt = *attempt;
                    f.direction = *direction;
                }
            }
            Fact::StepFinished {
                instance,
                step,
                output: Some(output),
                ..
            } if step == Started::STEP => {
                let downtime = Started::decode(output).ok().and_then(|s| s.downtime_ms);
                if let Some(d) = downtime {
                    self.downtime_ms.insert(instance.clone(), d);
                }
            }
            Fact::WindowOpened { instance, .. } => {
                self.down.insert(instance.clone());
            }
            Fact::WindowClosed { instance, .. } => {
                self.down.remove(instance);
            }
            Fact::InstanceFinished {
                instance, outcome, ..
            } => {
                self.in_flight.remove(instance);
                match outcome {
                    InstanceOutcome::NotStarted => self.held += 1,
                    o if o.is_failure() => self.failed += 1,
                    _ => self.done += 1,
                }
            }
            Fact::StepFinished { .. } | Fact::RevertStarted { .. } | Fact::RunFinished { .. } => {}
        }
    }

    /// Instances that have not started (yet, or at all).
    pub fn not_started(&self) -> usize {
        self.total.saturating_sub(self.started)
    }

    /// Instances that ended this pass, whichever way.
    pub fn finished(&self) -> usize {
        self.done + self.failed + self.held
    }

    /// How long the rest may take, at the pace of the instances finished so far (`None`
    /// before the first one finished).
    pub fn eta(&self, elapsed: Duration) -> Option<Duration> {
        let ended = self.done + self.failed;
        let left = self.total.saturating_sub(self.finished());
        if ended == 0 {
            return None;
        }
        Some(elapsed.mul_f64(left as f64 / ended as f64))
    }

    /// `done 3 · failed 1 · in flight 4 · down 2 · not started 10`.
    pub fn counts(&self) -> String {
        format!(
            "done {} · failed {} · in flight {} · down {} · not started {}",
            self.done,
            self.failed,
            self.in_flight.len(),
            self.down.len(),
            self.not_started()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(fact: Fact) -> EngineEvent {
        EngineEvent {
            run: uuid::Uuid::nil(),
            at_ms: 0,
            seq: None,
            fact,
        }
    }

    #[test]
    fn counts_follow_the_facts() {
        let mut t = Tally::default();
        let names = ["a", "b", "c", "d"].map(String::from);
        t.apply(&event(Fact::RunStarted {
            direction: Direction::Forward,
            instances: names.to_vec(),
            steps: vec!["stop".into(), "start".into()],
            parallel: 2,
            resumed: false,
        }));
        for i in ["a", "b"] {
            t.apply(&event(Fact::InstanceStarted { instance: i.into() }));
            t.apply(&event(Fact::WindowOpened {
                instance: i.into(),
                resumed: false,
            }));
        }
        assert_eq!(
            t.counts(),
            "done 0 · failed 0 · in flight 2 · down 2 · not started 2"
        );
        assert_eq!(t.eta(Duration::from_secs(10)), None);
        t.apply(&event(Fact::StepFinished {
            instance: "a".into(),
            step: Started::STEP.into(),
            attempt: 1,
            direction: Direction::Forward,
            duration_ms: 5,
            error: None,
            retry: false,
            output: Some(
                Started {
                    downtime_ms: Some(1300),
                }
                .record()
                .unwrap(),
            ),
        }));
        t.apply(&event(Fact::WindowClosed {
            instance: "a".into(),
            down_ms: 1300,
            reverted: false,
        }));
        t.apply(&event(Fact::InstanceFinished {
            instance: "a".into(),
            outcome: InstanceOutcome::Succeeded,
            duration_ms: Some(4000),
        }));
        // b failed and was held: it stays down after its end.
        t.apply(&event(Fact::InstanceFinished {
            instance: "b".into(),
            outcome: InstanceOutcome::Failed {
                step: "swap".into(),
                error: "boom".into(),
            },
            duration_ms: Some(4000),
        }));
        assert_eq!(
            t.counts(),
            "done 1 · failed 1 · in flight 0 · down 1 · not started 2"
        );
        assert_eq!(t.downtime_ms.get("a"), Some(&1300));
        // Two of four ended in 10 s: the two left take about 10 s more.
        assert_eq!(
            t.eta(Duration::from_secs(10)),
            Some(Duration::from_secs(10))
        );
        t.apply(&event(Fact::InstanceFinished {
            instance: "c".into(),
            outcome: InstanceOutcome::NotStarted,
            duration_ms: None,
        }));
        assert_eq!((t.held, t.finished(), t.not_started()), (1, 3, 2));
    }
}
