//! The live log (`<dir>/events.log`): every event's envelope, framed in a small binary file,
//! appended by the writer in the same group commit as the database and made durable before the
//! append is acknowledged.
//!
//! It lets another process read the journal while the writer holds the database (sled admits one
//! process), and it is a second copy the writer reconciles with the database after a crash.
//!
//! Its bytes (file header, then one framed envelope per event) are described in
//! `journal/FORMAT.md` ([`mod@crate::format`]).
//!
//! A reader verifies every record (checksum, hash chain, sequence numbers, transitions). Only an
//! unfinished end is tolerated, as a write in progress or cut short by a crash: a record longer
//! than what follows it, or bytes from which no intact record starts.

use crate::codec::{self, Decoded, ENVELOPE_HEADER, MAX_PAYLOAD};
use crate::event::RunId;
use crate::store::RunChain;
use crate::{Error, Problem};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Name of the live log inside a journal directory.
pub(crate) const LOG_FILE: &str = "events.log";
/// The first bytes of a live log.
pub const LOG_MAGIC: [u8; 8] = *b"RRJLOG\r\n";
/// The live-log format version this build writes and the newest it reads.
pub const LOG_VERSION: u32 = 2;
/// Size of the file header: magic, version, CRC.
pub const LOG_HEADER: usize = 16;
/// Size of a record's frame before its envelope: length and the length's CRC.
pub const FRAME_HEADER: usize = 8;

pub(crate) fn log_path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

/// The file header of a new live log.
pub(crate) fn file_header() -> [u8; LOG_HEADER] {
    let mut h = [0u8; LOG_HEADER];
    h[..8].copy_from_slice(&LOG_MAGIC);
    h[8..12].copy_from_slice(&LOG_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks the file header of a live log (`what` names it). `Ok(false)`: the file is shorter
/// than a header (a new log, or its header write cut short): no events.
pub(crate) fn check_header(bytes: &[u8], what: &str) -> Result<bool, Error> {
    if bytes.len() < LOG_HEADER {
        return Ok(false);
    }
    let h = &bytes[..LOG_HEADER];
    if h[..8] != LOG_MAGIC {
        let ndjson = h.starts_with(b"{\"format\"");
        return Err(Error::corrupt(
            None,
            None,
            if ndjson {
                format!(
                    "{what}: holds NDJSON (live-log format version 1 or an export), not a \
                     binary live log (format version {LOG_VERSION})"
                )
            } else {
                format!("{what}: does not start with the live log's magic bytes")
            },
        ));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&h[12..16]);
    if crc32fast::hash(&h[..12]) != u32::from_le_bytes(crc) {
        return Err(Error::corrupt(
            None,
            None,
            format!("{what}: the file header fails its checksum"),
        ));
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&h[8..12]);
    let version = u32::from_le_bytes(v);
    if version > LOG_VERSION {
        return Err(Error::NewerFormat {
            found: version,
            supported: LOG_VERSION,
            location: what.to_string(),
        });
    }
    if version < LOG_VERSION {
        // Version 1 was an NDJSON file of development builds, never released; a binary file
        // claiming it is damaged.
        return Err(Error::corrupt(
            None,
            None,
            format!("{what}: live-log format version {version} was never released; this reroot reads version {LOG_VERSION}"),
        ));
    }
    Ok(true)
}

/// Appends `envelope`, framed, to `out`.
pub(crate) fn frame(envelope: &[u8], out: &mut Vec<u8>) {
    let len = (envelope.len() as u32).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc32fast::hash(&len).to_le_bytes());
    out.extend_from_slice(envelope);
}

/// The envelope length a frame header at `at` announces, if its checksum holds and the length
/// is possible.
fn frame_len(bytes: &[u8], at: usize) -> Option<usize> {
    let h = bytes.get(at..at + FRAME_HEADER)?;
    let mut len = [0u8; 4];
    len.copy_from_slice(&h[..4]);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&h[4..]);
    if crc32fast::hash(&len) != u32::from_le_bytes(crc) {
        return None;
    }
    let len = u32::from_le_bytes(len) as usize;
    (ENVELOPE_HEADER..=ENVELOPE_HEADER + MAX_PAYLOAD)
        .contains(&len)
        .then_some(len)
}

