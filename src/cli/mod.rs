//! Command-line interface: argument parsing with clap, then a call into the library.
//! No logic of its own lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub mod archive_cmd;
pub mod cloudconfig_cmd;
pub mod config_cmd;
pub mod copy_cmd;
pub mod docs_cmd;
pub mod instance_cmd;
pub mod journal_cmd;
pub mod launch_cmd;
pub mod profile_cmd;
pub mod property_cmd;
pub mod publish_cmd;
pub mod remove_cmd;
pub mod run_cmd;
pub mod server_cmd;
pub mod snapshot_cmd;

/// Options every command understands.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Path of the LXD or Incus unix socket (default: $LXD_DIR, $INCUS_DIR, then the usual paths).
    #[arg(long, global = true, env = "REROOT_SOCKET", conflicts_with = "remote")]
    pub socket: Option<PathBuf>,
    /// A remote of the lxc or incus client configuration ($LXD_CONF or ~/.config/lxc, then
    /// $INCUS_CONF or ~/.config/incus): reached over HTTPS with its client.crt/client.key and
    /// pinned servercerts/NAME.crt. Not with --socket.
    #[arg(long, global = true, env = "REROOT_REMOTE", value_name = "NAME")]
    pub remote: Option<String>,
    /// LXD project to work in.
    #[arg(long, global = true, env = "REROOT_PROJECT")]
    pub project: Option<String>,
    /// Directory of the journal.
    #[arg(
        long,
        global = true,
        env = "REROOT_JOURNAL",
        default_value = "/var/lib/reroot/journal"
    )]
    pub journal: PathBuf,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// More output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do when another process holds the journal: set from a writing command's own
    /// `--wait` ([`Global::waiting`]), since the journal is opened deep inside the run
    /// functions, which are handed only these options.
    #[arg(skip)]
    pub wait: JournalWait,
}

/// How a command that writes the journal opens it while another process holds it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum JournalWait {
    /// Fail at once, naming the holder (the default).
    #[default]
    Fail,
    /// Wait until it is free, or until the time limit.
    Wait {
        timeout: Option<std::time::Duration>,
    },
}

/// `--wait` and `--wait-timeout`, for the commands that write the journal.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct WaitArgs {
    /// If another reroot process is writing the journal, say which and wait until it is done
    /// (instead of failing); its unfinished instances are still refused afterwards.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds (default: wait as long as it takes).
    #[arg(long, value_name = "SECONDS", requires = "wait")]
    pub wait_timeout: Option<u64>,
}

