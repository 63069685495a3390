//! Pruning: deleting the retired old roots (`NAME-old-RUN8`) that a succeeded rebuild run keeps
//! so that it can be undone, and, when asked, the filesystem snapshots it took
//! (`reroot-RUN8`). The external filesystems themselves are never touched.
//!
//! What goes is chosen in one of three ways:
//! - one run: [`prune_run`] (`reroot prune RUN`);
//! - a retention policy over every succeeded rebuild run, decided per instance by [`select`]:
//!   [`prune_retained`] (`reroot prune --keep N --older-than AGE`);
//! - after a rebuild succeeded, the previous succeeded rebuild of each of its instances, found
//!   by [`previous`]: [`prune_previous`] (`reroot rebuild --prune-previous`).
//!
//! Every deletion is recorded as a `Pruned` event of its run (instance and `deleted ...`), and
//! `undo` refuses a run with one: what it would bring back is gone.
//!
//! The choices are pure functions ([`select`], [`previous`], [`check_root`], [`prunable`]) over
//! plain data, unit-tested below; the `async` functions only gather that data and carry out
//! the decisions.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use journal::{EventKind, Journal, RunFilter, RunId, RunState, RunStatus};

use super::spec::RunSpec;
use crate::lxd::{self, OptionalExt};
use crate::steps::plan::DevicePlacement;
use crate::steps::{retired_name, snapshot_name, Daemons, InstancePlan, RunKind, RUN_KEY};

/// The first deletion recorded in the run, for people (`pruned web: deleted ...`), if any:
/// such a run cannot be undone.
pub fn pruned(state: &RunState) -> Option<String> {
    state
        .pruned
        .first()
        .map(|p| format!("pruned {}: {}", p.instance, p.what))
}

/// What can stop a prune. Each names the run or the object concerned.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// The run cannot be pruned as asked (its kind or status); nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] journal::Error),
    /// LXD failed (a lookup, stop or delete of a retired root).
    #[error(transparent)]
    Lxd(#[from] lxd::Error),
}

/// What the choices need to know of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// The run.
    pub run: RunId,
    /// When it started (its header's time).
    pub started_at_ms: i64,
    /// Its status.
    pub status: RunStatus,
    /// Whether it is a rebuild run (only those leave retired roots).
    pub rebuild: bool,
    /// The instances it targets.
    pub instances: Vec<String>,
}

impl RunInfo {
    /// The facts of a replayed run. A run of a kind this build does not know is not a rebuild.
    pub fn of(state: &RunState) -> RunInfo {
        RunInfo {
            run: state.header.id,
            started_at_ms: state.header.started_at_ms,
            status: state.status,
            rebuild: super::spec::kind_of(state) == Ok(RunKind::Rebuild),
            instances: state.header.instances.clone(),
        }
    }

    /// Only a succeeded rebuild run's retired roots are chosen by a policy, and only those runs
    /// count among the newest kept: a failed, running or paused run may still be resumed or
    /// undone (and needs its retired root for that), an undone one has none left.
    fn counts(&self) -> bool {
        self.rebuild && self.status == RunStatus::Succeeded
    }

    /// The order of runs in time: by start, then by id (as `history` lists them).
    fn key(&self) -> (i64, RunId) {
        (self.started_at_ms, self.run)
    }
}

/// A retention policy: of each instance's succeeded rebuild runs, keep the retired roots of
/// the `keep` newest, and of the others prune those at least `older_than` old. At least one of
/// the two is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    keep: Option<usize>,
    older_than: Option<Duration>,
}

impl Retention {
    /// A policy; refused when it says neither how many to keep nor from what age to prune
    /// (it would prune everything).
    pub fn new(keep: Option<usize>, older_than: Option<Duration>) -> Result<Retention, String> {
        if keep.is_none() && older_than.is_none() {
            return Err(
                "a retention policy needs --keep N, --older-than AGE or both; to prune one \
                 run, name it"
                    .to_string(),
            );
        }
        Ok(Retention { keep, older_than })
    }
}

/// One instance of one run whose retired root (and snapshots) are to go.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    /// The run.
    pub run: RunId,
    /// The instance.
    pub instance: String,
}

