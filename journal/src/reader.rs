//! Reading a journal: listing runs, reading and replaying a run, an instance's history,
//! verification and NDJSON export, from the database or, while a writer holds it, from the live
//! log.

use crate::codec::{self, Decoded, NdjsonHeader};
use crate::event::{Event, RunHeader, RunId};
use crate::livelog::{self, LogSnapshot};
use crate::lock::{self, LockFile, Role};
use crate::state::{RunState, RunStatus};
use crate::store::{self, RunChain, RunIndex, Store};
use crate::Error;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What [`Reader::export`] writes.
#[derive(Default, Clone, Copy)]
pub struct ExportOptions<'a> {
    /// These runs (written oldest first); `None`: every run.
    pub runs: Option<&'a [RunId]>,
    /// Changes each event before it is written, to leave out what the extract's reader must
    /// not see (the caller knows what its payloads mean; the journal does not).
    pub redact: Option<&'a dyn Fn(&mut Event)>,
}

/// A run in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run's id.
    pub id: RunId,
    /// Its command line.
    pub command: Vec<String>,
    /// The instances it targets.
    pub instances: Vec<String>,
    /// When it started (from its header).
    pub started_at_ms: i64,
    /// Its status.
    pub status: RunStatus,
    /// Its number of events.
    pub events: u64,
    /// When its latest event was recorded.
    pub last_at_ms: i64,
    /// Who started it.
    pub user: String,
    /// Its header's options (what the application recorded in it), for listings that show
    /// some of them; not in the JSON of a listing, since they can be large.
    #[serde(skip)]
    pub options: std::collections::BTreeMap<String, String>,
}

/// Which runs [`Reader::runs`] lists. The default lists all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFilter {
    /// Only runs with one of these statuses (empty: any).
    pub statuses: Vec<RunStatus>,
    /// Only runs started at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Only runs started before this time (ms since the epoch).
    pub until_ms: Option<i64>,
    /// Only runs that target or touched this instance.
    pub instance: Option<String>,
    /// At most this many runs (the newest).
    pub limit: Option<usize>,
}

/// The process that holds a journal for writing, as seen by a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterInfo {
    /// Its process id, if its lock file says.
    pub pid: Option<u32>,
    /// The run it is working on, if any.
    pub run: Option<RunId>,
}

/// Where a reader reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// The sled database (no writer was running, or this is the writer).
    Database,
    /// The live log (a writer holds the database).
    LiveLog,
}

/// One problem found by [`Reader::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The run concerned, if known.
    pub run: Option<RunId>,
    /// The sequence number concerned, if known.
    pub seq: Option<u64>,
    /// What is wrong and where.
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.run, self.seq) {
            (Some(r), Some(s)) => write!(f, "run {r} event {s}: {}", self.detail),
            (Some(r), None) => write!(f, "run {r}: {}", self.detail),
            _ => f.write_str(&self.detail),
        }
    }
}

/// The result of [`Reader::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// What was verified.
    pub source: Source,
    /// Runs seen.
    pub runs: u64,
    /// Events checked.
    pub events: u64,
    /// Problems, in the order found: the first is the first problem of the journal.
    pub problems: Vec<Problem>,
    /// Things worth knowing that are not damage (a write cut short by a crash, to be repaired by
    /// the next writer).
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first problem, if any.
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems.first()
    }
}

use crate::layout::{read_clean, CleanMark};

#[derive(Debug)]
pub(crate) struct StoreBackend {
    pub store: Arc<Store>,
    /// Held by a standalone reader; `None` inside a writer (the writer holds the lock).
    pub _lock: Option<LockFile>,
    /// The `runs` index is up to date (a writer maintains it, or the last writer closed cleanly).
    pub index_trusted: bool,
    /// The clean-close marker the last writer left, if any (standalone reader only).
    pub clean: Option<CleanMark>,
}

#[derive(Debug)]
enum Backend {
    Store(StoreBackend),
    Log(LogSnapshot),
}

/// Read access to a journal; works while another process writes it.
///
/// A reader opened while no writer runs uses the database and holds the journal's lock for its
/// lifetime (a writer starting meanwhile waits up to [`crate::WRITER_WAIT`]); keep it short-lived.
/// While a writer runs, it reads a snapshot of the live log taken at open.
#[derive(Debug)]
pub struct Reader {
    dir: PathBuf,
    backend: Backend,
    notes: Vec<String>,
}

