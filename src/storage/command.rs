//! Running host commands (`zfs`, `zpool`, `btrfs`, `rsync`) as argument vectors, never through a
//! shell, each with a time bound.
//!
//! A command that outlives its bound is killed and reported as [`StorageError::Timeout`]
//! (zfs-fuse can hang). A command that exits non-zero is reported as
//! [`StorageError::CommandFailed`], carrying its argv, exit code and stderr.
//!
//! A command is done when it exits, not when its output pipes close: a process it left behind
//! can hold them open for as long as it lives (seen with `ssh -o ProxyCommand=...` whose
//! helper went on in the background: ssh exited at once, its stderr stayed open for the
//! helper's 20 s, and every command over that host took 20 s). Its output is read as it comes
//! ([`Pipe`]) and for at most [`PIPE_GRACE`] after the exit.

use std::ffi::OsString;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::StorageError;

/// Bound for a `zfs`, `zpool` or `btrfs` command: they take milliseconds when healthy.
pub const FS_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Bound for an `rsync` of a device template, which may copy many files.
pub const RSYNC_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The output of a command that exited with status 0.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    pub stdout: String,
    pub stderr: String,
}

pub use crate::shell::display_argv;

/// How long a command's output is still read once the command has exited: what it wrote is in
/// the pipe by then and read at once; only a pipe another process holds open takes longer.
pub const PIPE_GRACE: Duration = Duration::from_secs(2);

/// An output pipe of a command, read as it comes by a task of its own (a full pipe would
/// stall the command).
pub struct Pipe {
    bytes: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts reading `pipe` to its end.
pub fn read_pipe<R: AsyncRead + Unpin + Send + 'static>(mut pipe: R) -> Pipe {
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let into = bytes.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if let Ok(mut b) = into.lock() {
                b.extend_from_slice(&buf[..n]);
            }
        }
    });
    Pipe { bytes, task }
}

impl Pipe {
    /// What came through, once the command has exited: all of it, or what came within
    /// [`PIPE_GRACE`] when another process still holds the pipe open.
    pub async fn text(self) -> String {
        self.within(PIPE_GRACE).await
    }

    async fn within(mut self, grace: Duration) -> String {
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            tracing::debug!(
                ?grace,
                "a pipe still open after its command exited; not read further"
            );
            self.task.abort();
        }
        let bytes = self.bytes.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `program args...` with no shell, kills it after `timeout`, and returns its output when it
/// exits with status 0.
pub async fn run<I, S>(
    program: &str,
    args: I,
    timeout: Duration,
) -> Result<CommandOutput, StorageError>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let argv: Vec<String> = std::iter::once(program.to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect();
    tracing::debug!(argv = %display_argv(&argv), "running host command");

    let mut command = tokio::process::Command::new(program);
    command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Dropping the future on timeout kills the child.
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| StorageError::Spawn {
        argv: display_argv(&argv),
        source,
    })?;
    let stdout = read_pipe(child.stdout.take().expect("piped stdout"));
    let stderr = read_pipe(child.stderr.take().expect("piped stderr"));
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(result) => result.map_err(|source| StorageError::Spawn {
            argv: display_argv(&argv),
            source,
        })?,
        Err(_) => {
            tracing::debug!(argv = %display_argv(&argv), ?timeout, "host command timed out; killed");
            return Err(StorageError::Timeout {
                argv: display_argv(&argv),
                timeout,
            });
        }
    };
    let (stdout, stderr) = tokio::join!(stdout.text(), stderr.text());
    let stderr = stderr.trim().to_string();
    if status.success() {
        Ok(CommandOutput { stdout, stderr })
    } else {
        tracing::debug!(argv = %display_argv(&argv), code = ?status.code(), %stderr, "host command failed");
        Err(StorageError::CommandFailed {
            argv: display_argv(&argv),
            code: status.code(),
            stderr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn success_returns_stdout() {
        let out = run("echo", ["hello world"], Duration::from_secs(5))
            .await
            .expect("echo runs");
        assert_eq!(out.stdout, "hello world\n");
    }

    #[tokio::test]
    async fn failure_carries_argv_code_and_stderr() {
        let err = run(
            "sh",
            ["-c", "echo broken >&2; exit 3"],
            Duration::from_secs(5),
        )
        .await
        .expect_err("exit 3 is a failure");
        match &err {
            StorageError::CommandFailed { argv, code, stderr } => {
                assert_eq!(argv, "sh -c 'echo broken >&2; exit 3'");
                assert_eq!(*code, Some(3));
                assert_eq!(stderr, "broken");
            }
            other => panic!("expected CommandFailed, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("sh -c"), "{message}");
        assert!(message.contains("exit code 3"), "{message}");
        assert!(message.contains("broken"), "{message}");
    }

    #[tokio::test]
    async fn a_command_over_its_bound_is_killed() {
        let started = std::time::Instant::now();
        let err = run("sleep", ["10"], Duration::from_millis(200))
            .await
            .expect_err("sleep 10 exceeds 200 ms");
        assert!(
            matches!(&err, StorageError::Timeout { argv, .. } if argv == "sleep 10"),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_command_is_done_when_it_exits_though_a_process_it_left_holds_its_pipes() {
        // As an ssh ProxyCommand's background helper does: the command exits at once, the
        // helper keeps its stdout and stderr for 30 s.
        let started = std::time::Instant::now();
        let out = run(
            "sh",
            ["-c", "(sleep 30 &); echo done; echo said >&2"],
            Duration::from_secs(20),
        )
        .await
        .expect("sh exits 0");
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("done\n", "said")
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let err = run("reroot-no-such-program", ["x"], Duration::from_secs(5))
            .await
            .expect_err("no such program");
        assert!(
            matches!(&err, StorageError::Spawn { argv, .. } if argv == "reroot-no-such-program x"),
            "{err:?}"
        );
    }
}
