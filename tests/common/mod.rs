//! Helpers shared by the integration tests: the real daemon's socket, unique names, a client,
//! and a guard that removes what a test created even when the test fails.
//!
//! One test suite, two daemons: `REROOT_TEST_DAEMON=lxd` (the default) or `incus` chooses the
//! daemon every test talks to, and every reroot process a test starts ([`reroot_command`]).
//! Any other value fails the test.
//!
//! Tests that need the daemon FAIL when it is not running; they never skip.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use reroot::lxd::{Client, ConnectOptions, ServerKind, Stop};

/// The daemon the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Lxd,
    Incus,
}

impl Daemon {
    /// The kind the client must see when it connects to this daemon.
    pub fn kind(self) -> ServerKind {
        match self {
            Daemon::Lxd => ServerKind::Lxd,
            Daemon::Incus => ServerKind::Incus,
        }
    }

    /// The environment variable naming the daemon's directory (`LXD_DIR`, `INCUS_DIR`).
    pub fn dir_var(self) -> &'static str {
        match self {
            Daemon::Lxd => "LXD_DIR",
            Daemon::Incus => "INCUS_DIR",
        }
    }

    /// The daemon's directory in the Debian packages' layout.
    pub fn default_dir(self) -> &'static str {
        match self {
            Daemon::Lxd => "/var/lib/lxd",
            Daemon::Incus => "/var/lib/incus",
        }
    }

    /// The daemon's program name, as the kernel reports it (`/proc/PID/comm`).
    pub fn comm(self) -> &'static str {
        match self {
            Daemon::Lxd => "lxd",
            Daemon::Incus => "incusd",
        }
    }

    /// Where scripts/testbed.sh has the daemon write its log.
    pub fn log_file(self) -> &'static str {
        match self {
            Daemon::Lxd => "/var/log/reroot-testbed-lxd.log",
            Daemon::Incus => "/var/log/reroot-testbed-incus.log",
        }
    }

    /// The command that starts the daemon in the foreground, as scripts/testbed.sh does:
    /// Debian's Incus has no `incus` subcommand for it, the daemon is its own program.
    pub fn start_command(self) -> Vec<&'static str> {
        match self {
            Daemon::Lxd => vec!["lxd", "--group", "root", "--logfile", self.log_file()],
            Daemon::Incus => vec![
                "/usr/libexec/incus/incusd",
                "--group",
                "root",
                "--logfile",
                self.log_file(),
            ],
        }
    }

    /// The command that waits until the daemon's API answers: `lxd waitready` for LXD,
    /// `incus admin waitready` for Incus (incusd has no such subcommand).
    pub fn waitready_command(self, timeout_secs: u32) -> Vec<String> {
        let timeout = timeout_secs.to_string();
        match self {
            Daemon::Lxd => vec![
                "lxd".into(),
                "waitready".into(),
                "--timeout".into(),
                timeout,
            ],
            Daemon::Incus => vec![
                "incus".into(),
                "admin".into(),
                "waitready".into(),
                "--timeout".into(),
                timeout,
            ],
        }
    }
}

impl std::fmt::Display for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Daemon::Lxd => "LXD",
            Daemon::Incus => "Incus",
        })
    }
}

/// The daemon chosen by `REROOT_TEST_DAEMON` (`lxd`, the default, or `incus`). Panics on any
/// other value: a typo must not quietly test LXD again.
pub fn daemon() -> Daemon {
    match std::env::var("REROOT_TEST_DAEMON") {
        Err(std::env::VarError::NotPresent) => Daemon::Lxd,
        Ok(v) if v.is_empty() || v == "lxd" => Daemon::Lxd,
        Ok(v) if v == "incus" => Daemon::Incus,
        Ok(v) => panic!("REROOT_TEST_DAEMON={v:?}: expected lxd or incus"),
        Err(e) => panic!("REROOT_TEST_DAEMON: {e}"),
    }
}

