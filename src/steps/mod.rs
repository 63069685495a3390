//! The steps of a rebuild, each one effect with its undo beside it, and the pipeline that puts
//! them in order.
//!
//! A rebuild replaces an instance's root with a fresh copy of its template while its data
//! stays on its external filesystems:
//!
//! | step | effect | undo |
//! |---|---|---|
//! | `preflight` | checks the source, records the instance as it is | nothing |
//! | `prepare` | copies the new root under a temporary name | deletes it |
//! | `provision` | filesystems and device directories made ready, disk devices set on the new root (before `stop`: no downtime) | nothing (data is kept; the devices go with the new root) |
//! | `stop` | stops the old root (clean, then forced) | starts it again if it ran |
//! | `snapshot` | snapshots the external filesystems at this consistent point | rolls back only with `--data` |
//! | `retire` | renames the old root out of the way (kept for undo) | renames it back |
//! | `swap` | renames the new root to the instance's name | renames it back to the temporary name |
//! | `reattach` | the devices checked on the new root, or the device profile made exact and attached | restores the profile |
//! | `files` | pushes the early cloud-config files (non-deferred `write_files`) | nothing |
//! | `start` | starts the new root; records the downtime | stops it |
//! | `ready` | with cloud-config to apply: waits (bounded, `wait-ready`) for an address on its NIC and a command to run | nothing |
//! | `cloud-config` | applies the rest of the cloud-config | nothing (the root goes with undo) |
//! | `verify` | running, and the health check passes | nothing |
//! | `final-stop` | with `stop: true` (a template): stops the new root | nothing (the undo of `start` stops it) |
//! | `final-snapshot` | with `snapshot: NAME`: takes that snapshot of the new root | deletes it |
//!
//! Every `apply` looks at the live state first and does nothing if its effect is there, so a
//! step cut short by a crash is simply applied again. The new root carries the run id in its
//! config (`user.reroot.run`): that is how a step tells the new root from the old one. No step
//! deletes or overwrites an external filesystem or a device directory.
//!
//! A `reroot snapshot` run has its own short pipeline (`named_snapshot`), and so do `delete`
//! and `destroy` (`removal`); [`RunKind`], stored in the run header, says which pipeline a run
//! has.

pub mod archive;
pub mod copy_fs;
pub mod forecast;
pub mod plan;

mod cloud;
mod daemons;
mod finish;
mod named_snapshot;
mod names;
mod preflight;
mod prepare;
mod profile;
pub mod profile_apply;
mod provision;
pub mod publish;
mod ready;
mod reattach;
pub mod removal;
mod rename;
pub mod rename_instance;
pub mod rollback;
mod snapshot;
mod start;
mod stop;
mod verify;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::engine::{Output, Step, StepError, Window};
use crate::lxd;

pub use daemons::Daemons;
pub use names::{
    retired_name, snapshot_name, temporary_name, MAX_NAME_LEN, RUN_KEY, SOURCE_ID_KEY, SOURCE_KEY,
};
pub use plan::InstancePlan;
pub use preflight::Preflight as PreflightRecord;
pub use profile::wanted_devices;
pub use rollback::RollbackRequest;
pub use start::Started;

/// Options of a run that are not part of any config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides every plan's clean-stop timeout (seconds; 0 = force at once).
    pub stop_timeout_s: Option<u64>,
    /// On undo, roll the external filesystems back to the run's snapshots.
    pub undo_data: bool,
    /// What a snapshot run takes (`None` for a rebuild).
    pub snapshot: Option<SnapshotRequest>,
    /// What a rollback run rolls back to.
    pub rollback: Option<RollbackRequest>,
    /// A rename run: the instance's plan under its new name.
    pub rename_to: Option<InstancePlan>,
    /// What a publish run publishes.
    pub publish: Option<PublishRequest>,
    /// The directory an export writes or an import reads.
    pub archive: Option<archive::ArchiveRequest>,
    /// Where a copy-filesystems run copies from.
    pub copy: Option<copy_fs::CopyRequest>,
}

