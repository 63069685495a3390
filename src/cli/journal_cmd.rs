//! `reroot history`, `reroot log INSTANCE`, `reroot show RUN` and `reroot journal {verify|export|import}`: reading the
//! journal. They open it with a reader, so they work while a run is writing it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use journal::{Reader, RunFilter, RunState, RunStatus, WriterInfo};

use super::{CliError, Global};
use crate::report;

/// `reroot history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only runs that touched this instance.
    #[arg(long)]
    pub instance: Option<String>,
    /// Only runs with this status (running, paused, succeeded, failed, undone; repeatable).
    #[arg(long)]
    pub status: Vec<RunStatus>,
    /// Only runs started at or after this time: a UTC date or time ("2026-11-30",
    /// "2026-11-30 14:00", "2026-11-30T14:00:00Z") or an age ("90m", "2h", "7d": that long ago).
    #[arg(long, value_parser = parse_when)]
    pub since: Option<i64>,
    /// Only runs started before this time (same forms as --since).
    #[arg(long, value_parser = parse_when)]
    pub until: Option<i64>,
    /// At most this many runs (the newest).
    #[arg(long)]
    pub limit: Option<usize>,
}

/// A point in time for `--since`/`--until`, in ms since the epoch: a UTC date, a UTC date and
/// time (minutes or seconds, space or `T`, optional `Z`), or an age counted back from now.
pub(crate) fn parse_when(text: &str) -> Result<i64, String> {
    parse_when_at(text, std::time::SystemTime::now())
}

fn parse_when_at(text: &str, now: std::time::SystemTime) -> Result<i64, String> {
    let t = text.trim();
    let ms = |at: std::time::SystemTime| -> Result<i64, String> {
        let d = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| format!("{t:?} is before 1970"))?;
        i64::try_from(d.as_millis()).map_err(|_| format!("{t:?} is too far away"))
    };
    if t.starts_with(|c: char| c.is_ascii_digit()) && !t.contains('-') {
        let age = humantime::parse_duration(t)
            .map_err(|e| format!("{t:?} is not an age such as 90m, 2h or 7d: {e}"))?;
        let at = now
            .checked_sub(age)
            .ok_or_else(|| format!("{t:?} reaches before 1970"))?;
        return ms(at);
    }
    let bare = t.strip_suffix('Z').unwrap_or(t);
    let candidates = [
        bare.to_string(),
        format!("{bare}:00"),
        format!("{bare} 00:00:00"),
    ];
    for c in &candidates {
        if let Ok(at) = humantime::parse_rfc3339_weak(c) {
            return ms(at);
        }
    }
    Err(format!(
        "{t:?} is not a time: use a UTC date (2026-11-30), date and time (2026-11-30 14:00, \
         2026-11-30T14:00:00Z) or an age (90m, 2h, 7d)"
    ))
}

/// `reroot log`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// The instance.
    pub instance: String,
    /// Newest run first (default: oldest first).
    #[arg(long, short = 'r')]
    pub newest_first: bool,
    /// Only runs started at or after this time (same forms as `history --since`).
    #[arg(long, value_parser = parse_when)]
    pub since: Option<i64>,
    /// Only runs started before this time (same forms as --since).
    #[arg(long, value_parser = parse_when)]
    pub until: Option<i64>,
    /// Print the text of the run's cloud-config files in --json (their `write_files` often
    /// hold keys and tokens); without it each file shows only its length and sha256 digest.
    #[arg(long)]
    pub with_content: bool,
}

/// `reroot show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run (id or its first characters).
    pub run: String,
    /// Only this instance (repeatable); the summary still covers the whole run.
    #[arg(long = "instance", value_name = "NAME")]
    pub instances: Vec<String>,
    /// Only the instances whose steps did not all succeed: failed, reverted to their old root,
    /// undo failed, or stopped part-way (in progress or interrupted); not those not started or
    /// undone on request.
    #[arg(long)]
    pub failed: bool,
    /// Write a picture of the whole run to this SVG file instead of printing it: a row per
    /// instance, its steps as bars on a time axis, the downtime, failures, retries and undo.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["instances", "failed"])]
    pub svg: Option<PathBuf>,
    /// Write the same picture in an HTML page (hovering a bar shows its details).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["instances", "failed"])]
    pub html: Option<PathBuf>,
    /// Print the text of the run's cloud-config files in --json (their `write_files` often
    /// hold keys and tokens); without it each file shows only its length and sha256 digest.
    #[arg(long)]
    pub with_content: bool,
}

