//! A run's record: what it was started with, as one typed [`RunSpec`] stored in the run
//! header's options, and the notes that later commands add to it (an undo asked for). This is
//! the one module that knows the option keys and note texts; every other reads and writes them
//! through the types here.
//!
//! The header's options are a string map (the journal knows nothing of what they mean); the
//! keys and their encodings are pinned by the tests below, since runs recorded by this build
//! must be read by the next: add keys, never change what one means.

use std::collections::BTreeMap;

use journal::RunState;

use crate::engine::{Limits, OnFailure};
use crate::steps::archive::ArchiveRequest;
use crate::steps::copy_fs::CopyRequest;
use crate::steps::{InstancePlan, PublishRequest, RollbackRequest, RunKind, SnapshotRequest};

const KIND: &str = "kind";
pub(crate) const PLANS: &str = "plans";
const PARALLEL: &str = "parallel";
const MAX_FAILURES: &str = "max_failures";
const CANARIES: &str = "canaries";
const RETRIES: &str = "retries";
const MAX_DOWN: &str = "max_down";
const STOP_TIMEOUT: &str = "stop_timeout";
const ON_FAILURE: &str = "on_failure";
const SNAPSHOT: &str = "snapshot";
const ROOT_ONLY: &str = "root_only";
const FILESYSTEMS_ONLY: &str = "filesystems_only";
const PRUNE_PREVIOUS: &str = "prune_previous";
const DAEMON: &str = "daemon";
const REMOTES: &str = "remotes";
const ON_REMOTES: &str = "on_remotes";
const ROLLBACK: &str = "rollback";
const RENAME_TO: &str = "rename_to";
const PUBLISH_SNAPSHOT: &str = "publish_snapshot";
const PUBLISH_ALIAS: &str = "publish_alias";
const ARCHIVE: &str = "archive";
const COPY: &str = "copy";

/// Everything a run was started with.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    /// What the run does (which pipeline).
    pub kind: RunKind,
    /// The instances' plans, so that resume and undo never read config files again.
    pub plans: Vec<InstancePlan>,
    /// Parallelism, failure budget, canaries and retries, as the engine takes them.
    pub limits: Limits,
    /// `--stop-timeout`: overrides every plan's clean-stop timeout.
    pub stop_timeout_s: Option<u64>,
    /// What a failure inside the downtime window does.
    pub on_failure: OnFailure,
    /// What a snapshot run takes.
    pub snapshot: Option<SnapshotRequest>,
    /// `--prune-previous`: once it succeeds, prune the previous succeeded rebuild.
    pub prune_previous: bool,
    /// The daemon the run works on (`None`: recorded before reroot kept it): that of every
    /// plan that names no remote.
    pub daemon: Option<Daemon>,
    /// The daemons of the remotes plans name (`remote:` in their configs), by remote name.
    /// Not written when empty.
    pub remotes: BTreeMap<String, Daemon>,
    /// What a rollback run rolls back to.
    pub rollback: Option<RollbackRequest>,
    /// A rename run: the instance's plan under its new name.
    pub rename_to: Option<InstancePlan>,
    /// What a publish run publishes.
    pub publish: Option<PublishRequest>,
    /// The directory of an export or import run.
    pub archive: Option<ArchiveRequest>,
    /// Where a copy-filesystems run copies from.
    pub copy: Option<CopyRequest>,
}

/// The daemon a run was started on: a resume, an undo or a prune of the run on another
/// daemon (another `--remote` or `--socket`, or the default socket on another host) is
/// refused, since it would "undo" instances of the same names that the run never touched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Daemon {
    /// How it was reached, for people: `unix:///var/lib/lxd/unix.socket`,
    /// `remote NAME (https://HOST:PORT)`.
    pub address: String,
    /// Its host name, as it reports it.
    pub server_name: String,
    /// The SHA-256 fingerprint of its certificate, as it reports it: the identity compared.
    pub fingerprint: String,
}

impl Daemon {
    /// The daemon `lxd` is connected to.
    pub fn of(lxd: &crate::lxd::Client) -> Daemon {
        let env = &lxd.server_info().environment;
        Daemon {
            address: lxd.address(),
            server_name: env.server_name.clone(),
            fingerprint: env.certificate_fingerprint.clone(),
        }
    }

