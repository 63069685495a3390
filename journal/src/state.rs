//! Replay: folding a run's events into its state, and the transition rules every event obeys.
//!
//! The same code checks an event before it is appended (an illegal one is refused and nothing is
//! written) and re-checks every stored event on replay and `verify` (an illegal one there means
//! the journal is corrupt). The rules are listed in the crate docs.

use crate::event::{Event, EventKind, Outcome, RunHeader, RunId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FNV-1a for the replay's small string maps: much cheaper than SipHash for short names, and
/// the keys are instance and step names, not attacker-chosen in bulk.
#[derive(Default, Clone, Copy)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let from = if self.0 == 0 {
            crate::codec::FNV_OFFSET
        } else {
            self.0
        };
        self.0 = crate::codec::fnv1a64_continue(from, bytes);
    }
}

type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

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
    /// Finished and undone. Final: only notes (audit remarks) and `Pruned` may follow.
    Undone,
}

impl RunStatus {
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
    /// The latest undo asked for ([`EventKind::UndoRequested`]), if any: `Some(true)` with the
    /// filesystems rolled back too.
    pub undo_requested: Option<bool>,
    /// What was deleted for good ([`EventKind::Pruned`]), oldest first. Once there is any, the
    /// run cannot be undone.
    pub pruned: Vec<PrunedItem>,
}

/// One deletion recorded by [`EventKind::Pruned`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunedItem {
    /// The instance it belonged to.
    pub instance: String,
    /// What was deleted.
    pub what: String,
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
    instance_index: FnvMap<String, usize>,
    /// Per instance slot: step name to its slot.
    step_index: Vec<FnvMap<String, usize>>,
}

