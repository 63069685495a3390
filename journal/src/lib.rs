//! The reroot journal: an event-sourced, crash-safe record of every run.
//!
//! This crate knows events and bytes; it knows nothing of LXD or of what a step means.
//!
//! A *run* is created with its [`RunHeader`] and then receives ordered [`Event`]s: run-level
//! events (created, paused, resumed, finished), step events of an instance (started,
//! succeeded, failed, undo started, undo finished, undo failed) and notes. Every event carries
//! its run id, its sequence number in the run (1, 2, 3, ... without gaps), instance, step,
//! attempt number and time. Folding a run's events ([`Replay`]) gives its [`RunState`]: for
//! each instance, each step's status, in first-seen order. The model is the saga log of
//! oxidecomputer/steno.
//!
//! ```no_run
//! # fn main() -> Result<(), journal::Error> {
//! use journal::{EventKind, Journal, RunHeader};
//! let j = Journal::open(std::path::Path::new("/var/lib/reroot/journal"))?;
//! let header = RunHeader {
//!     id: RunHeader::new_id(),
//!     command: vec!["reroot".into(), "rebuild".into(), "web-1".into()],
//!     user: "alice".into(),
//!     host: "host1".into(),
//!     started_at_ms: journal::now_ms(),
//!     config_digests: vec![("reroot.yaml".into(), "9f86d081".into())],
//!     instances: vec!["web-1".into()],
//!     options: Default::default(),
//! };
//! let run = j.create_run(header)?.run;
//! j.append(run, Some("web-1"), Some("stop"), 1, EventKind::StepStarted)?;
//! j.append(run, Some("web-1"), Some("stop"), 1, EventKind::StepSucceeded { output: "{}".into() })?;
//! let state = j.replay(run)?; // also: runs, events, instance_history, unfinished, verify...
//! # Ok(()) }
//! ```
//!
//! # Transition rules
//!
//! Checked before an event is appended (an illegal one is refused with
//! [`Error::IllegalTransition`] and nothing is written) and again on every replay and `verify`
//! (where an illegal event means corruption).
//!
//! Per step (an instance's step, named by both):
//!
//! | current status   | allowed next event                                              |
//! |------------------|-----------------------------------------------------------------|
//! | (none)           | `StepStarted`                                                   |
//! | `Started`        | `StepSucceeded`, `StepFailed` (same attempt); `StepStarted` with a higher attempt (a retry after a crash) |
//! | `Succeeded`      | `UndoStarted` (same or higher attempt); `StepStarted` with a higher attempt (a redo: a resume found the step's effect reverted) |
//! | `Failed`         | `StepStarted` with a higher attempt (retry); `UndoStarted` (same or higher attempt) |
//! | `UndoStarted`    | `UndoFinished`, `UndoFailed` (same attempt); `UndoStarted` with a higher attempt (retry) |
//! | `UndoFailed`     | `UndoStarted` with a higher attempt                             |
//! | `UndoFinished`   | nothing: final                                                  |
//!
//! So, for example: succeeded before started, succeeded twice, undo of a step that never
//! started or that is only `Started` (the engine first records `StepFailed { "interrupted" }`
//! for a step a crash cut short), anything after `UndoFinished`, and attempt numbers going
//! backwards are all refused. Step events carry an attempt number of 1 or more.
//!
//! Shape: step events name a non-empty instance and step; run-level events (`UndoRequested`
//! among them) name neither; `Pruned` names a non-empty instance and no step; a note may name
//! an instance, or an instance and a step.
//!
//! Per run:
//! - `RunCreated` is the first event (sequence number 1), exactly once, and its header's id is
//!   the run's id.
//! - `RunPaused` sets the status to Paused, `RunResumed` to Running. While Running or Paused
//!   any other event may follow (steps already in flight may end while the run is paused).
//! - After `RunFinished { Succeeded | Failed }` only `RunResumed`, undo events,
//!   `UndoRequested`, `Pruned`, notes and a new `RunFinished` may follow: a finished run can
//!   still be undone. `RunResumed` makes it Running again (then anything may follow), and a new
//!   `RunFinished` closes it again.
//! - Only notes and `Pruned` follow `RunFinished { Undone }`.
//! - `Pruned` (something the undo needs is deleted for good) needs a finished run; once a run
//!   has one, `UndoRequested` is refused. The latest `UndoRequested` is the run's
//!   [`RunState::undo_requested`]; the deletions are [`RunState::pruned`].
//!
//! # Files and bytes
//!
//! A journal is a directory: the sled database `db/`, the live log `events.log` (every event
//! again, readable while the writer holds the database), the `lock` file and, after a clean
//! close, `clean`. Each event is stored in a versioned envelope with a CRC and the hash of the
//! run's previous event (a hash chain), byte for byte the same in both copies. NDJSON is the
//! export and import format ([`Reader::export_ndjson`], [`import_ndjson`]). The directory is
//! private to its owner (0700, files 0600): a writer tightens a looser one, with a note. Every byte of all
//! of this is described in one place, `journal/FORMAT.md` (also the docs of [`mod@format`]).
//!
//! # Durability and group commit
//!
//! [`Journal::append`] returns only once the event is durable: its record is written to the
//! live log and `fdatasync`ed, and the database is flushed (`sled::Db::flush`, which on Linux uses
//! `sync_file_range`; the live log is the copy that also survives a power loss, and recovery
//! restores the database from it). Concurrent appends
//! share these flushes: each append records its event (database insert, live-log record queued) under a
//! short lock and takes a ticket; the first waiter finding no flush in progress becomes the
//! leader, takes every queued record, writes and syncs them and flushes the database once, then
//! wakes every waiter whose ticket is covered. An append is never acknowledged before both
//! copies are durable.
//!
//! # Crashes
//!
//! A clean close leaves `clean`. When a writer opens a journal without it (the previous writer
//! died), it reconciles the two copies before anything else:
//! - the database is checked run by run; the live log record by record;
//! - an unfinished or unreadable end of the live log, with no intact record after it, is cut
//!   off (a write cut short); damage followed by intact records is refused as corruption;
//! - where both hold an event they must be identical; events only one side holds (written but
//!   never acknowledged) are copied to the other, so no event is lost and none is invented;
//! - the indexes are rewritten from the replayed runs;
//! - if sled cannot open its database at all, the database is moved to `db.damaged/` and
//!   rebuilt from the live log (every acknowledged event is there).
//!
//! What open repaired is in [`Journal::recovery_notes`]. A clean journal whose live log has
//! another length than recorded is refused ([`Error::Corrupt`]); [`rebuild_live_log`]
//! rewrites it from the database.
//!
//! # Locking and readers
//!
//! One process writes a journal: [`Journal::open`] takes an exclusive `flock` on `lock` and
//! writes its pid, role and current run into it; a second writer gets [`Error::Locked`]
//! naming them. sled lets only one process open the database, so [`Reader::open`] uses the
//! database when the lock is free (holding it while the reader lives: keep readers short; a
//! writer waits up to [`WRITER_WAIT`] for one) and otherwise reads the live log, verifying
//! every record and ignoring only an unfinished end (a write in progress). [`Journal`]
//! dereferences to a [`Reader`] of its own database.
//!
//! [`Journal::open_waiting`] waits instead of failing while another process holds the journal
//! (trying again every [`WAIT_POLL`], with an optional time limit), so that a second process
//! can queue behind a running one.
//!
//! # Verification
//!
//! [`Reader::verify`] checks every stored event's checksum, each run's sequence numbers, hash
//! chain and transitions, the indexes, and that the live log holds exactly the database's events
//! (and, after a clean close, the recorded length and count). It reports problems with their run
//! and sequence number, the first problem first.