/// The image a `reroot publish` run makes of an instance's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// The snapshot of the instance's root.
    pub snapshot: String,
    /// The image alias.
    pub alias: String,
}

/// The snapshot a `reroot snapshot` run takes of each instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// The snapshot name, the same for the root and the filesystems.
    pub name: String,
    /// Only the root, not the filesystems.
    pub root_only: bool,
    /// Only the filesystems, not the root.
    pub filesystems_only: bool,
}

/// What a run does, and so which steps drive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// `reroot rebuild`.
    Rebuild,
    /// `reroot snapshot`.
    Snapshot,
    /// `reroot delete`: the root and the device profile; filesystems kept.
    Delete,
    /// `reroot destroy`: a delete, then the filesystems marked `destroy: true`.
    Destroy,
    /// `reroot rollback`: filesystems (and maybe the root) back to a named snapshot.
    Rollback,
    /// `reroot snapshot --delete NAME`: the named snapshots of roots and filesystems deleted.
    DeleteSnapshot,
    /// `reroot rename CONFIG NEW`: the instance, its filesystems and devices under a new name.
    Rename,
    /// `reroot publish`: a snapshot of the root published as an image.
    Publish,
    /// `reroot export`: the filesystems streamed into archive files with a manifest.
    Export,
    /// `reroot import`: an export's archives received as the filesystems.
    Import,
    /// `reroot profile apply`: the instance's profile list and device profile made what the
    /// config says.
    ProfileApply,
    /// `reroot copy-filesystems`: another instance's filesystems sent into the instance's.
    CopyFilesystems,
}

impl RunKind {
    /// The kind a run header records (`rebuild`, `snapshot`, ...; see `run::spec`).
    pub fn from_word(word: &str) -> Result<RunKind, String> {
        match word {
            "rebuild" => Ok(RunKind::Rebuild),
            "snapshot" => Ok(RunKind::Snapshot),
            "delete" => Ok(RunKind::Delete),
            "destroy" => Ok(RunKind::Destroy),
            "rollback" => Ok(RunKind::Rollback),
            "delete-snapshot" => Ok(RunKind::DeleteSnapshot),
            "rename" => Ok(RunKind::Rename),
            "publish" => Ok(RunKind::Publish),
            "export" => Ok(RunKind::Export),
            "import" => Ok(RunKind::Import),
            "profile-apply" => Ok(RunKind::ProfileApply),
            "copy-filesystems" => Ok(RunKind::CopyFilesystems),
            other => Err(format!(
                "a run of kind {other:?}, which this reroot does not know (a newer version?)"
            )),
        }
    }

