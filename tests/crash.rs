//! Crash safety of `reroot rebuild`, proved on the real LXD daemon of the testbed with real
//! ZFS (zfs-fuse) and btrfs filesystems, no mocks.
//!
//! The real binary is made to die at every fault point of every step (`REROOT_FAULT`, compiled
//! in by the `fault-injection` feature), during its undo, by SIGKILL at random times, and while
//! the LXD daemon restarts. After each crash `reroot resume` or `reroot undo` must leave every
//! instance whole: exactly one instance under its name, running, on the expected template, its
//! data on the external filesystems byte for byte what it was, nothing stray left behind once
//! the run is pruned or undone, and a journal that verifies.
//!
//! Run: `cargo test --features fault-injection --test crash -- --nocapture` (scripts/test.sh
//! does). Every test FAILS when LXD, the ZFS pool, the btrfs mount or the feature is missing.
//! The tests of this file run one at a time (they share [`LXD_LOCK`]); each makes its own
//! templates and instances under unique names and removes everything it made, even on failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    daemon, lxd_client, lxd_options, lxd_socket, remove_instance, require_btrfs, require_zfs,
    BTRFS_MOUNT, LXD_LOCK, ZFS_POOL,
};
use reroot::engine::Moment;
use reroot::lxd::{Client, ExecRequest, NewInstance};
use reroot::steps::{rebuild_pipeline, RUN_KEY};
use sha2::{Digest, Sha256};

/// The binary under test, built by cargo with this test's features.
const REROOT: &str = env!("CARGO_BIN_EXE_reroot");
/// The longest any one reroot command may take before the test calls it a hang.
const COMMAND_BOUND: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// Preconditions: a missing piece is a failure, never a skip.

fn require_fault_injection() {
    if !cfg!(feature = "fault-injection") {
        panic!("run the tests with --features fault-injection (scripts/test.sh does)");
    }
}

/// Checks the feature, LXD with both test images, the pool and the btrfs mount.
async fn require_testbed() -> Client {
    require_fault_injection();
    let client = lxd_client().await;
    for alias in ["reroot-old", "reroot-new"] {
        if let Err(e) = client.get_image_alias(alias).await {
            panic!(
                "{} has no image {alias} ({e}): run scripts/testbed.sh",
                daemon()
            );
        }
    }
    require_zfs();
    require_btrfs();
    client
}

// ---------------------------------------------------------------------------------------------
// Small tools.

/// A seeded pseudo-random generator (splitmix64): the seed is printed so a run can be replayed.
struct Rng(u64);

impl Rng {
    fn seeded(what: &str) -> Rng {
        let seed = std::env::var("REROOT_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("crash: {what}: seed {seed} (replay with REROOT_CRASH_SEED={seed})");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The other template version.
fn other(version: &str) -> &'static str {
    if version == "old" {
        "new"
    } else {
        "old"
    }
}

/// Every step of the rebuild pipeline, in order.
fn step_names() -> Vec<&'static str> {
    rebuild_pipeline().iter().map(|s| s.name()).collect()
}

// ---------------------------------------------------------------------------------------------
// Running the binary.

/// How a reroot command ended.
#[derive(Debug)]
struct Ran {
    /// What was run (for messages).
    what: String,
    /// Exit code; `None` when a signal ended it.
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// The test killed it.
    killed: bool,
}

impl Ran {
    fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics unless it exited 0.
    fn ok(self) -> Ran {
        assert!(self.success(), "`{}` failed:\n{self}", self.what);
        self
    }

    /// True if it died at the injected fault `point` (`STEP:MOMENT`); false if it failed
    /// before reaching it (LXD failed an operation: the run failed cleanly). Panics if it
    /// finished: a fault point the pipeline never passes.
    fn crashed_at(&self, point: &str) -> bool {
        assert!(
            !self.success(),
            "`{}` should have died at {point} but finished:\n{self}",
            self.what
        );
        self.stderr.contains(&format!("fault injected at {point}:"))
    }
}

/// Reports an attempt whose rebuild failed before its fault point (the run was finished and
/// checked all the same; the scenario is tried again).
fn missed(context: &str, attempt: usize, ran: &Ran) {
    eprintln!(
        "crash: {context}: attempt {attempt} failed before its fault point (LXD); \
         finished and checked, trying again:\n{ran}"
    );
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}{}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            if self.killed { " (killed)" } else { "" },
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// A reroot process under way; its output goes to files (no pipe can fill up).
struct Running {
    what: String,
    child: tokio::process::Child,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
}

/// How an interrupted run is finished.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Finish {
    /// `reroot resume` (forward, or the undo already begun).
    Resume,
    /// `reroot undo RUN`.
    Undo,
}

/// A journal in its own temporary directory, with room beside it for command output.
struct Journal {
    dir: tempfile::TempDir,
    commands: std::sync::atomic::AtomicUsize,
    /// The lxc client configuration the processes read their remotes from (`LXD_CONF`).
    conf: Option<PathBuf>,
}

impl Journal {
    fn new() -> Journal {
        Journal {
            dir: tempfile::tempdir().expect("temporary directory"),
            commands: Default::default(),
            conf: None,
        }
    }

    /// A journal whose processes find their remotes in the lxc client configuration `conf`.
    fn with_conf(conf: PathBuf) -> Journal {
        Journal {
            conf: Some(conf),
            ..Journal::new()
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("journal")
    }

    /// Starts `reroot --journal J ARGS...`, with `REROOT_FAULT=fault` if given.
    fn spawn(&self, args: &[&str], fault: Option<&str>) -> Running {
        self.spawn_failing(args, fault, None)
    }

    /// Like [`Journal::spawn`], with `REROOT_FAIL=fail` (`STEP:INSTANCE` fails every time).
    fn spawn_failing(&self, args: &[&str], fault: Option<&str>, fail: Option<&str>) -> Running {
        self.spawn_as(args, fault, fail, self.conf.as_deref())
    }

    /// Runs a command to its end (bounded), its remotes read from the client configuration
    /// `conf` instead of this journal's.
    async fn run_with_conf(&self, args: &[&str], conf: &std::path::Path) -> Ran {
        self.spawn_as(args, None, None, Some(conf))
            .wait(COMMAND_BOUND)
            .await
    }

    fn spawn_as(
        &self,
        args: &[&str],
        fault: Option<&str>,
        fail: Option<&str>,
        conf: Option<&std::path::Path>,
    ) -> Running {
        let n = self
            .commands
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let out = self.dir.path().join(format!("{n}.out"));
        let err = self.dir.path().join(format!("{n}.err"));
        let mut cmd = tokio::process::Command::new(REROOT);
        cmd.arg("--journal")
            .arg(self.path())
            .args(args)
            .env_remove("REROOT_FAULT")
            .env_remove("REROOT_FAIL")
            .env_remove("REROOT_JOURNAL")
            .env("REROOT_SOCKET", lxd_socket())
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("create output file"))
            .stderr(std::fs::File::create(&err).expect("create output file"))
            .kill_on_drop(true);
        if let Some(f) = fault {
            cmd.env("REROOT_FAULT", f);
        }
        if let Some(conf) = conf {
            cmd.env("LXD_CONF", conf).env_remove("INCUS_CONF");
        }
        if let Some(f) = fail {
            cmd.env("REROOT_FAIL", f);
        }
        let what = format!(
            "reroot {}{}{}",
            args.join(" "),
            fault
                .map(|f| format!(" [REROOT_FAULT={f}]"))
                .unwrap_or_default(),
            fail.map(|f| format!(" [REROOT_FAIL={f}]"))
                .unwrap_or_default()
        );
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {REROOT}: {e}"));
        Running {
            what,
            child,
            out,
            err,
            started: Instant::now(),
        }
    }

    /// Runs a reroot command to its end (bounded).
    async fn run(&self, args: &[&str], fault: Option<&str>) -> Ran {
        self.spawn(args, fault).wait(COMMAND_BOUND).await
    }

