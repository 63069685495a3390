//! Crash safety and damage detection.
//!
//! - A child process appends from one or several threads and prints each acknowledged event;
//!   it is killed with SIGKILL at random moments, hundreds of times. After every kill the
//!   journal opens, `verify` passes and every acknowledged event is there.
//! - Flipped bits and truncation, in the database files and in the live log, are detected by
//!   `verify` (or refused at open), never silently accepted.
//!
//! `JOURNAL_CRASH_KILLS` sets the number of kills (default 500); `JOURNAL_CRASH_SEED` the seed.

use journal::{EventKind, Journal, Reader, RunHeader, RunId, Source};
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD: &str = env!("CARGO_BIN_EXE_journal-child");

/// xorshift64*: a small deterministic generator, so a failure can be replayed with its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    std::env::var("JOURNAL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        })
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ack {
    run: RunId,
    seq: u64,
    instance: String,
    step: String,
    kind: String,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut f = line.split(' ');
    if f.next()? != "ack" {
        return None;
    }
    Some(Ack {
        run: f.next()?.parse().ok()?,
        seq: f.next()?.parse().ok()?,
        instance: f.next()?.to_string(),
        step: f.next()?.to_string(),
        kind: f.next()?.to_string(),
    })
}

/// Runs the child, kills it with SIGKILL `delay` after its start (`from_first_ack` false: the
/// kill may land while it opens and recovers the journal) or after its first acknowledged event,
/// and returns what it acknowledged.
fn run_and_kill(dir: &Path, threads: usize, delay: Duration, from_first_ack: bool) -> Vec<Ack> {
    let mut child = Command::new(CHILD)
        .args(["append", dir.to_str().unwrap(), &threads.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn journal-child");
    let stdout = child.stdout.take().unwrap();
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            acks.push(parse_ack(&line).unwrap_or_else(|| panic!("bad child line {line:?}")));
            if acks.len() == 1 {
                let _ = first_tx.send(());
            }
        }
        acks
    });
    if from_first_ack {
        // Bounded: a child that acknowledges nothing in 10 s is a failure, reported below.
        let _ = first_rx.recv_timeout(Duration::from_secs(10));
    }
    std::thread::sleep(delay);
    if let Some(status) = child.try_wait().unwrap() {
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        panic!("journal-child ended by itself ({status}) before the kill: {err}");
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let acks = reader.join().unwrap();
    assert!(
        !from_first_ack || !acks.is_empty(),
        "journal-child acknowledged nothing within 10 s"
    );
    acks
}