/// The runs that count ([`RunInfo::counts`]), newest first.
fn counted_newest_first(runs: &[RunInfo]) -> Vec<&RunInfo> {
    let mut out: Vec<&RunInfo> = runs.iter().filter(|r| r.counts()).collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.key()));
    out
}

/// Orders targets by their runs, oldest first (then by instance), so that a prune goes through
/// the history in order.
fn in_run_order(targets: BTreeSet<(i64, RunId, String)>) -> Vec<Target> {
    targets
        .into_iter()
        .map(|(_, run, instance)| Target { run, instance })
        .collect()
}

/// The retention policy applied to `runs` at time `now_ms`: for each instance, its succeeded
/// rebuild runs newest first; the first `keep` stay, and of the rest those started at least
/// `older_than` before `now_ms` (all of them without `older_than`) are chosen. A run is
/// chosen per instance: a run of two instances may go for one and stay for the other. Runs that
/// are not succeeded rebuilds are never chosen and do not count among the kept.
pub fn select(runs: &[RunInfo], retention: &Retention, now_ms: i64) -> Vec<Target> {
    // An age beyond the representable range reaches before any run: nothing is old enough.
    let cutoff = retention
        .older_than
        .map(|age| now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)));
    let mut per_instance: BTreeMap<&str, Vec<&RunInfo>> = BTreeMap::new();
    for r in counted_newest_first(runs) {
        let names: BTreeSet<&str> = r.instances.iter().map(String::as_str).collect();
        for name in names {
            per_instance.entry(name).or_default().push(r);
        }
    }
    let mut chosen = BTreeSet::new();
    for (instance, runs_of) in per_instance {
        for (rank, r) in runs_of.into_iter().enumerate() {
            if retention.keep.is_some_and(|keep| rank < keep) {
                continue;
            }
            if cutoff.is_some_and(|cutoff| r.started_at_ms > cutoff) {
                continue;
            }
            chosen.insert((r.started_at_ms, r.run, instance.to_string()));
        }
    }
    in_run_order(chosen)
}

/// For each instance of run `this`, the newest succeeded rebuild run before it that also
/// targets that instance (none if there is none). `this` itself is never chosen, so it can
/// still be undone.
pub fn previous(runs: &[RunInfo], this: RunId) -> Vec<Target> {
    let Some(me) = runs.iter().find(|r| r.run == this) else {
        return Vec::new();
    };
    let earlier: Vec<&RunInfo> = counted_newest_first(runs)
        .into_iter()
        .filter(|r| r.key() < me.key())
        .collect();
    let mut chosen = BTreeSet::new();
    for instance in &me.instances {
        if let Some(r) = earlier.iter().find(|r| r.instances.contains(instance)) {
            chosen.insert((r.started_at_ms, r.run, instance.clone()));
        }
    }
    in_run_order(chosen)
}

/// Whether a run may be pruned by name: a succeeded rebuild run, or an undone one for its
/// snapshots only. The error says why not and what to do.
pub fn prunable(
    run: RunId,
    kind: RunKind,
    status: RunStatus,
    snapshots: bool,
) -> Result<(), String> {
    if kind != RunKind::Rebuild {
        return Err(format!(
            "run {run} is a {} run: only rebuild runs have retired roots and snapshots to prune",
            kind.word()
        ));
    }
    let ok = match status {
        RunStatus::Succeeded => true,
        RunStatus::Undone => snapshots,
        _ => false,
    };
    if !ok {
        return Err(format!(
            "run {run} is {status}: only a succeeded run is pruned, or an undone one with \
             --snapshots (resume or undo it first)"
        ));
    }
    Ok(())
}

/// What to do with what is found under a run's retired name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCheck {
    /// Nothing is there.
    Absent,
    /// It is the retired root: delete it.
    Delete,
    /// It is the run's own new root (its swap was undone by hand, or names were changed):
    /// never deleted.
    NewRoot,
    /// It is not stopped (someone started the old root): left alone when a stopped root is
    /// required. Holds its status.
    NotStopped(String),
}

