//! `reroot copy-filesystems` over ssh, against the testbed's real sshd on 127.0.0.1:2222
//! (scripts/testbed.sh: root's key and known_hosts under `$REROOT_TESTBED_DIR/ssh`): an
//! instance's ZFS dataset sent to "another host" (`--to-host`) into the second pool, in full,
//! then incrementally (killed after the send and resumed), then fetched back from it
//! (`--from-host`) under another prefix; btrfs subvolumes and directories refused over ssh;
//! a port nothing listens on, a key the host refuses, an unknown host key and a host that
//! never answers each refused before a run is recorded, with nothing made on the target.
//!
//! The loopback is "another host" for reroot: every command on it goes through `ssh`, as it
//! would to a backup machine. No LXD instance is needed (the target instance is absent).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const POOL2: &str = common::ZFS_POOL2;
const HOST: &str = "root@127.0.0.1";
const PORT: u16 = 2222;

/// Where the testbed keeps the client key and known_hosts.
fn ssh_dir() -> PathBuf {
    std::env::var_os("REROOT_TESTBED_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/reroot-testbed"))
        .join("ssh")
}

/// The `-o` options that reach the testbed's sshd, as `KEY=VALUE` (without `Port`).
fn key_options() -> Vec<String> {
    let dir = ssh_dir();
    vec![
        format!("IdentityFile={}", dir.join("id_ed25519").display()),
        format!("UserKnownHostsFile={}", dir.join("known_hosts").display()),
    ]
}

