//! `reroot copy-filesystems` on the real testbed: an instance's filesystems from one ZFS pool
//! (and a btrfs subvolume, a plain directory) into another pool, first in full, then
//! incrementally from the snapshot the first copy left; what would overwrite is refused with
//! nothing changed; a copy killed after sending resumes to the same result.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

const POOL2: &str = common::ZFS_POOL2;

struct Bed {
    prefix: String,
    dir: tempfile::TempDir,
}

impl Bed {
    fn new() -> Bed {
        common::require_zfs();
        common::require_btrfs();
        common::require_zfs_pool2();
        Bed {
            prefix: common::unique_name("cp"),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn instance(&self) -> String {
        format!("{}-web", self.prefix)
    }

    fn journal(&self) -> PathBuf {
        self.dir.path().join("journal")
    }

    /// A config whose filesystems are on `pool` (ZFS), `side` names the btrfs and directory
    /// ones; `all: false` keeps only the ZFS one.
    fn config(&self, name: &str, pool: &str, side: &str, all: bool) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.yaml"));
        let more = if all {
            format!(
                "  logs:\n    kind: btrfs\n    pattern: /srv/reroot-btrfs/{p}-{side}-(instance)\n  \
                 files:\n    kind: dir\n    pattern: {d}/{side}/(instance)\n",
                p = self.prefix,
                d = self.dir.path().display()
            )
        } else {
            String::new()
        };
        let text = format!(
            "#lxdops\n\
             ostype: busybox\n\
             origin: tpl/base\n\
             profiles: [default]\n\
             filesystems:\n  \
               data:\n    pattern: {pool}/{p}/(instance)\n{more}\
             devices:\n  \
               www:\n    path: /var/www\n    filesystem: data\n",
            p = self.prefix,
        );
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn reroot(&self, fault: Option<&str>, args: &[&str]) -> Output {
        common::reroot_in(&self.journal(), fault, args)
    }

    fn zfs_dir(&self, pool: &str) -> PathBuf {
        PathBuf::from(format!("/{pool}/{}/{}", self.prefix, self.instance()))
    }

    fn btrfs(&self, side: &str) -> PathBuf {
        PathBuf::from(format!(
            "/srv/reroot-btrfs/{}-{side}-{}",
            self.prefix,
            self.instance()
        ))
    }

    fn plain(&self, side: &str) -> PathBuf {
        self.dir.path().join(side).join(self.instance())
    }

    /// The newest run's id.
    fn last_run(&self) -> String {
        let out = self.reroot(None, &["history", "--json"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history json");
        doc["runs"][0]["id"].as_str().expect("a run").to_string()
    }

    fn runs(&self) -> usize {
        common::run_count(&self.journal())
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        common::zfs_destroy_all(&format!("{POOL2}/{}", self.prefix));
        common::remove_everything_named(&self.prefix);
    }
}

fn run(program: &str, args: &[&str]) -> String {
    common::host(program, args)
}

fn snapshots(dataset: &str) -> Vec<String> {
    run(
        "zfs",
        &[
            "list", "-H", "-t", "snapshot", "-o", "name", "-s", "creation", "-d", "1", dataset,
        ],
    )
    .lines()
    .filter_map(|l| l.split_once('@').map(|(_, s)| s.to_string()))
    .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn copies_between_pools_in_full_then_incrementally_and_never_overwrites() {
    if !cfg!(feature = "fault-injection") {
        panic!("run the tests with --features fault-injection (scripts/test.sh does)");
    }
    let bed = Bed::new();
    let name = bed.instance();
    let from = bed.config("from", common::ZFS_POOL, "a", true);
    let to = bed.config(&name, POOL2, "b", true);
    let (from_s, to_s) = (from.to_str().unwrap(), to.to_str().unwrap());
    let source_ds = format!("{}/{}/{name}", common::ZFS_POOL, bed.prefix);
    let target_ds = format!("{POOL2}/{}/{name}", bed.prefix);

    // A missing source is refused before anything is recorded.
    // The source config is from.yaml, whose instance would be `from`: --from names it.
    let whole = [
        "copy-filesystems",
        to_s,
        "--from-config",
        from_s,
        "--from",
        &name,
    ];
    let out = bed.reroot(None, &whole);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert_eq!(bed.runs(), 0, "a refused copy records no run");

    // The source filesystems, with data.
    run("zfs", &["create", "-p", &source_ds]);
    std::fs::write(format!("/{source_ds}/index.html"), "v1").unwrap();
    run(
        "btrfs",
        &["subvolume", "create", bed.btrfs("a").to_str().unwrap()],
    );
    std::fs::write(bed.btrfs("a").join("access.log"), "GET /").unwrap();
    std::fs::create_dir_all(bed.plain("a").join("sub")).unwrap();
    std::fs::write(bed.plain("a").join("sub/upload"), "bytes").unwrap();

    // Dry run: every filesystem a full copy, nothing changed.
    let mut dry = whole.to_vec();
    dry.push("--dry-run");
    let out = bed.reroot(None, &dry);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).matches(": full").count(),
        3,
        "{}",
        stderr(&out)
    );
    assert!(!common::zfs_exists(&target_ds) && !bed.btrfs("b").exists());
    assert_eq!(bed.runs(), 0);

    // Killed after the send, before it was recorded: the resume finds every copy done.
    let out = bed.reroot(Some("copy-send:after-apply"), &whole);
    assert!(!out.status.success(), "the fault kills the run");
    let out = bed.reroot(None, &["resume"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read(&bed.zfs_dir(POOL2).join("index.html")), "v1");
    assert_eq!(read(&bed.btrfs("b").join("access.log")), "GET /");
    assert_eq!(read(&bed.plain("b").join("sub/upload")), "bytes");
    let first = snapshots(&target_ds);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].starts_with("reroot-copy-"), "{first:?}");
    assert_eq!(snapshots(&source_ds), first, "the source keeps the base");
    let sent = common::last_step_output(&bed.journal(), "copy-send");
    assert_eq!(sent["found_done"].as_array().unwrap().len(), 3, "{sent}");

    // Again with the btrfs subvolume and directory there: refused, nothing changed.
    let runs = bed.runs();
    let out = bed.reroot(None, &whole);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("never overwrites"),
        "{}",
        stderr(&out)
    );
    assert_eq!(bed.runs(), runs);

    // The ZFS dataset alone, after a change: incremental from the first copy's snapshot.
    let from_zfs = bed.config("from-zfs", common::ZFS_POOL, "a", false);
    let to_zfs = bed.config("to-zfs", POOL2, "b", false);
    let (fz, tz) = (from_zfs.to_str().unwrap(), to_zfs.to_str().unwrap());
    std::fs::write(format!("/{source_ds}/index.html"), "v2").unwrap();
    let args = [
        "copy-filesystems",
        tz,
        "--name",
        &name,
        "--from-config",
        fz,
        "--from",
        &name,
    ];
    let out = bed.reroot(None, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("incremental from @{}", first[0])),
        "{}",
        stderr(&out)
    );
    assert_eq!(read(&bed.zfs_dir(POOL2).join("index.html")), "v2");
    assert_eq!(snapshots(&target_ds).len(), 2);

    // An existing snapshot copied again: up to date, nothing sent.
    let newest = snapshots(&source_ds).pop().unwrap();
    let mut again = args.to_vec();
    again.extend(["-s", &newest, "--dry-run"]);
    let out = bed.reroot(None, &again);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("up to date"), "{}", stderr(&out));

    // A target with a snapshot of its own, newer than the shared one: refused before a run.
    run("zfs", &["snapshot", &format!("{target_ds}@mine")]);
    let runs = bed.runs();
    let out = bed.reroot(None, &args);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("newest snapshot @mine is not the source's"),
        "{}",
        stderr(&out)
    );
    assert_eq!(bed.runs(), runs);
    assert_eq!(read(&bed.zfs_dir(POOL2).join("index.html")), "v2");

    // A copy is not undone: what it received is the target's data.
    let out = bed.reroot(None, &["undo", &bed.last_run()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("destroy"), "{}", stderr(&out));
    assert_eq!(read(&bed.zfs_dir(POOL2).join("index.html")), "v2");
}