/// What a run looks like to the listing code, whatever the backend.
struct RunInfo {
    header: RunHeader,
    status: RunStatus,
    events: u64,
    last_at_ms: i64,
}

impl Reader {
    /// Opens the journal in `dir` for reading: the database if no writer holds it, else the live
    /// log. Fails with `NotFound` if `dir` holds no journal.
    pub fn open(dir: &Path) -> Result<Reader, Error> {
        if !dir.join(store::DB_DIR).exists() && !livelog::log_path(dir).exists() {
            return Err(Error::NotFound {
                what: format!("journal in {}", dir.display()),
            });
        }
        match lock::try_lock(dir, Role::Reader)? {
            Some(lock) => {
                let clean = read_clean(dir)?;
                let store = match Store::open(dir) {
                    Ok(s) => s,
                    // A crash can leave sled unable to open its database; every acknowledged
                    // event is in the live log, and the next writer rebuilds the database.
                    Err(Error::Corrupt { detail, .. })
                        if clean.is_none() && livelog::log_path(dir).exists() =>
                    {
                        drop(lock);
                        let mut r = Self::open_live_log(dir)?;
                        r.notes.push(format!(
                            "the database cannot be opened ({detail}); read the live log \
                             instead; the next writer rebuilds the database from it"
                        ));
                        return Ok(r);
                    }
                    Err(e) => return Err(e),
                };
                Ok(Reader {
                    dir: dir.to_path_buf(),
                    backend: Backend::Store(StoreBackend {
                        store: Arc::new(store),
                        _lock: Some(lock),
                        index_trusted: clean.is_some(),
                        clean,
                    }),
                    notes: Vec::new(),
                })
            }
            None => Self::open_live_log(dir),
        }
    }

    /// Opens the journal's live log only, whoever holds the database.
    pub fn open_live_log(dir: &Path) -> Result<Reader, Error> {
        Ok(Reader {
            dir: dir.to_path_buf(),
            backend: Backend::Log(LogSnapshot::load(dir)?),
            notes: Vec::new(),
        })
    }