/// `reroot journal ...`.
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Check every record: checksums, hash chains, sequence numbers and step transitions.
    Verify,
    /// Write runs as versioned NDJSON: an audit extract, or with --with-content a full copy.
    ///
    /// The whole journal, one run, or the runs --since/--until/--instance choose, to standard
    /// output or a file. The text of the runs' cloud-config files (their `write_files` hold
    /// keys and passwords) is left out, replaced by its length and sha256, unless
    /// --with-content is given; such a redacted extract cannot be imported.
    Export {
        /// Only this run.
        #[arg(long, conflicts_with_all = ["since", "until", "instance"])]
        run: Option<String>,
        /// Only runs started at or after this time (same forms as `history --since`).
        #[arg(long, value_parser = parse_when)]
        since: Option<i64>,
        /// Only runs started before this time (same forms as --since).
        #[arg(long, value_parser = parse_when)]
        until: Option<i64>,
        /// Only runs that touched this instance, under the names it had before renames too
        /// (their whole record, other instances included).
        #[arg(long)]
        instance: Option<String>,
        /// Keep the text of cloud-config files: a full copy of the journal's record, which
        /// `journal import` accepts. Keep it as private as the journal.
        #[arg(long)]
        with_content: bool,
        /// Write here instead of standard output (created readable by its owner only).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Read NDJSON written by `export` into the journal (checked before anything is stored).
    Import {
        /// The NDJSON file.
        file: PathBuf,
    },
}

fn reader(global: &Global) -> Result<Reader, CliError> {
    Ok(Reader::open(&global.journal)
        .map_err(|e| format!("journal {}: {e}", global.journal.display()))?)
}

/// `reroot history`.
pub fn history(args: HistoryArgs, global: &Global) -> Result<ExitCode, CliError> {
    // No journal yet (no run was ever recorded there): an empty history, not an error.
    let filter = RunFilter {
        statuses: args.status,
        instance: None,
        since_ms: args.since,
        until_ms: args.until,
        limit: args.limit,
    };
    // Each run with the name the instance had in it: with --instance, its runs across renames.
    let runs: Vec<(journal::RunSummary, Option<String>)> = match &args.instance {
        _ if !global.journal.exists() => Vec::new(),
        None => reader(global)?
            .runs(&filter)?
            .into_iter()
            .map(|r| (r, None))
            .collect(),
        Some(name) => report::lineage::instance_runs(&reader(global)?, name, &filter)?
            .into_iter()
            .map(|r| (r.run, Some(r.name)))
            .collect(),
    };
    let named = || runs.iter().map(|(r, name)| (r, name.as_deref()));
    if global.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report::json::history_named(named()))?
        );
    } else if runs.is_empty() {
        println!("no runs in {}", global.journal.display());
    } else {
        print!("{}", report::runs_table_named(named()));
    }
    Ok(ExitCode::SUCCESS)
}

/// What a run that is not done needs, as `status` tells it.
fn activity(state: &RunState, writer: Option<WriterInfo>) -> String {
    let short = report::short_id(&state.header.id);
    match (state.status, writer) {
        (RunStatus::Running, Some(w)) if w.run == Some(state.header.id) => match w.pid {
            Some(pid) => format!("in progress (process {pid})"),
            None => "in progress".to_string(),
        },
        (RunStatus::Running, _) => format!(
            "interrupted: no process is running it; `reroot resume {short}` or `reroot undo {short}`"
        ),
        (RunStatus::Paused, _) => {
            format!("paused; `reroot resume {short}` or `reroot undo {short}`")
        }
        (status, _) => format!(
            "{status}; its instances are held until `reroot resume {short}` or `reroot undo {short}`"
        ),
    }
}

