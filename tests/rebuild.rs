//! What a user of `reroot rebuild` relies on, shown on the real LXD daemon, ZFS (zfs-fuse) and
//! btrfs: data kept byte-identical across a rebuild, the new template in place, the downtime
//! recorded; `--dry-run` and bad configs change nothing; `undo` restores the old root and leaves
//! the data unless `--data` asks to roll it back; an instance of a failed run is refused by a new
//! run until that one is undone.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use reroot::lxd::{Client, ExecRequest, NewInstance};
use sha2::{Digest, Sha256};

const REROOT: &str = env!("CARGO_BIN_EXE_reroot");

/// A template pair, a journal and a config directory, all named after one unique prefix, and
/// removed (with every instance, profile, dataset and subvolume of that prefix) when dropped.
struct Bed {
    prefix: String,
    dir: tempfile::TempDir,
    lxd: Client,
}

impl Bed {
    async fn new() -> Bed {
        common::require_zfs();
        common::require_btrfs();
        let lxd = common::lxd_client().await;
        let prefix = common::unique_name("rb");
        let bed = Bed {
            prefix,
            dir: tempfile::tempdir().expect("tempdir"),
            lxd,
        };
        for (which, image) in [("old", "reroot-old"), ("new", "reroot-new")] {
            let name = bed.template(which);
            bed.lxd
                .create_instance(&NewInstance::from_image_alias(&name, image))
                .await
                .expect("create template");
            bed.lxd
                .create_snapshot(&name, "base", None)
                .await
                .expect("snapshot template");
        }
        bed
    }

    fn template(&self, which: &str) -> String {
        format!("{}-tpl-{which}", self.prefix)
    }

    fn instance(&self) -> String {
        format!("{}-web", self.prefix)
    }

    fn journal(&self) -> PathBuf {
        self.dir.path().join("journal")
    }

    /// Writes the instance's config file (always the same path, since the instance is named
    /// after it); `extra` is appended (e.g. a health check).
    fn config(&self, extra: &str) -> PathBuf {
        self.config_with(extra, false)
    }

