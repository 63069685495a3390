//! Rendering benchmark: `cargo bench --bench report` (REROOT_BENCH_QUICK=1 for fewer rounds).
//!
//! What `reroot show RUN --svg` costs on a 200-instance run (target: under a second, from the
//! journal on disk to the picture): a rebuild journal of 200 instances written through the
//! journal's API with the shapes a real run leaves (15 steps each, retries, failures, reverts
//! with their undo, some cut short by a crash and finished by a resume, some never started),
//! then, per round, a reader opens it, replays the run, reads its events and draws the SVG. Prints p50 and max over the rounds,
//! the ratio to the target, the SVG's size, and the same reading without the drawing as a
//! baseline with the ratio of the two; `REROOT_BENCH_SVG=FILE` keeps the last picture for a look.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use journal::{EventKind, Journal, Outcome, Reader, RunHeader, RunId};

/// A rebuild's pipeline, as `reroot show` of a real one lists it.
const STEPS: [&str; 15] = [
    "preflight",
    "prepare",
    "provision",
    "stop",
    "retire",
    "snapshot",
    "swap",
    "reattach",
    "files",
    "start",
    "ready",
    "cloud-config",
    "verify",
    "final-stop",
    "final-snapshot",
];
const FLEET: usize = 200;

fn step(j: &Journal, run: RunId, inst: &str, s: &str, attempt: u32, kind: EventKind) {
    j.append(run, Some(inst), Some(s), attempt, kind)
        .expect("append");
}

fn ok(j: &Journal, run: RunId, inst: &str, s: &str, attempt: u32, downtime: usize) {
    step(j, run, inst, s, attempt, EventKind::StepStarted);
    let output = if s == "start" {
        format!("{{\"downtime_ms\":{downtime}}}")
    } else {
        "{}".into()
    };
    step(
        j,
        run,
        inst,
        s,
        attempt,
        EventKind::StepSucceeded { output },
    );
}

fn write(dir: &std::path::Path) -> RunId {
    let j = Journal::open(dir).expect("open journal");
    let names: Vec<String> = (0..FLEET)
        .map(|i| format!("website-{i:03}.example.org"))
        .collect();
    let header = RunHeader {
        id: RunHeader::new_id(),
        command: vec![
            "reroot".into(),
            "rebuild".into(),
            "--parallel".into(),
            "8".into(),
        ],
        user: "bench".into(),
        host: "bench-host".into(),
        started_at_ms: journal::now_ms(),
        config_digests: vec![],
        instances: names.clone(),
        options: BTreeMap::from([("kind".to_string(), "rebuild".to_string())]),
    };
    let run = j.create_run(header).expect("create run").run;
    std::thread::scope(|s| {
        for t in 0..8 {
            let (j, names) = (&j, &names);
            s.spawn(move || {
                for i in (t..FLEET).step_by(8) {
                    let inst = names[i].as_str();
                    match i % 50 {
                        // Reverted: snapshot fails, every step before it undone.
                        7 => {
                            for s in &STEPS[..5] {
                                ok(j, run, inst, s, 1, 0);
                            }
                            step(j, run, inst, "snapshot", 1, EventKind::StepStarted);
                            let error = "zfs: dataset is busy".to_string();
                            step(j, run, inst, "snapshot", 1, EventKind::StepFailed { error });
                            for s in STEPS[..6].iter().rev() {
                                step(j, run, inst, s, 1, EventKind::UndoStarted);
                                step(j, run, inst, s, 1, EventKind::UndoFinished);
                            }
                        }
                        // Failed at prepare.
                        13 => {
                            ok(j, run, inst, "preflight", 1, 0);
                            step(j, run, inst, "prepare", 1, EventKind::StepStarted);
                            let error = "no space left on device".to_string();
                            step(j, run, inst, "prepare", 1, EventKind::StepFailed { error });
                        }
                        // Cut short in `start` by a crash; finished by the resume below.
                        21 => {
                            for s in &STEPS[..9] {
                                ok(j, run, inst, s, 1, 0);
                            }
                            step(j, run, inst, "start", 1, EventKind::StepStarted);
                        }
                        // Never started.
                        49 => {}
                        _ => {
                            for s in STEPS {
                                // A retry of `start` now and then.
                                if s == "start" && i % 10 == 3 {
                                    step(j, run, inst, s, 1, EventKind::StepStarted);
                                    let error = "lxd: operation timed out".to_string();
                                    step(j, run, inst, s, 1, EventKind::StepFailed { error });
                                    ok(j, run, inst, s, 2, 1000 + i);
                                } else {
                                    ok(j, run, inst, s, 1, 1000 + i);
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    // The process died; another one resumed the run and finished the instances it cut short.
    j.append(run, None, None, 0, EventKind::RunResumed { pid: 4242 })
        .expect("resume");
    for inst in names.iter().skip(21).step_by(50) {
        for s in &STEPS[9..] {
            ok(&j, run, inst, s, if *s == "start" { 2 } else { 1 }, 5000);
        }
    }
    j.append(
        run,
        None,
        None,
        0,
        EventKind::RunFinished {
            outcome: Outcome::Failed,
        },
    )
    .expect("finish");
    j.close().expect("close");
    run
}

fn main() {
    let quick = std::env::var("REROOT_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let rounds = if quick { 5 } else { 30 };
    let dir = tempfile::tempdir().expect("temporary directory");
    let run = write(dir.path());
    // The baseline: the same reading (open, replay, events) without drawing, so the figure
    // says what the picture itself costs over what any `show` pays.
    let mut read_times = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let r = Reader::open(dir.path()).expect("reader");
        let state = r.replay(run).expect("replay");
        let events = r.events(run).expect("events");
        std::hint::black_box((&state, &events));
        drop(r);
        read_times.push(t.elapsed());
    }
    let mut times = Vec::new();
    let mut svg = String::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let r = Reader::open(dir.path()).expect("reader");
        let state = r.replay(run).expect("replay");
        let events = r.events(run).expect("events");
        svg = reroot::report::svg::run_svg(&state, &events, journal::now_ms());
        drop(r);
        times.push(t.elapsed());
    }
    times.sort();
    read_times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (p50, read_p50) = (
        ms(times[times.len() / 2]),
        ms(read_times[read_times.len() / 2]),
    );
    println!(
        "show --svg, {FLEET} instances ({} bars): p50 {p50:.1} ms, max {:.1} ms over {rounds} rounds \
         (target: < 1000 ms, {:.0}x under it); SVG {} KiB",
        svg.matches("class=\"step\"").count() + svg.matches("class=\"undo\"").count(),
        ms(*times.last().expect("a round")),
        1000.0 / p50,
        svg.len() / 1024
    );
    println!(
        "baseline, reading the run without drawing: p50 {read_p50:.1} ms; the picture costs \
         {:.2}x the reading",
        p50 / read_p50
    );
    if let Ok(path) = std::env::var("REROOT_BENCH_SVG") {
        std::fs::write(&path, &svg).expect("write the SVG");
        println!("wrote {path}");
    }
}