    /// Refuses `now` unless it is this daemon. A daemon that reports no fingerprint (either
    /// side) cannot be told apart and is let through.
    pub fn check(&self, run: journal::RunId, now: &Daemon) -> Result<(), String> {
        if self.fingerprint.is_empty()
            || now.fingerprint.is_empty()
            || self.fingerprint == now.fingerprint
        {
            return Ok(());
        }
        let short = |f: &str| f.chars().take(12).collect::<String>();
        Err(format!(
            "run {run} was made on the daemon at {} (host {}, certificate {}), but this \
             connects to {} (host {}, certificate {}): nothing was done; connect to the run's \
             daemon with --remote or --socket",
            self.address,
            self.server_name,
            short(&self.fingerprint),
            now.address,
            now.server_name,
            short(&now.fingerprint),
        ))
    }
}

impl RunSpec {
    /// A run of `kind` over `plans` with `limits`, and nothing else asked for.
    pub fn new(kind: RunKind, plans: Vec<InstancePlan>, limits: Limits) -> RunSpec {
        RunSpec {
            kind,
            plans,
            limits,
            stop_timeout_s: None,
            on_failure: OnFailure::Revert,
            snapshot: None,
            prune_previous: false,
            daemon: None,
            remotes: BTreeMap::new(),
            rollback: None,
            rename_to: None,
            publish: None,
            archive: None,
            copy: None,
        }
    }