    /// [`Bed::config`], with the btrfs filesystem marked `destroy: true` when `destroy_logs`.
    fn config_with(&self, extra: &str, destroy_logs: bool) -> PathBuf {
        let path = self.dir.path().join(format!("{}.yaml", self.instance()));
        let text = format!(
            "#lxdops\n\
             ostype: busybox\n\
             origin: (tpl)/base\n\
             profiles: [default]\n\
             device-owner: 100000:100000\n\
             stop-timeout: 0\n\
             filesystems:\n  \
               data:\n    pattern: rerootz/{p}/(instance)\n  \
               logs:\n    kind: btrfs\n    pattern: /srv/reroot-btrfs/{p}-(instance)\n    destroy: {destroy_logs}\n\
             devices:\n  \
               www:\n    path: /var/www\n    filesystem: data\n  \
               log:\n    path: /var/log/app\n    filesystem: logs\n    dir: .\n\
             {extra}",
            p = self.prefix
        );
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn reroot(&self, args: &[&str]) -> Output {
        self.reroot_faulty(None, args)
    }

    /// `reroot ARGS...`, made to die at `fault` (`STEP:MOMENT`) when given.
    fn reroot_faulty(&self, fault: Option<&str>, args: &[&str]) -> Output {
        common::reroot_in(&self.journal(), fault, args)
    }

    fn rebuild(&self, tpl: &str, config: &Path) -> Output {
        let tpl = format!("tpl={}", self.template(tpl));
        self.reroot(&["rebuild", "-P", &tpl, config.to_str().unwrap()])
    }

    /// The id of the newest run.
    fn last_run(&self) -> String {
        let out = self.reroot(&["history", "--json", "--limit", "1"]);
        assert!(out.status.success());
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history json");
        doc["runs"][0]["id"].as_str().expect("a run id").to_string()
    }

    /// `history` finds `run` (just finished, on this bed's instance) by age, date, instance
    /// and status, and leaves it out of windows that do not hold it; a bad time is an error
    /// naming the flag.
    fn check_history_filters(&self, run: &str) {
        let ids = |args: &[&str]| -> Vec<String> {
            let mut all = vec!["history", "--json"];
            all.extend_from_slice(args);
            let out = self.reroot(&all);
            assert!(out.status.success(), "history {args:?} failed");
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            doc["runs"]
                .as_array()
                .expect("a list")
                .iter()
                .map(|r| r["id"].as_str().expect("id").to_string())
                .collect()
        };
        let instance = self.instance();
        assert!(ids(&["--since", "1h"]).contains(&run.to_string()));
        assert!(ids(&["--since", "2000-01-01", "--instance", &instance]).contains(&run.to_string()));
        assert!(ids(&["--since", "1h", "--status", "succeeded"]).contains(&run.to_string()));
        assert!(!ids(&["--status", "failed"]).contains(&run.to_string()));
        assert!(ids(&["--until", "2000-01-01 00:00"]).is_empty());
        assert!(!ids(&["--until", "1h"]).contains(&run.to_string()));
        let bad = self.reroot(&["history", "--since", "last tuesday"]);
        assert!(!bad.status.success());
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(
            err.contains("--since") && err.contains("last tuesday"),
            "{err}"
        );
    }

    fn run_count(&self) -> usize {
        if !self.journal().exists() {
            return 0;
        }
        let out = self.reroot(&["history", "--json"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history json");
        doc["runs"].as_array().map_or(0, Vec::len)
    }

    async fn sh(&self, script: &str) -> String {
        let out = self
            .lxd
            .exec(&self.instance(), &ExecRequest::shell(script))
            .await
            .expect("exec");
        assert_eq!(out.exit_code, 0, "`{script}`: {}", out.stderr_text());
        out.stdout_text()
    }

    async fn template_version(&self) -> String {
        self.sh("cat /etc/template-version")
            .await
            .trim()
            .to_string()
    }

    /// sha256 of the instance's data files, read on the host.
    fn data_digest(&self, files: &[&str]) -> String {
        let mut h = Sha256::new();
        for f in files {
            let path = match f.strip_prefix("www/") {
                Some(rest) => format!("/rerootz/{}/{}/www/{rest}", self.prefix, self.instance()),
                None => format!("/srv/reroot-btrfs/{}-{}/{f}", self.prefix, self.instance()),
            };
            h.update(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")));
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The snapshots of the instance's two filesystems, as `zfs:NAME` and `btrfs:NAME`.
    fn fs_snapshots(&self) -> Vec<String> {
        let dataset = format!("rerootz/{}/{}", self.prefix, self.instance());
        let out = Command::new("zfs")
            .args(["list", "-H", "-t", "snapshot", "-o", "name", "-r", &dataset])
            .output()
            .expect("zfs list");
        assert!(out.status.success(), "zfs list: {}", stderr(&out));
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{dataset}@")))
            .map(|n| format!("zfs:{n}"))
            .collect();
        let subvolume = format!("{}-{}@", self.prefix, self.instance());
        for entry in std::fs::read_dir("/srv/reroot-btrfs").expect("btrfs mount") {
            let file = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .to_string();
            if let Some(n) = file.strip_prefix(&subvolume) {
                names.push(format!("btrfs:{n}"));
            }
        }
        names.sort();
        names
    }

    /// The names of the instance's root snapshots and of its filesystem snapshots (as in
    /// [`Bed::fs_snapshots`]) that are called `name`.
    async fn snapshots_named(&self, name: &str) -> Vec<String> {
        let mut found: Vec<String> = self
            .lxd
            .list_snapshots(&self.instance())
            .await
            .expect("list snapshots")
            .into_iter()
            .filter(|s| s.name == name)
            .map(|s| format!("root:{}", s.name))
            .collect();
        found.extend(
            self.fs_snapshots()
                .into_iter()
                .filter(|n| n.split_once(':').map(|(_, n)| n) == Some(name)),
        );
        found.sort();
        found
    }

    /// Names of the instances of this bed, other than the templates.
    async fn instances(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .lxd
            .list_instance_names()
            .await
            .expect("list")
            .into_iter()
            .filter(|n| n.starts_with(&self.prefix) && !n.contains("-tpl-"))
            .collect();
        names.sort();
        names
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        common::remove_everything_named(&self.prefix);
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_keeps_data_switches_template_and_undo_restores() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let config = bed.config("");

    // Launch: the instance does not exist yet.
    assert!(bed.rebuild("old", &config).status.success());
    assert_eq!(bed.template_version().await, "old");
    bed.sh(
        "echo orders > /var/www/orders.txt; head -c 100000 /dev/urandom > /var/www/blob; \
            echo line > /var/log/app/app.log; touch /root/only-in-old-root",
    )
    .await;
    let files = ["www/orders.txt", "www/blob", "app.log"];
    let before = bed.data_digest(&files);

    // --dry-run changes nothing and records no run.
    let runs = bed.run_count();
    let tpl_new = format!("tpl={}", bed.template("new"));
    let dry = bed.reroot(&[
        "rebuild",
        "--dry-run",
        "-P",
        &tpl_new,
        config.to_str().unwrap(),
    ]);
    assert!(dry.status.success());
    let plan = stdout(&dry);
    assert!(plan.contains("preflight"), "{plan}");
    let line = plan
        .lines()
        .find(|l| l.starts_with(&bed.instance()))
        .unwrap_or_else(|| panic!("no line for the instance:\n{plan}"));
    let from_to = format!(
        "{}/base → {}/base",
        bed.template("old"),
        bed.template("new")
    );
    assert!(
        line.contains(" rebuild ") && line.contains(&from_to),
        "{line}"
    );
    assert_eq!(bed.run_count(), runs);
    assert_eq!(bed.template_version().await, "old");
    // A missing template snapshot is found by the dry run, which exits non-zero.
    let missing = bed.reroot(&[
        "rebuild",
        "--dry-run",
        "-P",
        &format!("tpl={}-nosuch", bed.prefix),
        config.to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
    assert!(stdout(&missing).contains("REFUSED"), "{}", stdout(&missing));
    assert_eq!(bed.run_count(), runs);

    // The rebuild proper.
    assert!(bed.rebuild("new", &config).status.success());
    let run = bed.last_run();
    // Run again: already built from that very snapshot by a run that succeeded, so skipped,
    // and no run is recorded; the dry run says so; --force rebuilds it all the same (below,
    // after undo, the instance is rebuilt again normally).
    let runs = bed.run_count();
    let again = bed.rebuild("new", &config);
    assert!(again.status.success());
    assert!(
        stderr(&again).contains("skipped 1 instance"),
        "{}",
        stderr(&again)
    );
    assert_eq!(bed.run_count(), runs);
    assert_eq!(bed.last_run(), run);
    let dry = bed.reroot(&[
        "rebuild",
        "--dry-run",
        "-P",
        &tpl_new,
        config.to_str().unwrap(),
    ]);
    assert!(dry.status.success());
    assert!(stdout(&dry).contains(" skip "), "{}", stdout(&dry));
    bed.check_history_filters(&run);
    assert_eq!(bed.template_version().await, "new");
    assert_eq!(
        bed.data_digest(&files),
        before,
        "data changed by the rebuild"
    );
    assert_eq!(
        bed.sh("cat /var/www/orders.txt /var/log/app/app.log").await,
        "orders\nline\n",
        "data not visible inside the new root"
    );
    assert_eq!(
        bed.sh("test -e /root/only-in-old-root && echo old || echo fresh")
            .await
            .trim(),
        "fresh"
    );
    let web = bed.instance();
    assert_eq!(
        bed.instances().await,
        vec![web.clone(), format!("{web}-old-{}", &run[..8])],
        "the old root is kept, retired, until prune"
    );
    let show = bed.reroot(&["show", &run, "--json"]);
    let state: serde_json::Value = serde_json::from_slice(&show.stdout).expect("show json");
    let start = state["instances"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "start")
        .expect("a start step")
        .clone();
    // The step's output is an object, its times in ms and RFC 3339.
    let output = &start["output"];
    assert!(
        start["started_at"].as_str().unwrap().ends_with('Z'),
        "{start}"
    );
    assert_eq!(state["schema"], "reroot.show/1");
    let downtime = output["downtime_ms"].as_i64().expect("downtime recorded");
    assert!(downtime > 0 && downtime < 120_000, "downtime {downtime} ms");
    assert!(bed.reroot(&["journal", "verify"]).status.success());

    // Data written after the rebuild survives a plain undo; the old root comes back.
    bed.sh("echo after > /var/www/after.txt").await;
    assert!(bed.reroot(&["undo", &run]).status.success());
    assert_eq!(bed.template_version().await, "old");
    assert_eq!(
        bed.sh("cat /var/www/after.txt; test -e /root/only-in-old-root && echo old-root")
            .await,
        "after\nold-root\n"
    );
    assert_eq!(bed.instances().await, vec![web.clone()]);

    // `undo --data` also rolls the filesystems back to the run's snapshot.
    assert!(bed.rebuild("new", &config).status.success());
    let run2 = bed.last_run();
    bed.sh("echo later > /var/www/later.txt; echo more >> /var/log/app/app.log")
        .await;
    assert!(bed.reroot(&["undo", &run2, "--data"]).status.success());
    assert_eq!(bed.template_version().await, "old");
    assert_eq!(
        bed.sh(
            "test -e /var/www/later.txt && echo kept || echo rolled-back; cat /var/log/app/app.log"
        )
        .await,
        "rolled-back\nline\n"
    );
    assert_eq!(bed.instances().await, vec![web.clone()]);
    assert!(bed.reroot(&["journal", "verify"]).status.success());

    // `prune --snapshots` deletes a run's filesystem snapshots and nothing else.
    let snap = |run: &str| format!("reroot-{}", &run[..8]);
    let both = |run: &str| vec![format!("btrfs:{}", snap(run)), format!("zfs:{}", snap(run))];
    // btrfs kept the state from before `undo --data` as its own snapshot: not the run's.
    let kept = bed.fs_snapshots();
    let kept: Vec<&String> = kept
        .iter()
        .filter(|n| n.starts_with("btrfs:pre-rollback-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let kept = kept[0].clone();
    let with_kept = |mut names: Vec<String>| {
        names.push(kept.clone());
        names.sort();
        names
    };
    let mut all = both(&run);
    all.extend(both(&run2));
    let all = with_kept(all);
    assert_eq!(
        bed.fs_snapshots(),
        all,
        "one snapshot per run and filesystem"
    );
    let refused = bed.reroot(&["prune", &run2]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--snapshots"),
        "{}",
        stderr(&refused)
    );
    let dry = bed.reroot(&["prune", &run2, "--snapshots", "--dry-run"]);
    assert!(dry.status.success());
    assert!(stdout(&dry).contains("would delete snapshot"));
    assert_eq!(bed.fs_snapshots(), all, "a dry run deletes nothing");
    let data = bed.data_digest(&files);
    assert!(bed
        .reroot(&["prune", &run2, "--snapshots"])
        .status
        .success());
    assert_eq!(
        bed.fs_snapshots(),
        with_kept(both(&run)),
        "only the undone run's snapshots go"
    );
    assert_eq!(
        bed.data_digest(&files),
        data,
        "pruning snapshots changed data"
    );

    let shown = bed.reroot(&["show", &run2]);
    let notes = stdout(&shown);
    assert_eq!(
        notes.matches("deleted snapshot").count(),
        2,
        "the journal records each deletion: {notes}"
    );

    // On a succeeded run it deletes the retired root too; doing it again is fine.
    assert!(bed.rebuild("new", &config).status.success());
    let run3 = bed.last_run();
    assert!(bed
        .reroot(&["prune", &run3, "--snapshots"])
        .status
        .success());
    assert_eq!(bed.instances().await, vec![web.clone()]);
    assert_eq!(bed.fs_snapshots(), with_kept(both(&run)));
    assert_eq!(bed.data_digest(&files), data);
    assert_eq!(bed.template_version().await, "new");
    let again = bed.reroot(&["prune", &run3, "--snapshots"]);
    assert!(again.status.success());
    assert!(stdout(&again).contains("no snapshot"));
    let undo = bed.reroot(&["undo", &run3]);
    assert!(!undo.status.success(), "a pruned run cannot be undone");
    assert!(bed.reroot(&["journal", "verify"]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_holds_its_instance_until_undone_and_bad_configs_change_nothing() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;

    // A config with a misspelt key: a clear error naming file and key, and nothing done.
    let bad = bed.config("filesytems: {}\n");
    let out = bed.rebuild("old", &bad);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("{}.yaml", bed.instance())), "{err}");
    assert!(
        err.contains("filesytems") && err.contains("filesystems"),
        "{err}"
    );
    assert_eq!(bed.run_count(), 0, "a bad config must not start a run");
    assert!(bed.instances().await.is_empty());

    // Launch, then a rebuild whose health check never passes: it fails at `verify`.
    let good = bed.config("");
    assert!(bed.rebuild("old", &good).status.success());
    let failing = bed.config("health-check:\n  command: [sh, -c, 'exit 3']\n  timeout: 2\n");
    let out = bed.rebuild("new", &failing);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("FAILED at verify"));
    let failed_run = bed.last_run();

    // The instance is held by that run: a new rebuild is refused and changes nothing.
    let runs = bed.run_count();
    let out = bed.rebuild("new", &good);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&failed_run[..8]), "{}", stderr(&out));
    assert_eq!(bed.run_count(), runs);

    // Undo of the failed run brings the old root back; then the instance is free again.
    assert!(bed.reroot(&["undo", &failed_run]).status.success());
    assert_eq!(bed.template_version().await, "old");
    assert_eq!(bed.instances().await, vec![bed.instance()]);
    // (The instance has one config file: write the healthy one back.)
    let good = bed.config("");
    assert!(bed.rebuild("new", &good).status.success());
    assert_eq!(bed.template_version().await, "new");

    // `status` in a second terminal while a run is writing: the run, in progress, by its pid.
    let slow = bed.config("health-check:\n  command: [sh, -c, 'sleep 6']\n  timeout: 30\n");
    let tpl = format!("tpl={}", bed.template("old"));
    let mut writer = common::reroot_command()
        .args(["--journal", bed.journal().to_str().unwrap()])
        .args(["rebuild", "-P", &tpl, slow.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let wanted = format!("in progress (process {})", writer.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let seen = loop {
        let out = bed.reroot(&["status"]);
        assert!(out.status.success(), "status while a run writes");
        let text = stdout(&out);
        if text.contains(&wanted) {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status never showed the run in progress: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    assert!(seen.contains("preflight"), "{seen}");
    assert!(writer.wait().unwrap().success());
    let done = stdout(&bed.reroot(&["status"]));
    assert!(done.starts_with("no run in progress"), "{done}");
    assert_eq!(bed.template_version().await, "old");
}

/// `reroot snapshot` is a journaled run: it takes the root and filesystem snapshots that are
/// missing and leaves those that exist; killed half-way it is resumed, or undone; its undo
/// deletes only the snapshots it took, never one it found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_runs_are_journaled_resumable_and_undo_only_what_they_took() {
    if !cfg!(feature = "fault-injection") {
        panic!("run the tests with --features fault-injection (scripts/test.sh does)");
    }
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let config = bed.config("");
    let cfg = config.to_str().unwrap();
    let tpl = format!("tpl={}", bed.template("old"));
    assert!(bed.rebuild("old", &config).status.success(), "launch");
    let web = bed.instance();
    let all = |name: &str| {
        vec![
            format!("btrfs:{name}"),
            format!("root:{name}"),
            format!("zfs:{name}"),
        ]
    };

    // A root snapshot that exists before the run is left alone, by the run and by its undo.
    bed.lxd.create_snapshot(&web, "s1", None).await.unwrap();
    let first = bed.reroot(&["snapshot", "-P", &tpl, "-s", "s1", cfg]);
    assert!(first.status.success());
    assert!(stdout(&first).contains("snapshotted"));
    let run1 = bed.last_run();
    assert_eq!(bed.snapshots_named("s1").await, all("s1"));
    let shown = stdout(&bed.reroot(&["show", &run1]));
    for step in ["survey", "snapshot-root", "snapshot-fs"] {
        assert!(shown.contains(step), "{step} in {shown}");
    }
    // Again: nothing new to take, and so nothing for its undo to delete.
    assert!(bed
        .reroot(&["snapshot", "-P", &tpl, "-s", "s1", cfg])
        .status
        .success());
    let run2 = bed.last_run();
    assert_ne!(run1, run2);
    let data = bed.reroot(&["undo", &run2, "--data"]);
    assert!(!data.status.success());
    assert!(stderr(&data).contains("--data"), "{}", stderr(&data));
    assert!(bed.reroot(&["undo", &run2]).status.success());
    assert_eq!(bed.snapshots_named("s1").await, all("s1"));
    // The run names the daemon it was made on, and an undo through the other daemon of the
    // testbed (LXD for an Incus run, Incus for an LXD one) is refused, changing nothing.
    let shown = stdout(&bed.reroot(&["show", &run1]));
    assert!(
        shown.contains("daemon") && shown.contains("unix://"),
        "{shown}"
    );
    let other = match common::daemon() {
        common::Daemon::Lxd => "/var/lib/incus/unix.socket",
        common::Daemon::Incus => "/var/lib/lxd/unix.socket",
    };
    let elsewhere = bed.reroot(&["--socket", other, "undo", &run1]);
    assert!(!elsewhere.status.success());
    let said = stderr(&elsewhere);
    assert!(
        said.contains("was made on the daemon") && said.contains("nothing was done"),
        "{said}"
    );
    assert_eq!(bed.snapshots_named("s1").await, all("s1"));
    let shown = stdout(&bed.reroot(&["show", &run1]));
    assert!(!shown.contains("undo requested"), "{shown}");
    // The first run's undo deletes the filesystem snapshots it took, not the root's.
    assert!(bed.reroot(&["undo", &run1]).status.success());
    assert_eq!(bed.snapshots_named("s1").await, vec!["root:s1".to_string()]);

    // Killed after taking the filesystem snapshots but before recording it: resumed...
    let killed = bed.reroot_faulty(
        Some("snapshot-fs:after-apply"),
        &["snapshot", "-P", &tpl, "-s", "s2", cfg],
    );
    assert!(!killed.status.success());
    let run3 = bed.last_run();
    let status = stdout(&bed.reroot(&["status"]));
    assert!(
        status.contains(&format!("{}: interrupted", &run3[..8]))
            && status.contains("snapshot-fs")
            && status.contains("started"),
        "{status}"
    );
    assert!(bed.reroot(&["resume", &run3]).status.success());
    let status = stdout(&bed.reroot(&["status"]));
    assert!(status.starts_with("no run in progress"), "{status}");
    assert_eq!(bed.snapshots_named("s2").await, all("s2"));
    // ... or undone: every snapshot it took goes, though the journal never saw them taken.
    let killed = bed.reroot_faulty(
        Some("snapshot-fs:after-apply"),
        &["snapshot", "-P", &tpl, "-s", "s3", cfg],
    );
    assert!(!killed.status.success());
    let run4 = bed.last_run();
    assert_eq!(bed.snapshots_named("s3").await, all("s3"));
    assert!(bed.reroot(&["undo", &run4]).status.success());
    assert!(bed.snapshots_named("s3").await.is_empty());

    // --root-only leaves the filesystems alone.
    assert!(bed
        .reroot(&["snapshot", "-P", &tpl, "-s", "s4", "--root-only", cfg])
        .status
        .success());
    assert_eq!(bed.snapshots_named("s4").await, vec!["root:s4".to_string()]);

    let prune = bed.reroot(&["prune", &run3]);
    assert!(!prune.status.success());
    assert!(
        stderr(&prune).contains("snapshot run"),
        "{}",
        stderr(&prune)
    );
    assert!(bed.reroot(&["journal", "verify"]).status.success());
}

/// `delete` and `destroy` refuse a running instance and change nothing then; `destroy` wants
/// confirmation; `delete` keeps every filesystem (a later rebuild finds the data again);
/// `destroy` removes only the filesystems marked `destroy: true`. Neither can be undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_keeps_data_and_destroy_removes_only_what_is_marked() {
    if !cfg!(feature = "fault-injection") {
        panic!("run the tests with --features fault-injection (scripts/test.sh does)");
    }
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    // The lxdops placement: delete and destroy remove the device profile too.
    let config = bed.config_with("device-placement: profile\n", true);
    let cfg = config.to_str().unwrap();
    let tpl = format!("tpl={}", bed.template("old"));
    assert!(bed.rebuild("old", &config).status.success(), "launch");
    let web = bed.instance();
    bed.sh("echo orders > /var/www/orders.txt; echo line > /var/log/app/app.log")
        .await;
    let files = ["www/orders.txt", "app.log"];
    let data = bed.data_digest(&files);
    let profile = format!("{web}.reroot");
    let profile_exists = || async { bed.lxd.get_profile(&profile).await.is_ok() };
    assert!(profile_exists().await);
    let logs = format!("/srv/reroot-btrfs/{}-{web}", bed.prefix);
    let zfs_dir = format!("/rerootz/{}/{web}", bed.prefix);

    // Running: both refuse, and nothing changes, not even the journal.
    let runs = bed.run_count();
    for args in [
        vec!["delete", "-P", &tpl, cfg],
        vec!["destroy", "-P", &tpl, "--yes", cfg],
    ] {
        let out = bed.reroot(&args);
        assert!(!out.status.success(), "{args:?} of a running instance");
        assert!(stderr(&out).contains("stop it first"), "{}", stderr(&out));
    }
    assert_eq!(bed.run_count(), runs);
    assert_eq!(bed.instances().await, vec![web.clone()]);
    assert!(profile_exists().await);
    assert_eq!(bed.data_digest(&files), data);

    bed.lxd
        .stop_instance(&web, reroot::lxd::Stop::Force)
        .await
        .unwrap();
    // destroy without --yes and without a terminal to ask in: refused, nothing changed.
    let unconfirmed = common::reroot_command()
        .args(["--journal", bed.journal().to_str().unwrap()])
        .args(["destroy", "-P", &tpl, cfg])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!unconfirmed.status.success());
    let err = stderr(&unconfirmed);
    assert!(err.contains("--yes") && err.contains(&logs), "{err}");
    assert_eq!(bed.instances().await, vec![web.clone()]);

    // delete: root and profile gone, every filesystem kept.
    let deleted = bed.reroot(&["delete", "-P", &tpl, cfg]);
    assert!(deleted.status.success());
    assert!(stdout(&deleted).contains("filesystems kept"));
    assert!(bed.instances().await.is_empty());
    assert!(!profile_exists().await);
    assert_eq!(bed.data_digest(&files), data);
    let run = bed.last_run();
    let undo = bed.reroot(&["undo", &run]);
    assert!(!undo.status.success());
    assert!(
        stderr(&undo).contains("cannot be brought back"),
        "{}",
        stderr(&undo)
    );

    // A rebuild launches it again on the kept data.
    assert!(bed.rebuild("old", &config).status.success());
    assert_eq!(bed.sh("cat /var/www/orders.txt").await, "orders\n");

    // A delete killed after its check, and the instance started meanwhile: resume does not
    // delete it (never forced); once it is stopped again, resume finishes the delete.
    bed.lxd
        .stop_instance(&web, reroot::lxd::Stop::Force)
        .await
        .unwrap();
    let killed = bed.reroot_faulty(Some("check:after-record"), &["delete", "-P", &tpl, cfg]);
    assert!(!killed.status.success());
    let run = bed.last_run();
    bed.lxd.start_instance(&web).await.unwrap();
    assert!(!bed.reroot(&["resume", &run]).status.success());
    assert_eq!(bed.instances().await, vec![web.clone()]);
    assert_eq!(bed.sh("cat /var/www/orders.txt").await, "orders\n");
    bed.lxd
        .stop_instance(&web, reroot::lxd::Stop::Force)
        .await
        .unwrap();
    assert!(bed.reroot(&["resume", &run]).status.success());
    assert!(bed.instances().await.is_empty());
    assert_eq!(bed.data_digest(&files), data);
    assert!(bed.rebuild("old", &config).status.success());

    // destroy asks in a terminal: any answer but `destroy` changes nothing.
    bed.lxd
        .stop_instance(&web, reroot::lxd::Stop::Force)
        .await
        .unwrap();
    let in_terminal = |answer: &str, fault: &str| {
        let line = format!(
            "REROOT_FAULT={fault} {REROOT} --journal {} destroy -P {tpl} {cfg}",
            bed.journal().display()
        );
        // `script` passes its environment down to reroot: the same daemon as the others.
        let mut child = Command::new("script")
            .env("REROOT_SOCKET", common::lxd_socket())
            .args(["-qec", &line, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("script (util-linux) gives reroot a terminal");
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        eprintln!(
            "destroy answered {answer:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
        out
    };
    let refused = in_terminal("yes", "none:before-apply");
    assert!(!refused.status.success());
    let said = stdout(&refused);
    assert!(
        said.contains(&logs) && said.contains("not confirmed"),
        "{said}"
    );
    assert_eq!(bed.instances().await, vec![web.clone()]);
    assert!(Path::new(&logs).exists());

    // Confirmed, then killed once the root is deleted, and resumed: the btrfs filesystem
    // (destroy: true) goes, the ZFS one stays.
    let killed = in_terminal("destroy", "delete-root:after-apply");
    assert!(!killed.status.success());
    assert!(bed.instances().await.is_empty(), "confirmed: the root went");
    assert!(Path::new(&logs).exists(), "killed before destroy-fs");
    let resumed = bed.reroot(&["resume", &bed.last_run()]);
    assert!(resumed.status.success());
    assert!(bed.instances().await.is_empty());
    assert!(!profile_exists().await);
    assert!(!Path::new(&logs).exists(), "{logs} destroyed");
    assert_eq!(
        std::fs::read_to_string(format!("{zfs_dir}/www/orders.txt")).unwrap(),
        "orders\n",
        "the ZFS filesystem is not marked destroy: kept"
    );
    let shown = stdout(&bed.reroot(&["show", &bed.last_run()]));
    for step in ["check", "delete-root", "delete-profile", "destroy-fs"] {
        assert!(shown.contains(step), "{step} in {shown}");
    }
    assert!(bed.reroot(&["journal", "verify"]).status.success());
}

/// `--canaries 1`: the first instance is rebuilt alone first; when it fails, the others are
/// not started and stay exactly as they were; when it goes through, the rest follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_canary_leaves_the_other_instances_untouched() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let good = bed.config("");
    // A second instance of the same shape: its name comes from its file name.
    let other = format!("{}-web2", bed.prefix);
    let other_config = bed.dir.path().join(format!("{other}.yaml"));
    std::fs::copy(&good, &other_config).unwrap();
    let rebuild = |tpl: &str, configs: &[&Path], extra: &[&str]| {
        let tpl = format!("tpl={}", bed.template(tpl));
        let mut args = vec!["rebuild", "-P", &tpl, "--parallel", "2"];
        args.extend_from_slice(extra);
        args.extend(configs.iter().map(|c| c.to_str().unwrap()));
        bed.reroot(&args)
    };
    assert!(rebuild("old", &[&good, &other_config], &[])
        .status
        .success());
    let lxd = bed.lxd.clone();
    let version = |name: String| {
        let lxd = lxd.clone();
        async move {
            let out = lxd
                .exec(&name, &ExecRequest::shell("cat /etc/template-version"))
                .await
                .expect("exec");
            out.stdout_text().trim().to_string()
        }
    };
    let before = bed.lxd.get_instance(&other).await.unwrap().value;

    let failing = bed.config("health-check:\n  command: [sh, -c, 'exit 3']\n  timeout: 2\n");
    let out = rebuild("new", &[&failing, &other_config], &["--canaries", "1"]);
    assert!(!out.status.success());
    let table = stdout(&out);
    assert!(table.contains("FAILED at verify"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&other) && l.contains("not started")),
        "{table}"
    );
    let failed = bed.last_run();
    assert_eq!(version(other.clone()).await, "old");
    let after = bed.lxd.get_instance(&other).await.unwrap().value;
    assert_eq!(
        (&after.config, &after.profiles, &after.status),
        (&before.config, &before.profiles, &before.status),
        "the other instance was touched"
    );
    let shown = stdout(&bed.reroot(&["show", &failed, "--json"]));
    let state: serde_json::Value = serde_json::from_str(&shown).expect("show json");
    let steps_of = |name: &str| {
        state["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .map_or(0, |i| i["steps"].as_array().unwrap().len())
    };
    assert_eq!(steps_of(&other), 0, "no step of the other instance ran");

    // Undo the canary's run, write its healthy config back: the canary goes through, and so
    // does the rest.
    assert!(bed.reroot(&["undo", &failed]).status.success());
    let good = bed.config("");
    assert!(
        rebuild("new", &[&good, &other_config], &["--canaries", "1"])
            .status
            .success()
    );
    assert_eq!(version(bed.instance()).await, "new");
    assert_eq!(version(other).await, "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_moves_disk_devices_between_the_device_profile_and_the_instance() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let web = bed.instance();
    let device_profile = format!("{web}.reroot");
    // Where the disk devices of the live instance are: (on the instance, its profiles).
    let placement = || async {
        let i = bed
            .lxd
            .get_instance(&web)
            .await
            .expect("the instance")
            .value;
        (
            ["www", "log"].iter().all(|d| i.devices.contains_key(*d)),
            i.profiles.clone(),
        )
    };
    // Launched with lxdops' device profile.
    let config = bed.config("device-placement: profile\n");
    assert!(bed.rebuild("old", &config).status.success(), "launch");
    let (on_instance, profiles) = placement().await;
    assert!(!on_instance);
    assert!(profiles.contains(&device_profile), "{profiles:?}");
    bed.sh("echo orders > /var/www/orders.txt; echo line > /var/log/app/app.log")
        .await;
    let files = ["www/orders.txt", "app.log"];
    let data = bed.data_digest(&files);

    // Rebuilt with the default: the devices move onto the new root, the profile is left off.
    let config = bed.config("");
    assert!(
        bed.rebuild("new", &config).status.success(),
        "to the instance"
    );
    let run = bed.last_run();
    let (on_instance, profiles) = placement().await;
    assert!(on_instance);
    assert!(!profiles.contains(&device_profile), "{profiles:?}");
    assert_eq!(bed.data_digest(&files), data);
    assert_eq!(
        bed.sh("cat /var/www/orders.txt /var/log/app/app.log").await,
        "orders\nline\n"
    );

    // Undo: the old root comes back with its device profile, its data visible.
    assert!(bed.reroot(&["undo", &run]).status.success(), "undo");
    let (on_instance, profiles) = placement().await;
    assert!(!on_instance);
    assert!(profiles.contains(&device_profile), "{profiles:?}");
    assert_eq!(bed.template_version().await, "old");
    assert_eq!(bed.sh("cat /var/www/orders.txt").await, "orders\n");

    // Pruning the retired root, the device profile's last user, deletes the profile too.
    assert!(
        bed.rebuild("new", &config).status.success(),
        "to the instance again"
    );
    let moved = bed.last_run();
    let pruned = bed.reroot(&["prune", &moved]);
    assert!(pruned.status.success(), "{}", stderr(&pruned));
    assert!(
        stdout(&pruned).contains("deleted device profile"),
        "{}",
        stdout(&pruned)
    );
    assert!(
        bed.lxd.get_profile(&device_profile).await.is_err(),
        "profile left"
    );

    // And back from the instance to a profile, by a rebuild again.
    let config = bed.config("device-placement: profile\n");
    assert!(
        bed.rebuild("old", &config).status.success(),
        "back to the profile"
    );
    let (on_instance, profiles) = placement().await;
    assert!(!on_instance);
    assert!(profiles.contains(&device_profile), "{profiles:?}");
    assert_eq!(bed.data_digest(&files), data);
    assert!(bed.reroot(&["journal", "verify"]).status.success());

    // A bad value is refused with the file and the key, and changes nothing.
    let runs = bed.run_count();
    let config = bed.config("device-placement: everywhere\n");
    let out = bed.reroot(&[
        "rebuild",
        "-P",
        &format!("tpl={}", bed.template("new")),
        config.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("device-placement") && err.contains("everywhere"),
        "{err}"
    );
    assert!(
        err.contains(config.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
    assert_eq!(bed.run_count(), runs);
}

/// The lines of `stderr` that `reroot` wrote about `instance` as it finished.
fn finished_lines<'a>(stderr: &'a str, instance: &str) -> Vec<&'a str> {
    let head = format!("reroot: {instance} ");
    stderr.lines().filter(|l| l.starts_with(&head)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_json_streams_ndjson_events_and_stderr_has_a_line_per_instance() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let first = bed.config("");
    // A second instance of the same shape: its name comes from its file name.
    let other = format!("{}-web2", bed.prefix);
    let second = bed.dir.path().join(format!("{other}.yaml"));
    std::fs::copy(&first, &second).unwrap();
    let names = [bed.instance(), other.clone()];
    let rebuild = |tpl: &str, extra: &[&str]| {
        let tpl = format!("tpl={}", bed.template(tpl));
        let mut args = vec!["rebuild", "-P", &tpl, "--parallel", "2"];
        args.extend_from_slice(extra);
        args.extend([first.to_str().unwrap(), second.to_str().unwrap()]);
        bed.reroot(&args)
    };

    // Launch, without --json: the table on stdout; stderr is not a terminal here, so one line
    // per instance as it finished (launched: it was not running, so no downtime).
    let out = rebuild("old", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("INSTANCE"), "{}", stdout(&out));
    let err = stderr(&out);
    for n in &names {
        let lines = finished_lines(&err, n);
        assert_eq!(lines.len(), 1, "{n}: {err}");
        assert!(
            lines[0].starts_with(&format!("reroot: {n} rebuilt in ")),
            "{err}"
        );
        assert!(!lines[0].contains("(down"), "{err}");
    }

    // The rebuild onto the new template, with --json: NDJSON on stdout.
    let out = rebuild("new", &["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = bed.last_run();
    let text = stdout(&out);
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
            assert!(v.is_object(), "{l}");
            assert_eq!(v["schema"], "reroot.events/1", "{l}");
            assert_eq!(v["run"], run.as_str(), "{l}");
            assert!(v["at_ms"].is_i64(), "{l}");
            assert!(v["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
            v
        })
        .collect();
    assert!(!text.contains("\n\n"), "an empty line:\n{text}");
    let ty = |v: &serde_json::Value| v["type"].as_str().expect("a type").to_string();
    let started = &events[0];
    assert_eq!(ty(started), "run_started", "{text}");
    assert_eq!(started["kind"], "rebuild");
    assert_eq!(started["instances"], serde_json::json!(names));
    let steps: Vec<String> = started["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert!(steps.contains(&"stop".to_string()) && steps.contains(&"start".to_string()));
    for n in &names {
        // An instance's recorded facts come in journal order (those of instances running at
        // once may interleave out of it: each is told by its own task; so may those of the
        // snapshot, which runs beside the renames).
        let seqs: Vec<u64> = events
            .iter()
            .filter(|v| v["instance"] == n.as_str() && v["step"] != "snapshot")
            .filter_map(|v| v["seq"].as_u64())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{n}: {seqs:?}");
        let of = |t: &str| -> Vec<&serde_json::Value> {
            events
                .iter()
                .filter(|v| ty(v) == t && v["instance"] == n.as_str())
                .collect()
        };
        assert_eq!(of("instance_started").len(), 1, "{n}");
        let finished = of("instance_finished");
        assert_eq!(finished.len(), 1, "{n}");
        assert_eq!(finished[0]["outcome"], "succeeded", "{n}");
        // Each step started then succeeded, in the pipeline's order; the data snapshot runs
        // beside the renames: after `stop` ended, and ended before `start` began.
        let all: Vec<(String, String)> = events
            .iter()
            .filter(|v| v["instance"] == n.as_str() && ty(v).starts_with("step_"))
            .map(|v| (ty(v), v["step"].as_str().unwrap().to_string()))
            .collect();
        let at = |t: &str, s: &str| {
            all.iter()
                .position(|(ty, step)| ty == t && step == s)
                .unwrap_or_else(|| panic!("{n}: no {t} of {s}: {all:?}"))
        };
        assert!(
            at("step_finished", "stop") < at("step_started", "snapshot"),
            "{all:?}"
        );
        assert!(
            at("step_finished", "snapshot") < at("step_started", "start"),
            "{all:?}"
        );
        let step_events: Vec<&(String, String)> =
            all.iter().filter(|(_, s)| s != "snapshot").collect();
        let expected: Vec<(String, String)> = steps
            .iter()
            .filter(|s| s.as_str() != "snapshot")
            .flat_map(|s| {
                [
                    ("step_started".to_string(), s.clone()),
                    ("step_finished".to_string(), s.clone()),
                ]
            })
            .collect();
        let expected: Vec<&(String, String)> = expected.iter().collect();
        assert_eq!(step_events, expected, "{n}");
        assert!(of("step_finished")
            .iter()
            .all(|v| v["result"] == "succeeded"));
        // It went down once, and came up on its new root.
        let opened = of("window_opened");
        let closed = of("window_closed");
        assert_eq!((opened.len(), closed.len()), (1, 1), "{n}");
        assert_eq!(closed[0]["reverted"], false);
        assert!(closed[0]["down_ms"].as_i64().unwrap() > 0);
    }
    // The last line ends the run with what `--json` printed before the stream.
    let last = events.last().unwrap();
    assert_eq!(ty(last), "run_finished", "{text}");
    assert_eq!(last["outcome"], "succeeded");
    assert_eq!(last["report"]["run"], run.as_str());
    let reported = last["report"]["instances"].as_array().expect("instances");
    assert_eq!(reported.len(), 2);
    for (k, n) in names.iter().enumerate() {
        assert_eq!(reported[k][0], n.as_str());
        assert_eq!(reported[k][1]["outcome"], "succeeded");
        assert!(
            last["downtime_ms"][n].as_i64().is_some_and(|d| d > 0),
            "{n}: {last}"
        );
    }
    assert_eq!(events.iter().filter(|v| ty(v) == "run_finished").count(), 1);
    // stderr: one line per instance, with its downtime this time (it was running).
    let err = stderr(&out);
    for n in &names {
        let lines = finished_lines(&err, n);
        assert_eq!(lines.len(), 1, "{n}: {err}");
        assert!(
            lines[0].starts_with(&format!("reroot: {n} rebuilt in "))
                && lines[0].contains("(down "),
            "{err}"
        );
    }
    assert_eq!(bed.template_version().await, "new");

    // `undo --json` streams too: each instance goes down as its `start` is undone and comes
    // back on its old root; the last line says the run is undone.
    let out = bed.reroot(&["undo", &run, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    assert!(events.iter().all(|v| v["schema"] == "reroot.events/1"));
    assert_eq!(ty(&events[0]), "run_started");
    assert_eq!(events[0]["direction"], "undo");
    assert_eq!(events[0]["resumed"], true);
    for n in &names {
        let of = |t: &str| -> Vec<&serde_json::Value> {
            events
                .iter()
                .filter(|v| ty(v) == t && v["instance"] == n.as_str())
                .collect()
        };
        let closed = of("window_closed");
        assert_eq!((of("window_opened").len(), closed.len()), (1, 1), "{n}");
        assert_eq!(closed[0]["reverted"], true, "{n}");
        assert!(of("step_started").iter().all(|v| v["direction"] == "undo"));
        let finished = of("instance_finished");
        assert_eq!(finished.len(), 1, "{n}");
        assert_eq!(finished[0]["outcome"], "undone", "{n}");
        let err = stderr(&out);
        let lines = finished_lines(&err, n);
        assert_eq!(lines.len(), 1, "{n}: {err}");
        assert!(
            lines[0].starts_with(&format!("reroot: {n} undone in ")),
            "{err}"
        );
    }
    let last = events.last().unwrap();
    assert_eq!(ty(last), "run_finished");
    assert_eq!(last["outcome"], "undone");
    assert_eq!(bed.template_version().await, "old");
}

/// The ids of the bed's runs, oldest first.
fn run_ids(bed: &Bed) -> Vec<String> {
    let out = bed.reroot(&["history", "--json"]);
    assert!(out.status.success(), "history: {}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history json");
    let mut ids: Vec<String> = doc["runs"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect();
    ids.reverse();
    ids
}

/// The retired root a run leaves of the bed's instance.
fn retired(bed: &Bed, run: &str) -> String {
    format!("{}-old-{}", bed.instance(), &run[..8])
}

/// `rebuild --force` from template `tpl` (`old` or `new`) with `extra` arguments: rebuilt even
/// when already built from that template, so that each call retires a root.
fn rebuild_forced(bed: &Bed, tpl: &str, config: &Path, extra: &[&str]) -> Output {
    let tpl = format!("tpl={}", bed.template(tpl));
    let mut args = vec!["rebuild", "--force", "-P", &tpl];
    args.extend_from_slice(extra);
    args.push(config.to_str().unwrap());
    bed.reroot(&args)
}

/// The bed's instances, sorted, as the test expects them: the instance and these retired
/// roots.
fn with_retired(bed: &Bed, runs: &[&str]) -> Vec<String> {
    let mut names = vec![bed.instance()];
    names.extend(runs.iter().map(|r| retired(bed, r)));
    names.sort();
    names
}

/// `prune --keep N` keeps each instance's N newest succeeded runs' retired roots and prunes
/// the older ones (which then refuse undo); `--dry-run` changes nothing; `--older-than` leaves
/// a retired root someone started and a failed run's, which can still be undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keep_and_older_than_prune_only_older_succeeded_runs() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let config = bed.config("");
    // A launch (no old root to retire), then three rebuilds, each retiring the root before.
    assert!(bed.rebuild("old", &config).status.success());
    for _ in 0..3 {
        assert!(rebuild_forced(&bed, "new", &config, &[]).status.success());
    }
    let runs = run_ids(&bed);
    assert_eq!(runs.len(), 4, "{runs:?}");
    let (r1, r2, r3) = (&runs[1], &runs[2], &runs[3]);
    assert_eq!(bed.instances().await, with_retired(&bed, &[r1, r2, r3]));

    // --dry-run lists what would go and changes nothing, in LXD or the journal.
    let dry = bed.reroot(&["prune", "--keep", "1", "--dry-run"]);
    assert!(dry.status.success());
    let listed = stdout(&dry);
    for (run, goes) in [(r1, true), (r2, true), (r3, false)] {
        let line = format!("would delete retired root {}", retired(&bed, run));
        assert_eq!(listed.contains(&line), goes, "{line}: {listed}");
    }
    assert_eq!(bed.instances().await, with_retired(&bed, &[r1, r2, r3]));
    assert!(!stdout(&bed.reroot(&["show", r1])).contains("pruned"));

    // --keep 1: only the newest run's retired root is left; the older runs refuse undo.
    let out = bed.reroot(&["prune", "--keep", "1"]);
    assert!(out.status.success());
    for run in [r1, r2] {
        let line = format!("deleted retired root {}", retired(&bed, run));
        assert!(stdout(&out).contains(&line), "{line}: {}", stdout(&out));
        let undo = bed.reroot(&["undo", run]);
        assert!(!undo.status.success(), "a pruned run was undone");
        assert!(
            stderr(&undo).contains("retired roots were deleted"),
            "{}",
            stderr(&undo)
        );
    }
    assert_eq!(bed.instances().await, with_retired(&bed, &[r3]));
    assert_eq!(bed.template_version().await, "new");
    // Again: what was pruned is skipped.
    let again = bed.reroot(&["prune", "--keep", "1"]);
    assert!(again.status.success());
    assert_eq!(stdout(&again).trim(), "nothing to prune");

    // A retired root someone started is left alone, and the prune says so and fails.
    let old3 = retired(&bed, r3);
    bed.lxd
        .start_instance(&old3)
        .await
        .expect("start retired root");
    let out = bed.reroot(&["prune", "--older-than", "0s"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("{old3} is Running, not stopped")),
        "{}",
        stderr(&out)
    );
    assert_eq!(bed.instances().await, with_retired(&bed, &[r3]));
    bed.lxd
        .stop_instance(&old3, reroot::lxd::Stop::Force)
        .await
        .expect("stop retired root");

    // A failed run's retired root is never touched by a policy, and its undo still works.
    let failing = bed.config("health-check:\n  command: [sh, -c, 'exit 3']\n  timeout: 2\n");
    let out = rebuild_forced(&bed, "new", &failing, &["--retries", "0"]);
    assert!(!out.status.success());
    let r4 = bed.last_run();
    assert_eq!(bed.instances().await, with_retired(&bed, &[r3, &r4]));
    let dry = bed.reroot(&["prune", "--older-than", "0s", "--dry-run"]);
    assert!(dry.status.success());
    assert_eq!(
        stdout(&dry).trim(),
        format!("{}: would delete retired root {old3}", bed.instance())
    );
    let out = bed.reroot(&["prune", "--older-than", "0s"]);
    assert!(out.status.success());
    assert_eq!(bed.instances().await, with_retired(&bed, &[&r4]));
    assert!(bed.reroot(&["undo", &r4]).status.success());
    assert_eq!(bed.instances().await, vec![bed.instance()]);
    assert_eq!(bed.template_version().await, "new");
    assert!(!bed.reroot(&["undo", r3]).status.success());
    assert!(bed.reroot(&["journal", "verify"]).status.success());
}

/// `rebuild --prune-previous`: after two rebuilds one retired root is left, this run's, which
/// can still be undone; the previous run refuses undo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_prune_previous_leaves_one_retired_root() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let config = bed.config("");
    assert!(bed.rebuild("old", &config).status.success());
    let rebuild = || {
        let out = rebuild_forced(&bed, "new", &config, &["--prune-previous"]);
        assert!(out.status.success());
        out
    };
    rebuild();
    let r1 = bed.last_run();
    // The previous run was the launch: nothing retired to prune.
    assert_eq!(bed.instances().await, with_retired(&bed, &[&r1]));
    let out = rebuild();
    let r2 = bed.last_run();
    assert!(
        stderr(&out).contains(&format!(
            "--prune-previous: {}: deleted retired root {}",
            bed.instance(),
            retired(&bed, &r1)
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(bed.instances().await, with_retired(&bed, &[&r2]));
    let undo = bed.reroot(&["undo", &r1]);
    assert!(!undo.status.success());
    assert!(stderr(&undo).contains("retired roots were deleted"));
    assert!(bed.reroot(&["undo", &r2]).status.success());
    assert_eq!(bed.instances().await, vec![bed.instance()]);
    assert!(bed.reroot(&["journal", "verify"]).status.success());
}

/// `reroot ARGS...` on the bed's journal, in the background, with its output captured.
fn spawn_reroot(bed: &Bed, args: &[&str]) -> std::process::Child {
    common::reroot_command()
        .env_remove("REROOT_FAULT")
        .arg("--journal")
        .arg(bed.journal())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn reroot")
}

/// Waits until `child` holds the bed's journal as writer with a run recorded.
fn wait_until_writing(bed: &Bed, child: &mut std::process::Child) {
    let lock = bed.journal().join("lock");
    let pid = format!("pid={}\n", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&lock).unwrap_or_default();
        if text.contains(&pid) && text.contains("role=writer") && !text.contains("run=-") {
            return;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("reroot ended ({status}) before it was seen writing the journal");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reroot did not start its run within 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Logs a background reroot's output the way `Bed::reroot` does, and returns it.
fn finished(child: std::process::Child, what: &str) -> Output {
    let out = child.wait_with_output().expect("wait for reroot");
    eprintln!(
        "reroot {what} (background): {}\n{}{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    out
}

/// `--wait`: a second run started while a first writes the journal says once whom it waits
/// for, starts only after the first released the journal, and is still refused an instance
/// the first left unfinished. Without `--wait`, the clear error as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_queues_a_second_run_behind_the_first() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    // The health check keeps the first run writing for a few seconds.
    let slow = bed.config("health-check:\n  command: [sh, -c, 'sleep 6']\n  timeout: 30\n");
    let slow = slow.to_str().unwrap().to_string();
    let tpl = format!("tpl={}", bed.template("old"));
    // --force: the instance may be built from that template already (by the run before), and
    // a rebuild skips such an instance before it ever opens the journal.
    let rebuild = ["rebuild", "--force", "-P", &tpl, &slow];

    let mut first = spawn_reroot(&bed, &rebuild);
    wait_until_writing(&bed, &mut first);
    let refused = bed.reroot(&rebuild);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains(&format!("is in use by writer process {}", first.id()))
            && stderr(&refused).contains("--wait"),
        "{}",
        stderr(&refused)
    );
    // --wait-timeout ends the wait with the same error, saying it gave up.
    let gave_up = bed.reroot(&["prune", "--keep", "1", "--wait", "--wait-timeout", "1"]);
    assert!(!gave_up.status.success());
    assert!(
        stderr(&gave_up).contains(&format!("is in use by writer process {}", first.id()))
            && stderr(&gave_up).contains("gave up waiting after --wait-timeout 1 s"),
        "{}",
        stderr(&gave_up)
    );
    assert!(
        first.try_wait().expect("try_wait").is_none(),
        "the first run ended before the refusals were shown: the test proves nothing"
    );
    let waiting = ["rebuild", "--force", "--wait", "-P", &tpl, &slow];
    let second = spawn_reroot(&bed, &waiting);
    let first_pid = first.id();
    assert!(finished(first, "rebuild").status.success());
    let out = finished(second, "rebuild --wait");
    assert!(out.status.success());
    let said = stderr(&out);
    assert_eq!(
        said.matches("waiting until it is free").count(),
        1,
        "{said}"
    );
    assert!(
        said.contains(&format!("in use by writer process {first_pid}")),
        "{said}"
    );
    // The second run began after the first one's last event.
    let history: serde_json::Value =
        serde_json::from_slice(&bed.reroot(&["history", "--json"]).stdout).expect("json");
    let runs = history["runs"].as_array().expect("a list");
    assert_eq!(runs.len(), 2, "{history}");
    let (newer, older) = (&runs[0], &runs[1]);
    assert_eq!(older["status"], "Succeeded");
    assert_eq!(newer["status"], "Succeeded");
    assert!(
        newer["started_at_ms"].as_i64().unwrap() >= older["last_at_ms"].as_i64().unwrap(),
        "the waiting run started before the first one finished: {history}"
    );

    // A first run that fails leaves its instance leased: the waiting run is refused it.
    let failing =
        bed.config("health-check:\n  command: [sh, -c, 'sleep 3; exit 3']\n  timeout: 30\n");
    let failing = failing.to_str().unwrap().to_string();
    let tpl_new = format!("tpl={}", bed.template("new"));
    let mut first = spawn_reroot(
        &bed,
        &[
            "rebuild",
            "--force",
            "--retries",
            "0",
            "-P",
            &tpl_new,
            &failing,
        ],
    );
    wait_until_writing(&bed, &mut first);
    let second = spawn_reroot(
        &bed,
        &["rebuild", "--force", "--wait", "-P", &tpl_new, &failing],
    );
    assert!(!finished(first, "failing rebuild").status.success());
    let failed = bed.last_run();
    let out = finished(second, "rebuild --wait");
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(said.contains("waiting until it is free"), "{said}");
    assert!(
        said.contains(&format!("is part of run {}", &failed[..8])) && said.contains("not finished"),
        "{said}"
    );
    assert_eq!(run_ids(&bed).len(), 3, "the refused run recorded nothing");
    assert!(bed.reroot(&["undo", &failed]).status.success());
    assert!(bed.reroot(&["journal", "verify"]).status.success());
}

/// `rollback -s NAME`: refused for a running instance without `--stop` and for a snapshot
/// missing anywhere, changing nothing; with `--stop` the data (ZFS and btrfs) and with `--root`
/// the root are back as the snapshot had them, the instance runs again, btrfs keeps what it
/// replaced, and the journal says what was rolled back; killed midway, it is resumed (never
/// undone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_takes_data_and_root_back_to_a_named_snapshot() {
    if !cfg!(feature = "fault-injection") {
        panic!("run the tests with --features fault-injection (scripts/test.sh does)");
    }
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let config = bed.config("");
    let cfg = config.to_str().unwrap();
    let tpl = format!("tpl={}", bed.template("old"));
    assert!(bed.rebuild("old", &config).status.success(), "launch");
    bed.sh("echo before > /var/www/state && echo before > /var/log/app/state && echo before > /etc/rootfile && sync")
        .await;
    let before = bed.data_digest(&["www/state", "state"]);
    assert!(bed
        .reroot(&["snapshot", "-P", &tpl, "-s", "good", cfg])
        .status
        .success());
    bed.sh("echo after > /var/www/state && echo after > /var/log/app/state && echo after > /etc/rootfile && sync")
        .await;
    let after = bed.data_digest(&["www/state", "state"]);
    assert_ne!(before, after);
    let runs = bed.run_count();

    // Refused, nothing changed, no run recorded: running without --stop; a missing snapshot.
    let running = bed.reroot(&["rollback", "-P", &tpl, "-s", "good", cfg]);
    assert!(!running.status.success());
    assert!(stderr(&running).contains("--stop"), "{}", stderr(&running));
    let missing = bed.reroot(&["rollback", "-P", &tpl, "-s", "nosuch", "--stop", cfg]);
    assert!(!missing.status.success());
    let said = stderr(&missing);
    assert!(
        said.contains("no snapshot nosuch") && said.contains("nothing was rolled back"),
        "{said}"
    );
    assert_eq!(bed.run_count(), runs, "a refused rollback recorded a run");
    assert_eq!(bed.data_digest(&["www/state", "state"]), after);
    assert_eq!(bed.sh("cat /etc/rootfile").await.trim(), "after");

    // Killed after the filesystems were rolled back but before that was recorded: resumed,
    // never undone; the instance comes back running, data and root as the snapshot had them.
    let killed = bed.reroot_faulty(
        Some("rollback-fs:after-apply"),
        &[
            "rollback", "-P", &tpl, "-s", "good", "--stop", "--root", cfg,
        ],
    );
    assert!(!killed.status.success());
    let run = bed.last_run();
    let undo = bed.reroot(&["undo", &run]);
    assert!(!undo.status.success(), "a rollback run was undone");
    assert!(bed.reroot(&["resume", &run]).status.success());
    assert_eq!(bed.data_digest(&["www/state", "state"]), before);
    assert_eq!(bed.sh("cat /etc/rootfile").await.trim(), "before");
    let state = bed.lxd.instance_state(&bed.instance()).await.unwrap();
    assert!(state.is_running(), "{}", state.status);
    let shown = stdout(&bed.reroot(&["show", &run]));
    for step in ["check", "stop", "rollback-fs", "rollback-root", "start"] {
        assert!(shown.contains(step), "{step} in {shown}");
    }
    // Its picture: the attempt the kill cut short ends where the run was resumed (not at the
    // end of the axis, as a step running all along would), and the resume is marked.
    let svg = bed.dir.path().join("rollback.svg");
    assert!(bed
        .reroot(&["show", &run, "--svg", svg.to_str().unwrap()])
        .status
        .success());
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("well-formed SVG");
    let cut: Vec<String> = doc
        .descendants()
        .filter(|n| n.attribute("data-cut") == Some("crash"))
        .filter_map(|n| n.children().find(|c| c.has_tag_name("title")))
        .filter_map(|t| t.text().map(str::to_string))
        .collect();
    assert_eq!(cut.len(), 1, "{cut:?}");
    assert!(cut[0].contains("rollback-fs try 1: cut short"), "{cut:?}");
    let resumed: Vec<_> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("marker"))
        .filter(|n| n.attribute("data-kind") == Some("resumed"))
        .collect();
    assert_eq!(resumed.len(), 1);
    let marker_x: f64 = resumed[0]
        .children()
        .find(|c| c.has_tag_name("line"))
        .and_then(|l| l.attribute("x1"))
        .unwrap()
        .parse()
        .unwrap();
    let bar = doc
        .descendants()
        .find(|n| n.attribute("data-cut") == Some("crash"))
        .unwrap();
    let end = bar.attribute("x").unwrap().parse::<f64>().unwrap()
        + bar.attribute("width").unwrap().parse::<f64>().unwrap();
    assert!(
        (end - marker_x).abs() < 1.5,
        "bar ends at {end}, resume at {marker_x}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&bed.reroot(&["--json", "show", &run]))).unwrap();
    let text = json.to_string();
    assert!(
        text.contains("rerootz/") && text.contains("pre-rollback-"),
        "the journal names the filesystems rolled back and btrfs's kept copy: {text}"
    );
    // btrfs kept what it replaced, read-only, beside the snapshot.
    let kept: Vec<String> = std::fs::read_dir("/srv/reroot-btrfs")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| {
            n.contains(&format!("{}-{}", bed.prefix, bed.instance())) && n.contains("pre-rollback-")
        })
        .collect();
    assert!(!kept.is_empty(), "no pre-rollback copy kept");
    assert!(bed.reroot(&["journal", "verify"]).status.success());
}

/// `snapshot` without `-s` names the snapshot after the time (UTC, YYYYMMDDhhmmss);
/// `--filesystems-only` leaves the root alone; `--delete NAME` deletes the snapshots of that
/// name as a run that is resumed, never undone, and deleting again finds nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_by_time_filesystems_only_and_deleted_by_name() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let config = bed.config("");
    let cfg = config.to_str().unwrap();
    let tpl = format!("tpl={}", bed.template("old"));
    assert!(bed.rebuild("old", &config).status.success(), "launch");
    let fs_only = bed.reroot(&[
        "snapshot",
        "-P",
        &tpl,
        "-s",
        "f1",
        "--filesystems-only",
        cfg,
    ]);
    assert!(fs_only.status.success());
    assert_eq!(
        bed.snapshots_named("f1").await,
        vec!["btrfs:f1".to_string(), "zfs:f1".to_string()]
    );
    let before = chrono_digits();
    let timed = bed.reroot(&["snapshot", "-P", &tpl, cfg]);
    assert!(timed.status.success());
    let said = stderr(&timed);
    let name = said
        .lines()
        .find_map(|l| l.strip_prefix("reroot: snapshot "))
        .unwrap_or_else(|| panic!("the snapshot's name is not said: {said}"))
        .trim()
        .to_string();
    assert_eq!(name.len(), 14, "{name}");
    assert!(name.chars().all(|c| c.is_ascii_digit()), "{name}");
    assert!(
        name >= before && name <= chrono_digits(),
        "{before} <= {name}"
    );
    assert_eq!(
        bed.snapshots_named(&name).await,
        vec![
            format!("btrfs:{name}"),
            format!("root:{name}"),
            format!("zfs:{name}")
        ]
    );
    // --delete with --root-only deletes the root's only; then the rest; a deletion is final.
    assert!(bed
        .reroot(&[
            "snapshot",
            "-P",
            &tpl,
            "--delete",
            &name,
            "--root-only",
            cfg
        ])
        .status
        .success());
    assert_eq!(
        bed.snapshots_named(&name).await,
        vec![format!("btrfs:{name}"), format!("zfs:{name}")]
    );
    let deleted = bed.reroot(&["snapshot", "-P", &tpl, "--delete", &name, cfg]);
    assert!(deleted.status.success());
    assert!(bed.snapshots_named(&name).await.is_empty());
    let run = bed.last_run();
    let undo = bed.reroot(&["undo", &run]);
    assert!(!undo.status.success(), "a deletion was undone");
    let shown = stdout(&bed.reroot(&["show", &run]));
    assert!(
        shown.contains("delete-snapshot-root") && shown.contains("delete-snapshot-fs"),
        "{shown}"
    );
    let again = bed.reroot(&["snapshot", "-P", &tpl, "--delete", &name, cfg]);
    assert!(again.status.success(), "deleting what is gone is done");
    assert_eq!(
        bed.snapshots_named("f1").await,
        vec!["btrfs:f1".to_string(), "zfs:f1".to_string()]
    );
    assert!(bed.reroot(&["journal", "verify"]).status.success());
}

/// The time now, UTC, as YYYYMMDDhhmmss (what `date -u +%Y%m%d%H%M%S` prints).
fn chrono_digits() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y%m%d%H%M%S"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Reads a file inside `instance` (started for it, then stopped again).
async fn read_inside(bed: &Bed, instance: &str, path: &str) -> String {
    bed.lxd.start_instance(instance).await.expect("start");
    let out = bed
        .lxd
        .exec(instance, &ExecRequest::new(&["cat", path]))
        .await
        .expect("exec");
    bed.lxd
        .stop_instance(instance, reroot::lxd::Stop::Force)
        .await
        .expect("stop");
    assert_eq!(
        out.exit_code,
        0,
        "cat {path} in {instance}: {}",
        out.stderr_text()
    );
    out.stdout_text().trim().to_string()
}

/// `rename CONFIG NEW`: refused for a running instance and for a taken name, changing
/// nothing; moves the ZFS dataset and the btrfs subvolume named after the instance with it and
/// points its disk devices at them; killed midway it is resumed; undone, everything is back
/// under the old name, the data with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_moves_the_instance_its_filesystems_and_devices_and_undo_moves_them_back() {
    if !cfg!(feature = "fault-injection") {
        panic!("run the tests with --features fault-injection (scripts/test.sh does)");
    }
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let config = bed.config("");
    let cfg = config.to_str().unwrap();
    let tpl = format!("tpl={}", bed.template("old"));
    assert!(bed.rebuild("old", &config).status.success(), "launch");
    let launch = bed.last_run();
    bed.sh("echo kept > /var/www/state && echo logged > /var/log/app/state && sync")
        .await;
    let old = bed.instance();
    let new = format!("{}-site", bed.prefix);
    let zfs_of = |name: &str| format!("rerootz/{}/{name}", bed.prefix);
    let btrfs_of = |name: &str| PathBuf::from(format!("/srv/reroot-btrfs/{}-{name}", bed.prefix));
    let runs = bed.run_count();

    let running = bed.reroot(&["rename", "-P", &tpl, cfg, &new]);
    assert!(!running.status.success());
    assert!(
        stderr(&running).contains("stop it first"),
        "{}",
        stderr(&running)
    );
    bed.lxd
        .stop_instance(&old, reroot::lxd::Stop::Force)
        .await
        .unwrap();
    // A name taken by another instance.
    let taken = format!("{}-taken", bed.prefix);
    bed.lxd
        .create_instance(&NewInstance::from_image_alias(&taken, "reroot-old"))
        .await
        .unwrap();
    let refused = bed.reroot(&["rename", "-P", &tpl, cfg, &taken]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("exists already"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(bed.run_count(), runs, "a refused rename recorded a run");
    assert!(common::zfs_exists(&zfs_of(&old)));

    // Killed once the filesystems moved, before that was recorded: resumed.
    let killed = bed.reroot_faulty(
        Some("move-fs:after-apply"),
        &["rename", "-P", &tpl, cfg, &new],
    );
    assert!(!killed.status.success());
    let run = bed.last_run();
    // `status` names the new name of the interrupted rename.
    let status = stdout(&bed.reroot(&["status"]));
    assert!(status.contains(&format!("{old} to {new}")), "{status}");
    assert!(bed.reroot(&["resume", &run]).status.success());
    assert!(!bed.lxd.instance_exists(&old).await.unwrap());
    assert!(bed.lxd.instance_exists(&new).await.unwrap());
    assert!(common::zfs_exists(&zfs_of(&new)) && !common::zfs_exists(&zfs_of(&old)));
    assert!(btrfs_of(&new).is_dir() && !btrfs_of(&old).exists());
    let renamed = bed.lxd.get_instance(&new).await.unwrap().value;
    let sources: Vec<String> = renamed
        .devices
        .values()
        .filter_map(|d| d.get("source").cloned())
        .collect();
    assert!(
        sources
            .iter()
            .all(|s| s.contains(&new) && !s.contains(&old)),
        "{sources:?}"
    );
    assert_eq!(read_inside(&bed, &new, "/var/www/state").await, "kept");
    assert_eq!(
        read_inside(&bed, &new, "/var/log/app/state").await,
        "logged"
    );

    // The audit trail of the new name goes back through the rename: the rename run (recorded
    // under the old name) and the runs of the old name before it.
    let json = |args: &[&str]| -> serde_json::Value {
        let out = bed.reroot(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let ids = |doc: &serde_json::Value| -> Vec<String> {
        doc["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap()[..8].to_string())
            .collect()
    };
    let short = |id: &str| id[..8].to_string();
    let history = json(&["--json", "history", "--instance", &new]);
    assert_eq!(ids(&history), [short(&run), short(&launch)], "{history:#}");
    let log = json(&["--json", "log", &new]);
    assert_eq!(ids(&log), [short(&launch), short(&run)], "{log:#}");
    assert_eq!(log["runs"][0]["name"], old.as_str());
    assert_eq!(log["runs"][1]["kind"], "rename");
    assert_eq!(log["runs"][1]["name"], old.as_str());
    assert_eq!(log["runs"][1]["renamed_to"], new.as_str());
    assert_eq!(log["runs"][1]["result"], "succeeded");
    let text = stdout(&bed.reroot(&["log", &new]));
    assert!(text.contains(&format!(", {old} to {new}")), "{text}");
    assert!(text.contains(&format!("(as {old})")), "{text}");
    let listed = stdout(&bed.reroot(&["history", "--instance", &new]));
    assert!(listed.contains(&short(&launch)), "{listed}");
    // An audit extract of the new name carries the old name's runs too.
    let extract = stdout(&bed.reroot(&["journal", "export", "--instance", &new]));
    assert!(
        extract.contains(&launch) && extract.contains(&run),
        "the extract of {new} lacks the launch {launch} or the rename {run}"
    );

    // Undone: the old name, filesystems and devices are back, with the data.
    let undo = bed.reroot(&["undo", &run]);
    assert!(undo.status.success(), "{}", stderr(&undo));
    // The undone rename stays in both names' trails; the past is the old name's again.
    let log = json(&["--json", "log", &new]);
    assert_eq!(ids(&log), [short(&run)], "{log:#}");
    assert_eq!(log["runs"][0]["status"], "Undone");
    let log = json(&["--json", "log", &old]);
    assert_eq!(ids(&log), [short(&launch), short(&run)], "{log:#}");
    assert!(bed.lxd.instance_exists(&old).await.unwrap());
    assert!(!bed.lxd.instance_exists(&new).await.unwrap());
    assert!(common::zfs_exists(&zfs_of(&old)) && !common::zfs_exists(&zfs_of(&new)));
    assert!(btrfs_of(&old).is_dir() && !btrfs_of(&new).exists());
    assert_eq!(read_inside(&bed, &old, "/var/www/state").await, "kept");
    assert_eq!(
        read_inside(&bed, &old, "/var/log/app/state").await,
        "logged"
    );
    assert!(bed.reroot(&["journal", "verify"]).status.success());
}

/// The audit trail of real runs: a launch, a rebuild, its undo, a rebuild killed part-way and
/// resumed, a prune, and a rebuild that fails. `log`, `history`, `show` and `status` tell it, as text and JSON; the
/// journal is private to its owner; `journal export` carries no cloud-config text unless
/// asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_is_an_audit_trail_of_real_runs() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    const SECRET: &str = "audit-token-5c1f9e";
    let cfg = bed.dir.path().join("secret.cfg");
    std::fs::write(
        &cfg,
        format!("#cloud-config\nwrite_files:\n  - path: /etc/app-token\n    content: {SECRET}\n"),
    )
    .unwrap();
    let config = bed.config(&format!("cloud-config-files:\n  - {}\n", cfg.display()));
    let web = bed.instance();
    let tpl = |v: &str| format!("{}/base", bed.template(v));

    assert!(bed.rebuild("old", &config).status.success());
    let launch = bed.last_run();
    assert_eq!(bed.sh("cat /etc/app-token").await.trim(), SECRET);
    assert!(bed.rebuild("new", &config).status.success());
    let rebuilt = bed.last_run();
    assert!(bed.reroot(&["undo", &rebuilt]).status.success());
    // Killed right after `swap` is recorded, then resumed.
    let tpl_new = format!("tpl={}", bed.template("new"));
    let killed = bed.reroot_faulty(
        Some("swap:after-record"),
        &["rebuild", "-P", &tpl_new, config.to_str().unwrap()],
    );
    assert!(!killed.status.success());
    let resumed = bed.last_run();
    let status = stdout(&bed.reroot(&["status"]));
    assert!(
        status.starts_with(&format!("{}: interrupted", &resumed[..8])),
        "{status}"
    );
    let st: serde_json::Value =
        serde_json::from_slice(&bed.reroot(&["status", "--json"]).stdout).unwrap();
    assert_eq!(st["schema"], "reroot.status/1");
    assert_eq!(st["runs"][0]["run"]["id"], resumed);
    assert_eq!(
        st["runs"][0]["run"]["instances"][0]["result"],
        "in_progress"
    );
    assert!(bed.reroot(&["resume", &resumed]).status.success());
    assert_eq!(bed.template_version().await, "new");
    assert!(bed.reroot(&["prune", &resumed]).status.success());
    let status = stdout(&bed.reroot(&["status"]));
    assert!(status.contains("no run in progress"), "{status}");
    // A rebuild whose health check never passes: it fails at `verify` and holds the instance.
    let failing = bed.config(&format!(
        "cloud-config-files:\n  - {}\nhealth-check:\n  command: [sh, -c, 'exit 3']\n  timeout: 2\n",
        cfg.display()
    ));
    assert!(!bed.rebuild("old", &failing).status.success());
    let failed = bed.last_run();
    let status = stdout(&bed.reroot(&["status"]));
    assert!(
        status.starts_with(&format!("{}: failed; its instances are held", &failed[..8])),
        "{status}"
    );

    // log: the four runs, oldest first (an undo is recorded in the run it undoes).
    let log = stdout(&bed.reroot(&["log", &web]));
    let heads: Vec<&str> = log
        .lines()
        .filter(|l| l.len() > 10 && l[..8].bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    assert_eq!(heads.len(), 4, "{log}");
    let ids = [&launch, &rebuilt, &resumed, &failed];
    for (head, id) in heads.iter().zip(ids) {
        assert!(head.starts_with(&id[..8]), "{log}");
    }
    assert!(
        heads[0].contains("rebuild  succeeded")
            && heads[0].ends_with(&format!("now on {}", tpl("old"))),
        "{log}"
    );
    assert!(
        heads[1].contains("rebuild  undone") && !heads[1].contains("now on"),
        "{log}"
    );
    assert!(
        heads[2].contains("rebuild  succeeded, downtime ")
            && heads[2].ends_with(&format!("now on {}", tpl("new"))),
        "{log}"
    );
    assert!(
        heads[3].contains("rebuild  failed, downtime ")
            && heads[3].ends_with("(run failed)")
            && !heads[3].contains("now on"),
        "{log}"
    );
    assert!(log.contains("  step verify failed (try 1, "), "{log}");
    assert!(log.contains("  pruned: deleted retired root"), "{log}");
    let doc: serde_json::Value =
        serde_json::from_slice(&bed.reroot(&["log", &web, "--json"]).stdout).unwrap();
    assert_eq!(doc["schema"], "reroot.log/1");
    let runs = doc["runs"].as_array().unwrap();
    let results: Vec<&str> = runs.iter().map(|r| r["result"].as_str().unwrap()).collect();
    assert_eq!(results, ["succeeded", "undone", "succeeded", "failed"]);
    assert_eq!(runs[3]["failures"][0]["step"], "verify");
    assert_eq!(runs[2]["template"], tpl("new"));
    assert_eq!(runs[1]["template"], serde_json::Value::Null);
    for r in runs {
        assert!(r["started_at"].as_str().unwrap().ends_with('Z'));
        for s in r["steps"].as_array().unwrap() {
            assert!(s["output"].is_object() || s["output"].is_null(), "{s}");
        }
    }
    assert!(runs[2]["downtime_ms"].as_i64().unwrap() > 0);
    // The resumed run's swap ran once (recorded before the kill), then the rest.
    let swap = runs[2]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "swap")
        .unwrap();
    assert_eq!(swap["status"], "Succeeded");
    let newest = stdout(&bed.reroot(&["log", &web, "--newest-first"]));
    let first = newest
        .lines()
        .find(|l| l.len() > 10 && l[..8].bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap();
    assert!(first.starts_with(&failed[..8]), "{newest}");

    // history and show of the same runs.
    let history = stdout(&bed.reroot(&["history", "--instance", &web]));
    for id in ids {
        assert!(history.contains(&id[..8]), "{history}");
    }
    let shown = stdout(&bed.reroot(&["show", &resumed]));
    assert!(shown.contains("status     succeeded"), "{shown}");
    assert!(shown.contains("deleted retired root"), "{shown}");
    let shown_json = bed.reroot(&["show", &resumed, "--json"]).stdout;
    let shown: serde_json::Value = serde_json::from_slice(&shown_json).unwrap();
    assert_eq!(shown["schema"], "reroot.show/1");
    assert_eq!(shown["summary"]["results"]["succeeded"], 1, "{shown}");
    let plan = &shown["header"]["options"]["plans"][0];
    assert_eq!(plan["name"], web.as_str());
    // File contents stay out of show, log and status unless asked.
    assert_eq!(plan["cloud_config"][0]["text"], serde_json::Value::Null);
    assert_eq!(
        plan["cloud_config"][0]["text_left_out"]["bytes"],
        std::fs::metadata(&cfg).unwrap().len()
    );
    for args in [
        vec!["show", &resumed, "--json"],
        vec!["log", &web, "--json"],
        vec!["status", "--json"],
    ] {
        let out = bed.reroot(&args);
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(SECRET),
            "{args:?}"
        );
    }
    let full: serde_json::Value = serde_json::from_slice(
        &bed.reroot(&["show", &resumed, "--json", "--with-content"])
            .stdout,
    )
    .unwrap();
    assert!(
        full["header"]["options"]["plans"][0]["cloud_config"][0]["text"]
            .as_str()
            .unwrap()
            .contains(SECRET)
    );
    // The failed run, as text and JSON.
    let shown = stdout(&bed.reroot(&["show", &failed]));
    assert!(shown.contains("status     failed"), "{shown}");
    assert!(shown.contains("verify"), "{shown}");
    let shown: serde_json::Value =
        serde_json::from_slice(&bed.reroot(&["show", &failed, "--json"]).stdout).unwrap();
    assert_eq!(shown["status"], "Failed", "{shown}");
    assert_eq!(shown["summary"]["results"]["failed"], 1, "{shown}");
    let st: serde_json::Value =
        serde_json::from_slice(&bed.reroot(&["status", "--json"]).stdout).unwrap();
    assert_eq!(st["runs"][0]["run"]["id"], failed);
    assert_eq!(st["runs"][0]["run"]["status"], "Failed");
    // history --json: the four runs with their results, newest first.
    let history: serde_json::Value = serde_json::from_slice(
        &bed.reroot(&["history", "--instance", &web, "--json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(history["schema"], "reroot.history/1");
    let listed: Vec<(&str, &str)> = history["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            (failed.as_str(), "Failed"),
            (resumed.as_str(), "Succeeded"),
            (rebuilt.as_str(), "Undone"),
            (launch.as_str(), "Succeeded"),
        ],
        "{history}"
    );

    // The journal is private; an export leaves the cloud-config text out unless asked.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&bed.journal()), 0o700);
    assert_eq!(mode(&bed.journal().join("events.log")), 0o600);
    let export = bed.reroot(&["journal", "export"]);
    assert!(export.status.success());
    let text = String::from_utf8_lossy(&export.stdout);
    assert!(
        !text.contains(SECRET) && !text.contains("write_files"),
        "{text}"
    );
    assert!(text.contains("text_left_out"));
    let full = bed.reroot(&["journal", "export", "--with-content", "--instance", &web]);
    assert!(String::from_utf8_lossy(&full.stdout).contains(SECRET));
    let verify = stdout(&bed.reroot(&["journal", "verify"]));
    assert!(verify.contains("is sound: 4 runs, "), "{verify}");
}

/// lxdops #9: a config naming a profile the daemon does not have is refused by the preflight,
/// before any filesystem is made: no dataset, no btrfs subvolume, no instance, no device profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_profile_aborts_before_any_filesystem_is_made() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let missing = format!("{}-no-such-profile", bed.prefix);
    let config = bed.config("");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "profiles: [default]",
        &format!("profiles: [default, {missing}]"),
    );
    std::fs::write(&config, text).unwrap();

    let out = bed.rebuild("old", &config);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("FAILED at preflight"),
        "{}",
        stdout(&out)
    );
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        said.contains(&format!("profile {missing} is not usable")),
        "{said}"
    );
    assert!(!common::zfs_exists(&format!(
        "{}/{}/{}",
        common::ZFS_POOL,
        bed.prefix,
        bed.instance()
    )));
    let subvolume = format!("{}/{}-{}", common::BTRFS_MOUNT, bed.prefix, bed.instance());
    assert!(!Path::new(&subvolume).exists(), "{subvolume}");
    assert!(bed.instances().await.is_empty());
    let profiles = bed.lxd.list_profiles().await.expect("profiles");
    assert!(
        !profiles.iter().any(|p| p.name.starts_with(&bed.prefix)),
        "no device profile may be made"
    );
}

/// lxdops #12: `device-origin INSTANCE@SNAPSHOT` makes each non-transient ZFS filesystem a
/// clone of the same filesystem of INSTANCE at SNAPSHOT (its data is there), and a transient
/// one is created empty instead (lxops #17). A plain directory is refused by the config
/// (`src/config/tests.rs::source_config_and_device_origin`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_origin_clones_each_non_transient_zfs_filesystem() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let pool = format!("{}/{}", common::ZFS_POOL, bed.prefix);
    // The origin's filesystems, as its own config resolves them ((instance) = golden).
    let golden = format!("{pool}/golden");
    for args in [
        vec!["create", "-p", golden.as_str()],
        vec!["create", "-p", &format!("{pool}/cache-golden")],
    ] {
        assert!(Command::new("zfs").args(&args).status().unwrap().success());
    }
    std::fs::create_dir_all(format!("/{golden}/www")).unwrap();
    std::fs::write(format!("/{golden}/www/index.html"), "golden page").unwrap();
    std::fs::write(format!("/{pool}/cache-golden/c"), "cached").unwrap();
    let snap = format!("{golden}@s1");
    let cache_snap = format!("{pool}/cache-golden@s1");
    for s in [&snap, &cache_snap] {
        assert!(Command::new("zfs")
            .args(["snapshot", s])
            .status()
            .unwrap()
            .success());
    }

    let config = bed.dir.path().join(format!("{}.yaml", bed.instance()));
    std::fs::write(
        &config,
        format!(
            "#lxdops\n\
             ostype: busybox\n\
             origin: (tpl)/base\n\
             profiles: [default]\n\
             device-owner: 100000:100000\n\
             stop-timeout: 0\n\
             device-origin: golden@s1\n\
             filesystems:\n  \
               data:\n    pattern: {pool}/(instance)\n  \
               cache:\n    pattern: {pool}/cache-(instance)\n    transient: true\n\
             devices:\n  \
               www:\n    path: /var/www\n    filesystem: data\n  \
               cache:\n    path: /var/cache/app\n    filesystem: cache\n    dir: .\n"
        ),
    )
    .unwrap();
    let out = bed.rebuild("old", &config);
    assert!(out.status.success(), "{}", stderr(&out));

    let origin = |ds: &str| {
        let o = Command::new("zfs")
            .args(["get", "-H", "-o", "value", "origin", ds])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let data = format!("{pool}/{}", bed.instance());
    let cache = format!("{pool}/cache-{}", bed.instance());
    assert_eq!(origin(&data), snap);
    assert_eq!(origin(&cache), "-", "a transient filesystem is not cloned");
    assert!(!Path::new(&format!("/{cache}/c")).exists());
    assert_eq!(
        std::fs::read_to_string(format!("/{data}/www/index.html")).unwrap(),
        "golden page"
    );
}