    /// The word stored in the header and shown to people.
    pub fn word(self) -> &'static str {
        match self {
            RunKind::Rebuild => "rebuild",
            RunKind::Snapshot => "snapshot",
            RunKind::Delete => "delete",
            RunKind::Destroy => "destroy",
            RunKind::Rollback => "rollback",
            RunKind::DeleteSnapshot => "delete-snapshot",
            RunKind::Rename => "rename",
            RunKind::Publish => "publish",
            RunKind::Export => "export",
            RunKind::Import => "import",
            RunKind::ProfileApply => "profile-apply",
            RunKind::CopyFilesystems => "copy-filesystems",
        }
    }

    /// What an instance whose steps all succeeded is called in the summary ("rebuilt").
    pub fn done_word(self) -> &'static str {
        match self {
            RunKind::Rebuild => "rebuilt",
            RunKind::Snapshot => "snapshotted",
            RunKind::Delete => "deleted",
            RunKind::Destroy => "destroyed",
            RunKind::Rollback => "rolled back",
            RunKind::DeleteSnapshot => "snapshot deleted",
            RunKind::Rename => "renamed",
            RunKind::Publish => "published",
            RunKind::Export => "exported",
            RunKind::Import => "imported",
            RunKind::ProfileApply => "profiles applied",
            RunKind::CopyFilesystems => "filesystems copied",
        }
    }

    /// The steps of each instance, in order.
    pub fn pipeline(self) -> Vec<Arc<dyn Step<RunEnv>>> {
        match self {
            RunKind::Rebuild => rebuild_pipeline(),
            RunKind::Snapshot => named_snapshot::steps(),
            RunKind::Delete => removal::steps(false),
            RunKind::Destroy => removal::steps(true),
            RunKind::Rollback => rollback::steps(),
            RunKind::DeleteSnapshot => named_snapshot::delete_steps(),
            RunKind::Rename => rename_instance::steps(),
            RunKind::Publish => publish::steps(),
            RunKind::Export => archive::export_steps(),
            RunKind::Import => archive::import_steps(),
            RunKind::ProfileApply => profile_apply::steps(),
            RunKind::CopyFilesystems => copy_fs::steps(),
        }
    }

    /// The steps between which an instance is down, for the pipelines that take one down.
    pub fn window(self) -> Option<Window> {
        match self {
            RunKind::Rebuild => Some(Window {
                opens: stop::Stopped::STEP,
                closes: Started::STEP,
            }),
            // A snapshot run never stops anything; delete and destroy refuse a running
            // instance, so nothing they do takes a website down.
            // A rollback stops an instance only when asked to (`--stop`), and then on purpose
            // leaves it stopped after a failure (see `rollback`): no revert.
            RunKind::Snapshot
            | RunKind::Delete
            | RunKind::Destroy
            | RunKind::Rollback
            | RunKind::DeleteSnapshot
            // A rename refuses a running instance.
            | RunKind::Rename
            // Publishing reads a snapshot; the instance runs on.
            | RunKind::Publish
            // Exports and imports touch only filesystems, never an instance.
            | RunKind::Export
            | RunKind::Import
            | RunKind::CopyFilesystems
            // Profiles change on a running instance; nothing is stopped.
            | RunKind::ProfileApply => None,
        }
    }

    /// Whether `undo` can put things back (not after a delete or destroy).
    pub fn undoable(self) -> bool {
        matches!(
            self,
            RunKind::Rebuild
                | RunKind::Snapshot
                | RunKind::Rename
                | RunKind::Publish
                | RunKind::Export
                | RunKind::ProfileApply
        )
    }

    /// Why a run of this kind is not undone (empty for the kinds that are).
    pub fn not_undoable_because(self) -> &'static str {
        match self {
            RunKind::Delete | RunKind::Destroy | RunKind::DeleteSnapshot => {
                "what it deleted cannot be brought back"
            }
            RunKind::Rollback => "what it rolled back cannot be brought back",
            // Undoing an import would destroy filesystems that are the instance's data from
            // the moment they arrive (it may have written to them since); only `destroy`,
            // asked for, removes an instance's data.
            RunKind::Import | RunKind::CopyFilesystems => {
                "the filesystems it received are the instance's data now, which only \
                 `reroot destroy` removes"
            }
            _ => "",
        }
    }
}

/// What the steps of a run share: the daemons' clients, the plans and the options.
pub struct RunEnv {
    daemons: Daemons,
    plans: BTreeMap<String, InstancePlan>,
    /// The options.
    pub options: RunOptions,
}

impl RunEnv {
    /// An environment for these plans (instance names must be unique).
    pub fn new(daemons: Daemons, plans: Vec<InstancePlan>, options: RunOptions) -> RunEnv {
        let plans = plans.into_iter().map(|p| (p.name.clone(), p)).collect();
        RunEnv {
            daemons,
            plans,
            options,
        }
    }

    /// The plan of an instance.
    pub fn plan(&self, instance: &str) -> Result<&InstancePlan, StepError> {
        self.plans
            .get(instance)
            .ok_or_else(|| StepError::new(format!("no plan for instance {instance} in this run")))
    }

    /// The instance named `name` (the instance itself, or its temporary or retired root) in
    /// the project of `instance`'s plan, as LXD has it now; `None` if there is none.
    pub(crate) async fn live(
        &self,
        instance: &str,
        name: &str,
    ) -> Result<Option<lxd::Instance>, StepError> {
        use lxd::OptionalExt;
        let lxd = self.lxd(self.plan(instance)?)?;
        Ok(lxd.get_instance(name).await.optional()?.map(|v| v.value))
    }

