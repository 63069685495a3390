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
    /// The snapshot name (default: the time now, UTC, as YYYYMMDDhhmmss, as lxdops names them).
    #[arg(
        short = 's',
        long = "snapshot",
        value_name = "NAME",
        conflicts_with = "delete"
    )]
    pub snapshot: Option<String>,
    /// Delete the snapshots of this name (of the roots and the filesystems) instead of taking
    /// them: a journaled run that is resumed, never undone.
    #[arg(long, value_name = "NAME")]
    pub delete: Option<String>,
    /// Only the instance's root, not its filesystems.
    #[arg(long, conflicts_with = "filesystems_only")]
    pub root_only: bool,
    /// Only the instance's filesystems, not its root.
    #[arg(long)]
    pub filesystems_only: bool,
    /// How many instances to snapshot at once.
    #[arg(long, default_value_t = Limits::default().parallel)]
    pub parallel: usize,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Runs `reroot snapshot`: a journaled run (resumable, undoable) of the snapshot steps.
pub async fn run(args: SnapshotArgs, global: &Global) -> Result<ExitCode, CliError> {
    let global = &global.waiting(args.wait);
    let (kind, name) = match (&args.delete, &args.snapshot) {
        (Some(name), _) => (RunKind::DeleteSnapshot, name.clone()),
        (None, Some(name)) => (RunKind::Snapshot, name.clone()),
        (None, None) => {
            let name = timestamp_name(std::time::SystemTime::now());
            eprintln!("reroot: snapshot {name}");
            (RunKind::Snapshot, name)
        }
    };
    crate::storage::validate_snapshot_name(&name)?;
    let plans = load_plans(&args.config, global)?;
    let request = SnapshotRequest {
        name,
        root_only: args.root_only,
        filesystems_only: args.filesystems_only,
    };
    let mut spec = RunSpec::new(kind, plans, Limits::without_budget(args.parallel));
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

/// The default snapshot name: the time, UTC, as `YYYYMMDDhhmmss` (lxdops's default, which
/// sorts as it reads).
fn timestamp_name(at: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::timestamp_name;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn the_default_snapshot_name_is_the_utc_time_as_digits() {
        // 2026-12-01T07:05:09Z
        let at = UNIX_EPOCH + Duration::from_secs(1_796_108_709);
        assert_eq!(timestamp_name(at), "20261201070509");
        assert!(crate::storage::validate_snapshot_name(&timestamp_name(at)).is_ok());
    }
}
