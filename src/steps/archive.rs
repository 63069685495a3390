//! The steps of `reroot export` and `reroot import`: an instance's external filesystems as
//! archive files in a directory, with a manifest, and back.
//!
//! Export (`RunKind::Export`):
//!
//! | step | effect | undo |
//! |---|---|---|
//! | `export-check` | the directory absent or empty, the filesystems there, a `-s` snapshot on each; records which had the snapshot | removes the directory if the run made it (and it is empty) |
//! | `export-snapshot` | takes the export's snapshot of each ZFS and btrfs filesystem, if missing | deletes those this run took |
//! | `export-archives` | streams each filesystem into `<id>.zfs` / `<id>.btrfs` / `<id>.tar` | removes those files |
//! | `export-manifest` | writes `manifest.json`, last | removes it |
//!
//! Transient filesystems are not exported. A plain directory has no snapshot: its archive is
//! `tar` of its live content, consistent only if nothing writes to it meanwhile (stop the
//! instance for that); ZFS and btrfs archives are of the snapshot and always consistent.
//! Since the directory was empty when the run began, a complete archive file found by a
//! resume is this run's; a `.partial` one (cut short by a kill) is removed and written again.
//!
//! Import (`RunKind::Import`):
//!
//! | step | effect | undo |
//! |---|---|---|
//! | `import-check` | the manifest read and checked against the config, every archive's size and SHA-256 verified, every target absent | nothing |
//! | `import-receive` | receives each archive as the config's filesystem of that id | removes the filesystems this run created, and its staging leftovers |
//!
//! The CLI runs the same check before it records the run, so a refused import leaves nothing
//! behind. Targets are checked absent by `import-check` and never overwritten; one that exists
//! when `import-receive` runs again after a crash is the one this run received.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{InstancePlan, RunEnv};
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::storage::archive;
use crate::storage::manifest::{ArchiveEntry, Manifest, FORMAT, MANIFEST_FILE};
use crate::storage::{self, Filesystem, FsKind, SnapshotOutcome};

/// What an export or import run works on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRequest {
    /// The export directory.
    pub dir: PathBuf,
    /// Export: the snapshot to archive (taken if `None`: `reroot-export-<run>`).
    #[serde(default)]
    pub snapshot: Option<String>,
}

/// The snapshot an export archives.
pub fn export_snapshot(request: &ArchiveRequest, run: journal::RunId) -> String {
    request
        .snapshot
        .clone()
        .unwrap_or_else(|| format!("reroot-export-{}", journal::short_id(&run)))
}

fn request(env: &RunEnv) -> Result<&ArchiveRequest, StepError> {
    env.options
        .archive
        .as_ref()
        .ok_or_else(|| StepError::new("this run records no export directory"))
}

/// The filesystems an export archives: all but the transient ones.
pub fn exported(plan: &InstancePlan) -> Vec<Filesystem> {
    plan.filesystems
        .iter()
        .map(|fs| fs.storage())
        .filter(|fs| !fs.transient)
        .collect()
}

/// The kind word of the manifest.
pub fn kind_word(kind: &FsKind) -> &'static str {
    match kind {
        FsKind::Zfs { .. } => "zfs",
        FsKind::Btrfs { .. } => "btrfs",
        FsKind::Dir { .. } => "dir",
    }
}

fn location_of(kind: &FsKind) -> String {
    match kind {
        FsKind::Zfs { dataset } => dataset.clone(),
        FsKind::Btrfs { path } | FsKind::Dir { path } => path.display().to_string(),
    }
}

/// The archive file of a filesystem: `<id>.<zfs|btrfs|tar>`.
pub fn archive_file(fs: &Filesystem) -> Result<String, StepError> {
    let plain = !fs.id.starts_with('.')
        && !fs.id.is_empty()
        && fs
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !plain {
        return Err(StepError::new(format!(
            "filesystem id {:?} cannot name an archive file (use letters, digits, _ . -)",
            fs.id
        )));
    }
    Ok(format!("{}.{}", fs.id, archive::extension(&fs.kind)))
}

/// Whether `dir` is absent or an empty directory; an error naming it otherwise.
async fn dir_state(dir: &Path) -> Result<bool, StepError> {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StepError::new(format!("{}: {e}", dir.display()))),
        Ok(mut entries) => {
            if entries.next().is_some() {
                let what = if dir.join(MANIFEST_FILE).exists() {
                    "holds an export already (manifest.json)"
                } else {
                    "is not empty"
                };
                Err(StepError::new(format!(
                    "export directory {} {what}: nothing is overwritten; give a new or empty directory",
                    dir.display()
                )))
            } else {
                Ok(true)
            }
        }
    }
}

