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
    let history_doc = json(&journal, &["history"]);
    assert_eq!(history_doc["schema"], "reroot.history/1");
    let listed = &history_doc["runs"];
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

const SECRET_CFG: &str = "#cloud-config\nwrite_files:\n  - path: /etc/app/token\n    \
                          permissions: '0600'\n    content: tok-3f9a1c-secret\n";

/// A succeeded run of `inst` whose header carries a plan with a cloud-config file, as
/// `reroot rebuild` records it.
fn run_with_cloud_config(j: &Journal, inst: &str, started_at_ms: i64) -> RunId {
    let run = create_planned(j, &[inst], started_at_ms, "v1");
    succeed(j, run, inst, &STEPS, 50);
    let finished = EventKind::RunFinished {
        outcome: Outcome::Succeeded,
    };
    j.append(run, None, None, 0, finished).unwrap();
    run
}

/// The plan of a rebuild of `inst` from snapshot `tpl/SNAPSHOT`, as `reroot rebuild` records
/// it (with a cloud-config file).
fn plan(inst: &str, snapshot: &str) -> serde_json::Value {
    serde_json::json!({
        "name": inst, "project": "default", "ostype": null,
        "source": {"type": "snapshot", "instance": "tpl", "snapshot": snapshot},
        "profiles": ["default"], "device_profile": format!("{inst}.reroot"),
        "filesystems": [], "devices": [], "device_owner": null,
        "cloud_config": [{ "path": "/etc/reroot/app.cfg", "text": SECRET_CFG }],
        "stop_timeout_s": 10, "health": null
    })
}

/// Creates a rebuild run of `instances` from `tpl/SNAPSHOT`, its header as a real one.
fn create_planned(j: &Journal, instances: &[&str], started_at_ms: i64, snapshot: &str) -> RunId {
    let plans: Vec<serde_json::Value> = instances.iter().map(|i| plan(i, snapshot)).collect();
    let mut command = vec!["reroot".to_string(), "rebuild".into()];
    command.extend(instances.iter().map(|i| format!("{i}.yaml")));
    let mut h = header(command, instances.iter().map(|i| i.to_string()).collect());
    h.started_at_ms = started_at_ms;
    h.options
        .insert("plans".into(), serde_json::Value::from(plans).to_string());
    j.create_run(h).unwrap().run
}

fn finish(j: &Journal, run: RunId, outcome: Outcome) {
    j.append(run, None, None, 0, EventKind::RunFinished { outcome })
        .unwrap();
}

