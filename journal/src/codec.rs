//! Bytes: the versioned envelope around each stored event (in the database and, framed, in the
//! live log), the hash chain, and the NDJSON lines of exports. The bytes themselves are
//! described in `journal/FORMAT.md` ([`mod@crate::format`]); the tests below pin them.

use crate::event::{Event, EventKind, RunId};
use crate::Error;
use serde::{Deserialize, Serialize};

/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u8 = 1;
/// The `format` field of every NDJSON header line.
pub const NDJSON_FORMAT: &str = "reroot-journal";
/// The header scope of an export whose events were changed to leave something out (see
/// [`crate::ExportOptions::redact`]): checked like any export, refused by import.
pub const REDACTED_SCOPE: &str = "redacted";
/// Size of the envelope before the payload.
pub const ENVELOPE_HEADER: usize = 13;
/// The largest payload a reader accepts (protects against a damaged length prefix).
pub const MAX_PAYLOAD: usize = 16 << 20;

/// The bincode configuration of format version 1. Pinned: changing it changes the bytes.
fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<MAX_PAYLOAD>()
}

/// 64-bit FNV-1a. Chosen for the hash chain because it is a few lines, has no dependency and is
/// fixed by its definition forever (the hash is part of the format, so a library's hash that
/// might change between versions would not do). It is not meant to resist an attacker: the
/// chain guards against accidents (lost, reordered or mixed-up records), like the CRC.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_continue(FNV_OFFSET, bytes)
}

/// FNV-1a's starting state.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over `bytes`, from the state `h` (the replay's hasher feeds its keys piece by piece).
pub(crate) fn fnv1a64_continue(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Encodes `event` into an envelope that chains to `prev` (the previous event's hash, or 0).
pub fn encode(event: &Event, prev: u64) -> Result<Vec<u8>, Error> {
    let payload =
        bincode::serde::encode_to_vec(event, bincode_config()).map_err(|e| Error::Corrupt {
            run: Some(event.run),
            seq: Some(event.seq),
            detail: format!("cannot encode event: {e}"),
        })?;
    if payload.len() > MAX_PAYLOAD {
        return Err(Error::InvalidInput {
            detail: format!(
                "event {} of run {} is {} bytes encoded, more than the limit of {} bytes",
                event.seq,
                event.run,
                payload.len(),
                MAX_PAYLOAD
            ),
        });
    }
    let mut out = Vec::with_capacity(ENVELOPE_HEADER + payload.len());
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&prev.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[0..9]);
    crc.update(&payload);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// A decoded and checked envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The event.
    pub event: Event,
    /// The hash of the previous event of its run, as recorded.
    pub prev: u64,
    /// The CRC as recorded (and verified).
    pub crc: u32,
    /// The hash of this envelope, which the next event must carry.
    pub hash: u64,
}

/// Why an envelope could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Written by a newer reroot.
    NewerFormat(u8),
    /// Damaged or not an envelope at all.
    Damaged(String),
}

/// Checks an envelope's version and CRC; returns the recorded previous hash and CRC.
fn check_envelope(bytes: &[u8]) -> Result<(u64, u32), DecodeError> {
    if bytes.len() < ENVELOPE_HEADER {
        return Err(DecodeError::Damaged(format!(
            "record is {} bytes, shorter than the {ENVELOPE_HEADER}-byte envelope",
            bytes.len()
        )));
    }
    let version = bytes[0];
    if version > FORMAT_VERSION {
        return Err(DecodeError::NewerFormat(version));
    }
    if version == 0 {
        return Err(DecodeError::Damaged(
            "format version 0 does not exist".into(),
        ));
    }
    let mut prev = [0u8; 8];
    prev.copy_from_slice(&bytes[1..9]);
    let mut crc_bytes = [0u8; 4];
    crc_bytes.copy_from_slice(&bytes[9..13]);
    let recorded = u32::from_le_bytes(crc_bytes);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[0..9]);
    crc.update(&bytes[ENVELOPE_HEADER..]);
    let computed = crc.finalize();
    if computed != recorded {
        return Err(DecodeError::Damaged(format!(
            "checksum mismatch: recorded {recorded:08x}, computed {computed:08x}"
        )));
    }
    Ok((u64::from_le_bytes(prev), recorded))
}