    /// The header options that record it.
    pub fn to_options(&self) -> Result<BTreeMap<String, String>, serde_json::Error> {
        let mut o = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            o.insert(k.to_string(), v);
        };
        put(KIND, self.kind.word().to_string());
        put(PLANS, serde_json::to_string(&self.plans)?);
        put(PARALLEL, self.limits.parallel.to_string());
        put(MAX_FAILURES, self.limits.max_failures.to_string());
        put(CANARIES, self.limits.canaries.to_string());
        put(RETRIES, self.limits.retries.to_string());
        put(MAX_DOWN, self.limits.max_down.to_string());
        if let Some(t) = self.stop_timeout_s {
            put(STOP_TIMEOUT, t.to_string());
        }
        put(ON_FAILURE, self.on_failure.as_str().to_string());
        if let Some(s) = &self.snapshot {
            put(SNAPSHOT, s.name.clone());
            put(ROOT_ONLY, s.root_only.to_string());
            if s.filesystems_only {
                put(FILESYSTEMS_ONLY, "true".to_string());
            }
        }
        if self.prune_previous {
            put(PRUNE_PREVIOUS, "true".to_string());
        }
        if let Some(d) = &self.daemon {
            put(DAEMON, serde_json::to_string(d)?);
        }
        if !self.remotes.is_empty() {
            put(REMOTES, serde_json::to_string(&self.remotes)?);
        }
        if let Some(r) = &self.rollback {
            put(ROLLBACK, serde_json::to_string(r)?);
        }
        if let Some(p) = &self.rename_to {
            put(RENAME_TO, serde_json::to_string(p)?);
        }
        // Which instance is on which remote, beside the plans (which say the same), so that a
        // listing of many runs (`history`) need not decode every run's plans.
        let on: BTreeMap<&str, &str> = self
            .plans
            .iter()
            .filter_map(|p| Some((p.name.as_str(), p.remote.as_deref()?)))
            .collect();
        if !on.is_empty() {
            put(ON_REMOTES, serde_json::to_string(&on)?);
        }
        if let Some(p) = &self.publish {
            put(PUBLISH_SNAPSHOT, p.snapshot.clone());
            put(PUBLISH_ALIAS, p.alias.clone());
        }
        if let Some(a) = &self.archive {
            put(ARCHIVE, serde_json::to_string(a)?);
        }
        if let Some(c) = &self.copy {
            put(COPY, serde_json::to_string(c)?);
        }
        Ok(o)
    }

    /// The spec recorded in a run's header. A run without a kind is a rebuild (as all runs
    /// were before others existed); a missing limit or policy is its default.
    pub fn of(state: &RunState) -> Result<RunSpec, String> {
        let options = &state.header.options;
        let run = state.header.id;
        let kind = kind_of_options(options).map_err(|e| format!("run {run}: {e}"))?;
        let text = options
            .get(PLANS)
            .ok_or_else(|| format!("run {run} has no plans in its header"))?;
        let plans = serde_json::from_str(text)
            .map_err(|e| format!("run {run}: its stored plans cannot be read: {e}"))?;
        let number = |key: &str, default: usize| {
            options
                .get(key)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let d = Limits::default();
        Ok(RunSpec {
            kind,
            plans,
            limits: Limits {
                parallel: number(PARALLEL, d.parallel),
                max_failures: number(MAX_FAILURES, d.max_failures),
                canaries: number(CANARIES, d.canaries),
                retries: options
                    .get(RETRIES)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(d.retries),
                // Recorded by every run since its default became 2; a run recorded before
                // that without the key had no such limit.
                max_down: number(MAX_DOWN, 0),
            },
            stop_timeout_s: options.get(STOP_TIMEOUT).and_then(|v| v.parse().ok()),
            on_failure: options
                .get(ON_FAILURE)
                .and_then(|v| v.parse().ok())
                .unwrap_or_default(),
            snapshot: options.get(SNAPSHOT).map(|name| SnapshotRequest {
                name: name.clone(),
                root_only: options.get(ROOT_ONLY).map(String::as_str) == Some("true"),
                filesystems_only: options.get(FILESYSTEMS_ONLY).map(String::as_str) == Some("true"),
            }),
            prune_previous: options.get(PRUNE_PREVIOUS).map(String::as_str) == Some("true"),
            daemon: match options.get(DAEMON) {
                None => None,
                Some(text) => {
                    Some(serde_json::from_str(text).map_err(|e| {
                        format!("run {run}: its recorded daemon cannot be read: {e}")
                    })?)
                }
            },
            remotes: match options.get(REMOTES) {
                None => BTreeMap::new(),
                Some(text) => serde_json::from_str(text).map_err(|e| {
                    format!("run {run}: its recorded remote daemons cannot be read: {e}")
                })?,
            },
            rename_to: match options.get(RENAME_TO) {
                None => None,
                Some(text) => Some(serde_json::from_str(text).map_err(|e| {
                    format!("run {run}: its recorded new name cannot be read: {e}")
                })?),
            },
            rollback: match options.get(ROLLBACK) {
                None => None,
                Some(text) => Some(serde_json::from_str(text).map_err(|e| {
                    format!("run {run}: its recorded rollback cannot be read: {e}")
                })?),
            },
            publish: match (options.get(PUBLISH_SNAPSHOT), options.get(PUBLISH_ALIAS)) {
                (Some(snapshot), Some(alias)) => Some(PublishRequest {
                    snapshot: snapshot.clone(),
                    alias: alias.clone(),
                }),
                _ => None,
            },
            archive: match options.get(ARCHIVE) {
                None => None,
                Some(text) => Some(serde_json::from_str(text).map_err(|e| {
                    format!("run {run}: its recorded export directory cannot be read: {e}")
                })?),
            },
            copy: match options.get(COPY) {
                None => None,
                Some(text) => Some(serde_json::from_str(text).map_err(|e| {
                    format!("run {run}: its recorded copy source cannot be read: {e}")
                })?),
            },
        })
    }
}

/// The daemon a run was made on, from its header alone (`None`: not recorded, or unreadable).
pub fn daemon_of(state: &RunState) -> Option<Daemon> {
    serde_json::from_str(state.header.options.get(DAEMON)?).ok()
}

impl Daemon {
    /// A short name for listings: the remote's name, or the socket's path.
    pub fn short(&self) -> String {
        match self.address.strip_prefix("remote ") {
            Some(rest) => rest.split(' ').next().unwrap_or(rest).to_string(),
            None => self
                .address
                .strip_prefix("unix://")
                .unwrap_or(&self.address)
                .to_string(),
        }
    }
}

