//! The steps of `reroot copy-filesystems` (lxops's command): an instance's filesystems sent
//! into another instance's (or the same instance's, in another pool or under another
//! prefix), on this machine or over `ssh`, incrementally when the target already has one of
//! the source's snapshots (see `storage::copy`).
//!
//! The run's instance is the target: its plan says where the filesystems go; the source's
//! plan is recorded in the header with the request ([`CopyRequest`]).
//!
//! | step | effect | undo |
//! |---|---|---|
//! | `copy-check` | pairs the filesystems by id, checks each pair's mode (full, incremental, up to date) on the live state, refuses anything that would overwrite | nothing |
//! | `copy-snapshot` | takes the copy's snapshot of each ZFS and btrfs source, if missing | refused (see below) |
//! | `copy-send` | sends each pair as its mode says | refused (see below) |
//!
//! A copy is not undone, like an import: what it received is the target's data from then on,
//! and removing it is `destroy`'s alone; the snapshot it took on the source is the base of the
//! next incremental copy. A resume goes on: each pair's mode is read again from the live
//! state, so a filesystem received before a kill is found up to date.

use serde::{Deserialize, Serialize};

use super::{InstancePlan, RunEnv};
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd::OptionalExt;
use crate::storage::copy::{self, Mode};
use crate::storage::host::Host;
use crate::storage::{Filesystem, FsKind};

/// What a copy run copies from, recorded in its header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyRequest {
    /// The source instance's plan (its config resolved under its name).
    pub from: InstancePlan,
    /// The snapshot to copy (`None`: a new one, `reroot-copy-<run>`).
    #[serde(default)]
    pub snapshot: Option<String>,
    /// Where the source filesystems are.
    #[serde(default)]
    pub from_host: Host,
    /// Where the target filesystems are.
    #[serde(default)]
    pub to_host: Host,
}

/// The snapshot a copy run copies.
pub fn copy_snapshot(request: &CopyRequest, run: journal::RunId) -> String {
    request
        .snapshot
        .clone()
        .unwrap_or_else(|| format!("reroot-copy-{}", journal::short_id(&run)))
}

fn request(env: &RunEnv) -> Result<&CopyRequest, StepError> {
    env.options
        .copy
        .as_ref()
        .ok_or_else(|| StepError::new("this run records no copy source"))
}

/// A source filesystem and the target it goes to.
#[derive(Debug, Clone)]
pub struct Pair {
    pub source: Filesystem,
    pub target: Filesystem,
}

/// The pairs of a copy, by filesystem id: every non-transient filesystem of the target's
/// config with the source's of the same id. Either side having one the other lacks is
/// refused (its data would be left behind, or there is nothing to fill it with).
pub fn pairs(from: &InstancePlan, to: &InstancePlan) -> Result<Vec<Pair>, StepError> {
    let wanted = |p: &InstancePlan| -> Vec<Filesystem> {
        p.filesystems
            .iter()
            .map(|f| f.storage())
            .filter(|f| !f.transient)
            .collect()
    };
    let (sources, targets) = (wanted(from), wanted(to));
    if let Some(s) = sources
        .iter()
        .find(|s| !targets.iter().any(|t| t.id == s.id))
    {
        return Err(StepError::new(format!(
            "filesystem `{}` of {} has no filesystem of that id in the config of {}: its data \
             would not be copied; nothing was copied",
            s.id, from.name, to.name
        )));
    }
    targets
        .into_iter()
        .map(|target| {
            let source = sources
                .iter()
                .find(|s| s.id == target.id)
                .cloned()
                .ok_or_else(|| {
                    StepError::new(format!(
                        "filesystem `{}` of {} has no filesystem of that id in the config of \
                         {} to copy from; nothing was copied",
                        target.id, to.name, from.name
                    ))
                })?;
            Ok(Pair { source, target })
        })
        .collect()
}

/// One pair as `copy-check` found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Planned {
    pub id: String,
    pub source: String,
    pub target: String,
    #[serde(flatten)]
    pub mode: Mode,
}

/// Everything a copy would meet, read-only: the pairs, each one's mode, and that no target
/// would be overwritten; on this machine, the target instance not running unless it is the
/// source instance itself (a move to another pool while the website runs on the old one).
/// `snapshot` is the one copied: given (then every ZFS and btrfs source must have it), or
/// the run's, taken later.
pub async fn check(
    lxd: Option<&crate::lxd::Client>,
    to: &InstancePlan,
    req: &CopyRequest,
    snapshot: &str,
) -> Result<Vec<Planned>, StepError> {
    crate::storage::validate_snapshot_name(snapshot)?;
    let pairs = pairs(&req.from, to)?;
    if let Some(lxd) = lxd {
        let same = req.from.name == to.name && req.from_host == req.to_host;
        if !same {
            if let Some(inst) = lxd.get_instance(&to.name).await.optional()? {
                if inst.value.is_running() {
                    return Err(StepError::new(format!(
                        "instance {} is running and would see its filesystems change under \
                         it: stop it first; nothing was copied",
                        to.name
                    )));
                }
            }
        }
    }
    let mut planned = Vec::new();
    for p in &pairs {
        if req.snapshot.is_some() && p.source.takes_snapshots() {
            let has = match &p.source.kind {
                FsKind::Zfs { dataset } => {
                    crate::storage::zfs::snapshots_on(&req.from_host, dataset)
                        .await?
                        .is_some_and(|l| l.iter().any(|s| s.name == snapshot))
                }
                _ => p.source.has_snapshot(snapshot).await?,
            };
            if !has {
                return Err(StepError::new(format!(
                    "{} has no snapshot {snapshot} on {}: nothing was copied",
                    p.source,
                    req.from_host.describe()
                )));
            }
        }
        let mode = copy::mode(&p.source, &req.from_host, &p.target, &req.to_host, snapshot).await?;
        if mode == Mode::Present {
            return Err(StepError::new(format!(
                "{} exists already on {}: a copy never overwrites a btrfs subvolume or a \
                 directory (only a ZFS dataset that has one of the source's snapshots takes an \
                 incremental copy); nothing was copied",
                p.target,
                req.to_host.describe()
            )));
        }
        planned.push(Planned {
            id: p.target.id.clone(),
            source: p.source.kind.location(),
            target: p.target.kind.location(),
            mode,
        });
    }
    Ok(planned)
}

