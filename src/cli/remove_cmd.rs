//! `reroot delete CONFIG...` and `reroot destroy CONFIG...`: journaled runs of the removal
//! steps (see `steps::removal`). `delete` removes the instance and its device profile and keeps
//! every filesystem; `destroy` also removes the filesystems marked `destroy: true`, and asks
//! first. Both refuse an instance that is not stopped.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::Args;

use super::config_cmd::ConfigFileArgs;
use super::run_cmd::{connect_plans, load_plans, start_run};
use super::{CliError, Global, WaitArgs};
use crate::engine::Limits;
use crate::run::spec::RunSpec;
use crate::steps::Daemons;
use crate::steps::{InstancePlan, RunKind};

/// `reroot delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub config: ConfigFileArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `reroot destroy`.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub config: ConfigFileArgs,
    /// Do not ask: destroy what the configs mark `destroy: true` (for scripts).
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Refuses, before any question is asked or any run recorded, an instance that is not stopped.
/// (The `check` step looks again when the run starts, for one started meanwhile.)
async fn refuse_running(daemons: &Daemons, plans: &[InstancePlan]) -> Result<(), CliError> {
    for plan in plans {
        let client = daemons.client(plan)?;
        if let Err(e) = crate::steps::removal::check_stopped(&client, &plan.name).await {
            return Err(format!("{e}; nothing was changed").into());
        }
    }
    Ok(())
}

async fn remove(
    kind: RunKind,
    plans: &[InstancePlan],
    global: &Global,
    daemons: Daemons,
) -> Result<ExitCode, CliError> {
    let spec = RunSpec::new(kind, plans.to_vec(), Limits::without_budget(1));
    let code = start_run(global, daemons, spec).await?;
    if code != ExitCode::SUCCESS {
        return Ok(code);
    }
    for plan in plans {
        let kept: Vec<String> = plan
            .filesystems
            .iter()
            .filter(|fs| kind != RunKind::Destroy || !fs.destroy)
            .map(|fs| fs.storage().kind.location())
            .collect();
        if !kept.is_empty() {
            let line = format!("{}: filesystems kept: {}", plan.name, kept.join(", "));
            // With --json, stdout is the event stream: one JSON object per line, nothing else.
            if global.json {
                eprintln!("reroot: {line}");
            } else {
                println!("{line}");
            }
        }
    }
    Ok(code)
}

/// Runs `reroot delete`.
pub async fn delete(args: DeleteArgs, global: &Global) -> Result<ExitCode, CliError> {
    let global = &global.waiting(args.wait);
    let plans = load_plans(&args.config, global)?;
    let daemons = connect_plans(global, &plans).await?;
    refuse_running(&daemons, &plans).await?;
    remove(RunKind::Delete, &plans, global, daemons).await
}

/// Runs `reroot destroy`, after the user confirmed it (or `--yes`).
pub async fn destroy(args: DestroyArgs, global: &Global) -> Result<ExitCode, CliError> {
    let global = &global.waiting(args.wait);
    let plans = load_plans(&args.config, global)?;
    let daemons = connect_plans(global, &plans).await?;
    refuse_running(&daemons, &plans).await?;
    if !args.yes {
        let mut listing = String::new();
        for plan in &plans {
            listing.push_str(&format!(
                "  instance {} and its profile {}\n",
                plan.name, plan.device_profile
            ));
            for fs in plan.filesystems.iter().filter(|fs| fs.destroy) {
                let fs = fs.storage();
                listing.push_str(&format!("  {} with all its data\n", fs.kind.location()));
            }
        }
        if !std::io::stdin().is_terminal() {
            return Err(format!(
                "destroy would remove:\n{listing}and needs confirmation: run it in a terminal, \
                 or pass --yes"
            )
            .into());
        }
        eprint!("reroot destroy will remove:\n{listing}Type `destroy` to go on: ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "destroy" {
            return Err("not confirmed: nothing was changed".into());
        }
    }
    remove(RunKind::Destroy, &plans, global, daemons).await
}
