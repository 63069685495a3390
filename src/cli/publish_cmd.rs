//! `reroot publish CONFIG [-s SNAPSHOT] --alias NAME`: publishes a snapshot of an instance's
//! root (a template's `copy`) as an image, as a journaled run of one step (see
//! `steps::publish`): what lxops users do with `incus publish TEMPLATE/SNAPSHOT --alias NAME`,
//! resumable after a crash, and undone by deleting the image it made.

use std::process::ExitCode;

use clap::Args;

use super::config_cmd::ConfigFileArgs;
use super::run_cmd::{connect_plans, load_plans, start_run};
use super::{CliError, Global, WaitArgs};
use crate::engine::Limits;
use crate::run::spec::RunSpec;
use crate::steps::{publish, PublishRequest, RunKind};

/// `reroot publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub config: ConfigFileArgs,
    /// The snapshot of the instance's root to publish (default: the config's `snapshot:`).
    #[arg(short = 's', long = "snapshot", value_name = "NAME")]
    pub snapshot: Option<String>,
    /// The alias of the new image (what other configs name as `image:`).
    #[arg(long, value_name = "NAME")]
    pub alias: String,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Runs `reroot publish`.
pub async fn run(args: PublishArgs, global: &Global) -> Result<ExitCode, CliError> {
    let global = &global.waiting(args.wait);
    let alias = args.alias.trim();
    if alias.is_empty() || alias.chars().any(char::is_whitespace) {
        return Err(format!("--alias `{}`: not a valid image alias", args.alias).into());
    }
    let plans = load_plans(&args.config, global)?;
    let [plan] = plans.as_slice() else {
        return Err(format!(
            "publish takes one config (one image, one alias), not {}",
            plans.len()
        )
        .into());
    };
    let Some(snapshot) = args
        .snapshot
        .clone()
        .or_else(|| plan.final_snapshot.clone())
    else {
        return Err(format!(
            "{}: give -s SNAPSHOT (the config names no `snapshot:`)",
            args.config.files[0].display()
        )
        .into());
    };
    crate::storage::validate_snapshot_name(&snapshot)?;
    let request = PublishRequest {
        snapshot,
        alias: alias.to_string(),
    };
    let daemons = connect_plans(global, &plans).await?;
    publish::precheck(&daemons.client(plan)?, &plan.name, &request).await?;
    let mut spec = RunSpec::new(RunKind::Publish, plans, Limits::without_budget(1));
    spec.publish = Some(request);
    start_run(global, daemons, spec).await
}
