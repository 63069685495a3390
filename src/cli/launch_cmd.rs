//! `reroot launch` and `reroot configure`, the two halves of lxdops' launch as commands of
//! their own, for the scripts written for it.

use std::process::ExitCode;

use clap::Args;

use super::config_cmd::ConfigFileArgs;
use super::run_cmd::{self, RebuildArgs};
use super::{CliError, Global, WaitArgs};
use crate::config;
use crate::engine::{Limits, OnFailure};
use crate::run::{configure, daemons};

/// `reroot launch`: the options of `rebuild` that mean something for an instance that does
/// not exist yet.
#[derive(Debug, Args)]
pub struct LaunchArgs {
    #[command(flatten)]
    pub config: ConfigFileArgs,
    /// How many instances to launch at once, on each daemon.
    #[arg(long, default_value_t = Limits::default().parallel)]
    pub parallel: usize,
    /// How many instances may fail before no new instance starts (those under way finish).
    #[arg(long, default_value_t = Limits::default().max_failures)]
    pub max_failures: usize,
    /// Canaries: launch the first N instances (in the order given) first, and start the
    /// others only if all N went through.
    #[arg(long, value_name = "N", default_value_t = Limits::default().canaries)]
    pub canaries: usize,
    /// How many times a failed step is tried again before the instance is given up.
    #[arg(long, default_value_t = Limits::default().retries)]
    pub retries: u32,
    /// Say what would happen to each instance and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `reroot launch CONFIG...`: a rebuild run (the pipeline launches an instance that does not
/// exist), refused before any run is recorded if one of the instances exists.
pub async fn launch(args: LaunchArgs, global: &Global) -> Result<ExitCode, CliError> {
    let rebuild = RebuildArgs {
        config: args.config,
        parallel: args.parallel,
        max_failures: args.max_failures,
        canaries: args.canaries,
        max_down: Limits::default().max_down,
        stop_timeout: None,
        retries: args.retries,
        on_failure: OnFailure::default(),
        dry_run: args.dry_run,
        // Nothing exists, so nothing was built by an earlier run, and nothing to prune.
        force: false,
        prune_previous: false,
        wait: args.wait,
        launch: true,
    };
    run_cmd::rebuild(rebuild, global).await
}

/// `reroot configure`.
#[derive(Debug, Args)]
pub struct ConfigureArgs {
    #[command(flatten)]
    pub config: ConfigFileArgs,
}

/// `reroot configure CONFIG...`: each config's cloud-config files applied to its running
/// instance, one config after the other, stopping at the first failure (as lxdops does).
pub async fn configure(args: ConfigureArgs, global: &Global) -> Result<ExitCode, CliError> {
    // Loading checks the cloud-config files too: a bad file changes nothing anywhere.
    let resolved = config::load(&args.config.files, &args.config.load_options(global)?)?;
    let default = super::connect(global).await?;
    let mut all = Vec::new();
    for r in &resolved {
        let lxd = match &r.remote {
            None => default.clone(),
            Some(remote) => daemons::connect_remote(&r.name, remote).await?,
        };
        let lxd = lxd.with_project(&r.project);
        let done = configure::configure(&lxd, &r.name, &r.cloud_config_files, r.ostype)
            .await
            .map_err(|e| format!("{}: {e}", r.config_file.display()))?;
        if !global.json {
            for a in &done.actions {
                let mark = match (a.command, a.changed) {
                    (true, _) => "ran",
                    (false, true) => "changed",
                    (false, false) => "ok",
                };
                println!(
                    "{}: {}: {}: {mark}",
                    done.instance,
                    a.file.display(),
                    a.what
                );
            }
            println!("{}", done.summary());
        }
        all.push(done);
    }
    if global.json {
        let doc = serde_json::json!({
            "schema": "reroot.configure/1",
            "instances": all.iter().map(|c| serde_json::json!({
                "instance": c.instance,
                "changed": c.changed(),
                "commands": c.commands(),
                "actions": c.actions,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(ExitCode::SUCCESS)
}
