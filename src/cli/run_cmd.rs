//! `reroot rebuild`, `resume`, `undo` and `prune`: the commands that start or continue a run.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use clap::Args;
use journal::{Journal, Reader, RunId, RunState};

use super::config_cmd::ConfigFileArgs;
use super::{CliError, Global, JournalWait, WaitArgs};
use crate::config;
use crate::engine::{Direction, EngineError, Limits, OnFailure, RunReport};
use crate::lxd;
use crate::progress::{self, Progress};
use crate::report;
use crate::run::pass::Pass;
use crate::run::spec::{self, RunSpec};
use crate::run::start::Origin;
use crate::run::undo::UndoRequest;
use crate::run::{
    daemons, images, launch, lease, prune, resume as resumption, start, undo as undoing,
};
use crate::steps::{forecast, rebuild_pipeline, Daemons, InstancePlan, RunKind};

/// `reroot rebuild`.
#[derive(Debug, Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub config: ConfigFileArgs,
    /// How many instances to rebuild at once, on each daemon (a run over several daemons, whose
    /// configs name their `remote`, has that many on each).
    #[arg(long, default_value_t = Limits::default().parallel)]
    pub parallel: usize,
    /// How many instances may fail before no new instance starts (those under way finish).
    #[arg(long, default_value_t = Limits::default().max_failures)]
    pub max_failures: usize,
    /// Canaries: rebuild the first N instances (in the order given) first, and start the
    /// others only if all N went through.
    #[arg(long, value_name = "N", default_value_t = Limits::default().canaries)]
    pub canaries: usize,
    /// How many instances may be down (between `stop` and `start`) at the same moment, on each
    /// daemon; the others wait with their new root prepared. 0 = as many as --parallel.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_down)]
    pub max_down: usize,
    /// Seconds of clean stop before a forced stop, for every instance (0 = force at once);
    /// default: each config's `stop-timeout`.
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// How many times a failed step is tried again (after 2 s, 4 s, ...) before the instance
    /// is given up; steps are idempotent, so this rides out a busy daemon.
    #[arg(long, default_value_t = Limits::default().retries)]
    pub retries: u32,
    /// What happens to an instance whose step fails while it is down (between `stop` and
    /// `start`): `revert` puts it back on its old root at once; `hold` leaves it stopped, as it
    /// is, for a person to look at.
    #[arg(long, value_name = "POLICY", default_value = "revert")]
    pub on_failure: OnFailure,
    /// Say what would happen to each instance (the preflight checks, read-only, against the
    /// daemon) and change nothing; exits non-zero if the run would fail at preflight.
    #[arg(long)]
    pub dry_run: bool,
    /// Rebuild also the instances already built from the requested source by a run that
    /// succeeded (skipped otherwise).
    #[arg(long)]
    pub force: bool,
    /// Once this run has succeeded, delete the retired roots of the previous succeeded rebuild
    /// of each of its instances (this run's stay, so it can still be undone).
    #[arg(long)]
    pub prune_previous: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
    /// Set by `reroot launch`: refuse, before any run is recorded, an instance that exists.
    #[arg(skip)]
    pub launch: bool,
}

/// `reroot resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run (id or its first characters); default: the only unfinished run.
    pub run: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `reroot undo`.
#[derive(Debug, Args)]
pub struct UndoArgs {
    /// The run (id or its first characters).
    pub run: String,
    /// Only these instances (default: every instance of the run).
    pub instances: Vec<String>,
    /// Also roll the external filesystems back to the snapshots the run took.
    #[arg(long)]
    pub data: bool,
    /// How many instances to undo at once.
    #[arg(long, default_value_t = Limits::default().parallel)]
    pub parallel: usize,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `reroot prune`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).multiple(true)
    .args(["run", "keep", "older_than"]))]