/// Decides about the instance `found` under `run`'s retired name. With `require_stopped`
/// (the policies) only a stopped root is deleted; `prune RUN` stops a running one first, as it
/// always has.
pub fn check_root(found: Option<&lxd::Instance>, run: RunId, require_stopped: bool) -> RootCheck {
    let Some(inst) = found else {
        return RootCheck::Absent;
    };
    if inst.config.get(RUN_KEY).map(String::as_str) == Some(run.to_string().as_str()) {
        return RootCheck::NewRoot;
    }
    if require_stopped && inst.status != "Stopped" {
        return RootCheck::NotStopped(inst.status.clone());
    }
    RootCheck::Delete
}

/// One thing a prune found or did, for one instance of one run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    /// The run.
    pub run: RunId,
    /// The instance.
    pub instance: String,
    /// What happened.
    pub what: What,
}

/// What a prune found or did about one object (a retired root or a snapshot, named inside).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "what", content = "detail")]
pub enum What {
    /// No retired root of that name.
    NoRoot(String),
    /// Dry run: the retired root would be deleted.
    WouldDeleteRoot(String),
    /// The retired root was deleted (and the deletion noted in the journal).
    DeletedRoot(String),
    /// Something under that name was not deleted, and why (worth a look: the prune fails).
    LeftAlone(String),
    /// No snapshot there (`zfs dataset pool/x@reroot-RUN8`, ...).
    NoSnapshot(String),
    /// Dry run: the snapshot would be deleted.
    WouldDeleteSnapshot(String),
    /// The snapshot was deleted (and noted).
    DeletedSnapshot(String),
    /// A snapshot could not be checked or deleted: the error (the prune fails; it goes on with
    /// the others).
    SnapshotFailed(String),
    /// The instance's device profile, which no instance uses any more: the run moved its disk
    /// devices onto the instance and the retired root was the last user.
    DeletedProfile(String),
}

impl What {
    /// True for what makes the prune fail: something left alone, or a snapshot error.
    pub fn is_problem(&self) -> bool {
        matches!(self, What::LeftAlone(_) | What::SnapshotFailed(_))
    }

    /// True when there was nothing to delete.
    pub fn is_absent(&self) -> bool {
        matches!(self, What::NoRoot(_) | What::NoSnapshot(_))
    }
}

impl std::fmt::Display for What {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            What::NoRoot(n) => write!(f, "no retired root {n}"),
            What::WouldDeleteRoot(n) => write!(f, "would delete retired root {n}"),
            What::DeletedRoot(n) => write!(f, "deleted retired root {n}"),
            What::LeftAlone(why) | What::SnapshotFailed(why) => f.write_str(why),
            What::NoSnapshot(p) => write!(f, "no snapshot {p}"),
            What::WouldDeleteSnapshot(p) => write!(f, "would delete snapshot {p}"),
            What::DeletedSnapshot(p) => write!(f, "deleted snapshot {p}"),
            What::DeletedProfile(p) => write!(f, "deleted device profile {p}, used by no instance"),
        }
    }
}

/// How a prune goes about it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Report what would be deleted; change nothing (and record nothing).
    pub dry_run: bool,
    /// Also the run's filesystem snapshots.
    pub snapshots: bool,
}

/// How strict the carrying out is: `prune RUN` as it always was, or a policy.
#[derive(Debug, Clone, Copy)]
struct Mode {
    /// Delete only a stopped retired root (a policy never stops anything).
    require_stopped: bool,
    /// Skip silently what the run records as deleted already (a policy goes over the same
    /// runs at every call; looking each up again would cost LXD and zfs calls for nothing).
    skip_recorded: bool,
}

const NAMED: Mode = Mode {
    require_stopped: false,
    skip_recorded: false,
};
const POLICY: Mode = Mode {
    require_stopped: true,
    skip_recorded: true,
};

/// What a run's header records.
fn spec_of(state: &RunState) -> Result<RunSpec, PruneError> {
    RunSpec::of(state).map_err(PruneError::Refused)
}