    pub(crate) fn from_store(dir: &Path, backend: StoreBackend) -> Reader {
        Reader {
            dir: dir.to_path_buf(),
            backend: Backend::Store(backend),
            notes: Vec::new(),
        }
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where this reader reads from.
    pub fn source(&self) -> Source {
        match self.backend {
            Backend::Store(_) => Source::Database,
            Backend::Log(_) => Source::LiveLog,
        }
    }

    /// The process writing to the journal, when one holds it (this reader then reads the live
    /// log): its pid and the run it last worked on, as its lock file says.
    pub fn writer(&self) -> Option<WriterInfo> {
        if self.source() != Source::LiveLog {
            return None;
        }
        let holder = crate::lock::read_holder(&self.dir);
        (holder.role == "writer").then_some(WriterInfo {
            pid: holder.pid,
            run: holder.run,
        })
    }

    /// The ids of all runs, in no particular order.
    fn run_ids(&self) -> Result<Vec<RunId>, Error> {
        match &self.backend {
            Backend::Store(b) if b.index_trusted => b.store.indexed_runs(),
            Backend::Store(b) => b.store.runs_with_events(),
            Backend::Log(snap) => Ok(snap
                .runs
                .iter()
                .filter(|(_, r)| r.chain.is_some())
                .map(|(id, _)| *id)
                .collect()),
        }
    }

    fn info(&self, run: RunId) -> Result<RunInfo, Error> {
        match &self.backend {
            Backend::Store(b) => {
                let last = b.store.last_event(run)?.ok_or_else(|| Error::NotFound {
                    what: format!("run {run}"),
                })?;
                let (header, status) = match b.store.index(run)? {
                    Some(RunIndex { header, status }) if b.index_trusted => (header, status),
                    _ => {
                        let st = self.replay(run)?;
                        (st.header, st.status)
                    }
                };
                Ok(RunInfo {
                    header,
                    status,
                    events: last.event.seq,
                    last_at_ms: last.event.at_ms,
                })
            }
            Backend::Log(snap) => {
                let r = snap.run(run)?;
                let chain = r.chain.as_ref().ok_or_else(|| Error::NotFound {
                    what: format!("run {run}"),
                })?;
                let st = chain.replay.state();
                Ok(RunInfo {
                    header: st.header.clone(),
                    status: st.status,
                    events: st.last_seq,
                    last_at_ms: r.events.last().map(|d| d.event.at_ms).unwrap_or(0),
                })
            }
        }
    }

    /// One run's summary.
    pub fn summary(&self, run: RunId) -> Result<RunSummary, Error> {
        let i = self.info(run)?;
        Ok(RunSummary {
            id: run,
            command: i.header.command,
            instances: i.header.instances,
            started_at_ms: i.header.started_at_ms,
            status: i.status,
            events: i.events,
            last_at_ms: i.last_at_ms,
            user: i.header.user,
            options: i.header.options,
        })
    }

    /// The runs matching `filter`, newest first (by start time, then id).
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, Error> {
        let touching = match &filter.instance {
            Some(i) => Some(self.runs_touching(i)?),
            None => None,
        };
        let mut out = Vec::new();
        for id in self.run_ids()? {
            if let Some(t) = &touching {
                if !t.contains(&id) {
                    continue;
                }
            }
            let s = self.summary(id)?;
            if !filter.statuses.is_empty() && !filter.statuses.contains(&s.status) {
                continue;
            }
            if filter.since_ms.is_some_and(|t| s.started_at_ms < t) {
                continue;
            }
            if filter.until_ms.is_some_and(|t| s.started_at_ms >= t) {
                continue;
            }
            out.push(s);
        }
        out.sort_by(|a, b| b.started_at_ms.cmp(&a.started_at_ms).then(b.id.cmp(&a.id)));
        if let Some(n) = filter.limit {
            out.truncate(n);
        }
        Ok(out)
    }

    /// Runs that have not finished (Running or Paused), newest first: candidates for resume.
    pub fn unfinished(&self) -> Result<Vec<RunSummary>, Error> {
        self.runs(&RunFilter {
            statuses: vec![RunStatus::Running, RunStatus::Paused],
            ..RunFilter::default()
        })
    }

    fn decoded(&self, run: RunId) -> Result<Vec<Decoded>, Error> {
        match &self.backend {
            Backend::Store(b) => {
                b.store
                    .read_run(run)?
                    .map(|(events, _)| events)
                    .ok_or_else(|| Error::NotFound {
                        what: format!("run {run}"),
                    })
            }
            Backend::Log(snap) => Ok(snap.run(run)?.events.clone()),
        }
    }

    /// A run's events in order, each verified (checksum, chain, transitions).
    pub fn events(&self, run: RunId) -> Result<Vec<Event>, Error> {
        Ok(self.decoded(run)?.into_iter().map(|d| d.event).collect())
    }

    /// A run's state: the fold of its verified events.
    pub fn replay(&self, run: RunId) -> Result<RunState, Error> {
        match &self.backend {
            Backend::Store(b) => match b.store.replay_run(run)? {
                Some(chain) => Ok(chain.replay.into_state()),
                None => Err(Error::NotFound {
                    what: format!("run {run}"),
                }),
            },
            Backend::Log(snap) => match &snap.run(run)?.chain {
                Some(c) => Ok(c.replay.state().clone()),
                None => Err(Error::NotFound {
                    what: format!("run {run}"),
                }),
            },
        }
    }

    fn runs_touching(&self, instance: &str) -> Result<HashSet<RunId>, Error> {
        match &self.backend {
            Backend::Store(b) if b.index_trusted => {
                Ok(b.store.instance_runs(instance)?.into_iter().collect())
            }
            _ => {
                let mut out = HashSet::new();
                for id in self.run_ids()? {
                    let st = self.replay(id)?;
                    if st.instance(instance).is_some() {
                        out.insert(id);
                    }
                }
                Ok(out)
            }
        }
    }

    /// An instance's history across all runs, oldest run first: the events naming the instance,
    /// and the run-level events (created, paused, resumed, finished, undo requested) of the runs
    /// that target it.
    pub fn instance_history(&self, instance: &str) -> Result<Vec<Event>, Error> {
        let mut runs: Vec<(i64, RunId)> = Vec::new();
        for id in self.runs_touching(instance)? {
            runs.push((self.info(id)?.header.started_at_ms, id));
        }
        runs.sort();
        let mut out = Vec::new();
        for (_, id) in runs {
            for ev in self.events(id)? {
                if ev.instance.as_deref() == Some(instance) || ev.kind.is_run_event() {
                    out.push(ev);
                }
            }
        }
        Ok(out)
    }

    /// The run whose id starts with `prefix` (hex digits, dashes ignored, any case): what users
    /// type, usually the first 8 characters.
    pub fn resolve_run(&self, prefix: &str) -> Result<RunId, Error> {
        let want: String = prefix
            .chars()
            .filter(|c| *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if want.is_empty() || want.len() > 32 || !want.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::InvalidInput {
                detail: format!(
                    "run id {prefix:?}: expected 1 to 32 hex digits (the start of a run id)"
                ),
            });
        }
        let mut matches: Vec<RunId> = self
            .run_ids()?
            .into_iter()
            .filter(|id| id.simple().to_string().starts_with(&want))
            .collect();
        matches.sort();
        match matches.len() {
            0 => Err(Error::NotFound {
                what: format!("run {prefix}"),
            }),
            1 => Ok(matches[0]),
            _ => Err(Error::Ambiguous {
                prefix: prefix.to_string(),
                matches,
            }),
        }
    }