pub struct PruneArgs {
    /// The run (id or its first characters); or none, with --keep and/or --older-than.
    #[arg(conflicts_with_all = ["keep", "older_than"])]
    pub run: Option<String>,
    /// Of every instance, keep the retired roots of its N newest succeeded rebuild runs and
    /// delete those of its older succeeded rebuild runs (failed, unfinished and undone runs are
    /// never touched).
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// Delete the retired roots of succeeded rebuild runs started at least AGE ago (30d, 12h,
    /// 90m); with --keep, except each instance's N newest.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub older_than: Option<std::time::Duration>,
    /// Print what would be deleted and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also delete the filesystem snapshots the run took (`reroot-<run>`), of a succeeded or
    /// an undone run (with --keep/--older-than: of the succeeded runs pruned). The filesystems
    /// themselves are never touched; `undo --data` of that run has nothing to roll back to
    /// afterwards.
    #[arg(long)]
    pub snapshots: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// An age for `--older-than`: `30d`, `12h`, `90m`, `1w 2d`, `0s`.
fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not an age such as 30d, 12h or 90m: {e}"))
}

pub(super) async fn connect(global: &Global) -> Result<lxd::Client, CliError> {
    super::connect(global).await
}

/// Connects to the daemons of `plans`: the one the options name, and each remote a config
/// names; refuses paths on this host for a daemon on another (see `run::daemons`).
pub(super) async fn connect_plans(
    global: &Global,
    plans: &[InstancePlan],
) -> Result<Daemons, CliError> {
    let daemons = daemons::connect(connect(global).await?, plans).await?;
    daemons::refuse_host_paths_elsewhere(plans, &daemons)?;
    Ok(daemons)
}

pub(super) fn open_journal(global: &Global) -> Result<Arc<Journal>, CliError> {
    let dir = &global.journal;
    let opened = match global.wait {
        JournalWait::Fail => Journal::open(dir),
        JournalWait::Wait { timeout } => Journal::open_waiting(dir, timeout, |held| {
            eprintln!("reroot: {}", waiting_for(held));
        }),
    };
    let j = opened.map_err(|e| match (&e, global.wait) {
        (journal::Error::Locked { .. }, JournalWait::Fail) => format!(
            "journal {}: {e} (or pass --wait to wait for it)",
            dir.display()
        ),
        (journal::Error::Locked { .. }, JournalWait::Wait { timeout: Some(t) }) => format!(
            "journal {}: {e}: gave up waiting after --wait-timeout {} s",
            dir.display(),
            t.as_secs()
        ),
        _ => format!("journal {}: {e}", dir.display()),
    })?;
    for note in j.recovery_notes() {
        eprintln!("reroot: journal: {note}");
    }
    Ok(Arc::new(j))
}

/// The line `--wait` prints once: who holds the journal, and that this process waits.
fn waiting_for(held: &journal::Error) -> String {
    match held {
        journal::Error::Locked {
            dir,
            pid,
            run,
            role,
        } => format!(
            "journal {} is in use by {role} process {}{}; waiting until it is free (--wait)",
            dir.display(),
            pid.map_or_else(|| "unknown".to_string(), |p| p.to_string()),
            run.map(|r| format!(" (run {r})")).unwrap_or_default()
        ),
        other => format!("journal: {other}; waiting (--wait)"),
    }
}

fn kind_of(state: &RunState) -> Result<RunKind, CliError> {
    Ok(spec::kind_of(state)?)
}

