//! The reroot journal: an event-sourced, crash-safe record of every run.
//!
//! This crate knows events and bytes; it knows nothing of LXD or of what a step means.

pub mod codec;
pub mod event;
mod livelog;
mod lock;
mod reader;
pub mod state;
mod store;
mod writer;

pub use event::{now_ms, Event, EventKind, Outcome, RunHeader, RunId};
pub use reader::{Problem, Reader, RunFilter, RunSummary, Source, VerifyReport};
pub use state::{InstanceState, Replay, RunState, RunStatus, StepState, StepStatus};
pub use writer::{import_ndjson, rebuild_live_log, Journal, WRITER_WAIT};

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
