//! The writer: one process per journal records events, durably, with group commit. Opening
//! runs the recovery ([`crate::recovery`]); imports are read by [`crate::import`].

use crate::codec::{self, Decoded};
use crate::event::{now_ms, Event, EventKind, RunHeader, RunId};
use crate::import::{self, ImportInput, ImportLine};
use crate::layout::{sync_dir, CleanMark, CLEAN_FILE, DAMAGED_DB_DIR};
use crate::livelog;
use crate::lock::{self, LockFile, Role};
use crate::reader::{self, Reader, StoreBackend, VerifyReport};
use crate::recovery::reconcile;
use crate::state::{InstanceState, RunState};
use crate::store::{RunChain, RunIndex, Store};
use crate::Error;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long [`Journal::open`] waits for a short-lived reader that holds the database (or for
/// this process's own lock, still shared by a child it is spawning) before giving up with
/// [`Error::Locked`]. A writer holding it is reported at once.
pub const WRITER_WAIT: Duration = Duration::from_secs(10);

/// How often [`Journal::open_waiting`] tries again while another process holds the journal:
/// often enough that the waiter starts soon after the holder ends, rarely enough to cost
/// nothing (each try is one `flock` and a read of the lock file).
pub const WAIT_POLL: Duration = Duration::from_millis(200);

/// What the writer keeps about a run it appends to.
#[derive(Debug)]
struct RunCache {
    chain: RunChain,
    instances: HashSet<String>,
    /// Events stored one per key since the run's last chunk, to be packed into the next one.
    loose: Vec<(u64, Vec<u8>)>,
}

#[derive(Debug, Default)]
struct WriterState {
    runs: HashMap<RunId, RunCache>,
    /// Live-log records of recorded events not yet handed to a flush.
    pending: Vec<u8>,
    /// Number of events recorded by this handle (tickets for group commit).
    written: u64,
    /// Events in the journal.
    events: u64,
    current_run: Option<RunId>,
    poisoned: Option<String>,
}

#[derive(Debug, Default)]
struct CommitState {
    /// All tickets up to this one are durable.
    flushed: u64,
    /// A thread is flushing now.
    flushing: bool,
}

#[derive(Debug)]
struct Writer {
    dir: PathBuf,
    store: Arc<Store>,
    lock: LockFile,
    state: Mutex<WriterState>,
    commit: Mutex<CommitState>,
    cond: Condvar,
    /// The live log, open for appending. Locked by whoever writes a batch, before taking the
    /// batch from `state`, so batches reach the file in the order they were taken.
    log: Mutex<File>,
    /// Without group commit: held by an append from its start to its flush.
    serial: Option<Mutex<()>>,
}

/// How a [`Journal`] writes. The default is what reroot uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Concurrent appends share flushes (default). `false` flushes once per append, one append
    /// at a time: the naive design, kept as a baseline for the benchmark.
    pub group_commit: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { group_commit: true }
    }
}

/// The writer of a journal directory. `Send + Sync`: share it with `Arc` between threads or
/// tasks; concurrent appends share flushes.
///
/// It also reads (through `Deref` to [`Reader`]), from its own database.
#[derive(Debug)]
pub struct Journal {
    reader: Reader,
    w: Writer,
    notes: Vec<String>,
}

impl std::ops::Deref for Journal {
    type Target = Reader;
    fn deref(&self) -> &Reader {
        &self.reader
    }
}

