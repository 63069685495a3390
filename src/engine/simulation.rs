//! Deterministic simulation of crashes: a small in-memory world of containers, a rebuild-shaped
//! pipeline of idempotent steps over it, and the real engine and journal. The engine is made to
//! die at every fault point, and at seeded random sequences of them, then the run is resumed
//! or undone by a fresh engine, and the world's invariants are checked.
//!
//! This covers the engine's resume and undo logic exhaustively; the same behaviours are shown
//! on the real LXD daemon by the crash tests in `tests/`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use journal::{Journal, RunHeader, RunId, RunStatus};
use serde_json::json;

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Container {
    template: &'static str,
    running: bool,
    built_by: Option<RunId>,
}

#[derive(Debug, Default)]
struct World {
    containers: BTreeMap<String, Container>,
    /// Data on the instance's external filesystem: must never change.
    data: BTreeMap<String, String>,
    snapshots: BTreeSet<String>,
}

type Env = Mutex<World>;

fn tmp_name(i: &str, run: RunId) -> String {
    format!("{i}-new-{}", journal::short_id(&run))
}
fn old_name(i: &str, run: RunId) -> String {
    format!("{i}-old-{}", journal::short_id(&run))
}

/// One step of the simulated pipeline; apply and undo are closures over the world.
struct SimStep {
    name: &'static str,
    apply: fn(&mut World, &str, RunId) -> Result<serde_json::Value, StepError>,
    undo: fn(&mut World, &str, RunId) -> Result<(), StepError>,
    /// Whether the step's effect still holds (`None`: the default, it does).
    holds: Option<fn(&World, &str, RunId) -> bool>,
    /// The step that waits for this one (see [`Step::beside_until`]).
    beside_until: Option<&'static str>,
}

impl Step<Env> for SimStep {
    fn name(&self) -> &'static str {
        self.name
    }
    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, Env>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            let mut w = cx.env.lock().map_err(|e| StepError::new(e.to_string()))?;
            (self.apply)(&mut w, cx.instance, cx.run)
        })
    }
    fn undo<'a>(&'a self, cx: &'a StepCx<'a, Env>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            let mut w = cx.env.lock().map_err(|e| StepError::new(e.to_string()))?;
            (self.undo)(&mut w, cx.instance, cx.run)
        })
    }
    fn holds<'a>(&'a self, cx: &'a StepCx<'a, Env>) -> BoxFuture<'a, Result<bool, StepError>> {
        Box::pin(async move {
            let w = cx.env.lock().map_err(|e| StepError::new(e.to_string()))?;
            Ok(self.holds.is_none_or(|h| h(&w, cx.instance, cx.run)))
        })
    }
    fn beside_until(&self) -> Option<&'static str> {
        self.beside_until
    }
}

/// The old root of `i`, under its name or retired.
fn old_root<'w>(w: &'w World, i: &str, run: RunId) -> Option<&'w Container> {
    [i.to_string(), old_name(i, run)]
        .iter()
        .filter_map(|n| w.containers.get(n))
        .find(|c| c.built_by.is_none())
}

fn pipeline() -> Vec<Arc<dyn Step<Env>>> {
    let steps = vec![
        SimStep {
            name: "prepare",
            apply: |w, i, run| {
                let t = tmp_name(i, run);
                let swapped = w.containers.get(i).is_some_and(|c| c.built_by == Some(run));
                if !swapped && !w.containers.contains_key(&t) {
                    w.containers.insert(
                        t,
                        Container {
                            template: "new",
                            running: false,
                            built_by: Some(run),
                        },
                    );
                }
                Ok(json!({ "tmp": tmp_name(i, run) }))
            },
            undo: |w, i, run| {
                let t = tmp_name(i, run);
                if let Some(c) = w.containers.get(&t) {
                    if c.running {
                        return Err("cannot delete a running container".into());
                    }
                    w.containers.remove(&t);
                }
                Ok(())
            },
            holds: None,
            beside_until: None,
        },
        SimStep {
            name: "stop",
            apply: |w, i, run| {
                let was = w
                    .containers
                    .get(i)
                    .is_some_and(|c| c.running && c.built_by.is_none());
                for name in [i.to_string(), old_name(i, run)] {
                    if let Some(c) = w.containers.get_mut(&name) {
                        if c.built_by.is_none() {
                            c.running = false;
                        }
                    }
                }
                Ok(json!({ "was_running": was }))
            },
            // The stop's undo starts the old root again once it is back under its name.
            undo: |w, i, _| {
                if let Some(c) = w.containers.get_mut(i) {
                    if c.built_by.is_none() {
                        c.running = true;
                    }
                }
                Ok(())
            },
            holds: Some(|w, i, run| old_root(w, i, run).is_none_or(|c| !c.running)),
            beside_until: None,
        },
        SimStep {
            name: "snapshot",
            apply: |w, i, run| {
                w.snapshots.insert(format!("{i}@{run}"));
                Ok(json!(null))
            },
            undo: |_, _, _| Ok(()),
            holds: None,
            // As in a rebuild: beside the renames, and `start` waits for it.
            beside_until: Some("start"),
        },
        SimStep {
            name: "retire",
            apply: |w, i, run| {
                let o = old_name(i, run);
                match w.containers.get(i) {
                    Some(c) if c.built_by.is_none() => {
                        if c.running {
                            return Err("cannot rename a running container".into());
                        }
                        let c = w.containers.remove(i).ok_or("vanished")?;
                        w.containers.insert(o, c);
                    }
                    _ => {}
                }
                Ok(json!({ "retired": old_name(i, run) }))
            },
            undo: |w, i, run| {
                let o = old_name(i, run);
                if w.containers.contains_key(&o) {
                    if w.containers.contains_key(i) {
                        return Err(format!("{i} is taken; cannot bring back {o}").into());
                    }
                    let c = w.containers.remove(&o).ok_or("vanished")?;
                    w.containers.insert(i.to_string(), c);
                }
                Ok(())
            },
            holds: Some(|w, i, _| w.containers.get(i).is_none_or(|c| c.built_by.is_some())),
            beside_until: None,
        },
        SimStep {
            name: "swap",
            apply: |w, i, run| {
                let t = tmp_name(i, run);
                if let Some(c) = w.containers.get(i) {
                    if c.built_by == Some(run) {
                        return Ok(json!(null));
                    }
                    return Err(format!("{i} still exists").into());
                }
                let c = w.containers.remove(&t).ok_or("the new root is missing")?;
                w.containers.insert(i.to_string(), c);
                Ok(json!(null))
            },
            undo: |w, i, run| {
                if w.containers.get(i).is_some_and(|c| c.built_by == Some(run)) {
                    let c = w.containers.remove(i).ok_or("vanished")?;
                    if c.running {
                        return Err("cannot rename a running container".into());
                    }
                    w.containers.insert(tmp_name(i, run), c);
                }
                Ok(())
            },
            holds: None,
            beside_until: None,
        },
        SimStep {
            name: "start",
            apply: |w, i, run| {
                if !w.snapshots.contains(&format!("{i}@{run}")) {
                    return Err("started before its data was snapshotted".into());
                }
                let c = w.containers.get_mut(i).ok_or("nothing to start")?;
                if c.built_by != Some(run) {
                    return Err("the instance is not the new root".into());
                }
                c.running = true;
                Ok(json!(null))
            },
            undo: |w, i, run| {
                if let Some(c) = w.containers.get_mut(i) {
                    if c.built_by == Some(run) {
                        c.running = false;
                    }
                }
                Ok(())
            },
            holds: None,
            beside_until: None,
        },
    ];
    steps
        .into_iter()
        .map(|s| Arc::new(s) as Arc<dyn Step<Env>>)
        .collect()
}

