//! Replay: folding a run's events into its state, and the transition rules every event obeys.
//!
//! The same code checks an event before it is appended (an illegal one is refused and nothing is
//! written) and re-checks every stored event on replay and `verify` (an illegal one there means
//! the journal is corrupt). The rules are listed in the crate docs.

use crate::event::{Event, EventKind, Outcome, RunHeader, RunId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Where a step stands, after its latest event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StepStatus {
    /// Started and not (yet) ended. After a crash this means "maybe half done".
    Started,
    /// Succeeded; its output is in [`StepState::output`].
    Succeeded,
    /// Failed; may be started again or undone.
    Failed,
    /// Its undo started and has not (yet) ended.
    UndoStarted,
    /// Its undo finished: the step's effect is gone. Final.
    UndoFinished,
    /// Its undo failed; the undo may be started again.
    UndoFailed,
}

/// One step of one instance, as replay sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepState {
    /// The step's name.
    pub name: String,
    /// Its status after its latest event.
    pub status: StepStatus,
    /// The attempt number of its latest event.
    pub attempt: u32,
    /// The output of its latest success (kept through undo, which needs it).
    pub output: Option<String>,
    /// The error of its latest failure, cleared by a later success or finished undo.
    pub error: Option<String>,
    /// When its latest attempt (do or undo) started.
    pub started_at_ms: i64,
    /// When its latest attempt ended; `None` while it runs.
    pub ended_at_ms: Option<i64>,
}

/// One instance of a run: its steps in the order they were first seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceState {
    /// The instance's name.
    pub name: String,
    /// Its steps, in first-seen order.
    pub steps: Vec<StepState>,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RunStatus {
    /// Created or resumed and not finished: in progress, or its process died.
    Running,
    /// Paused, waiting for a person.
    Paused,
    /// Finished, every step succeeded.
    Succeeded,
    /// Finished with failures.
    Failed,
    /// Finished and undone. Final.
    Undone,
}

impl RunStatus {
    /// True for Running and Paused: the run has not reached a `RunFinished`.
    pub fn is_unfinished(self) -> bool {
        matches!(self, RunStatus::Running | RunStatus::Paused)
    }

    /// The lower-case word used in tables and filters ("running", "undone", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Undone => "undone",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "running" => Ok(RunStatus::Running),
            "paused" => Ok(RunStatus::Paused),
            "succeeded" => Ok(RunStatus::Succeeded),
            "failed" => Ok(RunStatus::Failed),
            "undone" => Ok(RunStatus::Undone),
            other => Err(format!(
                "unknown run status {other:?}: expected running, paused, succeeded, failed or undone"
            )),
        }
    }
}

/// A run's state: the fold of its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// The header from its `RunCreated` event.
    pub header: RunHeader,
    /// Its status after the latest run-level event.
    pub status: RunStatus,
    /// Its instances: first those of the header, in header order, then any other instance in
    /// first-seen order.
    pub instances: Vec<InstanceState>,
    /// The sequence number of its latest event (= its number of events).
    pub last_seq: u64,
    /// The texts of its notes, oldest first.
    pub notes: Vec<String>,
}

impl RunState {
    /// The state of one step of one instance, if that step has any event.
    pub fn step(&self, instance: &str, step: &str) -> Option<&StepState> {
        self.instance(instance)?
            .steps
            .iter()
            .find(|s| s.name == step)
    }

    /// The state of one instance, if it is in the header or has any event.
    pub fn instance(&self, instance: &str) -> Option<&InstanceState> {
        self.instances.iter().find(|i| i.name == instance)
    }

    /// The run's id.
    pub fn id(&self) -> RunId {
        self.header.id
    }
}

/// Folds events into a [`RunState`], checking each one against the transition rules first.
///
/// Holds an index so that each event costs O(1) whatever the size of the run.
#[derive(Debug, Clone)]
pub struct Replay {
    state: RunState,
    instance_index: HashMap<String, usize>,
    /// Per instance slot: step name to its slot.
    step_index: Vec<HashMap<String, usize>>,
}