/// The socket of the chosen daemon (`$LXD_DIR` or `$INCUS_DIR` first, then the Debian path).
/// Panics when it is absent.
pub fn lxd_socket() -> PathBuf {
    let d = daemon();
    let candidates = [
        std::env::var_os(d.dir_var())
            .filter(|v| !v.is_empty())
            .map(|v| PathBuf::from(v).join("unix.socket")),
        Some(PathBuf::from(d.default_dir()).join("unix.socket")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.exists() {
            return c;
        }
    }
    panic!(
        "{d} is not running: run scripts/testbed.sh (no socket at {}/unix.socket)",
        d.default_dir()
    );
}

/// Where the chosen daemon keeps each instance's log directory (`<dir>/<instance>`): Debian's
/// LXD under /var/lib/lxd logs to /var/log/lxd and Debian's Incus under /var/lib/incus to
/// /var/log/incus (seen on the testbed); an LXD started with another `LXD_DIR` to its `logs`
/// subdirectory (an Incus with another `INCUS_DIR` is assumed to do the same: not tried).
pub fn lxd_log_dir() -> PathBuf {
    let d = daemon();
    let socket = lxd_socket();
    let dir = socket.parent().expect("the socket has a directory");
    if dir == std::path::Path::new(d.default_dir()) {
        match d {
            Daemon::Lxd => PathBuf::from("/var/log/lxd"),
            Daemon::Incus => PathBuf::from("/var/log/incus"),
        }
    } else {
        dir.join("logs")
    }
}

/// Where the chosen daemon keeps an instance's runtime files, such as the socket of its file
/// helper (`forkfile.sock`): LXD 5.0 keeps them in the instance's log directory, Incus 6.0 in
/// its run directory (/run/incus/<instance> in Debian's layout, the only one the testbed has).
pub fn instance_runtime_dir(instance: &str) -> PathBuf {
    match daemon() {
        Daemon::Lxd => lxd_log_dir().join(instance),
        Daemon::Incus => {
            let socket = lxd_socket();
            assert_eq!(
                socket.parent(),
                Some(std::path::Path::new(Daemon::Incus.default_dir())),
                "the tests know Incus's run directory only in Debian's layout"
            );
            PathBuf::from("/run/incus").join(instance)
        }
    }
}

/// The reroot binary, pointed at the chosen daemon through `REROOT_SOCKET` (its `--socket`):
/// without it reroot would take the first socket it finds, LXD's, whatever the test runs on.
pub fn reroot_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_reroot"));
    cmd.env("REROOT_SOCKET", lxd_socket());
    cmd
}