/// Drives `pass`, showing its progress (see [`crate::progress`]; with `--json` the event
/// stream, whose last line carries the report), and gives the report and the run's state after
/// it.
async fn drive(
    global: &Global,
    journal: Arc<Journal>,
    daemons: Daemons,
    pass: &Pass,
) -> Result<(RunReport, RunState), CliError> {
    let kind = pass.spec.kind;
    let progress = Progress::start(progress::Options {
        json: global.json,
        kind: kind.word(),
        done: kind.done_word(),
    });
    let engine = pass.engine(journal.clone(), daemons, Some(progress.observer()));
    let flag = engine.interrupt_flag();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            progress::note(
                "reroot: interrupted: instances under way will finish; no new one starts",
            );
            flag.store(true, Ordering::SeqCst);
        }
    });
    let run = pass.run;
    let ran = match engine.drive(run, &pass.instances, pass.direction).await {
        Ok(ran) => ran,
        Err(e @ EngineError::Journal(_)) => {
            let reverted = engine.unrecorded_reverts();
            let mut message = format!("{e}; the run stopped");
            if !reverted.is_empty() {
                message.push_str(&format!(
                    ". These instances were inside their downtime and were put back on their \
                     old roots (not recorded in the journal): {}",
                    reverted.join(", ")
                ));
            }
            message.push_str(&format!(
                ". Once the journal can be written again, `reroot resume {}` finishes the run",
                report::short_id(&run)
            ));
            progress.stopped(run, &message).await;
            return Err(message.into());
        }
        Err(e) => {
            progress.stopped(run, &e.to_string()).await;
            return Err(e.into());
        }
    };
    let state = match journal.replay(run) {
        Ok(state) => state,
        Err(e) => {
            progress.stopped(run, &e.to_string()).await;
            return Err(e.into());
        }
    };
    progress.finished(&ran, report::downtimes(&state)).await;
    Ok((ran, state))
}