/// Fails (never skips) unless root logs in to the testbed's sshd with its key, as reroot
/// will (BatchMode: nothing is asked).
fn require_sshd() {
    let dir = ssh_dir();
    for f in ["id_ed25519", "known_hosts"] {
        assert!(
            dir.join(f).is_file(),
            "{} is missing: run scripts/testbed.sh (it sets up sshd on 127.0.0.1:{PORT})",
            dir.join(f).display()
        );
    }
    let mut cmd = Command::new("ssh");
    cmd.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"])
        .args(["-o", &format!("Port={PORT}")]);
    for o in key_options() {
        cmd.args(["-o", &o]);
    }
    let out = cmd
        .args(["--", HOST, "true"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run ssh ({e}): run scripts/testbed.sh"));
    assert!(
        out.status.success(),
        "sshd on 127.0.0.1:{PORT} does not let root in with {}: {}: run scripts/testbed.sh",
        dir.join("id_ed25519").display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

struct Bed {
    prefix: String,
    dir: tempfile::TempDir,
}

impl Bed {
    fn new() -> Bed {
        common::require_zfs();
        require_sshd();
        common::require_zfs_pool2();
        Bed {
            prefix: common::unique_name("cps"),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn instance(&self) -> String {
        format!("{}-web", self.prefix)
    }

    fn journal(&self) -> PathBuf {
        self.dir.path().join("journal")
    }

    /// A config whose one filesystem `data` is `LOCATION(instance)`, written as `name.yaml`.
    /// `kind` is `zfs` (LOCATION a dataset prefix), `btrfs` or `dir` (a path's start).
    fn config(&self, name: &str, kind: &str, location: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.yaml"));
        let kind = if kind == "zfs" {
            String::new()
        } else {
            format!("    kind: {kind}\n")
        };
        let text = format!(
            "#lxdops\n\
             ostype: busybox\n\
             origin: tpl/base\n\
             profiles: [default]\n\
             filesystems:\n  \
               data:\n{kind}    pattern: {location}(instance)\n\
             devices:\n  \
               www:\n    path: /var/www\n    filesystem: data\n"
        );
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// `reroot copy-filesystems TO --name I --from-config FROM --from I` with `more`, and
    /// `--ssh-option` for each of `options` (the port first).
    fn copy(
        &self,
        fault: Option<&str>,
        to: &Path,
        from: &Path,
        more: &[&str],
        options: &[String],
    ) -> Output {
        let name = self.instance();
        let mut args: Vec<String> = vec![
            "copy-filesystems".into(),
            to.display().to_string(),
            "--name".into(),
            name.clone(),
            "--from-config".into(),
            from.display().to_string(),
            "--from".into(),
            name,
        ];
        args.extend(more.iter().map(|s| s.to_string()));
        for o in options {
            args.push("--ssh-option".into());
            args.push(o.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::reroot_in(&self.journal(), fault, &args)
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

/// The options that reach the testbed's sshd.
fn reaching() -> Vec<String> {
    let mut o = vec![format!("Port={PORT}")];
    o.extend(key_options());
    o
}

fn run(program: &str, args: &[&str]) -> String {
    common::host(program, args)
}

/// The snapshots of `dataset`, oldest first, each with its GUID (the same data on both sides
/// only if the GUIDs match).
fn snapshots(dataset: &str) -> Vec<(String, String)> {
    let names: Vec<String> = run(
        "zfs",
        &[
            "list", "-H", "-t", "snapshot", "-o", "name", "-s", "creation", "-d", "1", dataset,
        ],
    )
    .lines()
    .map(|l| l.trim().to_string())
    .filter(|l| l.contains('@'))
    .collect();
    names
        .iter()
        .map(|full| {
            let guid = run("zfs", &["get", "-H", "-p", "-o", "value", "guid", full]);
            let (_, snap) = full.split_once('@').unwrap();
            (snap.to_string(), guid.trim().to_string())
        })
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn require_fault_injection() {
    if !cfg!(feature = "fault-injection") {
        panic!("run the tests with --features fault-injection (scripts/test.sh does)");
    }
}

#[test]
fn a_zfs_dataset_goes_to_another_host_in_full_then_incrementally_and_comes_back() {
    require_fault_injection();
    let bed = Bed::new();
    let name = bed.instance();
    let p = &bed.prefix;
    let from = bed.config("from", "zfs", &format!("{}/{p}/", common::ZFS_POOL));
    let to = bed.config("to", "zfs", &format!("{POOL2}/{p}/"));
    let source_ds = format!("{}/{p}/{name}", common::ZFS_POOL);
    let target_ds = format!("{POOL2}/{p}/{name}");
    let to_host = ["--to-host", HOST];

    run("zfs", &["create", "-p", &source_ds]);
    std::fs::create_dir_all(format!("/{source_ds}/sub")).unwrap();
    std::fs::write(format!("/{source_ds}/index.html"), "v1").unwrap();
    std::fs::write(format!("/{source_ds}/sub/it's here"), "quoted").unwrap();
    // In full: the dataset arrives on the other host with the run's snapshot, the same
    // snapshot (GUID) the source keeps as the base of the next copy.
    let started = Instant::now();
    let out = bed.copy(None, &to, &from, &to_host, &reaching());
    assert!(out.status.success(), "{}", stderr(&out));
    eprintln!("full copy over ssh: {:?}", started.elapsed());
    assert!(
        stderr(&out).contains(&format!("(host {HOST}): full")),
        "{}",
        stderr(&out)
    );
    assert_eq!(read(Path::new(&format!("/{target_ds}/index.html"))), "v1");
    assert_eq!(
        read(Path::new(&format!("/{target_ds}/sub/it's here"))),
        "quoted"
    );
    // Read between copies, as a check of a backup would: the copy has atime off (set over
    // ssh by the run), so the reads above do not make the next incremental receive refuse.
    assert_eq!(
        run("zfs", &["get", "-H", "-o", "value", "atime", &target_ds]).trim(),
        "off"
    );
    let first = snapshots(&target_ds);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].0.starts_with("reroot-copy-"), "{first:?}");
    assert_eq!(
        snapshots(&source_ds),
        first,
        "the same snapshot on both sides"
    );
    assert_eq!(bed.runs(), 1);

    // After a change: incremental from that snapshot, killed after the send was received
    // (before it was recorded) and resumed over ssh, which finds it done.
    std::fs::write(format!("/{source_ds}/index.html"), "v2").unwrap();
    std::fs::write(format!("/{source_ds}/new"), "added").unwrap();
    let out = bed.copy(
        Some("copy-send:after-apply"),
        &to,
        &from,
        &to_host,
        &reaching(),
    );
    assert!(!out.status.success(), "the fault kills the run");
    assert!(
        stderr(&out).contains(&format!("incremental from @{}", first[0].0)),
        "{}",
        stderr(&out)
    );
    let out = common::reroot_in(&bed.journal(), None, &["resume"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        common::last_step_output(&bed.journal(), "copy-send")["found_done"],
        serde_json::json!(["data"])
    );
    // The mounted copy shows the received data without a remount of ours (the run remounts
    // it: zfs-fuse serves a file read before the receive from its cache until then).
    assert_eq!(read(Path::new(&format!("/{target_ds}/index.html"))), "v2");
    assert_eq!(read(Path::new(&format!("/{target_ds}/new"))), "added");
    let second = snapshots(&target_ds);
    assert_eq!(second.len(), 2, "{second:?}");
    assert_eq!(snapshots(&source_ds), second);

    // Copied again at that snapshot: up to date, nothing sent.
    let out = bed.copy(
        None,
        &to,
        &from,
        &["--to-host", HOST, "-s", &second[1].0, "--dry-run"],
        &reaching(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("up to date"), "{}", stderr(&out));
    assert_eq!(bed.runs(), 2);

    // Back from the other host (`--from-host`) into this machine's pool under another prefix:
    // the remote dataset is the source, snapshotted there by the run.
    let back = bed.config("back", "zfs", &format!("{}/{p}/back/", common::ZFS_POOL));
    let back_ds = format!("{}/{p}/back/{name}", common::ZFS_POOL);
    let out = bed.copy(None, &back, &to, &["--from-host", HOST], &reaching());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "(host {HOST}) -> zfs dataset {back_ds} (this machine): full"
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(read(Path::new(&format!("/{back_ds}/index.html"))), "v2");
    assert_eq!(read(Path::new(&format!("/{back_ds}/new"))), "added");
    let there = snapshots(&target_ds);
    assert_eq!(
        there.len(),
        3,
        "the run took its snapshot on the remote side"
    );
    assert_eq!(snapshots(&back_ds), there[2..].to_vec());
    assert_eq!(bed.runs(), 3);
}

#[test]
fn btrfs_subvolumes_and_directories_are_refused_over_ssh_before_a_run() {
    common::require_btrfs();
    let bed = Bed::new();
    let p = &bed.prefix;
    // `MOUNT/PREFIX-a-(instance)`: at the mount's top level, where the bed's cleanup looks.
    let (a, b) = (
        format!("{}/{p}-a-", common::BTRFS_MOUNT),
        format!("{}/{p}-b-", common::BTRFS_MOUNT),
    );
    let from = bed.config("from", "btrfs", &a);
    let to = bed.config("to", "btrfs", &b);
    let source = PathBuf::from(format!("{a}{}", bed.instance()));
    let target = PathBuf::from(format!("{b}{}", bed.instance()));
    run("btrfs", &["subvolume", "create", source.to_str().unwrap()]);
    std::fs::write(source.join("access.log"), "GET /").unwrap();

    for side in ["--to-host", "--from-host"] {
        let out = bed.copy(None, &to, &from, &[side, HOST], &reaching());
        assert!(!out.status.success(), "{side}");
        assert!(
            stderr(&out).contains("a btrfs subvolume is copied on this machine only"),
            "{side}: {}",
            stderr(&out)
        );
        assert!(!target.exists(), "{side}: nothing made");
    }

    let dirs = bed.dir.path().join("dirs");
    std::fs::create_dir_all(dirs.join("a").join(bed.instance())).unwrap();
    std::fs::write(dirs.join("a").join(bed.instance()).join("f"), "x").unwrap();
    let from = bed.config("from-dir", "dir", &format!("{}/", dirs.join("a").display()));
    let to = bed.config("to-dir", "dir", &format!("{}/", dirs.join("b").display()));
    let out = bed.copy(None, &to, &from, &["--to-host", HOST], &reaching());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("a plain directory is copied on this machine only"),
        "{}",
        stderr(&out)
    );
    assert!(!dirs.join("b").exists(), "nothing made");
    assert_eq!(bed.runs(), 0, "a refused copy records no run");
}

/// A listener that accepts connections and never says anything (a host whose sshd hangs).
fn silent_listener() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    port
}

#[test]
fn a_host_ssh_cannot_reach_or_log_in_to_is_refused_before_a_run_with_nothing_made() {
    let bed = Bed::new();
    let p = &bed.prefix;
    let name = bed.instance();
    let from = bed.config("from", "zfs", &format!("{}/{p}/", common::ZFS_POOL));
    let to = bed.config("to", "zfs", &format!("{POOL2}/{p}/"));
    let source_ds = format!("{}/{p}/{name}", common::ZFS_POOL);
    run("zfs", &["create", "-p", &source_ds]);
    std::fs::write(format!("/{source_ds}/index.html"), "v1").unwrap();
    let target_parent = format!("{POOL2}/{p}");

    let stranger = bed.dir.path().join("stranger");
    run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            stranger.to_str().unwrap(),
        ],
    );
    let nobody_known = bed.dir.path().join("known_hosts_empty");
    std::fs::write(&nobody_known, "").unwrap();
    let with = |port: u16, key: &Path, known: &Path| {
        vec![
            format!("Port={port}"),
            format!("IdentityFile={}", key.display()),
            format!("UserKnownHostsFile={}", known.display()),
        ]
    };
    let (key, known) = (ssh_dir().join("id_ed25519"), ssh_dir().join("known_hosts"));
    let silent = silent_listener();
    let cases: Vec<(&str, &str, Vec<String>, &str)> = vec![
        (
            "--to-host",
            "nothing listens",
            with(1, &key, &known),
            "port 1: Connection refused",
        ),
        (
            "--from-host",
            "nothing listens",
            with(1, &key, &known),
            "port 1: Connection refused",
        ),
        (
            "--to-host",
            "a key it refuses",
            with(PORT, &stranger, &known),
            "Permission denied (publickey",
        ),
        (
            "--to-host",
            "an unknown host key",
            with(PORT, &key, &nobody_known),
            "Host key verification failed",
        ),
        // No answer at all: ssh's ConnectTimeout (reroot's default, 15 s) says so before the
        // command's own bound (60 s) would kill it without a reason.
        (
            "--to-host",
            "a host that never answers",
            with(silent, &key, &known),
            "banner exchange",
        ),
    ];
    for (side, what, options, says) in cases {
        let started = Instant::now();
        let out = bed.copy(None, &to, &from, &[side, HOST], &options);
        let took = started.elapsed();
        let err = stderr(&out);
        assert!(!out.status.success(), "{what}: {err}");
        assert!(err.contains(says), "{what}: {err}");
        assert!(err.contains("ssh") && err.contains(HOST), "{what}: {err}");
        assert!(took < Duration::from_secs(40), "{what}: took {took:?}");
        assert_eq!(bed.runs(), 0, "{what}: no run recorded");
        assert!(
            !common::zfs_exists(&target_parent),
            "{what}: nothing made on the target"
        );
        assert_eq!(snapshots(&source_ds), vec![], "{what}: no snapshot taken");
    }
}