/// The refusals an export would meet, read-only: the directory absent or empty, ids usable
/// as file names, the filesystems there, and a given snapshot on each that has snapshots.
/// Returns whether the directory exists and the locations that have the snapshot already.
pub async fn check_export(
    plan: &InstancePlan,
    dir: &Path,
    snapshot: &str,
    given: bool,
) -> Result<(bool, Vec<String>), StepError> {
    storage::validate_snapshot_name(snapshot)?;
    let existed = dir_state(dir).await?;
    let mut had = Vec::new();
    for fs in exported(plan) {
        archive_file(&fs)?;
        if !fs.exists().await? {
            return Err(StepError::new(format!(
                "{fs} does not exist: nothing was exported"
            )));
        }
        if fs.takes_snapshots() {
            if fs.has_snapshot(snapshot).await? {
                had.push(fs.kind.location());
            } else if given {
                return Err(StepError::new(format!(
                    "{fs} has no snapshot {snapshot}: nothing was exported"
                )));
            }
        }
    }
    Ok((existed, had))
}

/// What `export-check` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportCheck {
    /// The export directory existed (empty) before the run.
    pub dir_existed: bool,
    /// The snapshot archived.
    pub snapshot: String,
    /// Locations of the filesystems that had that snapshot before the run.
    pub had_snapshot: Vec<String>,
}

impl Output for ExportCheck {
    const STEP: &'static str = "export-check";
}

/// What `export-snapshot` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSnapshots {
    pub snapshot: String,
    /// Locations of the filesystems this run took it of.
    pub taken: Vec<String>,
}

impl Output for ExportSnapshots {
    const STEP: &'static str = "export-snapshot";
}

/// What `export-archives` recorded: the manifest's entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportArchives {
    pub archives: Vec<ArchiveEntry>,
}

impl Output for ExportArchives {
    const STEP: &'static str = "export-archives";
}

/// What `export-manifest` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportManifest {
    /// Its path.
    pub manifest: String,
}

impl Output for ExportManifest {
    const STEP: &'static str = "export-manifest";
}

/// The export run's steps.
pub(super) fn export_steps() -> Vec<std::sync::Arc<dyn Step<RunEnv>>> {
    vec![
        std::sync::Arc::new(ExportCheckStep),
        std::sync::Arc::new(ExportSnapshotStep),
        std::sync::Arc::new(ExportArchivesStep),
        std::sync::Arc::new(ExportManifestStep),
    ]
}

struct ExportCheckStep;

impl Step<RunEnv> for ExportCheckStep {
    fn name(&self) -> &'static str {
        ExportCheck::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let req = request(cx.env)?;
            let snapshot = export_snapshot(req, cx.run);
            let plan = cx.env.plan(cx.instance)?;
            let (dir_existed, had_snapshot) =
                check_export(plan, &req.dir, &snapshot, req.snapshot.is_some()).await?;
            ExportCheck {
                dir_existed,
                snapshot,
                had_snapshot,
            }
            .record()
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let check: ExportCheck = cx.outputs.of()?;
            let dir = &request(cx.env)?.dir;
            if !check.dir_existed {
                match std::fs::remove_dir(dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(StepError::new(format!(
                            "cannot remove export directory {}: {e}",
                            dir.display()
                        )))
                    }
                }
            }
            Ok(())
        })
    }
}

struct ExportSnapshotStep;

impl Step<RunEnv> for ExportSnapshotStep {
    fn name(&self) -> &'static str {
        ExportSnapshots::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let check: ExportCheck = cx.outputs.of()?;
            let mut taken = Vec::new();
            for fs in exported(cx.env.plan(cx.instance)?) {
                if fs.snapshot(&check.snapshot).await? == SnapshotOutcome::Taken {
                    taken.push(fs.kind.location());
                }
            }
            ExportSnapshots {
                snapshot: check.snapshot,
                taken,
            }
            .record()
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let check: ExportCheck = cx.outputs.of()?;
            for fs in exported(cx.env.plan(cx.instance)?) {
                if fs.takes_snapshots() && !check.had_snapshot.contains(&fs.kind.location()) {
                    fs.delete_snapshot(&check.snapshot).await?;
                }
            }
            Ok(())
        })
    }
}