impl Replay {
    /// Starts a replay from a run's first event, which must be `RunCreated` with sequence
    /// number 1 and the header's run id.
    pub fn new(first: &Event) -> Result<Replay, String> {
        let header = match &first.kind {
            EventKind::RunCreated(h) => h,
            other => {
                return Err(format!(
                    "a run must begin with RunCreated, not {}",
                    other.name()
                ))
            }
        };
        if first.seq != 1 {
            return Err(format!(
                "RunCreated must have sequence number 1, found {}",
                first.seq
            ));
        }
        if header.id != first.run {
            return Err(format!(
                "RunCreated of run {} carries a header for run {}",
                first.run, header.id
            ));
        }
        if first.instance.is_some() || first.step.is_some() {
            return Err("RunCreated must name neither an instance nor a step".into());
        }
        let mut replay = Replay {
            state: RunState {
                header: header.clone(),
                status: RunStatus::Running,
                instances: Vec::new(),
                last_seq: 1,
                notes: Vec::new(),
            },
            instance_index: HashMap::new(),
            step_index: Vec::new(),
        };
        for name in &header.instances {
            replay.instance_slot(name);
        }
        Ok(replay)
    }

    /// Replays a whole run. On an illegal event returns its sequence number and why.
    pub fn run<'a>(events: impl IntoIterator<Item = &'a Event>) -> Result<RunState, (u64, String)> {
        let mut iter = events.into_iter();
        let first = iter
            .next()
            .ok_or((1, "the run has no events".to_string()))?;
        let mut replay = Replay::new(first).map_err(|d| (first.seq, d))?;
        for ev in iter {
            replay.apply(ev).map_err(|d| (ev.seq, d))?;
        }
        Ok(replay.into_state())
    }

    /// The state so far.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// The final state.
    pub fn into_state(self) -> RunState {
        self.state
    }

    fn instance_slot(&mut self, name: &str) -> usize {
        if let Some(&i) = self.instance_index.get(name) {
            return i;
        }
        let i = self.state.instances.len();
        self.state.instances.push(InstanceState {
            name: name.to_string(),
            steps: Vec::new(),
        });
        self.instance_index.insert(name.to_string(), i);
        self.step_index.push(HashMap::new());
        i
    }

    fn find_step(&self, instance: &str, step: &str) -> Option<&StepState> {
        let &i = self.instance_index.get(instance)?;
        let &s = self.step_index[i].get(step)?;
        Some(&self.state.instances[i].steps[s])
    }

    /// Checks `ev` against the rules without changing anything.
    pub fn check(&self, ev: &Event) -> Result<(), String> {
        let st = &self.state;
        if ev.run != st.header.id {
            return Err(format!(
                "event of run {} offered to run {}",
                ev.run, st.header.id
            ));
        }
        if ev.seq != st.last_seq + 1 {
            return Err(format!(
                "sequence number {} does not follow {}",
                ev.seq, st.last_seq
            ));
        }
        if let EventKind::RunCreated(_) = ev.kind {
            return Err("RunCreated may only be the first event of a run".into());
        }
        // Shape: which events name an instance and a step.
        if ev.kind.is_step_event() {
            match (&ev.instance, &ev.step) {
                (Some(i), Some(s)) if !i.is_empty() && !s.is_empty() => {}
                _ => {
                    return Err(format!(
                        "{} must name a non-empty instance and step",
                        ev.kind.name()
                    ))
                }
            }
            if ev.attempt == 0 {
                return Err(format!(
                    "{} must carry an attempt number of 1 or more",
                    ev.kind.name()
                ));
            }
        } else if ev.kind.is_run_event() {
            if ev.instance.is_some() || ev.step.is_some() {
                return Err(format!(
                    "{} is about the whole run and must name neither an instance nor a step",
                    ev.kind.name()
                ));
            }
        } else if ev.step.is_some() && ev.instance.is_none() {
            return Err("a note naming a step must also name its instance".into());
        }
        // Run-level rules.
        match st.status {
            RunStatus::Undone => {
                return Err(format!(
                    "{} after the run finished as undone: nothing may follow",
                    ev.kind.name()
                ))
            }
            RunStatus::Succeeded | RunStatus::Failed => {
                let allowed = matches!(
                    ev.kind,
                    EventKind::RunResumed { .. }
                        | EventKind::RunFinished { .. }
                        | EventKind::Note { .. }
                ) || ev.kind.is_undo_event();
                if !allowed {
                    return Err(format!(
                        "{} after the run finished as {}: only RunResumed, undo events, notes \
                         and a new RunFinished may follow",
                        ev.kind.name(),
                        st.status
                    ));
                }
            }
            RunStatus::Running | RunStatus::Paused => {}
        }
        if !ev.kind.is_step_event() {
            return Ok(());
        }
        // Step rules.
        let (instance, step) = match (&ev.instance, &ev.step) {
            (Some(i), Some(s)) => (i.as_str(), s.as_str()),
            _ => return Err("step event without instance or step".into()),
        };
        let what = format!(
            "{} of step {step:?} of instance {instance:?}",
            ev.kind.name()
        );
        let Some(cur) = self.find_step(instance, step) else {
            return match ev.kind {
                EventKind::StepStarted => Ok(()),
                _ => Err(format!("{what}: the step never started")),
            };
        };
        let a = ev.attempt;
        let c = cur.attempt;
        use EventKind as K;
        use StepStatus as S;
        let need = |ok: bool, rule: &str| -> Result<(), String> {
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "{what}: attempt {a} after attempt {c} ({:?}); {rule}",
                    cur.status
                ))
            }
        };
        match (cur.status, &ev.kind) {
            (S::Started, K::StepStarted) | (S::Failed, K::StepStarted) => {
                need(a > c, "a restart must raise the attempt number")
            }
            (S::Started, K::StepSucceeded { .. }) | (S::Started, K::StepFailed { .. }) => {
                need(a == c, "an end must carry the attempt it ends")
            }
            (S::Succeeded, K::UndoStarted) | (S::Failed, K::UndoStarted) => {
                need(a >= c, "attempt numbers never go backwards")
            }
            (S::UndoStarted, K::UndoStarted) | (S::UndoFailed, K::UndoStarted) => {
                need(a > c, "a restarted undo must raise the attempt number")
            }
            (S::UndoStarted, K::UndoFinished) | (S::UndoStarted, K::UndoFailed { .. }) => {
                need(a == c, "an end must carry the attempt it ends")
            }
            (S::UndoFinished, _) => Err(format!(
                "{what}: the step's undo already finished; nothing may follow"
            )),
            (S::Started, K::UndoStarted) => Err(format!(
                "{what}: the step is only Started (record StepFailed, e.g. \"interrupted\", \
                 before undoing it)"
            )),
            (status, _) => Err(format!("{what}: not allowed after {status:?}")),
        }
    }

    /// Checks `ev` and, if it is legal, folds it into the state.
    pub fn apply(&mut self, ev: &Event) -> Result<(), String> {
        self.check(ev)?;
        self.state.last_seq = ev.seq;
        match &ev.kind {
            EventKind::RunCreated(_) => {}
            EventKind::RunResumed { .. } => self.state.status = RunStatus::Running,
            EventKind::RunPaused { .. } => self.state.status = RunStatus::Paused,
            EventKind::RunFinished { outcome } => {
                self.state.status = match outcome {
                    Outcome::Succeeded => RunStatus::Succeeded,
                    Outcome::Failed => RunStatus::Failed,
                    Outcome::Undone => RunStatus::Undone,
                }
            }
            EventKind::Note { text } => {
                if let Some(i) = &ev.instance {
                    self.instance_slot(i);
                }
                self.state.notes.push(text.clone());
            }
            kind => {
                let (Some(instance), Some(step)) = (&ev.instance, &ev.step) else {
                    return Err("step event without instance or step".into());
                };
                let i = self.instance_slot(instance);
                let s = match self.step_index[i].get(step.as_str()) {
                    Some(&s) => s,
                    None => {
                        let steps = &mut self.state.instances[i].steps;
                        steps.push(StepState {
                            name: step.clone(),
                            status: StepStatus::Started,
                            attempt: ev.attempt,
                            output: None,
                            error: None,
                            started_at_ms: ev.at_ms,
                            ended_at_ms: None,
                        });
                        self.step_index[i].insert(step.clone(), steps.len() - 1);
                        steps.len() - 1
                    }
                };
                let st = &mut self.state.instances[i].steps[s];
                st.attempt = ev.attempt;
                match kind {
                    EventKind::StepStarted => {
                        st.status = StepStatus::Started;
                        st.started_at_ms = ev.at_ms;
                        st.ended_at_ms = None;
                    }
                    EventKind::UndoStarted => {
                        st.status = StepStatus::UndoStarted;
                        st.started_at_ms = ev.at_ms;
                        st.ended_at_ms = None;
                    }
                    EventKind::StepSucceeded { output } => {
                        st.status = StepStatus::Succeeded;
                        st.output = Some(output.clone());
                        st.error = None;
                        st.ended_at_ms = Some(ev.at_ms);
                    }
                    EventKind::StepFailed { error } => {
                        st.status = StepStatus::Failed;
                        st.error = Some(error.clone());
                        st.ended_at_ms = Some(ev.at_ms);
                    }
                    EventKind::UndoFinished => {
                        st.status = StepStatus::UndoFinished;
                        st.error = None;
                        st.ended_at_ms = Some(ev.at_ms);
                    }
                    EventKind::UndoFailed { error } => {
                        st.status = StepStatus::UndoFailed;
                        st.error = Some(error.clone());
                        st.ended_at_ms = Some(ev.at_ms);
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}