/// Where a run's instances live, from its header's options alone, for listings: the daemon of
/// `instance` if one is given and the run has it, else the run's daemon followed by the
/// remotes (`/var/lib/lxd/unix.socket + incus`); `-` when the run recorded none.
pub fn daemons_listed(options: &BTreeMap<String, String>, instance: Option<&str>) -> String {
    let listed = DaemonsListed::of(options);
    match instance {
        Some(instance) => listed.instance(instance).to_string(),
        None => listed.all(),
    }
}

/// A run's daemons as listings name them, read once from its header (a view of 500 instances
/// asks it for each of them; reading the header's instance map each time grew with the
/// square of the fleet).
#[derive(Debug, Clone)]
pub struct DaemonsListed {
    /// The run's own daemon, shortened (`-` when it recorded none).
    default: String,
    /// The instances on a remote, with its name.
    on: BTreeMap<String, String>,
}

impl DaemonsListed {
    pub fn of(options: &BTreeMap<String, String>) -> DaemonsListed {
        DaemonsListed {
            default: options
                .get(DAEMON)
                .and_then(|t| serde_json::from_str::<Daemon>(t).ok())
                .map_or_else(|| "-".to_string(), |d| d.short()),
            on: options
                .get(ON_REMOTES)
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default(),
        }
    }

    /// Where `instance` lives.
    pub fn instance(&self, instance: &str) -> &str {
        self.on.get(instance).unwrap_or(&self.default)
    }

    /// The run's daemon followed by its remotes.
    pub fn all(&self) -> String {
        let remotes: std::collections::BTreeSet<&String> = self.on.values().collect();
        let mut out = self.default.clone();
        for r in remotes {
            out.push_str(" + ");
            out.push_str(r);
        }
        out
    }
}