fn world(instances: &[String]) -> World {
    let mut w = World::default();
    for i in instances {
        w.containers.insert(
            i.clone(),
            Container {
                template: "old",
                running: true,
                built_by: None,
            },
        );
        w.data.insert(i.clone(), format!("data of {i}"));
    }
    w
}

fn header(instances: &[String]) -> RunHeader {
    RunHeader {
        id: RunHeader::new_id(),
        command: vec!["reroot".into(), "rebuild".into()],
        user: "test".into(),
        host: "sim".into(),
        started_at_ms: journal::now_ms(),
        config_digests: vec![],
        instances: instances.to_vec(),
        options: BTreeMap::new(),
    }
}

/// The engine options of most simulations: `parallel` at once, no failure budget, the
/// rebuild's downtime window.
fn sim_options(parallel: usize, faults: Faults) -> EngineOptions {
    EngineOptions {
        limits: Limits {
            parallel,
            max_failures: usize::MAX,
            ..Limits::default()
        },
        faults,
        window: Some(WINDOW),
        ..EngineOptions::default()
    }
}

fn engine(j: &Arc<Journal>, env: &Arc<Env>, parallel: usize, faults: Faults) -> Engine<Env> {
    Engine::new(
        j.clone(),
        env.clone(),
        pipeline(),
        sim_options(parallel, faults),
    )
}

/// The simulated pipeline's downtime window, as in a rebuild.
const WINDOW: Window = Window {
    opens: "stop",
    closes: "start",
};

/// Fires at the `n`-th fault point reached (0-based), then never again.
fn crash_at(n: usize) -> (Faults, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    (
        Faults::from_hook(move |_| s.fetch_add(1, Ordering::SeqCst) == n),
        seen,
    )
}

fn assert_rebuilt(w: &World, instances: &[String], run: RunId, data: &BTreeMap<String, String>) {
    assert_eq!(&w.data, data, "data changed");
    for i in instances {
        let c = w
            .containers
            .get(i)
            .unwrap_or_else(|| panic!("{i} missing: {w:?}"));
        assert_eq!(c.template, "new", "{i} not on the new template: {w:?}");
        assert!(c.running, "{i} not running: {w:?}");
        assert!(
            !w.containers.contains_key(&tmp_name(i, run)),
            "stray new root: {w:?}"
        );
        assert!(
            w.containers.contains_key(&old_name(i, run)),
            "retired root missing: {w:?}"
        );
    }
    assert_eq!(
        w.containers.len(),
        instances.len() * 2,
        "unexpected containers: {w:?}"
    );
}

fn assert_restored(w: &World, instances: &[String], data: &BTreeMap<String, String>) {
    assert_eq!(&w.data, data, "data changed");
    for i in instances {
        let c = w
            .containers
            .get(i)
            .unwrap_or_else(|| panic!("{i} missing: {w:?}"));
        assert_eq!(c.template, "old", "{i} not back on the old root: {w:?}");
        assert!(c.running, "{i} not running again: {w:?}");
    }
    assert_eq!(
        w.containers.len(),
        instances.len(),
        "leftover containers: {w:?}"
    );
}

/// Runs `instances` with a crash at fault point `n`; returns the run and whether it crashed.
async fn crash_once(
    dir: &std::path::Path,
    env: &Arc<Env>,
    instances: &[String],
    parallel: usize,
    n: usize,
) -> (RunId, bool) {
    let j = Arc::new(Journal::open(dir).expect("open journal"));
    let h = header(instances);
    let run = h.id;
    j.create_run(h).expect("create run");
    let (faults, _) = crash_at(n);
    let r = engine(&j, env, parallel, faults)
        .drive(run, instances, Direction::Forward)
        .await;
    let crashed = matches!(r, Err(EngineError::Crashed));
    if !crashed {
        let report = r.expect("a pass without a crash succeeds");
        assert!(report.is_success(), "{report:?}");
    }
    (run, crashed)
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("web{i}")).collect()
}