/// One complete record of a live log.
pub(crate) struct RawRecord<'a> {
    /// 1-based record number (the file header is not counted).
    pub no: usize,
    /// Offset of its first byte in the file.
    pub start: usize,
    /// Offset just past it.
    pub end: usize,
    /// Its envelope, or why its frame is damaged.
    pub envelope: Result<&'a [u8], String>,
}

impl RawRecord<'_> {
    /// Where the record is, for messages.
    pub fn place(&self, what: &str) -> String {
        format!("{what} record {} (byte {})", self.no, self.start)
    }

    /// Decodes and checks the record's envelope.
    pub fn decode(&self) -> Result<(Decoded, Vec<u8>), String> {
        let env = self.envelope.as_ref().map_err(|e| e.clone())?;
        let d = codec::decode(env).map_err(|e| match e {
            codec::DecodeError::NewerFormat(v) => {
                format!("event envelope of format version {v}, newer than this reroot reads")
            }
            codec::DecodeError::Damaged(d) => d,
        })?;
        Ok((d, env.to_vec()))
    }
}

/// Splits a live log (header already checked, so `bytes.len() >= LOG_HEADER`) into records.
/// Returns them and the length of the complete part: the rest is an unfinished end (a record
/// longer than what follows, or bytes from which no intact record starts).
///
/// A frame whose length fails its checksum, with an intact record later in the file, is
/// returned as a damaged record reaching up to that later record.
pub(crate) fn split_records(bytes: &[u8]) -> (Vec<RawRecord<'_>>, usize) {
    let mut records = Vec::new();
    let mut pos = LOG_HEADER.min(bytes.len());
    let mut no = 0;
    while pos < bytes.len() {
        let remaining = bytes.len() - pos;
        if remaining < FRAME_HEADER {
            break;
        }
        match frame_len(bytes, pos) {
            Some(len) if len <= remaining - FRAME_HEADER => {
                no += 1;
                let end = pos + FRAME_HEADER + len;
                records.push(RawRecord {
                    no,
                    start: pos,
                    end,
                    envelope: Ok(&bytes[pos + FRAME_HEADER..end]),
                });
                pos = end;
            }
            Some(_) => break, // Longer than the file: a write in progress or cut short.
            None => match next_intact(bytes, pos + 1) {
                Some(next) => {
                    no += 1;
                    records.push(RawRecord {
                        no,
                        start: pos,
                        end: next,
                        envelope: Err(
                            "the record's length fails its checksum (damaged bytes)".into()
                        ),
                    });
                    pos = next;
                }
                None => break,
            },
        }
    }
    (records, pos)
}