/// Decodes and checks an envelope: version, CRC, payload, nothing left over.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let (prev, crc) = check_envelope(bytes)?;
    let payload = &bytes[ENVELOPE_HEADER..];
    let (event, used): (Event, usize) =
        bincode::serde::decode_from_slice(payload, bincode_config())
            .map_err(|e| DecodeError::Damaged(format!("cannot decode event: {e}")))?;
    if used != payload.len() {
        return Err(DecodeError::Damaged(format!(
            "{} bytes left over after the event",
            payload.len() - used
        )));
    }
    Ok(Decoded {
        event,
        prev,
        crc,
        hash: fnv1a64(bytes),
    })
}

/// The key of an event in the `events` tree: run id bytes, then the sequence number big-endian
/// (so a run's events sort by sequence number and a run is a key prefix).
pub fn event_key(run: RunId, seq: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(run.as_bytes());
    k[16..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Splits an `events` key into run id and sequence number.
pub fn split_event_key(key: &[u8]) -> Option<(RunId, u64)> {
    if key.len() != 24 {
        return None;
    }
    let run = RunId::from_slice(&key[..16]).ok()?;
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&key[16..]);
    Some((run, u64::from_be_bytes(seq)))
}

/// The first line of every NDJSON file (an export, or the old NDJSON live log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NdjsonHeader {
    /// Always [`NDJSON_FORMAT`].
    pub format: String,
    /// The format version of the lines that follow.
    pub version: u32,
    /// `"journal"` or `"run"` for an export (`"live-log"` for the old NDJSON live log).
    pub scope: String,
    /// For a one-run export, the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunId>,
    /// When the file was started, in milliseconds since the Unix epoch.
    pub written_at_ms: i64,
    /// CRC-32 of the fields above (see [`NdjsonHeader::checksum`]), 8 lower-case hex digits.
    #[serde(default)]
    pub crc: String,
}

impl NdjsonHeader {
    /// A header of the current version.
    pub fn new(scope: &str, run: Option<RunId>) -> NdjsonHeader {
        let mut h = NdjsonHeader {
            format: NDJSON_FORMAT.to_string(),
            version: u32::from(FORMAT_VERSION),
            scope: scope.to_string(),
            run,
            written_at_ms: crate::event::now_ms(),
            crc: String::new(),
        };
        h.crc = format!("{:08x}", h.checksum());
        h
    }

    /// CRC-32 of `format|version|scope|run|written_at_ms` (run as hyphenated id or `-`).
    pub fn checksum(&self) -> u32 {
        let run = self
            .run
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into());
        crc32fast::hash(
            format!(
                "{}|{}|{}|{}|{}",
                self.format, self.version, self.scope, run, self.written_at_ms
            )
            .as_bytes(),
        )
    }

    /// The header as one JSON line, with its newline.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parses and checks a header line (`what` names the file for messages).
    pub fn parse(line: &str, what: &str) -> Result<NdjsonHeader, Error> {
        let h: NdjsonHeader =
            serde_json::from_str(line.trim_end()).map_err(|e| Error::Corrupt {
                run: None,
                seq: None,
                detail: format!("{what}: line 1 is not a journal header: {e}"),
            })?;
        if h.format != NDJSON_FORMAT {
            return Err(Error::Corrupt {
                run: None,
                seq: None,
                detail: format!(
                    "{what}: line 1 has format {:?}, expected {NDJSON_FORMAT:?}",
                    h.format
                ),
            });
        }
        if h.version > u32::from(FORMAT_VERSION) {
            return Err(Error::NewerFormat {
                found: h.version,
                supported: u32::from(FORMAT_VERSION),
                location: what.to_string(),
            });
        }
        if h.version == 0 {
            return Err(Error::Corrupt {
                run: None,
                seq: None,
                detail: format!("{what}: format version 0 does not exist"),
            });
        }
        if h.crc != format!("{:08x}", h.checksum()) {
            return Err(Error::Corrupt {
                run: None,
                seq: None,
                detail: format!("{what}: line 1 (the header) fails its checksum"),
            });
        }
        if !matches!(
            h.scope.as_str(),
            "live-log" | "journal" | "run" | REDACTED_SCOPE
        ) {
            return Err(Error::Corrupt {
                run: None,
                seq: None,
                detail: format!(
                    "{what}: header scope {:?} is not live-log, journal, run or redacted",
                    h.scope
                ),
            });
        }
        Ok(h)
    }
}

