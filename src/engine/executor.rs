//! The executor: runs a pipeline of steps for each target instance of a run, forward or in
//! undo, recording every transition in the journal before and after it happens.
//!
//! It is driven only by the journal and the live state: each pass starts from a replay of the
//! run, skips what the journal says is done, and re-applies a step that was started but not
//! recorded as finished (its idempotence makes that safe). So the same code starts a run,
//! resumes it after a crash, and undoes it.
//!
//! Parallelism is a bounded window: at most `parallel` instances at once on each daemon
//! ([`EngineOptions::groups`]; a run over one daemon has one group), each instance's steps
//! in order, except that a step may run beside the steps after it, up to one that waits for it
//! ([`Step::beside_until`]; undo is always strictly in reverse). The failure budget (`max_failures`) stops new instances from starting once
//! more instances than that have failed; instances already under way run to their end, so no
//! instance is left half-done by another's failure.
//!
//! No instance is left down. A pipeline may name its *downtime window* (for a rebuild, from
//! `stop` to `start`): an instance inside it when a pass begins (a crash, a failure or a full
//! disk stopped the last one there) goes first, before any instance that has not started, and
//! neither the failure budget, the canaries nor an interrupt holds it back. A step that fails
//! for good inside the window reverts its instance on the spot (its steps undone, its old root
//! running again) unless the run was started with `--on-failure hold`. When the journal itself
//! stops accepting events (a full disk), each instance inside its window is reverted without
//! being recorded, and the next `resume` finds out from the live state (see [`Step::holds`]).
//!
//! A pass reads the run's state once from the journal writer's cache, and each instance its own
//! slice of it: the cost of a pass grows with the run's events once, not once per instance.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use journal::{EventKind, Journal, Outcome, RunId, RunState, StepStatus};
use tokio::sync::Semaphore;

use super::fault::{FaultPoint, Faults, Moment};
use super::observe::{self, EngineEvent, Fact, Observer};
use super::step::{BoxFuture, Outputs, Step, StepCx, StepError};

/// How many instances a pass takes at once, and how failures count. A run is started with
/// them, its header records them, and every later pass over it hands them to the engine as
/// they are: one type from the command line to the executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How many instances run at once (at least 1), on each daemon ([`EngineOptions::groups`]).
    pub parallel: usize,
    /// How many failed instances are tolerated before no new instance starts.
    pub max_failures: usize,
    /// Canaries: how many instances, taken first, must all go through before any other
    /// starts (forward passes only; 0 = none). A canary that fails leaves the rest not started.
    pub canaries: usize,
    /// How many times a step that failed with a transient error is applied again, in the same
    /// pass, before its instance is given up (each attempt is journaled). Steps are
    /// idempotent, so this is safe; it rides out passing trouble such as a daemon busy for a
    /// few seconds.
    pub retries: u32,
    /// How many instances may be inside their downtime window at the same moment, on each
    /// daemon (0: as many as run at once). An instance that is ready to go down waits for a place, its new
    /// root prepared, while `parallel` bounds the work before the window: on a 2-core host
    /// LXD runs its operations nearly one after another, and eight instances down at once
    /// mostly wait inside their downtime (median downtime 3.1 s at `--parallel 1`, 19 s at
    /// `--parallel 8`, 100 instances on the testbed). Instances already down when a pass
    /// starts (a resume) never wait for a place. The default, 2: at `--parallel 4` over 40
    /// instances it took the median downtime from 2.2 s (no limit) to 1.4 s at the same wall
    /// time (benches/downtime.rs; README, Performance).
    pub max_down: usize,
}

impl Default for Limits {
    /// One instance at a time, stopping at the first failure, no canaries, two retries, two
    /// down at once: what `reroot rebuild` does without options, and what a run recorded
    /// without limits is read with, so the two must stay one value (but `max_down`, which
    /// runs recorded before it existed did not have: see `RunSpec::of`).
    fn default() -> Limits {
        Limits {
            parallel: 1,
            max_failures: 0,
            canaries: 0,
            retries: 2,
            max_down: 2,
        }
    }
}

impl Limits {
    /// `parallel` instances at once, and no failure budget: every instance is tried, whatever
    /// becomes of the others. For passes where one instance's failure says nothing about the
    /// next (an undo, a snapshot, a removal), so stopping early would only leave more to do.
    pub fn without_budget(parallel: usize) -> Limits {
        Limits {
            parallel,
            max_failures: usize::MAX,
            ..Limits::default()
        }
    }
}

/// How the executor runs.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Parallelism, failure budget, canaries and retries.
    pub limits: Limits,
    /// The wait before the first retry; each further retry waits one more such delay.
    pub retry_delay: std::time::Duration,
    /// Where to die on purpose (tests only).
    pub faults: Faults,
    /// The pipeline's downtime window, if it has one.
    pub window: Option<Window>,
    /// What a failure inside the window does.
    pub on_failure: OnFailure,
    /// Who is told what happens as it happens (progress views, event streams); none by
    /// default. See [`super::observe`].
    pub observer: Option<Arc<dyn Observer>>,
    /// The daemon of each instance, as a key: `parallel` and `max_down` bound each daemon's
    /// instances on their own, since each daemon is its own bottleneck (an instance not named
    /// here is in the group `""`). The failure budget and the canaries count over the run.
    pub groups: Arc<BTreeMap<String, String>>,
}