fn lock_mutex<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a journal mutex leaves no half-done state that matters here: the
    // data on disk is checked on the next open. Keep going rather than cascade the panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` for writing. Takes the writer lock:
    /// a second writer gets [`Error::Locked`] naming the holder's pid and run. After a crash,
    /// repairs the end of the live log and copies events between it and the database so both
    /// hold the same events (see the crate docs).
    pub fn open(dir: &Path) -> Result<Journal, Error> {
        Self::open_with(dir, WriterOptions::default())
    }

    /// [`Journal::open`], waiting while another process holds the journal instead of failing:
    /// the first time it finds the journal held, it calls `on_wait` with the
    /// [`Error::Locked`] naming the holder (so the caller can say once who it waits for), then
    /// tries again every [`WAIT_POLL`] until the lock is free. With a `timeout`, it gives up
    /// once that much time has passed and returns the latest [`Error::Locked`]; since a
    /// short-lived reader is waited for inside each try (up to [`WRITER_WAIT`]), it may return
    /// that much later. Any other error is returned at once.
    ///
    /// Waiting is what lets two runs be started at once: the second begins when the first has
    /// closed the journal, and the caller then checks what the first left (e.g. its leases on
    /// instances) as usual.
    pub fn open_waiting(
        dir: &Path,
        timeout: Option<Duration>,
        on_wait: impl FnOnce(&Error),
    ) -> Result<Journal, Error> {
        let started = Instant::now();
        let mut on_wait = Some(on_wait);
        loop {
            match Self::open(dir) {
                Err(e @ Error::Locked { .. }) => {
                    let left = timeout.map(|t| t.saturating_sub(started.elapsed()));
                    if left == Some(Duration::ZERO) {
                        return Err(e);
                    }
                    if let Some(f) = on_wait.take() {
                        f(&e);
                    }
                    std::thread::sleep(left.map_or(WAIT_POLL, |l| l.min(WAIT_POLL)));
                }
                other => return other,
            }
        }
    }

    /// [`Journal::open`] with options.
    pub fn open_with(dir: &Path, options: WriterOptions) -> Result<Journal, Error> {
        crate::layout::create_dir(dir)?;
        let started = Instant::now();
        let lock = loop {
            if let Some(l) = lock::try_lock(dir, Role::Writer)? {
                break l;
            }
            let holder = lock::read_holder(dir);
            let passing = holder.role == "reader" || lock::lingering(dir, &holder);
            if passing && started.elapsed() < WRITER_WAIT {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            return Err(lock::locked_error(dir));
        };
        // A journal made before it was kept private (or whose modes someone changed) is
        // tightened before anything is read or written, with a warning.
        let exposed = crate::layout::tighten(dir)?;
        let clean = crate::layout::read_clean(dir)?;
        let log_path = livelog::log_path(dir);
        let log_len = std::fs::metadata(&log_path).map(|m| m.len()).ok();
        if let Some(mark) = clean {
            if log_len != Some(mark.log_len) {
                return Err(Error::corrupt(
                    None,
                    None,
                    format!(
                        "{} is {} but the journal was closed cleanly when it was {} bytes: \
                         it was truncated, removed or changed by something else; \
                         `journal::rebuild_live_log` rewrites it from the database",
                        log_path.display(),
                        log_len.map_or("missing".to_string(), |l| format!("{l} bytes")),
                        mark.log_len
                    ),
                ));
            }
            // From here on the journal is open: if this process dies, even while sled opens
            // its database (which writes to it), the next writer must reconcile.
            let p = dir.join(CLEAN_FILE);
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            sync_dir(dir)?;
        }
        let mut notes: Vec<String> = crate::layout::tightened_note(dir, &exposed)
            .into_iter()
            .collect();
        let mut rebuilt = false;
        let store = match Store::open(dir) {
            Ok(s) => s,
            // Every acknowledged event is in the live log (made durable before the
            // acknowledgement), and reconcile checks every record of it: a database that sled
            // cannot open (a crash while sled wrote it, or damage) is rebuilt from the log. The
            // damaged one is kept beside it for inspection.
            Err(Error::Corrupt { detail, .. }) if log_len.is_some() => {
                let db = dir.join(crate::store::DB_DIR);
                let aside = dir.join(DAMAGED_DB_DIR);
                if aside.exists() {
                    std::fs::remove_dir_all(&aside).map_err(|e| Error::io(&aside, e))?;
                }
                std::fs::rename(&db, &aside).map_err(|e| Error::io(&db, e))?;
                sync_dir(dir)?;
                notes.push(format!(
                    "the database could not be opened ({detail}){}; it was moved to {} and \
                     rebuilt from the live log",
                    if clean.is_some() {
                        " although the journal was closed cleanly: it was damaged"
                    } else {
                        " after a crash"
                    },
                    aside.display()
                ));
                rebuilt = true;
                Store::open(dir)?
            }
            Err(e) => return Err(e),
        };
        let store = Arc::new(store);
        let fast = match clean {
            Some(mark) if !rebuilt => store.clean_events()? == Some(mark.events),
            _ => false,
        };
        let events = match clean {
            Some(mark) if fast => mark.events,
            _ => {
                let (events, mut repaired) = reconcile(dir, &store)?;
                if clean.is_some() && !rebuilt {
                    notes.push(
                        "the database disagreed with the live log although the journal was \
                         closed cleanly (it was damaged); it was repaired from the live log"
                            .to_string(),
                    );
                }
                notes.append(&mut repaired);
                events
            }
        };
        // What sled (and recovery) just created, inside the private directory: made private too.
        crate::layout::tighten(dir)?;
        store.set_clean_events(None)?;
        let log = OpenOptions::new()
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(&log_path, e))?;
        let w = Writer {
            dir: dir.to_path_buf(),
            store: store.clone(),
            lock,
            state: Mutex::new(WriterState {
                events,
                ..WriterState::default()
            }),
            commit: Mutex::new(CommitState::default()),
            cond: Condvar::new(),
            log: Mutex::new(log),
            serial: (!options.group_commit).then(|| Mutex::new(())),
        };
        let reader = Reader::from_store(
            dir,
            StoreBackend {
                store,
                _lock: None,
                index_trusted: true,
                clean: None,
            },
        );
        Ok(Journal { reader, w, notes })
    }

    /// What opening repaired (empty after a clean close of a private journal): for the user's
    /// information, e.g. "3 events were copied from the live log to the database", or that
    /// the journal was readable by other users and was made private (mode 0700, files 0600).
    pub fn recovery_notes(&self) -> &[String] {
        &self.notes
    }

    /// Starts a run: records `RunCreated(header)` as event 1 and returns it once durable.
    /// Refused if a run with that id exists.
    pub fn create_run(&self, header: RunHeader) -> Result<Event, Error> {
        let _serial = self.w.serial.as_ref().map(lock_mutex);
        let run = header.id;
        let event = Event {
            run,
            seq: 1,
            instance: None,
            step: None,
            attempt: 0,
            at_ms: now_ms(),
            kind: EventKind::RunCreated(header),
        };
        let ticket = {
            let mut st = self.w.lock_state()?;
            if st.runs.contains_key(&run) || self.w.store.last_event(run)?.is_some() {
                return Err(Error::InvalidInput {
                    detail: format!(
                        "run {run} already exists in journal {}",
                        self.w.dir.display()
                    ),
                });
            }
            let chain = RunChain::start(&Decoded {
                event: event.clone(),
                prev: 0,
                crc: 0,
                hash: 0,
            })
            .map_err(|detail| Error::IllegalTransition {
                run,
                seq: 1,
                detail,
            })?;
            st.runs.insert(
                run,
                RunCache {
                    chain,
                    instances: HashSet::new(),
                    loose: Vec::new(),
                },
            );
            let res = self.w.write_event(&mut st, &event, 0);
            if res.is_err() {
                st.runs.remove(&run);
            }
            res?
        };
        self.w.wait_durable(ticket)?;
        Ok(event)
    }

    /// Records one event of `run` and returns it once it is durable (flushed to disk in the
    /// database and the live log). The journal sets the sequence number and time. An event
    /// that breaks the transition rules is refused with [`Error::IllegalTransition`] and nothing
    /// is written.
    pub fn append(
        &self,
        run: RunId,
        instance: Option<&str>,
        step: Option<&str>,
        attempt: u32,
        kind: EventKind,
    ) -> Result<Event, Error> {
        let _serial = self.w.serial.as_ref().map(lock_mutex);
        let (event, ticket) = {
            let mut st = self.w.lock_state()?;
            self.w.load_run(&mut st, run)?;
            let cache = st.runs.get(&run).ok_or_else(|| Error::NotFound {
                what: format!("run {run}"),
            })?;
            let seq = cache.chain.replay.state().last_seq + 1;
            let event = Event {
                run,
                seq,
                instance: instance.map(str::to_string),
                step: step.map(str::to_string),
                attempt,
                at_ms: now_ms(),
                kind,
            };
            cache
                .chain
                .replay
                .check(&event)
                .map_err(|detail| Error::IllegalTransition { run, seq, detail })?;
            let prev = cache.chain.last_hash;
            let ticket = self.w.write_event(&mut st, &event, prev)?;
            (event, ticket)
        };
        self.w.wait_durable(ticket)?;
        Ok(event)
    }

    /// The state of `run` as this writer holds it: after the first call no event is read from
    /// the store again, so an engine that asks once per instance pays for the run's size, not
    /// for its number of events. Works on a handle that can no longer write (after a failed
    /// write the cache still holds every event that was recorded).
    pub fn run_state(&self, run: RunId) -> Result<RunState, Error> {
        self.with_cached(run, |state| state.clone())
    }

    /// The state of one instance of `run` from this writer's cache (see [`Journal::run_state`]);
    /// `None` if the instance has no slot in the run.
    pub fn instance_state(
        &self,
        run: RunId,
        instance: &str,
    ) -> Result<Option<InstanceState>, Error> {
        self.with_cached(run, |state| state.instance(instance).cloned())
    }

    fn with_cached<T>(&self, run: RunId, f: impl FnOnce(&RunState) -> T) -> Result<T, Error> {
        let mut st = lock_mutex(&self.w.state);
        if !st.runs.contains_key(&run) {
            if st.poisoned.is_some() {
                drop(st);
                return Ok(f(&self.reader.replay(run)?));
            }
            self.w.load_run(&mut st, run)?;
        }
        let cache = st.runs.get(&run).ok_or_else(|| Error::NotFound {
            what: format!("run {run}"),
        })?;
        Ok(f(cache.chain.replay.state()))
    }

    /// Verifies the journal (see [`Reader::verify`]). Appends wait meanwhile; everything
    /// recorded so far is flushed first, so the database and the live log must agree exactly.
    pub fn verify(&self) -> Result<VerifyReport, Error> {
        let log = lock_mutex(&self.w.log);
        let mut st = self.w.lock_state()?;
        let buf = std::mem::take(&mut st.pending);
        let target = st.written;
        if let Err(e) = self.w.flush_locked(&log, &buf) {
            st.poisoned = Some(e.clone());
            return Err(self.w.poisoned(e));
        }
        {
            let mut c = lock_mutex(&self.w.commit);
            c.flushed = c.flushed.max(target);
            self.w.cond.notify_all();
        }
        let log_len = log
            .metadata()
            .map_err(|e| Error::io(livelog::log_path(&self.w.dir), e))?
            .len();
        reader::verify_store(
            &self.w.dir,
            &self.w.store,
            Some(CleanMark {
                log_len,
                events: st.events,
            }),
            true,
        )
    }

    /// Imports an NDJSON export (or a copy of a binary live log): see [`crate::import_ndjson`].
    pub fn import_ndjson(&self, input: &mut dyn BufRead) -> Result<usize, Error> {
        // Parse and check everything before writing anything.
        let ImportInput { runs, unit } = import::read_input(input)?;
        let bad = |no: usize, detail: String| Error::InvalidInput {
            detail: format!("import {unit} {no}: {detail}"),
        };
        let ticket = {
            let mut st = self.w.lock_state()?;
            // Check every run against what the journal holds.
            // Per run: its events the journal lacks, and its chain checked through them.
            let mut plan: Vec<(RunId, &[ImportLine], RunChain)> = Vec::new();
            for (run, events) in &runs {
                let existing = self.w.store.read_run(*run)?;
                let (hashes, mut chain): (Vec<u64>, Option<RunChain>) = match existing {
                    Some((evs, chain)) => (evs.iter().map(|d| d.hash).collect(), Some(chain)),
                    None => (Vec::new(), None),
                };
                let mut first_new = events.len();
                for (i, (no, d, _)) in events.iter().enumerate() {
                    let expect_seq = i as u64 + 1;
                    if d.event.seq != expect_seq {
                        let why = if i == 0 {
                            "an import must hold whole runs, from event 1"
                        } else {
                            "events are missing or out of order"
                        };
                        return Err(bad(
                            *no,
                            format!(
                                "run {run}: event {} where event {expect_seq} was expected: {why}",
                                d.event.seq
                            ),
                        ));
                    }
                    let idx = (d.event.seq - 1) as usize;
                    if let Some(h) = hashes.get(idx) {
                        if *h != d.hash {
                            return Err(bad(
                                *no,
                                format!(
                                    "run {run} event {}: differs from the same event already in \
                                     the journal",
                                    d.event.seq
                                ),
                            ));
                        }
                        continue;
                    }
                    RunChain::feed(&mut chain, d)
                        .map_err(|e| bad(*no, format!("run {run} event {}: {e}", d.event.seq)))?;
                    first_new = first_new.min(i);
                }
                if let Some(chain) = chain {
                    if first_new < events.len() {
                        plan.push((*run, &events[first_new..], chain));
                    }
                }
            }
            // Write.
            let mut count = 0usize;
            let mut ticket = 0;
            for (run, new_events, chain) in plan {
                st.runs.remove(&run);
                let mut instances: HashSet<String> = HashSet::new();
                for (_, d, bytes) in new_events {
                    ticket = self.w.store_raw(&mut st, d, bytes)?;
                    if let Some(i) = &d.event.instance {
                        if instances.insert(i.clone()) {
                            self.w
                                .store
                                .put_instance(i, run)
                                .map_err(|e| self.w.poison(&mut st, e))?;
                        }
                    }
                    count += 1;
                }
                let state = chain.replay.state();
                for inst in &state.instances {
                    self.w
                        .store
                        .put_instance(&inst.name, run)
                        .map_err(|e| self.w.poison(&mut st, e))?;
                }
                self.w
                    .store
                    .put_index(&RunIndex {
                        header: state.header.clone(),
                        status: state.status,
                    })
                    .map_err(|e| self.w.poison(&mut st, e))?;
                let packed = self
                    .w
                    .store
                    .loose_tail(run)
                    .and_then(|mut loose| self.w.store.compact(run, &mut loose));
                packed.map_err(|e| self.w.poison(&mut st, e))?;
            }
            if count == 0 {
                return Ok(0);
            }
            (ticket, count)
        };
        self.w.wait_durable(ticket.0)?;
        Ok(ticket.1)
    }

    /// Closes the journal cleanly: flushes, leaves the clean-close marker, releases the lock.
    /// Dropping the journal does the same but cannot report errors.
    pub fn close(mut self) -> Result<(), Error> {
        self.w.close()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.w.close();
    }
}