/// One event as an NDJSON line: the event's fields, then `prev` (16 hex digits) and `crc`
/// (8 hex digits) of its envelope, so a reader can rebuild the envelope and check both.
#[derive(Serialize)]
struct LineOut<'a> {
    run: &'a RunId,
    seq: u64,
    #[serde(skip_serializing_if = "is_none")]
    instance: &'a Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    step: &'a Option<String>,
    attempt: u32,
    at_ms: i64,
    kind: &'a EventKind,
    prev: String,
    crc: String,
}

fn is_none(v: &&Option<String>) -> bool {
    v.is_none()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn {
    run: RunId,
    seq: u64,
    #[serde(default)]
    instance: Option<String>,
    #[serde(default)]
    step: Option<String>,
    attempt: u32,
    at_ms: i64,
    kind: EventKind,
    prev: String,
    crc: String,
}

/// Renders a decoded envelope as one NDJSON line, with its newline.
pub fn to_line(d: &Decoded) -> String {
    let e = &d.event;
    let line = LineOut {
        run: &e.run,
        seq: e.seq,
        instance: &e.instance,
        step: &e.step,
        attempt: e.attempt,
        at_ms: e.at_ms,
        kind: &e.kind,
        prev: format!("{:016x}", d.prev),
        crc: format!("{:08x}", d.crc),
    };
    let mut s = serde_json::to_string(&line).unwrap_or_default();
    s.push('\n');
    s
}

/// Parses one NDJSON event line (without its newline), rebuilds its envelope and checks its
/// CRC. Returns the decoded event and its envelope bytes. Errors are plain descriptions.
pub fn parse_line(line: &str) -> Result<(Decoded, Vec<u8>), String> {
    let l: LineIn = serde_json::from_str(line).map_err(|e| format!("not an event line: {e}"))?;
    let lower_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if l.prev.len() != 16 || l.crc.len() != 8 || !lower_hex(&l.prev) || !lower_hex(&l.crc) {
        return Err("fields \"prev\" and \"crc\" must be 16 and 8 lower-case hex digits".into());
    }
    let prev = u64::from_str_radix(&l.prev, 16)
        .map_err(|_| format!("field \"prev\" is not 16 hex digits: {:?}", l.prev))?;
    let crc = u32::from_str_radix(&l.crc, 16)
        .map_err(|_| format!("field \"crc\" is not 8 hex digits: {:?}", l.crc))?;
    let event = Event {
        run: l.run,
        seq: l.seq,
        instance: l.instance,
        step: l.step,
        attempt: l.attempt,
        at_ms: l.at_ms,
        kind: l.kind,
    };
    let bytes = encode(&event, prev).map_err(|e| e.to_string())?;
    let decoded = decode(&bytes).map_err(|e| match e {
        DecodeError::NewerFormat(v) => format!("format version {v}"),
        DecodeError::Damaged(d) => d,
    })?;
    if decoded.crc != crc {
        return Err(format!(
            "checksum mismatch: recorded {crc:08x}, computed {:08x}",
            decoded.crc
        ));
    }
    Ok((decoded, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Outcome, RunHeader};
    use std::collections::BTreeMap;

    fn sample_run() -> RunId {
        RunId::from_bytes([
            0x0f, 0x8c, 0x1e, 0x5a, 0x11, 0x22, 0x43, 0x44, 0x95, 0x66, 0x77, 0x88, 0x99, 0xaa,
            0xbb, 0xcc,
        ])
    }

    fn sample_event() -> Event {
        Event {
            run: sample_run(),
            seq: 7,
            instance: Some("web-01".into()),
            step: Some("snapshot".into()),
            attempt: 2,
            at_ms: 1_732_240_000_123,
            kind: EventKind::StepSucceeded {
                output: "{\"snap\":\"s1\"}".into(),
            },
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn fnv_matches_the_published_test_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    /// Pins the exact bytes of format version 1. If this fails, the format changed: bump
    /// FORMAT_VERSION and keep a reader for version 1 instead of editing the expected bytes.
    #[test]
    fn sample_event_bytes_are_pinned() {
        let bytes = encode(&sample_event(), 0x0102_0304_0506_0708).unwrap();
        assert_eq!(
            hex(&bytes),
            concat!(
                "01",               // version
                "0807060504030201", // prev hash, LE
                "17aee5e1",         // crc32, LE
                "10",               // run id: length 16 (uuid as bytes)
                "0f8c1e5a112243449566778899aabbcc",
                "07", // seq 7
                "01",
                "06",
                "7765622d3031", // Some("web-01")
                "01",
                "08",
                "736e617073686f74",   // Some("snapshot")
                "02",                 // attempt 2
                "fdf68819a326030000", // at_ms, zigzag varint (u64 follows 0xfd)
                "05",                 // EventKind variant 5: StepSucceeded
                "0d",
                "7b22736e6170223a227331227d", // output
            )
        );
    }

    #[test]
    fn run_created_bytes_are_pinned() {
        let mut options = BTreeMap::new();
        options.insert("parallel".to_string(), "4".to_string());
        let ev = Event {
            run: sample_run(),
            seq: 1,
            instance: None,
            step: None,
            attempt: 0,
            at_ms: 5,
            kind: EventKind::RunCreated(RunHeader {
                id: sample_run(),
                command: vec!["reroot".into(), "rebuild".into()],
                user: "root".into(),
                host: "h".into(),
                started_at_ms: 4,
                config_digests: vec![("a.yaml".into(), "ab".into())],
                instances: vec!["i1".into()],
                options,
            }),
        };
        let bytes = encode(&ev, 0).unwrap();
        assert_eq!(
            hex(&bytes),
            concat!(
                "01",
                "0000000000000000",
                "80a79d92",
                "10",
                "0f8c1e5a112243449566778899aabbcc", // run
                "01",
                "00",
                "00",
                "00",
                "0a", // seq 1, no instance, no step, attempt 0, at 5
                "00", // variant 0: RunCreated
                "10",
                "0f8c1e5a112243449566778899aabbcc", // header.id
                "02",
                "06",
                "7265726f6f74",
                "07",
                "72656275696c64", // command
                "04",
                "726f6f74",
                "01",
                "68", // user, host
                "08", // started_at_ms 4 (zigzag)
                "01",
                "06",
                "612e79616d6c",
                "02",
                "6162", // config_digests
                "01",
                "02",
                "6931", // instances
                "01",
                "08",
                "706172616c6c656c",
                "01",
                "34", // options
            )
        );
    }

    /// The newest kinds sit at the end of the enum, so the bytes of every older kind stay as
    /// pinned above; these pin the new ones.
    #[test]
    fn undo_requested_and_pruned_bytes_are_pinned() {
        let ev = |instance: Option<&str>, kind| Event {
            run: sample_run(),
            seq: 3,
            instance: instance.map(String::from),
            step: None,
            attempt: 0,
            at_ms: 5,
            kind,
        };
        let prefix = concat!(
            "10",
            "0f8c1e5a112243449566778899aabbcc", // run
            "03",                               // seq 3
        );
        let cases = [
            (
                ev(None, EventKind::UndoRequested { data: true }),
                // No instance, no step, attempt 0, at 5; variant 11: UndoRequested; true.
                concat!("00", "00", "00", "0a", "0b", "01"),
            ),
            (
                ev(
                    Some("w"),
                    EventKind::Pruned {
                        what: "deleted x".into(),
                    },
                ),
                concat!(
                    "01",
                    "01",
                    "77", // Some("w")
                    "00",
                    "00",
                    "0a", // no step, attempt 0, at 5
                    "0c", // variant 12: Pruned
                    "09",
                    "64656c657465642078", // what
                ),
            ),
        ];
        for (event, payload) in &cases {
            let bytes = encode(event, 0).unwrap();
            assert_eq!(hex(&bytes[ENVELOPE_HEADER..]), format!("{prefix}{payload}"));
            assert_eq!(&decode(&bytes).unwrap().event, event);
        }
        // The whole envelope of one, checksum included.
        let bytes = encode(&cases[0].0, 0).unwrap();
        assert_eq!(
            hex(&bytes[..ENVELOPE_HEADER]),
            concat!("01", "0000000000000000", "7cfaee22") // version, prev hash 0, crc32 LE
        );
    }

    #[test]
    fn round_trip_and_hash() {
        let ev = sample_event();
        let bytes = encode(&ev, 42).unwrap();
        let d = decode(&bytes).unwrap();
        assert_eq!(d.event, ev);
        assert_eq!(d.prev, 42);
        assert_eq!(d.hash, fnv1a64(&bytes));
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let bytes = encode(&sample_event(), 9).unwrap();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                match decode(&b) {
                    Err(_) => {}
                    Ok(d) => panic!("flip of bit {bit} of byte {i} accepted: {d:?}"),
                }
            }
        }
    }

    #[test]
    fn truncation_is_detected() {
        let bytes = encode(&sample_event(), 9).unwrap();
        for len in 0..bytes.len() {
            assert!(
                decode(&bytes[..len]).is_err(),
                "truncated to {len} accepted"
            );
        }
    }

    #[test]
    fn newer_version_is_a_clear_error() {
        let mut bytes = encode(&sample_event(), 9).unwrap();
        bytes[0] = FORMAT_VERSION + 1;
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::NewerFormat(FORMAT_VERSION + 1))
        );
        let line = "{\"format\":\"reroot-journal\",\"version\":2,\"scope\":\"journal\",\"written_at_ms\":1,\"crc\":\"x\"}";
        match NdjsonHeader::parse(line, "x.ndjson") {
            Err(Error::NewerFormat {
                found: 2,
                supported: 1,
                ..
            }) => {}
            other => panic!("expected NewerFormat, got {other:?}"),
        }
    }

    #[test]
    fn header_round_trip_and_damage() {
        let h = NdjsonHeader::new("journal", Some(sample_run()));
        let line = h.to_line();
        assert_eq!(NdjsonHeader::parse(&line, "x").unwrap(), h);
        let damaged = line.replace("journal\"", "journaL\"");
        assert!(NdjsonHeader::parse(&damaged, "x").is_err());
        let other_time = line.replace(&h.written_at_ms.to_string(), "1");
        assert!(NdjsonHeader::parse(&other_time, "x").is_err());
    }

    #[test]
    fn line_round_trip_and_damage() {
        let bytes = encode(&sample_event(), 77).unwrap();
        let d = decode(&bytes).unwrap();
        let line = to_line(&d);
        assert!(line.ends_with('\n'));
        let (d2, bytes2) = parse_line(line.trim_end()).unwrap();
        assert_eq!(d2, d);
        assert_eq!(bytes2, bytes);
        let damaged = line.replace("web-01", "web-02");
        let err = parse_line(damaged.trim_end()).unwrap_err();
        assert!(err.contains("checksum mismatch"), "{err}");
        let run_upper = line.replace(
            &sample_run().to_string(),
            &sample_run().to_string().to_uppercase(),
        );
        assert_eq!(
            parse_line(run_upper.trim_end()).unwrap().0,
            d,
            "the same data"
        );
        let upper = line.replace(&format!("{:08x}", d.crc), &format!("{:08X}", d.crc));
        if upper != line {
            assert!(
                parse_line(upper.trim_end()).is_err(),
                "upper-case hex accepted"
            );
        }
    }

    #[test]
    fn outcome_is_stable() {
        // Variant indices are part of the format.
        let enc = |o: Outcome| bincode::serde::encode_to_vec(o, bincode_config()).unwrap();
        assert_eq!(enc(Outcome::Succeeded), vec![0]);
        assert_eq!(enc(Outcome::Failed), vec![1]);
        assert_eq!(enc(Outcome::Undone), vec![2]);
    }
}
