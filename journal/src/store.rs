//! The sled database of a journal (`<dir>/db`) and the checks every stored run passes. Its trees
//! (`events` with its chunks of [`CHUNK_EVENTS`], `runs`, `instances`, `meta`) are described in
//! `journal/FORMAT.md` ([`mod@crate::format`]).

use crate::codec::{self, DecodeError, Decoded};
use crate::event::{RunHeader, RunId};
use crate::state::{Replay, RunStatus};
use crate::Error;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Name of the database directory inside a journal directory.
pub(crate) const DB_DIR: &str = "db";

/// What the `runs` tree holds for a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RunIndex {
    pub header: RunHeader,
    pub status: RunStatus,
}

/// The chain and transition check of one run, fed its events in order.
#[derive(Debug, Clone)]
pub(crate) struct RunChain {
    pub replay: Replay,
    pub last_hash: u64,
}

impl RunChain {
    /// Starts with a run's first event.
    pub fn start(d: &Decoded) -> Result<RunChain, String> {
        if d.prev != 0 {
            return Err(format!(
                "the first event carries previous hash {:016x}, expected 0",
                d.prev
            ));
        }
        Ok(RunChain {
            replay: Replay::new(&d.event)?,
            last_hash: d.hash,
        })
    }

    /// Starts `chain` with `d` if it has not started, else checks and folds `d` into it.
    pub fn feed(chain: &mut Option<RunChain>, d: &Decoded) -> Result<(), String> {
        match chain {
            None => RunChain::start(d).map(|c| *chain = Some(c)),
            Some(c) => c.push(d),
        }
    }

    /// Checks and folds the next event.
    pub fn push(&mut self, d: &Decoded) -> Result<(), String> {
        let (ev, prev) = (&d.event, d.prev);
        let last = self.replay.state().last_seq;
        if ev.seq != last + 1 {
            return Err(format!(
                "sequence number {} follows {last}: events are missing or repeated",
                ev.seq
            ));
        }
        if prev != self.last_hash {
            return Err(format!(
                "hash chain broken: the event carries previous hash {prev:016x}, event {last} \
                 hashes to {:016x}",
                self.last_hash
            ));
        }
        self.replay.apply(ev)?;
        self.last_hash = d.hash;
        Ok(())
    }
}

/// Decodes a stored envelope found under `key`, turning failures into [`Error`]s.
pub(crate) fn decode_stored(
    run: RunId,
    seq: u64,
    bytes: &[u8],
    what: &str,
) -> Result<Decoded, Error> {
    let d = codec::decode(bytes).map_err(|e| stored_error(run, seq, what, e))?;
    check_place(run, seq, what, d.event.run, d.event.seq)?;
    Ok(d)
}

/// The error for a stored envelope of event `seq` of `run` that does not decode.
fn stored_error(run: RunId, seq: u64, what: &str, e: DecodeError) -> Error {
    match e {
        DecodeError::NewerFormat(v) => Error::NewerFormat {
            found: u32::from(v),
            supported: u32::from(codec::FORMAT_VERSION),
            location: format!("{what}: event {seq} of run {run}"),
        },
        DecodeError::Damaged(detail) => {
            Error::corrupt(Some(run), Some(seq), format!("{what}: {detail}"))
        }
    }
}

/// A record stored as event `seq` of `run` must hold that very event.
fn check_place(
    run: RunId,
    seq: u64,
    what: &str,
    found_run: RunId,
    found_seq: u64,
) -> Result<(), Error> {
    if found_run != run || found_seq != seq {
        return Err(Error::corrupt(
            Some(run),
            Some(seq),
            format!(
                "{what}: record stored as event {seq} of run {run} holds event {found_seq} of run {found_run}"
            ),
        ));
    }
    Ok(())
}

/// Checks one stored record against the run's chain so far (starting it at the first).
/// Returns the record, decoded.
pub(crate) fn check_stored(
    chain: &mut Option<RunChain>,
    run: RunId,
    seq: u64,
    bytes: &[u8],
    what: &str,
) -> Result<Decoded, Error> {
    let d = decode_stored(run, seq, bytes, what)?;
    RunChain::feed(chain, &d)
        .map_err(|detail| Error::corrupt(Some(run), Some(seq), format!("{what}: {detail}")))?;
    Ok(d)
}

