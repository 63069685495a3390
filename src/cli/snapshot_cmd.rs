//! `reroot snapshot -s NAME CONFIG...`: snapshots each instance's root (an LXD snapshot, what
//! a template's `origin` names) and its non-transient ZFS and btrfs filesystems. An existing
//! snapshot of that name is left as it is, so running it twice is safe.

use std::process::ExitCode;

use clap::Args;

use super::config_cmd::ConfigFileArgs;
use super::{CliError, Global};
use crate::config;
use crate::lxd::{self, OptionalExt};
use crate::steps::InstancePlan;
use crate::storage::SnapshotOutcome;

/// `reroot snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub config: ConfigFileArgs,
    /// The snapshot name.
    #[arg(short = 's', long = "snapshot", value_name = "NAME")]
    pub snapshot: String,
    /// Only the instance's root, not its filesystems.
    #[arg(long)]
    pub root_only: bool,
}

/// Runs `reroot snapshot`.
pub async fn run(args: SnapshotArgs, global: &Global) -> Result<ExitCode, CliError> {
    crate::storage::validate_snapshot_name(&args.snapshot)?;
    let resolved = config::load(&args.config.files, &args.config.load_options(global)?)?;
    let plans = resolved
        .iter()
        .map(InstancePlan::from_resolved)
        .collect::<Result<Vec<_>, _>>()?;
    let lxd = lxd::Client::connect(lxd::ConnectOptions {
        socket: global.socket.clone(),
        project: global.project.clone(),
        ..lxd::ConnectOptions::default()
    })
    .await?;
    for plan in &plans {
        let client = lxd.with_project(&plan.project);
        let name = &plan.name;
        if client
            .get_snapshot(name, &args.snapshot)
            .await
            .optional()?
            .is_some()
        {
            println!("{name}/{}: already there", args.snapshot);
        } else {
            client.create_snapshot(name, &args.snapshot, None).await?;
            println!("{name}/{}: taken", args.snapshot);
        }
        if args.root_only {
            continue;
        }
        for fs in &plan.filesystems {
            let fs = crate::steps::storage_filesystem(fs);
            if !fs.supports_snapshots() || !fs.exists().await? {
                continue;
            }
            let what = match fs.snapshot(&args.snapshot).await? {
                SnapshotOutcome::Taken => "taken",
                SnapshotOutcome::AlreadyExisted => "already there",
                SnapshotOutcome::Skipped(_) => continue,
            };
            println!("{name}: {}@{}: {what}", fs.kind.location(), args.snapshot);
        }
    }
    Ok(ExitCode::SUCCESS)
}