impl Replay {
    /// Starts a replay from a run's first event, which must be `RunCreated` with sequence
    /// number 1 and the header's run id.
    pub fn new(first: &Event) -> Result<Replay, String> {
        let header: &RunHeader = match &first.kind {
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
                undo_requested: None,
                pruned: Vec::new(),
            },
            instance_index: FnvMap::default(),
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
        self.step_index.push(FnvMap::default());
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
            match (ev.instance.as_deref(), ev.step.as_deref()) {
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
        } else if let EventKind::Pruned { .. } = ev.kind {
            if ev.instance.as_deref().is_none_or(str::is_empty) || ev.step.is_some() {
                return Err("Pruned must name a non-empty instance and no step".into());
            }
        } else if ev.step.is_some() && ev.instance.is_none() {
            return Err("a note naming a step must also name its instance".into());
        }
        // Run-level rules.
        match st.status {
            RunStatus::Undone
                if !matches!(ev.kind, EventKind::Note { .. } | EventKind::Pruned { .. }) =>
            {
                return Err(format!(
                    "{} after the run finished as undone: only notes and Pruned may follow",
                    ev.kind.name()
                ))
            }
            RunStatus::Undone => {}
            RunStatus::Succeeded | RunStatus::Failed => {
                let allowed = matches!(
                    ev.kind,
                    EventKind::RunResumed { .. }
                        | EventKind::RunFinished { .. }
                        | EventKind::Note { .. }
                        | EventKind::UndoRequested { .. }
                        | EventKind::Pruned { .. }
                ) || ev.kind.is_undo_event();
                if !allowed {
                    return Err(format!(
                        "{} after the run finished as {}: only RunResumed, undo events, \
                         UndoRequested, Pruned, notes and a new RunFinished may follow",
                        ev.kind.name(),
                        st.status
                    ));
                }
            }
            // What a run in progress kept may still be needed by its own steps.
            RunStatus::Running | RunStatus::Paused
                if matches!(ev.kind, EventKind::Pruned { .. }) =>
            {
                return Err(format!(
                    "Pruned while the run is {}: only a finished run is pruned",
                    st.status
                ))
            }
            RunStatus::Running | RunStatus::Paused => {}
        }
        if matches!(ev.kind, EventKind::UndoRequested { .. }) && !st.pruned.is_empty() {
            return Err(format!(
                "UndoRequested after Pruned: what the undo would bring back is gone ({}: {})",
                st.pruned[0].instance, st.pruned[0].what
            ));
        }
        if !ev.kind.is_step_event() {
            return Ok(());
        }
        // Step rules.
        let (instance, step) = match (ev.instance.as_deref(), ev.step.as_deref()) {
            (Some(i), Some(s)) => (i, s),
            _ => return Err("step event without instance or step".into()),
        };
        // Built only for an error message.
        let what = || {
            format!(
                "{} of step {step:?} of instance {instance:?}",
                ev.kind.name()
            )
        };
        let Some(cur) = self.find_step(instance, step) else {
            return match ev.kind {
                EventKind::StepStarted => Ok(()),
                _ => Err(format!("{}: the step never started", what())),
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
                    "{}: attempt {a} after attempt {c} ({:?}); {rule}",
                    what(),
                    cur.status
                ))
            }
        };
        match (cur.status, &ev.kind) {
            // A succeeded step is started again when a resume finds that something outside
            // (a daemon restart, a person) reverted its effect: a redo, with a new attempt.
            (S::Started, K::StepStarted)
            | (S::Failed, K::StepStarted)
            | (S::Succeeded, K::StepStarted) => {
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
                "{}: the step's undo already finished; nothing may follow",
                what()
            )),
            (S::Started, K::UndoStarted) => Err(format!(
                "{}: the step is only Started (record StepFailed, e.g. \"interrupted\", \
                 before undoing it)",
                what()
            )),
            (status, _) => Err(format!("{}: not allowed after {status:?}", what())),
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
                if let Some(i) = ev.instance.as_deref() {
                    self.instance_slot(i);
                }
                self.state.notes.push(text.clone());
            }
            EventKind::UndoRequested { data } => self.state.undo_requested = Some(*data),
            EventKind::Pruned { what } => {
                let Some(instance) = ev.instance.as_deref() else {
                    return Err("Pruned without instance".into());
                };
                self.instance_slot(instance);
                self.state.pruned.push(PrunedItem {
                    instance: instance.to_string(),
                    what: what.clone(),
                });
            }
            kind => {
                let (Some(instance), Some(step)) = (ev.instance.as_deref(), ev.step.as_deref())
                else {
                    return Err("step event without instance or step".into());
                };
                let i = self.instance_slot(instance);
                let s = match self.step_index[i].get(step) {
                    Some(&s) => s,
                    None => {
                        let steps = &mut self.state.instances[i].steps;
                        steps.push(StepState {
                            name: step.to_string(),
                            status: StepStatus::Started,
                            attempt: ev.attempt,
                            output: None,
                            error: None,
                            started_at_ms: ev.at_ms,
                            ended_at_ms: None,
                        });
                        self.step_index[i].insert(step.to_string(), steps.len() - 1);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Outcome, RunHeader};
    use std::collections::BTreeMap;

    fn run_id() -> RunId {
        RunId::from_u128(0xfeed)
    }

    fn created() -> Event {
        Event {
            run: run_id(),
            seq: 1,
            instance: None,
            step: None,
            attempt: 0,
            at_ms: 100,
            kind: EventKind::RunCreated(RunHeader {
                id: run_id(),
                command: vec!["reroot".into(), "rebuild".into()],
                user: "u".into(),
                host: "h".into(),
                started_at_ms: 99,
                config_digests: vec![],
                instances: vec!["b".into(), "a".into()],
                options: BTreeMap::new(),
            }),
        }
    }

    /// A replay plus a helper to offer the next event.
    struct R(Replay);

    impl R {
        fn new() -> R {
            R(Replay::new(&created()).unwrap())
        }
        fn ev(
            &self,
            inst: Option<&str>,
            step: Option<&str>,
            attempt: u32,
            kind: EventKind,
        ) -> Event {
            Event {
                run: run_id(),
                seq: self.0.state().last_seq + 1,
                instance: inst.map(String::from),
                step: step.map(String::from),
                attempt,
                at_ms: 1000 + self.0.state().last_seq as i64,
                kind,
            }
        }
        fn step(&mut self, attempt: u32, kind: EventKind) -> Result<(), String> {
            let e = self.ev(Some("a"), Some("stop"), attempt, kind);
            self.0.apply(&e)
        }
        fn run(&mut self, kind: EventKind) -> Result<(), String> {
            let e = self.ev(None, None, 0, kind);
            self.0.apply(&e)
        }
        fn ok_step(mut self, attempt: u32, kind: EventKind) -> R {
            self.step(attempt, kind).unwrap();
            self
        }
    }

    fn ok() -> EventKind {
        EventKind::StepSucceeded {
            output: "out".into(),
        }
    }
    fn fail() -> EventKind {
        EventKind::StepFailed {
            error: "boom".into(),
        }
    }
    fn undo_fail() -> EventKind {
        EventKind::UndoFailed {
            error: "nope".into(),
        }
    }

    /// Brings step a/stop to `status` at attempt 1.
    fn at(status: Option<StepStatus>) -> R {
        let r = R::new();
        match status {
            None => r,
            Some(StepStatus::Started) => r.ok_step(1, EventKind::StepStarted),
            Some(StepStatus::Succeeded) => r.ok_step(1, EventKind::StepStarted).ok_step(1, ok()),
            Some(StepStatus::Failed) => r.ok_step(1, EventKind::StepStarted).ok_step(1, fail()),
            Some(StepStatus::UndoStarted) => {
                at(Some(StepStatus::Succeeded)).ok_step(1, EventKind::UndoStarted)
            }
            Some(StepStatus::UndoFinished) => {
                at(Some(StepStatus::UndoStarted)).ok_step(1, EventKind::UndoFinished)
            }
            Some(StepStatus::UndoFailed) => {
                at(Some(StepStatus::UndoStarted)).ok_step(1, undo_fail())
            }
        }
    }

    /// The full table of step transitions from the crate docs: for each current status and
    /// each step event kind, whether it is legal with the same attempt number (1) and with the
    /// next one (2).
    #[test]
    fn step_transition_table() {
        use StepStatus as S;
        let kinds: Vec<(&str, EventKind)> = vec![
            ("StepStarted", EventKind::StepStarted),
            ("StepSucceeded", ok()),
            ("StepFailed", fail()),
            ("UndoStarted", EventKind::UndoStarted),
            ("UndoFinished", EventKind::UndoFinished),
            ("UndoFailed", undo_fail()),
        ];
        // (from, kind, legal with attempt 1, legal with attempt 2)
        let table: &[(Option<S>, &str, bool, bool)] = &[
            (None, "StepStarted", true, true),
            (None, "StepSucceeded", false, false),
            (None, "StepFailed", false, false),
            (None, "UndoStarted", false, false),
            (None, "UndoFinished", false, false),
            (None, "UndoFailed", false, false),
            (Some(S::Started), "StepStarted", false, true),
            (Some(S::Started), "StepSucceeded", true, false),
            (Some(S::Started), "StepFailed", true, false),
            (Some(S::Started), "UndoStarted", false, false),
            (Some(S::Started), "UndoFinished", false, false),
            (Some(S::Started), "UndoFailed", false, false),
            (Some(S::Succeeded), "StepStarted", false, true),
            (Some(S::Succeeded), "StepSucceeded", false, false),
            (Some(S::Succeeded), "StepFailed", false, false),
            (Some(S::Succeeded), "UndoStarted", true, true),
            (Some(S::Succeeded), "UndoFinished", false, false),
            (Some(S::Succeeded), "UndoFailed", false, false),
            (Some(S::Failed), "StepStarted", false, true),
            (Some(S::Failed), "StepSucceeded", false, false),
            (Some(S::Failed), "StepFailed", false, false),
            (Some(S::Failed), "UndoStarted", true, true),
            (Some(S::Failed), "UndoFinished", false, false),
            (Some(S::Failed), "UndoFailed", false, false),
            (Some(S::UndoStarted), "StepStarted", false, false),
            (Some(S::UndoStarted), "StepSucceeded", false, false),
            (Some(S::UndoStarted), "StepFailed", false, false),
            (Some(S::UndoStarted), "UndoStarted", false, true),
            (Some(S::UndoStarted), "UndoFinished", true, false),
            (Some(S::UndoStarted), "UndoFailed", true, false),
            (Some(S::UndoFinished), "StepStarted", false, false),
            (Some(S::UndoFinished), "StepSucceeded", false, false),
            (Some(S::UndoFinished), "StepFailed", false, false),
            (Some(S::UndoFinished), "UndoStarted", false, false),
            (Some(S::UndoFinished), "UndoFinished", false, false),
            (Some(S::UndoFinished), "UndoFailed", false, false),
            (Some(S::UndoFailed), "StepStarted", false, false),
            (Some(S::UndoFailed), "StepSucceeded", false, false),
            (Some(S::UndoFailed), "StepFailed", false, false),
            (Some(S::UndoFailed), "UndoStarted", false, true),
            (Some(S::UndoFailed), "UndoFinished", false, false),
            (Some(S::UndoFailed), "UndoFailed", false, false),
        ];
        assert_eq!(table.len(), 7 * kinds.len());
        for &(from, name, legal1, legal2) in table {
            let kind = &kinds.iter().find(|(n, _)| *n == name).unwrap().1;
            for (attempt, legal) in [(1, legal1), (2, legal2)] {
                let mut r = at(from);
                let before = r.0.state().clone();
                let res = r.step(attempt, kind.clone());
                assert_eq!(
                    res.is_ok(),
                    legal,
                    "{name} (attempt {attempt}) after {from:?}: got {res:?}"
                );
                if res.is_err() {
                    assert_eq!(r.0.state(), &before, "a refused event must change nothing");
                }
            }
        }
    }

    #[test]
    fn attempt_zero_and_backwards_attempts_are_refused() {
        let mut r = R::new();
        assert!(r
            .step(0, EventKind::StepStarted)
            .unwrap_err()
            .contains("attempt"));
        let mut r = at(Some(StepStatus::Failed)).ok_step(3, EventKind::StepStarted);
        assert!(r.step(2, EventKind::StepStarted).is_err(), "attempt 3 -> 2");
        assert!(r.step(2, ok()).is_err(), "end of attempt 2 while 3 runs");
        r.step(3, ok()).unwrap();
        assert!(
            r.step(2, EventKind::UndoStarted).is_err(),
            "undo going back to attempt 2"
        );
        r.step(3, EventKind::UndoStarted).unwrap();
    }

    #[test]
    fn shape_rules() {
        let mut r = R::new();
        let e = r.ev(Some("a"), None, 1, EventKind::StepStarted);
        assert!(r.0.apply(&e).is_err(), "step event without step");
        let e = r.ev(None, Some("stop"), 1, EventKind::StepStarted);
        assert!(r.0.apply(&e).is_err(), "step event without instance");
        let e = r.ev(Some(""), Some("stop"), 1, EventKind::StepStarted);
        assert!(r.0.apply(&e).is_err(), "empty instance name");
        let e = r.ev(
            Some("a"),
            None,
            0,
            EventKind::RunPaused { reason: "x".into() },
        );
        assert!(r.0.apply(&e).is_err(), "run event naming an instance");
        let e = r.ev(None, Some("stop"), 0, EventKind::Note { text: "x".into() });
        assert!(r.0.apply(&e).is_err(), "note naming a step but no instance");
        let e = r.ev(
            Some("a"),
            Some("stop"),
            0,
            EventKind::Note { text: "x".into() },
        );
        r.0.apply(&e).unwrap();
        assert_eq!(r.0.state().notes, vec!["x".to_string()]);
    }

    #[test]
    fn sequence_and_run_id_are_checked() {
        let mut r = R::new();
        let mut e = r.ev(Some("a"), Some("stop"), 1, EventKind::StepStarted);
        e.seq += 1;
        assert!(r.0.apply(&e).unwrap_err().contains("sequence"));
        e.seq -= 1;
        e.run = RunId::from_u128(1);
        assert!(r.0.apply(&e).is_err());
        let mut again = created();
        again.seq = 2;
        assert!(r.0.apply(&again).unwrap_err().contains("RunCreated"));
        // A run must begin with RunCreated at seq 1.
        let mut first = r.ev(None, None, 0, EventKind::Note { text: "n".into() });
        first.seq = 1;
        assert!(Replay::new(&first).is_err());
        let mut c = created();
        c.seq = 2;
        assert!(Replay::new(&c).is_err());
        let mut c = created();
        c.run = RunId::from_u128(7);
        assert!(
            Replay::new(&c).is_err(),
            "header id must match the event's run"
        );
    }

    #[test]
    fn run_level_rules() {
        // Paused and resumed: anything goes.
        let mut r = R::new();
        r.run(EventKind::RunPaused {
            reason: "budget".into(),
        })
        .unwrap();
        assert_eq!(r.0.state().status, RunStatus::Paused);
        r.step(1, EventKind::StepStarted).unwrap();
        r.run(EventKind::RunResumed { pid: 1 }).unwrap();
        assert_eq!(r.0.state().status, RunStatus::Running);
        r.step(1, ok()).unwrap();
        // Finished as failed: only resume, undo events, notes and a new finish.
        r.run(EventKind::RunFinished {
            outcome: Outcome::Failed,
        })
        .unwrap();
        assert_eq!(r.0.state().status, RunStatus::Failed);
        let e = r.ev(Some("a"), Some("other"), 1, EventKind::StepStarted);
        assert!(r.0.apply(&e).unwrap_err().contains("finished"));
        assert!(r.run(EventKind::RunPaused { reason: "x".into() }).is_err());
        r.run(EventKind::Note {
            text: "looked at it".into(),
        })
        .unwrap();
        r.step(1, EventKind::UndoStarted).unwrap();
        r.step(1, EventKind::UndoFinished).unwrap();
        r.run(EventKind::RunFinished {
            outcome: Outcome::Undone,
        })
        .unwrap();
        assert_eq!(r.0.state().status, RunStatus::Undone);
        // Nothing but notes after undone: no resume, no new finish, no step.
        r.run(EventKind::Note {
            text: "pruned a: deleted snapshot".into(),
        })
        .unwrap();
        assert_eq!(r.0.state().status, RunStatus::Undone);
        for kind in [
            EventKind::RunResumed { pid: 2 },
            EventKind::RunFinished {
                outcome: Outcome::Undone,
            },
        ] {
            assert!(r.run(kind).unwrap_err().contains("undone"));
        }
        assert!(r.step(2, EventKind::UndoStarted).is_err());

        // Succeeded, then resumed: steps may run again; a new finish closes it.
        let mut r = at(Some(StepStatus::Succeeded));
        r.run(EventKind::RunFinished {
            outcome: Outcome::Succeeded,
        })
        .unwrap();
        assert!(r.step(2, EventKind::StepStarted).is_err());
        r.run(EventKind::RunResumed { pid: 3 }).unwrap();
        let e = r.ev(Some("b"), Some("start"), 1, EventKind::StepStarted);
        r.0.apply(&e).unwrap();
        r.run(EventKind::RunFinished {
            outcome: Outcome::Failed,
        })
        .unwrap();
        r.run(EventKind::RunFinished {
            outcome: Outcome::Failed,
        })
        .unwrap();
    }

    fn pruned(what: &str) -> EventKind {
        EventKind::Pruned { what: what.into() }
    }

    /// The run-level table of `UndoRequested` and `Pruned` (with notes and `RunResumed` beside
    /// them): for each place a run can be in, whether each is legal. A pruned run cannot be
    /// asked to undo; a run in progress cannot be pruned; an undone one can.
    #[test]
    fn undo_requested_and_pruned_table() {
        let finish = |outcome| EventKind::RunFinished { outcome };
        let reach = |from: &str| -> R {
            let mut r = at(Some(StepStatus::Succeeded));
            let (status, pruned_too) = match from.strip_suffix(", pruned") {
                Some(s) => (s, true),
                None => (from, false),
            };
            match status {
                "running" => {}
                "paused" => r.run(EventKind::RunPaused { reason: "p".into() }).unwrap(),
                "succeeded" => r.run(finish(Outcome::Succeeded)).unwrap(),
                "failed" => r.run(finish(Outcome::Failed)).unwrap(),
                "undone" => {
                    r.step(1, EventKind::UndoStarted).unwrap();
                    r.step(1, EventKind::UndoFinished).unwrap();
                    r.run(finish(Outcome::Undone)).unwrap();
                }
                other => panic!("{other}"),
            }
            if pruned_too {
                let e = r.ev(Some("a"), None, 0, pruned("deleted x"));
                r.0.apply(&e).unwrap();
            }
            assert_eq!(r.0.state().status.as_str(), status);
            r
        };
        // (from, UndoRequested, Pruned, Note, RunResumed)
        let table: &[(&str, bool, bool, bool, bool)] = &[
            ("running", true, false, true, true),
            ("paused", true, false, true, true),
            ("succeeded", true, true, true, true),
            ("failed", true, true, true, true),
            ("undone", false, true, true, false),
            ("succeeded, pruned", false, true, true, true),
            ("failed, pruned", false, true, true, true),
            ("undone, pruned", false, true, true, false),
        ];
        for &(from, undo, prune, note, resume) in table {
            let cases = [
                (
                    "UndoRequested",
                    None,
                    EventKind::UndoRequested { data: true },
                    undo,
                ),
                ("Pruned", Some("b"), pruned("deleted y"), prune),
                ("Note", None, EventKind::Note { text: "n".into() }, note),
                ("RunResumed", None, EventKind::RunResumed { pid: 9 }, resume),
            ];
            for (name, instance, kind, legal) in cases {
                let mut r = reach(from);
                let before = r.0.state().clone();
                let e = r.ev(instance, None, 0, kind);
                let res = r.0.apply(&e);
                assert_eq!(res.is_ok(), legal, "{name} after {from}: got {res:?}");
                if res.is_err() {
                    assert_eq!(r.0.state(), &before, "a refused event must change nothing");
                }
            }
        }
    }

    #[test]
    fn undo_requested_and_pruned_are_recorded_as_typed_fields() {
        let mut r = at(Some(StepStatus::Succeeded));
        assert_eq!(r.0.state().undo_requested, None);
        // A note that reads like one of them is only a note.
        r.run(EventKind::Note {
            text: "undo requested with --data".into(),
        })
        .unwrap();
        assert_eq!(r.0.state().undo_requested, None);
        r.run(EventKind::UndoRequested { data: true }).unwrap();
        assert_eq!(r.0.state().undo_requested, Some(true));
        r.run(EventKind::UndoRequested { data: false }).unwrap();
        assert_eq!(r.0.state().undo_requested, Some(false), "the latest counts");
        r.run(EventKind::RunFinished {
            outcome: Outcome::Succeeded,
        })
        .unwrap();
        assert!(r.0.state().pruned.is_empty());
        for (inst, what) in [("a", "deleted root"), ("z", "deleted snapshot")] {
            let e = r.ev(Some(inst), None, 0, pruned(what));
            r.0.apply(&e).unwrap();
        }
        let st = r.0.state();
        let got: Vec<_> = st
            .pruned
            .iter()
            .map(|p| (p.instance.as_str(), p.what.as_str()))
            .collect();
        assert_eq!(got, [("a", "deleted root"), ("z", "deleted snapshot")]);
        assert!(
            st.instance("z").is_some(),
            "a pruned instance is an instance of the run"
        );
        assert_eq!(st.notes, ["undo requested with --data"]);
    }

    #[test]
    fn undo_requested_and_pruned_shape() {
        let mut r = at(Some(StepStatus::Succeeded));
        r.run(EventKind::RunFinished {
            outcome: Outcome::Succeeded,
        })
        .unwrap();
        for (inst, step, kind) in [
            (None, None, pruned("x")),
            (Some(""), None, pruned("x")),
            (Some("a"), Some("stop"), pruned("x")),
            (Some("a"), None, EventKind::UndoRequested { data: false }),
        ] {
            let e = r.ev(inst, step, 0, kind);
            assert!(r.0.apply(&e).is_err(), "{e:?} accepted");
        }
    }

    #[test]
    fn replay_builds_the_state() {
        let mut r = R::new();
        let mut push = |inst: &str, step: &str, attempt: u32, kind: EventKind| {
            let e = r.ev(Some(inst), Some(step), attempt, kind);
            r.0.apply(&e).unwrap();
        };
        push("c", "stop", 1, EventKind::StepStarted);
        push("a", "stop", 1, EventKind::StepStarted);
        push("a", "stop", 2, EventKind::StepStarted); // retry after a crash
        push("a", "stop", 2, ok());
        push("a", "snapshot", 1, EventKind::StepStarted);
        push(
            "a",
            "snapshot",
            1,
            EventKind::StepFailed {
                error: "disk full".into(),
            },
        );
        push(
            "c",
            "stop",
            1,
            EventKind::StepFailed {
                error: "interrupted".into(),
            },
        );
        push("c", "stop", 1, EventKind::UndoStarted);
        push("c", "stop", 1, undo_fail());
        let st = r.0.state().clone();
        // Instances: header order first (b, a), then first-seen (c).
        let names: Vec<_> = st.instances.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["b", "a", "c"]);
        let a: Vec<_> = st.instances[1]
            .steps
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(a, ["stop", "snapshot"], "steps in first-seen order");
        let stop = st.step("a", "stop").unwrap();
        assert_eq!(stop.status, StepStatus::Succeeded);
        assert_eq!(stop.attempt, 2);
        assert_eq!(stop.output.as_deref(), Some("out"));
        assert_eq!(stop.started_at_ms, 1003, "the retry's start");
        assert_eq!(stop.ended_at_ms, Some(1004));
        let snap = st.step("a", "snapshot").unwrap();
        assert_eq!(snap.status, StepStatus::Failed);
        assert_eq!(snap.error.as_deref(), Some("disk full"));
        let c = st.step("c", "stop").unwrap();
        assert_eq!(c.status, StepStatus::UndoFailed);
        assert_eq!(c.error.as_deref(), Some("nope"));
        assert_eq!(st.last_seq, 10);
        assert_eq!(st.status, RunStatus::Running);
        assert!(st.step("b", "stop").is_none());

        // The same through Replay::run, from a list.
        let mut events = vec![created()];
        let mut rr = R::new();
        for kind in [
            EventKind::StepStarted,
            ok(),
            EventKind::UndoStarted,
            EventKind::UndoFinished,
        ] {
            let e = rr.ev(Some("a"), Some("stop"), 1, kind);
            rr.0.apply(&e).unwrap();
            events.push(e);
        }
        let st = Replay::run(&events).unwrap();
        let s = st.step("a", "stop").unwrap();
        assert_eq!(s.status, StepStatus::UndoFinished);
        assert_eq!(s.output.as_deref(), Some("out"), "undo keeps the output");
        // Corrupt order is reported with the offending sequence number.
        events.swap(2, 3);
        let (seq, _) = Replay::run(&events).unwrap_err();
        assert_eq!(seq, 4);
    }

    #[test]
    fn status_words_parse() {
        for s in [
            RunStatus::Running,
            RunStatus::Paused,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Undone,
        ] {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), s);
        }
        assert!("done".parse::<RunStatus>().unwrap_err().contains("done"));
    }
}