    /// The ids of the runs in this journal, newest first.
    async fn runs(&self) -> Vec<String> {
        let ran = self.run(&["--json", "history"], None).await.ok();
        let list: serde_json::Value = serde_json::from_str(&ran.stdout)
            .unwrap_or_else(|e| panic!("history --json is not JSON ({e}):\n{ran}"));
        list["runs"]
            .as_array()
            .unwrap_or_else(|| panic!("history --json has no list of runs:\n{ran}"))
            .iter()
            .map(|r| {
                r["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("a run without id:\n{ran}"))
                    .to_string()
            })
            .collect()
    }

    /// The one run of this journal.
    async fn only_run(&self) -> String {
        self.the_run()
            .await
            .unwrap_or_else(|| panic!("journal {} holds no run", self.path().display()))
    }

    /// The run of this journal, if one was recorded (at most one).
    async fn the_run(&self) -> Option<String> {
        let runs = self.runs().await;
        assert!(
            runs.len() <= 1,
            "this journal should hold one run: {runs:?}"
        );
        runs.into_iter().next()
    }

    /// Finishes an interrupted run with `reroot resume` or `reroot undo RUN`. Another try is
    /// allowed when LXD itself failed an operation (seen on this testbed: a start whose hook
    /// stalls the daemon for ~90 s): that is a failed run, which the next command continues.
    async fn finish(&self, run: &str, how: Finish, context: &str) {
        let mut last = None;
        for attempt in 1..=ATTEMPTS {
            let args: &[&str] = match how {
                Finish::Resume if attempt == 1 => &["resume"],
                Finish::Resume => &["resume", run],
                Finish::Undo => &["undo", run],
            };
            let ran = self.run(args, None).await;
            if ran.success() {
                return;
            }
            eprintln!(
                "crash: {context}: attempt {attempt} to finish run {run} failed:\n{ran}\n{}",
                self.detail(run).await
            );
            last = Some(ran);
        }
        panic!(
            "{context}: run {run} could not be finished in {ATTEMPTS} attempts; last:\n{}",
            last.map(|r| r.to_string()).unwrap_or_default()
        );
    }

    /// The run as `reroot show RUN --json` gives it.
    async fn show(&self, run: &str) -> serde_json::Value {
        let ran = self.run(&["--json", "show", run], None).await.ok();
        serde_json::from_str(&ran.stdout)
            .unwrap_or_else(|e| panic!("show --json is not JSON ({e}):\n{ran}"))
    }

    /// The run's status word (`Succeeded`, `Undone`, `Failed`, `Running`, ...).
    async fn status(&self, run: &str) -> String {
        let shown = self.show(run).await;
        shown["status"]
            .as_str()
            .unwrap_or_else(|| panic!("show --json has no status: {shown}"))
            .to_string()
    }

    /// `reroot show RUN` as text (for failure messages).
    async fn detail(&self, run: &str) -> String {
        self.run(&["show", run], None).await.stdout
    }

    /// `reroot journal verify` must pass.
    async fn verify(&self, context: &str) {
        let ran = self.run(&["journal", "verify"], None).await;
        assert!(ran.success(), "{context}: journal verify failed:\n{ran}");
    }
}

impl Running {
    /// Waits for the end, at most `bound`; a process still running then is a hang: killed, and
    /// the test fails.
    async fn wait(mut self, bound: Duration) -> Ran {
        match tokio::time::timeout(bound, self.child.wait()).await {
            Ok(status) => {
                let status = status.expect("wait for reroot");
                self.collect(status.code(), false)
            }
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                let ran = self.collect(None, true);
                panic!("`{}` hung: still running after {bound:?}:\n{ran}", ran.what);
            }
        }
    }

    /// True while the process has not ended.
    fn still_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process with SIGKILL after `delay` unless it ended before.
    async fn kill_after(mut self, delay: Duration) -> Ran {
        match tokio::time::timeout(delay, self.child.wait()).await {
            Ok(status) => {
                let status = status.expect("wait for reroot");
                self.collect(status.code(), false)
            }
            Err(_) => {
                let _ = self.child.start_kill();
                let status = self.child.wait().await.expect("wait for killed reroot");
                self.collect(status.code(), true)
            }
        }
    }

    fn collect(&self, code: Option<i32>, killed: bool) -> Ran {
        Ran {
            what: format!(
                "{} ({:.1} s)",
                self.what,
                self.started.elapsed().as_secs_f64()
            ),
            code,
            stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
            killed,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The test bed: templates, instance configs, and the guard that removes everything.

/// Removes, when dropped (also while a failed test unwinds), everything named after the bed's
/// unique id: instances (retired and temporary ones included), device profiles, the ZFS
/// datasets, the btrfs subvolumes and their snapshots.
struct Cleanup {
    hex: String,
    /// The socket of the daemon the bed made its instances on.
    socket: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let hex = self.hex.clone();
        let options = reroot::lxd::ConnectOptions {
            socket: Some(self.socket.clone()),
            ..lxd_options()
        };
        let worker = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return eprintln!("cleanup: no runtime: {e}"),
            };
            rt.block_on(async {
                match Client::connect(options).await {
                    Ok(client) => cleanup_lxd(&client, &hex).await,
                    Err(e) => eprintln!("cleanup: cannot connect to LXD: {e}"),
                }
            });
            cleanup_storage(&hex);
        });
        let _ = worker.join();
    }
}

/// True for the names of LXD objects a bed made.
fn is_ours(name: &str, hex: &str) -> bool {
    name.starts_with(&format!("rt-{hex}-")) || name.starts_with(&format!("rt-tpl-{hex}-"))
}

async fn cleanup_lxd(client: &Client, hex: &str) {
    match client.list_instance_names().await {
        Ok(names) => {
            // Instances first (the templates last: copies may still refer to them).
            let (tpls, insts): (Vec<_>, Vec<_>) = names
                .into_iter()
                .filter(|n| is_ours(n, hex))
                .partition(|n| n.starts_with("rt-tpl-"));
            for name in insts.iter().chain(&tpls) {
                if let Err(e) = remove_instance(client, name).await {
                    eprintln!("cleanup: instance {name}: {e}");
                }
            }
        }
        Err(e) => eprintln!("cleanup: cannot list instances: {e}"),
    }
    match client.list_profiles().await {
        Ok(profiles) => {
            for p in profiles.iter().filter(|p| is_ours(&p.name, hex)) {
                if let Err(e) = client.delete_profile(&p.name).await {
                    eprintln!("cleanup: profile {}: {e}", p.name);
                }
            }
        }
        Err(e) => eprintln!("cleanup: cannot list profiles: {e}"),
    }
}

fn cleanup_storage(hex: &str) {
    let dataset = format!("{ZFS_POOL}/rt-{hex}");
    common::zfs_destroy_all(&dataset);
    let Ok(entries) = std::fs::read_dir(BTRFS_MOUNT) else {
        return;
    };
    let prefixes = [format!("rt-{hex}-"), format!(".rt-{hex}-")];
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            continue;
        }
        let path = entry.path();
        let out = std::process::Command::new("btrfs")
            .args(["subvolume", "delete"])
            .arg(&path)
            .output();
        if !out.is_ok_and(|o| o.status.success()) {
            let _ = std::fs::remove_dir_all(&path);
        }
        if path.exists() {
            eprintln!("cleanup: could not remove {}", path.display());
        }
    }
}

/// One test's world: two templates (`old` from image reroot-old, `new` from reroot-new, each
/// with snapshot `base`), a directory of instance configs, and the cleanup guard.
struct Bed {
    hex: String,
    client: Client,
    dir: tempfile::TempDir,
    /// The remote its instances' configs name (`remote:`), if reroot reaches it as one.
    remote: Option<String>,
    _cleanup: Cleanup,
}

/// An instance of a bed, with the data files written into its devices so far.
struct Inst {
    name: String,
    config: PathBuf,
    data: Vec<DataFile>,
    /// Each device: its path inside the container and its directory on the host.
    mounts: Vec<(String, PathBuf)>,
}

/// A file written from inside the container onto an external filesystem.
struct DataFile {
    /// Its path on the host.
    host: PathBuf,
    /// Its path inside the container.
    inside: String,
    sha256: String,
}

const CLOUD_CONFIG: &str = "#cloud-config
# Early file (pushed before the start), deferred file and runcmd (applied once it runs).
write_files:
  - path: /etc/rt-early
    content: early
  - path: /etc/rt-deferred
    defer: true
    content: deferred
