//! `reroot snapshot -s NAME CONFIG...`: snapshots each instance's root (an LXD snapshot, what
//! a template's `origin` names) and its non-transient ZFS and btrfs filesystems, as a journaled
//! run (see `steps::named_snapshot`). An existing snapshot of that name is left as it is, so
//! running it twice is safe; `undo` deletes only the snapshots the run took.

use std::process::ExitCode;

use clap::Args;

use super::config_cmd::ConfigFileArgs;
use super::run_cmd::{connect_plans, load_plans, start_run};
use super::{CliError, Global, WaitArgs};
use crate::engine::Limits;
use crate::run::spec::RunSpec;
use crate::steps::{RollbackRequest, RunKind, SnapshotRequest};

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
    /// How many instances to snapshot at once.
    #[arg(long, default_value_t = Limits::default().parallel)]
    pub parallel: usize,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Runs `reroot snapshot`: a journaled run (resumable, undoable) of the snapshot steps.
pub async fn run(args: SnapshotArgs, global: &Global) -> Result<ExitCode, CliError> {
    let global = &global.waiting(args.wait);
    crate::storage::validate_snapshot_name(&args.snapshot)?;
    let plans = load_plans(&args.config, global)?;
    let request = SnapshotRequest {
        name: args.snapshot.clone(),
        root_only: args.root_only,
    };
    let mut spec = RunSpec::new(
        RunKind::Snapshot,
        plans,
        Limits::without_budget(args.parallel),
    );
    spec.snapshot = Some(request);
    let daemons = connect_plans(global, &spec.plans).await?;
    start_run(global, daemons, spec).await
}

/// `reroot rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub config: ConfigFileArgs,
    /// The snapshot to roll back to (as `reroot snapshot -s NAME` took it, or a rebuild's
    /// `reroot-RUN`).
    #[arg(short = 's', long = "snapshot", value_name = "NAME")]
    pub snapshot: String,
    /// Also roll the instance's root back to its LXD snapshot of that name.
    #[arg(long)]
    pub root: bool,
    /// Stop a running instance for the rollback (clean, then forced), and start it again after.
    /// Without it a running instance is refused.
    #[arg(long)]
    pub stop: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Runs `reroot rollback`: a journaled run (resumed, never undone: what a rollback discards
/// is gone) of the rollback steps (see `steps::rollback`). Every instance is checked first
/// (running without `--stop`, a snapshot missing anywhere): one refused changes nothing.
pub async fn rollback(args: RollbackArgs, global: &Global) -> Result<ExitCode, CliError> {
    let global = &global.waiting(args.wait);
    crate::storage::validate_snapshot_name(&args.snapshot)?;
    let plans = load_plans(&args.config, global)?;
    let request = RollbackRequest {
        name: args.snapshot.clone(),
        root: args.root,
        stop: args.stop,
    };
    let daemons = connect_plans(global, &plans).await?;
    for plan in &plans {
        let lxd = daemons.client(plan)?;
        crate::steps::rollback::check(&lxd, plan, &request).await?;
    }
    let mut spec = RunSpec::new(RunKind::Rollback, plans, Limits::without_budget(1));
    spec.rollback = Some(request);
    start_run(global, daemons, spec).await
}