/// The daemons of the remotes a run's plans name, from its header alone (empty: none, or
/// unreadable).
pub fn remotes_of(state: &RunState) -> BTreeMap<String, Daemon> {
    state
        .header
        .options
        .get(REMOTES)
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

/// The kind of a run, from its header alone (cheaper than [`RunSpec::of`], which decodes the
/// plans).
pub fn kind_of(state: &RunState) -> Result<RunKind, String> {
    kind_of_options(&state.header.options).map_err(|e| format!("run {}: {e}", state.header.id))
}

fn kind_of_options(options: &BTreeMap<String, String>) -> Result<RunKind, String> {
    match options.get(KIND) {
        None => Ok(RunKind::Rebuild),
        Some(word) => RunKind::from_word(word),
    }
}

/// The undo asked for in a run (the latest `UndoRequested` event `reroot undo` records before
/// it undoes a run, so that `resume` goes on with the undo), if any: `Some(true)` with `--data`.
pub fn undo_requested(state: &RunState) -> Option<bool> {
    state.undo_requested
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::testing;
    use journal::{Event, EventKind, Replay};

    fn state(options: BTreeMap<String, String>, kinds: &[EventKind]) -> RunState {
        let header = testing::header(&[], options);
        let run = header.id;
        let mut events = vec![Event {
            run,
            seq: 1,
            instance: None,
            step: None,
            attempt: 0,
            at_ms: 1,
            kind: EventKind::RunCreated(header),
        }];
        for (k, kind) in kinds.iter().enumerate() {
            events.push(Event {
                run,
                seq: k as u64 + 2,
                instance: None,
                step: None,
                attempt: 0,
                at_ms: 2,
                kind: kind.clone(),
            });
        }
        Replay::run(&events).unwrap()
    }

    #[test]
    fn the_daemon_is_recorded_and_another_one_is_refused() {
        let daemon = |address: &str, fingerprint: &str| Daemon {
            address: address.into(),
            server_name: "host".into(),
            fingerprint: fingerprint.into(),
        };
        let mut spec = RunSpec::new(RunKind::Rebuild, vec![], Limits::default());
        spec.daemon = Some(daemon("unix:///var/lib/lxd/unix.socket", "aa11"));
        let options = spec.to_options().unwrap();
        assert_eq!(
            options.get("daemon").map(String::as_str),
            Some(
                r#"{"address":"unix:///var/lib/lxd/unix.socket","server_name":"host","fingerprint":"aa11"}"#
            )
        );
        let st = state(options, &[]);
        assert_eq!(RunSpec::of(&st).unwrap(), spec);
        assert_eq!(daemon_of(&st), spec.daemon);
        let recorded = spec.daemon.unwrap();
        let run = st.header.id;
        // The same daemon reached another way is the same daemon.
        assert!(recorded
            .check(run, &daemon("remote lo (https://127.0.0.1:8443)", "aa11"))
            .is_ok());
        let err = recorded
            .check(run, &daemon("unix:///var/lib/incus/unix.socket", "bb22"))
            .unwrap_err();
        assert!(
            err.contains("/var/lib/lxd/unix.socket") && err.contains("incus"),
            "{err}"
        );
        assert!(err.contains("nothing was done"), "{err}");
        // One that tells no fingerprint cannot be told apart.
        assert!(recorded.check(run, &daemon("x", "")).is_ok());
    }

    #[test]
    fn the_remote_daemons_are_recorded_by_name_and_a_plan_names_its_remote_only_when_it_has_one() {
        let mut spec = RunSpec::new(
            RunKind::Rebuild,
            vec![testing::plan("a"), testing::plan("b")],
            Limits::default(),
        );
        let plain = spec.to_options().unwrap();
        assert!(!plain.contains_key("remotes"));
        assert!(!plain["plans"].contains("remote"), "{}", plain["plans"]);
        spec.plans[1].remote = Some("incus".into());
        spec.remotes.insert(
            "incus".into(),
            Daemon {
                address: "remote incus (https://127.0.0.1:8444)".into(),
                server_name: "host".into(),
                fingerprint: "cc33".into(),
            },
        );
        let options = spec.to_options().unwrap();
        assert_eq!(
            options.get("remotes").map(String::as_str),
            Some(
                r#"{"incus":{"address":"remote incus (https://127.0.0.1:8444)","server_name":"host","fingerprint":"cc33"}}"#
            )
        );
        assert!(options["plans"].contains(r#""remote":"incus""#));
        assert_eq!(options["on_remotes"], r#"{"b":"incus"}"#);
        // The listing's words, from the options alone.
        let mut listed = options.clone();
        listed.insert(
            "daemon".into(),
            r#"{"address":"unix:///var/lib/lxd/unix.socket","server_name":"h","fingerprint":"f"}"#
                .into(),
        );
        assert_eq!(
            daemons_listed(&listed, None),
            "/var/lib/lxd/unix.socket + incus"
        );
        assert_eq!(daemons_listed(&listed, Some("b")), "incus");
        assert_eq!(
            daemons_listed(&listed, Some("a")),
            "/var/lib/lxd/unix.socket"
        );
        assert_eq!(daemons_listed(&BTreeMap::new(), None), "-");
        let st = state(options, &[]);
        assert_eq!(RunSpec::of(&st).unwrap(), spec);
        assert_eq!(remotes_of(&st), spec.remotes);
        let mut broken = st.header.options.clone();
        broken.insert("remotes".into(), "{".into());
        let err = RunSpec::of(&state(broken, &[])).unwrap_err();
        assert!(err.contains("remote daemons cannot be read"), "{err}");
    }

    #[test]
    fn max_down_is_always_recorded_and_a_header_from_before_it_reads_as_no_limit() {
        let mut spec = RunSpec::new(RunKind::Rebuild, vec![], Limits::default());
        spec.limits.max_down = 0;
        let options = spec.to_options().unwrap();
        assert_eq!(options.get("max_down").map(String::as_str), Some("0"));
        assert_eq!(
            RunSpec::of(&state(options.clone(), &[]))
                .unwrap()
                .limits
                .max_down,
            0
        );
        let mut older = options;
        older.remove("max_down");
        assert_eq!(RunSpec::of(&state(older, &[])).unwrap().limits.max_down, 0);
        assert_eq!(Limits::default().max_down, 2);
    }

    #[test]
    fn a_spec_round_trips_through_the_header_and_its_keys_are_pinned() {
        let mut spec = RunSpec::new(
            RunKind::Snapshot,
            vec![],
            Limits {
                parallel: 8,
                max_failures: 3,
                canaries: 1,
                retries: 4,
                max_down: 2,
            },
        );
        spec.stop_timeout_s = Some(0);
        spec.on_failure = OnFailure::Hold;
        spec.snapshot = Some(SnapshotRequest {
            name: "v2".into(),
            root_only: true,
            filesystems_only: false,
        });
        spec.prune_previous = true;
        let options = spec.to_options().unwrap();
        let pinned: BTreeMap<String, String> = [
            ("kind", "snapshot"),
            ("plans", "[]"),
            ("parallel", "8"),
            ("max_failures", "3"),
            ("canaries", "1"),
            ("retries", "4"),
            ("max_down", "2"),
            ("stop_timeout", "0"),
            ("on_failure", "hold"),
            ("snapshot", "v2"),
            ("root_only", "true"),
            ("prune_previous", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(options, pinned);
        assert_eq!(RunSpec::of(&state(options, &[])).unwrap(), spec);
    }

    #[test]
    fn an_export_spec_round_trips_and_its_key_is_pinned() {
        let mut spec = RunSpec::new(RunKind::Export, vec![], Limits::without_budget(1));
        spec.archive = Some(ArchiveRequest {
            dir: "/backup/web".into(),
            snapshot: Some("s1".into()),
        });
        let options = spec.to_options().unwrap();
        assert_eq!(options.get("kind").map(String::as_str), Some("export"));
        assert_eq!(
            options.get("archive").map(String::as_str),
            Some(r#"{"dir":"/backup/web","snapshot":"s1"}"#)
        );
        assert_eq!(RunSpec::of(&state(options, &[])).unwrap(), spec);
    }

    #[test]
    fn a_publish_spec_round_trips_and_its_keys_are_pinned() {
        let mut spec = RunSpec::new(RunKind::Publish, vec![], Limits::without_budget(1));
        spec.publish = Some(PublishRequest {
            snapshot: "copy".into(),
            alias: "alpine-ssh".into(),
        });
        let options = spec.to_options().unwrap();
        assert_eq!(options.get("kind").map(String::as_str), Some("publish"));
        assert_eq!(
            options.get("publish_snapshot").map(String::as_str),
            Some("copy")
        );
        assert_eq!(
            options.get("publish_alias").map(String::as_str),
            Some("alpine-ssh")
        );
        assert_eq!(RunSpec::of(&state(options, &[])).unwrap(), spec);
    }

    #[test]
    fn older_runs_read_with_defaults_and_unknown_kinds_are_refused() {
        let only_plans = BTreeMap::from([("plans".to_string(), "[]".to_string())]);
        let spec = RunSpec::of(&state(only_plans.clone(), &[])).unwrap();
        // Without a limit on how many are down, as before `max_down` existed.
        let limits = Limits {
            max_down: 0,
            ..Limits::default()
        };
        assert_eq!(spec, RunSpec::new(RunKind::Rebuild, vec![], limits));
        let mut odd = only_plans;
        odd.insert("kind".into(), "migrate".into());
        let err = RunSpec::of(&state(odd, &[])).unwrap_err();
        assert!(err.contains("\"migrate\""), "{err}");
        let none = RunSpec::of(&state(BTreeMap::new(), &[])).unwrap_err();
        assert!(none.contains("no plans"), "{none}");
    }

    #[test]
    fn the_latest_undo_request_decides_and_notes_do_not_count() {
        let undo = |data| EventKind::UndoRequested { data };
        let note = |text: &str| EventKind::Note { text: text.into() };
        assert_eq!(undo_requested(&state(BTreeMap::new(), &[])), None);
        let old_shape = [note("undo requested with --data"), note("undo requested")];
        assert_eq!(undo_requested(&state(BTreeMap::new(), &old_shape)), None);
        let kinds = [undo(false), note("pruned x"), undo(true)];
        assert_eq!(undo_requested(&state(BTreeMap::new(), &kinds)), Some(true));
        let kinds = [undo(true), undo(false)];
        assert_eq!(undo_requested(&state(BTreeMap::new(), &kinds)), Some(false));
    }
}