/// Carries out a prune over the instances of runs, recording each deletion in the journal and
/// reporting each item to `on_item` as it happens (and in the list returned).
struct Pruner<'a> {
    journal: &'a Journal,
    /// The daemon the command connected to.
    lxd: &'a lxd::Client,
    /// The remotes runs' plans name, connected once each when first needed (or why not).
    remotes: BTreeMap<String, Result<lxd::Client, String>>,
    options: PruneOptions,
    mode: Mode,
    on_item: &'a mut dyn FnMut(&Item),
    items: Vec<Item>,
}

impl Pruner<'_> {
    fn report(&mut self, run: RunId, instance: &str, what: What) -> Result<(), PruneError> {
        if matches!(what, What::DeletedRoot(_) | What::DeletedSnapshot(_)) {
            self.journal.append(
                run,
                Some(instance),
                None,
                0,
                EventKind::Pruned {
                    what: what.to_string(),
                },
            )?;
        }
        let item = Item {
            run,
            instance: instance.to_string(),
            what,
        };
        (self.on_item)(&item);
        self.items.push(item);
        Ok(())
    }

    /// True when the run records this as deleted already and the mode skips such things.
    fn done(&self, state: &RunState, instance: &str, deleted: &What) -> bool {
        let what = deleted.to_string();
        self.mode.skip_recorded
            && state
                .pruned
                .iter()
                .any(|p| p.instance == instance && p.what == what)
    }

    /// The daemons of `spec`'s run, each checked to be the one it recorded; or why the run's
    /// instances are not for this command to touch.
    async fn daemons(&mut self, run: RunId, spec: &RunSpec) -> Result<Daemons, String> {
        let mut daemons = Daemons::one(self.lxd.clone());
        let named: BTreeSet<&String> = spec
            .plans
            .iter()
            .filter_map(|p| p.remote.as_ref())
            .collect();
        for name in named {
            if !self.remotes.contains_key(name) {
                let instance = spec.plans.iter().find(|p| p.remote.as_ref() == Some(name));
                let instance = instance.map_or("", |p| p.name.as_str());
                let connected = super::daemons::connect_remote(instance, name)
                    .await
                    .map_err(|e| e.to_string());
                self.remotes.insert(name.clone(), connected);
            }
            match &self.remotes[name] {
                Ok(client) => daemons = daemons.with_remote(name, client.clone()),
                Err(e) => return Err(e.clone()),
            }
        }
        super::daemons::check(run, spec, &daemons).map_err(|e| e.to_string())?;
        Ok(daemons)
    }

    async fn instance(
        &mut self,
        state: &RunState,
        plan: &InstancePlan,
        daemons: &Daemons,
    ) -> Result<(), PruneError> {
        let run = state.header.id;
        let client = daemons.client(plan).map_err(PruneError::Refused)?;
        let retired = retired_name(&plan.name, run);
        if !self.done(state, &plan.name, &What::DeletedRoot(retired.clone())) {
            let found = client.get_instance(&retired).await.optional()?;
            let what = match check_root(
                found.as_ref().map(|f| &f.value),
                run,
                self.mode.require_stopped,
            ) {
                RootCheck::Absent => What::NoRoot(retired),
                RootCheck::NewRoot => What::LeftAlone(format!(
                    "{retired} is this run's new root, not a retired one; left alone"
                )),
                RootCheck::NotStopped(status) => What::LeftAlone(format!(
                    "{retired} is {status}, not stopped: a retired root someone started is \
                     left alone (stop it, then prune again)"
                )),
                RootCheck::Delete if self.options.dry_run => What::WouldDeleteRoot(retired),
                RootCheck::Delete => {
                    if !self.mode.require_stopped {
                        client.stop_instance(&retired, lxd::Stop::Force).await?;
                    }
                    client.delete_instance(&retired).await?;
                    What::DeletedRoot(retired)
                }
            };
            let deleted = matches!(what, What::DeletedRoot(_));
            self.report(run, &plan.name, what)?;
            // With the devices on the instance, the device profile's last user may have been
            // the retired root: an unused profile still costs every LXD operation (LXD 5.0.2
            // loads each profile of the project), so it goes too.
            if deleted && plan.device_placement == DevicePlacement::Instance {
                if let Some(p) = client.get_profile(&plan.device_profile).await.optional()? {
                    if p.value.used_by.is_empty()
                        && client.delete_profile(&plan.device_profile).await?
                    {
                        self.report(
                            run,
                            &plan.name,
                            What::DeletedProfile(plan.device_profile.clone()),
                        )?;
                    }
                }
            }
        }
        if !self.options.snapshots {
            return Ok(());
        }
        let name = snapshot_name(run);
        let snapshotted = plan
            .filesystems
            .iter()
            .map(|fs| fs.storage())
            .filter(crate::storage::Filesystem::takes_snapshots);
        for fs in snapshotted {
            let place = format!("{}@{name}", fs.kind.location());
            if self.done(state, &plan.name, &What::DeletedSnapshot(place.clone())) {
                continue;
            }
            let what = match fs.has_snapshot(&name).await {
                Ok(false) => What::NoSnapshot(place),
                Ok(true) if self.options.dry_run => What::WouldDeleteSnapshot(place),
                Ok(true) => match fs.delete_snapshot(&name).await {
                    Ok(_) => What::DeletedSnapshot(place),
                    Err(e) => What::SnapshotFailed(e.to_string()),
                },
                Err(e) => What::SnapshotFailed(e.to_string()),
            };
            self.report(run, &plan.name, what)?;
        }
        Ok(())
    }

    /// The targets, run by run (each run replayed once, checked again to be a succeeded
    /// rebuild).
    async fn targets(&mut self, targets: Vec<Target>) -> Result<(), PruneError> {
        let mut by_run: Vec<(RunId, Vec<String>)> = Vec::new();
        for t in targets {
            match by_run.last_mut() {
                Some((run, names)) if *run == t.run => names.push(t.instance),
                _ => by_run.push((t.run, vec![t.instance])),
            }
        }
        for (run, names) in by_run {
            let state = self.journal.replay(run)?;
            if !RunInfo::of(&state).counts() {
                continue;
            }
            let spec = spec_of(&state)?;
            let daemons = match self.daemons(run, &spec).await {
                Ok(d) => d,
                Err(why) => {
                    // Made on another daemon: its instances of the same names are not these.
                    for name in names {
                        self.report(run, &name, What::LeftAlone(format!("{why}; left alone")))?;
                    }
                    continue;
                }
            };
            let plans = spec.plans;
            for name in names {
                match plans.iter().find(|p| p.name == name) {
                    Some(plan) => self.instance(&state, plan, &daemons).await?,
                    None => self.report(
                        run,
                        &name,
                        What::LeftAlone(format!(
                            "run {run} has no stored plan for instance {name}; left alone"
                        )),
                    )?,
                }
            }
        }
        Ok(())
    }
}

