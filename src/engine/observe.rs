//! What the engine tells an observer while a pass goes: an instance begins, a step attempt
//! starts and ends, the downtime window opens and closes, a revert begins, an instance ends,
//! the run ends.
//!
//! The journal stays the record of a run; these facts exist only so that a person or a script
//! can follow it live (a progress view, a log line per instance, an event stream). Each fact
//! that a journal event records is told right after that event was appended, with its sequence
//! number and time, so what is shown never runs ahead of what is on disk.
//!
//! Telling must never slow or fail a run: an [`Observer`] hands the fact on and returns (the
//! CLI's puts it on an unbounded channel to a thread of its own), and a panic inside one is
//! caught and forgotten. The engine itself prints nothing.

use std::fmt;
use std::sync::Arc;

use journal::RunId;

use super::executor::{Direction, InstanceOutcome};

/// One fact of a pass, as told to an [`Observer`].
#[derive(Debug, Clone, PartialEq)]
pub struct EngineEvent {
    /// The run.
    pub run: RunId,
    /// When it happened (ms since the epoch): the time of the journal event that records it,
    /// if one does.
    pub at_ms: i64,
    /// The sequence number of the journal event that records it, if one does.
    pub seq: Option<u64>,
    /// What happened.
    pub fact: Fact,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// A pass begins over `instances` (after `RunResumed` is recorded, if it is one).
    RunStarted {
        /// Forward or undo.
        direction: Direction,
        /// The instances of this pass, in the order given.
        instances: Vec<String>,
        /// The pipeline's steps, in order.
        steps: Vec<String>,
        /// How many instances run at once.
        parallel: usize,
        /// True if the run had events before this pass (a resume, an undo).
        resumed: bool,
    },
    /// An instance got its place in the parallel window and its steps begin.
    InstanceStarted {
        /// The instance.
        instance: String,
    },
    /// An attempt of a step (or of its undo) was recorded as started.
    StepStarted {
        /// The instance.
        instance: String,
        /// The step.
        step: String,
        /// The attempt number, as journaled.
        attempt: u32,
        /// Apply (forward) or undo.
        direction: Direction,
    },
    /// An attempt was recorded as ended.
    StepFinished {
        /// The instance.
        instance: String,
        /// The step.
        step: String,
        /// The attempt number, as journaled.
        attempt: u32,
        /// Apply (forward) or undo.
        direction: Direction,
        /// From its start record to its end record.
        duration_ms: i64,
        /// Why it failed; `None` if it succeeded.
        error: Option<String>,
        /// True if the engine tries it again (a transient failure within the retry budget).
        retry: bool,
        /// The step's output, as journaled (forward successes only).
        output: Option<serde_json::Value>,
    },
    /// The instance went down: its window's first step started (forward), or the undo of its
    /// window's last step did (undo). `resumed`: it was already down when this pass began.
    WindowOpened {
        /// The instance.
        instance: String,
        /// True if the window had opened before this pass (a crash or a failure left it down).
        resumed: bool,
    },
    /// The instance is up again.
    WindowClosed {
        /// The instance.
        instance: String,
        /// Since the window opened, as the journal has it (for a rebuild: from the start of
        /// `stop`; for an undo: from the start of the undo of `start`).
        down_ms: i64,
        /// True if it came back on its old root (a revert or an undo), false if the window's
        /// last step brought the new one up.
        reverted: bool,
    },
    /// A step failed for good inside the window: the instance is being put back.
    RevertStarted {
        /// The instance.
        instance: String,
        /// The step that failed (empty when a revert left unfinished by an earlier pass goes
        /// on and the journal names no failed step).
        step: String,
        /// Its error.
        error: String,
    },
    /// The instance is done in this pass. Every instance of the pass ends with exactly one of
    /// these, those not started included (with [`InstanceOutcome::NotStarted`] and no
    /// [`Fact::InstanceStarted`] before it).
    InstanceFinished {
        /// The instance.
        instance: String,
        /// How it ended.
        outcome: InstanceOutcome,
        /// From its start to its end in this pass; `None` if it did not start.
        duration_ms: Option<i64>,
    },
    /// The pass is over and how the run stands is recorded: `succeeded`, `failed`, `undone`
    /// or `paused` (as in [`super::RunReport::outcome`]).
    RunFinished {
        /// How the run finished.
        outcome: String,
    },
}

impl Fact {
    /// The instance the fact is about, if any.
    pub fn instance(&self) -> Option<&str> {
        match self {
            Fact::RunStarted { .. } | Fact::RunFinished { .. } => None,
            Fact::InstanceStarted { instance }
            | Fact::StepStarted { instance, .. }
            | Fact::StepFinished { instance, .. }
            | Fact::WindowOpened { instance, .. }
            | Fact::WindowClosed { instance, .. }
            | Fact::RevertStarted { instance, .. }
            | Fact::InstanceFinished { instance, .. } => Some(instance),
        }
    }
}

/// Something that follows a pass. The engine calls it from its instance tasks, so it must
/// return at once (hand the event to a channel or a thread) and never block.
pub trait Observer: Send + Sync {
    /// One fact, right after the journal recorded it.
    fn observe(&self, event: EngineEvent);
}

impl fmt::Debug for dyn Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Observer")
    }
}

/// Tells `observer`, if there is one, catching a panic so that it cannot fail the run.
pub(super) fn tell(observer: Option<&Arc<dyn Observer>>, event: EngineEvent) {
    let Some(observer) = observer else {
        return;
    };
    let told = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| observer.observe(event)));
    if told.is_err() {
        tracing::debug!("an observer panicked; the run goes on");
    }
}