#[test]
fn log_tells_what_every_run_did_to_one_instance_while_a_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let j = Journal::open(&journal).unwrap();
    let day = 86_400_000;
    let t0 = journal::now_ms() - 10 * day;
    // 1: rebuilt onto tpl/v1.
    let r1 = create_planned(&j, &["web-1"], t0, "v1");
    succeed(&j, r1, "web-1", &STEPS, 1_250);
    finish(&j, r1, Outcome::Succeeded);
    // 2: with db-1; web-1 fails at prepare.
    let r2 = create_planned(&j, &["web-1", "db-1"], t0 + day, "v2");
    succeed(&j, r2, "db-1", &STEPS, 80);
    succeed(&j, r2, "web-1", &STEPS[..1], 0);
    step(&j, r2, "web-1", "prepare", EventKind::StepStarted);
    let error = "no space left on device".to_string();
    step(&j, r2, "web-1", "prepare", EventKind::StepFailed { error });
    finish(&j, r2, Outcome::Failed);
    // 3: db-1 only.
    let r3 = create_planned(&j, &["db-1"], t0 + 2 * day, "v2");
    succeed(&j, r3, "db-1", &STEPS, 90);
    finish(&j, r3, Outcome::Succeeded);
    // 4: web-1 fails at snapshot and is reverted.
    let r4 = create_planned(&j, &["web-1"], t0 + 3 * day, "v2");
    succeed(&j, r4, "web-1", &STEPS[..4], 0);
    step(&j, r4, "web-1", "snapshot", EventKind::StepStarted);
    let error = "zfs: dataset is busy".to_string();
    step(&j, r4, "web-1", "snapshot", EventKind::StepFailed { error });
    for s in STEPS[..5].iter().rev() {
        step(&j, r4, "web-1", s, EventKind::UndoStarted);
        step(&j, r4, "web-1", s, EventKind::UndoFinished);
    }
    finish(&j, r4, Outcome::Failed);
    // 5: rebuilt onto tpl/v2, then its old root pruned.
    let r5 = create_planned(&j, &["web-1"], t0 + 4 * day, "v2");
    succeed(&j, r5, "web-1", &STEPS, 2_500);
    finish(&j, r5, Outcome::Succeeded);
    let what = "deleted retired root web-1-old-0f8c1e5a".to_string();
    j.append(r5, Some("web-1"), None, 0, EventKind::Pruned { what })
        .unwrap();
    // 6: under way (this process holds the journal while `log` reads it).
    let r6 = create_planned(&j, &["web-1"], journal::now_ms(), "v3");
    succeed(&j, r6, "web-1", &STEPS[..3], 0);
    step(&j, r6, "web-1", "stop", EventKind::StepStarted);

    let short = |r: RunId| r.simple().to_string()[..8].to_string();
    let heads = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.len() > 10 && l[..8].bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|l| l[..8].to_string())
            .collect()
    };
    let text = ok(&journal, &["log", "web-1"]);
    let mine = [r1, r2, r4, r5, r6].map(short);
    assert_eq!(
        heads(&text),
        mine,
        "oldest first, db-1's run left out: {text}"
    );
    assert!(text.starts_with("web-1: 5 runs, started "), "{text}");
    let block = |r: RunId| -> String {
        let from = text.find(&format!("\n{}  ", short(r))).unwrap() + 1;
        let rest = &text[from..];
        let end = rest[1..].find("\n\n").map_or(rest.len(), |e| e + 1);
        rest[..end].to_string()
    };
    let b1 = block(r1);
    assert!(
        b1.lines()
            .next()
            .unwrap()
            .ends_with("rebuild  succeeded, downtime 1.250 s, now on tpl/v1"),
        "{b1}"
    );
    assert!(
        b1.contains("  by alice@host1: reroot rebuild web-1.yaml\n"),
        "{b1}"
    );
    assert_eq!(
        b1.lines().filter(|l| l.contains("  ok  ")).count(),
        STEPS.len(),
        "{b1}"
    );
    let b2 = block(r2);
    assert!(
        b2.lines()
            .next()
            .unwrap()
            .ends_with("rebuild  failed (run failed)"),
        "{b2}"
    );
    assert!(b2.contains("no space left on device"), "{b2}");
    assert!(
        !b2.contains("db-1.yaml") || b2.contains("web-1.yaml db-1.yaml"),
        "{b2}"
    );
    let b4 = block(r4);
    assert!(
        b4.lines()
            .next()
            .unwrap()
            .ends_with("rebuild  reverted (run failed)"),
        "{b4}"
    );
    assert!(
        b4.contains("  step snapshot failed (try 1, ") && b4.contains("): zfs: dataset is busy"),
        "the failure the undo followed: {b4}"
    );
    let b5 = block(r5);
    assert!(b5.contains("downtime 2.500 s, now on tpl/v2"), "{b5}");
    assert!(
        b5.contains("  pruned: deleted retired root web-1-old-0f8c1e5a"),
        "{b5}"
    );
    let b6 = block(r6);
    assert!(
        b6.lines()
            .next()
            .unwrap()
            .ends_with("in progress (run running)"),
        "{b6}"
    );
    assert!(!b6.contains("now on"), "{b6}");

    let newest = ok(&journal, &["log", "web-1", "--newest-first"]);
    let mut reversed = mine.to_vec();
    reversed.reverse();
    assert_eq!(heads(&newest), reversed);
    assert_eq!(
        heads(&ok(
            &journal,
            &["log", "web-1", "--since", "8d", "--until", "1d"]
        )),
        [short(r4), short(r5)]
    );
    assert_eq!(
        heads(&ok(&journal, &["log", "db-1"])),
        [short(r2), short(r3)]
    );
    let none = ok(&journal, &["log", "web-9"]);
    assert!(
        none.starts_with("no run in ") && none.contains("web-9"),
        "{none}"
    );

    let doc = json(&journal, &["log", "web-1"]);
    assert_eq!(doc["schema"], "reroot.log/1");
    assert_eq!(doc["instance"], "web-1");
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 5);
    let results: Vec<&str> = runs.iter().map(|r| r["result"].as_str().unwrap()).collect();
    assert_eq!(
        results,
        [
            "succeeded",
            "failed",
            "reverted",
            "succeeded",
            "in_progress"
        ]
    );
    let templates: Vec<&serde_json::Value> = runs.iter().map(|r| &r["template"]).collect();
    assert_eq!(
        templates,
        [
            &"tpl/v1".into(),
            &serde_json::Value::Null,
            &serde_json::Value::Null,
            &"tpl/v2".into(),
            &serde_json::Value::Null
        ]
    );
    assert_eq!(runs[0]["downtime_ms"], 1_250);
    assert_eq!(runs[0]["kind"], "rebuild");
    assert_eq!(runs[0]["user"], "alice");
    assert!(is_rfc3339_ms(&runs[0]["started_at"]));
    assert_eq!(runs[0]["steps"].as_array().unwrap().len(), STEPS.len());
    assert!(runs[0]["steps"][0]["output"].is_object());
    assert_eq!(runs[1]["steps"][1]["error"], "no space left on device");
    assert_eq!(runs[1]["failures"][0]["step"], "prepare");
    assert_eq!(runs[2]["failures"][0]["error"], "zfs: dataset is busy");
    assert_eq!(runs[2]["failures"][0]["undo"], false);
    assert!(is_rfc3339_ms(&runs[2]["failures"][0]["at"]));
    assert_eq!(runs[0]["failures"], serde_json::json!([]));
    assert_eq!(
        runs[3]["pruned"],
        serde_json::json!(["deleted retired root web-1-old-0f8c1e5a"])
    );
    assert_eq!(runs[4]["status"], "Running");
    j.close().unwrap();
}

