//! Reading what `journal import` is given: an NDJSON export or a copy of a binary live log,
//! recognised by its magic bytes. Every line (or record) is decoded and checked here, before
//! the writer looks at anything; the writer then checks each run against the journal and
//! stores what it lacks ([`crate::Journal::import_ndjson`]).

use crate::codec::{self, Decoded, NdjsonHeader};
use crate::event::RunId;
use crate::livelog;
use crate::Error;
use crate::Journal;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

/// An imported event: its line (or live-log record) number, the event and its envelope.
pub(crate) type ImportLine = (usize, Decoded, Vec<u8>);

/// The events of an import, grouped by run in the order the runs first appear.
pub(crate) struct ImportInput {
    pub runs: Vec<(RunId, Vec<ImportLine>)>,
    /// What messages call one unit of input: "line" or "record".
    pub unit: &'static str,
}

/// Reads and decodes all of `input`; refuses it with [`Error::InvalidInput`] naming the line
/// (or record) at the first problem.
pub(crate) fn read_input(input: &mut dyn BufRead) -> Result<ImportInput, Error> {
    let mut runs: Vec<(RunId, Vec<ImportLine>)> = Vec::new();
    let mut run_pos: HashMap<RunId, usize> = HashMap::new();
    let binary = input
        .fill_buf()
        .map_err(|e| Error::io("import input", e))?
        .starts_with(&livelog::LOG_MAGIC[..4]);
    let unit = if binary { "record" } else { "line" };
    let bad = |no: usize, detail: String| Error::InvalidInput {
        detail: format!("import {unit} {no}: {detail}"),
    };
    let mut add = |no: usize, d: Decoded, bytes: Vec<u8>| {
        let run = d.event.run;
        let pos = *run_pos.entry(run).or_insert_with(|| {
            runs.push((run, Vec::new()));
            runs.len() - 1
        });
        runs[pos].1.push((no, d, bytes));
    };
    if binary {
        // A copy of a live log: a file header, then framed envelopes.
        let mut all = Vec::new();
        input
            .read_to_end(&mut all)
            .map_err(|e| Error::io("import input", e))?;
        let as_input = |e: Error| match e {
            Error::Corrupt { detail, .. } => Error::InvalidInput { detail },
            other => other,
        };
        if !livelog::check_header(&all, "import input (a live log)").map_err(as_input)? {
            return Err(Error::InvalidInput {
                detail: "import input (a live log) ends inside its file header".into(),
            });
        }
        let (records, complete) = livelog::split_records(&all);
        for rec in &records {
            let (d, bytes) = rec.decode().map_err(|d| bad(rec.no, d))?;
            add(rec.no, d, bytes);
        }
        if complete < all.len() {
            return Err(Error::InvalidInput {
                detail: format!(
                    "import input (a live log): its last {} bytes, from byte {complete}, \
                     are an unfinished record; copy the live log again once its writer \
                     has finished the write",
                    all.len() - complete
                ),
            });
        }
    } else {
        let mut line = String::new();
        let mut no = 0usize;
        loop {
            line.clear();
            let n = input
                .read_line(&mut line)
                .map_err(|e| Error::io("import input", e))?;
            if n == 0 {
                break;
            }
            no += 1;
            let text = line.trim_end_matches(['\n', '\r']);
            if no == 1 {
                let h = NdjsonHeader::parse(text, "import input").map_err(|e| match e {
                    Error::Corrupt { detail, .. } => Error::InvalidInput { detail },
                    other => other,
                })?;
                // Its events were changed (contents left out): storing them would put a record
                // in the journal that is not what the runs did, and a resume of such a run
                // would act on what is missing.
                if h.scope == codec::REDACTED_SCOPE {
                    return Err(Error::InvalidInput {
                        detail: "import input is a redacted export (written without file \
                                 contents): it is an extract to read, not a journal record; \
                                 import an export written with its contents"
                            .into(),
                    });
                }
                continue;
            }
            if text.trim().is_empty() {
                continue;
            }
            let (d, bytes) = codec::parse_line(text).map_err(|d| bad(no, d))?;
            add(no, d, bytes);
        }
        if no == 0 {
            return Err(Error::InvalidInput {
                detail: "import input is empty: expected a journal NDJSON header line".into(),
            });
        }
    }
    Ok(ImportInput { runs, unit })
}

/// Imports an NDJSON export (or a copy of a binary live log, recognised by its magic bytes) into
/// the journal in `dir`, creating it if needed: checks the header's format version, every line's
/// (or record's) checksum and each run's sequence numbers,
/// hash chain and transitions, and that events already in the journal are identical. Events
/// the journal lacks are added (a run may be extended). Returns the number of events added.
/// Bad input is refused with [`Error::InvalidInput`] naming the line (or record), and nothing is
/// written.
pub fn import_ndjson(dir: &Path, input: &mut dyn BufRead) -> Result<usize, Error> {
    let j = Journal::open(dir)?;
    let n = j.import_ndjson(input)?;
    j.close()?;
    Ok(n)
}
