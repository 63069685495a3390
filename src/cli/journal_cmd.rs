//! `reroot history`, `reroot show RUN` and `reroot journal {verify|export|import}`: reading the
//! journal. They open it with a reader, so they work while a run is writing it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use journal::{Reader, RunFilter, RunStatus};

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
    /// At most this many runs (the newest).
    #[arg(long)]
    pub limit: Option<usize>,
}

/// `reroot show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run (id or its first characters).
    pub run: String,
}

/// `reroot journal ...`.
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Check every record: checksums, hash chains, sequence numbers and step transitions.
    Verify,
    /// Write a run (or the whole journal) as versioned NDJSON to standard output or a file.
    Export {
        /// Only this run.
        #[arg(long)]
        run: Option<String>,
        /// Write here instead of standard output.
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
    let r = reader(global)?;
    let runs = r.runs(&RunFilter {
        statuses: args.status,
        instance: args.instance,
        limit: args.limit,
        ..Default::default()
    })?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else if runs.is_empty() {
        println!("no runs in {}", global.journal.display());
    } else {
        print!("{}", report::runs_table(&runs));
    }
    Ok(ExitCode::SUCCESS)
}

/// `reroot show RUN`.
pub fn show(args: ShowArgs, global: &Global) -> Result<ExitCode, CliError> {
    let r = reader(global)?;
    let run = r.resolve_run(&args.run)?;
    let state = r.replay(run)?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&state)?);
    } else {
        print!("{}", report::run_detail(&state));
    }
    Ok(ExitCode::SUCCESS)
}

/// `reroot journal ...`.
pub fn journal(command: JournalCommand, global: &Global) -> Result<ExitCode, CliError> {
    match command {
        JournalCommand::Verify => {
            let r = reader(global)?;
            let report = r.verify()?;
            if global.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            match report.first_problem() {
                None => {
                    if !global.json {
                        println!("journal {} is sound", global.journal.display());
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Some(p) => {
                    eprintln!("reroot: journal {}: {p}", global.journal.display());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        JournalCommand::Export { run, output } => {
            let r = reader(global)?;
            let run = run.map(|p| r.resolve_run(&p)).transpose()?;
            match output {
                Some(path) => {
                    let mut f = std::io::BufWriter::new(
                        std::fs::File::create(&path)
                            .map_err(|e| format!("{}: {e}", path.display()))?,
                    );
                    r.export_ndjson(run, &mut f)?;
                    f.flush()?;
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut lock = stdout.lock();
                    r.export_ndjson(run, &mut lock)?;
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