fn partial(dir: &Path, file: &str) -> PathBuf {
    dir.join(format!("{file}.partial"))
}

struct ExportArchivesStep;

impl Step<RunEnv> for ExportArchivesStep {
    fn name(&self) -> &'static str {
        ExportArchives::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let check: ExportCheck = cx.outputs.of()?;
            let dir = &request(cx.env)?.dir;
            std::fs::create_dir_all(dir)
                .map_err(|e| StepError::new(format!("create {}: {e}", dir.display())))?;
            let mut archives = Vec::new();
            for fs in exported(cx.env.plan(cx.instance)?) {
                let file = archive_file(&fs)?;
                let path = dir.join(&file);
                // A complete file is this run's (the directory was empty when it began); a
                // partial one was cut short by a kill and is written again.
                let digested = if path.exists() {
                    archive::digest(&path).await?
                } else {
                    let _ = std::fs::remove_file(partial(dir, &file));
                    archive::send(&fs, &check.snapshot, &path).await?
                };
                archives.push(ArchiveEntry {
                    id: fs.id.clone(),
                    kind: kind_word(&fs.kind).to_string(),
                    location: location_of(&fs.kind),
                    snapshot: check.snapshot.clone(),
                    file,
                    size: digested.size,
                    sha256: digested.sha256,
                });
            }
            ExportArchives { archives }.record()
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let dir = &request(cx.env)?.dir;
            for fs in exported(cx.env.plan(cx.instance)?) {
                let file = archive_file(&fs)?;
                for path in [dir.join(&file), partial(dir, &file)] {
                    remove_file(&path)?;
                }
            }
            Ok(())
        })
    }
}

fn remove_file(path: &Path) -> Result<(), StepError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StepError::new(format!("remove {}: {e}", path.display()))),
    }
}

struct ExportManifestStep;

impl Step<RunEnv> for ExportManifestStep {
    fn name(&self) -> &'static str {
        ExportManifest::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let archives: ExportArchives = cx.outputs.of()?;
            let dir = &request(cx.env)?.dir;
            let manifest = Manifest {
                format: FORMAT,
                reroot_version: env!("CARGO_PKG_VERSION").to_string(),
                instance: cx.instance.to_string(),
                filesystems: archives.archives,
            };
            let path = dir.join(MANIFEST_FILE);
            let tmp = partial(dir, MANIFEST_FILE);
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(manifest.to_text().as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                std::fs::File::open(dir)?.sync_all()
            };
            write().map_err(|e| StepError::new(format!("write {}: {e}", path.display())))?;
            ExportManifest {
                manifest: path.display().to_string(),
            }
            .record()
        })
    }

    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let dir = &request(cx.env)?.dir;
            remove_file(&dir.join(MANIFEST_FILE))?;
            remove_file(&partial(dir, MANIFEST_FILE))
        })
    }
}

/// One archive of an import: the manifest's entry and the config's filesystem it becomes.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub entry: ArchiveEntry,
    pub target: Filesystem,
}

/// Reads and checks the manifest in `dir` against `plan`, and verifies every archive's size
/// and SHA-256, changing nothing: the manifest must be of this instance, name only known
/// kinds and filesystems of the config of the same kind, and every target must be absent.
pub async fn check_import(plan: &InstancePlan, dir: &Path) -> Result<Vec<Incoming>, StepError> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| StepError::new(format!("{}: {e}: nothing was imported", path.display())))?;
    let source = path.display().to_string();
    let manifest = Manifest::parse(&text, &source)
        .map_err(|e| StepError::new(format!("{e}: nothing was imported")))?;
    if manifest.instance != plan.name {
        return Err(StepError::new(format!(
            "{source} is an export of instance {}, not {}: nothing was imported",
            manifest.instance, plan.name
        )));
    }
    let mut incoming = Vec::new();
    for entry in manifest.filesystems {
        let Some(fs) = plan.filesystems.iter().find(|f| f.id == entry.id) else {
            return Err(StepError::new(format!(
                "{source}: filesystem `{}` is not in the config of {}: nothing was imported",
                entry.id, plan.name
            )));
        };
        let target = fs.storage();
        if kind_word(&target.kind) != entry.kind {
            return Err(StepError::new(format!(
                "{source}: filesystem `{}` was exported as {}, but the config has {}: nothing was imported",
                entry.id,
                entry.kind,
                target.kind.location()
            )));
        }
        let file = dir.join(&entry.file);
        let found = archive::digest(&file).await?;
        if found.size != entry.size || found.sha256 != entry.sha256 {
            return Err(StepError::new(format!(
                "archive {} is damaged: {} bytes with SHA-256 {}, but the manifest says {} bytes with {}: nothing was imported",
                file.display(),
                found.size,
                found.sha256,
                entry.size,
                entry.sha256
            )));
        }
        if target.exists().await? {
            return Err(StepError::new(format!(
                "{target} exists already: an import never overwrites a filesystem; nothing was imported"
            )));
        }
        // A btrfs receive leaves the archive's snapshot as `<path>@<snapshot>`: one there
        // already (left by the filesystem that was at the path) is not overwritten either.
        if matches!(target.kind, FsKind::Btrfs { .. })
            && target.has_snapshot(&entry.snapshot).await?
        {
            return Err(StepError::new(format!(
                "{target} has a leftover snapshot {} (nothing is overwritten): remove it first; nothing was imported",
                entry.snapshot
            )));
        }
        incoming.push(Incoming { entry, target });
    }
    Ok(incoming)
}