/// `reroot --journal JOURNAL ARGS...` on the chosen daemon, made to die at `fault`
/// (`STEP:MOMENT`, the fault-injection feature) when given; what it printed is echoed to the
/// test's output, so a failing test shows every command it ran.
pub fn reroot_in(
    journal: &std::path::Path,
    fault: Option<&str>,
    args: &[&str],
) -> std::process::Output {
    let mut cmd = reroot_command();
    cmd.env_remove("REROOT_FAULT");
    if let Some(f) = fault {
        cmd.env("REROOT_FAULT", f);
    }
    let out = cmd
        .arg("--journal")
        .arg(journal)
        .args(args)
        .output()
        .expect("run reroot");
    let at = fault
        .map(|f| format!(" [REROOT_FAULT={f}]"))
        .unwrap_or_default();
    eprintln!(
        "reroot {}{at}: {}\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `rt-<prefix>-<8 random hex digits>`: unique across runs and parallel tests, and a valid
/// LXD instance, profile and volume name.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("rt-{prefix}-{}", &id[..8])
}

/// Held by every test that changes the daemon's state, so that they run one at a time. LXD 5.0.2 on
/// this 2-core testbed sometimes stalls for ~30 s when a container start or stop (whose hooks
/// call back into the daemon) overlaps other operations: the hook fails ("Failed to run: lxd
/// forkstart ... exit status 1", "shutting down the container failed") and unrelated requests
/// hang meanwhile. Seen about once in ten parallel runs; never in serial runs. A tokio mutex
/// works across the tests' separate runtimes.
pub static LXD_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Connect options for the testbed, with bounds short enough for tests.
pub fn lxd_options() -> ConnectOptions {
    ConnectOptions {
        socket: Some(lxd_socket()),
        project: None,
        request_timeout: Duration::from_secs(60),
        operation_timeout: Duration::from_secs(60),
    }
}

/// A client for the chosen daemon. Panics with the reason when it cannot connect, or when
/// the daemon on the socket is not the one chosen.
pub async fn lxd_client() -> Client {
    let d = daemon();
    match Client::connect(lxd_options()).await {
        Ok(c) => {
            assert_eq!(
                c.server_kind(),
                d.kind(),
                "REROOT_TEST_DAEMON chose {d}, but {} answers on {}",
                c.server_kind(),
                c.socket().display()
            );
            c
        }
        Err(e) => panic!("{d} is not running or not answering ({e}): run scripts/testbed.sh"),
    }
}

/// Force-stops and deletes an instance, retrying for up to a minute while LXD is still busy
/// with it (e.g. a clean stop that timed out but is still going on). Missing = done.
pub async fn remove_instance(client: &Client, name: &str) -> Result<(), reroot::lxd::Error> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let _ = client.stop_instance(name, Stop::Force).await;
        match client.delete_instance(name).await {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Removes, when dropped, the instances, profiles and custom volumes registered with it, in
/// that order (instances first, since they use the others). Missing objects are fine.
/// Works from inside a tokio test: the cleanup runs on its own thread and runtime.
#[derive(Default)]
pub struct LxdCleanup {
    instances: Mutex<Vec<String>>,
    profiles: Mutex<Vec<String>>,
    volumes: Mutex<Vec<(String, String)>>,
}

impl LxdCleanup {
    pub fn new() -> Self {
        Self::default()
    }
    /// Registers an instance name and returns it.
    pub fn instance(&self, name: &str) -> String {
        self.instances.lock().unwrap().push(name.to_string());
        name.to_string()
    }
    pub fn profile(&self, name: &str) -> String {
        self.profiles.lock().unwrap().push(name.to_string());
        name.to_string()
    }
    pub fn volume(&self, pool: &str, name: &str) -> String {
        self.volumes
            .lock()
            .unwrap()
            .push((pool.to_string(), name.to_string()));
        name.to_string()
    }
}

impl Drop for LxdCleanup {
    fn drop(&mut self) {
        let instances =
            std::mem::take(&mut *self.instances.lock().unwrap_or_else(|e| e.into_inner()));
        let profiles =
            std::mem::take(&mut *self.profiles.lock().unwrap_or_else(|e| e.into_inner()));
        let volumes = std::mem::take(&mut *self.volumes.lock().unwrap_or_else(|e| e.into_inner()));
        if instances.is_empty() && profiles.is_empty() && volumes.is_empty() {
            return;
        }
        let worker = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return eprintln!("cleanup: no runtime: {e}"),
            };
            rt.block_on(async move {
                let client = match Client::connect(lxd_options()).await {
                    Ok(c) => c,
                    Err(e) => return eprintln!("cleanup: cannot connect: {e}"),
                };
                for name in &instances {
                    if let Err(e) = remove_instance(&client, name).await {
                        eprintln!("cleanup: instance {name}: {e}");
                    }
                }
                for name in &profiles {
                    if let Err(e) = client.delete_profile(name).await {
                        eprintln!("cleanup: profile {name}: {e}");
                    }
                }
                for (pool, name) in &volumes {
                    if let Err(e) = client.delete_volume(pool, name).await {
                        eprintln!("cleanup: volume {pool}/{name}: {e}");
                    }
                }
            });
        });
        let _ = worker.join();
    }
}

/// Destroys a ZFS dataset with its children, snapshots and clones (`zfs destroy -r -R`),
/// retrying for up to 20 s: zfs-fuse says "dataset is busy" for a while after the containers
/// using it are gone. A dataset that does not exist is fine; a lasting failure is printed.
pub fn zfs_destroy_all(dataset: &str) {
    let mut last = String::new();
    for _ in 0..40 {
        match std::process::Command::new("zfs")
            .args(["destroy", "-r", "-R", dataset])
            .output()
        {
            Ok(o) if o.status.success() => return,
            Ok(o) => {
                last = String::from_utf8_lossy(&o.stderr).trim().to_string();
                if last.contains("does not exist") {
                    return;
                }
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("cleanup: zfs destroy -r -R {dataset}: {last}");
}

/// Removes everything on the testbed whose name starts with `prefix`: instances, profiles,
/// images with such an alias, ZFS datasets under `rerootz/PREFIX` and btrfs subvolumes of
/// the testbed mount. For a test bed's `Drop`: it runs on a thread of its own (a `Drop` may run
/// inside the test's runtime, which cannot block on another) and prints what it could not
/// remove instead of failing.
pub fn remove_everything_named(prefix: &str) {
    let prefix = prefix.to_string();
    let worker = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let Ok(client) = Client::connect(lxd_options()).await else {
                return eprintln!("cleanup: cannot connect to the daemon");
            };
            if let Ok(names) = client.list_instance_names().await {
                for n in names.iter().filter(|n| n.starts_with(&prefix)) {
                    if let Err(e) = remove_instance(&client, n).await {
                        eprintln!("cleanup: {n}: {e}");
                    }
                }
            }
            if let Ok(profiles) = client.list_profiles().await {
                for p in profiles.iter().filter(|p| p.name.starts_with(&prefix)) {
                    let _ = client.delete_profile(&p.name).await;
                }
            }
            if let Ok(images) = client.list_images().await {
                for i in images
                    .iter()
                    .filter(|i| i.aliases.iter().any(|a| a.name.starts_with(&prefix)))
                {
                    let _ = client.delete_image(&i.fingerprint).await;
                }
            }
        });
        zfs_destroy_all(&format!("{ZFS_POOL}/{prefix}"));
        if let Ok(entries) = std::fs::read_dir(BTRFS_MOUNT) {
            let mut subvolumes: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                })
                .collect();
            // Snapshots (`name@snap`) sort after their subvolume: delete them first.
            subvolumes.sort();
            subvolumes.reverse();
            for s in subvolumes {
                let _ = std::process::Command::new("btrfs")
                    .args(["subvolume", "delete"])
                    .arg(&s)
                    .output();
            }
        }
    });
    let _ = worker.join();
}