/// `reroot prune RUN`: deletes the retired roots of a succeeded rebuild run (stopping one
/// that runs), and with `snapshots` the filesystem snapshots it took, also of an undone run.
/// Refused, changing nothing, for another kind of run or status.
pub async fn prune_run(
    journal: &Journal,
    lxd: &lxd::Client,
    run: RunId,
    options: PruneOptions,
    on_item: &mut dyn FnMut(&Item),
) -> Result<Vec<Item>, PruneError> {
    let state = journal.replay(run)?;
    let kind = super::spec::kind_of(&state).map_err(PruneError::Refused)?;
    prunable(run, kind, state.status, options.snapshots).map_err(PruneError::Refused)?;
    let spec = spec_of(&state)?;
    let mut pruner = Pruner {
        journal,
        lxd,
        remotes: BTreeMap::new(),
        options,
        mode: NAMED,
        on_item,
        items: Vec::new(),
    };
    let daemons = pruner
        .daemons(run, &spec)
        .await
        .map_err(PruneError::Refused)?;
    for plan in &spec.plans {
        pruner.instance(&state, plan, &daemons).await?;
    }
    Ok(pruner.items)
}

/// What the choices know of every succeeded run (each replayed for its kind).
fn succeeded_runs(journal: &Journal) -> Result<Vec<RunInfo>, PruneError> {
    let summaries = journal.runs(&RunFilter {
        statuses: vec![RunStatus::Succeeded],
        ..RunFilter::default()
    })?;
    let mut out = Vec::with_capacity(summaries.len());
    for s in summaries {
        out.push(RunInfo::of(&journal.replay(s.id)?));
    }
    Ok(out)
}

