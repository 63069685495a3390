//! Journal benchmark: `cargo bench --bench journal` (REROOT_BENCH_QUICK=1 for a short run).
//!
//! Prints, each beside its target:
//! - flushed append latency p50/p99 with 1 and 64 concurrent writers;
//! - events per second with group commit, and the baseline of one flush per append, measured
//!   in the same run;
//! - replay of a journal of 1,000,000 events (100,000 in quick mode), from the database and
//!   from the binary live log (`events.log`);
//! - bytes per event on disk: every file of the journal directory, the database (`db/`) and the
//!   live log together.

use journal::codec::{self, NdjsonHeader};
use journal::{
    Event, EventKind, Journal, Outcome, Reader, RunFilter, RunHeader, RunId, WriterOptions,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn quick() -> bool {
    std::env::var("REROOT_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
        || std::env::args().any(|a| a == "--quick")
}

fn header(instances: usize) -> RunHeader {
    let mut options = BTreeMap::new();
    options.insert("parallel".to_string(), "4".to_string());
    RunHeader {
        id: RunHeader::new_id(),
        command: vec!["reroot".into(), "rebuild".into(), "--all".into()],
        user: "bench".into(),
        host: "bench-host".into(),
        started_at_ms: journal::now_ms(),
        config_digests: vec![("reroot.yaml".into(), "9f86d081884c7d65".into())],
        instances: (0..instances).map(|i| format!("web-{i:02}")).collect(),
        options,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Bytes of all files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => total += dir_bytes(&e.path()),
                Ok(_) => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

/// Bytes of one file (0 if missing).
fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Prints how a journal's bytes per event split between its files.
fn breakdown(total: u64, db: u64, log: u64, events: u64) {
    let per = |b: u64| b as f64 / events.max(1) as f64;
    println!(
        "  (of which database db/ {:.0}, live log events.log {:.0}, other files {:.0})",
        per(db),
        per(log),
        per(total - db - log)
    );
}

struct AppendResult {
    latencies: Vec<Duration>,
    events: usize,
    elapsed: Duration,
}

/// `writers` threads, each appending `per_writer` step events (started/succeeded pairs) for
/// its own instance of one run, timing each append.
fn appends(j: &Arc<Journal>, writers: usize, per_writer: usize) -> AppendResult {
    let run = j.create_run(header(writers)).expect("create run").run;
    let start = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let j = j.clone();
            std::thread::spawn(move || {
                let inst = format!("web-{w:02}");
                let mut lat = Vec::with_capacity(per_writer);
                for n in 0..per_writer {
                    let step = format!("step-{}", n / 2);
                    let kind = if n % 2 == 0 {
                        EventKind::StepStarted
                    } else {
                        EventKind::StepSucceeded {
                            output: "{\"snapshot\":\"reroot-20241122\"}".into(),
                        }
                    };
                    let t = Instant::now();
                    j.append(run, Some(&inst), Some(&step), 1, kind)
                        .expect("append");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("writer thread"))
        .collect();
    let elapsed = start.elapsed();
    latencies.sort();
    AppendResult {
        events: latencies.len(),
        latencies,
        elapsed,
    }
}

/// NDJSON of `runs` runs of about `per_run` events each: 10 instances, steps started and
/// succeeded, then RunFinished.
fn synthetic_ndjson(runs: usize, per_run: usize) -> Vec<u8> {
    let mut out = NdjsonHeader::new("journal", None).to_line().into_bytes();
    let steps = [
        "stop", "snapshot", "retire", "clone", "swap", "reattach", "start", "verify",
    ];
    let t0 = journal::now_ms() - 86_400_000;
    for r in 0..runs {
        let h = header(10);
        let run: RunId = h.id;
        let mut prev = 0u64;
        let mut seq = 0u64;
        let mut push = |out: &mut Vec<u8>, inst: Option<String>, step: Option<String>, kind| {
            seq += 1;
            let ev = Event {
                run,
                seq,
                instance: inst,
                step,
                attempt: if seq == 1 { 0 } else { 1 },
                at_ms: t0 + (r * per_run) as i64 + seq as i64,
                kind,
            };
            let bytes = codec::encode(&ev, prev).expect("encode");
            let d = codec::decode(&bytes).expect("decode");
            prev = d.hash;
            out.extend_from_slice(codec::to_line(&d).as_bytes());
        };
        push(&mut out, None, None, EventKind::RunCreated(h));
        let mut n = 0;
        'outer: for round in 0.. {
            for i in 0..10 {
                for kind in [
                    EventKind::StepStarted,
                    EventKind::StepSucceeded {
                        output: format!("{{\"round\":{round}}}"),
                    },
                ] {
                    if n + 2 >= per_run {
                        break 'outer;
                    }
                    let step = format!("{}-{round}", steps[round % steps.len()]);
                    push(&mut out, Some(format!("web-{i:02}")), Some(step), kind);
                    n += 1;
                }
            }
        }
        push(
            &mut out,
            None,
            None,
            EventKind::RunFinished {
                outcome: Outcome::Succeeded,
            },
        );
    }
    out
}

fn main() {
    let quick = quick();
    let base = tempfile::tempdir().expect("tempdir");
    println!(
        "journal benchmark ({})",
        if quick {
            "quick mode: smaller journals; unset REROOT_BENCH_QUICK for the full targets"
        } else {
            "full mode; set REROOT_BENCH_QUICK=1 for a short run"
        }
    );
    println!("{:<48} {:>14} {:>14}", "measure", "result", "target");
    let line = |what: &str, result: String, target: &str| {
        println!("{what:<48} {result:>14} {target:>14}");
    };

    // 1 and 64 writers, group commit.
    let (single, per64) = if quick { (300, 20) } else { (10_000, 300) };
    let j = Arc::new(Journal::open(&base.path().join("appends")).expect("open"));
    let one = appends(&j, 1, single);
    let many = appends(&j, 64, per64);
    let report = j.verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.first_problem());
    let appended_events = report.events;
    drop(j);
    let append_bytes = dir_bytes(&base.path().join("appends"));
    let append_db = dir_bytes(&base.path().join("appends").join("db"));
    let append_log = file_bytes(&base.path().join("appends").join("events.log"));
    // Baseline: one flush per append, appends one at a time.
    let jb = Arc::new(
        Journal::open_with(
            &base.path().join("baseline"),
            WriterOptions {
                group_commit: false,
            },
        )
        .expect("open baseline"),
    );
    let base_one = appends(&jb, 1, single);
    let base_many = appends(&jb, 64, per64);
    drop(jb);

    let rate = |r: &AppendResult| r.events as f64 / r.elapsed.as_secs_f64();
    line(
        "append p50, 1 writer (ms)",
        format!("{:.3}", ms(percentile(&one.latencies, 0.50))),
        "",
    );
    line(
        "append p99, 1 writer (ms)",
        format!("{:.3}", ms(percentile(&one.latencies, 0.99))),
        "< 10",
    );
    line(
        "append p50, 64 writers (ms)",
        format!("{:.3}", ms(percentile(&many.latencies, 0.50))),
        "",
    );
    line(
        "append p99, 64 writers (ms)",
        format!("{:.3}", ms(percentile(&many.latencies, 0.99))),
        "< 10",
    );
    line(
        "  baseline p99, 64 writers, flush per append",
        format!("{:.3}", ms(percentile(&base_many.latencies, 0.99))),
        "",
    );
    line("events/s, 1 writer", format!("{:.0}", rate(&one)), "");
    line(
        "  baseline events/s, 1 writer",
        format!("{:.0}", rate(&base_one)),
        "",
    );
    line(
        "events/s, 64 writers, group commit",
        format!("{:.0}", rate(&many)),
        "> baseline",
    );
    line(
        "  baseline events/s, 64 writers",
        format!("{:.0}", rate(&base_many)),
        "",
    );
    line(
        "group commit speed-up, 64 writers",
        format!("{:.1}x", rate(&many) / rate(&base_many)),
        "",
    );
    line(
        &format!("bytes/event on disk, {appended_events} flushed appends"),
        format!("{:.0}", append_bytes as f64 / appended_events as f64),
        "< 300",
    );
    breakdown(append_bytes, append_db, append_log, appended_events);

    // A big journal, imported in bulk.
    let (runs, per_run) = if quick { (100, 1000) } else { (1000, 1000) };
    let dir = base.path().join("big");
    let t = Instant::now();
    let ndjson = synthetic_ndjson(runs, per_run);
    let gen = t.elapsed();
    let t = Instant::now();
    let imported = journal::import_ndjson(&dir, &mut &ndjson[..]).expect("import");
    let import = t.elapsed();
    drop(ndjson);
    println!(
        "  (journal of {imported} events: generated in {:.1} s, imported in {:.1} s)",
        gen.as_secs_f64(),
        import.as_secs_f64()
    );
    let target = if quick { "< 0.3 (1/10)" } else { "< 3" };
    {
        let r = Reader::open(&dir).expect("reader");
        let t = Instant::now();
        let ids: Vec<RunId> = r
            .runs(&RunFilter::default())
            .expect("runs")
            .iter()
            .map(|s| s.id)
            .collect();
        let mut replayed = 0;
        for id in &ids {
            replayed += r.replay(*id).expect("replay").last_seq;
        }
        let took = t.elapsed();
        assert_eq!(replayed as usize, imported);
        line(
            &format!("replay {replayed} events, database (s)"),
            format!("{:.2}", took.as_secs_f64()),
            target,
        );
        let t = Instant::now();
        let report = r.verify().expect("verify");
        assert!(report.is_ok(), "{:?}", report.first_problem());
        line(
            &format!("verify {} events, database (s)", report.events),
            format!("{:.2}", t.elapsed().as_secs_f64()),
            "",
        );
    }
    {
        let t = Instant::now();
        let r = Reader::open_live_log(&dir).expect("live log reader");
        let mut replayed = 0;
        for s in r.runs(&RunFilter::default()).expect("runs") {
            replayed += r.replay(s.id).expect("replay").last_seq;
        }
        line(
            &format!("replay {replayed} events, live log (s)"),
            format!("{:.2}", t.elapsed().as_secs_f64()),
            "",
        );
    }
    let bytes = dir_bytes(&dir);
    let db = dir_bytes(&dir.join("db"));
    let log = file_bytes(&dir.join("events.log"));
    line(
        "bytes/event on disk, bulk journal",
        format!("{:.0}", bytes as f64 / imported as f64),
        "< 300",
    );
    breakdown(bytes, db, log, imported as u64);
}
