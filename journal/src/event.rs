//! What the journal records: a run's header and the ordered events of a run.
//!
//! These types are plain data. Their serde shape is part of the on-disk format (see
//! `journal/FORMAT.md`): changing a field, its type or the order of fields or variants changes
//! the bytes and needs a new format version; a new kind goes at the end of [`EventKind`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Identifies a run. Random (v4) when made by [`RunHeader::new_id`].
pub type RunId = uuid::Uuid;

/// The short form of a run id that people read and type: its first 8 hex digits (also what
/// reroot's temporary and retired instance names carry).
pub fn short_id(run: &RunId) -> String {
    run.simple().to_string()[..8].to_string()
}

/// What a run is: recorded once, in its first event ([`EventKind::RunCreated`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHeader {
    /// The run's id.
    pub id: RunId,
    /// The command line that started the run, as an argument vector.
    pub command: Vec<String>,
    /// Who started it.
    pub user: String,
    /// On which host.
    pub host: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// Digests of the configuration files used, as (file, digest) pairs.
    pub config_digests: Vec<(String, String)>,
    /// The instances the run targets, in the order the plan lists them.
    pub instances: Vec<String>,
    /// Options the run was started with (name to value).
    pub options: BTreeMap<String, String>,
}

impl RunHeader {
    /// A fresh random run id.
    pub fn new_id() -> RunId {
        uuid::Uuid::new_v4()
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// Every step of every instance succeeded.
    Succeeded,
    /// The run stopped with failures; its completed steps can still be undone.
    Failed,
    /// The run's steps were undone. Only notes and `Pruned` may follow.
    Undone,
}

/// What happened. Run-level kinds carry neither instance nor step; step kinds carry both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// The run exists; always its first event (sequence number 1), exactly once.
    RunCreated(RunHeader),
    /// A process (again) took charge of the run: after a crash, a pause or a finish.
    RunResumed {
        /// The process id of the process that resumed it.
        pid: u32,
    },
    /// The run stopped taking new work, waiting for a person.
    RunPaused {
        /// Why it paused.
        reason: String,
    },
    /// The run ended.
    RunFinished {
        /// How it ended.
        outcome: Outcome,
    },
    /// A step began (or began again, with a higher attempt number).
    StepStarted,
    /// A step succeeded.
    StepSucceeded {
        /// Data the step's undo or later steps need (often JSON); may be empty.
        output: String,
    },
    /// A step failed (including "interrupted", recorded for a step a crash cut short).
    StepFailed {
        /// What went wrong.
        error: String,
    },
    /// The undo of a step began.
    UndoStarted,
    /// The undo of a step finished: the step's effect is gone. Nothing may follow for that step.
    UndoFinished,
    /// The undo of a step failed; it may be started again.
    UndoFailed {
        /// What went wrong.
        error: String,
    },
    /// Free text for the audit history.
    Note {
        /// The note.
        text: String,
    },
    /// Someone asked for the run to be undone (`reroot undo`); a resume after a crash goes on
    /// undoing. The latest one counts ([`crate::RunState::undo_requested`]).
    UndoRequested {
        /// Roll the filesystems back too (`--data`).
        data: bool,
    },
    /// Something the run kept so that it could be undone was deleted for good; the event names
    /// the instance. The run can no longer be undone ([`crate::RunState::pruned`]).
    Pruned {
        /// What was deleted, for people: "deleted retired root web-old-0f8c1e5a".
        what: String,
    },
}

impl EventKind {
    /// A short name for messages and tables ("StepSucceeded", ...).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::RunCreated(_) => "RunCreated",
            EventKind::RunResumed { .. } => "RunResumed",
            EventKind::RunPaused { .. } => "RunPaused",
            EventKind::RunFinished { .. } => "RunFinished",
            EventKind::StepStarted => "StepStarted",
            EventKind::StepSucceeded { .. } => "StepSucceeded",
            EventKind::StepFailed { .. } => "StepFailed",
            EventKind::UndoStarted => "UndoStarted",
            EventKind::UndoFinished => "UndoFinished",
            EventKind::UndoFailed { .. } => "UndoFailed",
            EventKind::Note { .. } => "Note",
            EventKind::UndoRequested { .. } => "UndoRequested",
            EventKind::Pruned { .. } => "Pruned",
        }
    }

    /// True for the kinds that describe a step of an instance.
    pub fn is_step_event(&self) -> bool {
        matches!(
            self,
            EventKind::StepStarted
                | EventKind::StepSucceeded { .. }
                | EventKind::StepFailed { .. }
                | EventKind::UndoStarted
                | EventKind::UndoFinished
                | EventKind::UndoFailed { .. }
        )
    }

    /// True for the kinds that describe the run as a whole.
    pub fn is_run_event(&self) -> bool {
        matches!(
            self,
            EventKind::RunCreated(_)
                | EventKind::RunResumed { .. }
                | EventKind::RunPaused { .. }
                | EventKind::RunFinished { .. }
                | EventKind::UndoRequested { .. }
        )
    }

    /// True for the undo kinds.
    pub fn is_undo_event(&self) -> bool {
        matches!(
            self,
            EventKind::UndoStarted | EventKind::UndoFinished | EventKind::UndoFailed { .. }
        )
    }
}

/// One recorded event of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The run it belongs to.
    pub run: RunId,
    /// Its position in the run: 1 for `RunCreated`, then 2, 3, ... without gaps.
    pub seq: u64,
    /// The instance it concerns, if any.
    pub instance: Option<String>,
    /// The step it concerns, if any (then `instance` is set too).
    pub step: Option<String>,
    /// The attempt number of the step (1, 2, ...); 0 for run-level events.
    pub attempt: u32,
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// What happened.
    pub kind: EventKind,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}