/// The steps between which an instance is down: from the start of `opens` to the success of
/// `closes` (for a rebuild, `stop` and `start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The step whose start takes the instance down.
    pub opens: &'static str,
    /// The step whose success brings it back.
    pub closes: &'static str,
}

/// What becomes of an instance whose step fails for good inside its downtime window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// Undo its steps at once, so it runs on its old root again (the default).
    #[default]
    Revert,
    /// Leave it as it is, down, for a person to look at (`--on-failure hold`).
    Hold,
}

impl OnFailure {
    /// The word used on the command line and in the run header.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Revert => "revert",
            OnFailure::Hold => "hold",
        }
    }
}

impl std::str::FromStr for OnFailure {
    type Err = String;
    fn from_str(s: &str) -> Result<OnFailure, String> {
        match s {
            "revert" => Ok(OnFailure::Revert),
            "hold" => Ok(OnFailure::Hold),
            other => Err(format!(
                "unknown failure policy {other:?}: expected revert or hold"
            )),
        }
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            limits: Limits::default(),
            retry_delay: std::time::Duration::from_secs(2),
            faults: Faults::none(),
            window: None,
            on_failure: OnFailure::Revert,
            observer: None,
            groups: Arc::default(),
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
    /// A step failed inside the downtime window, and the instance was put back: every step
    /// undone, its old root running again under its name.
    Reverted {
        /// The step that failed.
        step: String,
        /// Its error.
        error: String,
    },
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
            InstanceOutcome::Failed { .. }
                | InstanceOutcome::Reverted { .. }
                | InstanceOutcome::UndoFailed { .. }
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
    /// Set once the journal refused an event: no instance starts any more.
    journal_lost: Arc<AtomicBool>,
    /// Instances put back on their old roots without a record, after the journal was lost.
    unrecorded_reverts: Arc<Mutex<Vec<String>>>,
    /// Each group's (daemon's) places and counters, shared by every pass.
    lanes: Arc<Mutex<BTreeMap<String, Arc<Lane>>>>,
}

/// The task driving one instance.
type InstanceTask = tokio::task::JoinHandle<Result<InstanceOutcome, EngineError>>;

/// What bounds the instances of one group (one daemon): its places for instances under way
/// ([`Limits::parallel`]) and inside their downtime window ([`Limits::max_down`]).
struct Lane {
    /// The places of the instances under way.
    slots: Arc<Semaphore>,
    /// The places inside the downtime window.
    down_places: Arc<Semaphore>,
    /// How many of its instances are inside their downtime window now.
    down_now: Arc<AtomicUsize>,
    /// Taken by a preparation step while another of its instances is down: one at a time then.
    prep_turn: Arc<tokio::sync::Mutex<()>>,
}

impl Lane {
    fn new(limits: &Limits) -> Lane {
        Lane {
            slots: Arc::new(Semaphore::new(limits.parallel.max(1))),
            down_places: Arc::new(Semaphore::new(match limits.max_down {
                0 => Semaphore::MAX_PERMITS,
                n => n,
            })),
            down_now: Arc::new(AtomicUsize::new(0)),
            prep_turn: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

/// An instance's place inside its downtime window, counted in `down_now` while it is held.
struct DownPlace {
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    down_now: Arc<AtomicUsize>,
}

impl DownPlace {
    fn new(permit: tokio::sync::OwnedSemaphorePermit, down_now: &Arc<AtomicUsize>) -> DownPlace {
        down_now.fetch_add(1, Ordering::SeqCst);
        DownPlace {
            _permit: Some(permit),
            down_now: down_now.clone(),
        }
    }

    /// One found down when its pass began: counted, but it takes no place (it goes first
    /// whatever the limit, as nothing may keep a website down).
    fn resumed(down_now: &Arc<AtomicUsize>) -> DownPlace {
        down_now.fetch_add(1, Ordering::SeqCst);
        DownPlace {
            _permit: None,
            down_now: down_now.clone(),
        }
    }
}

impl Drop for DownPlace {
    fn drop(&mut self) {
        self.down_now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A step driven beside the steps after it, up to the step `until`, which waits for it. It
/// is polled in the instance's own task, alongside each step of the other lane, so a crash
/// (the pass returning) drops it where it stands, as a killed process would.
struct Side<'a> {
    k: usize,
    until: &'static str,
    drive: Option<BoxFuture<'a, Result<StepResult, DriveFailure>>>,
    done: Option<Result<StepResult, DriveFailure>>,
}

impl<'a> Side<'a> {
    fn new(
        k: usize,
        until: &'static str,
        drive: BoxFuture<'a, Result<StepResult, DriveFailure>>,
    ) -> Side<'a> {
        Side {
            k,
            until,
            drive: Some(drive),
            done: None,
        }
    }

    /// Awaits `main`, driving the side step meanwhile, and keeps its result if it ends first.
    async fn alongside<T>(&mut self, main: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(main);
        if let Some(drive) = self.drive.as_mut() {
            tokio::select! {
                biased;
                out = &mut main => return out,
                done = drive => {
                    self.done = Some(done);
                    self.drive = None;
                }
            }
        }
        main.await
    }

    /// The side step's index and result, once it has ended.
    async fn finish(mut self) -> (usize, Result<StepResult, DriveFailure>) {
        let result = match (self.done.take(), self.drive.take()) {
            (Some(done), _) => done,
            (None, Some(drive)) => drive.await,
            (None, None) => unreachable!("a side step is either under way or done"),
        };
        (self.k, result)
    }
}

/// How a step ended in [`Engine::drive_step`], when the engine itself did not fail.
type StepResult = Result<(serde_json::Value, i64), StepError>;

/// How long a step whose daemon does not answer at all is tried again (every
/// [`UNREACHABLE_RETRY`]) before it fails: long enough for the daemon to restart (LXD 5.0.2
/// answers again 5-20 s after it was started on the testbed), bounded like every wait.
const UNREACHABLE_BOUND: std::time::Duration = std::time::Duration::from_secs(120);
const UNREACHABLE_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// What an engine failure inside [`Engine::drive_step`] leaves behind: whether the step's own
/// work had been done (its `apply` returned success) when the journal refused to record it.
struct DriveFailure {
    error: EngineError,
    applied: bool,
}

impl From<EngineError> for DriveFailure {
    fn from(error: EngineError) -> DriveFailure {
        DriveFailure {
            error,
            applied: false,
        }
    }
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
            crashed: Arc::new(AtomicBool::new(false)),
            interrupted: Arc::new(AtomicBool::new(false)),
            journal_lost: Arc::new(AtomicBool::new(false)),
            unrecorded_reverts: Arc::new(Mutex::new(Vec::new())),
            lanes: Arc::default(),
            options,
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
    /// a crash, first records `RunResumed`. Instances inside their downtime window go first.
    pub async fn drive(
        &self,
        run: RunId,
        instances: &[String],
        direction: Direction,
    ) -> Result<RunReport, EngineError> {
        let state = self.state(run)?;
        if state.status == journal::RunStatus::Undone {
            return Err(EngineError::Refused(format!(
                "run {run} was undone; it cannot be driven again"
            )));
        }
        let resumed = if state.last_seq > 1 {
            let event = self
                .record(
                    run,
                    None,
                    None,
                    0,
                    EventKind::RunResumed {
                        pid: std::process::id(),
                    },
                )
                .await?;
            Some(event)
        } else {
            None
        };
        self.tell(
            run,
            resumed.as_ref(),
            Fact::RunStarted {
                direction,
                instances: instances.to_vec(),
                steps: self.step_names().iter().map(|s| s.to_string()).collect(),
                parallel: self.options.limits.parallel.max(1),
                resumed: resumed.is_some(),
            },
        );
        let failures = Arc::new(AtomicUsize::new(0));
        // Those that are down right now come back first, whatever else holds the run back.
        let (down, waiting): (Vec<String>, Vec<String>) = instances
            .iter()
            .cloned()
            .partition(|i| self.is_down(&state, i));
        if !down.is_empty() {
            tracing::info!(run = %run, count = down.len(), "instances inside their downtime window go first");
        }
        let canaries = match direction {
            Direction::Forward => &instances[..self.options.limits.canaries.min(instances.len())],
            Direction::Undo => &[],
        };
        let (first, rest): (Vec<String>, Vec<String>) =
            waiting.into_iter().partition(|i| canaries.contains(i));
        let mut results = self.pass(run, &down, direction, &failures, true).await?;
        results.extend(self.pass(run, &first, direction, &failures, false).await?);
        let canaries_through = results
            .iter()
            .filter(|(n, _)| canaries.contains(n))
            .all(|(_, o)| *o == InstanceOutcome::Succeeded);
        if canaries_through {
            results.extend(self.pass(run, &rest, direction, &failures, false).await?);
        } else {
            tracing::warn!(run = %run, "a canary did not go through: the other instances are not started");
            for name in &rest {
                self.tell_not_started(run, name);
            }
            results.extend(
                rest.iter()
                    .map(|n| (n.clone(), InstanceOutcome::NotStarted)),
            );
        }
        let order: BTreeMap<&str, usize> = instances
            .iter()
            .enumerate()
            .map(|(k, n)| (n.as_str(), k))
            .collect();
        results.sort_by_key(|(n, _)| order.get(n.as_str()).copied());
        // The outcome covers every instance of the run, not only those of this pass.
        let state = self.state(run)?;
        let (outcome, word) = run_outcome(&state, &self.step_names(), direction);
        if outcome == Outcome::Failed
            && results
                .iter()
                .any(|(_, o)| *o == InstanceOutcome::NotStarted)
            && self.interrupted.load(Ordering::SeqCst)
        {
            let paused = self
                .record(
                    run,
                    None,
                    None,
                    0,
                    EventKind::RunPaused {
                        reason: "interrupted".into(),
                    },
                )
                .await?;
            self.tell(
                run,
                Some(&paused),
                Fact::RunFinished {
                    outcome: "paused".into(),
                },
            );
            return Ok(RunReport {
                run,
                outcome: "paused".into(),
                instances: results,
            });
        }
        let finished = self
            .record(run, None, None, 0, EventKind::RunFinished { outcome })
            .await?;
        self.tell(
            run,
            Some(&finished),
            Fact::RunFinished {
                outcome: word.to_string(),
            },
        );
        Ok(RunReport {
            run,
            outcome: word.to_string(),
            instances: results,
        })
    }

    /// The instances that a journal failure made this engine put back on their old roots
    /// without recording it (empty unless `drive` failed with [`EngineError::Journal`]).
    pub fn unrecorded_reverts(&self) -> Vec<String> {
        lock(&self.unrecorded_reverts).clone()
    }

    /// True if the instance is inside its downtime window in `state`: its window opened and
    /// did not close, or its revert began and did not finish.
    fn is_down(&self, state: &RunState, instance: &str) -> bool {
        state
            .instance(instance)
            .is_some_and(|inst| self.instance_down(inst))
    }

    /// [`Engine::is_down`], for one instance's part of the state.
    fn instance_down(&self, inst: &journal::InstanceState) -> bool {
        let Some(w) = self.options.window else {
            return false;
        };
        let status = |name: &str| inst.steps.iter().find(|s| s.name == name).map(|s| s.status);
        let all_undone = inst
            .steps
            .iter()
            .all(|s| s.status == StepStatus::UndoFinished);
        let reverting = inst.steps.iter().any(|s| is_undo_status(s.status)) && !all_undone;
        let opened = status(w.opens).is_some_and(|s| !is_undo_status(s));
        let closed = status(w.closes) == Some(StepStatus::Succeeded);
        (opened && !closed) || reverting
    }

    /// The lane of `instance`'s group (made on first use).
    fn lane(&self, instance: &str) -> Arc<Lane> {
        let group = self.options.groups.get(instance).map_or("", String::as_str);
        lock(&self.lanes)
            .entry(group.to_string())
            .or_insert_with(|| Arc::new(Lane::new(&self.options.limits)))
            .clone()
    }

    /// Drives `names`, each instance's steps in order and at most `parallel` instances of a
    /// group at once, counting failures against the budget; gives each instance's outcome, in
    /// the order given. With `urgent` (instances that are down), neither the budget nor an
    /// interrupt keeps one from starting.
    ///
    /// Each group takes its instances in the order given on its own: a daemon whose places
    /// are all taken holds back only its own instances, not those of another daemon.
    async fn pass(
        &self,
        run: RunId,
        names: &[String],
        direction: Direction,
        failures: &Arc<AtomicUsize>,
        urgent: bool,
    ) -> Result<Vec<(String, InstanceOutcome)>, EngineError> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for name in names {
            let group = self.options.groups.get(name).cloned().unwrap_or_default();
            groups.entry(group).or_default().push(name.clone());
        }
        let mut feeders = Vec::new();
        for (_, members) in groups {
            let engine = self.clone_handle();
            let failures = failures.clone();
            feeders.push(tokio::spawn(async move {
                engine.feed(run, members, direction, failures, urgent).await
            }));
        }
        let mut tasks = BTreeMap::new();
        let mut first_error = None;
        for feeder in feeders {
            match feeder.await {
                Ok(Ok(started)) => tasks.extend(started),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(EngineError::Internal(e.to_string()));
                }
            }
        }
        let mut results = Vec::new();
        for name in names {
            let Some(task) = tasks.remove(name) else {
                continue;
            };
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

    /// Starts the tasks of one group's instances, in order, each once it has a place in its
    /// lane; gives their handles.
    async fn feed(
        &self,
        run: RunId,
        names: Vec<String>,
        direction: Direction,
        failures: Arc<AtomicUsize>,
        urgent: bool,
    ) -> Result<Vec<(String, InstanceTask)>, EngineError> {
        let mut tasks = Vec::new();
        for name in names {
            let engine = self.clone_handle();
            let failures = failures.clone();
            // The slot is taken here, before the task exists, so that instances start in the
            // order given (a task taking its own slot would race the others for it).
            let permit = self
                .lane(&name)
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            let task_name = name.clone();
            tasks.push((
                task_name,
                tokio::spawn(async move {
                    let _permit = permit;
                    let over_budget =
                        failures.load(Ordering::SeqCst) > engine.options.limits.max_failures;
                    let held = over_budget || engine.interrupted.load(Ordering::SeqCst);
                    if (held && !urgent) || engine.journal_lost.load(Ordering::SeqCst) {
                        // One whose steps all went through in an earlier pass is done, not
                        // "not started".
                        if direction == Direction::Forward && engine.is_complete(run, &name)? {
                            return Ok(InstanceOutcome::Succeeded);
                        }
                        engine.tell_not_started(run, &name);
                        return Ok(InstanceOutcome::NotStarted);
                    }
                    let began = journal::now_ms();
                    engine.tell(
                        run,
                        None,
                        Fact::InstanceStarted {
                            instance: name.clone(),
                        },
                    );
                    let outcome = match direction {
                        Direction::Forward => engine.forward_instance(run, &name).await?,
                        Direction::Undo => engine.undo_instance(run, &name, false).await?,
                    };
                    if outcome.is_failure() {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                    engine.tell(
                        run,
                        None,
                        Fact::InstanceFinished {
                            instance: name.clone(),
                            outcome: outcome.clone(),
                            duration_ms: Some(journal::now_ms() - began),
                        },
                    );
                    Ok::<_, EngineError>(outcome)
                }),
            ));
        }
        Ok(tasks)
    }

    fn clone_handle(&self) -> Engine<E> {
        Engine {
            journal: self.journal.clone(),
            env: self.env.clone(),
            steps: self.steps.clone(),
            options: self.options.clone(),
            crashed: self.crashed.clone(),
            interrupted: self.interrupted.clone(),
            journal_lost: self.journal_lost.clone(),
            unrecorded_reverts: self.unrecorded_reverts.clone(),
            lanes: self.lanes.clone(),
        }
    }

    async fn forward_instance(
        &self,
        run: RunId,
        instance: &str,
    ) -> Result<InstanceOutcome, EngineError> {
        let state = self.instance_state(run, instance)?;
        let (mut outputs, mut times) = recorded(state.as_ref());
        let status = |name: &str| {
            state
                .as_ref()
                .and_then(|i| i.steps.iter().find(|s| s.name == name))
        };
        if let Some(inst) = &state {
            if inst.steps.iter().any(|s| is_undo_status(s.status)) {
                // Only a revert undoes steps in a forward pass: finish it, never go forward.
                let failed = inst.steps.iter().find(|s| s.error.is_some());
                let step = failed.map_or(String::new(), |s| s.name.clone());
                let error = failed
                    .and_then(|s| s.error.clone())
                    .unwrap_or_else(|| "put back on its old root earlier in this run".into());
                return self.revert(run, instance, step, error, false).await;
            }
        }
        let redo_from = self
            .first_reverted(run, instance, state.as_ref(), &outputs, &times)
            .await;
        let window = self.options.window;
        let mut down = window.is_some_and(|w| {
            status(w.opens).is_some()
                && status(w.closes).is_none_or(|s| s.status != StepStatus::Succeeded)
        });
        if down {
            self.tell(
                run,
                None,
                Fact::WindowOpened {
                    instance: instance.to_string(),
                    resumed: true,
                },
            );
        }
        // Counted among the instances down from here on: a preparation step of another
        // instance gives way to it (see `prep_turn`).
        let lane = self.lane(instance);
        let mut down_place = down.then(|| DownPlace::resumed(&lane.down_now));
        // The step running beside the ones after it, if one is (see `Step::beside_until`).
        let mut side: Option<Side<'_>> = None;
        // Where the window opens: the steps before it prepare, and give way to instances
        // that are down.
        let opens_at = window.and_then(|w| self.steps.iter().position(|s| s.name() == w.opens));
        for (k, step) in self.steps.iter().enumerate() {
            let name = step.name();
            if side.as_ref().is_some_and(|s| s.until == name) {
                let (sk, result) = side.take().expect("checked above").finish().await;
                let recorded = state.as_ref();
                if let Some(end) = self
                    .settle(
                        run,
                        instance,
                        (sk, k - 1),
                        result,
                        down,
                        false,
                        recorded,
                        &mut outputs,
                        &mut times,
                    )
                    .await
                {
                    return end;
                }
            }
            let prev = status(name);
            let redo = redo_from.is_some_and(|r| k >= r);
            if prev.is_some_and(|p| p.status == StepStatus::Succeeded) && !redo {
                continue;
            }
            let opens = window.is_some_and(|w| w.opens == name);
            let closes = window.is_some_and(|w| w.closes == name);
            let edge = if opens && !down {
                Some(Edge::Opens)
            } else if closes && down {
                Some(Edge::Closes {
                    opened_at_ms: window
                        .and_then(|w| times.get(w.opens))
                        .map_or_else(journal::now_ms, |t| t.0),
                    reverted: false,
                })
            } else {
                None
            };
            if edge == Some(Edge::Opens) {
                // Held until the window closes, or until this instance's pass ends (a failure
                // held down, a revert: nothing is done to it any more in this pass).
                let permit = lane
                    .down_places
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| EngineError::Internal(e.to_string()))?;
                down_place = Some(DownPlace::new(permit, &lane.down_now));
            }
            if opens {
                down = true;
            }
            // While another instance is down, preparation goes one step at a time, so that
            // the daemon serves the instances inside their window first: on a 2-core host
            // LXD 5.0.2 runs its operations nearly one after another, and a clone made
            // beside a rename or a start lengthens that website's downtime.
            let _turn = match opens_at {
                Some(at) if k < at && !down && lane.down_now.load(Ordering::SeqCst) > 0 => {
                    Some(lane.prep_turn.lock().await)
                }
                _ => None,
            };
            let attempt = prev.map_or(1, |p| p.attempt + 1);
            if let Some(until) = step
                .beside_until()
                .filter(|_| edge.is_none() && side.is_none())
            {
                let (side_outputs, side_times) = (outputs.clone(), times.clone());
                let step = step.clone();
                side = Some(Side::new(
                    k,
                    until,
                    Box::pin(async move {
                        self.drive_step(
                            run,
                            instance,
                            step.as_ref(),
                            Direction::Forward,
                            attempt,
                            &side_outputs,
                            &side_times,
                            None,
                        )
                        .await
                    }),
                ));
                continue;
            }
            let drive = self.drive_step(
                run,
                instance,
                step.as_ref(),
                Direction::Forward,
                attempt,
                &outputs,
                &times,
                edge,
            );
            let result = match side.as_mut() {
                Some(s) => s.alongside(drive).await,
                None => drive.await,
            };
            if !matches!(result, Ok(Ok(_))) {
                // This instance goes no further in this pass: let the step beside end first,
                // so that what it did is recorded before anything is undone (after a crash,
                // it ends at its next record, as every other instance's step does).
                if let Some(s) = side.take() {
                    if let (sk, Ok(Ok((value, started)))) = s.finish().await {
                        let side_name = self.steps[sk].name();
                        outputs.insert(side_name, value);
                        times.insert(side_name.to_string(), (started, Some(journal::now_ms())));
                    }
                }
            }
            let recorded = state.as_ref();
            if let Some(end) = self
                .settle(
                    run,
                    instance,
                    (k, k),
                    result,
                    down,
                    closes,
                    recorded,
                    &mut outputs,
                    &mut times,
                )
                .await
            {
                return end;
            }
            if closes {
                down = false;
                drop(down_place.take());
            }
        }
        if let Some(s) = side.take() {
            let (sk, result) = s.finish().await;
            let recorded = state.as_ref();
            let last = self.steps.len() - 1;
            if let Some(end) = self
                .settle(
                    run,
                    instance,
                    (sk, last),
                    result,
                    down,
                    false,
                    recorded,
                    &mut outputs,
                    &mut times,
                )
                .await
            {
                return end;
            }
        }
        Ok(InstanceOutcome::Succeeded)
    }

    /// What follows the end of step `k` of a forward pass, the pass having driven the steps
    /// up to `reached` (later than `k` for a step that ran beside others): its output kept for
    /// the later steps (`None`: go on), or how the instance's pass ends. A step that failed
    /// for good inside the window reverts the instance; a journal that refused an event has
    /// the instance put back unrecorded, if it was down.
    #[allow(clippy::too_many_arguments)]
    async fn settle(
        &self,
        run: RunId,
        instance: &str,
        (k, reached): (usize, usize),
        result: Result<StepResult, DriveFailure>,
        down: bool,
        closes: bool,
        recorded: Option<&journal::InstanceState>,
        outputs: &mut Outputs,
        times: &mut Times,
    ) -> Option<Result<InstanceOutcome, EngineError>> {
        let name = self.steps[k].name();
        match result {
            Ok(Ok((value, started))) => {
                outputs.insert(name, value);
                times.insert(name.to_string(), (started, Some(journal::now_ms())));
                None
            }
            // Without the daemon nothing can be put back: the next resume finishes it.
            Ok(Err(error))
                if down
                    && self.options.on_failure == OnFailure::Revert
                    && !error.is_unreachable() =>
            {
                Some(
                    self.revert(run, instance, name.to_string(), error.to_string(), true)
                        .await,
                )
            }
            Ok(Err(error)) => Some(Ok(InstanceOutcome::Failed {
                step: name.to_string(),
                error: error.to_string(),
            })),
            Err(DriveFailure {
                error: error @ EngineError::Journal(_),
                applied,
            }) => {
                self.journal_lost.store(true, Ordering::SeqCst);
                if down && !(closes && applied) {
                    // Every step that may have had an effect: those this pass drove, and any
                    // later one an earlier pass recorded (a redo starts before them).
                    let last_recorded = self
                        .steps
                        .iter()
                        .rposition(|s| {
                            recorded.is_some_and(|i| i.steps.iter().any(|r| r.name == s.name()))
                        })
                        .unwrap_or(0);
                    let upto = reached.max(last_recorded);
                    self.revert_unrecorded(run, instance, upto, outputs, times)
                        .await;
                }
                Some(Err(error))
            }
            Err(DriveFailure { error, .. }) => Some(Err(error)),
        }
    }

    /// The index of the first step recorded as succeeded whose effect no longer holds, among
    /// the succeeded steps that lead an unfinished instance (see [`Step::holds`]).
    async fn first_reverted(
        &self,
        run: RunId,
        instance: &str,
        state: Option<&journal::InstanceState>,
        outputs: &Outputs,
        times: &Times,
    ) -> Option<usize> {
        let inst = state?;
        let succeeded = |name: &str| {
            inst.steps
                .iter()
                .any(|s| s.name == name && s.status == StepStatus::Succeeded)
        };
        if self.steps.iter().all(|s| succeeded(s.name())) {
            return None;
        }
        for (k, step) in self.steps.iter().enumerate() {
            if !succeeded(step.name()) {
                // A step that ran beside the later ones may be unfinished while they
                // succeeded: those are checked all the same.
                if step.beside_until().is_some() {
                    continue;
                }
                return None;
            }
            let cx = StepCx {
                env: &*self.env,
                run,
                instance,
                attempt: 0,
                outputs,
                times,
            };
            let holds = match step.holds(&cx).await {
                Ok(holds) => holds,
                Err(e) => {
                    tracing::warn!(run = %run, instance, step = step.name(), error = %e, "cannot tell whether the step's effect holds; applying it again");
                    false
                }
            };
            if !holds {
                tracing::warn!(run = %run, instance, step = step.name(), "the effect of this step was reverted outside reroot; applying it and the steps after it again");
                return Some(k);
            }
        }
        None
    }

    /// Puts an instance whose step `step` failed inside its window back where it was: every
    /// step that ran is undone (journaled, like an undo), so its old root runs again.
    /// `told_down`: the observer was already told that its window is open.
    async fn revert(
        &self,
        run: RunId,
        instance: &str,
        step: String,
        error: String,
        told_down: bool,
    ) -> Result<InstanceOutcome, EngineError> {
        tracing::warn!(run = %run, instance, step, error, "failed inside its downtime window: putting it back on its old root");
        self.tell(
            run,
            None,
            Fact::RevertStarted {
                instance: instance.to_string(),
                step: step.clone(),
                error: error.clone(),
            },
        );
        Ok(match self.undo_instance(run, instance, told_down).await? {
            InstanceOutcome::Undone => InstanceOutcome::Reverted { step, error },
            InstanceOutcome::UndoFailed {
                step: undo_step,
                error: undo_error,
            } => InstanceOutcome::UndoFailed {
                step: undo_step,
                error: format!(
                    "{undo_error} (while putting it back after `{step}` failed: {error})"
                ),
            },
            other => other,
        })
    }

    /// Puts an instance back without recording anything, after the journal refused an event
    /// with the instance inside its window: steps `0..=upto` are undone in reverse, each
    /// checking the live state first, so those that never had an effect change nothing. Best
    /// effort: what cannot be undone is logged, and the next resume looks at the live state.
    async fn revert_unrecorded(
        &self,
        run: RunId,
        instance: &str,
        upto: usize,
        outputs: &Outputs,
        times: &Times,
    ) {
        tracing::error!(run = %run, instance, "the journal cannot record any more: putting the instance back on its old root, unrecorded");
        let cx = StepCx {
            env: &*self.env,
            run,
            instance,
            attempt: 0,
            outputs,
            times,
        };
        let mut complete = true;
        for step in self.steps[..=upto].iter().rev() {
            let mut retried = 0;
            loop {
                match step.undo(&cx).await {
                    Ok(()) => break,
                    Err(e) => match self.retry_wait(&e, retried) {
                        Some(wait) => {
                            retried += 1;
                            tokio::time::sleep(wait).await;
                        }
                        None => {
                            tracing::error!(run = %run, instance, step = step.name(), error = %e, "unrecorded undo failed");
                            complete = false;
                            break;
                        }
                    },
                }
            }
        }
        if complete {
            lock(&self.unrecorded_reverts).push(instance.to_string());
        }
    }

    /// Undoes every step of `instance` that ran, in reverse. `told_down`: the observer was
    /// already told that its window is open (a revert within the pass that opened it).
    async fn undo_instance(
        &self,
        run: RunId,
        instance: &str,
        told_down: bool,
    ) -> Result<InstanceOutcome, EngineError> {
        let state = self.instance_state(run, instance)?;
        let (outputs, times) = recorded(state.as_ref());
        let window = self.options.window;
        // Down from the start of the window's first step, as the journal has it.
        let mut opened_at_ms = window.and_then(|w| times.get(w.opens)).map(|t| t.0);
        let mut down = state.as_ref().is_some_and(|i| self.instance_down(i));
        if down && !told_down {
            self.tell(
                run,
                None,
                Fact::WindowOpened {
                    instance: instance.to_string(),
                    resumed: true,
                },
            );
        }
        for step in self.steps.iter().rev() {
            let name = step.name();
            let Some(prev) = state
                .as_ref()
                .and_then(|i| i.steps.iter().find(|s| s.name == name))
            else {
                continue;
            };
            // Undoing the step that brought the instance up takes it down; undoing the one
            // that took it down brings its old root back.
            let edge = match window {
                Some(w) if w.closes == name && !down => Some(Edge::Opens),
                Some(w) if w.opens == name && down => Some(Edge::Closes {
                    opened_at_ms: opened_at_ms.unwrap_or_else(journal::now_ms),
                    reverted: true,
                }),
                _ => None,
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
            match self
                .drive_step(
                    run,
                    instance,
                    step.as_ref(),
                    Direction::Undo,
                    attempt,
                    &outputs,
                    &times,
                    edge,
                )
                .await
                .map_err(|f| f.error)?
            {
                Ok((_, started)) => match edge {
                    Some(Edge::Opens) => {
                        down = true;
                        opened_at_ms = Some(started);
                    }
                    Some(Edge::Closes { .. }) => down = false,
                    None => {}
                },
                Err(error) => {
                    return Ok(InstanceOutcome::UndoFailed {
                        step: name.to_string(),
                        error: error.to_string(),
                    })
                }
            }
        }
        if down {
            // Every step is undone, yet the window's first step was undone in an earlier
            // pass (a crash came after it): the old root is back all the same.
            let now = journal::now_ms();
            self.tell(
                run,
                None,
                Fact::WindowClosed {
                    instance: instance.to_string(),
                    down_ms: now - opened_at_ms.unwrap_or(now),
                    reverted: true,
                },
            );
        }
        Ok(InstanceOutcome::Undone)
    }

    /// Applies (forward) or undoes one step of one instance from attempt number `attempt` on:
    /// each attempt is journaled as started, then succeeded/finished or failed, with the fault
    /// points around it; a transient failure is tried again within the retry budget. Gives the
    /// step's output and the time its last attempt started, or the error it failed with for
    /// good (`Ok(Err(_))`: an outcome, not an engine failure). Each record is told to the
    /// observer, and `edge` says whether the step opens or closes the downtime window.
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
        edge: Option<Edge>,
    ) -> Result<StepResult, DriveFailure> {
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
        let first_try = std::time::Instant::now();
        loop {
            let kind = match direction {
                Direction::Forward => EventKind::StepStarted,
                Direction::Undo => EventKind::UndoStarted,
            };
            let started_event = self
                .record(run, Some(instance), Some(name), attempt, kind)
                .await?;
            self.tell(
                run,
                Some(&started_event),
                Fact::StepStarted {
                    instance: instance.to_string(),
                    step: name.to_string(),
                    attempt,
                    direction,
                },
            );
            if retried == 0 && edge == Some(Edge::Opens) {
                self.tell(
                    run,
                    Some(&started_event),
                    Fact::WindowOpened {
                        instance: instance.to_string(),
                        resumed: false,
                    },
                );
            }
            let started = journal::now_ms();
            self.fault(instance, name, before)?;
            let point = FaultPoint {
                instance,
                step: name,
                moment: before,
            };
            let result = if direction == Direction::Forward && self.options.faults.fails(&point) {
                Err(StepError::new(format!("injected failure of step {name}")))
            } else {
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
            // What the observer hears when this attempt ends, either way.
            let finished =
                |ended: &journal::Event, error: Option<String>, retry, output| Fact::StepFinished {
                    instance: instance.to_string(),
                    step: name.to_string(),
                    attempt,
                    direction,
                    duration_ms: ended.at_ms - started_event.at_ms,
                    error,
                    retry,
                    output,
                };
            match result {
                Ok(value) => {
                    let kind = match direction {
                        Direction::Forward => EventKind::StepSucceeded {
                            output: value.to_string(),
                        },
                        Direction::Undo => EventKind::UndoFinished,
                    };
                    let ended = self
                        .record(run, Some(instance), Some(name), attempt, kind)
                        .await
                        .map_err(|error| DriveFailure {
                            error,
                            applied: true,
                        })?;
                    let output = (direction == Direction::Forward).then(|| value.clone());
                    self.tell(run, Some(&ended), finished(&ended, None, false, output));
                    if let Some(Edge::Closes {
                        opened_at_ms,
                        reverted,
                    }) = edge
                    {
                        self.tell(
                            run,
                            Some(&ended),
                            Fact::WindowClosed {
                                instance: instance.to_string(),
                                down_ms: ended.at_ms - opened_at_ms,
                                reverted,
                            },
                        );
                    }
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
                    let ended = self
                        .record(run, Some(instance), Some(name), attempt, kind)
                        .await?;
                    let wait = if e.is_unreachable() {
                        (first_try.elapsed() < UNREACHABLE_BOUND).then_some(UNREACHABLE_RETRY)
                    } else {
                        self.retry_wait(&e, retried)
                    };
                    let fact = finished(&ended, Some(error.clone()), wait.is_some(), None);
                    self.tell(run, Some(&ended), fact);
                    let Some(wait) = wait else {
                        return Ok(Err(e));
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
        (e.is_transient() && retried < self.options.limits.retries)
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

    /// The run's state, from the journal writer's cache (no replay from the store).
    fn state(&self, run: RunId) -> Result<RunState, EngineError> {
        Ok(self.journal.run_state(run)?)
    }

    /// One instance's part of the run's state, from the writer's cache.
    fn instance_state(
        &self,
        run: RunId,
        instance: &str,
    ) -> Result<Option<journal::InstanceState>, EngineError> {
        Ok(self.journal.instance_state(run, instance)?)
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
    ) -> Result<journal::Event, EngineError> {
        if self.crashed.load(Ordering::SeqCst) {
            return Err(EngineError::Crashed);
        }
        let journal = self.journal.clone();
        let instance = instance.map(str::to_string);
        let step = step.map(str::to_string);
        let event = tokio::task::spawn_blocking(move || {
            journal.append(run, instance.as_deref(), step.as_deref(), attempt, kind)
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))??;
        Ok(event)
    }

    /// Tells the observer, if there is one, a fact that `recorded` (the journal event that
    /// records it, if one does) dates.
    fn tell(&self, run: RunId, recorded: Option<&journal::Event>, fact: Fact) {
        observe::tell(
            self.options.observer.as_ref(),
            EngineEvent {
                run,
                at_ms: recorded.map_or_else(journal::now_ms, |e| e.at_ms),
                seq: recorded.map(|e| e.seq),
                fact,
            },
        );
    }

    /// Tells the observer that `instance` ends this pass without having started.
    /// True if every step of the pipeline succeeded for this instance.
    fn is_complete(&self, run: RunId, instance: &str) -> Result<bool, EngineError> {
        let state = self.instance_state(run, instance)?;
        Ok(state.is_some_and(|i| {
            self.steps.iter().all(|s| {
                i.steps
                    .iter()
                    .any(|st| st.name == s.name() && st.status == StepStatus::Succeeded)
            })
        }))
    }

    fn tell_not_started(&self, run: RunId, instance: &str) {
        self.tell(
            run,
            None,
            Fact::InstanceFinished {
                instance: instance.to_string(),
                outcome: InstanceOutcome::NotStarted,
                duration_ms: None,
            },
        );
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn is_undo_status(s: StepStatus) -> bool {
    matches!(
        s,
        StepStatus::UndoStarted | StepStatus::UndoFinished | StepStatus::UndoFailed
    )
}

/// Whether a step opens or closes the downtime window, in the direction it is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    /// Its start takes the instance down.
    Opens,
    /// Its success brings the instance up again, down since `opened_at_ms`; `reverted`: on
    /// its old root.
    Closes { opened_at_ms: i64, reverted: bool },
}

/// When each step of an instance started and ended (ms since the epoch), by step name.
type Times = BTreeMap<String, (i64, Option<i64>)>;

/// The outputs and times of an instance's recorded steps.
fn recorded(state: Option<&journal::InstanceState>) -> (Outputs, Times) {
    let mut outputs = Outputs::default();
    let mut times = BTreeMap::new();
    if let Some(inst) = state {
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