#[test]
fn journal_export_leaves_out_file_contents_unless_asked_and_picks_runs() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let j = Journal::open(&journal).unwrap();
    let day = 86_400_000;
    let now = journal::now_ms();
    let old = run_with_cloud_config(&j, "db-1", now - 10 * day);
    let new = run_with_cloud_config(&j, "web-1", now - day);
    j.close().unwrap();

    // By default: every run, the file's path, length and digest, not its text.
    let text = ok(&journal, &["journal", "export"]);
    let lines: Vec<&str> = text.lines().collect();
    let head: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(head["scope"], "redacted");
    assert_eq!(lines.len(), 1 + 2 * (1 + 2 * STEPS.len() + 1), "{text}");
    assert!(!text.contains("tok-3f9a1c"), "{text}");
    assert!(!text.contains("write_files"), "{text}");
    let created: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    let plans: serde_json::Value = serde_json::from_str(
        created["kind"]["RunCreated"]["options"]["plans"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let file = &plans[0]["cloud_config"][0];
    assert_eq!(file["path"], "/etc/reroot/app.cfg");
    assert_eq!(file["text"], serde_json::Value::Null);
    assert_eq!(file["text_left_out"]["bytes"], SECRET_CFG.len());
    assert_eq!(file["text_left_out"]["sha256"].as_str().unwrap().len(), 64);

    // Such an extract is not a journal record: import refuses it and stores nothing.
    let extract = dir.path().join("extract.ndjson");
    std::fs::write(&extract, &text).unwrap();
    let other = dir.path().join("other");
    let out = reroot(&other, &["journal", "import", extract.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("redacted export"), "{err}");
    assert_eq!(ok(&other, &["history"]).lines().count(), 1);

    // --with-content: the full record, in a file only its owner can read, which imports.
    let full = dir.path().join("full.ndjson");
    ok(
        &journal,
        &[
            "journal",
            "export",
            "--with-content",
            "-o",
            full.to_str().unwrap(),
        ],
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&full).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let full_text = std::fs::read_to_string(&full).unwrap();
    assert_eq!(full_text.matches("tok-3f9a1c-secret").count(), 2);
    let imported = ok(&other, &["journal", "import", full.to_str().unwrap()]);
    let events = 2 * (2 + 2 * STEPS.len());
    assert!(
        imported.starts_with(&format!("imported {events} events")),
        "{imported}"
    );

    // --instance and --since pick whole runs.
    let only = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["journal", "export"];
        all.extend_from_slice(args);
        let text = ok(&journal, &all);
        let mut runs: Vec<String> = text
            .lines()
            .skip(1)
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["run"].to_string())
            .collect();
        runs.dedup();
        runs
    };
    let id = |r: RunId| format!("\"{r}\"");
    assert_eq!(only(&["--instance", "db-1"]), [id(old)]);
    assert_eq!(only(&["--since", "3d"]), [id(new)]);
    assert_eq!(only(&["--until", "3d"]), [id(old)]);
    assert_eq!(
        only(&["--since", "3d", "--instance", "db-1"]),
        Vec::<String>::new()
    );
    assert_eq!(only(&[]), [id(old), id(new)]);
    let out = reroot(
        &journal,
        &["journal", "export", "--run", "x", "--since", "1d"],
    );
    assert!(!out.status.success());
}

