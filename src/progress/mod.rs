//! What a run shows while it goes, from the facts the engine tells (see
//! [`crate::engine::observe`]):
//!
//! - on a terminal (stderr is a tty), a live view: counts, a bar, an ETA, a line per instance
//!   under way ([`live`]);
//! - otherwise, one line on stderr per instance as it finishes ([`lines`]);
//! - with `--json`, an NDJSON event stream on stdout ([`ndjson`], `docs/events.md`), whose last
//!   line carries the report.
//!
//! The engine hands each fact to a channel and goes on; a thread of its own here draws and
//! writes, so a slow terminal or a full pipe never holds a run back, and a reader that goes
//! away (`reroot --json rebuild ... | head`) ends the stream, not the run.

pub mod lines;
pub mod live;
pub mod ndjson;
pub mod tally;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use journal::RunId;

use crate::engine::{EngineEvent, Fact, Observer, RunReport};
use live::Live;
use tally::Tally;

/// How often the live view redraws its clocks when nothing happens.
const TICK: Duration = Duration::from_millis(200);

/// What to show.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Write the NDJSON event stream on stdout.
    pub json: bool,
    /// The run kind (`rebuild`, `snapshot`, ...), for `run_started`.
    pub kind: &'static str,
    /// The word for an instance whose steps all succeeded (`rebuilt`).
    pub done: &'static str,
}

/// What the progress thread is sent.
enum Msg {
    Event(EngineEvent),
    /// The run ended: its report and each instance's recorded downtime.
    Finished {
        report: RunReport,
        downtime_ms: BTreeMap<String, Option<i64>>,
    },
    /// The engine stopped before the end.
    Stopped {
        run: RunId,
        error: String,
    },
}

/// The observer given to the engine: it only puts the fact on the channel.
struct Feed(mpsc::Sender<Msg>);

impl Observer for Feed {
    fn observe(&self, event: EngineEvent) {
        let _ = self.0.send(Msg::Event(event));
    }
}

/// Shows a run's progress until [`Progress::finished`] or [`Progress::stopped`].
pub struct Progress {
    tx: mpsc::Sender<Msg>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts showing: the live view if stderr is a terminal (and stdout is not one that
    /// the stream is written to), lines otherwise; the stream too with `json`.
    pub fn start(options: Options) -> Progress {
        let live =
            std::io::stderr().is_terminal() && !(options.json && std::io::stdout().is_terminal());
        // A write into a closed pipe must fail (and end the stream), not kill the run.
        sigpipe(Sigpipe::Ignore);
        let (tx, rx) = mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("reroot-progress".into())
            .spawn(move || Worker::new(options, live).run(rx))
            .map_err(|e| tracing::warn!(error = %e, "no progress thread: the run goes on without"))
            .ok();
        Progress { tx, worker }
    }

    /// The observer for the engine's options.
    pub fn observer(&self) -> Arc<dyn Observer> {
        Arc::new(Feed(self.tx.clone()))
    }

    /// The run ended with `report`: clears the view, writes the last line (the stream's
    /// `run_finished`, or the count of instances not started) and waits for the writes.
    pub async fn finished(self, report: &RunReport, downtime_ms: BTreeMap<String, Option<i64>>) {
        self.end(Msg::Finished {
            report: report.clone(),
            downtime_ms,
        })
        .await;
    }

    /// The engine stopped with `error` before the run's end: clears the view and, with the
    /// stream, writes `run_stopped`.
    pub async fn stopped(self, run: RunId, error: &str) {
        self.end(Msg::Stopped {
            run,
            error: error.to_string(),
        })
        .await;
    }

    async fn end(mut self, msg: Msg) {
        let _ = self.tx.send(msg);
        if let Some(worker) = self.worker.take() {
            let _ = tokio::task::spawn_blocking(move || worker.join()).await;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // As before the run: printing into a closed pipe ends the process quietly.
        sigpipe(Sigpipe::Default);
    }
}

/// Writes `text` and a newline on stderr, around the live view if one is shown. A stderr
/// that cannot be written is ignored (unlike `eprintln!`, which would panic).
pub fn note(text: &str) {
    live::suspend(|| {
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    });
}

/// The writer for log lines (`tracing`): each line goes to stderr around the live view.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;
    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::new())
    }
}

/// One log line, buffered, written whole when dropped.
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            live::suspend(|| {
                let _ = std::io::stderr().lock().write_all(&self.0);
            });
        }
    }
}