    /// The name the new root built by `run` has now: its temporary name before `swap`, the
    /// instance's after it; `None` if neither is that run's new root.
    pub(crate) async fn new_root_name(
        &self,
        instance: &str,
        run: journal::RunId,
    ) -> Result<Option<String>, StepError> {
        for name in [temporary_name(instance, run), instance.to_string()] {
            let live = self.live(instance, &name).await?;
            if live.is_some_and(|i| names::built_by(&i, run)) {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }

    /// The plan of an instance and the LXD client for its project: what nearly every step
    /// begins with.
    pub fn scope(&self, instance: &str) -> Result<(&InstancePlan, lxd::Client), StepError> {
        let plan = self.plan(instance)?;
        Ok((plan, self.lxd(plan)?))
    }

    /// The client of the instance's daemon, for its project.
    pub fn lxd(&self, plan: &InstancePlan) -> Result<lxd::Client, StepError> {
        self.daemons.client(plan).map_err(StepError::new)
    }
}

/// The error of a start or stop. Its operation failing in LXD (a start hook that timed out, a
/// stop that LXD gave up on: both seen when the daemon is busy) is worth another try; a start
/// or stop is idempotent, so the engine may retry it.
pub(crate) fn state_change_error(e: lxd::Error) -> StepError {
    match e {
        lxd::Error::OperationFailed { .. } => StepError::transient(e.to_string()),
        other => other.into(),
    }
}

/// The rebuild pipeline, in order.
pub fn rebuild_pipeline() -> Vec<Arc<dyn Step<RunEnv>>> {
    vec![
        Arc::new(preflight::PreflightStep),
        Arc::new(prepare::Prepare),
        Arc::new(provision::Provision),
        Arc::new(stop::StopOld),
        Arc::new(snapshot::SnapshotData),
        Arc::new(rename::Retire),
        Arc::new(rename::Swap),
        Arc::new(reattach::Reattach),
        Arc::new(cloud::CloudConfigPart(cloud::Part::EarlyFiles)),
        Arc::new(start::Start),
        Arc::new(ready::Ready),
        Arc::new(cloud::CloudConfigPart(cloud::Part::Rest)),
        Arc::new(verify::Verify),
        Arc::new(finish::FinalStop),
        Arc::new(finish::FinalSnapshot),
    ]
}

impl From<lxd::Error> for StepError {
    /// Timeouts, transport failures, lost operations, server errors and "busy running an
    /// operation" may pass; not found, conflicts, refusals and bad requests will not.
    fn from(e: lxd::Error) -> StepError {
        // "Instance is busy running a "stop" operation": another operation holds the
        // instance for a moment.
        let busy = e.is_in_use() && e.message().contains("busy running");
        let passing = e.is_timeout()
            || e.is_transport()
            || e.is_outcome_unknown()
            || busy
            || matches!(e, lxd::Error::Server { .. });
        if e.is_transport() {
            StepError::unreachable(e.to_string())
        } else if passing {
            StepError::transient(e.to_string())
        } else {
            StepError::new(e.to_string())
        }
    }
}

impl From<crate::storage::StorageError> for StepError {
    fn from(e: crate::storage::StorageError) -> StepError {
        match e {
            crate::storage::StorageError::Timeout { .. } => StepError::transient(e.to_string()),
            _ => StepError::new(e.to_string()),
        }
    }
}

impl From<crate::cloudconfig::CloudConfigError> for StepError {
    fn from(e: crate::cloudconfig::CloudConfigError) -> StepError {
        StepError::new(e.to_string())
    }
}

impl From<crate::config::ConfigError> for StepError {
    fn from(e: crate::config::ConfigError) -> StepError {
        StepError::new(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_kinds_read_back_from_their_word_and_unknown_ones_are_refused() {
        for kind in [
            RunKind::Rebuild,
            RunKind::Snapshot,
            RunKind::Delete,
            RunKind::Destroy,
            RunKind::Publish,
            RunKind::Export,
            RunKind::Import,
            RunKind::ProfileApply,
            RunKind::CopyFilesystems,
        ] {
            assert_eq!(RunKind::from_word(kind.word()), Ok(kind));
        }
        let err = RunKind::from_word("migrate").unwrap_err();
        assert!(err.contains("\"migrate\""), "{err}");
        let names: Vec<&str> = RunKind::Snapshot
            .pipeline()
            .iter()
            .map(|s| s.name())
            .collect();
        assert_eq!(names, ["survey", "snapshot-root", "snapshot-fs"]);
    }

    /// The outputs are stored in the journal as JSON and read back by later steps, undo and
    /// reports of runs recorded by earlier builds: their shapes are pinned here. If this
    /// fails, a step's output changed shape; add fields with `#[serde(default)]` instead.
    #[test]
    fn step_outputs_keep_their_recorded_shape() {
        use serde_json::json;
        fn pinned<T: Output + std::fmt::Debug + PartialEq>(value: T, recorded: serde_json::Value) {
            assert_eq!(value.record().unwrap(), recorded, "{}", T::STEP);
            assert_eq!(T::decode(&recorded).unwrap(), value, "{}", T::STEP);
        }
        pinned(
            Started {
                downtime_ms: Some(1300),
            },
            json!({ "downtime_ms": 1300 }),
        );
        pinned(
            Started { downtime_ms: None },
            json!({ "downtime_ms": null }),
        );
        pinned(
            stop::Stopped {
                how: stop::How::AlreadyStopped,
                retired: false,
            },
            json!({ "how": "already stopped" }),
        );
        pinned(
            stop::Stopped {
                how: stop::How::Forced,
                retired: true,
            },
            json!({ "how": "forced", "retired": true }),
        );
        pinned(rename::Swapped, json!(null));
        pinned(
            rename::Retired { retired: None },
            json!({ "retired": null }),
        );
        pinned(
            prepare::Prepared {
                temporary: "web-new-1a2b3c4d".into(),
            },
            json!({ "temporary": "web-new-1a2b3c4d" }),
        );
        pinned(
            verify::Verified {
                health: "ok".into(),
                tries: Some(2),
            },
            json!({ "health": "ok", "tries": 2 }),
        );
        pinned(
            provision::Provisioned {
                owner: "1000000:1000000".into(),
                new_filesystems: vec!["data".into()],
                new_directories: vec![],
            },
            json!({ "owner": "1000000:1000000", "new_filesystems": ["data"],
                    "new_directories": [] }),
        );
        pinned(
            reattach::Reattached {
                devices: plan::DevicePlacement::Profile,
            },
            json!({ "devices": "profile" }),
        );
        pinned(cloud::FilesPushed { changed: 3 }, json!({ "changed": 3 }));
        pinned(
            rollback::FilesystemsRolledBack {
                snapshot: "good".into(),
                rolled_back: vec![rollback::RolledBack {
                    location: "/srv/b/web".into(),
                    kept_as: Some("pre-rollback-1700000000".into()),
                }],
            },
            json!({ "snapshot": "good", "rolled_back": [
                { "location": "/srv/b/web", "kept_as": "pre-rollback-1700000000" }] }),
        );
        pinned(
            rename_instance::FilesystemsMoved {
                moved: vec!["zfs dataset tank/web2".into()],
                placement: plan::DevicePlacement::Instance,
                profile: None,
            },
            json!({ "moved": ["zfs dataset tank/web2"], "placement": "instance", "profile": null }),
        );
        pinned(
            rollback::RootRolledBack { snapshot: None },
            json!({ "snapshot": null }),
        );
        pinned(
            rollback::RollbackCheck {
                was_running: true,
                filesystems: vec!["tank/web".into()],
                left: vec!["/srv/dir/web".into()],
            },
            json!({ "was_running": true, "filesystems": ["tank/web"], "left": ["/srv/dir/web"] }),
        );
        pinned(
            publish::Published {
                source: "tpl/copy".into(),
                alias: "alpine-ssh".into(),
                fingerprint: "293afaa0".into(),
            },
            json!({ "source": "tpl/copy", "alias": "alpine-ssh", "fingerprint": "293afaa0" }),
        );
        pinned(
            profile_apply::ProfilesBefore {
                profiles: vec!["default".into(), "web.reroot".into()],
                device_profile: None,
            },
            json!({ "profiles": ["default", "web.reroot"], "device_profile": null }),
        );
        pinned(
            profile_apply::ProfilesApplied {
                profiles: vec!["default".into()],
            },
            json!({ "profiles": ["default"] }),
        );
        pinned(
            ready::ReadyOutput {
                waited_ms: Some(812),
                address: Some("eth0 10.0.3.5".into()),
            },
            json!({ "waited_ms": 812, "address": "eth0 10.0.3.5" }),
        );
        pinned(
            ready::ReadyOutput {
                waited_ms: None,
                address: None,
            },
            json!({ "waited_ms": null }),
        );
        pinned(
            finish::FinallyStopped { stopped: true },
            json!({ "stopped": true }),
        );
        pinned(
            finish::FinalSnapshotTaken {
                snapshot: Some("tpl/copy".into()),
            },
            json!({ "snapshot": "tpl/copy" }),
        );
        pinned(
            finish::FinalSnapshotTaken { snapshot: None },
            json!({ "snapshot": null }),
        );
        pinned(
            removal::ProfileDeleted {
                profile: "web.reroot".into(),
                deleted: true,
            },
            json!({ "profile": "web.reroot", "deleted": true }),
        );
        pinned(
            archive::ExportCheck {
                dir_existed: false,
                snapshot: "reroot-export-1a2b3c4d".into(),
                had_snapshot: vec![],
            },
            json!({ "dir_existed": false, "snapshot": "reroot-export-1a2b3c4d",
                    "had_snapshot": [] }),
        );
        pinned(
            archive::ExportSnapshots {
                snapshot: "s1".into(),
                taken: vec!["zfs dataset tank/web".into()],
            },
            json!({ "snapshot": "s1", "taken": ["zfs dataset tank/web"] }),
        );
        pinned(
            archive::ExportArchives {
                archives: vec![crate::storage::manifest::ArchiveEntry {
                    id: "data".into(),
                    kind: "zfs".into(),
                    location: "tank/web".into(),
                    snapshot: "s1".into(),
                    file: "data.zfs".into(),
                    size: 3,
                    sha256: "ab".into(),
                }],
            },
            json!({ "archives": [{ "id": "data", "kind": "zfs", "location": "tank/web",
                    "snapshot": "s1", "file": "data.zfs", "size": 3, "sha256": "ab" }] }),
        );
        pinned(
            archive::ExportManifest {
                manifest: "/b/manifest.json".into(),
            },
            json!({ "manifest": "/b/manifest.json" }),
        );
        pinned(
            archive::ImportCheck {
                targets: vec!["zfs dataset tank/web".into()],
            },
            json!({ "targets": ["zfs dataset tank/web"] }),
        );
        pinned(
            archive::ImportReceived {
                created: vec!["zfs dataset tank/web".into()],
            },
            json!({ "created": ["zfs dataset tank/web"] }),
        );
        let planned = |mode| copy_fs::Planned {
            id: "data".into(),
            source: "tank/web".into(),
            target: "tank2/web".into(),
            mode,
        };
        pinned(
            copy_fs::CopyCheck {
                snapshot: "reroot-copy-1a2b3c4d".into(),
                filesystems: vec![
                    planned(crate::storage::copy::Mode::Full),
                    planned(crate::storage::copy::Mode::Incremental { base: "s1".into() }),
                ],
            },
            json!({ "snapshot": "reroot-copy-1a2b3c4d", "filesystems": [
                { "id": "data", "source": "tank/web", "target": "tank2/web", "mode": "full" },
                { "id": "data", "source": "tank/web", "target": "tank2/web",
                  "mode": "incremental", "base": "s1" }] }),
        );
        pinned(
            copy_fs::CopySnapshots {
                snapshot: "s2".into(),
                taken: vec!["zfs dataset tank/web".into()],
            },
            json!({ "snapshot": "s2", "taken": ["zfs dataset tank/web"] }),
        );
        pinned(
            copy_fs::CopySent {
                copied: vec![planned(crate::storage::copy::Mode::UpToDate)],
                found_done: vec!["data".into()],
            },
            json!({ "copied": [{ "id": "data", "source": "tank/web", "target": "tank2/web",
                    "mode": "up_to_date" }], "found_done": ["data"] }),
        );
        // A malformed output names its step; a missing one too.
        let err = Started::decode(&json!({ "downtime_ms": "soon" })).unwrap_err();
        assert!(err.to_string().contains("`start`"), "{err}");
        let err = crate::engine::Outputs::default()
            .of::<PreflightRecord>()
            .unwrap_err();
        assert!(
            err.to_string().contains("`preflight` is not recorded"),
            "{err}"
        );
    }

    /// Every step of every pipeline is named by the output type it records, so a lookup by
    /// type finds what the step wrote.
    #[test]
    fn pipeline_steps_are_named_by_their_outputs() {
        let names: Vec<&str> = RunKind::Rebuild
            .pipeline()
            .iter()
            .map(|s| s.name())
            .collect();
        assert_eq!(
            names,
            [
                PreflightRecord::STEP,
                prepare::Prepared::STEP,
                provision::Provisioned::STEP,
                stop::Stopped::STEP,
                snapshot::DataSnapshots::STEP,
                rename::Retired::STEP,
                rename::Swapped::STEP,
                reattach::Reattached::STEP,
                cloud::FilesPushed::STEP,
                Started::STEP,
                ready::ReadyOutput::STEP,
                cloud::CloudConfigApplied::STEP,
                verify::Verified::STEP,
                finish::FinallyStopped::STEP,
                finish::FinalSnapshotTaken::STEP,
            ]
        );
        let window = RunKind::Rebuild.window().unwrap();
        assert!(names.contains(&window.opens) && names.contains(&window.closes));
        let names: Vec<&str> = RunKind::Rollback
            .pipeline()
            .iter()
            .map(|s| s.name())
            .collect();
        assert_eq!(
            names,
            [
                rollback::RollbackCheck::STEP,
                rollback::RollbackStopped::STEP,
                rollback::FilesystemsRolledBack::STEP,
                rollback::RootRolledBack::STEP,
                rollback::RollbackStarted::STEP,
            ]
        );
        assert!(!RunKind::Rollback.undoable());
        let names: Vec<&str> = RunKind::Rename
            .pipeline()
            .iter()
            .map(|s| s.name())
            .collect();
        assert_eq!(
            names,
            [
                rename_instance::RenameCheck::STEP,
                rename_instance::InstanceRenamed::STEP,
                rename_instance::FilesystemsMoved::STEP,
            ]
        );
        assert!(RunKind::Rename.undoable());
        assert_eq!(RunKind::from_word("rollback"), Ok(RunKind::Rollback));
        let names = |kind: RunKind| -> Vec<&'static str> {
            kind.pipeline().iter().map(|s| s.name()).collect()
        };
        assert_eq!(
            names(RunKind::Export),
            [
                archive::ExportCheck::STEP,
                archive::ExportSnapshots::STEP,
                archive::ExportArchives::STEP,
                archive::ExportManifest::STEP,
            ]
        );
        assert_eq!(
            names(RunKind::Import),
            [archive::ImportCheck::STEP, archive::ImportReceived::STEP]
        );
        assert!(RunKind::Export.undoable() && !RunKind::Import.undoable());
        assert!(!RunKind::Import.not_undoable_because().is_empty());
        assert_eq!(
            names(RunKind::CopyFilesystems),
            ["copy-check", "copy-snapshot", "copy-send"]
        );
        assert!(!RunKind::CopyFilesystems.undoable());
        assert!(!RunKind::CopyFilesystems.not_undoable_because().is_empty());
    }
}
