//! The live log (`<dir>/events.ndjson`): every event, as one NDJSON line, appended by the writer
//! in the same group commit as the database and made durable before the append is acknowledged.
//!
//! It lets another process read the journal while the writer holds the database (sled admits one
//! process), it is a second copy the writer reconciles with the database after a crash, and it is
//! always a valid NDJSON export. Line 1 is an [`NdjsonHeader`](crate::codec::NdjsonHeader)
//! (`scope: "live-log"`); each other line is an event (see [`crate::codec::parse_line`]).
//!
//! A reader verifies every line (checksum, hash chain, sequence numbers, transitions). Only an
//! unterminated final line is tolerated, as a write in progress or cut short by a crash.

use crate::codec::{self, Decoded, NdjsonHeader};
use crate::event::RunId;
use crate::store::RunChain;
use crate::{Error, Problem};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Name of the live log inside a journal directory.
pub(crate) const LOG_FILE: &str = "events.ndjson";

pub(crate) fn log_path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

/// One complete (newline-terminated) line.
pub(crate) struct RawLine<'a> {
    /// 1-based line number.
    pub no: usize,
    /// Offset of its first byte in the file.
    pub start: usize,
    /// The line without its newline.
    pub bytes: &'a [u8],
}

/// Splits `bytes` into complete lines. Returns them and the length of the complete part (the
/// rest, if any, is an unterminated final line).
pub(crate) fn split_lines(bytes: &[u8]) -> (Vec<RawLine<'_>>, usize) {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut no = 0;
    while let Some(pos) = bytes[start..].iter().position(|&b| b == b'\n') {
        no += 1;
        lines.push(RawLine {
            no,
            start,
            bytes: &bytes[start..start + pos],
        });
        start += pos + 1;
    }
    (lines, start)
}

/// Parses an event line into a decoded envelope (checksum verified).
pub(crate) fn parse_raw(line: &RawLine<'_>) -> Result<(Decoded, Vec<u8>), String> {
    let text = std::str::from_utf8(line.bytes).map_err(|_| "not UTF-8".to_string())?;
    codec::parse_line(text, true)
}

/// One run as read from the live log.
#[derive(Debug, Default)]
pub(crate) struct LogRun {
    pub events: Vec<Decoded>,
    pub chain: Option<RunChain>,
    /// The first problem met in this run; its later events are not kept.
    pub problem: Option<Problem>,
}

/// Everything read from a live log at one moment.
#[derive(Debug)]
pub(crate) struct LogSnapshot {
    pub path: PathBuf,
    /// Length of an unterminated final line, if any.
    pub torn_tail: Option<u64>,
    pub runs: HashMap<RunId, LogRun>,
    /// Problems in discovery order (the first per run, and lines that name no run).
    pub problems: Vec<Problem>,
    /// Events kept.
    pub events: u64,
}

impl LogSnapshot {
    /// Reads and checks the live log of journal directory `dir`.
    pub fn load(dir: &Path) -> Result<LogSnapshot, Error> {
        let path = log_path(dir);
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                what: format!("live log {}", path.display()),
            },
            _ => Error::io(&path, e),
        })?;
        Self::parse(path, &bytes)
    }

    pub fn parse(path: PathBuf, bytes: &[u8]) -> Result<LogSnapshot, Error> {
        let what = path.display().to_string();
        let (lines, complete) = split_lines(bytes);
        let mut snap = LogSnapshot {
            path,
            torn_tail: (complete < bytes.len()).then(|| (bytes.len() - complete) as u64),
            runs: HashMap::new(),
            problems: Vec::new(),
            events: 0,
        };
        let mut iter = lines.iter();
        match iter.next() {
            Some(first) => {
                let text = String::from_utf8_lossy(first.bytes);
                NdjsonHeader::parse(&text, &what, true)?;
            }
            None => return Ok(snap), // Empty or only a torn header: no events yet.
        }
        for line in iter {
            let (d, _) = match parse_raw(line) {
                Ok(v) => v,
                Err(detail) => {
                    snap.problems.push(Problem {
                        run: None,
                        seq: None,
                        detail: format!("{what} line {}: {detail}", line.no),
                    });
                    continue;
                }
            };
            let run = d.event.run;
            let seq = d.event.seq;
            let entry = snap.runs.entry(run).or_default();
            if entry.problem.is_some() {
                continue;
            }
            let res = match entry.chain.as_mut() {
                None => RunChain::start(&d).map(|c| entry.chain = Some(c)),
                Some(c) => c.push(&d),
            };
            match res {
                Ok(()) => {
                    entry.events.push(d);
                    snap.events += 1;
                }
                Err(detail) => {
                    let p = Problem {
                        run: Some(run),
                        seq: Some(seq),
                        detail: format!("{what} line {}: {detail}", line.no),
                    };
                    entry.problem = Some(p.clone());
                    snap.problems.push(p);
                }
            }
        }
        Ok(snap)
    }

    /// The run's events, or the error of its first problem.
    pub fn run(&self, run: RunId) -> Result<&LogRun, Error> {
        let r = self.runs.get(&run).ok_or_else(|| Error::NotFound {
            what: format!("run {run}"),
        })?;
        if let Some(p) = &r.problem {
            return Err(Error::corrupt(p.run, p.seq, p.detail.clone()));
        }
        if r.chain.is_none() {
            return Err(Error::NotFound {
                what: format!("run {run}"),
            });
        }
        Ok(r)
    }
}