/// First byte of a compressed chunk value: `[0xc2][crc32 LE of the rest][raw deflate stream of
/// the uncompressed chunk without its tag]`. The CRC covers every compressed byte, padding
/// bits too, so any damage is seen before inflating.
pub(crate) const CHUNK_Z_TAG: u8 = 0xc2;
/// Events per chunk.
pub(crate) const CHUNK_EVENTS: usize = 32;
/// Refuse to inflate a chunk beyond this: a damaged stream must not eat the memory.
const CHUNK_MAX_BYTES: u64 = 64 << 20;

/// Whether a stored value is a chunk (and not a single envelope).
pub(crate) fn is_chunk(value: &[u8]) -> bool {
    value.first() == Some(&CHUNK_Z_TAG)
}

/// The uncompressed body: `[count: u16 LE]` then, per event, `[length: u32 LE][envelope]`.
fn chunk_body(envelopes: &[&[u8]]) -> Vec<u8> {
    let total: usize = envelopes.iter().map(|e| 4 + e.len()).sum();
    let mut out = Vec::with_capacity(2 + total);
    out.extend_from_slice(&(envelopes.len() as u16).to_le_bytes());
    for e in envelopes {
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e);
    }
    out
}

/// A compressed chunk: `[CHUNK_Z_TAG][crc32 LE]` + raw deflate of the body. The events of one
/// run repeat their run id, instance and step names and close timestamps, so a chunk shrinks
/// to about half.
pub(crate) fn encode_chunk(envelopes: &[&[u8]]) -> Vec<u8> {
    compress_body(&chunk_body(envelopes))
}

/// `[CHUNK_Z_TAG][crc32 LE]` + raw deflate of a chunk body.
fn compress_body(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(5 + body.len() / 2),
        flate2::Compression::default(),
    );
    // Writing into a Vec cannot fail.
    z.get_mut().extend_from_slice(&[CHUNK_Z_TAG, 0, 0, 0, 0]);
    z.write_all(body).expect("compressing into memory");
    let mut out = z.finish().expect("compressing into memory");
    let crc = crc32fast::hash(&out[5..]);
    out[1..5].copy_from_slice(&crc.to_le_bytes());
    out
}

/// `(sequence number, envelope, whether it sits in a chunk)`.
pub(crate) type RecordFn<'a> = dyn FnMut(u64, &[u8], bool) -> Result<(), Error> + 'a;

