//! `reroot instance info CONFIG` and `reroot instance addresses CONFIG...`: read-only views
//! of instances (see `view`).

use std::process::ExitCode;

use clap::Subcommand;

use super::config_cmd::ConfigFileArgs;
use super::{connect, run_cmd, CliError, Global};
use crate::run::daemons;
use crate::view::{self, Addresses};

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// One instance as it is now: status, the template and run that built its root, profiles,
    /// devices, the config's filesystems (host directory, size, devices on each) and the runs
    /// that touched it.
    Info(ConfigFileArgs),
    /// Each instance's network addresses (the loopback left out).
    Addresses(ConfigFileArgs),
}

pub async fn run(command: InstanceCommand, global: &Global) -> Result<ExitCode, CliError> {
    match command {
        InstanceCommand::Info(config) => info(config, global).await,
        InstanceCommand::Addresses(config) => addresses(config, global).await,
    }
}

async fn info(config: ConfigFileArgs, global: &Global) -> Result<ExitCode, CliError> {
    if config.files.len() != 1 {
        return Err("instance info takes one config file".into());
    }
    let plans = run_cmd::load_plans(&config, global)?;
    let daemons = daemons::connect(connect(global).await?, &plans).await?;
    let plan = &plans[0];
    let lxd = daemons.client(plan)?;
    let info = view::instance_info(&lxd, plan, &global.journal).await?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print!("{}", info.text());
    }
    Ok(ExitCode::SUCCESS)
}

async fn addresses(config: ConfigFileArgs, global: &Global) -> Result<ExitCode, CliError> {
    let plans = run_cmd::load_plans(&config, global)?;
    let daemons = daemons::connect(connect(global).await?, &plans).await?;
    let mut all = Vec::new();
    for plan in &plans {
        let lxd = daemons.client(plan)?;
        all.push(view::addresses(&lxd, &plan.name).await?);
    }
    if global.json {
        let doc = serde_json::json!({ "schema": view::ADDRESSES, "instances": all });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", Addresses::table(&all));
    }
    Ok(ExitCode::SUCCESS)
}