/// The end of a pass: the summary table (with `--json`, the stream's last line, written by
/// [`drive`], has the same), and the exit status.
fn finish(global: &Global, report: &RunReport, state: &RunState) -> Result<ExitCode, CliError> {
    if !global.json {
        let done = kind_of(state)?.done_word();
        print!("{}", report::pass_summary(report, state, done));
    }
    Ok(if report.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `reroot rebuild CONFIG...`.
pub async fn rebuild(args: RebuildArgs, global: &Global) -> Result<ExitCode, CliError> {
    let global = &global.waiting(args.wait);
    let plans = load_building_plans(&args.config, global).await?;
    let daemons = connect_plans(global, &plans).await?;
    if args.launch {
        launch::refuse_existing(&daemons, &plans).await?;
    }
    // What the journal says: the leases, and the runs that succeeded. Read and let go before
    // the run opens the journal for writing.
    let (leases, succeeded) = {
        match journal_reader(global)? {
            Some(reader) => (lease::leased(&reader)?, lease::succeeded_runs(&reader)?),
            None => Default::default(),
        }
    };
    if args.dry_run {
        let mut forecasts = Vec::new();
        for p in &plans {
            let held = leases.get(&p.name).map(report::short_id);
            let lxd = daemons.daemon_of(p)?;
            forecasts.push(
                forecast::forecast(lxd, p, held, args.force, |r| succeeded.contains(r)).await,
            );
        }
        if global.json {
            println!("{}", serde_json::to_string_pretty(&forecasts)?);
        } else {
            let steps: Vec<&str> = rebuild_pipeline().iter().map(|s| s.name()).collect();
            print!("{}", report::forecast_table(&forecasts));
            println!("steps of each rebuilt instance: {}", steps.join(" → "));
        }
        let refused = forecasts
            .iter()
            .any(|f| matches!(f.verdict, forecast::Verdict::Refuse { .. }));
        return Ok(if refused {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    let mut plans = plans;
    if !args.force {
        let mut skipped = Vec::new();
        let mut keep = Vec::new();
        for p in plans {
            let lxd = daemons.daemon_of(&p)?;
            match forecast::already_built(lxd, &p, |r| succeeded.contains(r)).await {
                Ok(Some(run)) => skipped.push((p.name, run)),
                Ok(None) => keep.push(p),
                // The run's preflight will say it properly.
                Err(_) => keep.push(p),
            }
        }
        if !skipped.is_empty() {
            let names: Vec<&str> = skipped.iter().take(5).map(|(n, _)| n.as_str()).collect();
            eprintln!(
                "reroot: skipped {} instance(s) already built from their source by a run that \
                 succeeded: {}{} (--force rebuilds them)",
                skipped.len(),
                names.join(", "),
                if skipped.len() > names.len() {
                    ", ..."
                } else {
                    ""
                }
            );
        }
        if keep.is_empty() {
            eprintln!("reroot: nothing to rebuild");
            return Ok(ExitCode::SUCCESS);
        }
        plans = keep;
    }
    let mut spec = RunSpec::new(
        RunKind::Rebuild,
        plans,
        Limits {
            parallel: args.parallel,
            max_failures: args.max_failures,
            canaries: args.canaries,
            retries: args.retries,
            max_down: args.max_down,
        },
    );
    spec.stop_timeout_s = args.stop_timeout;
    spec.on_failure = args.on_failure;
    spec.prune_previous = args.prune_previous;
    start_run(global, daemons, spec).await
}

/// A reader of the journal, or `None` when there is no journal yet.
fn journal_reader(global: &Global) -> Result<Option<Reader>, CliError> {
    if !global.journal.exists() {
        return Ok(None);
    }
    Ok(Some(Reader::open(&global.journal).map_err(|e| {
        format!("journal {}: {e}", global.journal.display())
    })?))
}

/// The plans of the instances the config files describe; an instance named by two configs is
/// an error.
pub(super) fn load_plans(
    config: &ConfigFileArgs,
    global: &Global,
) -> Result<Vec<InstancePlan>, CliError> {
    Ok(load_plans_and_files(config, global)?.0)
}

/// The plans of a run that creates roots, their remote images looked up (`run::images`).
pub(super) async fn load_building_plans(
    config: &ConfigFileArgs,
    global: &Global,
) -> Result<Vec<InstancePlan>, CliError> {
    let (mut plans, files) = load_plans_and_files(config, global)?;
    images::resolve(&mut plans, &files).await?;
    Ok(plans)
}

/// [`load_plans`], with the config file of each plan.
fn load_plans_and_files(
    config: &ConfigFileArgs,
    global: &Global,
) -> Result<(Vec<InstancePlan>, Vec<std::path::PathBuf>), CliError> {
    let resolved = config::load(&config.files, &config.load_options(global)?)?;
    let mut plans = Vec::new();
    let mut seen = BTreeSet::new();
    for r in &resolved {
        if !seen.insert(r.name.clone()) {
            return Err(format!(
                "instance {} is named by more than one config ({})",
                r.name,
                r.config_file.display()
            )
            .into());
        }
        plans.push(InstancePlan::from_resolved(r)?);
    }
    let files = resolved.iter().map(|r| r.config_file.clone()).collect();
    Ok((plans, files))
}

/// Starts a run of `spec` (see `run::start`: refused while an unfinished run holds one of its
/// instances) and drives it forward.
pub(super) async fn start_run(
    global: &Global,
    daemons: Daemons,
    mut spec: RunSpec,
) -> Result<ExitCode, CliError> {
    daemons::record(&mut spec, &daemons);
    let journal = open_journal(global)?;
    let pass = start::start(&journal, spec, Origin::of_this_process())?;
    eprintln!("reroot: run {}", pass.run);
    let lxd = daemons.default_client().clone();
    let (report, state) = drive(global, journal.clone(), daemons, &pass).await?;
    prune_previous_if_asked(&journal, &lxd, &pass, &state).await;
    finish(global, &report, &state)
}

/// Connects as the options say and to the remotes the run's plans name, and refuses a daemon
/// other than the one `run` recorded for it.
async fn connect_for(global: &Global, run: RunId, spec: &RunSpec) -> Result<Daemons, CliError> {
    let daemons = daemons::connect(connect(global).await?, &spec.plans).await?;
    daemons::check(run, spec, &daemons)?;
    Ok(daemons)
}

fn resolve(journal: &Journal, run: &str) -> Result<RunId, CliError> {
    Ok(journal.resolve_run(run)?)
}

/// `reroot resume [RUN]`.
pub async fn resume(args: ResumeArgs, global: &Global) -> Result<ExitCode, CliError> {
    let global = &global.waiting(args.wait);
    let journal = open_journal(global)?;
    let run = resumption::choose(&journal, args.run.as_deref())?;
    let pass = resumption::resume(&journal.replay(run)?)?;
    eprintln!(
        "reroot: resuming run {run} ({})",
        if pass.direction == Direction::Undo {
            "undo"
        } else {
            pass.spec.kind.word()
        }
    );
    let daemons = connect_for(global, run, &pass.spec).await?;
    let lxd = daemons.default_client().clone();
    let (report, state) = drive(global, journal.clone(), daemons, &pass).await?;
    // A run started with --prune-previous prunes once it succeeds, resumed or not.
    prune_previous_if_asked(&journal, &lxd, &pass, &state).await;
    finish(global, &report, &state)
}

/// `reroot undo RUN [INSTANCE...]`.
pub async fn undo(args: UndoArgs, global: &Global) -> Result<ExitCode, CliError> {
    let global = &global.waiting(args.wait);
    let journal = open_journal(global)?;
    let run = resolve(&journal, &args.run)?;
    let asked = UndoRequest {
        instances: args.instances,
        data: args.data,
        parallel: args.parallel,
    };
    let state = journal.replay(run)?;
    // Before the undo is recorded: on another daemon it must change nothing, the journal
    // included (a recorded request makes the next resume go on with the undo).
    let daemons = connect_for(global, run, &RunSpec::of(&state)?).await?;
    let pass = undoing::undo(&journal, &state, &asked)?;
    let (report, state) = drive(global, journal, daemons, &pass).await?;
    finish(global, &report, &state)
}

/// `reroot prune RUN` or `reroot prune --keep N --older-than AGE`: deletes retired old roots
/// (see `run::prune`), printing what it deletes (or would) as it goes. Their data lives on the
/// external filesystems, which are not touched; a pruned run can no longer be undone.
pub async fn prune(args: PruneArgs, global: &Global) -> Result<ExitCode, CliError> {
    let global = &global.waiting(args.wait);
    let journal = open_journal(global)?;
    let options = prune::PruneOptions {
        dry_run: args.dry_run,
        snapshots: args.snapshots,
    };
    let items = match &args.run {
        Some(run) => {
            let run = resolve(&journal, run)?;
            // Refuse an unprunable run before connecting: nothing to do with LXD then.
            let state = journal.replay(run)?;
            prune::prunable(run, kind_of(&state)?, state.status, args.snapshots)?;
            // `prune_run` checks each of the run's daemons before it touches any.
            let lxd = connect(global).await?;
            prune::prune_run(&journal, &lxd, run, options, &mut print_item).await?
        }
        None => {
            let retention = prune::Retention::new(args.keep, args.older_than)?;
            let lxd = connect(global).await?;
            // Over the whole history, what was never there is not worth a line per run.
            let items = prune::prune_retained(&journal, &lxd, &retention, options, &mut |item| {
                if !item.what.is_absent() {
                    print_item(item)
                }
            })
            .await?;
            if items.iter().all(|i| i.what.is_absent()) {
                println!("nothing to prune");
            }
            items
        }
    };
    Ok(if items.iter().any(|i| i.what.is_problem()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// One line per thing a prune found or did: problems on stderr, the rest on stdout.
fn print_item(item: &prune::Item) {
    match &item.what {
        prune::What::LeftAlone(why) => eprintln!("reroot: {why}"),
        prune::What::SnapshotFailed(e) => eprintln!("reroot: {}: {e}", item.instance),
        what => println!("{}: {what}", item.instance),
    }
}

/// After a pass that made a run started with `--prune-previous` succeed (see
/// `Pass::prunes_previous`): prunes the previous succeeded rebuild of each of its instances,
/// saying so on stderr (stdout keeps the run's table or JSON). The rebuild itself went through,
/// so a failure here is a warning, not the run's exit status.
async fn prune_previous_if_asked(
    journal: &Journal,
    lxd: &lxd::Client,
    pass: &Pass,
    state: &RunState,
) {
    if !pass.prunes_previous(state) {
        return;
    }
    let mut said = |item: &prune::Item| {
        if !item.what.is_absent() {
            eprintln!("reroot: --prune-previous: {}: {}", item.instance, item.what);
        }
    };
    if let Err(e) = prune::prune_previous(journal, lxd, state.header.id, &mut said).await {
        eprintln!("reroot: --prune-previous: the run succeeded, but pruning failed: {e}");
    }
}