/// What `copy-check` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyCheck {
    pub snapshot: String,
    pub filesystems: Vec<Planned>,
}

impl Output for CopyCheck {
    const STEP: &'static str = "copy-check";
}

/// What `copy-snapshot` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopySnapshots {
    pub snapshot: String,
    /// Locations of the sources this run took it of.
    pub taken: Vec<String>,
}

impl Output for CopySnapshots {
    const STEP: &'static str = "copy-snapshot";
}

/// What `copy-send` recorded: each pair as planned, and the ids of those a kill had
/// interrupted after they were received (found up to date by the resume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopySent {
    pub copied: Vec<Planned>,
    #[serde(default)]
    pub found_done: Vec<String>,
}

impl Output for CopySent {
    const STEP: &'static str = "copy-send";
}

/// The copy run's steps.
pub(super) fn steps() -> Vec<std::sync::Arc<dyn Step<RunEnv>>> {
    vec![
        std::sync::Arc::new(CheckStep),
        std::sync::Arc::new(SnapshotStep),
        std::sync::Arc::new(SendStep),
    ]
}

fn not_undone<'a>(instance: &str) -> BoxFuture<'a, Result<(), StepError>> {
    let message = format!(
        "the filesystems copied into {instance} are its data: a copy is not undone \
         (`reroot destroy` removes them, when asked)"
    );
    Box::pin(async move { Err(StepError::new(message)) })
}

struct CheckStep;

impl Step<RunEnv> for CheckStep {
    fn name(&self) -> &'static str {
        CopyCheck::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let req = request(cx.env)?;
            let plan = cx.env.plan(cx.instance)?;
            let snapshot = copy_snapshot(req, cx.run);
            let lxd = if req.to_host.is_local() {
                Some(cx.env.lxd(plan)?)
            } else {
                None
            };
            let filesystems = check(lxd.as_ref(), plan, req, &snapshot).await?;
            CopyCheck {
                snapshot,
                filesystems,
            }
            .record()
        })
    }

    fn undo<'a>(&'a self, _: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }
}

struct SnapshotStep;

impl Step<RunEnv> for SnapshotStep {
    fn name(&self) -> &'static str {
        CopySnapshots::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let check: CopyCheck = cx.outputs.of()?;
            let req = request(cx.env)?;
            let mut taken = Vec::new();
            for p in pairs(&req.from, cx.env.plan(cx.instance)?)? {
                if p.source.takes_snapshots()
                    && copy::take_snapshot(&p.source, &req.from_host, &check.snapshot).await?
                {
                    taken.push(p.source.kind.location());
                }
            }
            CopySnapshots {
                snapshot: check.snapshot,
                taken,
            }
            .record()
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        not_undone(cx.instance)
    }
}

struct SendStep;

impl Step<RunEnv> for SendStep {
    fn name(&self) -> &'static str {
        CopySent::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let check: CopyCheck = cx.outputs.of()?;
            let req = request(cx.env)?;
            let tag = journal::short_id(&cx.run);
            let (mut copied, mut found_done) = (Vec::new(), Vec::new());
            for p in pairs(&req.from, cx.env.plan(cx.instance)?)? {
                let planned = check
                    .filesystems
                    .iter()
                    .find(|f| f.id == p.target.id)
                    .ok_or_else(|| {
                        StepError::new(format!("{} was not checked by copy-check", p.target))
                    })?;
                let live = copy::mode(
                    &p.source,
                    &req.from_host,
                    &p.target,
                    &req.to_host,
                    &check.snapshot,
                )
                .await?;
                let todo = match (&planned.mode, &live) {
                    (Mode::UpToDate, Mode::UpToDate) => Mode::UpToDate,
                    // Absent at the check, there now: this run's copy (it arrives whole:
                    // staged, then moved into place).
                    (Mode::Full, Mode::Present) | (_, Mode::UpToDate) => {
                        found_done.push(p.target.id.clone());
                        Mode::UpToDate
                    }
                    (Mode::Full, Mode::Full) => live,
                    (Mode::Incremental { base: a }, Mode::Incremental { base: b }) if a == b => {
                        live
                    }
                    (planned, live) => {
                        return Err(StepError::new(format!(
                            "{} changed since copy-check (then: {}, now: {}): nothing more is \
                             copied",
                            p.target,
                            planned.describe(),
                            live.describe()
                        )))
                    }
                };
                copy::copy(
                    &p.source,
                    &req.from_host,
                    &p.target,
                    &req.to_host,
                    &check.snapshot,
                    &todo,
                    &tag,
                )
                .await?;
                if let FsKind::Zfs { dataset } = &p.target.kind {
                    // Reads of the copy must not spoil the next incremental copy into it.
                    crate::storage::zfs::atime_off_on(&req.to_host, dataset).await?;
                }
                if req.to_host.is_local() {
                    crate::storage::archive::clean_staging(&p.target, &tag).await?;
                }
                copied.push(planned.clone());
            }
            CopySent { copied, found_done }.record()
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        not_undone(cx.instance)
    }
}