pub mod codec;
pub mod event;
#[doc = include_str!("../FORMAT.md")]
pub mod format {}
mod import;
mod layout;
mod livelog;
mod lock;
mod reader;
mod recovery;
pub mod state;
mod store;
mod writer;

pub use event::{now_ms, short_id, Event, EventKind, Outcome, RunHeader, RunId};
pub use import::import_ndjson;
pub use reader::{
    ExportOptions, Problem, Reader, RunFilter, RunSummary, Source, VerifyReport, WriterInfo,
};
pub use recovery::rebuild_live_log;
pub use state::{InstanceState, PrunedItem, Replay, RunState, RunStatus, StepState, StepStatus};
pub use writer::{Journal, WriterOptions, WAIT_POLL, WRITER_WAIT};

use std::path::PathBuf;

/// Everything that can go wrong in the journal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process holds the journal.
    #[error("journal {dir} is in use by {role} process {pid} (run {run}); wait for it to end or stop it", dir = .dir.display(), pid = fmt_opt(.pid), run = fmt_opt(.run))]
    Locked {
        /// The journal directory.
        dir: PathBuf,
        /// The holder's process id, if it could be read from the lock file.
        pid: Option<u32>,
        /// The run the holder is working on, if any.
        run: Option<RunId>,
        /// "writer" or "reader".
        role: String,
    },
    /// An event was refused because it breaks the transition rules; nothing was written.
    #[error("run {run}: event {seq} refused: {detail}")]
    IllegalTransition {
        /// The run.
        run: RunId,
        /// The sequence number the event would have had.
        seq: u64,
        /// Which rule it breaks.
        detail: String,
    },
    /// Stored data is damaged or inconsistent.
    #[error("journal corrupt{}{}: {detail}", .run.map(|r| format!(" at run {r}")).unwrap_or_default(), .seq.map(|s| format!(" event {s}")).unwrap_or_default())]
    Corrupt {
        /// The run concerned, if known.
        run: Option<RunId>,
        /// The sequence number concerned, if known.
        seq: Option<u64>,
        /// What is wrong, and where (file, line).
        detail: String,
    },
    /// The data was written by a newer reroot.
    #[error("{location} was written in journal format version {found}; this reroot reads versions up to {supported}: upgrade reroot")]
    NewerFormat {
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
        /// Where it was found.
        location: String,
    },
    /// Something asked for does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// A run id prefix matches several runs.
    #[error("run id prefix {prefix:?} matches {} runs: {}", .matches.len(), .matches.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", "))]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// The runs it matches.
        matches: Vec<RunId>,
    },
    /// Bad input from the caller (an import file, a header, a prefix); nothing was changed.
    #[error("{detail}")]
    InvalidInput {
        /// What is wrong, naming the file, line and field where there is one.
        detail: String,
    },
    /// A file operation failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The sled database failed.
    #[error("journal database: {0}")]
    Storage(#[from] sled::Error),
    /// An earlier flush failed, so this journal handle no longer accepts events.
    #[error("journal {} stopped accepting events after a failed write: {detail}; reopen it", .dir.display())]
    Poisoned {
        /// The journal directory.
        dir: PathBuf,
        /// The first failure.
        detail: String,
    },
}

fn fmt_opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "unknown".to_string(),
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        run: Option<RunId>,
        seq: Option<u64>,
        detail: impl Into<String>,
    ) -> Error {
        Error::Corrupt {
            run,
            seq,
            detail: detail.into(),
        }
    }
}
