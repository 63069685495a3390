//! The executor: runs a pipeline of steps for each target instance of a run, forward or in
//! undo, recording every transition in the journal before and after it happens.
//!
//! It is driven only by the journal and the live state: each pass starts from a replay of the
//! run, skips what the journal says is done, and re-applies a step that was started but not
//! recorded as finished (its idempotence makes that safe). So the same code starts a run,
//! resumes it after a crash, and undoes it.
//!
//! Parallelism is a bounded window: at most `parallel` instances at once, each instance's steps
//! strictly in order. The failure budget (`max_failures`) stops new instances from starting once
//! more instances than that have failed; instances already under way run to their end, so no
//! instance is left half-done by another's failure.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use journal::{EventKind, Journal, Outcome, RunId, RunState, StepStatus};
use tokio::sync::Semaphore;

use super::fault::{FaultPoint, Faults, Moment};
use super::step::{Outputs, Step, StepCx, StepError};

/// How the executor runs.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How many instances run at once (at least 1).
    pub parallel: usize,
    /// How many failed instances are tolerated before no new instance starts.
    pub max_failures: usize,
    /// Canaries: how many instances, taken first, must all go through before any other
    /// starts (forward passes only; 0 = none). A canary that fails leaves the rest not started.
    pub canaries: usize,
    /// How many times a step that failed with a transient error is applied again, in the same
    /// pass, before its instance is given up (each attempt is journaled). Steps are idempotent, so this is safe; it rides
    /// out passing trouble such as a daemon busy for a few seconds.
    pub retries: u32,
    /// The wait before the first retry; each further retry waits one more such delay.
    pub retry_delay: std::time::Duration,
    /// Where to die on purpose (tests only).
    pub faults: Faults,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            parallel: 1,
            max_failures: 0,
            canaries: 0,
            retries: 0,
            retry_delay: std::time::Duration::from_secs(2),
            faults: Faults::none(),
        }
    }
}

/// Why the executor itself stopped (as opposed to a step failing, which is an outcome).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The journal refused or failed to record an event: the run cannot go on safely.
    #[error("journal: {0}")]
    Journal(#[from] journal::Error),
    /// A fault point fired: the engine stopped dead, as a killed process would.
    #[error("stopped by an injected fault")]
    Crashed,
    /// The run cannot be driven in the requested direction.
    #[error("{0}")]
    Refused(String),
    /// An internal task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// How one instance ended in this pass.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum InstanceOutcome {
    /// Every step succeeded.
    Succeeded,
    /// A step failed; the steps before it succeeded, the ones after it did not run.
    Failed {
        /// The step that failed.
        step: String,
        /// Its error.
        error: String,
    },
    /// Not started in this pass: the failure budget ran out or the run was interrupted.
    NotStarted,
    /// Every step that had run was undone.
    Undone,
    /// The undo of a step failed; the undo can be resumed.
    UndoFailed {
        /// The step whose undo failed.
        step: String,
        /// Its error.
        error: String,
    },
}

impl InstanceOutcome {
    /// True for the outcomes that count against the failure budget.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            InstanceOutcome::Failed { .. } | InstanceOutcome::UndoFailed { .. }
        )
    }
}

/// What a pass did to each instance.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    /// The run.
    pub run: RunId,
    /// How the run finished.
    pub outcome: String,
    /// Each instance, in the run's order.
    pub instances: Vec<(String, InstanceOutcome)>,
}

impl RunReport {
    /// True if every instance succeeded (forward) or was undone (undo).
    pub fn is_success(&self) -> bool {
        self.instances
            .iter()
            .all(|(_, o)| matches!(o, InstanceOutcome::Succeeded | InstanceOutcome::Undone))
    }
}

/// The direction of a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Apply the steps in order.
    Forward,
    /// Undo the steps that ran, in reverse order.
    Undo,
}

/// Runs pipelines of steps against an environment `E`, recording everything in a journal.
pub struct Engine<E> {
    journal: Arc<Journal>,
    env: Arc<E>,
    steps: Arc<Vec<Arc<dyn Step<E>>>>,
    options: EngineOptions,
    crashed: Arc<AtomicBool>,
    interrupted: Arc<AtomicBool>,
}

