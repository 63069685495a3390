//! A second process for the journal's tests (crash, lock and concurrent-read tests). Not a user
//! tool.
//!
//! - `journal-child append DIR THREADS`: opens DIR as writer, resumes its latest unfinished run
//!   or creates one, and appends step events from THREADS threads forever, printing
//!   `ack RUN SEQ INSTANCE STEP KIND` as soon as each append returns. Meant to be SIGKILLed.
//! - `journal-child hold DIR`: opens DIR as writer, creates a run, prints `ready RUN`, then waits
//!   until its standard input closes.
//! - `journal-child read DIR RUN`: opens DIR as reader and prints
//!   `source=.. events=.. status=.. verify=ok|<first problem>`.

use journal::{Event, EventKind, Journal, Reader, RunHeader, RunId, StepStatus};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match run(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("journal-child: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn header(instances: Vec<String>) -> RunHeader {
    RunHeader {
        id: RunHeader::new_id(),
        command: vec!["journal-child".into()],
        user: "test".into(),
        host: "localhost".into(),
        started_at_ms: journal::now_ms(),
        config_digests: vec![("test.yaml".into(), "0".repeat(16))],
        instances,
        options: BTreeMap::new(),
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    match args.get(1).map(String::as_str) {
        Some("append") => {
            let dir = Path::new(args.get(2).ok_or("missing DIR")?);
            let threads: usize = args.get(3).ok_or("missing THREADS")?.parse()?;
            append(dir, threads)
        }
        Some("hold") => {
            let dir = Path::new(args.get(2).ok_or("missing DIR")?);
            let j = Journal::open(dir)?;
            let ev = j.create_run(header(vec!["held".into()]))?;
            println!("ready {}", ev.run);
            std::io::stdout().flush()?;
            let mut sink = String::new();
            while std::io::stdin().lock().read_line(&mut sink)? > 0 {}
            Ok(())
        }
        Some("read") => {
            let dir = Path::new(args.get(2).ok_or("missing DIR")?);
            let run: RunId = args.get(3).ok_or("missing RUN")?.parse()?;
            let r = Reader::open(dir)?;
            let events = r.events(run)?;
            let state = r.replay(run)?;
            let report = r.verify()?;
            let verdict = match report.first_problem() {
                None => "ok".to_string(),
                Some(p) => p.to_string(),
            };
            println!(
                "source={:?} events={} status={} verify={}",
                r.source(),
                events.len(),
                state.status,
                verdict
            );
            Ok(())
        }
        _ => Err("usage: journal-child append DIR THREADS | hold DIR | read DIR RUN".into()),
    }
}

fn ack(out: &Mutex<std::io::Stdout>, ev: &Event) {
    let line = format!(
        "ack {} {} {} {} {}\n",
        ev.run,
        ev.seq,
        ev.instance.as_deref().unwrap_or("-"),
        ev.step.as_deref().unwrap_or("-"),
        ev.kind.name()
    );
    let out = out.lock().unwrap_or_else(|p| p.into_inner());
    let mut lock = out.lock();
    // One write of a short line: the parent never sees half of it.
    let _ = lock.write_all(line.as_bytes());
    let _ = lock.flush();
}

fn append(dir: &Path, threads: usize) -> Result<(), Box<dyn std::error::Error>> {
    let j = Arc::new(Journal::open(dir)?);
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let instances: Vec<String> = (0..threads).map(|t| format!("i{t}")).collect();
    // Resume the newest unfinished run half of the time (exercising replay after a crash).
    let unfinished = j.unfinished()?;
    let resume = unfinished
        .first()
        .filter(|s| s.instances == instances && std::process::id().is_multiple_of(2))
        .map(|s| s.id);
    let run = match resume {
        Some(run) => {
            let ev = j.append(
                run,
                None,
                None,
                0,
                EventKind::RunResumed {
                    pid: std::process::id(),
                },
            )?;
            ack(&out, &ev);
            run
        }
        None => {
            let ev = j.create_run(header(instances.clone()))?;
            ack(&out, &ev);
            ev.run
        }
    };
    let state = j.replay(run)?;
    let mut handles = Vec::new();
    for inst in instances {
        let j = j.clone();
        let out = out.clone();
        let (mut n, interrupted) = match state.instance(&inst) {
            Some(i) => (
                i.steps.len(),
                i.steps
                    .last()
                    .filter(|s| s.status == StepStatus::Started)
                    .map(|s| (s.name.clone(), s.attempt)),
            ),
            None => (0, None),
        };
        handles.push(std::thread::spawn(move || -> Result<(), journal::Error> {
            if let Some((step, attempt)) = interrupted {
                let ev = j.append(
                    run,
                    Some(&inst),
                    Some(&step),
                    attempt,
                    EventKind::StepFailed {
                        error: "interrupted".into(),
                    },
                )?;
                ack(&out, &ev);
            }
            loop {
                let step = format!("s{n}");
                n += 1;
                let ev = j.append(run, Some(&inst), Some(&step), 1, EventKind::StepStarted)?;
                ack(&out, &ev);
                let output = "o".repeat(n % 40);
                let ev = j.append(
                    run,
                    Some(&inst),
                    Some(&step),
                    1,
                    EventKind::StepSucceeded { output },
                )?;
                ack(&out, &ev);
                if n.is_multiple_of(7) {
                    let ev = j.append(
                        run,
                        Some(&inst),
                        None,
                        0,
                        EventKind::Note {
                            text: format!("note {n}"),
                        },
                    )?;
                    ack(&out, &ev);
                }
            }
        }));
    }
    for h in handles {
        match h.join() {
            Ok(r) => r?,
            Err(_) => return Err("an appending thread panicked".into()),
        }
    }
    Ok(())
}
