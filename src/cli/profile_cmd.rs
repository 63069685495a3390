//! `reroot profile list|diff|export|import`: the profiles configs want against the daemon's
//! (see `view::profiles`), and daemon profiles to and from YAML (see `run::profile_io`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::config_cmd::ConfigFileArgs;
use super::{connect, run_cmd, CliError, Global, WaitArgs};
use crate::engine::Limits;
use crate::run::spec::RunSpec;
use crate::run::{daemons, profile_io};
use crate::steps::{profile_apply, RunKind};
use crate::view::{self, InstanceProfiles};

/// The exit status of `profile diff` when some instance drifts (1 is any error).
pub const DRIFT_EXIT: u8 = 3;

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Per instance: the profiles its config wants in order (and its device profile), whether
    /// the daemon has each, and the instance's profiles now.
    List(ConfigFileArgs),
    /// What differs between the configs' profiles and the instances': missing, unnamed or
    /// reordered profiles, device-profile devices. Exit status 0: no drift, 3: drift, 1: error.
    Diff(ConfigFileArgs),
    /// Make each instance's profile list and device profile what its config says, as a
    /// journaled run (resumable, undoable); refused, nothing changed, when a named profile
    /// does not exist. Never touches filesystems.
    Apply(ApplyArgs),
    /// The named daemon profiles (description, config, devices) as YAML.
    Export(ExportArgs),
    /// Create the profiles of a YAML file (as `export` writes it) that do not exist; one that
    /// exists with other contents is refused, nothing changed, unless --replace.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub config: ConfigFileArgs,
    /// Only show the drift that would be fixed; no run.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Profile names.
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// Write to this file instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The YAML file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Overwrite existing profiles whose contents differ (their contents before are first kept
    /// in FILE's directory, as `<stem>.replaced-<time>.yaml`).
    #[arg(long)]
    pub replace: bool,
    /// Only say what would be done.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(command: ProfileCommand, global: &Global) -> Result<ExitCode, CliError> {
    match command {
        ProfileCommand::List(config) => list(config, global).await,
        ProfileCommand::Diff(config) => diff(config, global).await,
        ProfileCommand::Apply(args) => apply(args, global).await,
        ProfileCommand::Export(args) => export(args, global).await,
        ProfileCommand::Import(args) => import(args, global).await,
    }
}

async fn list(config: ConfigFileArgs, global: &Global) -> Result<ExitCode, CliError> {
    let plans = run_cmd::load_plans(&config, global)?;
    let daemons = daemons::connect(connect(global).await?, &plans).await?;
    let mut all = Vec::new();
    for plan in &plans {
        all.push(view::instance_profiles(&daemons.client(plan)?, plan).await?);
    }
    if global.json {
        let doc = serde_json::json!({ "schema": view::PROFILE_LIST, "instances": all });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", InstanceProfiles::table(&all));
    }
    Ok(ExitCode::SUCCESS)
}

async fn diff(config: ConfigFileArgs, global: &Global) -> Result<ExitCode, CliError> {
    let plans = run_cmd::load_plans(&config, global)?;
    let daemons = daemons::connect(connect(global).await?, &plans).await?;
    let mut all = Vec::new();
    for plan in &plans {
        all.push(view::profile_diff(&daemons.client(plan)?, plan).await?);
    }
    let drift = all.iter().any(|d| d.drift());
    if global.json {
        let doc = serde_json::json!({
            "schema": view::PROFILE_DIFF,
            "drift": drift,
            "instances": all,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for d in &all {
            print!("{}", d.text());
        }
    }
    Ok(if drift {
        ExitCode::from(DRIFT_EXIT)
    } else {
        ExitCode::SUCCESS
    })
}

async fn apply(args: ApplyArgs, global: &Global) -> Result<ExitCode, CliError> {
    let global = &global.waiting(args.wait);
    let plans = run_cmd::load_plans(&args.config, global)?;
    let daemons = run_cmd::connect_plans(global, &plans).await?;
    // Every refusal before the run is recorded: a missing profile leaves no failed run.
    for plan in &plans {
        profile_apply::precheck(&daemons.client(plan)?, plan).await?;
    }
    if args.dry_run {
        let mut all = Vec::new();
        for plan in &plans {
            let d = view::profile_diff(&daemons.client(plan)?, plan).await?;
            all.push(view::ApplyPlan::of(plan, d));
        }
        if global.json {
            let doc = serde_json::json!({
                "schema": view::PROFILE_APPLY_PLAN,
                "instances": all,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        } else {
            for a in &all {
                print!("{}", a.diff.text());
                if a.changes {
                    println!(
                        "{}: would set profiles {}",
                        a.instance,
                        a.profiles.join(",")
                    );
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let n = plans.len();
    let spec = RunSpec::new(RunKind::ProfileApply, plans, Limits::without_budget(n));
    run_cmd::start_run(global, daemons, spec).await
}

async fn export(args: ExportArgs, global: &Global) -> Result<ExitCode, CliError> {
    let lxd = connect(global).await?;
    let yaml = profile_io::export(&lxd, &args.names).await?;
    match &args.output {
        Some(path) => std::fs::write(path, yaml).map_err(|e| format!("{}: {e}", path.display()))?,
        None => print!("{yaml}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The `--json` schema of `profile import` (docs/json.md).
pub const PROFILE_IMPORT: &str = "reroot.profile-import/1";

async fn import(args: ImportArgs, global: &Global) -> Result<ExitCode, CliError> {
    let doc = profile_io::read(&args.file)?;
    let lxd = connect(global).await?;
    let file = args.file.display().to_string();
    let keep_at = profile_io::kept_path(&args.file, std::time::SystemTime::now());
    let done = profile_io::import(&lxd, &file, &doc, args.replace, args.dry_run, &keep_at).await?;
    if global.json {
        let doc = serde_json::json!({
            "schema": PROFILE_IMPORT,
            "dry_run": args.dry_run,
            "actions": done.actions,
            "kept": done.kept,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let verb = if args.dry_run { "would " } else { "" };
        if let Some(kept) = &done.kept {
            println!(
                "the replaced profiles, as they were: {} (`reroot profile import --replace` of it puts them back)",
                kept.display()
            );
        }
        for a in &done.actions {
            let what = match a.action {
                "create" => "create",
                "replace" => "replace",
                _ => "leave (identical)",
            };
            println!("{verb}{what} profile {}", a.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}