    /// Writes the journal (`run: None`) or one run as NDJSON: a header line, then every event,
    /// run by run (oldest run first), each with its checksum and chain hash. Every event is
    /// verified first; a damaged run stops the export with an error.
    pub fn export_ndjson(&self, run: Option<RunId>, out: &mut dyn Write) -> Result<(), Error> {
        self.export(
            &ExportOptions {
                runs: run.as_ref().map(std::slice::from_ref),
                redact: None,
            },
            out,
        )
    }

    /// Writes the runs `options` names (all of them by default) as NDJSON, like
    /// [`Reader::export_ndjson`]. With a redaction, every event passes through it before it is
    /// written; the header's scope is then `redacted` and each run's checksums and hash chain
    /// are computed over the changed events, so the extract is checked like any export, but
    /// `import` refuses it (it is no longer the journal's record).
    pub fn export(&self, options: &ExportOptions<'_>, out: &mut dyn Write) -> Result<(), Error> {
        let mut ids = Vec::new();
        for id in options
            .runs
            .map_or_else(|| self.run_ids(), |r| Ok(r.to_vec()))?
        {
            ids.push((self.info(id)?.header.started_at_ms, id));
        }
        ids.sort();
        ids.dedup();
        let scope = match (options.redact, options.runs) {
            (Some(_), _) => codec::REDACTED_SCOPE,
            (None, Some(r)) if r.len() == 1 => "run",
            (None, _) => "journal",
        };
        let one = match options.runs {
            Some(r) if r.len() == 1 => Some(r[0]),
            _ => None,
        };
        let header = NdjsonHeader::new(scope, one);
        let mut w = std::io::BufWriter::new(out);
        let io = |e| Error::io("NDJSON output", e);
        w.write_all(header.to_line().as_bytes()).map_err(io)?;
        for (_, id) in ids {
            let mut prev = 0u64;
            for mut d in self.decoded(id)? {
                if let Some(redact) = options.redact {
                    redact(&mut d.event);
                    let bytes = codec::encode(&d.event, prev)?;
                    d = codec::decode(&bytes).map_err(|e| {
                        Error::corrupt(Some(id), Some(d.event.seq), format!("{e:?}"))
                    })?;
                    prev = d.hash;
                }
                w.write_all(codec::to_line(&d).as_bytes()).map_err(io)?;
            }
        }
        w.flush().map_err(io)?;
        Ok(())
    }

    /// Checks the whole journal: every record's checksum, every run's sequence numbers, hash
    /// chain and transitions, the indexes, and that the database and the live log hold the same
    /// events. Returns a report; `Err` only when the journal cannot be read at all.
    pub fn verify(&self) -> Result<VerifyReport, Error> {
        let mut report = self.verify_backend()?;
        report.notes.splice(0..0, self.notes.iter().cloned());
        Ok(report)
    }

    fn verify_backend(&self) -> Result<VerifyReport, Error> {
        match &self.backend {
            Backend::Store(b) => {
                let expect = b.clean;
                verify_store(&self.dir, &b.store, expect, b.clean.is_some())
            }
            Backend::Log(snap) => {
                let mut notes = Vec::new();
                if let Some(n) = snap.torn_tail {
                    notes.push(format!(
                        "{}: its last {n} bytes are an unfinished record: a write in progress \
                         or cut short; ignored",
                        snap.path.display()
                    ));
                }
                Ok(VerifyReport {
                    source: Source::LiveLog,
                    runs: snap.runs.len() as u64,
                    events: snap.events,
                    problems: snap.problems.clone(),
                    notes,
                })
            }
        }
    }
}

