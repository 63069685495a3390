//! The run engine: executes pipelines of idempotent steps, records each transition in the
//! journal, and resumes or undoes a run from whatever the journal and the live state say.
//!
//! The engine knows steps only through the small [`Step`] trait (a name, an idempotent
//! `apply`, an idempotent `undo`) and the journal. Crash-safety lives here:
//!
//! - before a step's `apply` the engine records *step started*, after it *step succeeded* with
//!   the step's output (or *step failed*); likewise *undo started* / *undo finished* around an
//!   `undo`. An append returns only once the event is on disk.
//! - a pass starts from a replay of the run: steps recorded as succeeded are skipped, a step
//!   recorded as started but not ended is applied again (safe, because steps are idempotent).
//! - undo walks the steps in reverse and undoes every step that ran (succeeded, failed, or was
//!   cut short by a crash), so an instance returns to where it started.
//!
//! [`fault`] holds the points where tests make the engine die on purpose; [`observe`] what the
//! engine tells an observer (a progress view, an event stream) as a pass goes.

pub mod executor;
pub mod fault;
pub mod observe;
pub mod step;

#[cfg(test)]
mod simulation;

pub use executor::{
    Direction, Engine, EngineError, EngineOptions, InstanceOutcome, Limits, OnFailure, RunReport,
    Window,
};
pub use fault::{FaultPoint, Faults, Moment};
pub use observe::{EngineEvent, Fact, Observer};
pub use step::{BoxFuture, Output, Outputs, Step, StepCx, StepError};