/// The testbed's ZFS pool (zfs-fuse), mounted at `/rerootz`.
pub const ZFS_POOL: &str = "rerootz";
/// Where the testbed's btrfs filesystem is mounted.
pub const BTRFS_MOUNT: &str = "/srv/reroot-btrfs";

/// The testbed's second ZFS pool, for copies between pools (mounted at `/rerootz2`).
pub const ZFS_POOL2: &str = "rerootz2";

/// Fails (never skips) unless the testbed's ZFS pool is ONLINE and mounted.
pub fn require_zfs() {
    require_zfs_pool(ZFS_POOL);
}

/// Fails (never skips) unless the testbed's second ZFS pool is ONLINE and mounted.
pub fn require_zfs_pool2() {
    require_zfs_pool(ZFS_POOL2);
}

fn require_zfs_pool(pool: &str) {
    let out = std::process::Command::new("zpool")
        .args(["list", "-H", "-o", "name,health", pool])
        .output()
        .unwrap_or_else(|e| panic!("cannot run zpool ({e}): run scripts/testbed.sh"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ONLINE"),
        "ZFS pool {pool} missing or not ONLINE (zpool says: {} {}): run scripts/testbed.sh",
        stdout.trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    assert!(
        std::path::Path::new(&format!("/{pool}")).is_dir(),
        "ZFS pool {pool} is not mounted at /{pool}: run scripts/testbed.sh"
    );
}

/// Runs a host command (`zfs`, `btrfs`, ...) that must succeed; its stdout.
pub fn host(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The output (a JSON object) of the step `step` of the first instance of the newest run in
/// the journal at `journal`, from `show RUN --json`.
pub fn last_step_output(journal: &Path, step: &str) -> serde_json::Value {
    let out = reroot_in(journal, None, &["history", "--json", "--limit", "1"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history json");
    let run = doc["runs"][0]["id"].as_str().expect("a run id").to_string();
    let show = reroot_in(journal, None, &["--json", "show", &run]);
    let doc: serde_json::Value = serde_json::from_slice(&show.stdout).expect("show json");
    doc["instances"][0]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["name"] == step)
        .unwrap_or_else(|| panic!("no step {step} in {doc}"))["output"]
        .clone()
}

/// How many runs the journal at `journal` holds (0 when it does not exist yet).
pub fn run_count(journal: &Path) -> usize {
    if !journal.exists() {
        return 0;
    }
    let out = reroot_in(journal, None, &["history", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history json");
    doc["runs"].as_array().map_or(0, Vec::len)
}

/// Fails (never skips) unless a btrfs filesystem is mounted at [`BTRFS_MOUNT`].
pub fn require_btrfs() {
    let mounts = std::fs::read_to_string("/proc/mounts").expect("read /proc/mounts");
    assert!(
        mounts.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 2 && f[1] == BTRFS_MOUNT && f[2] == "btrfs"
        }),
        "no btrfs filesystem mounted at {BTRFS_MOUNT}: run scripts/testbed.sh"
    );
}

/// True when the ZFS dataset exists (`zfs list` knows it).
pub fn zfs_exists(dataset: &str) -> bool {
    std::process::Command::new("zfs")
        .args(["list", "-H", "-o", "name", dataset])
        .output()
        .map(|o| o.status.success())
        .unwrap_or_else(|e| panic!("cannot run zfs: {e}"))
}
