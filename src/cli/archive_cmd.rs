//! `reroot export CONFIG DIR` and `reroot import CONFIG DIR`: an instance's external
//! filesystems as archive files with a manifest, and back, each as a journaled run (see
//! `steps::archive`). Both check everything read-only first, so a refusal records no run and
//! changes nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::config_cmd::ConfigFileArgs;
use super::run_cmd::{connect_plans, load_plans, start_run};
use super::{CliError, Global, WaitArgs};
use crate::engine::Limits;
use crate::run::spec::RunSpec;
use crate::steps::archive::{self, ArchiveRequest};
use crate::steps::{InstancePlan, RunKind};

/// `reroot export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The instance's config file.
    #[arg(value_name = "CONFIG")]
    pub config: PathBuf,
    /// The directory to write (absent or empty: nothing in it is ever overwritten).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Archive this existing snapshot of the ZFS and btrfs filesystems (default: take a new
    /// one, `reroot-export-<run>`). Plain directories have no snapshot: their live content is
    /// archived, consistent only if the instance is stopped.
    #[arg(short = 's', long = "snapshot", value_name = "NAME")]
    pub snapshot: Option<String>,
    /// List the files that would be written and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub common: ArchiveCommonArgs,
}

/// `reroot import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The instance's config file: its filesystems are created from the archives.
    #[arg(value_name = "CONFIG")]
    pub config: PathBuf,
    /// The export directory (with its manifest.json).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Verify the archives, list the filesystems that would be created and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub common: ArchiveCommonArgs,
}

/// The config flags of `export` and `import`.
#[derive(Debug, Args)]
pub struct ArchiveCommonArgs {
    /// Instance name; default: the config file's name without extension.
    #[arg(long)]
    pub name: Option<String>,
    /// Set a property: -P key=value (repeatable), as for `rebuild`.
    #[arg(short = 'P', value_name = "KEY=VALUE")]
    pub property: Vec<String>,
    /// A global property file that wins over ~/.config/reroot/properties.yaml and properties.d/.
    #[arg(long = "properties", value_name = "FILE")]
    pub properties_file: Option<PathBuf>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

fn one_plan(
    config: &std::path::Path,
    common: &ArchiveCommonArgs,
    global: &Global,
) -> Result<InstancePlan, CliError> {
    let args = ConfigFileArgs {
        name: common.name.clone(),
        property: common.property.clone(),
        properties_file: common.properties_file.clone(),
        files: vec![config.to_path_buf()],
    };
    load_plans(&args, global)?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{}: no instance", config.display()).into())
}

fn absolute(dir: &std::path::Path) -> Result<PathBuf, CliError> {
    std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()).into())
}

/// Runs `reroot export`.
pub async fn export(args: ExportArgs, global: &Global) -> Result<ExitCode, CliError> {
    let global = &global.waiting(args.common.wait);
    if let Some(s) = &args.snapshot {
        crate::storage::validate_snapshot_name(s)?;
    }
    let plan = one_plan(&args.config, &args.common, global)?;
    let dir = absolute(&args.dir)?;
    // The default snapshot is named after the run, not known yet: only checked absent-or-not.
    let probe = args.snapshot.as_deref().unwrap_or("reroot-export-check");
    archive::check_export(&plan, &dir, probe, args.snapshot.is_some()).await?;
    if args.dry_run {
        let snapshot = args
            .snapshot
            .clone()
            .unwrap_or_else(|| "reroot-export-<run> (taken)".to_string());
        for fs in archive::exported(&plan) {
            let from = if fs.supports_snapshots() {
                format!("snapshot {snapshot}")
            } else {
                "live content (stop the instance for a consistent copy)".to_string()
            };
            println!(
                "{}  <- {} ({from})",
                dir.join(archive::archive_file(&fs)?).display(),
                fs.kind.location()
            );
        }
        println!(
            "{}",
            dir.join(crate::storage::manifest::MANIFEST_FILE).display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let daemons = connect_plans(global, std::slice::from_ref(&plan)).await?;
    let mut spec = RunSpec::new(RunKind::Export, vec![plan], Limits::without_budget(1));
    spec.archive = Some(ArchiveRequest {
        dir,
        snapshot: args.snapshot,
    });
    start_run(global, daemons, spec).await
}

/// Runs `reroot import`.
pub async fn import(args: ImportArgs, global: &Global) -> Result<ExitCode, CliError> {
    let global = &global.waiting(args.common.wait);
    let plan = one_plan(&args.config, &args.common, global)?;
    let dir = absolute(&args.dir)?;
    let incoming = archive::check_import(&plan, &dir).await?;
    if args.dry_run {
        for i in &incoming {
            println!(
                "{}  <- {} ({} bytes, SHA-256 verified)",
                i.target.kind.location(),
                dir.join(&i.entry.file).display(),
                i.entry.size
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let daemons = connect_plans(global, std::slice::from_ref(&plan)).await?;
    let mut spec = RunSpec::new(RunKind::Import, vec![plan], Limits::without_budget(1));
    spec.archive = Some(ArchiveRequest {
        dir,
        snapshot: None,
    });
    start_run(global, daemons, spec).await
}