impl Global {
    /// These options with a writing command's `--wait` applied.
    pub fn waiting(&self, args: WaitArgs) -> Global {
        Global {
            wait: if args.wait {
                JournalWait::Wait {
                    timeout: args.wait_timeout.map(std::time::Duration::from_secs),
                }
            } else {
                JournalWait::Fail
            },
            ..self.clone()
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "reroot",
    version,
    about = "Replace container roots from a template, journaled, resumable, undoable"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the server: kind, version, storage pools, instance count.
    Server,
    /// Show and check instance config files.
    Config {
        #[command(subcommand)]
        command: config_cmd::ConfigCommand,
    },
    /// List, get and set the global properties (~/.config/reroot/properties.yaml, properties.d/).
    Property {
        #[command(subcommand)]
        command: property_cmd::PropertyCommand,
    },
    /// Profiles: what configs want against the daemon (`list`, `diff`), and daemon profiles
    /// to and from YAML (`export`, `import`).
    Profile {
        #[command(subcommand)]
        command: profile_cmd::ProfileCommand,
    },
    /// Look at instances: `info` (what it is built from, its filesystems, devices, profiles
    /// and runs) and `addresses`.
    Instance {
        #[command(subcommand)]
        command: instance_cmd::InstanceCommand,
    },
    /// Show or apply #cloud-config files.
    Cloudconfig {
        #[command(subcommand)]
        command: cloudconfig_cmd::CloudConfigCommand,
    },
    /// Rebuild instances: replace each root with a fresh copy of its template, keeping its data.
    Rebuild(run_cmd::RebuildArgs),
    /// Launch instances that do not exist yet: a rebuild run, refused before any run is
    /// recorded if one of the instances exists.
    Launch(launch_cmd::LaunchArgs),
    /// Apply each config's cloud-config files to its running instance, converging (a second
    /// configure changes nothing); no run is recorded.
    Configure(launch_cmd::ConfigureArgs),
    /// Continue an interrupted or failed run (forward, or its undo if one was begun).
    Resume(run_cmd::ResumeArgs),
    /// Put a run's instances back where they were before it.
    Undo(run_cmd::UndoArgs),
    /// Delete the retired old roots of a succeeded run (the run can no longer be undone), or
    /// by a retention policy (--keep N, --older-than AGE); with --snapshots also the
    /// filesystem snapshots taken.
    Prune(run_cmd::PruneArgs),
    /// Snapshot instances' roots (e.g. a template) and their filesystems, as a journaled run.
    Snapshot(snapshot_cmd::SnapshotArgs),
    /// Roll instances' filesystems (and with --root their roots) back to a named snapshot, as
    /// a journaled run (resumed, never undone); refuses a running instance unless --stop.
    Rollback(snapshot_cmd::RollbackArgs),
    /// Rename a stopped instance, its filesystems whose location follows its name and its disk
    /// devices, as a journaled run (resumable, undoable).
    Rename(remove_cmd::RenameArgs),
    /// Publish a snapshot of an instance's root (a template's) as an image with an alias, as a
    /// journaled run (undo deletes the image).
    Publish(publish_cmd::PublishArgs),
    /// Write an instance's filesystems to a directory as archives (zfs send, btrfs send, tar)
    /// with a manifest, as a journaled run (undo removes what it wrote).
    Export(archive_cmd::ExportArgs),
    /// Create an instance's filesystems from an export, after verifying every archive; never
    /// overwrites a filesystem (not undone: what it created is the instance's data).
    Import(archive_cmd::ImportArgs),
    /// Send another instance's filesystems (or the same instance's, from another pool or
    /// host) into this instance's: zfs send|receive, incremental from a shared snapshot,
    /// btrfs send|receive, tar; over ssh with --from-host/--to-host. Never overwrites.
    CopyFilesystems(copy_cmd::CopyArgs),
    /// Delete stopped instances and their device profiles; their filesystems are kept.
    Delete(remove_cmd::DeleteArgs),
    /// Delete stopped instances and destroy their filesystems marked `destroy: true`, after
    /// confirmation (or --yes).
    Destroy(remove_cmd::DestroyArgs),
    /// Runs in progress, interrupted, paused or failed: a summary of each, and the steps of
    /// its instances that failed or are in progress (works while a run is writing).
    Status,
    /// List runs, newest first, with their instance count and command.
    History(journal_cmd::HistoryArgs),
    /// Everything reroot did to one instance, run by run: who ran what when, each step with
    /// result and duration, the downtime and the template it ended on.
    Log(journal_cmd::LogArgs),
    /// Show a run: a summary (instances by result, downtime, wall time), then each instance's
    /// steps with result, duration and downtime.
    Show(journal_cmd::ShowArgs),
    /// Check, export or import the journal.
    Journal {
        #[command(subcommand)]
        command: journal_cmd::JournalCommand,
    },
    /// Write a shell completion script (bash, zsh, fish, elvish, powershell) on standard
    /// output: `source <(reroot completions bash)`.
    Completions(docs_cmd::CompletionsArgs),
    /// Write the manual page on standard output (`reroot man | man -l -`), or with --dir a
    /// page for every command.
    Man(docs_cmd::ManArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`reroot history | head`) would
    // panic; restore the default so the process ends quietly like other Unix tools.
    // SAFETY: called first thing, before any other thread exists; changes only this signal.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    init_logging(cli.global.verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reroot: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("reroot: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Around the live progress view, when one is shown; colours only on a terminal, so
        // that a log file reads as text.
        .with_writer(crate::progress::LogWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Connects to the daemon the global options name: `--remote` (read from the client
/// configuration first, so a remote that cannot be used is refused before any connection),
/// else `--socket` or the usual local sockets.
pub(crate) async fn connect(global: &Global) -> Result<crate::lxd::Client, CliError> {
    let options = crate::lxd::ConnectOptions {
        socket: global.socket.clone(),
        project: global.project.clone(),
        ..crate::lxd::ConnectOptions::default()
    };
    // `REROOT_REMOTE=` (set but empty) means no remote, as an unset variable would.
    Ok(match global.remote.as_deref().filter(|r| !r.is_empty()) {
        Some(name) => {
            let remote = crate::lxd::Remote::find(name)?;
            crate::lxd::Client::connect_remote(&remote, options).await?
        }
        None => crate::lxd::Client::connect(options).await?,
    })
}

/// Boxed error for the command layer: every library error already names what went wrong.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;

async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Server => server_cmd::run(&cli.global).await,
        Command::Config { command } => config_cmd::run(command, &cli.global),
        Command::Property { command } => property_cmd::run(command, &cli.global),
        Command::Profile { command } => profile_cmd::run(command, &cli.global).await,
        Command::Instance { command } => instance_cmd::run(command, &cli.global).await,
        Command::Cloudconfig { command } => cloudconfig_cmd::run(command, &cli.global).await,
        Command::Rebuild(args) => run_cmd::rebuild(args, &cli.global).await,
        Command::Launch(args) => launch_cmd::launch(args, &cli.global).await,
        Command::Configure(args) => launch_cmd::configure(args, &cli.global).await,
        Command::Resume(args) => run_cmd::resume(args, &cli.global).await,
        Command::Undo(args) => run_cmd::undo(args, &cli.global).await,
        Command::Prune(args) => run_cmd::prune(args, &cli.global).await,
        Command::Snapshot(args) => snapshot_cmd::run(args, &cli.global).await,
        Command::Rollback(args) => snapshot_cmd::rollback(args, &cli.global).await,
        Command::Rename(args) => remove_cmd::rename(args, &cli.global).await,
        Command::Publish(args) => publish_cmd::run(args, &cli.global).await,
        Command::Export(args) => archive_cmd::export(args, &cli.global).await,
        Command::Import(args) => archive_cmd::import(args, &cli.global).await,
        Command::CopyFilesystems(args) => copy_cmd::copy(args, &cli.global).await,
        Command::Delete(args) => remove_cmd::delete(args, &cli.global).await,
        Command::Destroy(args) => remove_cmd::destroy(args, &cli.global).await,
        Command::Status => journal_cmd::status(&cli.global),
        Command::History(args) => journal_cmd::history(args, &cli.global),
        Command::Log(args) => journal_cmd::log(args, &cli.global),
        Command::Show(args) => journal_cmd::show(args, &cli.global),
        Command::Journal { command } => journal_cmd::journal(command, &cli.global),
        Command::Completions(args) => docs_cmd::completions(args),
        Command::Man(args) => docs_cmd::man(args),
    }
}