/// A new run over `n` instances (web0, web1, ...) in a fresh world and journal: the journal's
/// directory (kept while it lives), the names, the world, the journal and the run.
fn fresh_run(
    n: usize,
) -> (
    tempfile::TempDir,
    Vec<String>,
    Arc<Env>,
    Arc<Journal>,
    RunId,
) {
    let dir = tempfile::tempdir().unwrap();
    let instances = names(n);
    let env = Arc::new(Mutex::new(world(&instances)));
    let j = Arc::new(Journal::open(dir.path()).unwrap());
    let h = header(&instances);
    let run = h.id;
    j.create_run(h).unwrap();
    (dir, instances, env, j, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_crash_point_then_resume_completes_the_rebuild() {
    for (count, parallel) in [(1, 1), (3, 2)] {
        let instances = names(count);
        let points = pipeline().len() * 3 * count; // forward moments only
        for n in 0..points {
            let dir = tempfile::tempdir().unwrap();
            let env = Arc::new(Mutex::new(world(&instances)));
            let data = env.lock().unwrap().data.clone();
            let (run, crashed) = crash_once(dir.path(), &env, &instances, parallel, n).await;
            assert!(crashed, "fault point {n} of {points} was never reached");
            // The process is gone; a new one resumes.
            let j = Arc::new(Journal::open(dir.path()).expect("reopen"));
            let report = engine(&j, &env, parallel, Faults::none())
                .drive(run, &instances, Direction::Forward)
                .await
                .expect("resume");
            assert!(report.is_success(), "crash at {n}: {report:?}");
            assert_eq!(j.replay(run).unwrap().status, RunStatus::Succeeded);
            assert_rebuilt(&env.lock().unwrap(), &instances, run, &data);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_crash_point_then_undo_restores_the_old_roots() {
    for (count, parallel) in [(1, 1), (2, 2)] {
        let instances = names(count);
        let points = pipeline().len() * 3 * count;
        for n in 0..points {
            let dir = tempfile::tempdir().unwrap();
            let env = Arc::new(Mutex::new(world(&instances)));
            let data = env.lock().unwrap().data.clone();
            let (run, crashed) = crash_once(dir.path(), &env, &instances, parallel, n).await;
            assert!(crashed);
            let j = Arc::new(Journal::open(dir.path()).expect("reopen"));
            let report = engine(&j, &env, parallel, Faults::none())
                .drive(run, &instances, Direction::Undo)
                .await
                .expect("undo");
            assert!(report.is_success(), "crash at {n}: {report:?}");
            assert_eq!(j.replay(run).unwrap().status, RunStatus::Undone);
            assert_restored(&env.lock().unwrap(), &instances, &data);
        }
    }
}

/// A tiny deterministic generator (xorshift), so that every seed replays the same schedule.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Seeded random schedules: several crashes in a row, during the run, during resumes and
/// during the undo, ending in a full resume or a full undo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_random_crash_sequences_converge() {
    let seeds: u64 = std::env::var("REROOT_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let mut crash_points = 0;
    for seed in 1..=seeds {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let instances = names(1 + rng.below(3));
        let parallel = 1 + rng.below(3);
        let undo = rng.below(2) == 0;
        let dir = tempfile::tempdir().unwrap();
        let env = Arc::new(Mutex::new(world(&instances)));
        let data = env.lock().unwrap().data.clone();
        let points = pipeline().len() * 3 * instances.len();
        let (run, _) = crash_once(dir.path(), &env, &instances, parallel, rng.below(points)).await;
        crash_points += 1;
        // Up to three more crashes, each in a resume or an undo pass.
        for _ in 0..rng.below(4) {
            let j = Arc::new(Journal::open(dir.path()).expect("reopen"));
            let dir_pass = if undo {
                Direction::Undo
            } else {
                Direction::Forward
            };
            let (faults, _) = crash_at(rng.below(points));
            match engine(&j, &env, parallel, faults)
                .drive(run, &instances, dir_pass)
                .await
            {
                Err(EngineError::Crashed) => crash_points += 1,
                Ok(_) => break,
                Err(e) => panic!("seed {seed}: {e}"),
            }
        }
        let j = Arc::new(Journal::open(dir.path()).expect("reopen"));
        let last = if undo {
            Direction::Undo
        } else {
            Direction::Forward
        };
        let state = j.replay(run).unwrap();
        if state.status == RunStatus::Undone || (state.status == RunStatus::Succeeded && !undo) {
            // Already finished by an earlier pass.
        } else {
            let report = engine(&j, &env, parallel, Faults::none())
                .drive(run, &instances, last)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert!(report.is_success(), "seed {seed}: {report:?}");
        }
        let w = env.lock().unwrap();
        if undo {
            assert_restored(&w, &instances, &data);
        } else {
            assert_rebuilt(&w, &instances, run, &data);
        }
    }
    assert!(crash_points >= seeds as usize);
}

/// The pipeline, then a `verify` step whose health check fails on web0 only.
fn pipeline_failing_web0() -> Vec<Arc<dyn Step<Env>>> {
    let mut p = pipeline();
    p.push(Arc::new(SimStep {
        name: "verify",
        apply: |_, i, _| {
            if i == "web0" {
                Err("health check failed".into())
            } else {
                Ok(json!(null))
            }
        },
        undo: |_, _, _| Ok(()),
        holds: None,
        beside_until: None,
    }));
    p
}

#[tokio::test]
async fn a_failing_step_stops_its_instance_and_the_budget_stops_new_ones() {
    let (_dir, instances, env, j, run) = fresh_run(3);
    // web0's health check fails; with a budget of 0 failures, web1 and web2 never start.
    let report = Engine::new(
        j.clone(),
        env.clone(),
        pipeline_failing_web0(),
        EngineOptions {
            limits: Limits {
                parallel: 1,
                max_failures: 0,
                ..Limits::default()
            },
            ..EngineOptions::default()
        },
    )
    .drive(run, &instances, Direction::Forward)
    .await
    .unwrap();
    assert_eq!(
        report.instances[0].1,
        InstanceOutcome::Failed {
            step: "verify".into(),
            error: "health check failed".into()
        }
    );
    assert_eq!(report.instances[1].1, InstanceOutcome::NotStarted);
    assert_eq!(report.instances[2].1, InstanceOutcome::NotStarted);
    assert_eq!(report.outcome, "failed");
    let state = j.replay(run).unwrap();
    assert_eq!(state.status, RunStatus::Failed);
    for untouched in ["web1", "web2"] {
        let steps = state.instance(untouched).map_or(0, |i| i.steps.len());
        assert_eq!(steps, 0, "{untouched} must not have been touched");
    }
}

#[tokio::test]
async fn a_passing_failure_is_retried_and_every_attempt_is_journaled() {
    static FAILS_LEFT: AtomicUsize = AtomicUsize::new(2);
    let (_dir, instances, env, j, run) = fresh_run(1);
    let mut steps = pipeline();
    steps.insert(
        1,
        Arc::new(SimStep {
            name: "flaky",
            apply: |_, _, _| {
                if FAILS_LEFT.fetch_sub(1, Ordering::SeqCst) > 0 {
                    Err(StepError::transient("daemon busy"))
                } else {
                    Ok(json!(null))
                }
            },
            undo: |_, _, _| Ok(()),
            holds: None,
            beside_until: None,
        }),
    );
    let options = EngineOptions {
        limits: Limits {
            retries: 2,
            ..Limits::default()
        },
        retry_delay: std::time::Duration::from_millis(1),
        ..EngineOptions::default()
    };
    let report = Engine::new(j.clone(), env.clone(), steps, options)
        .drive(run, &instances, Direction::Forward)
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    let events = j.events(run).unwrap();
    let flaky: Vec<_> = events
        .iter()
        .filter(|e| e.step.as_deref() == Some("flaky"))
        .map(|e| (e.attempt, e.kind.name()))
        .collect();
    assert_eq!(
        flaky,
        vec![
            (1, "StepStarted"),
            (1, "StepFailed"),
            (2, "StepStarted"),
            (2, "StepFailed"),
            (3, "StepStarted"),
            (3, "StepSucceeded"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_go_first_and_a_failed_canary_holds_the_rest() {
    for canary_fails in [false, true] {
        let (_dir, instances, env, j, run) = fresh_run(4);
        let report = Engine::new(
            j.clone(),
            env.clone(),
            if canary_fails {
                pipeline_failing_web0()
            } else {
                pipeline()
            },
            EngineOptions {
                limits: Limits {
                    parallel: 4,
                    max_failures: usize::MAX,
                    canaries: 1,
                    ..Limits::default()
                },
                ..EngineOptions::default()
            },
        )
        .drive(run, &instances, Direction::Forward)
        .await
        .unwrap();
        let events = j.events(run).unwrap();
        let touched = |i: &str| {
            events
                .iter()
                .filter(|e| e.instance.as_deref() == Some(i))
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        };
        let canary_last = *touched("web0").last().expect("the canary ran");
        if canary_fails {
            assert!(!report.is_success());
            for (name, outcome) in &report.instances[1..] {
                assert_eq!(*outcome, InstanceOutcome::NotStarted, "{name}");
                assert!(touched(name).is_empty(), "{name} was touched");
            }
            assert_eq!(j.replay(run).unwrap().status, RunStatus::Failed);
        } else {
            assert!(report.is_success(), "{report:?}");
            // Parallel 4, yet nothing happened to the others before the canary was through.
            for name in &instances[1..] {
                let first = touched(name)[0];
                assert!(
                    first > canary_last,
                    "{name} started before the canary ended"
                );
            }
            let data: BTreeMap<String, String> = instances
                .iter()
                .map(|i| (i.clone(), format!("data of {i}")))
                .collect();
            assert_rebuilt(&env.lock().unwrap(), &instances, run, &data);
        }
    }
}

/// An engine over `steps` with the window, no retries, the given failure policy and faults.
fn engine_with(
    j: &Arc<Journal>,
    env: &Arc<Env>,
    parallel: usize,
    on_failure: OnFailure,
    faults: Faults,
) -> Engine<Env> {
    Engine::new(
        j.clone(),
        env.clone(),
        pipeline(),
        EngineOptions {
            limits: Limits {
                parallel,
                max_failures: 0,
                canaries: 0,
                retries: 0,
                max_down: 0,
            },
            faults,
            window: Some(WINDOW),
            on_failure,
            ..EngineOptions::default()
        },
    )
}

/// Fails `step` of `instance` every time it is applied.
fn failing(step: &'static str, instance: &'static str) -> Faults {
    Faults::none().failing(move |p| p.step == step && p.instance == instance)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_inside_the_window_reverts_the_instance_and_the_others_go_on() {
    for step in ["stop", "snapshot", "retire", "swap", "start"] {
        let (_dir, instances, env, j, run) = fresh_run(3);
        let report = engine_with(&j, &env, 2, OnFailure::Revert, failing(step, "web1"))
            .drive(run, &instances, Direction::Forward)
            .await
            .unwrap();
        assert_eq!(report.outcome, "failed", "{step}");
        assert_eq!(
            report.instances[1].1,
            InstanceOutcome::Reverted {
                step: step.into(),
                error: format!("injected failure of step {step}"),
            },
            "{step}"
        );
        // The budget is 0, yet web2 ran: a revert is a failure, and it stops only new
        // instances once counted; web0 and web2 were rebuilt either way or not started.
        let w = env.lock().unwrap();
        let web1 = &w.containers["web1"];
        assert!(web1.running && web1.built_by.is_none(), "{step}: {w:?}");
        assert_eq!(w.data["web1"], "data of web1");
        let state = j.replay(run).unwrap();
        assert!(state
            .instance("web1")
            .unwrap()
            .steps
            .iter()
            .all(|s| s.status == journal::StepStatus::UndoFinished));
        for (name, outcome) in &report.instances {
            if name != "web1" {
                assert!(
                    matches!(
                        outcome,
                        InstanceOutcome::Succeeded | InstanceOutcome::NotStarted
                    ),
                    "{step}: {name} {outcome:?}"
                );
            }
        }
        // Nothing is down afterwards: every container under its own name runs.
        for i in &instances {
            assert!(w.containers[i].running, "{step}: {i} is down: {w:?}");
        }
    }
}

#[tokio::test]
async fn with_hold_a_failure_inside_the_window_leaves_the_instance_as_it_is() {
    let (_dir, instances, env, j, run) = fresh_run(1);
    let report = engine_with(&j, &env, 1, OnFailure::Hold, failing("swap", "web0"))
        .drive(run, &instances, Direction::Forward)
        .await
        .unwrap();
    assert_eq!(
        report.instances[0].1,
        InstanceOutcome::Failed {
            step: "swap".into(),
            error: "injected failure of step swap".into(),
        }
    );
    let w = env.lock().unwrap();
    assert!(
        !w.containers.contains_key("web0"),
        "retired, not swapped: {w:?}"
    );
    assert!(!w.containers[&old_name("web0", run)].running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_takes_the_instances_that_are_down_first_whatever_the_budget() {
    // parallel 2 over 6: the crash leaves web0 and web1 inside their window.
    let (_dir, instances, env, j, run) = fresh_run(6);
    let crash = Faults::from_hook(|p| p.step == "retire" && p.moment == Moment::AfterRecord);
    let r = engine_with(&j, &env, 2, OnFailure::Revert, crash)
        .drive(run, &instances, Direction::Forward)
        .await;
    assert!(matches!(r, Err(EngineError::Crashed)), "{r:?}");
    let down: Vec<String> = {
        let w = env.lock().unwrap();
        instances
            .iter()
            .filter(|i| !w.containers.get(*i).is_some_and(|c| c.running))
            .cloned()
            .collect()
    };
    assert!(!down.is_empty());
    // The resume: parallel 1, no failure allowed, a canary that fails at once, and web5
    // failing before its window: the instances that are down still come back first.
    let before = j.replay(run).unwrap().last_seq;
    let faults = failing("prepare", "web5");
    let report = Engine::new(
        j.clone(),
        env.clone(),
        pipeline(),
        EngineOptions {
            limits: Limits {
                parallel: 1,
                max_failures: 0,
                canaries: 0,
                ..Limits::default()
            },
            faults,
            window: Some(WINDOW),
            ..EngineOptions::default()
        },
    )
    .drive(
        run,
        &[&instances[5..], &instances[..5]].concat(),
        Direction::Forward,
    )
    .await
    .unwrap();
    for d in &down {
        let outcome = &report.instances.iter().find(|(n, _)| n == d).unwrap().1;
        assert_eq!(*outcome, InstanceOutcome::Succeeded, "{d}");
    }
    let events = j.events(run).unwrap();
    let first_of = |i: &str| {
        events
            .iter()
            .find(|e| e.seq > before && e.instance.as_deref() == Some(i))
            .map(|e| e.seq)
    };
    let last_down = down.iter().filter_map(|d| first_of(d)).max().unwrap();
    let web5 = first_of("web5").expect("web5 ran after them");
    assert!(
        web5 > last_down,
        "web5 (not started) went before an instance that was down"
    );
    let w = env.lock().unwrap();
    for d in &down {
        assert!(w.containers[d].running && w.containers[d].built_by == Some(run));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_redoes_what_a_daemon_restart_reverted() {
    for reverted in ["started again", "rename rolled back"] {
        let (_dir, instances, env, j, run) = fresh_run(1);
        // Crashed after `stop` was recorded, before anything else (the snapshot and the
        // renames run side by side after it).
        let step = if reverted == "started again" {
            "stop"
        } else {
            "retire"
        };
        let crash = Faults::from_hook(move |p| p.step == step && p.moment == Moment::AfterRecord);
        let r = engine_with(&j, &env, 1, OnFailure::Revert, crash)
            .drive(run, &instances, Direction::Forward)
            .await;
        assert!(matches!(r, Err(EngineError::Crashed)));
        {
            // What LXD does at its restart: it starts the instances that were running when it
            // died; or a rename it had not finished is undone.
            let mut w = env.lock().unwrap();
            if reverted == "started again" {
                w.containers.get_mut("web0").unwrap().running = true;
            } else {
                let c = w.containers.remove(&old_name("web0", run)).unwrap();
                w.containers.insert("web0".into(), c);
            }
        }
        let report = engine_with(&j, &env, 1, OnFailure::Revert, Faults::none())
            .drive(run, &instances, Direction::Forward)
            .await
            .unwrap();
        assert!(report.is_success(), "{reverted}: {report:?}");
        let w = env.lock().unwrap();
        let data = BTreeMap::from([("web0".to_string(), "data of web0".to_string())]);
        assert_rebuilt(&w, &instances, run, &data);
        // The redo is journaled as a new attempt of the step whose effect was gone.
        let redone = if reverted == "started again" {
            "stop"
        } else {
            "retire"
        };
        assert_eq!(
            j.replay(run).unwrap().step("web0", redone).unwrap().attempt,
            2
        );
    }
}

/// An observer that keeps every fact it is told.
#[derive(Default)]
struct Recorder(Mutex<Vec<EngineEvent>>);

impl Observer for Recorder {
    fn observe(&self, event: EngineEvent) {
        self.0.lock().unwrap().push(event);
    }
}

impl Recorder {
    fn events(&self) -> Vec<EngineEvent> {
        self.0.lock().unwrap().clone()
    }
}

/// [`engine_with`], told to `observer`, with no failure budget.
fn observed(
    j: &Arc<Journal>,
    env: &Arc<Env>,
    parallel: usize,
    faults: Faults,
    observer: &Arc<Recorder>,
) -> Engine<Env> {
    let options = EngineOptions {
        observer: Some(observer.clone() as Arc<dyn Observer>),
        ..sim_options(parallel, faults)
    };
    Engine::new(j.clone(), env.clone(), pipeline(), options)
}

/// The step facts of `instance`, as `(started?, step, attempt, direction)`.
fn step_facts(events: &[EngineEvent], instance: &str) -> Vec<(bool, String, u32, Direction)> {
    events
        .iter()
        .filter_map(|e| match &e.fact {
            Fact::StepStarted {
                instance: i,
                step,
                attempt,
                direction,
            } if i == instance => Some((true, step.clone(), *attempt, *direction)),
            Fact::StepFinished {
                instance: i,
                step,
                attempt,
                direction,
                ..
            } if i == instance => Some((false, step.clone(), *attempt, *direction)),
            _ => None,
        })
        .collect()
}

/// Each step attempt started, then finished, one after the other, in the order `expected`
/// (step names with their direction), each once (no retries here). A step that runs beside
/// the others (the snapshot, going forward) is checked apart: it starts after the step before
/// it ended and ends before the step that waits for it starts.
fn assert_steps_in_order(events: &[EngineEvent], instance: &str, expected: &[(&str, Direction)]) {
    let all = step_facts(events, instance);
    let beside = pipeline()
        .iter()
        .filter_map(|s| s.beside_until().map(|until| (s.name(), until)))
        .collect::<Vec<_>>();
    let mut facts = Vec::new();
    for (k, fact) in all.iter().enumerate() {
        let (started, step, _, direction) = fact;
        let side = beside
            .iter()
            .find(|(name, _)| name == step && *direction == Direction::Forward);
        let Some((name, until)) = side else {
            facts.push(fact.clone());
            continue;
        };
        let at = expected
            .iter()
            .position(|(s, d)| s == name && *d == Direction::Forward)
            .unwrap_or_else(|| panic!("{instance}: {name} ran, yet was not expected"));
        if *started {
            if let Some((before, _)) = at.checked_sub(1).map(|b| expected[b]) {
                let ended = all[..k]
                    .iter()
                    .any(|(s, n, _, d)| !s && n == before && *d == Direction::Forward);
                assert!(ended, "{instance}: {name} started before {before} ended");
            }
        } else {
            let waited = all[..k].iter().any(|(s, n, _, _)| *s && n == until);
            assert!(!waited, "{instance}: {until} started before {name} ended");
        }
    }
    let expected: Vec<(&str, Direction)> = expected
        .iter()
        .filter(|(s, d)| !(*d == Direction::Forward && beside.iter().any(|(n, _)| n == s)))
        .copied()
        .collect();
    let mut want = Vec::new();
    for (step, direction) in &expected {
        want.push((true, step.to_string(), *direction));
        want.push((false, step.to_string(), *direction));
    }
    let got: Vec<_> = facts
        .iter()
        .map(|(s, n, _, d)| (*s, n.clone(), *d))
        .collect();
    assert_eq!(got, want, "{instance}: step facts");
    for pair in facts.chunks(2) {
        assert_eq!(pair[0].2, pair[1].2, "{instance}: attempt of {pair:?}");
    }
}

/// The indices of the facts about `instance` that match `pick`.
fn positions(events: &[EngineEvent], instance: &str, pick: impl Fn(&Fact) -> bool) -> Vec<usize> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.fact.instance() == Some(instance) && pick(&e.fact))
        .map(|(k, _)| k)
        .collect()
}

/// Every fact that names a journal event agrees with it: same instance, step, attempt, time
/// and kind of event.
fn assert_facts_match_the_journal(events: &[EngineEvent], j: &Journal, run: RunId) {
    let journal: BTreeMap<u64, journal::Event> = j
        .events(run)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e))
        .collect();
    let mut told = 0;
    for e in events {
        let Some(seq) = e.seq else { continue };
        told += 1;
        let rec = &journal[&seq];
        assert_eq!(e.at_ms, rec.at_ms, "{e:?}");
        assert_eq!(e.fact.instance(), rec.instance.as_deref(), "{e:?}");
        let kind = rec.kind.name();
        let ok = match &e.fact {
            Fact::RunStarted { .. } => kind == "RunResumed",
            Fact::RunFinished { outcome } if outcome == "paused" => kind == "RunPaused",
            Fact::RunFinished { .. } => kind == "RunFinished",
            Fact::StepStarted {
                step,
                attempt,
                direction,
                ..
            } => {
                rec.step.as_deref() == Some(step)
                    && rec.attempt == *attempt
                    && kind
                        == match direction {
                            Direction::Forward => "StepStarted",
                            Direction::Undo => "UndoStarted",
                        }
            }
            Fact::StepFinished {
                step,
                attempt,
                direction,
                error,
                ..
            } => {
                rec.step.as_deref() == Some(step)
                    && rec.attempt == *attempt
                    && kind
                        == match (direction, error.is_some()) {
                            (Direction::Forward, false) => "StepSucceeded",
                            (Direction::Forward, true) => "StepFailed",
                            (Direction::Undo, false) => "UndoFinished",
                            (Direction::Undo, true) => "UndoFailed",
                        }
            }
            // Told with the record of the step that opened or closed the window.
            Fact::WindowOpened { .. } => kind == "StepStarted" || kind == "UndoStarted",
            Fact::WindowClosed { .. } => kind == "StepSucceeded" || kind == "UndoFinished",
            Fact::InstanceStarted { .. }
            | Fact::InstanceFinished { .. }
            | Fact::RevertStarted { .. } => false,
        };
        assert!(ok, "{e:?} does not match its journal event {rec:?}");
    }
    assert!(told > 0, "no fact named a journal event");
}

/// Each instance of the pass starts at most once and finishes exactly once, all its other
/// facts between the two; gives each instance's outcome as told.
fn assert_once_each(events: &[EngineEvent], instances: &[String]) -> Vec<InstanceOutcome> {
    let mut outcomes = Vec::new();
    for i in instances {
        let started = positions(events, i, |f| matches!(f, Fact::InstanceStarted { .. }));
        let finished = positions(events, i, |f| matches!(f, Fact::InstanceFinished { .. }));
        assert!(started.len() <= 1, "{i} started {} times", started.len());
        assert_eq!(finished.len(), 1, "{i} finished {} times", finished.len());
        let all = positions(events, i, |_| true);
        assert_eq!(all.last(), finished.last(), "{i}: a fact after its end");
        if let Some(&s) = started.first() {
            assert_eq!(all.first(), Some(&s), "{i}: a fact before its start");
        } else {
            assert_eq!(all.len(), 1, "{i} did not start, yet more was told");
        }
        let Fact::InstanceFinished {
            outcome,
            duration_ms,
            ..
        } = &events[finished[0]].fact
        else {
            unreachable!()
        };
        assert_eq!(duration_ms.is_some(), !started.is_empty(), "{i}");
        outcomes.push(outcome.clone());
    }
    assert!(
        matches!(
            events.first().map(|e| &e.fact),
            Some(Fact::RunStarted { .. })
        ),
        "the run's start is told first"
    );
    assert!(
        matches!(
            events.last().map(|e| &e.fact),
            Some(Fact::RunFinished { .. })
        ),
        "the run's end is told last"
    );
    outcomes
}

/// `(resumed, reverted)` of each window opened and closed for `instance`, in order: one open
/// then one close each time.
fn windows(events: &[EngineEvent], instance: &str) -> Vec<(bool, Option<bool>)> {
    let mut out: Vec<(bool, Option<bool>)> = Vec::new();
    for e in events
        .iter()
        .filter(|e| e.fact.instance() == Some(instance))
    {
        match &e.fact {
            Fact::WindowOpened { resumed, .. } => {
                assert!(
                    out.last().is_none_or(|w| w.1.is_some()),
                    "{instance}: opened twice"
                );
                out.push((*resumed, None));
            }
            Fact::WindowClosed {
                reverted, down_ms, ..
            } => {
                assert!(*down_ms >= 0, "{instance}: down {down_ms} ms");
                let last = out.last_mut().expect("closed before it opened");
                assert!(last.1.is_none(), "{instance}: closed twice");
                last.1 = Some(*reverted);
            }
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observer_sees_each_instance_once_its_steps_in_order_and_each_window() {
    let (_dir, instances, env, j, run) = fresh_run(3);
    let observer = Arc::new(Recorder::default());
    let report = observed(&j, &env, 2, failing("swap", "web1"), &observer)
        .drive(run, &instances, Direction::Forward)
        .await
        .unwrap();
    let events = observer.events();
    let outcomes = assert_once_each(&events, &instances);
    let reported: Vec<InstanceOutcome> = report.instances.iter().map(|(_, o)| o.clone()).collect();
    assert_eq!(outcomes, reported);
    assert!(matches!(
        &events[0].fact,
        Fact::RunStarted { instances: told, resumed: false, parallel: 2, .. } if *told == instances
    ));
    assert_eq!(
        events.last().unwrap().fact,
        Fact::RunFinished {
            outcome: "failed".into()
        }
    );
    let forward: Vec<(&str, Direction)> = pipeline()
        .iter()
        .map(|s| (s.name(), Direction::Forward))
        .collect();
    for i in ["web0", "web2"] {
        assert_steps_in_order(&events, i, &forward);
        assert_eq!(windows(&events, i), vec![(false, Some(false))], "{i}");
    }
    // web1: forward up to the failed swap, then its revert undoes those steps in reverse.
    let mut web1 = forward[..5].to_vec();
    web1.extend(
        forward[..5]
            .iter()
            .rev()
            .map(|(s, _)| (*s, Direction::Undo)),
    );
    assert_steps_in_order(&events, "web1", &web1);
    assert_eq!(windows(&events, "web1"), vec![(false, Some(true))]);
    let reverts: Vec<&EngineEvent> = events
        .iter()
        .filter(|e| matches!(e.fact, Fact::RevertStarted { .. }))
        .collect();
    assert_eq!(reverts.len(), 1);
    assert_eq!(
        reverts[0].fact,
        Fact::RevertStarted {
            instance: "web1".into(),
            step: "swap".into(),
            error: "injected failure of step swap".into(),
        }
    );
    // The window opens with the start of `stop` and closes with the success of `start` (or,
    // reverted, with the undo of `stop`): told with the same journal event.
    for e in &events {
        let with = |pick: &dyn Fn(&Fact) -> bool| {
            events
                .iter()
                .filter(|o| o.seq == e.seq && o.fact.instance() == e.fact.instance())
                .any(|o| pick(&o.fact))
        };
        match &e.fact {
            Fact::WindowOpened { .. } => assert!(with(
                &|f| matches!(f, Fact::StepStarted { step, .. } if step == "stop")
            )),
            Fact::WindowClosed { reverted, .. } => {
                let step = if *reverted { "stop" } else { "start" };
                assert!(with(
                    &|f| matches!(f, Fact::StepFinished { step: s, error: None, .. } if s == step)
                ))
            }
            _ => {}
        }
    }
    // A step's output rides with its success.
    assert!(events.iter().any(|e| matches!(
        &e.fact,
        Fact::StepFinished { step, output: Some(out), .. } if step == "prepare" && out["tmp"].is_string()
    )));
    assert_facts_match_the_journal(&events, &j, run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observer_sees_a_window_left_open_by_a_crash_and_the_windows_of_an_undo() {
    let (_dir, instances, env, j, run) = fresh_run(2);
    // parallel 1: the crash comes with web0 inside its window, web1 not started.
    let crash = Faults::from_hook(|p| p.step == "retire" && p.moment == Moment::AfterRecord);
    let crashed = Arc::new(Recorder::default());
    let r = observed(&j, &env, 1, crash, &crashed)
        .drive(run, &instances, Direction::Forward)
        .await;
    assert!(matches!(r, Err(EngineError::Crashed)), "{r:?}");
    // A killed process tells nothing after the crash: web0 began, did not end.
    let before = crashed.events();
    assert_eq!(windows(&before, "web0"), vec![(false, None)]);
    assert!(positions(&before, "web0", |f| matches!(
        f,
        Fact::InstanceFinished { .. }
    ))
    .is_empty());

    // The snapshot, beside `retire`, may not have ended by the crash: then it runs again.
    let snapshotted = j
        .replay(run)
        .unwrap()
        .step("web0", "snapshot")
        .is_some_and(|s| s.status == journal::StepStatus::Succeeded);
    let resumed = Arc::new(Recorder::default());
    let report = observed(&j, &env, 1, Faults::none(), &resumed)
        .drive(run, &instances, Direction::Forward)
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    let events = resumed.events();
    assert_once_each(&events, &instances);
    assert!(matches!(
        events[0].fact,
        Fact::RunStarted { resumed: true, .. }
    ));
    assert_eq!(windows(&events, "web0"), vec![(true, Some(false))]);
    assert_eq!(windows(&events, "web1"), vec![(false, Some(false))]);
    // web0 picks up where it was: its open window is told before any step of this pass.
    let first_step = positions(&events, "web0", |f| matches!(f, Fact::StepStarted { .. }))[0];
    let opened = positions(&events, "web0", |f| matches!(f, Fact::WindowOpened { .. }))[0];
    assert!(opened < first_step);
    let mut rest = vec![("swap", Direction::Forward), ("start", Direction::Forward)];
    if !snapshotted {
        rest.insert(0, ("snapshot", Direction::Forward));
    }
    assert_steps_in_order(&events, "web0", &rest);
    assert_facts_match_the_journal(&events, &j, run);

    // Undo: undoing `start` takes each instance down, undoing `stop` brings its old root back.
    let undone = Arc::new(Recorder::default());
    let report = observed(&j, &env, 2, Faults::none(), &undone)
        .drive(run, &instances, Direction::Undo)
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    let events = undone.events();
    assert_once_each(&events, &instances);
    let backward: Vec<(&str, Direction)> = pipeline()
        .iter()
        .rev()
        .map(|s| (s.name(), Direction::Undo))
        .collect();
    for i in &instances {
        assert_eq!(windows(&events, i), vec![(false, Some(true))], "{i}");
        assert_steps_in_order(&events, i, &backward);
    }
    assert_facts_match_the_journal(&events, &j, run);
}

#[tokio::test]
async fn instances_held_back_are_told_as_not_started_without_a_start() {
    for canaries in [0, 1] {
        let (_dir, instances, env, j, run) = fresh_run(3);
        let observer = Arc::new(Recorder::default());
        let report = Engine::new(
            j.clone(),
            env.clone(),
            pipeline_failing_web0(),
            EngineOptions {
                limits: Limits {
                    parallel: 1,
                    max_failures: 0,
                    canaries,
                    ..Limits::default()
                },
                observer: Some(observer.clone() as Arc<dyn Observer>),
                ..EngineOptions::default()
            },
        )
        .drive(run, &instances, Direction::Forward)
        .await
        .unwrap();
        let events = observer.events();
        let outcomes = assert_once_each(&events, &instances);
        assert!(matches!(outcomes[0], InstanceOutcome::Failed { .. }));
        assert_eq!(
            outcomes[1..],
            [InstanceOutcome::NotStarted, InstanceOutcome::NotStarted],
            "canaries {canaries}"
        );
        assert_eq!(
            outcomes,
            report
                .instances
                .iter()
                .map(|(_, o)| o.clone())
                .collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn an_observer_that_panics_does_not_fail_the_run() {
    struct Panics;
    impl Observer for Panics {
        fn observe(&self, _: EngineEvent) {
            panic!("observer bug");
        }
    }
    let (_dir, instances, env, j, run) = fresh_run(1);
    let report = Engine::new(
        j.clone(),
        env.clone(),
        pipeline(),
        EngineOptions {
            window: Some(WINDOW),
            observer: Some(Arc::new(Panics)),
            ..EngineOptions::default()
        },
    )
    .drive(run, &instances, Direction::Forward)
    .await
    .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(j.replay(run).unwrap().status, RunStatus::Succeeded);
}

/// The most of something at the same moment in `events`: counted up by the facts `up` picks,
/// down by those `down` picks.
fn most_at_once(events: &[EngineEvent], up: fn(&Fact) -> bool, down: fn(&Fact) -> bool) -> usize {
    let (mut now, mut most) = (0usize, 0usize);
    for e in events {
        if up(&e.fact) {
            now += 1;
            most = most.max(now);
        } else if down(&e.fact) {
            now -= 1;
        }
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_down_bounds_the_instances_inside_their_window_not_the_work_before_it() {
    for max_down in [1, 2] {
        let (_dir, instances, env, j, run) = fresh_run(8);
        let observer = Arc::new(Recorder::default());
        let mut options = sim_options(4, Faults::none());
        options.limits.max_down = max_down;
        options.observer = Some(observer.clone() as Arc<dyn Observer>);
        let engine = Engine::new(j.clone(), env.clone(), pipeline(), options);
        let report = engine
            .drive(run, &instances, Direction::Forward)
            .await
            .unwrap();
        assert!(report.is_success(), "max_down {max_down}: {report:?}");
        let events = observer.events();
        assert_eq!(
            windows_opened(&events),
            instances.len(),
            "max_down {max_down}"
        );
        let most = most_at_once(
            &events,
            |f| matches!(f, Fact::WindowOpened { .. }),
            |f| matches!(f, Fact::WindowClosed { .. }),
        );
        assert!(
            (1..=max_down).contains(&most),
            "max_down {max_down}: {most} down at once"
        );
        // Four at once all the same: the work outside the window is not held to max_down.
        let most_in_flight = most_at_once(
            &events,
            |f| matches!(f, Fact::InstanceStarted { .. }),
            |f| matches!(f, Fact::InstanceFinished { .. }),
        );
        assert!(most_in_flight > max_down, "{most_in_flight} in flight");
        assert_facts_match_the_journal(&events, &j, run);
    }
}

fn windows_opened(events: &[EngineEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e.fact, Fact::WindowOpened { .. }))
        .count()
}

/// A step for [`a_step_beside_the_others_runs_while_they_do_and_its_join_waits`]: `wait`
/// blocks until `signal` has run, so a pipeline that drove them one after the other would
/// never end.
struct Rendezvous {
    name: &'static str,
    role: Role,
    beside_until: Option<&'static str>,
}

enum Role {
    /// Waits for the signal (at most 10 s, then fails).
    Wait(Arc<tokio::sync::Notify>),
    Signal(Arc<tokio::sync::Notify>),
    /// Fails unless the side step's output is there when it starts.
    Join(&'static str),
}

impl Step<Env> for Rendezvous {
    fn name(&self) -> &'static str {
        self.name
    }
    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, Env>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            match &self.role {
                Role::Wait(n) => {
                    tokio::time::timeout(std::time::Duration::from_secs(10), n.notified())
                        .await
                        .map_err(|_| StepError::new("the step beside never ran"))?;
                }
                Role::Signal(n) => n.notify_one(),
                Role::Join(side) => {
                    if cx.outputs.raw(side).is_none() {
                        return Err(format!("{side} had not ended").into());
                    }
                }
            }
            Ok(json!(self.name))
        })
    }
    fn undo<'a>(&'a self, _cx: &'a StepCx<'a, Env>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }
    fn beside_until(&self) -> Option<&'static str> {
        self.beside_until
    }
}

#[tokio::test]
async fn a_step_beside_the_others_runs_while_they_do_and_its_join_waits() {
    let (_dir, instances, env, j, run) = fresh_run(1);
    let notify = Arc::new(tokio::sync::Notify::new());
    let step = |name, role, beside_until| {
        Arc::new(Rendezvous {
            name,
            role,
            beside_until,
        }) as Arc<dyn Step<Env>>
    };
    let steps = vec![
        step("side", Role::Wait(notify.clone()), Some("join")),
        step("lane", Role::Signal(notify.clone()), None),
        step("join", Role::Join("side"), None),
    ];
    let report = Engine::new(j.clone(), env, steps, sim_options(1, Faults::none()))
        .drive(run, &instances, Direction::Forward)
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    let order: Vec<(String, &str)> = j
        .events(run)
        .unwrap()
        .into_iter()
        .filter_map(|e| Some((e.step.clone()?, e.kind.name())))
        .collect();
    let at = |step: &str, kind: &str| {
        order
            .iter()
            .position(|(s, k)| s == step && *k == kind)
            .unwrap_or_else(|| panic!("no {kind} of {step}: {order:?}"))
    };
    // `lane` started while `side` was under way, and `join` only once `side` had ended.
    assert!(
        at("lane", "StepStarted") < at("side", "StepSucceeded"),
        "{order:?}"
    );
    assert!(
        at("side", "StepSucceeded") < at("join", "StepStarted"),
        "{order:?}"
    );
}

/// A step for [`each_daemon_has_its_own_places`]: the instance `waits` blocks until the
/// instance `signals` has run it, so a pass that gave both daemons one place in all would
/// never end.
struct Meet {
    waits: String,
    signals: String,
    notify: Arc<tokio::sync::Notify>,
}

impl Step<Env> for Meet {
    fn name(&self) -> &'static str {
        "meet"
    }
    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, Env>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            if cx.instance == self.waits {
                tokio::time::timeout(std::time::Duration::from_secs(10), self.notify.notified())
                    .await
                    .map_err(|_| StepError::new("the other daemon's instance never ran"))?;
            } else if cx.instance == self.signals {
                self.notify.notify_one();
            }
            // Long enough for the instances of one daemon to overlap if their bound let them.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok(json!("met"))
        })
    }
    fn undo<'a>(&'a self, _cx: &'a StepCx<'a, Env>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_daemon_has_its_own_places() {
    // Instances alternate between two daemons; `parallel` 1 bounds each daemon, not the run.
    let (_dir, instances, env, j, run) = fresh_run(6);
    let groups: BTreeMap<String, String> = instances
        .iter()
        .enumerate()
        .map(|(k, n)| {
            (
                n.clone(),
                if k % 2 == 0 { "lxd" } else { "incus" }.to_string(),
            )
        })
        .collect();
    let step = Arc::new(Meet {
        waits: instances[0].clone(),
        signals: instances[1].clone(),
        notify: Arc::new(tokio::sync::Notify::new()),
    }) as Arc<dyn Step<Env>>;
    let observer = Arc::new(Recorder::default());
    let mut options = sim_options(1, Faults::none());
    options.groups = Arc::new(groups.clone());
    options.observer = Some(observer.clone() as Arc<dyn Observer>);
    let report = Engine::new(j.clone(), env, vec![step], options)
        .drive(run, &instances, Direction::Forward)
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    let events = observer.events();
    let in_flight = |group: Option<&str>| {
        let of_group: Vec<EngineEvent> = events
            .iter()
            .filter(|e| {
                let instance = match &e.fact {
                    Fact::InstanceStarted { instance }
                    | Fact::InstanceFinished { instance, .. } => instance,
                    _ => return false,
                };
                group.is_none_or(|g| groups[instance] == g)
            })
            .cloned()
            .collect();
        most_at_once(
            &of_group,
            |f| matches!(f, Fact::InstanceStarted { .. }),
            |f| matches!(f, Fact::InstanceFinished { .. }),
        )
    };
    assert_eq!(in_flight(Some("lxd")), 1, "{events:?}");
    assert_eq!(in_flight(Some("incus")), 1, "{events:?}");
    assert_eq!(in_flight(None), 2, "{events:?}");
    // The report keeps the order the instances were given in.
    let order: Vec<&String> = report.instances.iter().map(|(n, _)| n).collect();
    assert_eq!(order, instances.iter().collect::<Vec<_>>());
}