/// What `import-check` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportCheck {
    /// Locations of the filesystems to create, all absent.
    pub targets: Vec<String>,
}

impl Output for ImportCheck {
    const STEP: &'static str = "import-check";
}

/// What `import-receive` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReceived {
    /// Locations of the filesystems created.
    pub created: Vec<String>,
}

impl Output for ImportReceived {
    const STEP: &'static str = "import-receive";
}

/// The import run's steps.
pub(super) fn import_steps() -> Vec<std::sync::Arc<dyn Step<RunEnv>>> {
    vec![
        std::sync::Arc::new(ImportCheckStep),
        std::sync::Arc::new(ImportReceiveStep),
    ]
}

struct ImportCheckStep;

impl Step<RunEnv> for ImportCheckStep {
    fn name(&self) -> &'static str {
        ImportCheck::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let dir = &request(cx.env)?.dir;
            let incoming = check_import(cx.env.plan(cx.instance)?, dir).await?;
            ImportCheck {
                targets: incoming.iter().map(|i| i.target.kind.location()).collect(),
            }
            .record()
        })
    }

    fn undo<'a>(&'a self, _: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The manifest's entries and their targets, without the checks (they were made by
/// `import-check`; the targets may now exist, made by this run).
fn incoming(env: &RunEnv, instance: &str) -> Result<Vec<Incoming>, StepError> {
    let dir = &request(env)?.dir;
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| StepError::new(format!("{}: {e}", path.display())))?;
    let manifest = Manifest::parse(&text, &path.display().to_string()).map_err(StepError::new)?;
    let plan = env.plan(instance)?;
    manifest
        .filesystems
        .into_iter()
        .map(|entry| {
            let fs = plan
                .filesystems
                .iter()
                .find(|f| f.id == entry.id)
                .ok_or_else(|| StepError::new(format!("`{}` is not in the config", entry.id)))?;
            Ok(Incoming {
                target: fs.storage(),
                entry,
            })
        })
        .collect()
}

struct ImportReceiveStep;

impl Step<RunEnv> for ImportReceiveStep {
    fn name(&self) -> &'static str {
        ImportReceived::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let check: ImportCheck = cx.outputs.of()?;
            let dir = &request(cx.env)?.dir;
            let tag = journal::short_id(&cx.run);
            let mut created = Vec::new();
            for i in incoming(cx.env, cx.instance)? {
                let location = i.target.kind.location();
                if !check.targets.contains(&location) {
                    return Err(StepError::new(format!(
                        "{} was not checked by import-check",
                        i.target
                    )));
                }
                // Absent at import-check: there now, it is what this run received.
                if !i.target.exists().await? {
                    archive::receive(
                        &i.target,
                        &i.entry.snapshot,
                        &dir.join(&i.entry.file),
                        i.entry.size,
                        &tag,
                    )
                    .await?;
                }
                archive::clean_staging(&i.target, &tag).await?;
                created.push(location);
            }
            ImportReceived { created }.record()
        })
    }

    /// Nothing is removed: what was received is the instance's data (an import run is not
    /// undoable, see `RunKind::not_undoable_because`); refused should anything ask.
    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            Err(StepError::new(format!(
                "the filesystems imported for {} are its data: an import is not undone \
                 (`reroot destroy` removes them, when asked)",
                cx.instance
            )))
        })
    }
}