/// The offset of the first intact record (frame and envelope checksums hold) at or after `from`.
fn next_intact(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len().saturating_sub(FRAME_HEADER)).find(|&at| {
        frame_len(bytes, at).is_some_and(|len| {
            bytes
                .get(at + FRAME_HEADER..at + FRAME_HEADER + len)
                .is_some_and(|env| codec::decode(env).is_ok())
        })
    })
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
    /// Length of an unfinished end, if any.
    pub torn_tail: Option<u64>,
    pub runs: HashMap<RunId, LogRun>,
    /// Problems in discovery order (the first per run, and records that name no run).
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
        let mut snap = LogSnapshot {
            path,
            torn_tail: None,
            runs: HashMap::new(),
            problems: Vec::new(),
            events: 0,
        };
        if !check_header(bytes, &what)? {
            // Empty or only a torn header: no events yet.
            snap.torn_tail = (!bytes.is_empty()).then_some(bytes.len() as u64);
            return Ok(snap);
        }
        let (records, complete) = split_records(bytes);
        snap.torn_tail = (complete < bytes.len()).then(|| (bytes.len() - complete) as u64);
        for rec in &records {
            let (d, _) = match rec.decode() {
                Ok(v) => v,
                Err(detail) => {
                    snap.problems.push(Problem {
                        run: None,
                        seq: None,
                        detail: format!("{}: {detail}", rec.place(&what)),
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
            match RunChain::feed(&mut entry.chain, &d) {
                Ok(()) => {
                    entry.events.push(d);
                    snap.events += 1;
                }
                Err(detail) => {
                    let p = Problem {
                        run: Some(run),
                        seq: Some(seq),
                        detail: format!("{}: {detail}", rec.place(&what)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventKind};

    fn envelope(seq: u64, text: &str) -> Vec<u8> {
        let ev = Event {
            run: RunId::from_bytes([7; 16]),
            seq,
            instance: None,
            step: None,
            attempt: 0,
            at_ms: 1,
            kind: EventKind::Note { text: text.into() },
        };
        codec::encode(&ev, 0).unwrap()
    }

    fn log(envs: &[Vec<u8>]) -> Vec<u8> {
        let mut out = file_header().to_vec();
        for e in envs {
            frame(e, &mut out);
        }
        out
    }

    #[test]
    fn header_is_pinned_and_checked() {
        let h = file_header();
        assert_eq!(&h[..8], b"RRJLOG\r\n");
        assert_eq!(&h[8..12], &[2, 0, 0, 0]);
        assert!(check_header(&h, "x").unwrap());
        assert!(!check_header(&h[..15], "x").unwrap(), "a torn header");
        for i in 0..LOG_HEADER {
            for bit in 0..8 {
                let mut b = h;
                b[i] ^= 1 << bit;
                assert!(check_header(&b, "x").is_err(), "bit {bit} of byte {i}");
            }
        }
        let mut newer = h;
        newer[8] = 3;
        let crc = crc32fast::hash(&newer[..12]);
        newer[12..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            check_header(&newer, "x"),
            Err(Error::NewerFormat {
                found: 3,
                supported: 2,
                ..
            })
        ));
    }

    #[test]
    fn records_round_trip_and_a_torn_end_is_set_apart() {
        let envs = vec![envelope(1, "a"), envelope(2, "bb"), envelope(3, "ccc")];
        let bytes = log(&envs);
        let (recs, complete) = split_records(&bytes);
        assert_eq!(complete, bytes.len());
        assert_eq!(recs.len(), 3);
        for (r, e) in recs.iter().zip(&envs) {
            assert_eq!(r.envelope.as_deref().unwrap(), e.as_slice());
        }
        // Every cut inside the last record leaves two records and an unfinished end.
        let last = recs[2].start;
        for cut in last..bytes.len() {
            let (recs, complete) = split_records(&bytes[..cut]);
            assert_eq!(recs.len(), 2, "cut at {cut}");
            assert_eq!(complete, last, "cut at {cut}");
        }
        // Zeros after the end (a crash before the data reached the disk) are no record.
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0; 40]);
        let (recs, complete) = split_records(&zeros);
        assert_eq!((recs.len(), complete), (3, bytes.len()));
    }

    #[test]
    fn every_bit_flip_in_a_record_is_detected_or_leaves_an_unfinished_end() {
        let envs = vec![envelope(1, "a"), envelope(2, "bb"), envelope(3, "ccc")];
        let bytes = log(&envs);
        for i in LOG_HEADER..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let (recs, complete) = split_records(&b);
                let all_intact = recs.iter().all(|r| r.decode().is_ok());
                assert!(
                    !all_intact || recs.len() < 3 || complete < b.len(),
                    "flip of bit {bit} of byte {i} unnoticed"
                );
                // Damage before the last record is always a damaged record, never an end.
                if i < recs.last().map_or(0, |r| r.start) {
                    assert!(!all_intact, "flip of bit {bit} of byte {i}");
                }
            }
        }
    }
}
