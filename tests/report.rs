//! `history`, `status` and `show` on a run of 150 instances, text and `--json`: the command is
//! shortened, the summary counts are right and the filters pick the right instances. The
//! journal is written through the journal's own API, so no LXD is needed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use journal::{EventKind, Journal, Outcome, RunHeader, RunId};

const REROOT: &str = env!("CARGO_BIN_EXE_reroot");

/// The rebuild steps, in order (as the run kind `rebuild` has them).
const STEPS: [&str; 15] = [
    "preflight",
    "prepare",
    "provision",
    "stop",
    "snapshot",
    "retire",
    "swap",
    "reattach",
    "files",
    "start",
    "ready",
    "cloud-config",
    "verify",
    "final-stop",
    "final-snapshot",
];

const FLEET: usize = 150;
/// web-000..web-129 rebuilt (downtime 100 + i ms), web-130..web-141 failed at `prepare`,
/// web-142..web-143 failed at `snapshot` and reverted (every step undone, no undo asked for),
/// web-144 stopped in `stop` (the run was killed), the rest not started.
const REBUILT: usize = 130;
const FAILED: usize = 12;
const REVERTED: usize = 2;

fn name(i: usize) -> String {
    format!("web-{i:03}")
}

fn header(command: Vec<String>, instances: Vec<String>) -> RunHeader {
    RunHeader {
        id: RunHeader::new_id(),
        command,
        user: "alice".into(),
        host: "host1".into(),
        started_at_ms: journal::now_ms(),
        config_digests: vec![],
        instances,
        options: BTreeMap::from([("kind".to_string(), "rebuild".to_string())]),
    }
}

fn step(j: &Journal, run: RunId, inst: &str, step: &str, kind: EventKind) {
    j.append(run, Some(inst), Some(step), 1, kind)
        .unwrap_or_else(|e| panic!("{inst}/{step}: {e}"));
}

fn succeed(j: &Journal, run: RunId, inst: &str, steps: &[&str], downtime: usize) {
    for s in steps {
        step(j, run, inst, s, EventKind::StepStarted);
        let output = if *s == "start" {
            format!("{{\"downtime_ms\":{downtime}}}")
        } else {
            "{}".into()
        };
        step(j, run, inst, s, EventKind::StepSucceeded { output });
    }
}

/// Writes the 150-instance run (left as a killed process leaves it: running, no writer) and a
/// small succeeded run after it; returns both ids.
fn write_journal(dir: &Path) -> (RunId, RunId) {
    let j = Journal::open(dir).unwrap();
    let mut command: Vec<String> = [
        "/usr/local/bin/reroot",
        "rebuild",
        "--parallel",
        "8",
        "-P",
        "template-snapshot=v2",
    ]
    .map(String::from)
    .to_vec();
    command.extend((0..FLEET).map(|i| format!("configs/web/{}.yaml", name(i))));
    let big = j
        .create_run(header(command, (0..FLEET).map(name).collect()))
        .unwrap()
        .run;
    // Eight writers at once, as a rebuild with --parallel 8 writes: appends share flushes.
    std::thread::scope(|s| {
        for t in 0..8 {
            let j = &j;
            s.spawn(move || {
                for i in (t..FLEET).step_by(8) {
                    let inst = name(i);
                    if i < REBUILT {
                        succeed(j, big, &inst, &STEPS, 100 + i);
                    } else if i < REBUILT + FAILED {
                        succeed(j, big, &inst, &STEPS[..1], 0);
                        step(j, big, &inst, "prepare", EventKind::StepStarted);
                        let error = format!("{inst}: no space left on device");
                        step(j, big, &inst, "prepare", EventKind::StepFailed { error });
                    } else if i < REBUILT + FAILED + REVERTED {
                        succeed(j, big, &inst, &STEPS[..4], 0);
                        step(j, big, &inst, "snapshot", EventKind::StepStarted);
                        let error = "zfs: dataset is busy".to_string();
                        step(j, big, &inst, "snapshot", EventKind::StepFailed { error });
                        for s in STEPS[..5].iter().rev() {
                            step(j, big, &inst, s, EventKind::UndoStarted);
                            step(j, big, &inst, s, EventKind::UndoFinished);
                        }
                    } else if i == REBUILT + FAILED + REVERTED {
                        succeed(j, big, &inst, &STEPS[..3], 0);
                        step(j, big, &inst, "stop", EventKind::StepStarted);
                    }
                }
            });
        }
    });
    let small = j
        .create_run(header(
            ["reroot", "rebuild", "configs/template.yaml"]
                .map(String::from)
                .to_vec(),
            vec!["template".into()],
        ))
        .unwrap()
        .run;
    succeed(&j, small, "template", &STEPS, 42);
    j.append(
        small,
        None,
        None,
        0,
        EventKind::RunFinished {
            outcome: Outcome::Succeeded,
        },
    )
    .unwrap();
    j.close().unwrap();
    (big, small)
}