impl Writer {
    fn lock_state(&self) -> Result<MutexGuard<'_, WriterState>, Error> {
        let st = lock_mutex(&self.state);
        if let Some(p) = &st.poisoned {
            return Err(self.poisoned(p.clone()));
        }
        Ok(st)
    }

    fn poisoned(&self, detail: String) -> Error {
        Error::Poisoned {
            dir: self.dir.clone(),
            detail,
        }
    }

    /// Marks the handle unusable after a failed write and returns the error.
    fn poison(&self, st: &mut WriterState, e: Error) -> Error {
        if st.poisoned.is_none() {
            st.poisoned = Some(e.to_string());
        }
        e
    }

    /// Makes sure the run is in the cache (replaying it from the database if needed).
    fn load_run(&self, st: &mut WriterState, run: RunId) -> Result<(), Error> {
        if st.runs.contains_key(&run) {
            return Ok(());
        }
        let (_, chain) = self.store.read_run(run)?.ok_or_else(|| Error::NotFound {
            what: format!("run {run} in journal {}", self.dir.display()),
        })?;
        let instances = chain
            .replay
            .state()
            .instances
            .iter()
            .map(|i| i.name.clone())
            .collect();
        let mut loose = self.store.loose_tail(run)?;
        // Imported or recovered events may not be packed yet.
        if let Err(e) = self.store.compact(run, &mut loose) {
            return Err(self.poison(st, e));
        }
        st.runs.insert(
            run,
            RunCache {
                chain,
                instances,
                loose,
            },
        );
        Ok(())
    }

    /// Encodes and records a checked event (database insert, index updates, live-log record
    /// queued). Returns its group-commit ticket.
    fn write_event(&self, st: &mut WriterState, event: &Event, prev: u64) -> Result<u64, Error> {
        let bytes = codec::encode(event, prev)?;
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&bytes[9..13]);
        let d = Decoded {
            event: event.clone(),
            prev,
            crc: u32::from_le_bytes(crc),
            hash: codec::fnv1a64(&bytes),
        };
        let run = event.run;
        let ticket = self.store_raw(st, &d, &bytes)?;
        let cache = st.runs.get_mut(&run).ok_or_else(|| Error::NotFound {
            what: format!("run {run}"),
        })?;
        if event.seq == 1 {
            // The chain was started from this event by the caller; fix its hash.
            cache.chain.last_hash = d.hash;
        } else if let Err(detail) = cache.chain.push(&d) {
            let e = Error::IllegalTransition {
                run,
                seq: event.seq,
                detail,
            };
            return Err(self.poison(st, e));
        }
        cache.loose.push((event.seq, bytes));
        if cache.loose.len() >= crate::store::CHUNK_EVENTS {
            let mut loose = std::mem::take(&mut cache.loose);
            let res = self.store.compact(run, &mut loose);
            if let Some(cache) = st.runs.get_mut(&run) {
                cache.loose = loose;
            }
            if let Err(e) = res {
                return Err(self.poison(st, e));
            }
        }
        let mut new_instances = Vec::new();
        if let EventKind::RunCreated(h) = &event.kind {
            new_instances.extend(h.instances.iter().cloned());
        }
        if let Some(i) = &event.instance {
            new_instances.push(i.clone());
        }
        for i in new_instances {
            let cache = st.runs.get_mut(&run).ok_or_else(|| Error::NotFound {
                what: format!("run {run}"),
            })?;
            if cache.instances.insert(i.clone()) {
                if let Err(e) = self.store.put_instance(&i, run) {
                    return Err(self.poison(st, e));
                }
            }
        }
        if event.kind.is_run_event() {
            let cache = st.runs.get(&run).ok_or_else(|| Error::NotFound {
                what: format!("run {run}"),
            })?;
            let state = cache.chain.replay.state();
            let index = RunIndex {
                header: state.header.clone(),
                status: state.status,
            };
            if let Err(e) = self.store.put_index(&index) {
                return Err(self.poison(st, e));
            }
        }
        if st.current_run != Some(run) {
            st.current_run = Some(run);
            // Best effort: only used to name the run in another process's Locked error.
            let _ = self.lock.set_run(Some(run));
        }
        Ok(ticket)
    }

    /// Inserts an encoded event into the database and queues its live-log record.
    fn store_raw(&self, st: &mut WriterState, d: &Decoded, bytes: &[u8]) -> Result<u64, Error> {
        let key = codec::event_key(d.event.run, d.event.seq);
        if let Err(e) = self.store.events.insert(key, bytes) {
            return Err(self.poison(st, Error::Storage(e)));
        }
        livelog::frame(bytes, &mut st.pending);
        st.written += 1;
        st.events += 1;
        Ok(st.written)
    }

    /// Writes a batch of records to the live log, then makes the log and the database durable.
    fn flush_locked(&self, log: &File, buf: &[u8]) -> Result<(), String> {
        let path = livelog::log_path(&self.dir);
        let mut f = log;
        if !buf.is_empty() {
            f.write_all(buf)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        f.sync_data()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        self.store
            .flush()
            .map_err(|e| format!("{}: {e}", self.store.what()))?;
        Ok(())
    }

    /// Group commit: returns once the event with this ticket is durable. The first waiter to
    /// find no flush in progress flushes everything recorded so far, for all waiters.
    fn wait_durable(&self, ticket: u64) -> Result<(), Error> {
        let mut c = lock_mutex(&self.commit);
        loop {
            if c.flushed >= ticket {
                return Ok(());
            }
            if c.flushing {
                c = self.cond.wait(c).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            c.flushing = true;
            drop(c);
            let result = {
                let log = lock_mutex(&self.log);
                let mut st = lock_mutex(&self.state);
                if let Some(p) = &st.poisoned {
                    Err((p.clone(), 0))
                } else {
                    let buf = std::mem::take(&mut st.pending);
                    let target = st.written;
                    drop(st);
                    match self.flush_locked(&log, &buf) {
                        Ok(()) => Ok(target),
                        Err(e) => {
                            let mut st = lock_mutex(&self.state);
                            st.poisoned.get_or_insert(e.clone());
                            Err((e, 0))
                        }
                    }
                }
            };
            c = lock_mutex(&self.commit);
            c.flushing = false;
            self.cond.notify_all();
            match result {
                Ok(target) => c.flushed = c.flushed.max(target),
                Err((e, _)) => return Err(self.poisoned(e)),
            }
        }
    }

    fn close(&mut self) -> Result<(), Error> {
        let (written, events) = {
            let st = lock_mutex(&self.state);
            if let Some(p) = &st.poisoned {
                return Err(self.poisoned(p.clone()));
            }
            (st.written, st.events)
        };
        if written > 0 {
            self.wait_durable(written)?;
        }
        let log_len = {
            let log = lock_mutex(&self.log);
            log.sync_data()
                .map_err(|e| Error::io(livelog::log_path(&self.dir), e))?;
            log.metadata()
                .map_err(|e| Error::io(livelog::log_path(&self.dir), e))?
                .len()
        };
        self.store.set_clean_events(Some(events))?;
        self.store.flush()?;
        let mark = CleanMark { log_len, events };
        let tmp = self.dir.join("clean.tmp");
        let path = self.dir.join(CLEAN_FILE);
        let text = serde_json::to_vec(&mark).unwrap_or_default();
        let mut f = crate::layout::private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&text)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        sync_dir(&self.dir)?;
        // Refuse further use (close is also called by Drop after an explicit close).
        lock_mutex(&self.state).poisoned = Some("the journal was closed".into());
        Ok(())
    }
}