/// `reroot prune --keep N --older-than AGE`: applies `retention` (see [`select`]) to every
/// succeeded rebuild run of the journal, now. Only stopped retired roots are deleted; what was
/// pruned before is skipped without a word.
pub async fn prune_retained(
    journal: &Journal,
    lxd: &lxd::Client,
    retention: &Retention,
    options: PruneOptions,
    on_item: &mut dyn FnMut(&Item),
) -> Result<Vec<Item>, PruneError> {
    let targets = select(&succeeded_runs(journal)?, retention, journal::now_ms());
    let mut pruner = Pruner {
        journal,
        lxd,
        remotes: BTreeMap::new(),
        options,
        mode: POLICY,
        on_item,
        items: Vec::new(),
    };
    pruner.targets(targets).await?;
    Ok(pruner.items)
}

/// After the rebuild run `this` succeeded: prunes the retired roots of the previous succeeded
/// rebuild of each of its instances (see [`previous`]); this run's own stay, so it can still be
/// undone. Refused, changing nothing, unless `this` is a succeeded rebuild.
pub async fn prune_previous(
    journal: &Journal,
    lxd: &lxd::Client,
    this: RunId,
    on_item: &mut dyn FnMut(&Item),
) -> Result<Vec<Item>, PruneError> {
    let me = RunInfo::of(&journal.replay(this)?);
    if !me.counts() {
        return Err(PruneError::Refused(format!(
            "run {this} is not a succeeded rebuild ({}): the previous runs are pruned only once \
             it has succeeded",
            me.status
        )));
    }
    let targets = previous(&succeeded_runs(journal)?, this);
    let mut pruner = Pruner {
        journal,
        lxd,
        remotes: BTreeMap::new(),
        options: PruneOptions::default(),
        mode: POLICY,
        on_item,
        items: Vec::new(),
    };
    pruner.targets(targets).await?;
    Ok(pruner.items)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 3600 * 1000;
    const NOW: i64 = 1_800_000_000_000;

    fn id(n: u128) -> RunId {
        RunId::from_u128(n)
    }

    fn run(n: u128, age_ms: i64, status: RunStatus, instances: &[&str]) -> RunInfo {
        RunInfo {
            run: id(n),
            started_at_ms: NOW - age_ms,
            status,
            rebuild: true,
            instances: instances.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn ok(n: u128, age_days: i64, instances: &[&str]) -> RunInfo {
        run(n, age_days * DAY, RunStatus::Succeeded, instances)
    }

    fn chosen(targets: &[Target]) -> Vec<(u128, &str)> {
        targets
            .iter()
            .map(|t| (t.run.as_u128(), t.instance.as_str()))
            .collect()
    }

    fn keep(n: usize) -> Retention {
        Retention::new(Some(n), None).unwrap()
    }

    fn older(days: u64) -> Option<Duration> {
        Some(Duration::from_secs(days * 24 * 3600))
    }

    #[test]
    fn keep_n_leaves_the_newest_runs_of_each_instance() {
        let runs = [ok(1, 3, &["a"]), ok(2, 2, &["a"]), ok(3, 1, &["a"])];
        assert_eq!(chosen(&select(&runs, &keep(1), NOW)), [(1, "a"), (2, "a")]);
        assert_eq!(chosen(&select(&runs, &keep(2), NOW)), [(1, "a")]);
        assert!(select(&runs, &keep(3), NOW).is_empty());
        // Oldest run first whatever the input order.
        let reversed = [ok(3, 1, &["a"]), ok(1, 3, &["a"]), ok(2, 2, &["a"])];
        assert_eq!(
            chosen(&select(&reversed, &keep(1), NOW)),
            [(1, "a"), (2, "a")]
        );
    }

    #[test]
    fn a_run_is_pruned_per_instance() {
        // Run 1 rebuilt a and b; run 2 only a: with one kept, run 1 goes for a, stays for b.
        let runs = [ok(1, 2, &["a", "b"]), ok(2, 1, &["a"])];
        assert_eq!(chosen(&select(&runs, &keep(1), NOW)), [(1, "a")]);
    }

    #[test]
    fn only_succeeded_rebuild_runs_are_chosen_or_counted() {
        let mut snapshot = ok(7, 6, &["a"]);
        snapshot.rebuild = false;
        let runs = [
            ok(1, 10, &["a"]),
            run(2, 9 * DAY, RunStatus::Failed, &["a"]),
            run(3, 8 * DAY, RunStatus::Undone, &["a"]),
            run(4, 7 * DAY, RunStatus::Running, &["a"]),
            run(5, 6 * DAY, RunStatus::Paused, &["a"]),
            snapshot,
            ok(6, 5, &["a"]),
        ];
        // The newest succeeded rebuild is 6: the failed, undone, running, paused and snapshot
        // runs between do not use up the one kept, and are never chosen.
        assert_eq!(chosen(&select(&runs, &keep(1), NOW)), [(1, "a")]);
        assert_eq!(chosen(&select(&runs, &keep(0), NOW)), [(1, "a"), (6, "a")]);
        let all = Retention::new(None, Some(Duration::ZERO)).unwrap();
        assert_eq!(chosen(&select(&runs, &all, NOW)), [(1, "a"), (6, "a")]);
    }

    #[test]
    fn older_than_prunes_by_age_and_combines_with_keep() {
        let runs = [
            ok(1, 30, &["a"]),
            ok(2, 20, &["a"]),
            ok(3, 10, &["a"]),
            ok(4, 1, &["a"]),
            ok(5, 8, &["b"]),
        ];
        let by_age = Retention::new(None, older(7)).unwrap();
        assert_eq!(
            chosen(&select(&runs, &by_age, NOW)),
            [(1, "a"), (2, "a"), (3, "a"), (5, "b")]
        );
        let by_age = Retention::new(None, older(15)).unwrap();
        assert_eq!(chosen(&select(&runs, &by_age, NOW)), [(1, "a"), (2, "a")]);
        // Older than 7 days, except the 2 newest of each instance: b's only run stays.
        let both = Retention::new(Some(2), older(7)).unwrap();
        assert_eq!(chosen(&select(&runs, &both, NOW)), [(1, "a"), (2, "a")]);
        // Exactly AGE old counts as old enough; a run in the future (clock skew) is not.
        let edge = [ok(1, 7, &["a"]), ok(2, -1, &["a"])];
        let by_age = Retention::new(None, older(7)).unwrap();
        assert_eq!(chosen(&select(&edge, &by_age, NOW)), [(1, "a")]);
    }

    #[test]
    fn a_huge_age_chooses_nothing_and_does_not_overflow() {
        let runs = [ok(1, 30, &["a"])];
        let huge = Retention::new(None, Some(Duration::MAX)).unwrap();
        assert!(select(&runs, &huge, NOW).is_empty());
        assert!(select(&runs, &huge, i64::MIN).is_empty());
    }

    #[test]
    fn a_policy_needs_keep_or_older_than() {
        let err = Retention::new(None, None).unwrap_err();
        assert!(
            err.contains("--keep") && err.contains("--older-than"),
            "{err}"
        );
    }

    #[test]
    fn an_instance_named_twice_in_a_run_counts_once() {
        let runs = [ok(1, 2, &["a", "a"]), ok(2, 1, &["a"])];
        assert_eq!(chosen(&select(&runs, &keep(1), NOW)), [(1, "a")]);
    }

    #[test]
    fn previous_is_the_last_succeeded_rebuild_before_this_one_per_instance() {
        let runs = [
            ok(1, 5, &["a", "b"]),
            ok(2, 4, &["a"]),
            run(3, 3 * DAY, RunStatus::Failed, &["a", "b"]),
            ok(4, 2, &["a", "b", "c"]),
            ok(5, 1, &["a"]),
        ];
        // For run 4: a's previous is 2, b's is 1 (3 failed), c has none; 5 is later.
        assert_eq!(chosen(&previous(&runs, id(4))), [(1, "b"), (2, "a")]);
        assert_eq!(chosen(&previous(&runs, id(5))), [(4, "a")]);
        assert!(previous(&runs, id(1)).is_empty());
        assert!(previous(&runs, id(99)).is_empty(), "an unknown run");
    }

    #[test]
    fn prunable_names_kind_and_status() {
        let r = id(1);
        assert!(prunable(r, RunKind::Rebuild, RunStatus::Succeeded, false).is_ok());
        assert!(prunable(r, RunKind::Rebuild, RunStatus::Undone, true).is_ok());
        let err = prunable(r, RunKind::Rebuild, RunStatus::Undone, false).unwrap_err();
        assert!(
            err.contains("undone") && err.contains("--snapshots"),
            "{err}"
        );
        for status in [RunStatus::Failed, RunStatus::Running, RunStatus::Paused] {
            let err = prunable(r, RunKind::Rebuild, status, true).unwrap_err();
            assert!(err.contains(status.as_str()), "{err}");
        }
        let err = prunable(r, RunKind::Snapshot, RunStatus::Succeeded, false).unwrap_err();
        assert!(err.contains("snapshot run"), "{err}");
    }

    #[test]
    fn check_root_deletes_only_a_retired_root() {
        let run = id(0xabc);
        let root = |status: &str, built_by: Option<RunId>| lxd::Instance {
            name: "web-old-00000000".into(),
            status: status.into(),
            config: built_by
                .map(|r| BTreeMap::from([(RUN_KEY.to_string(), r.to_string())]))
                .unwrap_or_default(),
            ..lxd::Instance::default()
        };
        assert_eq!(check_root(None, run, true), RootCheck::Absent);
        let stopped = root("Stopped", Some(id(0x1)));
        assert_eq!(check_root(Some(&stopped), run, true), RootCheck::Delete);
        assert_eq!(check_root(Some(&stopped), run, false), RootCheck::Delete);
        let unmarked = root("Stopped", None);
        assert_eq!(check_root(Some(&unmarked), run, true), RootCheck::Delete);
        let running = root("Running", Some(id(0x1)));
        assert_eq!(
            check_root(Some(&running), run, true),
            RootCheck::NotStopped("Running".into())
        );
        assert_eq!(check_root(Some(&running), run, false), RootCheck::Delete);
        let own = root("Stopped", Some(run));
        assert_eq!(check_root(Some(&own), run, true), RootCheck::NewRoot);
        assert_eq!(check_root(Some(&own), run, false), RootCheck::NewRoot);
    }

    #[test]
    fn deletions_and_lines_read_as_before() {
        let what = What::DeletedRoot("web-old-12345678".into());
        assert_eq!(what.to_string(), "deleted retired root web-old-12345678");
        let mut state = RunState {
            header: journal::RunHeader {
                id: id(1),
                command: vec![],
                user: "u".into(),
                host: "h".into(),
                started_at_ms: 0,
                config_digests: vec![],
                instances: vec!["web".into()],
                options: BTreeMap::new(),
            },
            status: RunStatus::Succeeded,
            instances: vec![],
            last_seq: 1,
            notes: vec!["pruned by hand".into()],
            undo_requested: None,
            pruned: vec![],
        };
        assert_eq!(
            pruned(&state),
            None,
            "a note of the old shape is only a note"
        );
        for what in [
            "deleted retired root web-old-12345678",
            "deleted snapshot s",
        ] {
            state.pruned.push(journal::PrunedItem {
                instance: "web".into(),
                what: what.into(),
            });
        }
        assert_eq!(
            pruned(&state).as_deref(),
            Some("pruned web: deleted retired root web-old-12345678")
        );
        assert_eq!(
            What::WouldDeleteSnapshot("zfs dataset p/web@reroot-12345678".into()).to_string(),
            "would delete snapshot zfs dataset p/web@reroot-12345678"
        );
        assert!(What::LeftAlone("x".into()).is_problem());
        assert!(What::SnapshotFailed("x".into()).is_problem());
        assert!(!What::DeletedRoot("x".into()).is_problem());
        assert!(What::NoRoot("x".into()).is_absent() && What::NoSnapshot("x".into()).is_absent());
    }
}
