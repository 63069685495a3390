//! `reroot copy-filesystems CONFIG`: the filesystems of a source instance sent into those of
//! the instance CONFIG describes, as a journaled run (see `steps::copy_fs`). The same checks
//! run read-only first, so a refusal records no run and changes nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::config_cmd::ConfigFileArgs;
use super::run_cmd::{connect_plans, load_plans, start_run};
use super::{CliError, Global, WaitArgs};
use crate::engine::Limits;
use crate::run::spec::RunSpec;
use crate::steps::copy_fs::{self, CopyRequest};
use crate::steps::{InstancePlan, RunKind};
use crate::storage::host::Host;

/// `reroot copy-filesystems`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The config of the instance whose filesystems are the targets.
    #[arg(value_name = "CONFIG")]
    pub config: PathBuf,
    /// The target instance's name; default: the config file's name without extension.
    #[arg(long)]
    pub name: Option<String>,
    /// The config that says where the source filesystems are (default: CONFIG, for a copy to
    /// another host or of another instance).
    #[arg(long, value_name = "FILE")]
    pub from_config: Option<PathBuf>,
    /// The source instance's name; default: the source config's file name.
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
    /// The source filesystems are on this host, reached with ssh ([user@]host).
    #[arg(long, value_name = "HOST")]
    pub from_host: Option<String>,
    /// The targets are on this host, reached with ssh ([user@]host).
    #[arg(long, value_name = "HOST")]
    pub to_host: Option<String>,
    /// An ssh -o option for both hosts (repeatable): Port=2222, IdentityFile=PATH.
    #[arg(long = "ssh-option", value_name = "KEY=VALUE")]
    pub ssh_option: Vec<String>,
    /// Copy this existing snapshot of the sources (default: take a new one,
    /// `reroot-copy-<run>`, which stays as the base of the next incremental copy).
    #[arg(short = 's', long = "snapshot", value_name = "NAME")]
    pub snapshot: Option<String>,
    /// Say what each filesystem's copy would be (full, incremental, up to date) and change
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Set a property: -P key=value (repeatable), for both configs.
    #[arg(short = 'P', value_name = "KEY=VALUE")]
    pub property: Vec<String>,
    /// A global property file that wins over ~/.config/reroot/properties.yaml and properties.d/.
    #[arg(long = "properties", value_name = "FILE")]
    pub properties_file: Option<PathBuf>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

fn plan_of(
    args: &CopyArgs,
    file: &std::path::Path,
    name: Option<String>,
    global: &Global,
) -> Result<InstancePlan, CliError> {
    let files = ConfigFileArgs {
        name,
        property: args.property.clone(),
        properties_file: args.properties_file.clone(),
        files: vec![file.to_path_buf()],
    };
    load_plans(&files, global)?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{}: no instance", file.display()).into())
}

fn host(destination: &Option<String>, options: &[String]) -> Result<Host, CliError> {
    match destination {
        None => Ok(Host::local()),
        Some(d) => Ok(Host::ssh(d, options.to_vec())?),
    }
}

/// Runs `reroot copy-filesystems`.
pub async fn copy(args: CopyArgs, global: &Global) -> Result<ExitCode, CliError> {
    let global = &global.waiting(args.wait);
    if let Some(s) = &args.snapshot {
        crate::storage::validate_snapshot_name(s)?;
    }
    let to = plan_of(&args, &args.config, args.name.clone(), global)?;
    let from_file = args.from_config.as_deref().unwrap_or(&args.config);
    let from = plan_of(&args, from_file, args.from.clone(), global)?;
    let request = CopyRequest {
        from,
        snapshot: args.snapshot.clone(),
        from_host: host(&args.from_host, &args.ssh_option)?,
        to_host: host(&args.to_host, &args.ssh_option)?,
    };
    let daemons = connect_plans(global, std::slice::from_ref(&to)).await?;
    // The run's own snapshot is named after the run, not known yet: the check reads the
    // sources as if it were to be taken.
    let probe = args.snapshot.as_deref().unwrap_or("reroot-copy-check");
    let lxd = if request.to_host.is_local() {
        Some(daemons.client(&to)?)
    } else {
        None
    };
    let planned = copy_fs::check(lxd.as_ref(), &to, &request, probe).await?;
    for p in &planned {
        eprintln!(
            "reroot: {}: {} ({}) -> {} ({}): {}",
            p.id,
            p.source,
            request.from_host.describe(),
            p.target,
            request.to_host.describe(),
            p.mode.describe()
        );
    }
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let mut spec = RunSpec::new(
        RunKind::CopyFilesystems,
        vec![to],
        Limits::without_budget(1),
    );
    spec.copy = Some(request);
    start_run(global, daemons, spec).await
}