/// A time in RFC 3339 UTC with milliseconds, as every `*_at` field gives it.
fn is_rfc3339_ms(v: &serde_json::Value) -> bool {
    let t = v.as_str().unwrap_or_default();
    t.len() == 24 && t.ends_with('Z') && &t[10..11] == "T" && &t[19..20] == "."
}

#[test]
fn json_documents_are_versioned_with_objects_and_times_in_both_forms() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let j = Journal::open(&journal).unwrap();
    let run = run_with_cloud_config(&j, "web-1", 1_795_315_922_250);
    j.close().unwrap();

    let history = json(&journal, &["history"]);
    assert_eq!(history["schema"], "reroot.history/1");
    let listed = &history["runs"][0];
    assert_eq!(listed["id"], run.to_string());
    assert_eq!(listed["status"], "Succeeded");
    assert_eq!(listed["started_at_ms"], 1_795_315_922_250i64);
    assert_eq!(listed["started_at"], "2026-11-22T02:52:02.250Z");
    assert!(is_rfc3339_ms(&listed["last_at"]), "{listed}");

    let shown = json(&journal, &["show", &run.to_string()]);
    assert_eq!(shown["schema"], "reroot.show/1");
    assert_eq!(shown["id"], run.to_string());
    assert_eq!(shown["header"]["started_at"], "2026-11-22T02:52:02.250Z");
    // The plans are JSON, not JSON text in a string; so is every step's output.
    let plans = &shown["header"]["options"]["plans"];
    assert_eq!(plans[0]["name"], "web-1");
    assert_eq!(plans[0]["cloud_config"][0]["path"], "/etc/reroot/app.cfg");
    assert_eq!(shown["header"]["options"]["kind"], "rebuild");
    let inst = &shown["instances"][0];
    assert_eq!(inst["result"], "succeeded");
    assert_eq!(inst["downtime_ms"], 50);
    let steps = inst["steps"].as_array().unwrap();
    assert_eq!(steps.len(), STEPS.len());
    for s in steps {
        assert!(s["output"].is_object(), "{s}");
        assert!(is_rfc3339_ms(&s["started_at"]), "{s}");
        assert!(is_rfc3339_ms(&s["ended_at"]), "{s}");
        let d = s["ended_at_ms"].as_i64().unwrap() - s["started_at_ms"].as_i64().unwrap();
        assert_eq!(s["duration_ms"], d);
    }
    let start = steps.iter().find(|s| s["name"] == "start").unwrap();
    assert_eq!(start["output"]["downtime_ms"], 50);
    assert_eq!(shown["summary"]["instance_count"], 1);

    let status = json(&journal, &["status"]);
    assert_eq!(status["schema"], "reroot.status/1");
    assert_eq!(status["runs"], serde_json::json!([]));
    let none = json(&dir.path().join("none"), &["status"]);
    assert_eq!(none["schema"], "reroot.status/1");

    let verified = json(&journal, &["journal", "verify"]);
    assert_eq!(verified["schema"], "reroot.verify/1");
    assert_eq!(verified["sound"], true);
    assert_eq!(verified["runs"], 1);
    assert_eq!(verified["events"], 2 + 2 * STEPS.len());
    assert_eq!(verified["first_at"], "2026-11-22T02:52:02.250Z");
    assert!(is_rfc3339_ms(&verified["last_at"]), "{verified}");
    let text = ok(&journal, &["journal", "verify"]);
    assert!(
        text.contains(&format!(
            "is sound: 1 run, {} events from 2026-11-22 02:52:02Z to ",
            2 + 2 * STEPS.len()
        )) && text.contains("checked checksums, hash chains, sequence numbers"),
        "{text}"
    );
}

