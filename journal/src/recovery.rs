//! Recovery: after a crash the database and the live log may disagree by the events of
//! writes cut short; [`reconcile`] makes them agree again when a writer opens the journal.
//! [`rebuild_live_log`] rewrites a live log lost or damaged while the journal was closed.

use crate::codec::{self, Decoded};
use crate::event::RunId;
use crate::layout::sync_dir;
use crate::layout::CLEAN_FILE;
use crate::livelog;
use crate::lock::{self, Role};
use crate::store::{RunChain, RunIndex, Store};
use crate::Error;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// After a crash: makes the database and the live log hold the same events again. Returns the
/// number of events.
///
/// - The database is checked run by run (checksums, chain, transitions); damage stops the open.
/// - The live log is checked record by record. Damage at its end (an unfinished record, or
///   trailing records or bytes that do not check, with no intact record after them) is cut
///   off: a write cut short. Damage followed by intact records stops the open.
/// - Each run's events in both must be identical where both have them; the longer side's extra
///   events (never acknowledged, since acknowledgement waits for both) are copied to the other.
/// - The runs and instances indexes are rewritten from the replayed runs.
pub(crate) fn reconcile(dir: &Path, store: &Store) -> Result<(u64, Vec<String>), Error> {
    let mut notes = Vec::new();
    let what = store.what();
    struct Scan {
        chain: RunChain,
        hashes: Vec<u64>,
    }
    let mut runs: HashMap<RunId, Scan> = HashMap::new();
    let mut order: Vec<RunId> = Vec::new();
    // Registers a run met for the first time (database or log), in the order met.
    let mut begin = |runs: &mut HashMap<RunId, Scan>, run: RunId, chain: RunChain, hash: u64| {
        order.push(run);
        runs.insert(
            run,
            Scan {
                chain,
                hashes: vec![hash],
            },
        );
    };
    for kv in store.events.iter() {
        let (k, v) = kv?;
        let Some((run, first)) = codec::split_event_key(&k) else {
            return Err(Error::corrupt(
                None,
                None,
                format!("{what}: bad key in events tree"),
            ));
        };
        crate::store::for_each_in_value(run, first, &v, &what, &mut |seq, bytes, _| {
            let d = crate::store::decode_stored(run, seq, bytes, &what)?;
            let fail = |e: String| Error::corrupt(Some(run), Some(seq), format!("{what}: {e}"));
            match runs.get_mut(&run) {
                None => begin(&mut runs, run, RunChain::start(&d).map_err(fail)?, d.hash),
                Some(s) => {
                    s.chain.push(&d).map_err(fail)?;
                    s.hashes.push(d.hash);
                }
            }
            Ok(())
        })?;
    }
    // The live log.
    let path = livelog::log_path(dir);
    let lwhat = path.display().to_string();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut keep_len: usize;
    let mut to_db: Vec<(Decoded, Vec<u8>)> = Vec::new();
    let mut in_log: HashMap<RunId, u64> = HashMap::new();
    if !livelog::check_header(&bytes, &lwhat)? {
        // New journal, or a crash while writing the header: start the log over.
        keep_len = 0;
    } else {
        keep_len = livelog::LOG_HEADER;
        let (records, _) = livelog::split_records(&bytes);
        let mut bad: Option<(String, String)> = None;
        for rec in &records {
            let (d, raw) = match rec.decode() {
                Err(detail) => {
                    bad.get_or_insert((rec.place(&lwhat), detail));
                    continue;
                }
                Ok(v) => v,
            };
            if let Some((place, detail)) = &bad {
                return Err(Error::corrupt(
                    None,
                    None,
                    format!(
                        "{place}: {detail}; later records are intact, so this is damage, not \
                         a write cut short by a crash"
                    ),
                ));
            }
            let run = d.event.run;
            let seq = d.event.seq;
            let fail = |detail: String| {
                Error::corrupt(
                    Some(run),
                    Some(seq),
                    format!("{}: {detail}", rec.place(&lwhat)),
                )
            };
            let count = in_log.entry(run).or_insert(0);
            if seq != *count + 1 {
                return Err(fail(format!("sequence number {seq} follows {count}")));
            }
            *count = seq;
            match runs.get_mut(&run) {
                Some(s) if (seq as usize) <= s.hashes.len() => {
                    if s.hashes[(seq - 1) as usize] != d.hash {
                        return Err(fail("differs from the same event in the database".into()));
                    }
                }
                Some(s) => {
                    s.chain.push(&d).map_err(fail)?;
                    s.hashes.push(d.hash);
                    to_db.push((d, raw));
                }
                None => {
                    begin(&mut runs, run, RunChain::start(&d).map_err(fail)?, d.hash);
                    to_db.push((d, raw));
                }
            }
            keep_len = rec.end;
        }
    }
    // Cut the log's damaged or unfinished end; write the header if there is none.
    let mut log = crate::layout::private_file()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    let io = |e| Error::io(&path, e);
    if keep_len < bytes.len() {
        notes.push(format!(
            "cut {} bytes of unfinished writes from the end of {lwhat}",
            bytes.len() - keep_len
        ));
        log.set_len(keep_len as u64).map_err(io)?;
    }
    let mut tail: Vec<u8> = Vec::new();
    if keep_len == 0 {
        tail.extend_from_slice(&livelog::file_header());
    }
    // Events the database has and the log lacks.
    let mut copied_to_log = 0u64;
    for run in &order {
        let logged = in_log.get(run).copied().unwrap_or(0);
        if runs[run].hashes.len() as u64 <= logged {
            continue;
        }
        store.for_each_record(*run, |seq, bytes, _| {
            if seq > logged {
                crate::store::decode_stored(*run, seq, bytes, &what)?;
                livelog::frame(bytes, &mut tail);
                copied_to_log += 1;
            }
            Ok(())
        })?;
    }
    if copied_to_log > 0 {
        notes.push(format!(
            "copied {copied_to_log} event(s) from the database to the live log"
        ));
    }
    if !to_db.is_empty() {
        notes.push(format!(
            "copied {} event(s) from the live log to the database",
            to_db.len()
        ));
    }
    // Events the log has and the database lacks.
    for (d, raw) in &to_db {
        store
            .events
            .insert(codec::event_key(d.event.run, d.event.seq), raw.as_slice())?;
    }
    // Indexes.
    let mut total = 0u64;
    for run in &order {
        let s = &runs[run];
        total += s.hashes.len() as u64;
        let state = s.chain.replay.state();
        store.put_index(&RunIndex {
            header: state.header.clone(),
            status: state.status,
        })?;
        for inst in &state.instances {
            store.put_instance(&inst.name, *run)?;
        }
    }
    use std::io::Seek;
    log.seek(std::io::SeekFrom::End(0)).map_err(io)?;
    log.write_all(&tail).map_err(io)?;
    log.sync_all().map_err(io)?;
    store.flush()?;
    sync_dir(dir)?;
    Ok((total, notes))
}