impl<E: Send + Sync + 'static> Engine<E> {
    /// An engine for one pipeline (the same steps for every instance).
    pub fn new(
        journal: Arc<Journal>,
        env: Arc<E>,
        steps: Vec<Arc<dyn Step<E>>>,
        options: EngineOptions,
    ) -> Engine<E> {
        Engine {
            journal,
            env,
            steps: Arc::new(steps),
            options,
            crashed: Arc::new(AtomicBool::new(false)),
            interrupted: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A flag that, once set (e.g. on Ctrl-C), stops new instances from starting. Instances
    /// under way finish, so none is left between stop and start.
    pub fn interrupt_flag(&self) -> Arc<AtomicBool> {
        self.interrupted.clone()
    }

    /// The names of the pipeline's steps, in order.
    pub fn step_names(&self) -> Vec<&'static str> {
        self.steps.iter().map(|s| s.name()).collect()
    }

    /// Drives `instances` of `run` in `direction`, then records how the run finished.
    ///
    /// The run must exist in the journal. A pass over a run that is finished, or was stopped by
    /// a crash, first records `RunResumed`.
    pub async fn drive(
        &self,
        run: RunId,
        instances: &[String],
        direction: Direction,
    ) -> Result<RunReport, EngineError> {
        let state = self.replay(run).await?;
        if state.status == journal::RunStatus::Undone {
            return Err(EngineError::Refused(format!(
                "run {run} was undone; it cannot be driven again"
            )));
        }
        if state.last_seq > 1 {
            self.record(
                run,
                None,
                None,
                0,
                EventKind::RunResumed {
                    pid: std::process::id(),
                },
            )
            .await?;
        }
        let failures = Arc::new(AtomicUsize::new(0));
        let window = Arc::new(Semaphore::new(self.options.parallel.max(1)));
        let canaries = match direction {
            Direction::Forward => self.options.canaries.min(instances.len()),
            Direction::Undo => 0,
        };
        let (first, rest) = instances.split_at(canaries);
        let mut results = self.pass(run, first, direction, &failures, &window).await?;
        if results
            .iter()
            .all(|(_, o)| *o == InstanceOutcome::Succeeded)
        {
            results.extend(self.pass(run, rest, direction, &failures, &window).await?);
        } else {
            tracing::warn!(run = %run, "a canary did not go through: the other instances are not started");
            results.extend(
                rest.iter()
                    .map(|n| (n.clone(), InstanceOutcome::NotStarted)),
            );
        }
        // The outcome covers every instance of the run, not only those of this pass.
        let state = self.replay(run).await?;
        let (outcome, word) = run_outcome(&state, &self.step_names(), direction);
        if outcome == Outcome::Failed
            && results
                .iter()
                .any(|(_, o)| *o == InstanceOutcome::NotStarted)
            && self.interrupted.load(Ordering::SeqCst)
        {
            self.record(
                run,
                None,
                None,
                0,
                EventKind::RunPaused {
                    reason: "interrupted".into(),
                },
            )
            .await?;
            return Ok(RunReport {
                run,
                outcome: "paused".into(),
                instances: results,
            });
        }
        self.record(run, None, None, 0, EventKind::RunFinished { outcome })
            .await?;
        Ok(RunReport {
            run,
            outcome: word.to_string(),
            instances: results,
        })
    }

    /// Drives `names` in the window, each instance's steps in order, counting failures
    /// against the budget; gives each instance's outcome, in the order given.
    async fn pass(
        &self,
        run: RunId,
        names: &[String],
        direction: Direction,
        failures: &Arc<AtomicUsize>,
        window: &Arc<Semaphore>,
    ) -> Result<Vec<(String, InstanceOutcome)>, EngineError> {
        let mut tasks = Vec::new();
        for name in names {
            let engine = self.clone_handle();
            let name = name.clone();
            let failures = failures.clone();
            let window = window.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = window
                    .acquire_owned()
                    .await
                    .map_err(|e| EngineError::Internal(e.to_string()))?;
                let over_budget = failures.load(Ordering::SeqCst) > engine.options.max_failures;
                if over_budget || engine.interrupted.load(Ordering::SeqCst) {
                    return Ok(InstanceOutcome::NotStarted);
                }
                let outcome = match direction {
                    Direction::Forward => engine.forward_instance(run, &name).await?,
                    Direction::Undo => engine.undo_instance(run, &name).await?,
                };
                if outcome.is_failure() {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                Ok::<_, EngineError>(outcome)
            }));
        }
        let mut results = Vec::new();
        let mut first_error = None;
        for (name, task) in names.iter().zip(tasks) {
            match task.await {
                Ok(Ok(outcome)) => results.push((name.clone(), outcome)),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(EngineError::Internal(e.to_string()));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(results),
        }
    }

    fn clone_handle(&self) -> Engine<E> {
        Engine {
            journal: self.journal.clone(),
            env: self.env.clone(),
            steps: self.steps.clone(),
            options: self.options.clone(),
            crashed: self.crashed.clone(),
            interrupted: self.interrupted.clone(),
        }
    }

    async fn forward_instance(
        &self,
        run: RunId,
        instance: &str,
    ) -> Result<InstanceOutcome, EngineError> {
        let state = self.replay(run).await?;
        let (mut outputs, mut times) = recorded(&state, instance);
        if let Some(inst) = state.instance(instance) {
            if let Some(s) = inst.steps.iter().find(|s| is_undo_status(s.status)) {
                return Ok(InstanceOutcome::Failed {
                    step: s.name.clone(),
                    error: format!(
                        "the undo of this instance has begun (step `{}`); finish it with `reroot undo {run}`",
                        s.name
                    ),
                });
            }
        }
        for step in self.steps.iter() {
            let name = step.name();
            let prev = state.step(instance, name);
            if prev.is_some_and(|p| p.status == StepStatus::Succeeded) {
                continue;
            }
            let attempt = prev.map_or(1, |p| p.attempt + 1);
            let (value, started) = match self
                .drive_step(
                    run,
                    instance,
                    step.as_ref(),
                    Direction::Forward,
                    attempt,
                    &outputs,
                    &times,
                )
                .await?
            {
                Ok(done) => done,
                Err(error) => {
                    return Ok(InstanceOutcome::Failed {
                        step: name.to_string(),
                        error,
                    })
                }
            };
            outputs.insert(name, value);
            times.insert(name.to_string(), (started, Some(journal::now_ms())));
        }
        Ok(InstanceOutcome::Succeeded)
    }

    async fn undo_instance(
        &self,
        run: RunId,
        instance: &str,
    ) -> Result<InstanceOutcome, EngineError> {
        let state = self.replay(run).await?;
        let (outputs, times) = recorded(&state, instance);
        for step in self.steps.iter().rev() {
            let name = step.name();
            let Some(prev) = state.step(instance, name) else {
                continue;
            };
            let mut attempt = prev.attempt;
            match prev.status {
                StepStatus::UndoFinished => continue,
                StepStatus::Started => {
                    // Cut short by a crash: it may have had part of its effect. Close it as
                    // failed so that its undo, which copes with partial effects, may run.
                    self.record(
                        run,
                        Some(instance),
                        Some(name),
                        attempt,
                        EventKind::StepFailed {
                            error: "interrupted".into(),
                        },
                    )
                    .await?;
                }
                StepStatus::UndoStarted | StepStatus::UndoFailed => attempt += 1,
                StepStatus::Succeeded | StepStatus::Failed => {}
            }
            if let Err(error) = self
                .drive_step(
                    run,
                    instance,
                    step.as_ref(),
                    Direction::Undo,
                    attempt,
                    &outputs,
                    &times,
                )
                .await?
            {
                return Ok(InstanceOutcome::UndoFailed {
                    step: name.to_string(),
                    error,
                });
            }
        }
        Ok(InstanceOutcome::Undone)
    }

    /// Applies (forward) or undoes one step of one instance from attempt number `attempt` on:
    /// each attempt is journaled as started, then succeeded/finished or failed, with the fault
    /// points around it; a transient failure is tried again within the retry budget. Gives the
    /// step's output and the time its last attempt started, or the error it failed with for
    /// good (`Ok(Err(_))`: an outcome, not an engine failure).
    #[allow(clippy::too_many_arguments)]
    async fn drive_step(
        &self,
        run: RunId,
        instance: &str,
        step: &dyn Step<E>,
        direction: Direction,
        mut attempt: u32,
        outputs: &Outputs,
        times: &Times,
    ) -> Result<Result<(serde_json::Value, i64), String>, EngineError> {
        let name = step.name();
        let (before, after, after_record) = match direction {
            Direction::Forward => (Moment::BeforeApply, Moment::AfterApply, Moment::AfterRecord),
            Direction::Undo => (
                Moment::BeforeUndo,
                Moment::AfterUndo,
                Moment::AfterUndoRecord,
            ),
        };
        let mut retried = 0;
        loop {
            let kind = match direction {
                Direction::Forward => EventKind::StepStarted,
                Direction::Undo => EventKind::UndoStarted,
            };
            self.record(run, Some(instance), Some(name), attempt, kind)
                .await?;
            let started = journal::now_ms();
            self.fault(instance, name, before)?;
            let result = {
                let cx = StepCx {
                    env: &*self.env,
                    run,
                    instance,
                    attempt,
                    outputs,
                    times,
                };
                match direction {
                    Direction::Forward => step.apply(&cx).await,
                    Direction::Undo => step.undo(&cx).await.map(|()| serde_json::Value::Null),
                }
            };
            self.fault(instance, name, after)?;
            match result {
                Ok(value) => {
                    let kind = match direction {
                        Direction::Forward => EventKind::StepSucceeded {
                            output: value.to_string(),
                        },
                        Direction::Undo => EventKind::UndoFinished,
                    };
                    self.record(run, Some(instance), Some(name), attempt, kind)
                        .await?;
                    self.fault(instance, name, after_record)?;
                    return Ok(Ok((value, started)));
                }
                Err(e) => {
                    tracing::info!(run = %run, instance, step = name, attempt, ?direction, error = %e, "step failed");
                    let error = e.to_string();
                    let kind = match direction {
                        Direction::Forward => EventKind::StepFailed {
                            error: error.clone(),
                        },
                        Direction::Undo => EventKind::UndoFailed {
                            error: error.clone(),
                        },
                    };
                    self.record(run, Some(instance), Some(name), attempt, kind)
                        .await?;
                    let Some(wait) = self.retry_wait(&e, retried) else {
                        return Ok(Err(error));
                    };
                    retried += 1;
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    /// How long to wait before applying (or undoing) a step again after `e`, having retried it
    /// `retried` times already; `None` when it is not to be retried.
    fn retry_wait(&self, e: &StepError, retried: u32) -> Option<std::time::Duration> {
        (e.is_transient() && retried < self.options.retries)
            .then(|| self.options.retry_delay * (retried + 1))
    }

    fn fault(&self, instance: &str, step: &str, moment: Moment) -> Result<(), EngineError> {
        if self.crashed.load(Ordering::SeqCst) {
            return Err(EngineError::Crashed);
        }
        if self.options.faults.hit(&FaultPoint {
            instance,
            step,
            moment,
        }) {
            self.crashed.store(true, Ordering::SeqCst);
            return Err(EngineError::Crashed);
        }
        Ok(())
    }

    async fn replay(&self, run: RunId) -> Result<RunState, EngineError> {
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || journal.replay(run))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?
            .map_err(EngineError::from)
    }

    /// Appends one event (flushed before it returns). After a simulated crash nothing more is
    /// written, as nothing more would be by a dead process.
    async fn record(
        &self,
        run: RunId,
        instance: Option<&str>,
        step: Option<&str>,
        attempt: u32,
        kind: EventKind,
    ) -> Result<(), EngineError> {
        if self.crashed.load(Ordering::SeqCst) {
            return Err(EngineError::Crashed);
        }
        let journal = self.journal.clone();
        let instance = instance.map(str::to_string);
        let step = step.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            journal.append(run, instance.as_deref(), step.as_deref(), attempt, kind)
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))??;
        Ok(())
    }
}

