//! `reroot delete CONFIG...`, `reroot destroy CONFIG...` and `reroot rename CONFIG NEW`:
//! journaled runs of the removal steps (see `steps::removal`) and of the rename steps (see
//! `steps::rename_instance`). `delete` removes the instance and its device profile and keeps
//! every filesystem; `destroy` also removes the filesystems marked `destroy: true`, and asks
//! first; `rename` moves them with the instance. All three refuse an instance that is not
//! stopped.

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

/// `reroot rename`.
#[derive(Debug, Args)]
pub struct RenameArgs {
    /// The instance's config file (`#lxdops` or `#lxops-v1`).
    #[arg(value_name = "CONFIG")]
    pub config: std::path::PathBuf,
    /// The new name.
    #[arg(value_name = "NEW")]
    pub new_name: String,
    /// The instance's current name; default: the config file's name without extension.
    #[arg(long)]
    pub name: Option<String>,
    /// Set a property: -P key=value (repeatable), as for `rebuild`.
    #[arg(short = 'P', value_name = "KEY=VALUE")]
    pub property: Vec<String>,
    /// A global property file that wins over ~/.config/reroot/properties.yaml and properties.d/.
    #[arg(long = "properties", value_name = "FILE")]
    pub properties_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Runs `reroot rename CONFIG NEW`: the config resolved under its name and again under the new
/// one; every filesystem whose location follows the name moves with the instance and its disk
/// devices (see `steps::rename_instance`). A journaled run, resumable and undoable. Checked
/// before the run is recorded: a running instance, a taken name, a filesystem in the way are
/// refused, changing nothing.
pub async fn rename(args: RenameArgs, global: &Global) -> Result<ExitCode, CliError> {
    let global = &global.waiting(args.wait);
    crate::config::check_instance_name(&args.new_name)
        .map_err(|e| format!("rename: the new name {:?}: {e}", args.new_name))?;
    let config = |name: Option<String>| ConfigFileArgs {
        name,
        property: args.property.clone(),
        properties_file: args.properties_file.clone(),
        files: vec![args.config.clone()],
    };
    let old = load_plans(&config(args.name.clone()), global)?;
    let new = load_plans(&config(Some(args.new_name.clone())), global)?;
    let (Some(old), Some(new)) = (old.into_iter().next(), new.into_iter().next()) else {
        return Err(format!("{}: no instance", args.config.display()).into());
    };
    if old.name == new.name {
        return Err(format!("instance {} has that name already: nothing to do", old.name).into());
    }
    if old.remote != new.remote {
        return Err(format!(
            "{}: the new name resolves to another remote: a rename does not move an instance \
             between daemons",
            args.config.display()
        )
        .into());
    }
    let daemons = connect_plans(global, std::slice::from_ref(&old)).await?;
    let check = crate::steps::rename_instance::check(&daemons.client(&old)?, &old, &new).await?;
    for m in &check.moves {
        eprintln!("reroot: {}: {} -> {}", m.id, m.from, m.to);
    }
    let mut spec = RunSpec::new(RunKind::Rename, vec![old], Limits::without_budget(1));
    spec.rename_to = Some(new);
    let code = start_run(global, daemons, spec).await?;
    if code == ExitCode::SUCCESS {
        eprintln!(
            "reroot: the config {} still names the instance by its file name: pass --name {} \
             to later commands, or rename the file to {}.yaml",
            args.config.display(),
            args.new_name,
            args.new_name
        );
    }
    Ok(code)
}