/// Rewrites the live log of the journal in `dir` from its database, after checking the
/// database. For a live log that was damaged, truncated or removed while the journal was
/// closed (the writer then refuses to open). Returns the number of events written.
pub fn rebuild_live_log(dir: &Path) -> Result<u64, Error> {
    let lock = lock::try_lock(dir, Role::Writer)?.ok_or_else(|| lock::locked_error(dir))?;
    let store = Store::open(dir)?;
    let path = livelog::log_path(dir);
    let tmp = dir.join(format!("{}.rebuild", livelog::LOG_FILE));
    let mut out = std::io::BufWriter::new(
        crate::layout::private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?,
    );
    let io = |e| Error::io(&tmp, e);
    out.write_all(&livelog::file_header()).map_err(io)?;
    let mut n = 0u64;
    let mut buf = Vec::new();
    for run in store.runs_with_events()? {
        // Check the whole run (checksums, chain, transitions) before copying its records.
        store.replay_run(run)?.ok_or_else(|| Error::NotFound {
            what: format!("run {run}"),
        })?;
        store.for_each_record(run, |_, bytes, _| {
            buf.clear();
            livelog::frame(bytes, &mut buf);
            n += 1;
            out.write_all(&buf).map_err(io)
        })?;
    }
    let f = out
        .into_inner()
        .map_err(|e| Error::io(&tmp, e.into_error()))?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    // The old clean marker described the old log.
    let clean = dir.join(CLEAN_FILE);
    if clean.exists() {
        std::fs::remove_file(&clean).map_err(|e| Error::io(&clean, e))?;
    }
    sync_dir(dir)?;
    drop(lock);
    Ok(n)
}
