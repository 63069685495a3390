//! The one thing the engine knows about a step: its name, an idempotent `apply` and an
//! idempotent `undo`.
//!
//! A step looks at the live state first and does nothing if its effect is already there, so the
//! engine may call `apply` again after a crash that cut it short. `undo` likewise checks before
//! it acts, and must cope with an `apply` that was interrupted half-way.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use journal::RunId;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A boxed, sendable future: what a step's `apply` and `undo` return, so that a pipeline can be
/// a list of different step types behind `dyn Step`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a step failed: a message for people, already naming what was being done, and whether
/// trying again soon may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    message: String,
    transient: bool,
    unreachable: bool,
}

impl StepError {
    /// A lasting error: trying again will fail the same way (a missing template, a name taken).
    pub fn new(message: impl Into<String>) -> StepError {
        StepError {
            message: message.into(),
            transient: false,
            unreachable: false,
        }
    }

    /// A passing error: a timeout, a lost connection, a busy daemon. The engine may retry.
    pub fn transient(message: impl Into<String>) -> StepError {
        StepError {
            message: message.into(),
            transient: true,
            unreachable: false,
        }
    }

    /// The daemon does not answer at all (its socket is gone or refuses connections: it is
    /// restarting, or died). Transient, and waited out for longer than other passing errors:
    /// nothing can be done without the daemon, not even putting the instance back.
    pub fn unreachable(message: impl Into<String>) -> StepError {
        StepError {
            message: message.into(),
            transient: true,
            unreachable: true,
        }
    }

    /// True if the daemon did not answer at all.
    pub fn is_unreachable(&self) -> bool {
        self.unreachable
    }

    /// True if trying again soon may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StepError {}

impl From<String> for StepError {
    fn from(s: String) -> StepError {
        StepError::new(s)
    }
}

impl From<&str> for StepError {
    fn from(s: &str) -> StepError {
        StepError::new(s)
    }
}

impl From<serde_json::Error> for StepError {
    fn from(e: serde_json::Error) -> StepError {
        StepError::new(format!("cannot encode or decode step data: {e}"))
    }
}

/// The output a step records in the journal, as a type that names its step: a later step, an
/// undo or a report reads it through the type ([`Outputs::of`]), never by spelling the step's
/// name or a field as a string. The journal keeps it as JSON, so a field added later with
/// `#[serde(default)]` still reads the outputs of older runs.
pub trait Output: Serialize + DeserializeOwned {
    /// The name of the step that records this output.
    const STEP: &'static str;

    /// The output as the engine records it.
    fn record(&self) -> Result<serde_json::Value, StepError> {
        Ok(serde_json::to_value(self)?)
    }

    /// Decodes a recorded output; an error names the step.
    fn decode(value: &serde_json::Value) -> Result<Self, StepError> {
        serde_json::from_value(value.clone()).map_err(|e| {
            StepError::new(format!(
                "the recorded output of step `{}` is malformed: {e}",
                Self::STEP
            ))
        })
    }

    /// Decodes a recorded output from the journal's text, if it is this step's and well formed
    /// (reports read finished runs and show what they can).
    fn from_recorded(step: &str, text: Option<&str>) -> Option<Self> {
        if step != Self::STEP {
            return None;
        }
        serde_json::from_str(text?).ok()
    }
}

/// The recorded outputs of an instance's steps that have succeeded so far in this run, by step
/// name. This is how a later step, or an undo, learns what an earlier step saw or did.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    by_step: BTreeMap<String, serde_json::Value>,
}

impl Outputs {
    /// Records a step's output (the engine does this from the journal).
    pub fn insert(&mut self, step: &str, value: serde_json::Value) {
        self.by_step.insert(step.to_string(), value);
    }

    /// The raw output of a step, if it succeeded.
    pub fn raw(&self, step: &str) -> Option<&serde_json::Value> {
        self.by_step.get(step)
    }

    /// The output of the step `T` belongs to; an error names the step when it is missing or
    /// malformed.
    pub fn of<T: Output>(&self) -> Result<T, StepError> {
        self.try_of()?.ok_or_else(|| {
            StepError::new(format!("the output of step `{}` is not recorded", T::STEP))
        })
    }

    /// The output of the step `T` belongs to, or `None` if that step has no recorded output.
    pub fn try_of<T: Output>(&self) -> Result<Option<T>, StepError> {
        self.by_step.get(T::STEP).map(T::decode).transpose()
    }
}

/// What a step is given when it runs.
pub struct StepCx<'a, E> {
    /// Everything the steps share: clients, the plan, options.
    pub env: &'a E,
    /// The run this is part of.
    pub run: RunId,
    /// The instance the step works on.
    pub instance: &'a str,
    /// 1 for the first attempt, 2 after a crash or a failure, and so on.
    pub attempt: u32,
    /// Outputs of this instance's steps that succeeded earlier in the run (for `undo`, the
    /// step's own output too, if it succeeded).
    pub outputs: &'a Outputs,
    /// When each of this instance's steps started and ended (ms since the epoch), from the
    /// journal.
    pub times: &'a BTreeMap<String, (i64, Option<i64>)>,
}

/// One idempotent unit of work with its compensation.
pub trait Step<E>: Send + Sync {
    /// The step's name, as recorded in the journal and shown to users.
    fn name(&self) -> &'static str;

    /// Does the step's work, unless the live state shows it is already done. Returns data
    /// that later steps or the undo need; it is recorded in the journal.
    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, E>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>>;

    /// Removes the step's effect, unless the live state shows it is already gone. Called for a
    /// step that succeeded, failed or was cut short, so it must cope with a partial effect.
    fn undo<'a>(&'a self, cx: &'a StepCx<'a, E>) -> BoxFuture<'a, Result<(), StepError>>;

    /// Whether the effect of this step, recorded as succeeded, still holds in the live state.
    /// A resume asks it of an unfinished instance's succeeded steps, in order, and applies the
    /// steps again from the first whose effect something outside reverted (a daemon restart
    /// that started an old root again, a rename rolled back). An error counts as "does not
    /// hold": applying an idempotent step again is always safe.
    ///
    /// The default, for steps whose effect nothing outside undoes (a check, a snapshot kept by
    /// name), says it holds.
    fn holds<'a>(&'a self, _cx: &'a StepCx<'a, E>) -> BoxFuture<'a, Result<bool, StepError>> {
        Box::pin(async { Ok(true) })
    }

    /// The later step of the pipeline that waits for this one; the steps in between run while
    /// this one does, each journaled on its own as usual. `None` (the default): the next step
    /// waits. Only a step that no step in between needs, and that needs none of them, may say
    /// so (a rebuild's data snapshots beside the renames: both need the old root stopped and
    /// nothing else of each other). A step that opens or closes the downtime window never
    /// runs beside others, and at most one runs beside the others at a time.
    fn beside_until(&self) -> Option<&'static str> {
        None
    }
}