runcmd:
  - [sh, -c, \"echo ran > /etc/rt-runcmd\"]
";

impl Bed {
    async fn new() -> Bed {
        let client = require_testbed().await;
        let hex = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        Bed::made(client, hex, lxd_socket(), None).await
    }

    /// A bed on the testbed's other daemon (Incus when the suite runs on LXD, LXD when on
    /// Incus), which reroot reaches over HTTPS as the remote `remote` of the testbed's client
    /// configuration; its templates have the same names as those of `first`.
    async fn other(first: &Bed) -> Bed {
        let (socket, remote) = match daemon() {
            common::Daemon::Lxd => ("/var/lib/incus/unix.socket", "incus-loopback"),
            common::Daemon::Incus => ("/var/lib/lxd/unix.socket", "loopback"),
        };
        let options = reroot::lxd::ConnectOptions {
            socket: Some(PathBuf::from(socket)),
            ..lxd_options()
        };
        let client = Client::connect(options).await.unwrap_or_else(|e| {
            panic!("the other daemon at {socket} does not answer ({e}): run scripts/testbed.sh")
        });
        Bed::made(
            client,
            first.hex.clone(),
            socket.into(),
            Some(remote.into()),
        )
        .await
    }

    async fn made(client: Client, hex: String, socket: PathBuf, remote: Option<String>) -> Bed {
        let bed = Bed {
            hex: hex.clone(),
            client,
            dir: tempfile::tempdir().expect("temporary directory"),
            remote,
            _cleanup: Cleanup { hex, socket },
        };
        for (version, image) in [("old", "reroot-old"), ("new", "reroot-new")] {
            let name = bed.template(version);
            bed.client
                .create_instance(&NewInstance::from_image_alias(&name, image))
                .await
                .unwrap_or_else(|e| panic!("create template {name} from {image}: {e}"));
            bed.client
                .create_snapshot(&name, "base", None)
                .await
                .unwrap_or_else(|e| panic!("snapshot {name}/base: {e}"));
        }
        std::fs::write(bed.dir.path().join("crash.cfg"), CLOUD_CONFIG).expect("write crash.cfg");
        bed
    }

    /// The template instance of a version (`old` or `new`).
    fn template(&self, version: &str) -> String {
        let letter = if version == "old" { "a" } else { "b" };
        format!("rt-tpl-{}-{letter}", self.hex)
    }

    /// `-P tpl=<template of version>`.
    fn tpl_property(&self, version: &str) -> String {
        format!("tpl={}", self.template(version))
    }

    /// Writes the config of instance `rt-<hex>-<tag>`.
    fn instance(&self, tag: &str) -> Inst {
        let name = format!("rt-{}-{tag}", self.hex);
        let config = self.dir.path().join(format!("{name}.yaml"));
        let text = format!(
            "#lxdops
# crash test instance {name}
ostype: busybox
origin: (tpl)/base
profiles: [default]
device-owner: 100000:100000
stop-timeout: 0
filesystems:
  zdata:
    pattern: {ZFS_POOL}/rt-{hex}/(instance)
  bdata:
    kind: btrfs
    pattern: {BTRFS_MOUNT}/rt-{hex}-(instance)
devices:
  zdata:
    path: /srv/zdata
    filesystem: zdata
  bdata:
    path: /srv/bdata
    filesystem: bdata
cloud-config-files:
  - crash.cfg
",
            hex = self.hex
        );
        std::fs::write(&config, text).expect("write instance config");
        Inst {
            mounts: vec![
                (
                    "/srv/zdata".into(),
                    PathBuf::from(format!("/{ZFS_POOL}/rt-{}/{name}/zdata", self.hex)),
                ),
                (
                    "/srv/bdata".into(),
                    PathBuf::from(format!("{BTRFS_MOUNT}/rt-{}-{name}/bdata", self.hex)),
                ),
            ],
            name,
            config,
            data: Vec::new(),
        }
    }

    /// Writes the config of a light instance `rt-<hex>-<tag>`, as a fleet of websites has
    /// them: its data on a plain directory, the same cloud-config as the others.
    fn light_instance(&self, tag: &str) -> Inst {
        let name = format!("rt-{}-{tag}", self.hex);
        let config = self.dir.path().join(format!("{name}.yaml"));
        let root = self.dir.path().join("fs");
        let text = format!(
            "#lxdops
ostype: busybox
origin: (tpl)/base
profiles: [default]
device-owner: 100000:100000
stop-timeout: 0
filesystems:
  data:
    kind: dir
    pattern: {}/(instance)
devices:
  data:
    path: /srv/data
    filesystem: data
cloud-config-files:
  - crash.cfg
{}",
            root.display(),
            self.remote
                .as_ref()
                .map(|r| format!("remote: {r}\n"))
                .unwrap_or_default()
        );
        std::fs::write(&config, text).expect("write instance config");
        Inst {
            mounts: vec![("/srv/data".into(), root.join(&name).join("data"))],
            name,
            config,
            data: Vec::new(),
        }
    }

    /// Launches the instances on the `old` template (a plain rebuild, no fault) and writes a
    /// first data file into each; returns the run.
    async fn launch(&self, insts: &mut [&mut Inst]) -> String {
        let journal = Journal::new();
        let tpl = self.tpl_property("old");
        let mut args = vec!["rebuild", "--parallel", "2", "-P", &tpl];
        let configs: Vec<String> = insts
            .iter()
            .map(|i| i.config.display().to_string())
            .collect();
        args.extend(configs.iter().map(String::as_str));
        journal.run(&args, None).await.ok();
        let run = journal.only_run().await;
        for inst in insts.iter_mut() {
            self.write_data(inst, "launch").await;
            self.check_live(inst, "old", Root::Run(&run), "after launch")
                .await;
        }
        run
    }

    /// Writes a fresh file into each device of the instance from inside the container, checks
    /// it from the host, and records its digest.
    async fn write_data(&self, inst: &mut Inst, tag: &str) {
        let content = format!("{tag} {}", uuid::Uuid::new_v4().simple());
        let files: Vec<(String, PathBuf)> = inst
            .mounts
            .iter()
            .map(|(inside, host)| (format!("{inside}/{tag}"), host.join(tag)))
            .collect();
        let script = files
            .iter()
            .map(|(inside, _)| format!("echo '{content}' > {inside}"))
            .collect::<Vec<_>>()
            .join(" && ");
        let out = self
            .client
            .exec(
                &inst.name,
                &ExecRequest::shell(&format!("{script} && sync")).timeout(Duration::from_secs(30)),
            )
            .await
            .unwrap_or_else(|e| panic!("exec in {}: {e}", inst.name));
        assert!(
            out.success(),
            "writing data in {} failed: {}",
            inst.name,
            out.stderr_text()
        );
        let expected = sha256_hex(format!("{content}\n").as_bytes());
        for (inside, host) in files {
            let bytes = std::fs::read(&host).unwrap_or_else(|e| {
                panic!("{inside} of {} not at {}: {e}", inst.name, host.display())
            });
            assert_eq!(
                sha256_hex(&bytes),
                expected,
                "{} seen from the host differs from what the container wrote",
                host.display()
            );
            inst.data.push(DataFile {
                host,
                inside,
                sha256: expected.clone(),
            });
        }
    }

    /// The live invariants of a whole instance: exactly one instance under its name, running,
    /// on the `version` template, its root the one `root` says, the cloud-config applied, the
    /// device profile attached, and every data file unchanged (from the host and from inside).
    async fn check_live(&self, inst: &Inst, version: &str, root: Root<'_>, context: &str) {
        let name = &inst.name;
        let names = self
            .client
            .list_instance_names()
            .await
            .unwrap_or_else(|e| panic!("{context}: list instances: {e}"));
        assert_eq!(
            names.iter().filter(|n| *n == name).count(),
            1,
            "{context}: exactly one instance {name} expected in {names:?}"
        );
        let i = self
            .client
            .get_instance(name)
            .await
            .unwrap_or_else(|e| panic!("{context}: get {name}: {e}"))
            .value;
        assert!(
            i.is_running(),
            "{context}: {name} should be running, it is {}",
            i.status
        );
        let built_by = i.config.get(RUN_KEY).cloned().unwrap_or_default();
        match root {
            Root::Run(run) => assert_eq!(
                built_by, run,
                "{context}: {name} should be the root built by run {run}"
            ),
            Root::NotRun(run) => assert_ne!(
                built_by, run,
                "{context}: {name} is still the root built by run {run}"
            ),
        }
        // The disk devices: on the instance (the default placement) or in its device profile.
        for (inside, host) in &inst.mounts {
            let found = i.expanded_devices.values().any(|d| {
                d.get("path") == Some(inside)
                    && d.get("source").map(PathBuf::from).as_ref() == Some(host)
            });
            assert!(
                found,
                "{context}: {name} has no disk device {inside} from {}: {:?}",
                host.display(),
                i.expanded_devices
            );
        }

        let mut script = String::from(
            "for f in template-version rt-early rt-deferred rt-runcmd; do \
             printf '%s=' $f; tr -d '\\n' < /etc/$f; echo; done; sha256sum",
        );
        for f in &inst.data {
            script.push(' ');
            script.push_str(&f.inside);
        }
        let out = self
            .client
            .exec(
                name,
                &ExecRequest::shell(&script).timeout(Duration::from_secs(30)),
            )
            .await
            .unwrap_or_else(|e| panic!("{context}: exec in {name}: {e}"));
        let text = out.stdout_text();
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(str::to_string)
        };
        let problems = |what: &str| {
            format!(
                "{context}: {name}: {what}\n--- stdout\n{text}--- stderr\n{}",
                out.stderr_text()
            )
        };
        assert_eq!(
            value("template-version").as_deref(),
            Some(version),
            "{}",
            problems(&format!("template-version should be {version}"))
        );
        for (file, want) in [
            ("rt-early", "early"),
            ("rt-deferred", "deferred"),
            ("rt-runcmd", "ran"),
        ] {
            assert_eq!(
                value(file).as_deref(),
                Some(want),
                "{}",
                problems(&format!("cloud-config: /etc/{file} should hold {want}"))
            );
        }
        for f in &inst.data {
            let inside = text
                .lines()
                .find_map(|l| {
                    let (sum, path) = l.split_once("  ")?;
                    (path == f.inside).then_some(sum)
                })
                .unwrap_or_else(|| panic!("{}", problems(&format!("no digest of {}", f.inside))));
            assert_eq!(
                inside,
                f.sha256,
                "{}",
                problems(&format!("{} changed (read from inside)", f.inside))
            );
            let bytes = std::fs::read(&f.host)
                .unwrap_or_else(|e| panic!("{context}: {name}: {} is gone: {e}", f.host.display()));
            assert_eq!(
                sha256_hex(&bytes),
                f.sha256,
                "{context}: {name}: {} changed (read from the host)",
                f.host.display()
            );
        }
    }

    /// No retired (`<name>-old-*`) or temporary (`<name>-new-*`) root is left of any instance.
    async fn check_no_leftovers(&self, insts: &[&Inst], context: &str) {
        let names = self
            .client
            .list_instance_names()
            .await
            .unwrap_or_else(|e| panic!("{context}: list instances: {e}"));
        for inst in insts {
            let stray: Vec<&String> = names
                .iter()
                .filter(|n| {
                    n.starts_with(&format!("{}-new-", inst.name))
                        || n.starts_with(&format!("{}-old-", inst.name))
                })
                .collect();
            assert!(
                stray.is_empty(),
                "{context}: stray roots of {} left: {stray:?}",
                inst.name
            );
        }
        // Nor a volume without its instance (what a half-finished rename or delete leaves).
        let d = daemon();
        let dir = std::env::var(d.dir_var()).unwrap_or_else(|_| d.default_dir().to_string());
        let pool = Path::new(&dir).join("storage-pools/default/containers");
        let volumes: Vec<String> = std::fs::read_dir(&pool)
            .unwrap_or_else(|e| panic!("{context}: read {}: {e}", pool.display()))
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for inst in insts {
            let orphans: Vec<&String> = volumes
                .iter()
                .filter(|v| v.starts_with(&format!("{}-", inst.name)) && !names.contains(v))
                .collect();
            assert!(
                orphans.is_empty(),
                "{context}: volumes of {} without an instance in {}: {orphans:?}",
                inst.name,
                pool.display()
            );
        }
    }
}