/// `reroot status`: the runs that are in progress, interrupted, paused or failed (what
/// `resume` or `undo` would act on), each with its overview and the steps of the instances
/// that need attention. Works while a run is writing.
pub fn status(global: &Global) -> Result<ExitCode, CliError> {
    if !global.journal.exists() {
        if global.json {
            let doc = report::json::status(None, &[]);
            println!("{}", serde_json::to_string_pretty(&doc)?);
        } else {
            println!("no run in progress, interrupted, paused or failed");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let r = reader(global)?;
    let writer = r.writer();
    let runs = r.runs(&RunFilter {
        statuses: vec![RunStatus::Running, RunStatus::Paused, RunStatus::Failed],
        ..RunFilter::default()
    })?;
    let mut shown = Vec::new();
    for run in &runs {
        let state = r.replay(run.id)?;
        let what = activity(&state, writer);
        shown.push((state, what));
    }
    if global.json {
        // `status` has no --with-content: `show RUN --with-content` prints the texts.
        let doc = printed(&report::json::status(writer, &shown), false)?;
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if shown.is_empty() {
        println!("no run in progress, interrupted, paused or failed");
    } else {
        for (state, what) in &shown {
            println!("{}: {what}", report::short_id(&state.header.id));
            print!("{}", report::status_detail(state));
            println!();
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `doc` as JSON, the text of its runs' cloud-config files left out unless `with_content`.
fn printed(doc: &impl serde::Serialize, with_content: bool) -> Result<serde_json::Value, CliError> {
    let mut value = serde_json::to_value(doc)?;
    if !with_content {
        crate::run::extract::leave_out_printed_contents(&mut value);
    }
    Ok(value)
}

/// `reroot log INSTANCE`: every run that touched the instance, and what it did to it.
pub fn log(args: LogArgs, global: &Global) -> Result<ExitCode, CliError> {
    let mut states = Vec::new();
    if global.journal.exists() {
        let r = reader(global)?;
        // Its runs across renames, each with the name it had then.
        let mut runs = report::lineage::instance_runs(
            &r,
            &args.instance,
            &RunFilter {
                since_ms: args.since,
                until_ms: args.until,
                ..RunFilter::default()
            },
        )?;
        // `runs` lists newest first.
        if !args.newest_first {
            runs.reverse();
        }
        for run in runs {
            states.push((r.replay(run.run.id)?, r.events(run.run.id)?, run.name));
        }
    }
    let entries = report::log_entries(&states);
    if global.json {
        let doc = printed(
            &report::json::log(&args.instance, &entries),
            args.with_content,
        )?;
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if entries.is_empty() {
        println!(
            "no run in {} touched instance {}",
            global.journal.display(),
            args.instance
        );
    } else {
        print!("{}", report::instance_log(&args.instance, &entries));
    }
    Ok(ExitCode::SUCCESS)
}

/// `reroot show RUN`.
pub fn show(args: ShowArgs, global: &Global) -> Result<ExitCode, CliError> {
    let r = reader(global)?;
    let run = r.resolve_run(&args.run)?;
    let state = r.replay(run)?;
    if args.svg.is_some() || args.html.is_some() {
        let events = r.events(run)?;
        let now = journal::now_ms();
        let pictures = [
            (args.svg, report::svg::run_svg as fn(_, _, _) -> String),
            (args.html, report::svg::run_html),
        ];
        for (path, render) in pictures {
            if let Some(path) = path {
                std::fs::write(&path, render(&state, &events, now))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                eprintln!(
                    "reroot: wrote run {} ({} instances) to {}",
                    report::short_id(&state.header.id),
                    state.instances.len(),
                    path.display()
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let filter = report::InstanceFilter {
        names: args.instances,
        failed: args.failed,
    };
    if global.json {
        let keep = report::selected_names(&state, &filter)?;
        let doc = printed(
            &report::json::show(&state, |name| keep.contains(name)),
            args.with_content,
        )?;
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", report::run_detail(&state, &filter)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `reroot journal ...`.
pub fn journal(command: JournalCommand, global: &Global) -> Result<ExitCode, CliError> {
    match command {
        JournalCommand::Verify => {
            let r = reader(global)?;
            let report = r.verify()?;
            // The time the runs cover, for the record of what was checked.
            let runs = r.runs(&RunFilter::default())?;
            let span = runs
                .iter()
                .map(|s| s.started_at_ms)
                .min()
                .zip(runs.iter().map(|s| s.last_at_ms.max(s.started_at_ms)).max());
            if global.json {
                let doc = report::json::verify(&report, span);
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                for note in &report.notes {
                    println!("note: {note}");
                }
            }
            match report.first_problem() {
                None => {
                    if !global.json {
                        println!(
                            "journal {} is sound: {}",
                            global.journal.display(),
                            report::verified(&report, span)
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Some(p) => {
                    eprintln!(
                        "reroot: journal {}: {} problem(s), the first: {p}",
                        global.journal.display(),
                        report.problems.len()
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        JournalCommand::Export {
            run,
            since,
            until,
            instance,
            with_content,
            output,
        } => {
            let r = reader(global)?;
            let runs: Option<Vec<journal::RunId>> = match run {
                Some(p) => Some(vec![r.resolve_run(&p)?]),
                None if since.is_some() || until.is_some() || instance.is_some() => {
                    let filter = RunFilter {
                        since_ms: since,
                        until_ms: until,
                        ..RunFilter::default()
                    };
                    // An instance's runs across its renames, as `log` and `history` list them.
                    Some(match instance {
                        Some(name) => report::lineage::instance_runs(&r, &name, &filter)?
                            .iter()
                            .map(|n| n.run.id)
                            .collect(),
                        None => r.runs(&filter)?.iter().map(|s| s.id).collect(),
                    })
                }
                None => None,
            };
            let redact = |e: &mut journal::Event| {
                crate::run::extract::leave_out_contents(e);
            };
            let options = journal::ExportOptions {
                runs: runs.as_deref(),
                redact: (!with_content).then_some(&redact as &dyn Fn(&mut journal::Event)),
            };
            match output {
                Some(path) => {
                    use std::os::unix::fs::OpenOptionsExt;
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    let mut f = std::io::BufWriter::new(file);
                    r.export(&options, &mut f)?;
                    f.flush()?;
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut lock = stdout.lock();
                    r.export(&options, &mut lock)?;
                    lock.flush()?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        JournalCommand::Import { file } => {
            let f = std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let n = journal::import_ndjson(&global.journal, &mut std::io::BufReader::new(f))
                .map_err(|e| format!("{}: {e}", file.display()))?;
            println!("imported {n} events into {}", global.journal.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_when_at;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times_for_since_and_until() {
        // 2026-11-30T12:00:00Z
        let noon = 1_796_040_000_000i64;
        let now = UNIX_EPOCH + Duration::from_millis(noon as u64);
        let day = 86_400_000;
        let at = |t: &str| parse_when_at(t, now);
        assert_eq!(at("2026-11-30"), Ok(noon - 12 * 3_600_000));
        assert_eq!(at("2026-11-30 12:00"), Ok(noon));
        assert_eq!(at("2026-11-30T12:00:00Z"), Ok(noon));
        assert_eq!(at("2026-11-30T12:00:30"), Ok(noon + 30_000));
        assert_eq!(at("2h"), Ok(noon - 2 * 3_600_000));
        assert_eq!(at("90m"), Ok(noon - 90 * 60_000));
        assert_eq!(at("7d"), Ok(noon - 7 * day));
        assert_eq!(at(" 1d 12h "), Ok(noon - day - day / 2));
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-11-30 25:00",
            "12",
            "-2h",
            "2x",
            "2026-11",
        ] {
            let err = at(bad).unwrap_err();
            assert!(err.contains(bad.trim()), "{bad:?}: {err}");
        }
    }
}
