//! Downtime benchmark: `cargo bench --bench downtime`, as root, on the real LXD daemon.
//!
//! How long each container is down when its root is replaced, and how long a fleet takes,
//! for reroot and for what a user would do instead, measured in the same run on the same
//! containers:
//! - **floor**: a bare stop + start of the container through the API (nothing can be faster
//!   than the daemon's own stop and start);
//! - **reroot**: `reroot rebuild --parallel 1` of all the containers (one run);
//! - **lxc script**: `lxc stop`, `lxc delete`, `lxc copy TEMPLATE/base`, one `lxc config device
//!   add` per disk device, `lxc start`, one container after the other;
//! - **raw API**: the same sequence as single API calls (stop, delete, copy, PATCH devices,
//!   start).
//!
//! Downtime is measured twice:
//! - **seen from outside**: while a container is being worked on, a separate task polls it
//!   (`GET /1.0/instances/NAME`) every `DOWNTIME_POLL_MS` ms; it is down from the moment it is
//!   not Running (or absent) until it is Running again under its name. Each transition is put
//!   half-way between the two polls that saw the two states (each poll dated at the middle of
//!   its request), so the error is about half the poll period;
//! - **own clock**: for reroot the journal's figure (the `start` step's `downtime_ms`, from the
//!   start of `stop` to the success of `start`, as `reroot --json show` gives it); for the
//!   others the bench's clock from before the stop request to the end of the start request.
//!   The own clock reads more: LXD reports a container Stopped before its stop operation ends
//!   and Running before its start operation ends; and during a clean stop LXD reports it
//!   Running while its init shuts down, so there only the own clock has the shutdown.
//!
//! Scenarios (`DOWNTIME_SCENARIOS`, comma-separated; default all; `none` for the fleet alone):
//! - `btrfs-force`: btrfs pool, data on plain directories, force stop (`--stop-timeout 0`);
//! - `btrfs-clean`: the same with a clean stop (the config's `stop-timeout: 10`, `lxc stop
//!   --timeout 10`, an API clean stop of 10 s);
//! - `zfs-data`: btrfs pool, data on ZFS datasets (zfs-fuse), force stop;
//! - `dir-big`: a `dir` pool and a template of `DOWNTIME_DIR_MB` MB (default 300): a copy takes
//!   seconds there, inside the window for the script and the API, before it for reroot.
//!
//! The journal's share of reroot's window: the journal records each step's start and end
//! (`at_ms` is taken before the event is flushed; every append waits for its flush). Inside
//! the window, from `stop`'s start to `start`'s success, there are `2 x attempts - 1` appends
//! whose flush the instance waits for. Their cost is that count times the mean flushed-append
//! latency measured in the same run on the same filesystem (a probe journal beside the bench's
//! journal, one writer); the snapshot's appends, beside the renames, are counted too, so this
//! is an upper bound. The time between steps (the window less the time some step was under
//! way: one flush per gap plus the engine's bookkeeping) is printed beside it, from the
//! timestamps.
//!
//! Fleet (`DOWNTIME_FLEET=100`, off by default since it takes 10-15 minutes): that many
//! containers (btrfs, data on directories, force stop) rebuilt by reroot at each
//! `--parallel` of `DOWNTIME_FLEET_LEVELS` (default `1 2 4 8`): wall time and downtime (journal,
//! and from outside polled every `DOWNTIME_FLEET_POLL_MS`, default 50), beside the floor (bare
//! stop + start, the same number at a time through the API), which shows how far LXD itself
//! lets more instances in flight help.
//!
//! Other knobs: `DOWNTIME_N` (containers per scenario, default 20), `DOWNTIME_OUT` (result file,
//! default `target/downtime.json`), `DOWNTIME_SCRATCH` (default `/var/tmp/reroot-bench`: configs,
//! data directories, the bench's own journal, logs), `DOWNTIME_TESTBED=0` (do not run
//! `scripts/testbed.sh` first, only check that the testbed is there). Everything the bench
//! creates is named `bench-*` (instances, the `bench-dir` pool and profile, the ZFS datasets
//! under `rerootz/bench`) and removed at the start and at the end of a run.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use journal::{EventKind, Journal, RunHeader};
use reroot::lxd::{
    Client, ConnectOptions, Devices, ExecRequest, InstancePatch, NewInstance, ProfilePut, Stop,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

type Res<T> = Result<T, String>;

const PREFIX: &str = "bench-";
const DIR_POOL: &str = "bench-dir";
const ZFS_POOL: &str = "rerootz";
const ZFS_PARENT: &str = "rerootz/bench";
const CLEAN_TIMEOUT_S: u64 = 10;

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().unwrap_or_else(|_| {
            eprintln!("downtime: {name}={v:?} is not a number");
            std::process::exit(2)
        }),
        _ => default,
    }
}