fn reroot(journal: &Path, args: &[&str]) -> Output {
    Command::new(REROOT)
        .arg("--journal")
        .arg(journal)
        .args(args)
        .env_remove("REROOT_JOURNAL")
        .output()
        .expect("run reroot")
}

/// The standard output of a command that must succeed.
fn ok(journal: &Path, args: &[&str]) -> String {
    let out = reroot(journal, args);
    assert!(
        out.status.success(),
        "reroot {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn json(journal: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let text = ok(journal, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?} is not JSON ({e}): {text}"))
}

/// The instances a `show` or `status` text has a heading for, in order.
fn headed(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("web-"))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

fn names_of(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .expect("a list of instances")
        .iter()
        .map(|i| i["name"].as_str().expect("a name").to_string())
        .collect()
}

const SHORT: &str = "reroot rebuild --parallel 8 -P template-snapshot=v2 \
                     configs/web/web-000.yaml configs/web/web-001.yaml … (+148 more)";
const COUNTS: &str =
    "instances  150: 130 succeeded, 12 failed, 2 reverted, 1 in progress, 5 not started\n";

#[test]
fn history_status_and_show_stay_readable_at_150_instances() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let (big, small) = write_journal(&journal);
    let big8 = &big.simple().to_string()[..8];
    // The failed, the reverted and the one cut short.
    let attention: Vec<String> = (REBUILT..=REBUILT + FAILED + REVERTED).map(name).collect();

    // history: one short line per run, newest first.
    let history = ok(&journal, &["history"]);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 3, "{history}");
    assert!(lines[0].contains("INSTANCES") && lines[0].contains("COMMAND"));
    assert!(
        lines[1].contains(&small.simple().to_string()[..8])
            && lines[1].contains("succeeded  1 ")
            && lines[1].ends_with("reroot rebuild configs/template.yaml"),
        "{history}"
    );
    assert!(
        lines[2].starts_with(big8)
            && lines[2].contains("running    150 ")
            && lines[2].ends_with(SHORT),
        "{history}"
    );
    assert!(!history.contains("web-149"), "{history}");
    let listed = json(&journal, &["history"]);
    assert_eq!(listed[1]["id"], big.to_string());
    assert_eq!(listed[1]["instance_count"], 150);
    assert_eq!(listed[1]["instances"].as_array().unwrap().len(), 150);
    assert_eq!(listed[1]["command"].as_array().unwrap().len(), 156);
    assert_eq!(listed[0]["instance_count"], 1);

    // status: the interrupted run only, its overview, and at most ten instances in detail.
    let status = ok(&journal, &["status"]);
    assert!(
        status.starts_with(&format!(
            "{big8}: interrupted: no process is running it; `reroot resume {big8}`"
        )),
        "{status}"
    );
    assert!(
        status.contains(&format!("command    {SHORT}\n")),
        "{status}"
    );
    assert!(status.contains(COUNTS), "{status}");
    assert_eq!(headed(&status), attention[..10], "{status}");
    assert!(
        status.contains(&format!(
            "… and 5 more instances failed or in progress: `reroot show {big8} --failed`"
        )),
        "{status}"
    );
    assert!(
        !status.contains("configs/template.yaml"),
        "the succeeded run: {status}"
    );
    assert!(status.lines().count() < 120, "{status}");
    let st = json(&journal, &["status"]);
    let runs = st["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["instance_count"], 150);
    assert_eq!(runs[0]["summary"]["results"]["failed"], 12);
    assert_eq!(runs[0]["run"]["instances"].as_array().unwrap().len(), 150);
    assert!(runs[0]["activity"]
        .as_str()
        .unwrap()
        .starts_with("interrupted"));

    // show: the summary, then every instance.
    let show = ok(&journal, &["show", big8]);
    assert!(show.contains(&format!("command    {SHORT}\n")), "{show}");
    assert!(show.contains(COUNTS), "{show}");
    // 130 downtimes of 100..229 ms: nearest rank 65 and 124.
    assert!(
        show.contains("downtime   p50 164 ms, p95 223 ms, max 229 ms (130 instances)\n"),
        "{show}"
    );
    assert!(show.contains("\nwall time  "), "{show}");
    assert_eq!(headed(&show), (0..FLEET).map(name).collect::<Vec<_>>());
    assert!(
        show.contains("web-007  succeeded (downtime 107 ms)\n"),
        "{show}"
    );
    assert!(show.contains("web-143  reverted\n"), "{show}");
    assert!(show.contains("web-149  not started\n"), "{show}");
    let shown = json(&journal, &["show", big8]);
    let summary = &shown["summary"];
    assert_eq!(summary["instance_count"], 150);
    let results: BTreeMap<String, u64> =
        serde_json::from_value(summary["results"].clone()).unwrap();
    let want: BTreeMap<String, u64> = [
        ("succeeded", 130),
        ("failed", 12),
        ("reverted", 2),
        ("undo_failed", 0),
        ("in_progress", 1),
        ("undone", 0),
        ("not_started", 5),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .into();
    assert_eq!(results, want);
    assert_eq!(
        summary["downtime_ms"],
        serde_json::json!({ "count": 130, "p50": 164, "p95": 223, "max": 229 })
    );
    assert!(summary["wall_time_ms"].as_i64().unwrap() >= 0);
    // The replayed run is all there, as before.
    assert_eq!(shown["status"], "Running");
    assert_eq!(shown["header"]["command"].as_array().unwrap().len(), 156);
    assert_eq!(names_of(&shown["instances"]).len(), 150);

    // show --failed: the twelve failed, the two reverted and the one cut short, nothing else.
    let text = ok(&journal, &["show", big8, "--failed"]);
    assert_eq!(headed(&text), attention, "{text}");
    assert!(
        text.contains(COUNTS),
        "the summary covers the whole run: {text}"
    );
    assert!(text.contains("showing    15 of 150 instances\n"), "{text}");
    assert!(text.contains("web-131: no space left on device"), "{text}");
    let shown = json(&journal, &["show", big8, "--failed"]);
    assert_eq!(names_of(&shown["instances"]), attention);
    assert_eq!(shown["summary"]["results"]["succeeded"], 130);

    // show --instance, repeatable, in the run's order; with --failed both must hold.
    let picked = ["web-140", "web-003", "web-149"];
    let mut args = vec!["show", big8];
    for p in picked {
        args.extend(["--instance", p]);
    }
    let text = ok(&journal, &args);
    assert_eq!(headed(&text), ["web-003", "web-140", "web-149"], "{text}");
    args.push("--failed");
    assert_eq!(headed(&ok(&journal, &args)), ["web-140"]);
    let mut json_args = vec!["show", big8];
    json_args.extend(["--instance", "web-003"]);
    assert_eq!(
        names_of(&json(&journal, &json_args)["instances"]),
        ["web-003"]
    );

    // A name the run does not have is an error naming it, not an empty list.
    let out = reroot(&journal, &["show", big8, "--instance", "web-999"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no instance \"web-999\"") && err.contains("its 150 instances"),
        "{err}"
    );
}
