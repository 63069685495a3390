//! `journal import` reads files a user hands it: a damaged, cut, reordered or foreign file must
//! never panic the reader and never leave a half-import behind. Property test: a real export,
//! mutated at random, imported into an empty journal: either refused with nothing stored, or
//! accepted and the journal verifies clean.

use journal::{EventKind, Journal, Outcome, RunFilter, RunHeader};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The NDJSON export of a small journal (two runs), made once.
fn export() -> &'static str {
    static EXPORT: OnceLock<String> = OnceLock::new();
    EXPORT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        for (n, inst) in ["web-1", "web-2"].iter().enumerate() {
            let run = j
                .create_run(RunHeader {
                    id: RunHeader::new_id(),
                    command: vec!["reroot".into(), "rebuild".into()],
                    user: "alice".into(),
                    host: "h".into(),
                    started_at_ms: 1_000 * (n as i64 + 1),
                    config_digests: vec![("a.yaml".into(), "ff".into())],
                    instances: vec![inst.to_string()],
                    options: BTreeMap::new(),
                })
                .unwrap()
                .run;
            for s in ["stop", "swap"] {
                j.append(run, Some(inst), Some(s), 1, EventKind::StepStarted)
                    .unwrap();
                j.append(
                    run,
                    Some(inst),
                    Some(s),
                    1,
                    EventKind::StepSucceeded {
                        output: "{\"ok\":true}".into(),
                    },
                )
                .unwrap();
            }
            j.append(
                run,
                None,
                None,
                0,
                EventKind::RunFinished {
                    outcome: Outcome::Succeeded,
                },
            )
            .unwrap();
        }
        let mut out = Vec::new();
        j.export_ndjson(None, &mut out).unwrap();
        j.close().unwrap();
        String::from_utf8(out).unwrap()
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the byte at (position modulo length) with this one.
    SetByte(usize, u8),
    /// Cut the text at (position modulo length).
    Cut(usize),
    /// Remove line (n modulo lines).
    DropLine(usize),
    /// Repeat line (n modulo lines).
    DupLine(usize),
    /// Swap lines a and b (modulo lines).
    SwapLines(usize, usize),
    /// Insert random text at (position modulo length).
    Insert(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::SetByte(p, b)),
        any::<usize>().prop_map(Mutation::Cut),
        any::<usize>().prop_map(Mutation::DropLine),
        any::<usize>().prop_map(Mutation::DupLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), "\\PC{0,40}").prop_map(|(p, s)| Mutation::Insert(p, s)),
    ]
}

fn apply(text: &[u8], m: &Mutation) -> Vec<u8> {
    let mut bytes = text.to_vec();
    let mut lines: Vec<Vec<u8>> = text
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    let n = lines.len().max(1);
    match m {
        Mutation::SetByte(p, b) => {
            let i = p % bytes.len();
            bytes[i] = *b;
            bytes
        }
        Mutation::Cut(p) => {
            bytes.truncate(p % bytes.len());
            bytes
        }
        Mutation::Insert(p, s) => {
            let i = p % bytes.len();
            bytes.splice(i..i, s.bytes());
            bytes
        }
        Mutation::DropLine(i) => {
            lines.remove(i % n);
            lines.concat()
        }
        Mutation::DupLine(i) => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
            lines.concat()
        }
        Mutation::SwapLines(a, b) => {
            lines.swap(a % n, b % n);
            lines.concat()
        }
    }
}

/// Imports `input` into a new journal: an error leaves it empty, a success verifies clean.
fn check_import(input: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let result = journal::import_ndjson(dir.path(), &mut &input[..]);
    let j = Journal::open(dir.path()).unwrap();
    let runs = j.runs(&RunFilter::default()).unwrap();
    match result {
        Err(_) => prop_assert!(
            runs.is_empty(),
            "a refused import stored {} runs",
            runs.len()
        ),
        Ok(_) => {
            let report = j.verify().unwrap();
            prop_assert!(
                report.first_problem().is_none(),
                "an accepted import does not verify: {:?}",
                report.first_problem()
            );
        }
    }
    j.close().unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn mutated_exports_are_refused_whole_or_imported_sound(
        ms in proptest::collection::vec(mutation(), 1..4)
    ) {
        let mut text = export().as_bytes().to_vec();
        for m in &ms {
            if text.is_empty() {
                break;
            }
            text = apply(&text, m);
        }
        check_import(&text)?;
    }

    #[test]
    fn random_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_import(&bytes)?;
    }
}

#[test]
fn the_unmutated_export_imports_both_runs() {
    let dir = tempfile::tempdir().unwrap();
    let n = journal::import_ndjson(dir.path(), &mut export().as_bytes()).unwrap();
    assert_eq!(n, 12, "events: two runs of six");
    let j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.runs(&RunFilter::default()).unwrap().len(), 2);
    assert!(j.verify().unwrap().first_problem().is_none());
    j.close().unwrap();
}