fn env_string(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

struct Settings {
    n: usize,
    scenarios: Vec<String>,
    fleet: usize,
    fleet_levels: Vec<usize>,
    poll: Duration,
    fleet_poll: Duration,
    dir_mb: usize,
    scratch: PathBuf,
    out: PathBuf,
    testbed: bool,
    /// `--max-down` of every reroot rebuild (`DOWNTIME_MAX_DOWN`; 0: not passed).
    max_down: usize,
}

impl Settings {
    fn from_env() -> Settings {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("target"));
        let levels = env_string("DOWNTIME_FLEET_LEVELS", "1 2 4 8");
        Settings {
            n: env_usize("DOWNTIME_N", 20).max(1),
            scenarios: env_string(
                "DOWNTIME_SCENARIOS",
                "btrfs-force,btrfs-clean,zfs-data,dir-big",
            )
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s != "none")
            .collect(),
            fleet: env_usize("DOWNTIME_FLEET", 0),
            fleet_levels: levels
                .split_whitespace()
                .map(|l| match l.parse::<usize>() {
                    Ok(v) if v >= 1 => v,
                    _ => {
                        eprintln!("downtime: bad level {l:?} in DOWNTIME_FLEET_LEVELS");
                        std::process::exit(2)
                    }
                })
                .collect(),
            poll: Duration::from_millis(env_usize("DOWNTIME_POLL_MS", 5).max(1) as u64),
            fleet_poll: Duration::from_millis(env_usize("DOWNTIME_FLEET_POLL_MS", 50).max(1) as u64),
            dir_mb: env_usize("DOWNTIME_DIR_MB", 300),
            scratch: PathBuf::from(env_string("DOWNTIME_SCRATCH", "/var/tmp/reroot-bench")),
            out: std::env::var_os("DOWNTIME_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(|| target.join("downtime.json")),
            testbed: env_string("DOWNTIME_TESTBED", "1") != "0",
            max_down: env_usize("DOWNTIME_MAX_DOWN", 0),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// Nearest-rank percentile of `v` (sorted in place); `None` if empty.
fn pct(v: &mut [f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

#[derive(Clone, Copy, Default)]
struct Spread {
    p50: f64,
    p95: f64,
    max: f64,
    n: usize,
}

impl Spread {
    fn of(values: &[f64]) -> Spread {
        let mut v = values.to_vec();
        Spread {
            p50: pct(&mut v, 50.0).unwrap_or(f64::NAN),
            p95: pct(&mut v, 95.0).unwrap_or(f64::NAN),
            max: pct(&mut v, 100.0).unwrap_or(f64::NAN),
            n: v.len(),
        }
    }
    fn json(&self) -> Value {
        let r = |x: f64| {
            if x.is_finite() {
                json!((x * 10.0).round() / 10.0)
            } else {
                Value::Null
            }
        };
        json!({ "p50_ms": r(self.p50), "p95_ms": r(self.p95), "max_ms": r(self.max), "n": self.n })
    }
    fn text(&self) -> String {
        format!("{:>7.0} {:>7.0} {:>7.0}", self.p50, self.p95, self.max)
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

// ---------------------------------------------------------------------------------------------
// The outside view: a poller per container being worked on.

#[derive(Clone, Copy)]
struct Obs {
    /// ms since the watcher's epoch, at the middle of the request.
    t: f64,
    up: bool,
}

/// What the polls of one container saw.
#[derive(Clone, Copy, Default)]
struct Seen {
    down_ms: f64,
    /// How many times it went down (1 expected).
    spells: usize,
    polls: usize,
    /// Mean time between two polls.
    period_ms: f64,
}

fn seen(obs: &[Obs]) -> Seen {
    let mut s = Seen {
        polls: obs.len(),
        ..Seen::default()
    };
    if obs.is_empty() {
        return s;
    }
    if obs.len() > 1 {
        s.period_ms = (obs[obs.len() - 1].t - obs[0].t) / (obs.len() - 1) as f64;
    }
    let mut since = if obs[0].up {
        None
    } else {
        s.spells += 1;
        Some(obs[0].t)
    };
    for w in obs.windows(2) {
        let mid = (w[0].t + w[1].t) / 2.0;
        if w[0].up && !w[1].up {
            since = Some(mid);
            s.spells += 1;
        } else if !w[0].up && w[1].up {
            if let Some(from) = since.take() {
                s.down_ms += mid - from;
            }
        }
    }
    if let Some(from) = since {
        // Never came back up while watched.
        s.down_ms += obs[obs.len() - 1].t - from;
    }
    s
}

type Watch = (
    Arc<AtomicBool>,
    tokio::task::JoinHandle<Vec<Obs>>,
    Option<tokio::sync::oneshot::Receiver<()>>,
);

struct Watcher {
    lxd: Client,
    period: Duration,
    epoch: Instant,
    live: Mutex<HashMap<String, Watch>>,
}

impl Watcher {
    fn new(lxd: &Client, period: Duration) -> Arc<Watcher> {
        Arc::new(Watcher {
            lxd: lxd.clone(),
            period,
            epoch: Instant::now(),
            live: Mutex::new(HashMap::new()),
        })
    }

    /// Starts polling `name` until [`Watcher::unwatch`] (and it is seen up once more).
    fn watch(&self, name: &str) {
        let done = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let lxd = self.lxd.clone();
        let inst = name.to_string();
        let period = self.period;
        let epoch = self.epoch;
        let flag = done.clone();
        let task = tokio::spawn(async move {
            let mut obs = Vec::new();
            let mut ready = Some(ready_tx);
            let mut done_at: Option<Instant> = None;
            loop {
                let sent = Instant::now();
                let up = match lxd.get_instance(&inst).await {
                    Ok(i) => Some(i.value.status == "Running"),
                    Err(e) if e.is_not_found() => Some(false),
                    Err(_) => None,
                };
                let got = Instant::now();
                if let Some(up) = up {
                    let t = ((sent - epoch).as_secs_f64() + (got - epoch).as_secs_f64()) * 500.0;
                    obs.push(Obs { t, up });
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                    if flag.load(Ordering::SeqCst) {
                        let at = *done_at.get_or_insert(got);
                        // Ends once seen up after the work is done (at most 60 s later).
                        if up || got - at > Duration::from_secs(60) {
                            break;
                        }
                    }
                }
                tokio::time::sleep_until((sent + period).into()).await;
            }
            obs
        });
        self.live
            .lock()
            .unwrap()
            .insert(name.to_string(), (done, task, Some(ready_rx)));
    }

    /// Waits until the poller of `name` has seen it once.
    async fn ready(&self, name: &str) {
        let rx = self
            .live
            .lock()
            .unwrap()
            .get_mut(name)
            .and_then(|w| w.2.take());
        if let Some(rx) = rx {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
        }
    }

    /// The sample of `name` worked on since `t0`: its own clock, then what the poller saw.
    async fn sample(&self, name: &str, t0: Instant) -> Sample {
        let own_ms = t0.elapsed().as_secs_f64() * 1e3;
        Sample {
            instance: name.to_string(),
            seen: self.unwatch(name).await,
            own_ms,
        }
    }

    async fn unwatch(&self, name: &str) -> Seen {
        let w = self.live.lock().unwrap().remove(name);
        match w {
            Some((done, task, _)) => {
                done.store(true, Ordering::SeqCst);
                seen(&task.await.unwrap_or_default())
            }
            None => Seen::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Commands

async fn run_cmd(program: &str, args: &[String]) -> Res<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn lxc(args: &[&str]) -> Res<String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run_cmd("lxc", &args).await
}

/// The reroot binary built with the bench, or `DOWNTIME_REROOT` (another build, to compare
/// two builds A/B in one sitting on the same containers).
fn reroot_bin() -> String {
    std::env::var("DOWNTIME_REROOT").unwrap_or_else(|_| env!("CARGO_BIN_EXE_reroot").to_string())
}

/// Runs reroot with the bench's journal; its stderr goes to `log`.
async fn reroot(journal: &Path, args: &[String], log: &Path) -> Res<String> {
    let mut all = vec!["--journal".to_string(), journal.display().to_string()];
    all.extend(args.iter().cloned());
    let out = Command::new(reroot_bin())
        .args(&all)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run reroot: {e}"))?;
    let _ = std::fs::write(log, &out.stderr);
    if !out.status.success() {
        return Err(format!(
            "`reroot {}` failed ({}); stderr in {}: {}",
            all.join(" "),
            out.status,
            log.display(),
            tail(&String::from_utf8_lossy(&out.stderr), 10)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Scenarios

#[derive(Clone, Copy, PartialEq)]
enum Data {
    Dirs,
    Zfs,
}

struct Scenario {
    key: String,
    /// Instance name prefix (`bench-bf`...).
    prefix: String,
    dir_pool: bool,
    big_mb: usize,
    data: Data,
    clean: bool,
}

impl Scenario {
    fn by_key(key: &str, dir_mb: usize) -> Res<Scenario> {
        let (prefix, dir_pool, data, clean) = match key {
            "btrfs-force" => ("bench-bf", false, Data::Dirs, false),
            "btrfs-clean" => ("bench-bc", false, Data::Dirs, true),
            "zfs-data" => ("bench-bz", false, Data::Zfs, false),
            "dir-big" => ("bench-dd", true, Data::Dirs, false),
            "fleet" => ("bench-fl", false, Data::Dirs, false),
            other => {
                return Err(format!(
                "unknown scenario {other:?} (known: btrfs-force, btrfs-clean, zfs-data, dir-big)"
            ))
            }
        };
        Ok(Scenario {
            key: key.to_string(),
            prefix: prefix.to_string(),
            dir_pool,
            big_mb: if dir_pool { dir_mb } else { 0 },
            data,
            clean,
        })
    }
    fn template(&self) -> String {
        format!("{}-tpl", self.prefix)
    }
    fn names(&self, n: usize) -> Vec<String> {
        let width = n.to_string().len().max(2);
        (1..=n)
            .map(|i| format!("{}-{i:0width$}", self.prefix))
            .collect()
    }
    fn profiles(&self) -> Vec<String> {
        let mut p = vec!["default".to_string()];
        if self.dir_pool {
            p.push(DIR_POOL.to_string());
        }
        p
    }
    fn describe(&self) -> String {
        format!(
            "{} pool{}, data on {}, {} stop",
            if self.dir_pool { "dir" } else { "btrfs" },
            if self.big_mb > 0 {
                format!(" ({} MB template)", self.big_mb)
            } else {
                String::new()
            },
            match self.data {
                Data::Dirs => "plain directories",
                Data::Zfs => "ZFS datasets",
            },
            if self.clean { "clean" } else { "force" }
        )
    }
}

struct Ctx {
    lxd: Client,
    settings: Settings,
    journal: PathBuf,
    logs: PathBuf,
    /// Mean flushed append latency of a probe journal beside the bench's journal (ms).
    append_ms: f64,
    append_p50_ms: f64,
}

/// One container worked on by one method.
#[derive(Clone, Default)]
struct Sample {
    instance: String,
    seen: Seen,
    /// reroot: the journal's `downtime_ms`; the others: the bench's clock, stop to start.
    own_ms: f64,
}

#[derive(Default)]
struct MethodResult {
    method: String,
    samples: Vec<Sample>,
    wall_s: f64,
    /// reroot only: step name -> durations (ms) of each instance.
    steps: BTreeMap<String, Vec<f64>>,
    /// reroot only: per instance (window ms, steps' spans in it ms, appends in it).
    windows: Vec<(f64, f64, f64)>,
    run: Option<String>,
}

impl MethodResult {
    fn outside(&self) -> Spread {
        Spread::of(
            &self
                .samples
                .iter()
                .map(|s| s.seen.down_ms)
                .collect::<Vec<_>>(),
        )
    }
    fn own(&self) -> Spread {
        Spread::of(&self.samples.iter().map(|s| s.own_ms).collect::<Vec<_>>())
    }
    fn poll_ms(&self) -> f64 {
        let v: Vec<f64> = self.samples.iter().map(|s| s.seen.period_ms).collect();
        Spread::of(&v).p50
    }
    fn odd_spells(&self) -> usize {
        self.samples.iter().filter(|s| s.seen.spells != 1).count()
    }
    fn json(&self) -> Value {
        let steps: serde_json::Map<String, Value> = self
            .steps
            .iter()
            .map(|(k, v)| (k.clone(), Spread::of(v).json()))
            .collect();
        json!({
            "method": self.method,
            "run": self.run,
            "wall_s": (self.wall_s * 100.0).round() / 100.0,
            "outside": self.outside().json(),
            "own_clock": self.own().json(),
            "poll_period_ms_p50": (self.poll_ms() * 10.0).round() / 10.0,
            "samples_not_one_down_spell": self.odd_spells(),
            "steps": steps,
            "samples": self.samples.iter().map(|s| json!({
                "instance": s.instance,
                "outside_ms": (s.seen.down_ms * 10.0).round() / 10.0,
                "own_ms": s.own_ms,
                "down_spells": s.seen.spells,
                "polls": s.seen.polls,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The disk devices of each container as reroot set them at launch (for the script and API).
type DeviceMap = BTreeMap<String, Devices>;

async fn remove_ours(lxd: &Client, prefix: &str) -> Res<usize> {
    let names = lxd
        .list_instance_names()
        .await
        .map_err(|e| format!("listing instances: {e}"))?;
    let mut n = 0;
    for name in names.iter().filter(|n| n.starts_with(prefix)) {
        let _ = lxd.stop_instance(name, Stop::Force).await;
        lxd.delete_instance(name)
            .await
            .map_err(|e| format!("deleting {name}: {e}"))?;
        n += 1;
    }
    Ok(n)
}

async fn zfs_destroy(dataset: &str) -> Res<()> {
    let exists = Command::new("zfs")
        .args(["list", "-H", "-o", "name", dataset])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false);
    if !exists {
        return Ok(());
    }
    // zfs-fuse may call a dataset busy for a moment after the container that mounted it is
    // gone.
    let mut tries = 0;
    loop {
        tries += 1;
        match run_cmd("zfs", &["destroy".into(), "-r".into(), dataset.into()]).await {
            Ok(_) => return Ok(()),
            Err(e) if tries >= 20 => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Whether LXD has this storage pool. Asked with `lxc storage show`: the client's
/// `list_storage_pools` cannot read the list while a pool is unused (LXD 5.0.2 answers
/// `"used_by": null` for it).
async fn pool_exists(name: &str) -> bool {
    lxc(&["storage", "show", name]).await.is_ok()
}

/// Everything a bench run creates, whatever an earlier one left.
async fn cleanup_all(lxd: &Client, scratch: &Path) -> Res<()> {
    let n = remove_ours(lxd, PREFIX).await?;
    if lxd.get_profile(DIR_POOL).await.is_ok() {
        lxd.delete_profile(DIR_POOL)
            .await
            .map_err(|e| format!("deleting profile {DIR_POOL}: {e}"))?;
    }
    if pool_exists(DIR_POOL).await {
        lxc(&["storage", "delete", DIR_POOL]).await?;
    }
    zfs_destroy(ZFS_PARENT).await?;
    if scratch.exists() {
        std::fs::remove_dir_all(scratch)
            .map_err(|e| format!("removing {}: {e}", scratch.display()))?;
    }
    println!("    removed {n} bench-* instances, the {DIR_POOL} pool and profile if there, {ZFS_PARENT}, {}", scratch.display());
    Ok(())
}

fn write(path: &Path, text: &str) -> Res<()> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Builds the scenario's template (through the API), its configs, and launches the
/// containers with reroot. Returns their config files and disk devices.
async fn set_up(ctx: &Ctx, sc: &Scenario, names: &[String]) -> Res<(Vec<String>, DeviceMap)> {
    let lxd = &ctx.lxd;
    let dir = ctx.settings.scratch.join(&sc.key);
    let cfg = dir.join("cfg");
    std::fs::create_dir_all(&cfg).map_err(|e| format!("creating {}: {e}", cfg.display()))?;
    if sc.dir_pool {
        if !pool_exists(DIR_POOL).await {
            // Setup only (the client has no call to create a pool).
            lxc(&["storage", "create", DIR_POOL, "dir"]).await?;
        }
        if lxd.get_profile(DIR_POOL).await.is_err() {
            let mut devices = Devices::new();
            devices.insert(
                "root".into(),
                [("type", "disk"), ("path", "/"), ("pool", DIR_POOL)]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
            lxd.create_profile(
                DIR_POOL,
                &ProfilePut {
                    description: "reroot downtime bench: root on the dir pool".into(),
                    config: Default::default(),
                    devices,
                },
            )
            .await
            .map_err(|e| format!("creating profile {DIR_POOL}: {e}"))?;
        }
    }
    let tpl = sc.template();
    lxd.create_instance(&NewInstance::from_image_alias(&tpl, "reroot-old").profiles(sc.profiles()))
        .await
        .map_err(|e| format!("creating template {tpl}: {e}"))?;
    if sc.big_mb > 0 {
        let started = Instant::now();
        lxd.start_instance(&tpl).await.map_err(|e| e.to_string())?;
        let script = format!(
            "mkdir -p /opt/big && i=0; while [ $i -lt {} ]; do \
             dd if=/dev/urandom of=/opt/big/f$i bs=1M count=1 2>/dev/null || exit 1; \
             i=$((i+1)); done; sync",
            sc.big_mb
        );
        let out = lxd
            .exec(
                &tpl,
                &ExecRequest::shell(&script).timeout(Duration::from_secs(600)),
            )
            .await
            .map_err(|e| format!("filling the template: {e}"))?;
        if !out.success() {
            return Err(format!(
                "filling the template failed: {}",
                out.stderr_text()
            ));
        }
        lxd.stop_instance(&tpl, Stop::Force)
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "    template {tpl}: {} MB written in {:.1} s",
            sc.big_mb,
            started.elapsed().as_secs_f64()
        );
    }
    lxd.create_snapshot(&tpl, "base", None)
        .await
        .map_err(|e| format!("snapshot {tpl}/base: {e}"))?;

    let fs = match sc.data {
        Data::Dirs => format!(
            "    kind: dir\n    pattern: {}/(instance)\n",
            dir.join("fs").display()
        ),
        Data::Zfs => format!("    pattern: {ZFS_PARENT}/{}/(instance)\n", sc.key),
    };
    let profiles: String = sc.profiles().iter().map(|p| format!("  - {p}\n")).collect();
    write(
        &cfg.join("base.yaml"),
        &format!(
            "#lxdops\n# reroot downtime bench, scenario {}\nostype: busybox\nprofiles:\n{profiles}\
             device-owner: 100000:100000\nfilesystems:\n  data:\n{fs}devices:\n  www:\n    \
             path: /var/www\n    filesystem: data\n  log:\n    path: /var/log/site\n    \
             filesystem: data\n    dir: log\nstop-timeout: {CLEAN_TIMEOUT_S}\n",
            sc.key
        ),
    )?;
    let mut cfgs = Vec::new();
    for name in names {
        let path = cfg.join(format!("{name}.yaml"));
        write(
            &path,
            &format!("#lxdops\ndescription: bench container {name}\ninclude:\n  - base.yaml\norigin: {tpl}/base\n"),
        )?;
        cfgs.push(path.display().to_string());
    }
    let started = Instant::now();
    let mut args: Vec<String> = ["rebuild", "--parallel", "4", "--stop-timeout", "0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(cfgs.iter().cloned());
    reroot(
        &ctx.journal,
        &args,
        &ctx.logs.join(format!("{}-launch.log", sc.key)),
    )
    .await?;
    println!(
        "    launched {} containers with reroot in {:.1} s",
        names.len(),
        started.elapsed().as_secs_f64()
    );
    let mut devices = DeviceMap::new();
    for name in names {
        let i = lxd
            .get_instance(name)
            .await
            .map_err(|e| format!("{name} after the launch: {e}"))?;
        if !i.value.is_running() {
            return Err(format!("{name} is {} after the launch", i.value.status));
        }
        let disks: Devices = i
            .value
            .devices
            .iter()
            .filter(|(k, d)| {
                k.as_str() != "root" && d.get("type").map(String::as_str) == Some("disk")
            })
            .map(|(k, d)| (k.clone(), d.clone()))
            .collect();
        if disks.is_empty() {
            return Err(format!("{name} has no disk device after the launch"));
        }
        devices.insert(name.clone(), disks);
    }
    Ok((cfgs, devices))
}

fn stop_how(clean: bool) -> Stop {
    if clean {
        Stop::Clean {
            timeout: Duration::from_secs(CLEAN_TIMEOUT_S),
        }
    } else {
        Stop::Force
    }
}

/// Stops (clean falls back to force, as reroot and a careful script do).
async fn api_stop(lxd: &Client, name: &str, clean: bool) -> Res<()> {
    match lxd.stop_instance(name, stop_how(clean)).await {
        Ok(_) => Ok(()),
        Err(_) if clean => lxd
            .stop_instance(name, Stop::Force)
            .await
            .map(|_| ())
            .map_err(|e| format!("stop {name}: {e}")),
        Err(e) => Err(format!("stop {name}: {e}")),
    }
}

/// The floor: bare stop + start of each container through the API, `parallel` at a time.
async fn floor(
    ctx: &Ctx,
    names: &[String],
    clean: bool,
    parallel: usize,
    period: Duration,
) -> Res<MethodResult> {
    let watcher = Watcher::new(&ctx.lxd, period);
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for name in names {
        let (lxd, w, sem, name) = (ctx.lxd.clone(), watcher.clone(), sem.clone(), name.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.map_err(|e| e.to_string())?;
            w.watch(&name);
            w.ready(&name).await;
            let t0 = Instant::now();
            api_stop(&lxd, &name, clean).await?;
            lxd.start_instance(&name)
                .await
                .map_err(|e| format!("start {name}: {e}"))?;
            Ok::<Sample, String>(w.sample(&name, t0).await)
        });
    }
    let mut samples = Vec::new();
    while let Some(r) = set.join_next().await {
        samples.push(r.map_err(|e| e.to_string())??);
    }
    samples.sort_by(|a, b| a.instance.cmp(&b.instance));
    Ok(MethodResult {
        method: if parallel > 1 {
            format!("floor (x{parallel})")
        } else {
            "floor".into()
        },
        samples,
        wall_s: started.elapsed().as_secs_f64(),
        ..Default::default()
    })
}

/// The `lxc` script a user would write, one container after the other.
async fn lxc_script(ctx: &Ctx, sc: &Scenario, devices: &DeviceMap) -> Res<MethodResult> {
    let watcher = Watcher::new(&ctx.lxd, ctx.settings.poll);
    let source = format!("{}/base", sc.template());
    let started = Instant::now();
    let mut samples = Vec::new();
    for (name, devs) in devices {
        watcher.watch(name);
        watcher.ready(name).await;
        let t0 = Instant::now();
        let timeout = CLEAN_TIMEOUT_S.to_string();
        if sc.clean {
            if lxc(&["stop", name, "--timeout", &timeout]).await.is_err() {
                lxc(&["stop", "-f", name]).await?;
            }
        } else {
            lxc(&["stop", "-f", name]).await?;
        }
        lxc(&["delete", name]).await?;
        lxc(&["copy", &source, name]).await?;
        for (dev, d) in devs {
            let mut args = vec![
                "config".to_string(),
                "device".into(),
                "add".into(),
                name.clone(),
                dev.clone(),
                "disk".into(),
            ];
            args.extend(
                d.iter()
                    .filter(|(k, _)| k.as_str() != "type")
                    .map(|(k, v)| format!("{k}={v}")),
            );
            run_cmd("lxc", &args).await?;
        }
        lxc(&["start", name]).await?;
        samples.push(watcher.sample(name, t0).await);
    }
    Ok(MethodResult {
        method: "lxc script".into(),
        samples,
        wall_s: started.elapsed().as_secs_f64(),
        ..Default::default()
    })
}

/// The same sequence on the raw API: stop, delete, copy, PATCH the devices, start.
async fn raw_api(ctx: &Ctx, sc: &Scenario, devices: &DeviceMap) -> Res<MethodResult> {
    let lxd = &ctx.lxd;
    let watcher = Watcher::new(lxd, ctx.settings.poll);
    let tpl = sc.template();
    let started = Instant::now();
    let mut samples = Vec::new();
    for (name, devs) in devices {
        watcher.watch(name);
        watcher.ready(name).await;
        let t0 = Instant::now();
        api_stop(lxd, name, sc.clean).await?;
        lxd.delete_instance(name)
            .await
            .map_err(|e| format!("delete {name}: {e}"))?;
        lxd.create_instance(
            &NewInstance::copy_of_snapshot(name, &tpl, "base").profiles(sc.profiles()),
        )
        .await
        .map_err(|e| format!("copy {name}: {e}"))?;
        let patch = InstancePatch {
            devices: Some(devs.clone()),
            ..Default::default()
        };
        lxd.patch_instance(name, &patch, None)
            .await
            .map_err(|e| format!("devices of {name}: {e}"))?;
        lxd.start_instance(name)
            .await
            .map_err(|e| format!("start {name}: {e}"))?;
        samples.push(watcher.sample(name, t0).await);
    }
    Ok(MethodResult {
        method: "raw API".into(),
        samples,
        wall_s: started.elapsed().as_secs_f64(),
        ..Default::default()
    })
}

/// `reroot rebuild` of all the containers in one run; the pollers follow its `--json` event
/// stream (each container watched from its `instance_started` to its `instance_finished`).
/// The journal's figures come from `reroot --json show RUN` afterwards; the run is pruned.
async fn reroot_rebuild(
    ctx: &Ctx,
    label: &str,
    cfgs: &[String],
    clean: bool,
    parallel: usize,
    period: Duration,
) -> Res<MethodResult> {
    let watcher = Watcher::new(&ctx.lxd, period);
    let mut args: Vec<String> = vec![
        "--journal".into(),
        ctx.journal.display().to_string(),
        "--json".into(),
        "rebuild".into(),
        "--force".into(),
        "--parallel".into(),
        parallel.to_string(),
    ];
    if !clean {
        args.extend(["--stop-timeout".into(), "0".into()]);
    }
    if ctx.settings.max_down > 0 {
        args.extend(["--max-down".into(), ctx.settings.max_down.to_string()]);
    }
    args.extend(cfgs.iter().cloned());
    let log = ctx.logs.join(format!("{label}.log"));
    let stderr = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child = Command::new(reroot_bin())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot run reroot: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut run = None;
    let mut seen_of: HashMap<String, Seen> = HashMap::new();
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if run.is_none() {
            run = v["run"].as_str().map(str::to_string);
        }
        let inst = v["instance"].as_str().unwrap_or_default().to_string();
        match v["type"].as_str() {
            Some("instance_started") => watcher.watch(&inst),
            Some("instance_finished") => {
                let s = watcher.unwatch(&inst).await;
                seen_of.insert(inst, s);
            }
            _ => {}
        }
    }
    let status = child.wait().await.map_err(|e| e.to_string())?;
    let wall_s = started.elapsed().as_secs_f64();
    let run = run.ok_or_else(|| format!("reroot printed no run id (see {})", log.display()))?;
    if !status.success() {
        return Err(format!(
            "reroot rebuild (run {run}) failed ({status}); see {}: {}",
            log.display(),
            tail(&std::fs::read_to_string(&log).unwrap_or_default(), 10)
        ));
    }
    let shown = reroot(
        &ctx.journal,
        &["--json".into(), "show".into(), run.clone()],
        &ctx.logs.join(format!("{label}-show.log")),
    )
    .await?;
    let shown: Value = serde_json::from_str(&shown).map_err(|e| format!("show --json: {e}"))?;
    let mut result = MethodResult {
        method: "reroot".into(),
        wall_s,
        run: Some(run.clone()),
        ..Default::default()
    };
    for i in shown["instances"].as_array().cloned().unwrap_or_default() {
        let name = i["name"].as_str().unwrap_or_default().to_string();
        let steps = i["steps"].as_array().cloned().unwrap_or_default();
        let step = |n: &str| steps.iter().find(|s| s["name"] == n).cloned();
        let span = |s: &Value| -> Option<(f64, f64)> {
            Some((s["started_at_ms"].as_f64()?, s["ended_at_ms"].as_f64()?))
        };
        for s in &steps {
            if let (Some(n), Some((a, b))) = (s["name"].as_str(), span(s)) {
                result.steps.entry(n.to_string()).or_default().push(b - a);
            }
        }
        let own_ms = step("start")
            .and_then(|s| s["output"].as_str().map(str::to_string))
            .and_then(|o| serde_json::from_str::<Value>(&o).ok())
            .and_then(|o| o["downtime_ms"].as_f64())
            .ok_or_else(|| format!("{name}: no downtime_ms in the journal of run {run}"))?;
        let (Some((w0, _)), Some((_, w1))) = (
            step("stop").as_ref().and_then(span),
            step("start").as_ref().and_then(span),
        ) else {
            return Err(format!("{name}: no stop or start step in run {run}"));
        };
        // The time some step was under way: the union of their spans, since the data
        // snapshot runs beside the renames.
        let mut inside = Vec::new();
        let mut attempts = 0.0;
        for s in &steps {
            if let Some((a, b)) = span(s) {
                if a >= w0 && b <= w1 {
                    inside.push((a, b));
                    attempts += s["attempt"].as_f64().unwrap_or(1.0);
                }
            }
        }
        inside.sort_by(|x, y| x.0.total_cmp(&y.0));
        let (mut spans, mut reached) = (0.0, f64::MIN);
        for (a, b) in inside {
            if b > reached {
                spans += b - a.max(reached);
                reached = b;
            }
        }
        // Each attempt is two flushed appends; the last one (start's success) comes after the
        // instance is up.
        result.windows.push((w1 - w0, spans, 2.0 * attempts - 1.0));
        result.samples.push(Sample {
            seen: seen_of.get(&name).copied().unwrap_or_default(),
            instance: name,
            own_ms,
        });
    }
    result.samples.sort_by(|a, b| a.instance.cmp(&b.instance));
    if result.samples.len() != cfgs.len() {
        return Err(format!(
            "run {run}: {} instances in the journal, {} expected",
            result.samples.len(),
            cfgs.len()
        ));
    }
    // The old roots go, so that every method works on the same number of instances.
    reroot(
        &ctx.journal,
        &["prune".into(), run],
        &ctx.logs.join(format!("{label}-prune.log")),
    )
    .await?;
    Ok(result)
}

/// The journal's share of reroot's windows (see the module's comment).
fn journal_share(ctx: &Ctx, r: &MethodResult) -> Value {
    let n = r.windows.len().max(1) as f64;
    let window: f64 = r.windows.iter().map(|w| w.0).sum::<f64>() / n;
    let spans: f64 = r.windows.iter().map(|w| w.1).sum::<f64>() / n;
    let appends: f64 = r.windows.iter().map(|w| w.2).sum::<f64>() / n;
    let journal_ms = appends * ctx.append_ms;
    json!({
        "method": "appends inside the window x mean flushed append latency of a probe journal on the same filesystem",
        "window_ms_mean": (window * 10.0).round() / 10.0,
        "appends_in_window_mean": appends,
        "append_ms_mean": (ctx.append_ms * 1000.0).round() / 1000.0,
        "append_ms_p50": (ctx.append_p50_ms * 1000.0).round() / 1000.0,
        "journal_ms_mean": (journal_ms * 10.0).round() / 10.0,
        "journal_share": ratio(journal_ms, window),
        "between_steps_ms_mean": ((window - spans) * 10.0).round() / 10.0,
        "between_steps_share": ratio(window - spans, window),
    })
}

/// Flushed append latency of a journal in `dir` (one writer, step events).
fn probe_journal(dir: &Path, count: usize) -> Res<(f64, f64)> {
    let _ = std::fs::remove_dir_all(dir);
    let j = Journal::open(dir).map_err(|e| format!("probe journal: {e}"))?;
    let header = RunHeader {
        id: RunHeader::new_id(),
        command: vec!["bench".into()],
        user: "bench".into(),
        host: "bench".into(),
        started_at_ms: journal::now_ms(),
        config_digests: vec![],
        instances: vec!["probe".into()],
        options: Default::default(),
    };
    let run = header.id;
    j.create_run(header).map_err(|e| e.to_string())?;
    let mut lat = Vec::with_capacity(count);
    for n in 0..count {
        let step = format!("step-{}", n / 2);
        let kind = if n % 2 == 0 {
            EventKind::StepStarted
        } else {
            EventKind::StepSucceeded {
                output: "{\"downtime_ms\":1000}".into(),
            }
        };
        let t = Instant::now();
        j.append(run, Some("probe"), Some(&step), 1, kind)
            .map_err(|e| e.to_string())?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    drop(j);
    let _ = std::fs::remove_dir_all(dir);
    let mean = lat.iter().sum::<f64>() / lat.len().max(1) as f64;
    Ok((mean, Spread::of(&lat).p50))
}

struct ScenarioResult {
    sc: Scenario,
    n: usize,
    methods: Vec<MethodResult>,
    journal: Value,
}

async fn run_scenario(ctx: &Ctx, sc: Scenario) -> Res<ScenarioResult> {
    let n = ctx.settings.n;
    println!(
        "==> scenario {}: {} containers, {}",
        sc.key,
        n,
        sc.describe()
    );
    let names = sc.names(n);
    let (cfgs, devices) = set_up(ctx, &sc, &names).await?;
    let mut methods = Vec::new();
    println!("    floor ...");
    methods.push(floor(ctx, &names, sc.clean, 1, ctx.settings.poll).await?);
    println!("    reroot rebuild ...");
    let r = reroot_rebuild(ctx, &sc.key, &cfgs, sc.clean, 1, ctx.settings.poll).await?;
    let journal = journal_share(ctx, &r);
    methods.push(r);
    println!("    lxc script ...");
    methods.push(lxc_script(ctx, &sc, &devices).await?);
    println!("    raw API ...");
    methods.push(raw_api(ctx, &sc, &devices).await?);
    remove_ours(&ctx.lxd, &format!("{}-", sc.prefix)).await?;
    if sc.data == Data::Zfs {
        // The end of the run tries again.
        if let Err(e) = zfs_destroy(&format!("{ZFS_PARENT}/{}", sc.key)).await {
            println!("    (not removed yet: {e})");
        }
    }
    let _ = std::fs::remove_dir_all(ctx.settings.scratch.join(&sc.key));
    let res = ScenarioResult {
        sc,
        n,
        methods,
        journal,
    };
    print_scenario(&res);
    Ok(res)
}

fn find<'a>(methods: &'a [MethodResult], name: &str) -> Option<&'a MethodResult> {
    methods.iter().find(|m| m.method == name)
}

fn ratios(methods: &[MethodResult]) -> Value {
    let p50 = |m: &str| {
        find(methods, m)
            .map(|m| m.outside().p50)
            .unwrap_or(f64::NAN)
    };
    let r = p50("reroot");
    json!({
        "reroot_over_floor": ratio(r, p50("floor")),
        "reroot_minus_floor_ms": r - p50("floor"),
        "reroot_over_lxc_script": ratio(r, p50("lxc script")),
        "reroot_over_raw_api": ratio(r, p50("raw API")),
    })
}

fn print_scenario(res: &ScenarioResult) {
    println!();
    println!(
        "--- {}: {} containers, {} (LXD polled every {} ms from outside)",
        res.sc.key,
        res.n,
        res.sc.describe(),
        res.methods
            .first()
            .map(|m| m.poll_ms())
            .unwrap_or(0.0)
            .round()
    );
    println!(
        "{:<12} {:>7} {:>7} {:>7}   {:>7} {:>7} {:>7}   {:>7}  {:>6}",
        "downtime ms", "out p50", "p95", "max", "own p50", "p95", "max", "wall s", "x floor"
    );
    let floor = find(&res.methods, "floor")
        .map(|m| m.outside().p50)
        .unwrap_or(f64::NAN);
    for m in &res.methods {
        let o = m.outside();
        println!(
            "{:<12} {}   {}   {:>7.1}  {:>6.2}{}",
            m.method,
            o.text(),
            m.own().text(),
            m.wall_s,
            ratio(o.p50, floor),
            if m.odd_spells() > 0 {
                format!("  ({} not seen down exactly once)", m.odd_spells())
            } else {
                String::new()
            }
        );
    }
    let r = ratios(&res.methods);
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "reroot p50 (outside) / floor {:.2} (+{:.0} ms), / lxc script {:.2}, / raw API {:.2}",
        f("reroot_over_floor"),
        f("reroot_minus_floor_ms"),
        f("reroot_over_lxc_script"),
        f("reroot_over_raw_api")
    );
    if let Some(m) = find(&res.methods, "reroot") {
        let steps: Vec<String> = reroot::steps::rebuild_pipeline()
            .iter()
            .map(|s| s.name())
            .filter_map(|s| {
                m.steps
                    .get(s)
                    .map(|v| format!("{s} {:.0}", Spread::of(v).p50))
            })
            .collect();
        println!("reroot steps, p50 ms: {}", steps.join(", "));
    }
    let j = &res.journal;
    let g = |k: &str| j[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "journal in reroot's window: {:.0} appends x {:.2} ms = {:.1} ms of {:.0} ms ({:.1} %); \
         time between steps {:.1} ms ({:.1} %)",
        g("appends_in_window_mean"),
        g("append_ms_mean"),
        g("journal_ms_mean"),
        g("window_ms_mean"),
        100.0 * g("journal_share"),
        g("between_steps_ms_mean"),
        100.0 * g("between_steps_share"),
    );
    println!();
}

// ---------------------------------------------------------------------------------------------
// Fleet

struct FleetRow {
    parallel: usize,
    reroot: MethodResult,
    floor: Option<MethodResult>,
}

async fn run_fleet(ctx: &Ctx, count: usize) -> Res<Vec<FleetRow>> {
    let sc = Scenario::by_key("fleet", 0)?;
    println!(
        "==> fleet: {count} containers, {}, --parallel {:?}",
        sc.describe(),
        ctx.settings.fleet_levels
    );
    let names = sc.names(count);
    let (cfgs, _) = set_up(ctx, &sc, &names).await?;
    let mut rows = Vec::new();
    for &level in &ctx.settings.fleet_levels {
        println!("    reroot rebuild --parallel {level} ...");
        let r = reroot_rebuild(
            ctx,
            &format!("fleet-p{level}"),
            &cfgs,
            false,
            level,
            ctx.settings.fleet_poll,
        )
        .await?;
        println!(
            "      {:.1} s, downtime p50 {:.0} ms (journal)",
            r.wall_s,
            r.own().p50
        );
        let floor = if env_string("DOWNTIME_FLEET_FLOOR", "1") != "0" {
            println!("    floor, {level} at a time ...");
            let f = floor(ctx, &names, false, level, ctx.settings.fleet_poll).await?;
            println!(
                "      {:.1} s, downtime p50 {:.0} ms",
                f.wall_s,
                f.own().p50
            );
            Some(f)
        } else {
            None
        };
        rows.push(FleetRow {
            parallel: level,
            reroot: r,
            floor,
        });
    }
    remove_ours(&ctx.lxd, &format!("{}-", sc.prefix)).await?;
    let _ = std::fs::remove_dir_all(ctx.settings.scratch.join(&sc.key));
    print_fleet(count, &rows);
    Ok(rows)
}

fn print_fleet(count: usize, rows: &[FleetRow]) {
    println!();
    println!("--- fleet: {count} containers, btrfs pool, data on plain directories, force stop");
    println!(
        "{:<8} {:>8} {:>7}  {:>23}  {:>23}  {:>8} {:>7}  {:>23}",
        "parallel",
        "wall s",
        "x p1",
        "journal p50/p95/max ms",
        "outside p50/p95/max ms",
        "floor s",
        "x p1",
        "floor p50/p95/max ms"
    );
    let base = rows.first().map(|r| r.reroot.wall_s).unwrap_or(f64::NAN);
    let fbase = rows
        .first()
        .and_then(|r| r.floor.as_ref())
        .map(|f| f.wall_s)
        .unwrap_or(f64::NAN);
    for r in rows {
        let (fw, fx, fs) = match &r.floor {
            Some(f) => (
                format!("{:.1}", f.wall_s),
                format!("{:.2}", ratio(f.wall_s, fbase)),
                f.own().text(),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:<8} {:>8.1} {:>7.2}  {}  {}  {:>8} {:>7}  {}",
            r.parallel,
            r.reroot.wall_s,
            ratio(r.reroot.wall_s, base),
            r.reroot.own().text(),
            r.reroot.outside().text(),
            fw,
            fx,
            fs
        );
    }
    println!();
}

// ---------------------------------------------------------------------------------------------

async fn check_testbed(lxd: &Client) -> Res<()> {
    let mut missing = Vec::new();
    for alias in ["reroot-old"] {
        if lxd.get_image_alias(alias).await.is_err() {
            missing.push(format!("the image {alias}"));
        }
    }
    if !pool_exists("default").await {
        missing.push("the storage pool `default`".into());
    }
    if std::fs::metadata(format!("/{ZFS_POOL}")).is_err() {
        missing.push(format!("the ZFS pool {ZFS_POOL} mounted at /{ZFS_POOL}"));
    }
    if which("lxc").is_none() {
        missing.push("the lxc command".into());
    }
    if which("zfs").is_none() {
        missing.push("the zfs command".into());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the testbed is incomplete: missing {} (run `bash scripts/testbed.sh` as root)",
            missing.join(", ")
        ))
    }
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(cmd))
            .find(|p| p.is_file())
    })
}

async fn bench(settings: Settings) -> Res<(Vec<String>, Value)> {
    if unsafe { libc::geteuid() } != 0 {
        return Err("must run as root (it drives the LXD daemon, ZFS and the testbed)".into());
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    if settings.testbed {
        println!("==> scripts/testbed.sh");
        let ok = Command::new("bash")
            .arg(repo.join("scripts/testbed.sh"))
            .status()
            .await
            .map_err(|e| format!("cannot run scripts/testbed.sh: {e}"))?
            .success();
        if !ok {
            return Err("scripts/testbed.sh failed: the testbed is not ready".into());
        }
    }
    let lxd = Client::connect(ConnectOptions::default())
        .await
        .map_err(|e| format!("cannot reach LXD ({e}); run `bash scripts/testbed.sh` as root"))?;
    check_testbed(&lxd).await?;
    println!("==> removing what an earlier bench run left");
    cleanup_all(&lxd, &settings.scratch).await?;
    let journal = settings.scratch.join("journal");
    let logs = settings.scratch.join("log");
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let (append_ms, append_p50_ms) = probe_journal(&settings.scratch.join("probe-journal"), 400)?;
    println!(
        "==> probe journal in {}: flushed append mean {append_ms:.3} ms, p50 {append_p50_ms:.3} ms",
        settings.scratch.display()
    );
    let ctx = Ctx {
        lxd,
        settings,
        journal,
        logs,
        append_ms,
        append_p50_ms,
    };
    let total = Instant::now();
    let mut scenarios = Vec::new();
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for key in ctx.settings.scenarios.clone() {
        let sc = Scenario::by_key(&key, ctx.settings.dir_mb)?;
        let prefix = format!("{}-", sc.prefix);
        let res = match run_scenario(&ctx, sc).await {
            Ok(res) => res,
            Err(e) => {
                // Reported and counted, and the others still run.
                println!("    scenario {key} FAILED: {e}");
                let _ = remove_ours(&ctx.lxd, &prefix).await;
                scenarios.push(json!({ "scenario": key, "error": e }));
                failed.push(format!("{key}: {e}"));
                continue;
            }
        };
        scenarios.push(json!({
            "scenario": res.sc.key,
            "describe": res.sc.describe(),
            "containers": res.n,
            "methods": res.methods.iter().map(MethodResult::json).collect::<Vec<_>>(),
            "ratios_p50_outside": ratios(&res.methods),
            "journal": res.journal,
        }));
        results.push(res);
    }
    let fleet = if ctx.settings.fleet > 0 {
        let rows = match run_fleet(&ctx, ctx.settings.fleet).await {
            Ok(rows) => rows,
            Err(e) => {
                println!("    fleet FAILED: {e}");
                failed.push(format!("fleet: {e}"));
                Vec::new()
            }
        };
        Some(json!({
            "containers": ctx.settings.fleet,
            "rows": rows.iter().map(|r| json!({
                "parallel": r.parallel,
                "reroot": r.reroot.json(),
                "floor": r.floor.as_ref().map(MethodResult::json),
            })).collect::<Vec<_>>(),
        }))
    } else {
        None
    };
    if !results.is_empty() {
        println!("=== summary: reroot's p50 downtime seen from outside, as ratios");
        println!(
            "{:<12} {:>9} {:>9} {:>11} {:>9}  {:>8} {:>9} {:>8}",
            "scenario",
            "reroot ms",
            "floor ms",
            "lxc scr ms",
            "API ms",
            "x floor",
            "x lxc scr",
            "x API"
        );
        for r in &results {
            let p = |m: &str| {
                find(&r.methods, m)
                    .map(|m| m.outside().p50)
                    .unwrap_or(f64::NAN)
            };
            println!(
                "{:<12} {:>9.0} {:>9.0} {:>11.0} {:>9.0}  {:>8.2} {:>9.2} {:>8.2}",
                r.sc.key,
                p("reroot"),
                p("floor"),
                p("lxc script"),
                p("raw API"),
                ratio(p("reroot"), p("floor")),
                ratio(p("reroot"), p("lxc script")),
                ratio(p("reroot"), p("raw API")),
            );
        }
    }
    println!("==> cleaning up");
    if let Err(e) = cleanup_all(&ctx.lxd, &ctx.settings.scratch).await {
        failed.push(format!("cleaning up: {e}"));
    }
    let elapsed = total.elapsed().as_secs_f64();
    println!("downtime bench: {elapsed:.0} s");
    Ok((
        failed.clone(),
        json!({
            "bench": "downtime",
            "server_version": ctx.lxd.server_version(),
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "settings": {
                "containers": ctx.settings.n,
                "poll_ms": ctx.settings.poll.as_millis() as u64,
                "fleet_poll_ms": ctx.settings.fleet_poll.as_millis() as u64,
                "dir_template_mb": ctx.settings.dir_mb,
                "clean_stop_timeout_s": CLEAN_TIMEOUT_S,
            },
            "probe_journal_append_ms": { "mean": append_ms, "p50": append_p50_ms },
            "scenarios": scenarios,
            "fleet": fleet,
            "elapsed_s": elapsed,
            "failed": failed,
        }),
    ))
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is understood.
    let settings = Settings::from_env();
    let out = settings.out.clone();
    let scratch = settings.scratch.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(bench(settings)) {
        Ok((failed, v)) => {
            if let Some(dir) = out.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            match std::fs::write(&out, serde_json::to_string_pretty(&v).unwrap_or_default()) {
                Ok(()) => println!("results: {}", out.display()),
                Err(e) => {
                    eprintln!("downtime: cannot write {}: {e}", out.display());
                    std::process::exit(1);
                }
            }
            if !failed.is_empty() {
                eprintln!("downtime bench FAILED:");
                for f in &failed {
                    eprintln!("  - {f}");
                }
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("downtime bench FAILED: {e}");
            if env_string("DOWNTIME_KEEP", "0") == "1" {
                eprintln!(
                    "DOWNTIME_KEEP=1: the bench-* instances and {} are kept",
                    scratch.display()
                );
            } else {
                eprintln!(
                    "(removing the bench-* instances; DOWNTIME_KEEP=1 keeps them and {})",
                    scratch.display()
                );
                let _ = rt.block_on(async {
                    let lxd = Client::connect(ConnectOptions::default())
                        .await
                        .map_err(|e| e.to_string())?;
                    cleanup_all(&lxd, &scratch).await
                });
            }
            std::process::exit(1);
        }
    }
}
