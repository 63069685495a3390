//! Engine benchmark: `cargo bench --bench engine` (REROOT_BENCH_QUICK=1 for a short run).
//!
//! What a pass costs the engine itself as the run grows: the real engine and journal drive
//! runs of 50 to 800 instances (400 in quick mode) through an eleven-step pipeline of steps that
//! do nothing, eight at a time, so what is measured is the engine's bookkeeping and the
//! journal's appends. Printed per instance, with the growth from the smallest run as a ratio
//! (target: under 2x at 16 times the instances: O(events)), beside the baseline measured in the
//! same run: the same pipeline where each instance replays the whole run from the store, as the
//! engine did before it read the writer's cache (O(instances x events)).

use std::sync::Arc;
use std::time::Instant;

use journal::{Journal, RunHeader};
use reroot::engine::{
    BoxFuture, Direction, Engine, EngineOptions, Limits, Step, StepCx, StepError,
};

/// A step that does nothing; with `replay`, it first replays the whole run from the journal's
/// store, as the engine used to once per instance and direction.
struct Noop {
    name: &'static str,
    replay: Option<Arc<Journal>>,
}

impl Step<()> for Noop {
    fn name(&self) -> &'static str {
        self.name
    }
    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, ()>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            if let Some(j) = &self.replay {
                j.replay(cx.run)
                    .map_err(|e| StepError::new(e.to_string()))?;
            }
            Ok(serde_json::json!({ "ok": true }))
        })
    }
    fn undo<'a>(&'a self, _cx: &'a StepCx<'a, ()>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Drives one run of `n` instances; gives the wall time per instance in ms.
async fn one_run(n: usize, baseline: bool) -> f64 {
    let dir = tempfile::tempdir().expect("temporary directory");
    let j = Arc::new(Journal::open(dir.path()).expect("open journal"));
    let instances: Vec<String> = (0..n).map(|i| format!("web-{i:04}")).collect();
    let header = RunHeader {
        id: RunHeader::new_id(),
        command: vec!["reroot".into(), "rebuild".into()],
        user: "bench".into(),
        host: "bench".into(),
        started_at_ms: journal::now_ms(),
        config_digests: vec![],
        instances: instances.clone(),
        options: Default::default(),
    };
    let run = header.id;
    j.create_run(header).expect("create run");
    // The rebuild's step names, so the journal holds what a rebuild writes.
    let steps: Vec<Arc<dyn Step<()>>> = reroot::steps::rebuild_pipeline()
        .iter()
        .map(|s| s.name())
        .enumerate()
        .map(|(k, name)| {
            // The baseline replays at the first step of each instance: once per instance.
            let replay = (baseline && k == 0).then(|| j.clone());
            Arc::new(Noop { name, replay }) as Arc<dyn Step<()>>
        })
        .collect();
    let engine = Engine::new(
        j.clone(),
        Arc::new(()),
        steps,
        EngineOptions {
            limits: Limits {
                parallel: 8,
                ..Limits::default()
            },
            ..EngineOptions::default()
        },
    );
    let started = Instant::now();
    let report = engine
        .drive(run, &instances, Direction::Forward)
        .await
        .expect("drive");
    assert!(report.is_success());
    started.elapsed().as_secs_f64() * 1e3 / n as f64
}

fn main() {
    let quick = std::env::var("REROOT_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
        || std::env::args().any(|a| a == "--quick");
    let sizes: &[usize] = if quick {
        &[50, 200, 400]
    } else {
        &[50, 200, 800]
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "engine bench ({}): ms of engine and journal work per instance, 11 no-op steps, 8 in flight",
        if quick { "quick; drop REROOT_BENCH_QUICK for the full run" } else { "full" }
    );
    println!(
        "{:>9}  {:>14}  {:>9}  {:>22}  {:>9}",
        "instances", "engine ms/inst", "growth", "baseline (replay) ms/inst", "growth"
    );
    let mut first = None;
    let mut last = (0.0, 0.0, 0.0, 0.0);
    for &n in sizes {
        let now = rt.block_on(one_run(n, false));
        let base = rt.block_on(one_run(n, true));
        let (f_now, f_base) = *first.get_or_insert((now, base));
        println!(
            "{n:>9}  {now:>14.3}  {:>8.2}x  {base:>22.3}  {:>8.2}x",
            now / f_now,
            base / f_base
        );
        last = (now / f_now, base / f_base, now, base);
    }
    let (growth, base_growth, now, base) = last;
    let target = 2.0;
    println!(
        "growth of the per-instance cost from {} to {} instances: {growth:.2}x (target < {target}x: {}); \
         baseline {base_growth:.2}x; engine / baseline at the largest run: {:.2}",
        sizes[0],
        sizes[sizes.len() - 1],
        if growth < target { "met" } else { "NOT met" },
        now / base.max(f64::EPSILON),
    );
}