fn is_undo_status(s: StepStatus) -> bool {
    matches!(
        s,
        StepStatus::UndoStarted | StepStatus::UndoFinished | StepStatus::UndoFailed
    )
}

/// When each step of an instance started and ended (ms since the epoch), by step name.
type Times = BTreeMap<String, (i64, Option<i64>)>;

/// The outputs and times of an instance's recorded steps.
fn recorded(state: &RunState, instance: &str) -> (Outputs, Times) {
    let mut outputs = Outputs::default();
    let mut times = BTreeMap::new();
    if let Some(inst) = state.instance(instance) {
        for s in &inst.steps {
            if let Some(out) = &s.output {
                let value = serde_json::from_str(out)
                    .unwrap_or_else(|_| serde_json::Value::String(out.clone()));
                outputs.insert(&s.name, value);
            }
            times.insert(s.name.clone(), (s.started_at_ms, s.ended_at_ms));
        }
    }
    (outputs, times)
}

/// How a run stands after a pass: forward, it succeeded when every instance's every step did;
/// undo, it is undone when no instance has a step left that is not undone.
fn run_outcome(state: &RunState, steps: &[&str], direction: Direction) -> (Outcome, &'static str) {
    let targets = &state.header.instances;
    match direction {
        Direction::Forward => {
            let all_done = targets.iter().all(|i| {
                steps.iter().all(|s| {
                    state
                        .step(i, s)
                        .is_some_and(|st| st.status == StepStatus::Succeeded)
                })
            });
            if all_done {
                (Outcome::Succeeded, "succeeded")
            } else {
                (Outcome::Failed, "failed")
            }
        }
        Direction::Undo => {
            let all_undone = targets.iter().all(|i| {
                state.instance(i).is_none_or(|inst| {
                    inst.steps
                        .iter()
                        .all(|s| s.status == StepStatus::UndoFinished)
                })
            });
            if all_undone {
                (Outcome::Undone, "undone")
            } else {
                (Outcome::Failed, "failed")
            }
        }
    }
}