/// Calls `each(seq, envelope, in_chunk)` for the events of one stored value: a single envelope
/// stored under sequence number `first`, or a chunk (compressed or not) starting there.
pub(crate) fn for_each_in_value(
    run: RunId,
    first: u64,
    value: &[u8],
    what: &str,
    each: &mut RecordFn<'_>,
) -> Result<(), Error> {
    let bad = |detail: String| Error::corrupt(Some(run), Some(first), format!("{what}: {detail}"));
    let inflated;
    let body = match value.first() {
        Some(&CHUNK_Z_TAG) => {
            use std::io::Read;
            let Some((crc, stream)) = value.get(1..5).map(|c| (c, &value[5..])) else {
                return Err(bad("compressed chunk shorter than its header".into()));
            };
            if crc32fast::hash(stream).to_le_bytes() != crc {
                return Err(bad("compressed chunk fails its checksum".into()));
            }
            let mut out = Vec::with_capacity(value.len() * 3);
            let mut z = flate2::read::DeflateDecoder::new(stream).take(CHUNK_MAX_BYTES + 1);
            z.read_to_end(&mut out)
                .map_err(|e| bad(format!("compressed chunk is damaged: {e}")))?;
            if out.len() as u64 > CHUNK_MAX_BYTES {
                return Err(bad("compressed chunk inflates beyond 64 MiB".into()));
            }
            let z = z.into_inner();
            if z.total_in() as usize != stream.len() {
                return Err(bad(format!(
                    "compressed chunk has {} bytes after its end",
                    stream.len().saturating_sub(z.total_in() as usize)
                )));
            }
            inflated = out;
            &inflated[..]
        }
        _ => return each(first, value, false),
    };
    if body.len() < 2 {
        return Err(bad("chunk shorter than its header".into()));
    }
    let count = u16::from_le_bytes([body[0], body[1]]);
    let mut pos = 2usize;
    for i in 0..u64::from(count) {
        let Some(len) = body.get(pos..pos + 4) else {
            return Err(bad(format!("chunk cut short at its event {}", i + 1)));
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        pos += 4;
        let Some(env) = body.get(pos..pos + len) else {
            return Err(bad(format!("chunk cut short in its event {}", i + 1)));
        };
        pos += len;
        each(first + i, env, true)?;
    }
    if pos != body.len() || count < 2 {
        return Err(bad(format!(
            "chunk of {count} events has {} bytes left over",
            body.len().saturating_sub(pos)
        )));
    }
    Ok(())
}

/// How long [`Store::open`] waits for sled's file lock, held by a handle that is closing or
/// by a child this process is spawning.
const SLED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// An open journal database.
#[derive(Debug)]
pub(crate) struct Store {
    pub path: PathBuf,
    pub db: sled::Db,
    pub events: sled::Tree,
    pub runs: sled::Tree,
    pub instances: sled::Tree,
    pub meta: sled::Tree,
    /// Held shared while a run's events are read, exclusively while [`Store::compact`] packs
    /// them: a sled iterator is no snapshot, so a read overlapping a packing batch could see
    /// the old first key, then none of the removed ones (a gap in the run).
    packing: std::sync::RwLock<()>,
}

impl Store {
    /// Shared hold against [`Store::compact`], for reads of the events tree.
    pub(crate) fn reading(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.packing.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens (creating if needed) the database of journal directory `dir`. The caller holds the
    /// lock file.
    pub fn open(dir: &Path) -> Result<Store, Error> {
        let path = dir.join(DB_DIR);
        let config = sled::Config::new()
            .path(&path)
            .mode(sled::Mode::LowSpace)
            .cache_capacity(64 << 20)
            // Durability comes from the journal's own flush before each acknowledgement.
            .flush_every_ms(None);
        // The caller holds the journal's lock file, so a holder of sled's own file lock can
        // only be a handle that is closing, or a child this process is spawning, which shares
        // sled's locked file until it executes its program (see the lock module). Wait for
        // that, within a bound.
        let deadline = std::time::Instant::now() + SLED_LOCK_WAIT;
        let opened = loop {
            // sled is beta: treat a panic while it recovers a damaged database like an error.
            let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()))
                .map_err(|_| {
                Error::corrupt(
                    None,
                    None,
                    format!(
                        "database {} is damaged: sled panicked opening it",
                        path.display()
                    ),
                )
            })?;
            match opened {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other,
            }
        };
        let db = opened.map_err(|e| match e {
            sled::Error::Corruption { .. } => Error::corrupt(
                None,
                None,
                format!("database {} is damaged: {e}", path.display()),
            ),
            other => Error::Storage(other),
        })?;
        let meta = db.open_tree("meta")?;
        match meta.get("format")? {
            Some(v) => {
                let found = v.first().copied().unwrap_or(0);
                if found > codec::FORMAT_VERSION {
                    return Err(Error::NewerFormat {
                        found: u32::from(found),
                        supported: u32::from(codec::FORMAT_VERSION),
                        location: format!("database {}", path.display()),
                    });
                }
            }
            None => {
                meta.insert("format", &[codec::FORMAT_VERSION])?;
            }
        }
        Ok(Store {
            events: db.open_tree("events")?,
            runs: db.open_tree("runs")?,
            instances: db.open_tree("instances")?,
            meta,
            path,
            db,
            packing: std::sync::RwLock::new(()),
        })
    }

    /// Where messages say the data is.
    pub fn what(&self) -> String {
        format!("database {}", self.path.display())
    }

    /// The ids of all runs in the `runs` index.
    pub fn indexed_runs(&self) -> Result<Vec<RunId>, Error> {
        let mut out = Vec::new();
        for kv in self.runs.iter() {
            let (k, _) = kv?;
            let id = RunId::from_slice(&k).map_err(|_| {
                Error::corrupt(
                    None,
                    None,
                    format!("{}: bad key in runs index", self.what()),
                )
            })?;
            out.push(id);
        }
        Ok(out)
    }

    /// The ids of all runs that have events, from the `events` tree (slower than the index:
    /// one lookup per run).
    pub fn runs_with_events(&self) -> Result<Vec<RunId>, Error> {
        let mut out = Vec::new();
        let mut from = [0u8; 24];
        loop {
            let Some((k, _)) = self.events.range(from..).next().transpose()? else {
                break;
            };
            let Some((run, _)) = codec::split_event_key(&k) else {
                return Err(Error::corrupt(
                    None,
                    None,
                    format!("{}: bad key in events tree", self.what()),
                ));
            };
            out.push(run);
            // Skip to the first key after this run.
            match u128::from_be_bytes(*run.as_bytes()).checked_add(1) {
                Some(next) => from = codec::event_key(RunId::from_u128(next), 0),
                None => break,
            }
        }
        Ok(out)
    }

    /// The index record of a run.
    pub fn index(&self, run: RunId) -> Result<Option<RunIndex>, Error> {
        match self.runs.get(run.as_bytes())? {
            None => Ok(None),
            Some(v) => decode_index(&v).map(Some).map_err(|d| {
                Error::corrupt(Some(run), None, format!("{}: runs index: {d}", self.what()))
            }),
        }
    }

    /// Writes the index record of a run.
    pub fn put_index(&self, index: &RunIndex) -> Result<(), Error> {
        self.runs
            .insert(index.header.id.as_bytes(), encode_index(index)?)?;
        Ok(())
    }

    /// Records that `run` touches `instance`.
    pub fn put_instance(&self, instance: &str, run: RunId) -> Result<(), Error> {
        self.instances
            .insert(instance_key(instance, Some(run)), &[])?;
        Ok(())
    }

    /// The runs that touch `instance`, per the `instances` index.
    pub fn instance_runs(&self, instance: &str) -> Result<Vec<RunId>, Error> {
        let prefix = instance_key(instance, None);
        let mut out = Vec::new();
        for kv in self.instances.scan_prefix(&prefix) {
            let (k, _) = kv?;
            let Ok(run) = RunId::from_slice(&k[prefix.len()..]) else {
                return Err(Error::corrupt(
                    None,
                    None,
                    format!("{}: bad key in instances index", self.what()),
                ));
            };
            out.push(run);
        }
        Ok(out)
    }

    /// The stored values of a run, in key order: single envelopes and chunks. Callers hold
    /// [`Store::reading`] while they iterate.
    fn raw_events(&self, run: RunId) -> sled::Iter {
        self.events.scan_prefix(run.as_bytes())
    }

    /// Calls `each(seq, envelope, in_chunk)` for every stored event of `run`, in order,
    /// expanding chunks. Stops at the first error `each` returns.
    pub fn for_each_record(
        &self,
        run: RunId,
        mut each: impl FnMut(u64, &[u8], bool) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let what = self.what();
        let _reading = self.reading();
        for kv in self.raw_events(run) {
            let (k, v) = kv?;
            let first = seq_of_key(run, &k, &what)?;
            for_each_in_value(run, first, &v, &what, &mut each)?;
        }
        Ok(())
    }

    /// Reads a run's events, decoding each and checking checksums, sequence numbers, the hash
    /// chain and the transition rules. `Ok(None)` if the run has no events.
    pub fn read_run(&self, run: RunId) -> Result<Option<(Vec<Decoded>, RunChain)>, Error> {
        let mut out = Vec::new();
        Ok(self
            .fold_run(run, |d| out.push(d))?
            .map(|chain| (out, chain)))
    }

    /// Replays a run, checking everything [`Store::read_run`] checks, without keeping the
    /// events. `Ok(None)` if the run has no events.
    pub fn replay_run(&self, run: RunId) -> Result<Option<RunChain>, Error> {
        self.fold_run(run, |_| {})
    }

    /// Like [`Store::read_run`], handing each checked event to `each` instead of keeping it.
    pub fn fold_run(
        &self,
        run: RunId,
        mut each: impl FnMut(Decoded),
    ) -> Result<Option<RunChain>, Error> {
        let what = self.what();
        let mut chain: Option<RunChain> = None;
        self.for_each_record(run, |seq, bytes, _| {
            each(check_stored(&mut chain, run, seq, bytes, &what)?);
            Ok(())
        })?;
        Ok(chain)
    }

    /// The last stored event of a run, decoded.
    pub fn last_event(&self, run: RunId) -> Result<Option<Decoded>, Error> {
        let what = self.what();
        let _reading = self.reading();
        match self.raw_events(run).next_back().transpose()? {
            None => Ok(None),
            Some((k, v)) => {
                let first = seq_of_key(run, &k, &what)?;
                let mut last = None;
                for_each_in_value(run, first, &v, &what, &mut |seq, bytes, _| {
                    last = Some((seq, bytes.to_vec()));
                    Ok(())
                })?;
                match last {
                    Some((seq, bytes)) => decode_stored(run, seq, &bytes, &what).map(Some),
                    None => Ok(None),
                }
            }
        }
    }

    /// The run's events stored one per key after its last chunk: `(seq, envelope)`.
    pub fn loose_tail(&self, run: RunId) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        let what = self.what();
        let mut out = Vec::new();
        let _reading = self.reading();
        let mut iter = self.raw_events(run);
        while let Some(kv) = iter.next_back() {
            let (k, v) = kv?;
            if is_chunk(&v) {
                break;
            }
            let seq = seq_of_key(run, &k, &what)?;
            out.push((seq, v.to_vec()));
        }
        out.reverse();
        Ok(out)
    }

    /// Packs loose events of a run into chunks of [`CHUNK_EVENTS`], oldest first, each in one
    /// atomic sled batch (the chunk replaces its first event's key; the others' keys go).
    /// Leaves fewer than [`CHUNK_EVENTS`] in `loose`. `loose` must be consecutive events of the
    /// run, each stored under its own key.
    pub fn compact(&self, run: RunId, loose: &mut Vec<(u64, Vec<u8>)>) -> Result<(), Error> {
        let _packing = self.packing.write().unwrap_or_else(|p| p.into_inner());
        while loose.len() >= CHUNK_EVENTS {
            let group: Vec<(u64, Vec<u8>)> = loose.drain(..CHUNK_EVENTS).collect();
            let mut batch = sled::Batch::default();
            let envelopes: Vec<&[u8]> = group.iter().map(|(_, b)| b.as_slice()).collect();
            batch.insert(&codec::event_key(run, group[0].0), encode_chunk(&envelopes));
            for (seq, _) in &group[1..] {
                batch.remove(&codec::event_key(run, *seq));
            }
            self.events.apply_batch(batch)?;
        }
        Ok(())
    }

    /// The number of events the database held when its writer closed cleanly, as recorded in
    /// `meta` (`None` while a writer has it open). Compared with the `clean` file at open: a
    /// database that lost its latest writes disagrees.
    pub fn clean_events(&self) -> Result<Option<u64>, Error> {
        Ok(self.meta.get("clean_events")?.and_then(|v| {
            let b: [u8; 8] = v.as_ref().try_into().ok()?;
            Some(u64::from_be_bytes(b))
        }))
    }

    /// Records (or clears) the clean-close event count.
    pub fn set_clean_events(&self, events: Option<u64>) -> Result<(), Error> {
        match events {
            Some(n) => self.meta.insert("clean_events", &n.to_be_bytes())?,
            None => self.meta.remove("clean_events")?,
        };
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), Error> {
        self.db.flush()?;
        Ok(())
    }
}