/// Which root an instance must have.
#[derive(Clone, Copy)]
enum Root<'a> {
    /// The one built by this run (`user.reroot.run`).
    Run(&'a str),
    /// Any but the one built by this run (after an undo).
    NotRun(&'a str),
}

/// Prints a progress line with the test's elapsed time.
fn progress(started: Instant, line: &str) {
    eprintln!("crash: [{:6.1} s] {line}", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// 1. Every step × every forward moment, then resume; and again, then undo.

/// How many times a scenario is tried when LXD itself fails the rebuild before the fault point.
const ATTEMPTS: usize = 3;

/// The rebuild of `inst` to `version` dies at `point`; `finish` completes the run.
/// - `Resume`: the instance is on `version`, built by the run, which succeeded; after
///   `reroot prune` nothing is left of the old root.
/// - `Undo` (the instance was on `old`): it is back on `old`, not the run's root, nothing
///   stray left, the run undone.
///
/// Either way the data written just before is intact and `journal verify` passes.
async fn crash_scenario(
    bed: &Bed,
    inst: &mut Inst,
    point: &str,
    version: &str,
    finish: Finish,
    tag: &str,
) {
    let then = match finish {
        Finish::Resume => "resume",
        Finish::Undo => "undo",
    };
    let context = format!("{}: crash at {point}, then {then}", inst.name);
    let tpl = bed.tpl_property(version);
    let config = inst.config.display().to_string();
    for attempt in 1..=ATTEMPTS {
        let journal = Journal::new();
        bed.write_data(inst, &format!("{tag}-{attempt}")).await;
        let ran = journal
            .run(&["rebuild", "-P", &tpl, &config], Some(point))
            .await;
        let hit = ran.crashed_at(point);
        let Some(run) = journal.the_run().await else {
            missed(&context, attempt, &ran);
            continue;
        };
        journal.finish(&run, finish, &context).await;
        match finish {
            Finish::Resume => {
                bed.check_live(inst, version, Root::Run(&run), &context)
                    .await;
                journal.verify(&context).await;
                assert_eq!(journal.status(&run).await, "Succeeded", "{context}");
                journal.run(&["prune", &run], None).await.ok();
                bed.check_no_leftovers(&[inst], &context).await;
                bed.check_live(inst, version, Root::Run(&run), &context)
                    .await;
            }
            Finish::Undo => {
                bed.check_live(inst, "old", Root::NotRun(&run), &context)
                    .await;
                bed.check_no_leftovers(&[inst], &context).await;
                journal.verify(&context).await;
                assert_eq!(journal.status(&run).await, "Undone", "{context}");
            }
        }
        if hit {
            return;
        }
        missed(&context, attempt, &ran);
    }
    panic!("{context}: the fault point was never reached in {ATTEMPTS} attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_every_step_and_moment_then_resume_or_undo() {
    require_fault_injection();
    let _serial = LXD_LOCK.lock().await;
    let started = Instant::now();
    let bed = Bed::new().await;
    let steps = step_names();
    assert_eq!(steps.len(), 15, "the rebuild pipeline: {steps:?}");
    let points: Vec<String> = steps
        .iter()
        .flat_map(|s| Moment::FORWARD.map(|m| format!("{s}:{m}")))
        .collect();
    assert_eq!(points.len(), 15 * Moment::FORWARD.len());

    let mut r = bed.instance("r");
    let mut u = bed.instance("u");
    let _ = bed.launch(&mut [&mut r, &mut u]).await;
    progress(started, &format!("launched {} and {}", r.name, u.name));

    // One scenario at a time (~2.5 s each), so a failure names one crash point. `r` alternates
    // templates, so each resume scenario starts where the last ended; `u` goes old → crash →
    // undo → old.
    let mut version = "old";
    for (i, point) in points.iter().enumerate() {
        let target = other(version);
        crash_scenario(
            &bed,
            &mut r,
            point,
            target,
            Finish::Resume,
            &format!("r{i}"),
        )
        .await;
        version = target;
        progress(
            started,
            &format!("resume after {point}: {} on {target}", r.name),
        );
        crash_scenario(&bed, &mut u, point, "new", Finish::Undo, &format!("u{i}")).await;
        progress(
            started,
            &format!("undo after {point}: {} back on old", u.name),
        );
    }
    progress(started, "every fault point survived, by resume and by undo");
}

// ---------------------------------------------------------------------------------------------
// 2. A crash during the undo, then `reroot resume` (which goes on with the undo) or `reroot
//    undo RUN` again.

/// The rebuild dies at `forward`, its undo dies at `undo_point`, and `how` finishes the undo:
/// the instance is back on `old`, whole, with its data.
async fn crashed_undo_scenario(
    bed: &Bed,
    inst: &mut Inst,
    forward: &str,
    undo_point: &str,
    how: Finish,
    tag: &str,
) {
    let finish_word = match how {
        Finish::Resume => "resume",
        Finish::Undo => "undo again",
    };
    let context = format!(
        "{}: crash at {forward}, undo crashed at {undo_point}, then {finish_word}",
        inst.name
    );
    let tpl = bed.tpl_property("new");
    let config = inst.config.display().to_string();
    for attempt in 1..=ATTEMPTS {
        let journal = Journal::new();
        bed.write_data(inst, &format!("{tag}-{attempt}")).await;
        let ran = journal
            .run(&["rebuild", "-P", &tpl, &config], Some(forward))
            .await;
        let forward_hit = ran.crashed_at(forward);
        let Some(run) = journal.the_run().await else {
            missed(&context, attempt, &ran);
            continue;
        };
        let undo_ran = if forward_hit {
            let undo_ran = journal.run(&["undo", &run], Some(undo_point)).await;
            Some((undo_ran.crashed_at(undo_point), undo_ran))
        } else {
            None
        };
        journal.finish(&run, how, &context).await;
        bed.check_live(inst, "old", Root::NotRun(&run), &context)
            .await;
        bed.check_no_leftovers(&[inst], &context).await;
        journal.verify(&context).await;
        assert_eq!(journal.status(&run).await, "Undone", "{context}");
        match undo_ran {
            Some((true, _)) => return,
            Some((false, undo_ran)) => missed(&context, attempt, &undo_ran),
            None => missed(&context, attempt, &ran),
        }
    }
    panic!("{context}: the fault points were never reached in {ATTEMPTS} attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_undo_then_resume_or_undo_again() {
    require_fault_injection();
    let _serial = LXD_LOCK.lock().await;
    let started = Instant::now();
    let bed = Bed::new().await;
    let mut inst = bed.instance("w");
    let _ = bed.launch(&mut [&mut inst]).await;
    // The forward crash comes late (the new root already started), so the undo walks every
    // step; the steps whose undo does something are the ones crashed in.
    let forwards = ["start:after-apply", "verify:after-record"];
    let steps = ["swap", "retire", "stop", "prepare", "reattach", "start"];
    let mut i = 0;
    for step in steps {
        for moment in Moment::UNDO {
            let undo_point = format!("{step}:{moment}");
            let forward = forwards[(i / 2) % 2];
            let how = if i % 2 == 0 {
                Finish::Resume
            } else {
                Finish::Undo
            };
            crashed_undo_scenario(&bed, &mut inst, forward, &undo_point, how, &format!("w{i}"))
                .await;
            progress(
                started,
                &format!("crash at {forward}, undo crashed at {undo_point}: back on old"),
            );
            i += 1;
        }
    }
    progress(started, "every undo crash survived");
}

// ---------------------------------------------------------------------------------------------
// 3. SIGKILL at random times during a rebuild of three instances, two at a time.

/// How many rebuild processes the SIGKILL test must really kill (the kill lands before the
/// process ends).
const KILLS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_times_during_a_parallel_rebuild() {
    require_fault_injection();
    let _serial = LXD_LOCK.lock().await;
    let started = Instant::now();
    let bed = Bed::new().await;
    let mut rng = Rng::seeded("SIGKILL delays");
    let mut insts = [bed.instance("k1"), bed.instance("k2"), bed.instance("k3")];
    let mut root_run = {
        let mut refs: Vec<&mut Inst> = insts.iter_mut().collect();
        bed.launch(&mut refs).await
    };
    let configs: Vec<String> = insts
        .iter()
        .map(|i| i.config.display().to_string())
        .collect();
    let mut version = "old";
    let (mut kills, mut resume_kills) = (0, 0);
    let mut round = 0;
    while kills < KILLS {
        round += 1;
        assert!(
            round <= 2 * KILLS,
            "only {kills} of {round} rebuilds were killed before they ended"
        );
        let target = other(version);
        for inst in insts.iter_mut() {
            bed.write_data(inst, &format!("k{round}")).await;
        }
        let journal = Journal::new();
        let tpl = bed.tpl_property(target);
        let mut args = vec!["rebuild", "--parallel", "2", "-P", &tpl];
        args.extend(configs.iter().map(String::as_str));
        let delay = rng.range(50, 2500);
        let ran = journal
            .spawn(&args, None)
            .kill_after(Duration::from_millis(delay))
            .await;
        let context = format!("round {round}: rebuild to {target}, SIGKILL after {delay} ms");
        if ran.killed {
            kills += 1;
        } else {
            assert!(ran.success(), "{context}: the rebuild failed:\n{ran}");
        }
        match journal.the_run().await {
            // Killed before the run was recorded: nothing may have changed.
            None => assert!(ran.killed, "{context}: no run recorded"),
            Some(run) => {
                // Resume until it succeeds, killing some of the resumes too.
                let mut failures = 0;
                let mut resumes = 0;
                while journal.status(&run).await != "Succeeded" {
                    resumes += 1;
                    assert!(
                        resumes <= 12,
                        "{context}: {resumes} resumes and still not done"
                    );
                    let resume = journal.spawn(&["resume", &run], None);
                    let ran = if resumes <= 3 && rng.range(0, 2) == 0 {
                        resume
                            .kill_after(Duration::from_millis(rng.range(50, 2500)))
                            .await
                    } else {
                        resume.wait(COMMAND_BOUND).await
                    };
                    if ran.killed {
                        resume_kills += 1;
                    } else if !ran.success() {
                        failures += 1;
                        eprintln!(
                            "crash: {context}: resume failed:\n{ran}\n{}",
                            journal.detail(&run).await
                        );
                        assert!(
                            failures < ATTEMPTS,
                            "{context}: resume failed {failures} times"
                        );
                    }
                }
                for inst in &insts {
                    bed.check_live(inst, target, Root::Run(&run), &context)
                        .await;
                }
                journal.run(&["prune", &run], None).await.ok();
                version = target;
                root_run = run;
            }
        }
        for inst in &insts {
            bed.check_live(inst, version, Root::Run(&root_run), &context)
                .await;
        }
        bed.check_no_leftovers(&insts.iter().collect::<Vec<_>>(), &context)
            .await;
        // Killed before it opened the journal (while it read configs and looked for instances
        // already built), the rebuild left no journal at all: nothing to verify.
        if journal.path().exists() {
            journal.verify(&context).await;
        } else {
            assert!(
                ran.killed,
                "{context}: no journal, yet the rebuild was not killed"
            );
        }
        progress(
            started,
            &format!(
                "{context}{}: all on {version}",
                if ran.killed { "" } else { " (ended first)" }
            ),
        );
    }
    progress(
        started,
        &format!("{kills} rebuilds and {resume_kills} resumes killed; every instance whole"),
    );
}

// ---------------------------------------------------------------------------------------------
// 4. The daemon (LXD or Incus, as REROOT_TEST_DAEMON chooses) restarts in the middle of a run.

/// The process id of the daemon: the peer of a connection to its socket.
async fn lxd_pid() -> u32 {
    let d = daemon();
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::UnixStream::connect(lxd_socket())
        .await
        .unwrap_or_else(|e| panic!("connect to the {d} socket: {e}"));
    let pid = stream
        .peer_cred()
        .unwrap_or_else(|e| panic!("peer credentials of the {d} socket: {e}"))
        .pid()
        .unwrap_or_else(|| panic!("the {d} socket's peer has no pid"));
    // Say something before closing: LXD 5.0.2 waits for a new connection's first bytes.
    let _ = stream.write_all(b"GET /1.0 HTTP/1.0\r\n\r\n").await;
    let pid = u32::try_from(pid).unwrap_or_else(|_| panic!("odd {d} pid {pid}"));
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(
        comm.trim(),
        d.comm(),
        "the {d} socket is served by pid {pid} ({comm:?})"
    );
    pid
}

/// True while the process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// `lxd waitready --timeout N` (or `incus admin waitready`) succeeded.
fn lxd_ready(timeout_s: u32) -> bool {
    let command = daemon().waitready_command(timeout_s);
    std::process::Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts the daemon as scripts/testbed.sh does (its own session, no inherited descriptors,
/// output in its log), and waits until it answers.
fn start_lxd() {
    let d = daemon();
    let status = std::process::Command::new("setsid")
        .arg("--fork")
        .args(d.start_command())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot start {d}: {e}"));
    assert!(status.success(), "setsid {d} exited with {status}");
    assert!(
        lxd_ready(60),
        "{d} did not become ready within 60 s after a restart (see {})",
        d.log_file()
    );
}

/// Stops the LXD daemon (SIGTERM: it exits, its containers keep running) and starts it again.
async fn restart_lxd() {
    let pid = lxd_pid().await;
    let kill = |signal: &str| {
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(status.success(), "kill {signal} {pid}: {status}");
    };
    kill("-TERM");
    let deadline = Instant::now() + Duration::from_secs(60);
    while alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if alive(pid) {
        eprintln!(
            "crash: {} (pid {pid}) still running 60 s after SIGTERM; SIGKILL",
            daemon()
        );
        kill("-KILL");
        while alive(pid) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    start_lxd();
}

/// Makes sure, when dropped (also when the test fails), that the LXD daemon is running.
struct LxdUp;

impl Drop for LxdUp {
    fn drop(&mut self) {
        if !lxd_ready(5) {
            eprintln!("crash: {} is down; starting it again", daemon());
            start_lxd();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lxd_daemon_restart_during_a_rebuild() {
    require_fault_injection();
    let _serial = LXD_LOCK.lock().await;
    let started = Instant::now();
    let bed = Bed::new().await;
    let mut insts = [bed.instance("d1"), bed.instance("d2")];
    {
        let mut refs: Vec<&mut Inst> = insts.iter_mut().collect();
        let _ = bed.launch(&mut refs).await;
    }
    for inst in insts.iter_mut() {
        bed.write_data(inst, "before-restart").await;
    }
    let _lxd_up = LxdUp;
    let journal = Journal::new();
    let tpl = bed.tpl_property("new");
    let configs: Vec<String> = insts
        .iter()
        .map(|i| i.config.display().to_string())
        .collect();
    let mut args = vec!["rebuild", "-P", &tpl];
    args.extend(configs.iter().map(String::as_str));
    let mut rebuild = journal.spawn(&args, None);
    // One instance at a time takes ~2.5 s: the restart lands in the first one's steps.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        rebuild.still_running(),
        "the rebuild ended before LXD was restarted: nothing was tested"
    );
    restart_lxd().await;
    progress(started, "LXD restarted");
    // The run must end by itself within its bounds (no hang), failed or not.
    let ran = rebuild.wait(COMMAND_BOUND).await;
    progress(started, &format!("the rebuild ended:\n{ran}"));
    let run = journal.only_run().await;
    let context = "after an LXD restart during the rebuild";
    if journal.status(&run).await != "Succeeded" {
        journal.finish(&run, Finish::Resume, context).await;
    }
    assert_eq!(journal.status(&run).await, "Succeeded", "{context}");
    for inst in &insts {
        bed.check_live(inst, "new", Root::Run(&run), context).await;
    }
    journal.verify(context).await;
    journal.run(&["prune", &run], None).await.ok();
    bed.check_no_leftovers(&insts.iter().collect::<Vec<_>>(), context)
        .await;
    progress(started, "the run survived the restart");
}

// ---------------------------------------------------------------------------------------------
// 5. No website is left down: a fleet killed inside its window, failures inside the window, the
//    LXD daemon killed, the journal's disk full.

/// The instances that are down right now: not running under their own name.
async fn down(client: &Client, insts: &[Inst]) -> Vec<String> {
    let running: std::collections::BTreeSet<String> = client
        .list_instances()
        .await
        .unwrap_or_else(|e| panic!("list instances: {e}"))
        .into_iter()
        .filter(|i| i.is_running())
        .map(|i| i.name)
        .collect();
    insts
        .iter()
        .filter(|i| !running.contains(&i.name))
        .map(|i| i.name.clone())
        .collect()
}

/// Waits (bounded) until at least `n` instances are down while `process` runs; gives how many.
async fn wait_until_down(
    client: &Client,
    insts: &[Inst],
    process: &mut Running,
    n: usize,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = down(client, insts).await.len();
        if now >= n {
            return now;
        }
        assert!(
            process.still_running(),
            "`{}` ended before {n} instances were inside their window",
            process.what
        );
        assert!(
            Instant::now() < deadline,
            "fewer than {n} instances went down within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// A bed with `n` light instances, launched on `old`, with a data file in each; gives the
/// launch run.
async fn light_fleet(bed: &Bed, prefix: &str, n: usize) -> (Vec<Inst>, String) {
    let mut insts: Vec<Inst> = (0..n)
        .map(|k| bed.light_instance(&format!("{prefix}{k:02}")))
        .collect();
    let run = {
        let mut refs: Vec<&mut Inst> = insts.iter_mut().collect();
        bed.launch(&mut refs).await
    };
    (insts, run)
}

/// A new bed with `n` light instances launched on `old`, and a second data file written into
/// each just before the test's rebuild.
async fn fleet_with_data(prefix: &str, n: usize) -> (Bed, Vec<Inst>) {
    let bed = Bed::new().await;
    let (mut insts, _) = light_fleet(&bed, prefix, n).await;
    for inst in insts.iter_mut() {
        bed.write_data(inst, "before").await;
    }
    (bed, insts)
}

fn configs_of(insts: &[Inst]) -> Vec<String> {
    insts
        .iter()
        .map(|i| i.config.display().to_string())
        .collect()
}

/// How many websites the fleet test rebuilds: enough that eight are in flight at once and
/// several are inside their window when the process dies.
const FLEET: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_killed_inside_its_window_with_a_failing_instance_needs_one_resume() {
    require_fault_injection();
    let _serial = LXD_LOCK.lock().await;
    let started = Instant::now();
    let bed = Bed::new().await;
    let (mut insts, launch_run) = light_fleet(&bed, "f", FLEET).await;
    progress(started, &format!("{FLEET} websites launched"));
    for inst in insts.iter_mut() {
        bed.write_data(inst, "before").await;
    }
    // One website fails at a step after `stop`, every time, in the rebuild and in the resume.
    let failing = insts[3].name.clone();
    let fail = format!("reattach:{failing}");
    let journal = Journal::new();
    let tpl = bed.tpl_property("new");
    let configs = configs_of(&insts);
    // As many down at once as run at once: the kill must find several inside their window.
    let mut args = vec![
        "rebuild",
        "--parallel",
        "8",
        "--max-down",
        "8",
        "--max-failures",
        "2",
        "-P",
        &tpl,
    ];
    args.extend(configs.iter().map(String::as_str));
    let mut rebuild = journal.spawn_failing(&args, None, Some(&fail));
    let seen = wait_until_down(&bed.client, &insts, &mut rebuild, 3).await;
    let ran = rebuild.kill_after(Duration::ZERO).await;
    assert!(ran.killed, "the rebuild ended before it was killed:\n{ran}");
    let left_down = down(&bed.client, &insts).await;
    progress(
        started,
        &format!(
            "SIGKILL with {seen} down; right after: {} down",
            left_down.len()
        ),
    );
    assert!(!left_down.is_empty(), "the kill must leave websites down");

    let run = journal.only_run().await;
    let resumed = journal
        .spawn_failing(&["resume", &run], None, Some(&fail))
        .wait(COMMAND_BOUND * 2)
        .await;
    progress(started, &format!("one resume:\n{resumed}"));
    assert!(
        !resumed.success(),
        "the run must end failed, {failing} failing:\n{resumed}"
    );
    let line = resumed
        .stdout
        .lines()
        .find(|l| l.starts_with(&failing))
        .unwrap_or_else(|| panic!("the summary names no {failing}:\n{resumed}"));
    assert!(line.contains("REVERTED"), "{line}");
    assert_eq!(journal.status(&run).await, "Failed");
    let context = "after the kill and one resume";
    assert!(
        down(&bed.client, &insts).await.is_empty(),
        "{context}: websites down"
    );
    for inst in &insts {
        if inst.name == failing {
            bed.check_live(inst, "old", Root::Run(&launch_run), context)
                .await;
        } else {
            bed.check_live(inst, "new", Root::Run(&run), context).await;
        }
    }
    journal.verify(context).await;
    progress(started, "every website up, the failing one on its old root");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_inside_the_window_reverts_at_once_unless_hold_is_asked_for() {
    require_fault_injection();
    let _serial = LXD_LOCK.lock().await;
    let started = Instant::now();
    let bed = Bed::new().await;
    let (insts, launch_run) = light_fleet(&bed, "w", 2).await;
    let tpl = bed.tpl_property("new");
    let configs = configs_of(&insts);
    let fail = format!("swap:{}", insts[0].name);

    // The default: put back on the spot; the other website goes on.
    let journal = Journal::new();
    let mut args = vec!["rebuild", "--max-failures", "1", "-P", &tpl];
    args.extend(configs.iter().map(String::as_str));
    let ran = journal
        .spawn_failing(&args, None, Some(&fail))
        .wait(COMMAND_BOUND)
        .await;
    assert!(!ran.success(), "{ran}");
    assert!(ran.stdout.contains("FAILED at swap, REVERTED"), "{ran}");
    let run = journal.only_run().await;
    let context = "after a failed swap";
    bed.check_live(&insts[0], "old", Root::Run(&launch_run), context)
        .await;
    bed.check_live(&insts[1], "new", Root::Run(&run), context)
        .await;
    bed.check_no_leftovers(&[&insts[0]], context).await;
    journal.verify(context).await;

    // --on-failure hold: left as it is (retired, not swapped), for a person to look at.
    let journal = Journal::new();
    let ran = journal
        .spawn_failing(
            &["rebuild", "--on-failure", "hold", "-P", &tpl, &configs[0]],
            None,
            Some(&fail),
        )
        .wait(COMMAND_BOUND)
        .await;
    assert!(!ran.success(), "{ran}");
    assert!(!ran.stdout.contains("REVERTED"), "{ran}");
    let held = journal.only_run().await;
    assert_eq!(
        down(&bed.client, &insts[..1]).await,
        [insts[0].name.clone()],
        "held down"
    );
    // And undo brings it back.
    journal.run(&["undo", &held], None).await.ok();
    bed.check_live(
        &insts[0],
        "old",
        Root::Run(&launch_run),
        "after undo of the held run",
    )
    .await;
    progress(started, "reverted at once; held with --on-failure hold");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lxd_killed_while_websites_are_down_then_started_again() {
    require_fault_injection();
    let _serial = LXD_LOCK.lock().await;
    let started = Instant::now();
    let (bed, insts) = fleet_with_data("k", 6).await;
    let _lxd_up = LxdUp;
    let journal = Journal::new();
    let tpl = bed.tpl_property("new");
    let configs = configs_of(&insts);
    let mut args = vec!["rebuild", "--parallel", "3", "-P", &tpl];
    args.extend(configs.iter().map(String::as_str));
    let mut rebuild = journal.spawn(&args, None);
    let seen = wait_until_down(&bed.client, &insts, &mut rebuild, 2).await;
    let pid = lxd_pid().await;
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    while alive(pid) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    progress(started, &format!("LXD killed with {seen} websites down"));
    start_lxd();
    progress(started, "LXD started again");
    let ran = rebuild.wait(COMMAND_BOUND).await;
    progress(started, &format!("the rebuild ended:\n{ran}"));
    let run = journal.only_run().await;
    let context = "after LXD was killed and started again";
    if !ran.success() {
        // One resume finishes it.
        let resumed = journal.run(&["resume", &run], None).await;
        assert!(
            resumed.success(),
            "{context}: one resume must finish:\n{resumed}"
        );
    }
    assert_eq!(journal.status(&run).await, "Succeeded", "{context}");
    for inst in &insts {
        bed.check_live(inst, "new", Root::Run(&run), context).await;
    }
    journal.verify(context).await;
    journal.run(&["prune", &run], None).await.ok();
    bed.check_no_leftovers(&insts.iter().collect::<Vec<_>>(), context)
        .await;
    progress(started, "every website on the new template");
}

/// Leaves `from` as a daemon killed inside its rename to `to` leaves it (LXD 5.0 and Incus 6.0
/// rename the instance's volume first, its database record second): the volume's record, its
/// subvolume and its `containers/` symlink under `to`, the instance still `from`.
fn half_rename(from: &str, to: &str) {
    let d = daemon();
    let dir = std::env::var(d.dir_var()).unwrap_or_else(|_| d.default_dir().to_string());
    let query =
        format!("UPDATE storage_volumes SET name = '{to}' WHERE name = '{from}' AND type = 0");
    let mut sql: Vec<&str> = match d {
        common::Daemon::Lxd => vec!["lxd", "sql", "global"],
        common::Daemon::Incus => vec!["incus", "admin", "sql", "global"],
    };
    sql.push(&query);
    let out = std::process::Command::new(sql[0])
        .args(&sql[1..])
        .output()
        .expect("run the daemon's sql command");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Rows affected: 1"),
        "{sql:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let pool = Path::new(&dir).join("storage-pools/default/containers");
    std::fs::rename(pool.join(from), pool.join(to)).expect("move the instance's subvolume");
    let links = Path::new(&dir).join("containers");
    std::fs::remove_file(links.join(from)).expect("remove the instance's symlink");
    std::os::unix::fs::symlink(pool.join(to), links.join(to)).expect("link the moved volume");
}

/// The daemon killed inside a rename leaves the instance unusable (every start fails "not
/// found"). reroot finishes that rename when it meets it: a resume goes on to the new root, an
/// undo brings the old one back and starts it. The half-done state is made by hand, as a
/// killed daemon leaves it, so that both are shown every time (the daemon-kill test above
/// lands inside a rename about one time in three).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_the_daemon_left_half_done_is_finished_by_resume_and_by_undo() {
    require_fault_injection();
    let _serial = LXD_LOCK.lock().await;
    let started = Instant::now();
    let (bed, insts) = fleet_with_data("h", 2).await;
    let tpl = bed.tpl_property("new");
    for (inst, how) in insts.iter().zip([Finish::Resume, Finish::Undo]) {
        let context = format!("{}: daemon killed inside the retire's rename", inst.name);
        let journal = Journal::new();
        let config = inst.config.display().to_string();
        let point = "retire:before-apply";
        let ran = journal
            .run(&["rebuild", "-P", &tpl, &config], Some(point))
            .await;
        assert!(ran.crashed_at(point), "{context}: {ran}");
        let run = journal.only_run().await;
        let retired = format!("{}-old-{}", inst.name, &run[..8]);
        half_rename(&inst.name, &retired);
        let start = bed.client.start_instance(&inst.name).await;
        assert!(
            start.as_ref().is_err_and(|e| e.is_not_found()),
            "{context}: a half-renamed instance must not start: {start:?}"
        );
        let (args, version, root, status) = match how {
            Finish::Resume => (
                ["resume", run.as_str()],
                "new",
                Root::Run(&run),
                "Succeeded",
            ),
            Finish::Undo => (["undo", run.as_str()], "old", Root::NotRun(&run), "Undone"),
        };
        let finished = journal.run(&args, None).await;
        assert!(
            finished.success(),
            "{context}: one {} must finish it:\n{finished}",
            args[0]
        );
        assert_eq!(journal.status(&run).await, status, "{context}");
        bed.check_live(inst, version, root, &context).await;
        journal.verify(&context).await;
        if status == "Succeeded" {
            journal.run(&["prune", &run], None).await.ok();
        }
        bed.check_no_leftovers(&[inst], &context).await;
        progress(started, &format!("{context}: {} finished it", args[0]));
    }
}

/// A small tmpfs for a journal, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("temporary directory");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs of {size}: {status}");
        SmallDisk { dir }
    }

    /// Fills what is left of it (a file of zeros until the disk refuses more).
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("create the filler");
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let mut small = [0u8; 512];
        while f.write_all(&small[..]).is_ok() {}
        small[0] = 1;
        while f.write_all(&small[..1]).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_disk_leaves_no_website_down_and_one_resume_finishes() {
    require_fault_injection();
    let _serial = LXD_LOCK.lock().await;
    let started = Instant::now();
    let (bed, insts) = fleet_with_data("j", 6).await;
    let disk = SmallDisk::new("16m");
    let journal_dir = disk.dir.path().join("journal");
    let tpl = bed.tpl_property("new");
    let configs = configs_of(&insts);
    let mut args = vec![
        "--journal".to_string(),
        journal_dir.display().to_string(),
        "rebuild".into(),
        "--parallel".into(),
        "3".into(),
        "-P".into(),
        tpl.clone(),
    ];
    args.extend(configs.iter().cloned());
    let out = bed.dir.path().join("full.out");
    let err = bed.dir.path().join("full.err");
    let child = tokio::process::Command::new(REROOT)
        .args(&args)
        .env_remove("REROOT_FAULT")
        .env_remove("REROOT_FAIL")
        .env("REROOT_SOCKET", lxd_socket())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("start reroot");
    let mut rebuild = Running {
        what: "reroot rebuild (journal on a small tmpfs)".into(),
        child,
        out,
        err,
        started: Instant::now(),
    };
    let seen = wait_until_down(&bed.client, &insts, &mut rebuild, 2).await;
    let filler = disk.fill();
    progress(
        started,
        &format!("journal disk full with {seen} websites down"),
    );
    let ran = rebuild.wait(COMMAND_BOUND).await;
    progress(started, &format!("the rebuild ended:\n{ran}"));
    assert!(!ran.success(), "the journal could not be written:\n{ran}");
    assert!(ran.stderr.contains("journal"), "{ran}");
    let context = "after the journal's disk filled up";
    let left_down = down(&bed.client, &insts).await;
    assert!(
        left_down.is_empty(),
        "{context}: websites left down: {left_down:?}\n{ran}"
    );

    std::fs::remove_file(&filler).expect("free the disk");
    let resumed = tokio::process::Command::new(REROOT)
        .arg("--journal")
        .arg(&journal_dir)
        .arg("resume")
        .env_remove("REROOT_FAULT")
        .env_remove("REROOT_FAIL")
        .env("REROOT_SOCKET", lxd_socket())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run resume");
    assert!(
        resumed.status.success(),
        "{context}: one resume must finish the run:\n{}\n{}",
        String::from_utf8_lossy(&resumed.stdout),
        String::from_utf8_lossy(&resumed.stderr)
    );
    let run = {
        let reader = journal::Reader::open(&journal_dir).expect("open the journal");
        let runs = reader.runs(&Default::default()).expect("runs");
        assert_eq!(runs.len(), 1);
        let state = reader.replay(runs[0].id).expect("replay");
        assert_eq!(state.status, journal::RunStatus::Succeeded);
        runs[0].id.to_string()
    };
    for inst in &insts {
        bed.check_live(inst, "new", Root::Run(&run), context).await;
    }
    let verify = std::process::Command::new(REROOT)
        .arg("--journal")
        .arg(&journal_dir)
        .args(["journal", "verify"])
        .output()
        .expect("run journal verify");
    assert!(verify.status.success(), "{context}: journal verify failed");
    progress(started, "no website left down; one resume finished the run");
}

// ---------------------------------------------------------------------------------------------
// 6. One run over two daemons: the one the suite runs on, over its socket, and the testbed's
//    other daemon, reached over HTTPS as a remote that the instances' configs name.

/// The testbed's lxc client configuration naming both daemons' HTTPS remotes.
fn remotes_conf() -> PathBuf {
    let base = std::env::var_os("REROOT_TESTBED_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/reroot-testbed"));
    let conf = base.join("remote/lxc-conf");
    for f in [
        "config.yml",
        "client.crt",
        "servercerts/loopback.crt",
        "servercerts/incus-loopback.crt",
    ] {
        assert!(
            conf.join(f).is_file(),
            "{} is missing: run scripts/testbed.sh (it serves both daemons over HTTPS)",
            conf.join(f).display()
        );
    }
    conf
}

/// Resumes `run` until it succeeds, killing some of the resumes at random too; gives how many
/// resumes were killed.
async fn resume_until_done(journal: &Journal, run: &str, rng: &mut Rng, context: &str) -> usize {
    let (mut resumes, mut killed, mut failures) = (0, 0, 0);
    while journal.status(run).await != "Succeeded" {
        resumes += 1;
        assert!(
            resumes <= 12,
            "{context}: {resumes} resumes and still not done"
        );
        let resume = journal.spawn(&["resume", run], None);
        let ran = if resumes <= 2 && rng.range(0, 2) == 0 {
            resume
                .kill_after(Duration::from_millis(rng.range(100, 3000)))
                .await
        } else {
            resume.wait(COMMAND_BOUND).await
        };
        if ran.killed {
            killed += 1;
        } else if !ran.success() {
            failures += 1;
            eprintln!(
                "crash: {context}: resume failed:\n{ran}\n{}",
                journal.detail(run).await
            );
            assert!(
                failures < ATTEMPTS,
                "{context}: resume failed {failures} times"
            );
        }
    }
    killed
}

/// How many rebuilds over two daemons the test must really kill.
const TWO_DAEMON_KILLS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_two_daemons_killed_at_random_is_resumed_and_undone_as_a_whole() {
    require_fault_injection();
    let _serial = LXD_LOCK.lock().await;
    let started = Instant::now();
    let conf = remotes_conf();
    let here = Bed::new().await;
    let there = Bed::other(&here).await;
    let remote = there.remote.clone().expect("the other bed is a remote");
    let mut rng = Rng::seeded("two daemons");
    let mut insts: Vec<(&Bed, Inst)> = Vec::new();
    for k in 0..2 {
        insts.push((&here, here.light_instance(&format!("h{k}"))));
        insts.push((&there, there.light_instance(&format!("t{k}"))));
    }
    let configs: Vec<String> = insts
        .iter()
        .map(|(_, i)| i.config.display().to_string())
        .collect();
    // The launch: one run over both daemons, `--parallel 1`, which bounds each daemon.
    let journal = Journal::with_conf(conf.clone());
    let rebuild = |version: &str| {
        let mut args = vec![
            "rebuild".to_string(),
            "--parallel".into(),
            "1".into(),
            "-P".into(),
            here.tpl_property(version),
        ];
        args.extend(configs.iter().cloned());
        args
    };
    let args = rebuild("old");
    let ran = journal
        .run(&args.iter().map(String::as_str).collect::<Vec<_>>(), None)
        .await;
    assert!(ran.success(), "the launch over two daemons failed:\n{ran}");
    let mut run = journal.runs().await[0].clone();
    for (bed, inst) in insts.iter_mut() {
        bed.write_data(inst, "launch").await;
        bed.check_live(inst, "old", Root::Run(&run), "after the launch")
            .await;
    }
    // Where each instance lives, as `show` and `history` say it.
    let shown = journal.detail(&run).await;
    for (bed, inst) in &insts {
        let line = shown
            .lines()
            .find(|l| l.starts_with(&format!("{} ", inst.name)))
            .unwrap_or_else(|| panic!("show names no {}:\n{shown}", inst.name));
        assert_eq!(
            line.contains(&format!("on {remote}")),
            bed.remote.is_some(),
            "{line}\n{shown}"
        );
    }
    assert!(
        shown.contains(&format!(
            "remote     {remote}: remote {remote} (https://127.0.0.1:"
        )),
        "{shown}"
    );
    let history = journal.run(&["history"], None).await.ok();
    assert!(
        history.stdout.contains(&format!(" + {remote}")),
        "{history}"
    );
    let one = journal
        .run(&["history", "--instance", &insts[1].1.name], None)
        .await
        .ok();
    assert!(one.stdout.contains(&remote), "{one}");

    // Rebuilds over both daemons, each killed at a random moment, then resumed, until three
    // were killed before they ended; the last one is then undone as a whole.
    let mut version = "old";
    let mut kills = 0;
    let mut round = 0;
    while kills < TWO_DAEMON_KILLS {
        round += 1;
        assert!(
            round <= 3 * TWO_DAEMON_KILLS,
            "only {kills} of {round} rebuilds were killed before they ended"
        );
        let target = other(version);
        for (bed, inst) in insts.iter_mut() {
            bed.write_data(inst, &format!("r{round}")).await;
        }
        let journal = Journal::with_conf(conf.clone());
        let delay = rng.range(150, 2500);
        let args = rebuild(target);
        let ran = journal
            .spawn(&args.iter().map(String::as_str).collect::<Vec<_>>(), None)
            .kill_after(Duration::from_millis(delay))
            .await;
        let context = format!(
            "round {round}: rebuild to {target} over two daemons, SIGKILL after {delay} ms"
        );
        if !ran.killed {
            assert!(ran.success(), "{context}: the rebuild failed:\n{ran}");
        }
        let Some(this) = journal.the_run().await else {
            assert!(ran.killed, "{context}: no run recorded");
            progress(
                started,
                &format!("{context}: killed before the run was recorded"),
            );
            for (bed, inst) in &insts {
                bed.check_live(inst, version, Root::Run(&run), &context)
                    .await;
            }
            continue;
        };
        // Killed with its run recorded: what counts.
        if ran.killed {
            kills += 1;
        }
        let resume_kills = resume_until_done(&journal, &this, &mut rng, &context).await;
        for (bed, inst) in &insts {
            bed.check_live(inst, target, Root::Run(&this), &context)
                .await;
        }
        journal.verify(&context).await;
        progress(
            started,
            &format!("{context}: {resume_kills} resumes killed; all four on {target}"),
        );
        version = target;
        run = this;
        if kills < TWO_DAEMON_KILLS {
            journal.run(&["prune", &run], None).await.ok();
            for (bed, inst) in &insts {
                bed.check_no_leftovers(&[inst], &context).await;
            }
        } else {
            // A daemon that is not the one the run recorded is refused before anything is
            // done: here the remote's name leads to this daemon instead of the other one.
            let swapped = tempfile::tempdir().unwrap();
            std::fs::create_dir(swapped.path().join("servercerts")).unwrap();
            for f in ["client.crt", "client.key"] {
                std::fs::copy(conf.join(f), swapped.path().join(f)).unwrap();
            }
            let mine = if remote == "loopback" {
                "incus-loopback"
            } else {
                "loopback"
            };
            let text = std::fs::read_to_string(conf.join("config.yml")).unwrap();
            let text = text
                .replace(&format!("  {remote}:"), "  placeholder:")
                .replace(&format!("  {mine}:"), &format!("  {remote}:"));
            std::fs::write(swapped.path().join("config.yml"), text).unwrap();
            std::fs::copy(
                conf.join(format!("servercerts/{mine}.crt")),
                swapped.path().join(format!("servercerts/{remote}.crt")),
            )
            .unwrap();
            let before = journal.show(&run).await;
            let refused = journal.run_with_conf(&["undo", &run], swapped.path()).await;
            assert!(
                !refused.success(),
                "an undo through the wrong daemon went on:\n{refused}"
            );
            assert!(
                refused.stderr.contains(&format!("remote {remote}"))
                    && refused.stderr.contains("nothing was done"),
                "{refused}"
            );
            assert_eq!(
                journal.show(&run).await,
                before,
                "the refused undo changed the journal"
            );
            // The undo of the whole run, over both daemons.
            let ran = journal.run(&["undo", &run], None).await;
            assert!(ran.success(), "the undo over two daemons failed:\n{ran}");
            for (bed, inst) in &insts {
                bed.check_live(inst, other(target), Root::NotRun(&run), "after the undo")
                    .await;
                bed.check_no_leftovers(&[inst], "after the undo").await;
            }
            journal.verify("after the undo").await;
        }
    }
    progress(
        started,
        &format!(
            "{kills} of {round} rebuilds over two daemons killed; every instance whole on both"
        ),
    );
}