/// Writes on stdout without std's buffer: what a closed pipe refused would stay in that buffer,
/// and writing it again at exit (with SIGPIPE back to its default) would kill the process after
/// the run, giving a run that went through the exit status of a failure. Nothing else writes
/// on stdout while the stream is written.
fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    use std::os::fd::FromRawFd;
    // SAFETY: fd 1 is the process's stdout; ManuallyDrop keeps the File from closing it. If it
    // is not open, the write fails with EBADF, which ends the stream.
    let mut out = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) });
    out.write_all(bytes)
}

enum Sigpipe {
    Ignore,
    Default,
}

fn sigpipe(how: Sigpipe) {
    let handler = match how {
        Sigpipe::Ignore => libc::SIG_IGN,
        Sigpipe::Default => libc::SIG_DFL,
    };
    // SAFETY: sets the disposition of SIGPIPE only, to one of the two built-in ones; no handler
    // code runs. Child processes get the default back from std's spawn.
    unsafe {
        libc::signal(libc::SIGPIPE, handler);
    }
}

/// The progress thread: follows the facts, draws, writes.
struct Worker {
    options: Options,
    tally: Tally,
    live: Option<Live>,
    /// Time and journal sequence of the run's end, for `run_finished`.
    end: Option<(i64, Option<u64>)>,
    /// Cleared once a write failed (the reader went away): nothing more is written there.
    stdout_open: bool,
    stderr_open: bool,
}

impl Worker {
    fn new(options: Options, live: bool) -> Worker {
        Worker {
            options,
            tally: Tally::default(),
            live: live.then(Live::show),
            end: None,
            stdout_open: true,
            stderr_open: true,
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            match rx.recv_timeout(TICK) {
                Ok(Msg::Event(event)) => self.event(&event),
                Ok(Msg::Finished {
                    report,
                    downtime_ms,
                }) => {
                    self.close();
                    if let Some(line) = lines::not_started_line(self.tally.held) {
                        self.stderr(&line);
                    }
                    if self.options.json {
                        let (at_ms, seq) = self.end.unwrap_or_else(|| (journal::now_ms(), None));
                        let line = ndjson::run_finished(&report, &downtime_ms, at_ms, seq);
                        self.stdout(&ndjson::to_line(&line));
                    }
                    return;
                }
                Ok(Msg::Stopped { run, error }) => {
                    self.close();
                    if self.options.json {
                        self.stdout(&ndjson::to_line(&ndjson::run_stopped(run, &error)));
                    }
                    return;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(live) = &self.live {
                        live.tick(&self.tally);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.close();
                    return;
                }
            }
        }
    }

    fn event(&mut self, event: &EngineEvent) {
        self.tally.apply(event);
        if self.options.json {
            if let Some(line) = ndjson::fact(event, self.options.kind) {
                self.stdout(&ndjson::to_line(&line));
            }
        }
        if let Fact::RunFinished { .. } = event.fact {
            self.end = Some((event.at_ms, event.seq));
        }
        let line = match &event.fact {
            Fact::InstanceFinished {
                instance,
                outcome,
                duration_ms,
            } if *outcome != crate::engine::InstanceOutcome::NotStarted => {
                // No step ran: it was through already (a resume); its time is not this pass's.
                let earlier = !self.tally.stepped.contains(instance);
                Some(lines::finished_line(
                    instance,
                    outcome,
                    self.options.done,
                    if earlier { None } else { *duration_ms },
                    self.tally.downtime_ms.get(instance).copied(),
                    self.tally.down.contains(instance),
                    earlier,
                ))
            }
            _ => None,
        };
        match &mut self.live {
            Some(live) => live.update(&self.tally, event, line.as_deref()),
            None => {
                if let Some(line) = line {
                    self.stderr(&line);
                }
            }
        }
    }

    /// Takes the live view off the screen.
    fn close(&mut self) {
        if let Some(live) = self.live.take() {
            live.finish();
        }
    }

    fn stdout(&mut self, line: &str) {
        if self.stdout_open {
            self.stdout_open = write_stdout(format!("{line}\n").as_bytes()).is_ok();
        }
    }

    fn stderr(&mut self, line: &str) {
        if self.stderr_open {
            self.stderr_open = writeln!(std::io::stderr().lock(), "{line}").is_ok();
        }
    }
}