/// Checks that every acknowledged event is in the journal, as acknowledged.
fn check_acks(r: &Reader, acks: &[Ack], context: &str) {
    let mut by_run: HashMap<RunId, Vec<&Ack>> = HashMap::new();
    for a in acks {
        by_run.entry(a.run).or_default().push(a);
    }
    for (run, acks) in by_run {
        let events = r
            .events(run)
            .unwrap_or_else(|e| panic!("{context}: run {run} unreadable: {e}"));
        for a in acks {
            let ev = events
                .get((a.seq - 1) as usize)
                .unwrap_or_else(|| panic!("{context}: acknowledged event lost: {a:?}"));
            assert_eq!(ev.seq, a.seq, "{context}");
            assert_eq!(
                ev.instance.as_deref().unwrap_or("-"),
                a.instance,
                "{context}"
            );
            assert_eq!(ev.step.as_deref().unwrap_or("-"), a.step, "{context}");
            assert_eq!(ev.kind.name(), a.kind, "{context}");
        }
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_event() {
    let kills: usize = std::env::var("JOURNAL_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let seed = seed();
    eprintln!("crash test: {kills} kills, JOURNAL_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let base = tempfile::tempdir().unwrap();
    // A fresh journal every 10 kills keeps each one small enough to check quickly (debug builds).
    let per_dir = 10;
    let mut dir = PathBuf::new();
    let mut acks: Vec<Ack> = Vec::new();
    let mut total_acks = 0usize;
    let mut kills_after_acks = 0usize;
    let mut writer_checks = 0usize;
    let mut reader_checks = 0usize;
    let mut db_rebuilds = 0usize;
    let mut db_unreadable = 0usize;
    let start = Instant::now();
    for i in 0..kills {
        if i % per_dir == 0 {
            dir = base.path().join(format!("j{}", i / per_dir));
            acks.clear();
        }
        let threads = if i % 3 == 0 { 1 } else { 4 };
        let delay = Duration::from_millis(5 + rng.below(56));
        let from_first_ack = i % 4 != 1;
        let new = run_and_kill(&dir, threads, delay, from_first_ack);
        if !new.is_empty() {
            kills_after_acks += 1;
        }
        total_acks += new.len();
        acks.extend(new);
        let context = format!(
            "kill {i} (seed {seed}, {threads} threads, {delay:?} after {})",
            if from_first_ack { "first ack" } else { "start" }
        );
        if !dir.exists() {
            continue; // killed before it even created the directory
        }
        if i % 2 == 0 {
            // Recover as the next writer would, then verify strictly.
            let j = Journal::open(&dir).unwrap_or_else(|e| panic!("{context}: open: {e}"));
            if j.recovery_notes().iter().any(|n| n.contains("rebuilt")) {
                db_rebuilds += 1;
                eprintln!("{context}: {:?}", j.recovery_notes());
            }
            let report = j.verify().unwrap();
            assert!(report.is_ok(), "{context}: verify: {report:#?}");
            check_acks(&j, &acks, &context);
            j.close().unwrap();
            writer_checks += 1;
        } else {
            // Read without repairing: the database as the crash left it.
            let r = Reader::open(&dir).unwrap_or_else(|e| panic!("{context}: reader: {e}"));
            let report = r.verify().unwrap();
            if r.source() == Source::LiveLog {
                // sled could not open what the crash left; the reader fell back to the log.
                assert!(
                    report
                        .notes
                        .iter()
                        .any(|n| n.contains("database cannot be opened")),
                    "{context}: {report:?}"
                );
                db_unreadable += 1;
                eprintln!("{context}: {:?}", report.notes);
            }
            assert!(report.is_ok(), "{context}: verify: {report:#?}");
            check_acks(&r, &acks, &context);
            reader_checks += 1;
        }
    }
    eprintln!(
        "crash test: {kills} kills in {:?}, {total_acks} acknowledged events, \
         {kills_after_acks} kills after at least one ack, {writer_checks} writer and \
         {reader_checks} reader checks; the database was unreadable after {db_unreadable} \
         kills (reader) and rebuilt from the live log after {db_rebuilds} (writer)",
        start.elapsed()
    );
    assert!(
        kills_after_acks * 4 >= kills * 3,
        "too few kills hit a running writer: {kills_after_acks} of {kills}"
    );
    assert!(total_acks >= kills * 5, "too few events: {total_acks}");
}

// ---------------------------------------------------------------------------------------------
// Damage.

fn header(n: usize) -> RunHeader {
    RunHeader {
        id: RunHeader::new_id(),
        command: vec!["reroot".into(), "rebuild".into()],
        user: "u".into(),
        host: "h".into(),
        started_at_ms: n as i64,
        config_digests: vec![],
        instances: vec!["web".into()],
        options: BTreeMap::new(),
    }
}

/// A closed journal with a few runs; returns its full export.
fn make_journal(dir: &Path) -> Vec<u8> {
    let j = Journal::open(dir).unwrap();
    for r in 0..3 {
        let run = j.create_run(header(r)).unwrap().run;
        for n in 0..40 {
            let step = format!("step-{n}");
            j.append(run, Some("web"), Some(&step), 1, EventKind::StepStarted)
                .unwrap();
            j.append(
                run,
                Some("web"),
                Some(&step),
                1,
                EventKind::StepSucceeded {
                    output: format!("needle-{r}-{n:03}"),
                },
            )
            .unwrap();
        }
    }
    let mut out = Vec::new();
    j.export_ndjson(None, &mut out).unwrap();
    j.close().unwrap();
    out
}

/// Export lines without the header (whose timestamp differs between exports).
fn body(export: &[u8]) -> Vec<u8> {
    let pos = export.iter().position(|&b| b == b'\n').unwrap();
    export[pos + 1..].to_vec()
}

/// What a user sees after damage: `Err(why)` if the damage is detected (a reader cannot open
/// or `verify` reports a problem); `Ok(export)` if the journal reads cleanly.
fn inspect(dir: &Path) -> Result<Vec<u8>, String> {
    let outcome = std::panic::catch_unwind(|| -> Result<Vec<u8>, String> {
        let r = Reader::open(dir).map_err(|e| format!("open: {e}"))?;
        let report = r.verify().map_err(|e| format!("verify: {e}"))?;
        if let Some(p) = report.first_problem() {
            return Err(format!("verify: {p}"));
        }
        let mut out = Vec::new();
        r.export_ndjson(None, &mut out)
            .map_err(|e| format!("export: {e}"))?;
        Ok(out)
    });
    outcome.unwrap_or_else(|_| panic!("reading a damaged journal panicked"))
}

/// Opening damage as the writer: refused, or repaired from the live log with a recovery note
/// (then the data must be intact), or reported by its verify.
fn assert_writer_notices(dir: &Path, what: &str) {
    match Journal::open(dir) {
        Err(_) => {}
        Ok(j) if !j.recovery_notes().is_empty() => {
            assert!(
                j.recovery_notes().iter().any(|n| n.contains("damaged")),
                "{what}: {:?}",
                j.recovery_notes()
            );
            let report = j.verify().unwrap();
            assert!(report.is_ok(), "{what}: after repair: {report:?}");
            for s in j.runs(&journal::RunFilter::default()).unwrap() {
                let st = j.replay(s.id).unwrap();
                assert_eq!(st.last_seq, 81, "{what}: repaired run {} incomplete", s.id);
            }
        }
        Ok(j) => assert!(
            !j.verify().unwrap().is_ok(),
            "{what}: writer accepted damage"
        ),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn db_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("db")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                let len = entry.metadata().unwrap().len();
                if len > 0 {
                    out.push((entry.path(), len));
                }
            }
        }
    }
    out.sort();
    out
}

fn flip_bit(path: &Path, offset: u64, bit: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 1 << bit;
    std::fs::write(path, bytes).unwrap();
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn a_flipped_byte_in_an_event_in_the_database_is_detected() {
    let base = tempfile::tempdir().unwrap();
    let clean = base.path().join("clean");
    make_journal(&clean);
    let mut hits = 0;
    for needle in ["needle-0-007", "needle-1-020", "needle-2-039"] {
        let dir = base.path().join(needle);
        copy_dir(&clean, &dir);
        // Damage every copy of the record that sled holds, so the live one is surely hit.
        for (path, _) in db_files(&dir) {
            let bytes = std::fs::read(&path).unwrap();
            for pos in find_all(&bytes, needle.as_bytes()) {
                flip_bit(&path, (pos + needle.len() - 1) as u64, 0);
                hits += 1;
            }
        }
        let outcome = inspect(&dir);
        assert!(outcome.is_err(), "{needle}: damage not detected");
        // A writer refuses it, reports what it repaired from the live log, or its verify
        // reports the damage; and it never serves changed data.
        assert_writer_notices(&dir, needle);
    }
    assert!(
        hits >= 3,
        "the needles were not found in the database files"
    );
}

#[test]
fn random_bit_flips_and_truncation_in_the_database_are_never_silently_accepted() {
    let base = tempfile::tempdir().unwrap();
    let clean = base.path().join("clean");
    let original = body(&make_journal(&clean));
    let files = db_files(&clean);
    let total: u64 = files.iter().map(|(_, l)| l).sum();
    let mut rng = Rng(seed());
    let (mut detected, mut harmless) = (0, 0);
    for i in 0..60 {
        let dir = base.path().join(format!("d{i}"));
        copy_dir(&clean, &dir);
        // Pick a byte uniformly over all database files.
        let mut at = rng.below(total);
        let (file, len) = files
            .iter()
            .find(|(_, l)| {
                let hit = at < *l;
                if !hit {
                    at -= l;
                }
                hit
            })
            .unwrap();
        let target = dir.join(file.strip_prefix(&clean).unwrap());
        let what = if i % 4 == 3 {
            let new_len = rng.below(*len);
            std::fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .unwrap()
                .set_len(new_len)
                .unwrap();
            format!("{} truncated to {new_len} of {len} bytes", target.display())
        } else {
            let bit = rng.below(8) as u8;
            flip_bit(&target, at, bit);
            format!("{} bit {bit} of byte {at} flipped", target.display())
        };
        match inspect(&dir) {
            Err(_) => {
                assert_writer_notices(&dir, &what);
                detected += 1
            }
            Ok(export) => {
                // Undetected damage must be damage to nothing live: the data reads the same.
                assert_eq!(
                    body(&export),
                    original,
                    "{what}: silently accepted changed data"
                );
                harmless += 1;
            }
        }
    }
    eprintln!("database damage: {detected} detected, {harmless} hit no live data");
    assert!(detected > 0);
}

#[test]
fn truncating_the_database_file_is_detected() {
    let base = tempfile::tempdir().unwrap();
    let clean = base.path().join("clean");
    make_journal(&clean);
    let (main, len) = db_files(&clean)
        .into_iter()
        .max_by_key(|(_, l)| *l)
        .unwrap();
    for keep in [len / 4, len / 2, len * 3 / 4] {
        let dir = base.path().join(format!("t{keep}"));
        copy_dir(&clean, &dir);
        let target = dir.join(main.strip_prefix(&clean).unwrap());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .unwrap()
            .set_len(keep)
            .unwrap();
        assert!(
            inspect(&dir).is_err(),
            "{} truncated to {keep} of {len} bytes: not detected",
            target.display()
        );
        assert_writer_notices(&dir, &format!("truncated to {keep}"));
    }
}

#[test]
fn every_bit_flip_and_truncation_of_the_live_log_is_detected() {
    let base = tempfile::tempdir().unwrap();
    let clean = base.path().join("clean");
    let original = make_journal(&clean);
    assert!(inspect(&clean).is_ok());
    let log = clean.join("events.log");
    let bytes = std::fs::read(&log).unwrap();
    let mut rng = Rng(seed());
    let dir = base.path().join("work");
    copy_dir(&clean, &dir);
    let target = dir.join("events.log");
    for _ in 0..300 {
        let at = rng.below(bytes.len() as u64);
        let bit = rng.below(8) as u8;
        let mut damaged = bytes.clone();
        damaged[at as usize] ^= 1 << bit;
        std::fs::write(&target, &damaged).unwrap();
        assert!(
            inspect(&dir).is_err(),
            "bit {bit} of byte {at} of the live log flipped: not detected (byte {:?})",
            bytes[at as usize] as char
        );
    }
    for _ in 0..20 {
        let keep = rng.below(bytes.len() as u64) as usize;
        std::fs::write(&target, &bytes[..keep]).unwrap();
        assert!(
            inspect(&dir).is_err(),
            "live log truncated to {keep}: not detected"
        );
        // A writer refuses to open over a truncated log of a cleanly closed journal.
        assert!(matches!(
            Journal::open(&dir),
            Err(journal::Error::Corrupt { .. })
        ));
    }
    // Rebuilding the live log from the database repairs it.
    journal::rebuild_live_log(&dir).unwrap();
    let j = Journal::open(&dir).unwrap();
    assert!(j.verify().unwrap().is_ok());
    let mut export = Vec::new();
    j.export_ndjson(None, &mut export).unwrap();
    assert_eq!(body(&export), body(&original));
}

#[test]
fn damage_to_the_live_log_is_detected_while_a_writer_runs() {
    let dir = tempfile::tempdir().unwrap();
    make_journal(dir.path());
    let j = Journal::open(dir.path()).unwrap();
    let log = dir.path().join("events.log");
    let bytes = std::fs::read(&log).unwrap();
    let r = Reader::open(dir.path()).unwrap();
    assert_eq!(r.source(), Source::LiveLog);
    assert!(r.verify().unwrap().is_ok());
    // Damage a record in the middle.
    let pos = find_all(&bytes, b"needle-1-020")[0];
    let mut damaged = bytes.clone();
    damaged[pos + 3] ^= 0x04;
    std::fs::write(&log, &damaged).unwrap();
    let r = Reader::open(dir.path()).unwrap();
    assert_eq!(r.source(), Source::LiveLog);
    let report = r.verify().unwrap();
    let p = report.first_problem().expect("damage not reported");
    assert!(p.detail.contains("checksum"), "{p}");
    assert!(p.run.is_some() || p.detail.contains("record"), "{p}");
    // The damaged run cannot be read; the writer's own verify sees it too.
    assert!(j.verify().unwrap().first_problem().is_some());
    // An unfinished final record (a write in progress) is tolerated: here the start of a copy
    // of the first record after the file header.
    std::fs::write(&log, &bytes).unwrap();
    let mut torn = bytes.clone();
    torn.extend_from_slice(&bytes[16..40]);
    std::fs::write(&log, &torn).unwrap();
    let r = Reader::open(dir.path()).unwrap();
    let report = r.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.notes.len(), 1);
    std::fs::write(&log, &bytes).unwrap();
}