/// The sequence number in an `events` key of `run` (`what` names the database).
fn seq_of_key(run: RunId, key: &[u8], what: &str) -> Result<u64, Error> {
    codec::split_event_key(key)
        .map(|(_, seq)| seq)
        .ok_or_else(|| Error::corrupt(Some(run), None, format!("{what}: bad event key")))
}

/// Key of the `instances` tree; with `run = None`, the prefix of all runs of the instance.
pub(crate) fn instance_key(instance: &str, run: Option<RunId>) -> Vec<u8> {
    let name = instance.as_bytes();
    let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(2 + name.len() + 16);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(&name[..usize::from(len)]);
    if let Some(run) = run {
        k.extend_from_slice(run.as_bytes());
    }
    k
}

fn index_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ codec::MAX_PAYLOAD }>()
}

/// `[version][crc32 of payload, LE][payload]`.
pub(crate) fn encode_index(index: &RunIndex) -> Result<Vec<u8>, Error> {
    let payload = bincode::serde::encode_to_vec(index, index_config()).map_err(|e| {
        Error::corrupt(
            Some(index.header.id),
            None,
            format!("cannot encode run index: {e}"),
        )
    })?;
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(codec::FORMAT_VERSION);
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

pub(crate) fn decode_index(bytes: &[u8]) -> Result<RunIndex, String> {
    if bytes.len() < 5 {
        return Err("record too short".into());
    }
    if bytes[0] != codec::FORMAT_VERSION {
        return Err(format!("unknown record version {}", bytes[0]));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[1..5]);
    if crc32fast::hash(&bytes[5..]) != u32::from_le_bytes(crc) {
        return Err("checksum mismatch".into());
    }
    let (index, used): (RunIndex, usize) =
        bincode::serde::decode_from_slice(&bytes[5..], index_config())
            .map_err(|e| e.to_string())?;
    if used != bytes.len() - 5 {
        return Err("bytes left over".into());
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(value: &[u8]) -> Result<Vec<(u64, Vec<u8>, bool)>, Error> {
        let mut out = Vec::new();
        for_each_in_value(RunId::from_u128(1), 10, value, "test", &mut |seq, b, c| {
            out.push((seq, b.to_vec(), c));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn chunks_round_trip_and_damage_is_detected() {
        let a = vec![1u8, 2, 3];
        let b = vec![1u8, 9];
        for chunk in [encode_chunk(&[&a, &b])] {
            assert_eq!(
                collect(&chunk).unwrap(),
                vec![(10, a.clone(), true), (11, b.clone(), true)]
            );
            for len in 1..chunk.len() {
                assert!(collect(&chunk[..len]).is_err(), "cut to {len} accepted");
            }
            let mut longer = chunk.clone();
            longer.push(0);
            assert!(collect(&longer).is_err());
        }
        // A single envelope (first byte = format version) is one event.
        assert_eq!(collect(&a).unwrap(), vec![(10, a.clone(), false)]);
        // A body that announces more events than it holds.
        let mut body = chunk_body(&[&a, &b]);
        body[0] = 3;
        assert!(collect(&compress_body(&body)).is_err());
        // 0xc1, the uncompressed chunk of development builds, is not a chunk any more.
        let mut plain = vec![0xc1];
        plain.extend_from_slice(&chunk_body(&[&a, &b]));
        assert!(!is_chunk(&plain));
    }

    #[test]
    fn every_flip_in_a_compressed_chunk_is_detected() {
        let envelopes: Vec<Vec<u8>> = (0..CHUNK_EVENTS as u8)
            .map(|i| {
                let mut e = b"\x01 run 0123456789abcdef instance web-1 step clone ".to_vec();
                e.push(i);
                e
            })
            .collect();
        let refs: Vec<&[u8]> = envelopes.iter().map(|e| e.as_slice()).collect();
        let chunk = encode_chunk(&refs);
        let plain = chunk_body(&refs);
        assert_eq!(chunk[0], CHUNK_Z_TAG);
        assert!(
            chunk.len() * 2 < plain.len(),
            "{} bytes compressed, {} plain",
            chunk.len(),
            plain.len()
        );
        let good = collect(&chunk).unwrap();
        assert_eq!(good.len(), CHUNK_EVENTS);
        let expected: Vec<_> = (0..CHUNK_EVENTS)
            .map(|i| (10 + i as u64, envelopes[i].clone(), true))
            .collect();
        assert_eq!(good, expected);
        // Byte 0 is the tag: changing it makes the value something else (checked by the
        // envelope's own checksum). Every other byte is covered by the chunk's CRC.
        for pos in 1..chunk.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bad = chunk.clone();
                bad[pos] ^= mask;
                assert!(
                    collect(&bad).is_err(),
                    "flip {mask:#x} at byte {pos} of {} accepted",
                    chunk.len()
                );
            }
        }
    }
}