/// Verifies a database and its live log. With `strict`, the two must agree exactly (the writer
/// closed cleanly, or the caller is the writer and has flushed); otherwise a difference at the
/// end of a run, which a crash leaves, is a note.
pub(crate) fn verify_store(
    dir: &Path,
    store: &Store,
    expect: Option<CleanMark>,
    strict: bool,
) -> Result<VerifyReport, Error> {
    let what = store.what();
    let mut report = VerifyReport {
        source: Source::Database,
        runs: 0,
        events: 0,
        problems: Vec::new(),
        notes: Vec::new(),
    };
    // 1. Every stored event, run by run.
    struct Seen {
        chain: Option<RunChain>,
        hashes: Vec<u64>,
        broken: bool,
    }
    let mut runs: HashMap<RunId, Seen> = HashMap::new();
    let mut order: Vec<RunId> = Vec::new();
    let reading = store.reading();
    for kv in store.events.iter() {
        let (k, v) = kv?;
        let Some((run, first)) = codec::split_event_key(&k) else {
            report.problems.push(Problem {
                run: None,
                seq: None,
                detail: format!("{what}: key of {} bytes in the events tree", k.len()),
            });
            continue;
        };
        let seen = runs.entry(run).or_insert_with(|| {
            order.push(run);
            Seen {
                chain: None,
                hashes: Vec::new(),
                broken: false,
            }
        });
        if seen.broken {
            continue;
        }
        let mut count = 0u64;
        let res = store::for_each_in_value(run, first, &v, &what, &mut |seq, bytes, _| {
            let h = store::check_stored(&mut seen.chain, run, seq, bytes, &what)?.hash;
            seen.hashes.push(h);
            count += 1;
            Ok(())
        });
        report.events += count;
        if let Err(e) = res {
            seen.broken = true;
            let (seq, detail) = match e {
                Error::Corrupt { seq, detail, .. } => (seq, detail),
                other => (Some(first), other.to_string()),
            };
            report.problems.push(Problem {
                run: Some(run),
                seq,
                detail,
            });
        }
    }
    drop(reading);
    report.runs = runs.len() as u64;
    // 2. The runs index and the instances index.
    let indexed: HashSet<RunId> = store.indexed_runs()?.into_iter().collect();
    let mut instance_index: HashSet<Vec<u8>> = HashSet::new();
    if strict {
        for kv in store.instances.iter() {
            instance_index.insert(kv?.0.to_vec());
        }
    }
    for id in &order {
        let seen = &runs[id];
        let Some(chain) = &seen.chain else { continue };
        if seen.broken {
            continue;
        }
        let st = chain.replay.state();
        match store.index(*id) {
            Ok(Some(ix)) => {
                if ix.header != st.header || (strict && ix.status != st.status) {
                    report.problems.push(Problem {
                        run: Some(*id),
                        seq: None,
                        detail: format!(
                            "{what}: runs index says status {}, the events say {}",
                            ix.status, st.status
                        ),
                    });
                }
            }
            Ok(None) if strict => report.problems.push(Problem {
                run: Some(*id),
                seq: None,
                detail: format!("{what}: run missing from the runs index"),
            }),
            Ok(None) => report.notes.push(format!(
                "run {id} is not indexed yet (the next writer repairs it)"
            )),
            Err(e) => report.problems.push(Problem {
                run: Some(*id),
                seq: None,
                detail: e.to_string(),
            }),
        }
        if strict {
            let touching = st.instances.iter().map(|i| i.name.as_str());
            for inst in touching {
                if !instance_index.contains(&store::instance_key(inst, Some(*id))) {
                    report.problems.push(Problem {
                        run: Some(*id),
                        seq: None,
                        detail: format!(
                            "{what}: instance {inst:?} missing from the instances index"
                        ),
                    });
                }
            }
        }
    }
    for id in indexed.iter().filter(|id| !runs.contains_key(id)) {
        report.problems.push(Problem {
            run: Some(*id),
            seq: None,
            detail: format!("{what}: run in the runs index has no events"),
        });
    }
    // 3. The live log against the database.
    let path = livelog::log_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if report.events > 0 || strict {
                report.problems.push(Problem {
                    run: None,
                    seq: None,
                    detail: format!("live log {} is missing", path.display()),
                });
            }
            return Ok(report);
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    let lwhat = path.display().to_string();
    let has_header = match livelog::check_header(&bytes, &lwhat) {
        Ok(h) => h,
        Err(e) => {
            report.problems.push(Problem {
                run: None,
                seq: None,
                detail: e.to_string(),
            });
            return Ok(report);
        }
    };
    let (records, complete) = if has_header {
        livelog::split_records(&bytes)
    } else {
        (Vec::new(), 0)
    };
    if complete < bytes.len() {
        let msg = format!(
            "{lwhat}: its last {} bytes are an unfinished record",
            bytes.len() - complete
        );
        if strict {
            report.problems.push(Problem {
                run: None,
                seq: None,
                detail: msg,
            });
        } else {
            report.notes.push(format!(
                "{msg}: a write cut short by a crash; the next writer removes it"
            ));
        }
    }
    if let Some(mark) = expect {
        if mark.log_len != bytes.len() as u64 {
            report.problems.push(Problem {
                run: None,
                seq: None,
                detail: format!(
                    "{lwhat} is {} bytes but the journal was closed when it was {} bytes: \
                     it was truncated or changed",
                    bytes.len(),
                    mark.log_len
                ),
            });
        }
        if mark.events != report.events {
            report.problems.push(Problem {
                run: None,
                seq: None,
                detail: format!(
                    "{what} holds {} readable events but the journal was closed with {}: \
                     events were lost",
                    report.events, mark.events
                ),
            });
        }
    }
    if !has_header {
        if report.events > 0 {
            report.problems.push(Problem {
                run: None,
                seq: None,
                detail: format!("{lwhat} has no file header"),
            });
        }
        return Ok(report);
    }
    let mut in_log: HashMap<RunId, u64> = HashMap::new();
    let mut log_only = 0u64;
    let mut log_broken: HashSet<RunId> = HashSet::new();
    for rec in &records {
        let (d, _) = match rec.decode() {
            Ok(v) => v,
            Err(detail) => {
                report.problems.push(Problem {
                    run: None,
                    seq: None,
                    detail: format!("{}: {detail}", rec.place(&lwhat)),
                });
                continue;
            }
        };
        let run = d.event.run;
        let seq = d.event.seq;
        if log_broken.contains(&run) {
            continue;
        }
        let count = in_log.entry(run).or_insert(0);
        let mut fail = |detail: String, report: &mut VerifyReport| {
            report.problems.push(Problem {
                run: Some(run),
                seq: Some(seq),
                detail: format!("{}: {detail}", rec.place(&lwhat)),
            });
            log_broken.insert(run);
        };
        if seq != *count + 1 {
            fail(
                format!("sequence number {seq} follows {count} in the live log"),
                &mut report,
            );
            continue;
        }
        *count = seq;
        let stored = runs
            .get(&run)
            .and_then(|s| s.hashes.get((seq - 1) as usize));
        match stored {
            Some(h) if *h == d.hash => {}
            Some(_) => fail(
                "differs from the same event in the database".to_string(),
                &mut report,
            ),
            None if runs.get(&run).is_some_and(|s| s.broken) => {}
            None => {
                if strict {
                    fail("event missing from the database".to_string(), &mut report);
                } else {
                    log_only += 1;
                }
            }
        }
    }
    if log_only > 0 {
        report.notes.push(format!(
            "{log_only} event(s) are in the live log only: written just before a crash, never \
             acknowledged; the next writer copies them to the database"
        ));
    }
    let mut db_only = 0u64;
    for id in &order {
        let seen = &runs[id];
        if seen.broken || log_broken.contains(id) {
            continue;
        }
        let logged = in_log.get(id).copied().unwrap_or(0);
        let stored = seen.hashes.len() as u64;
        if stored > logged {
            if strict {
                report.problems.push(Problem {
                    run: Some(*id),
                    seq: Some(logged + 1),
                    detail: format!(
                        "{lwhat}: the live log lacks events {}..={stored} that the database has",
                        logged + 1
                    ),
                });
            } else {
                db_only += stored - logged;
            }
        }
    }
    if db_only > 0 {
        report.notes.push(format!(
            "{db_only} event(s) are in the database only: written just before a crash; the next \
             writer copies them to the live log"
        ));
    }
    Ok(report)
}
