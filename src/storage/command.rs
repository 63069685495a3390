//! Running host commands (`zfs`, `zpool`, `btrfs`, `rsync`) as argument vectors, never through a
//! shell, each with a time bound.
//!
//! A command that outlives its bound is killed and reported as [`StorageError::Timeout`]
//! (zfs-fuse can hang). A command that exits non-zero is reported as
//! [`StorageError::CommandFailed`], carrying its argv, exit code and stderr.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

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
    let child = command.spawn().map_err(|source| StorageError::Spawn {
        argv: display_argv(&argv),
        source,
    })?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
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
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if output.status.success() {
        Ok(CommandOutput { stdout, stderr })
    } else {
        tracing::debug!(argv = %display_argv(&argv), code = ?output.status.code(), %stderr, "host command failed");
        Err(StorageError::CommandFailed {
            argv: display_argv(&argv),
            code: output.status.code(),
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