#[test]
fn show_svg_draws_one_row_per_instance_with_downtime_failures_and_undo() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let (big, _) = write_journal(&journal);
    let big8 = big.simple().to_string()[..8].to_string();
    let svg = dir.path().join("run.svg");
    let html = dir.path().join("run.html");
    let out = reroot(
        &journal,
        &[
            "show",
            &big8,
            "--svg",
            svg.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let with_class = |class: &str| -> Vec<roxmltree::Node> {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some(class))
            .collect()
    };
    // One row per instance: those that started first, by start; the 5 never started last.
    let rows = with_class("row");
    assert_eq!(rows.len(), FLEET);
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r.attribute("data-instance").unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        (0..FLEET)
            .map(name)
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    for n in &names[FLEET - 5..] {
        assert!(
            n.as_bytes()[4] == b'1' && n[4..].parse::<usize>().unwrap() >= 145,
            "{names:?}"
        );
    }
    let result_of = |inst: &str| {
        rows.iter()
            .find(|r| r.attribute("data-instance") == Some(inst))
            .unwrap()
    };
    assert_eq!(
        result_of("web-007").attribute("data-result"),
        Some("succeeded")
    );
    assert_eq!(
        result_of("web-143").attribute("data-result"),
        Some("reverted")
    );
    // The downtime: every rebuilt instance, the reverted ones (down from stop to the undo of
    // stop) and the one cut short in stop (still down).
    let down = with_class("downtime");
    assert_eq!(down.len(), REBUILT + REVERTED + 1);
    let row_of = |n: &roxmltree::Node| {
        n.ancestors()
            .find(|a| a.attribute("class") == Some("row"))
            .unwrap()
            .attribute("data-instance")
            .unwrap()
            .to_string()
    };
    assert!(down.iter().any(|d| row_of(d) == "web-144"));
    // Each rebuilt instance: 12 step bars; failures marked; undo bars for the reverted.
    let steps_in = |inst: &str, class: &str| {
        result_of(inst)
            .descendants()
            .filter(|n| n.attribute("class") == Some(class))
            .count()
    };
    assert_eq!(steps_in("web-007", "step"), STEPS.len());
    assert_eq!(steps_in("web-131", "failure"), 1);
    assert_eq!(steps_in("web-143", "undo"), 5);
    assert_eq!(with_class("failure").len(), FAILED + REVERTED);
    let tooltip = result_of("web-131")
        .descendants()
        .filter(|n| n.tag_name().name() == "title")
        .filter_map(|n| n.text())
        .find(|t| t.contains("failed:"))
        .unwrap();
    assert!(
        tooltip.contains("prepare try 1: failed: web-131: no space left on device"),
        "{tooltip}"
    );
    // The legend and the summary.
    let legend: String = with_class("legend")[0]
        .descendants()
        .filter_map(|n| n.text())
        .collect();
    for w in ["preflight", "verify", "failed", "undo", "downtime", "retry"] {
        assert!(legend.contains(w), "{w}: {legend}");
    }
    let summary: String = with_class("summary")[0]
        .descendants()
        .filter_map(|n| n.text())
        .collect();
    assert!(
        summary.contains("instances 150: 130 succeeded, 12 failed, 2 reverted"),
        "{summary}"
    );
    assert!(summary.contains("downtime p50 164 ms"), "{summary}");
    // Compact: 12 px a row, under a heading of a fixed height (summary, legend, axis).
    let backgrounds: Vec<f64> = with_class("bg")
        .iter()
        .map(|r| r.attribute("height").unwrap().parse().unwrap())
        .collect();
    assert_eq!(backgrounds, vec![12.0; FLEET]);
    let height: f64 = root.attribute("height").unwrap().parse().unwrap();
    assert!(height < 220.0 + 12.0 * FLEET as f64, "{height}");

    // The picture is of the whole run: not with the filters of the text.
    let out = reroot(
        &journal,
        &["show", &big8, "--svg", svg.to_str().unwrap(), "--failed"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--failed"));

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("<svg xmlns"));
    assert_eq!(page.matches("class=\"row\"").count(), FLEET);
}
