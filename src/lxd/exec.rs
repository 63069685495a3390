//! Running a command in an instance with its output recorded (no websocket, no stdin).
//!
//! LXD runs the command, writes stdout and stderr to log files, and the finished operation
//! gives the exit code and the URLs of those logs. The client reads the logs, then deletes
//! them (otherwise they pile up until the instance is deleted).
//!
//! A non-zero exit code is a normal result, not an error. A command that cannot be found
//! (LXD's operation fails with "Command not found") is also returned as a result, with exit
//! code 127 like a shell would, so callers handle both the same way.

use std::collections::BTreeMap;
use std::time::Duration;

use hyper::Method;
use serde::Serialize;

use super::client::{Call, Client};
use super::error::{Error, RequestInfo, Result};
use super::instances::instance_path;
use super::transport::{error_from_answer, with_query, Body, Reply};

/// A command to run.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The argument vector; busybox images need `["sh", "-c", "..."]` for most commands.
    pub command: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub user: Option<u32>,
    pub group: Option<u32>,
    pub cwd: Option<String>,
    /// Bound of the wait; `None` = the client's operation timeout.
    pub timeout: Option<Duration>,
}

impl ExecRequest {
    /// A command from its argument vector.
    pub fn new<S: AsRef<str>>(command: &[S]) -> Self {
        ExecRequest {
            command: command.iter().map(|s| s.as_ref().to_string()).collect(),
            ..Default::default()
        }
    }
    /// `sh -c <script>`.
    pub fn shell(script: &str) -> Self {
        Self::new(&["sh", "-c", script])
    }
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.environment.insert(key.to_string(), value.to_string());
        self
    }
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some(uid);
        self.group = Some(gid);
        self
    }
    pub fn cwd(mut self, cwd: &str) -> Self {
        self.cwd = Some(cwd.to_string());
        self
    }
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

#[derive(Serialize)]
struct ExecBody<'a> {
    command: &'a [String],
    environment: &'a BTreeMap<String, String>,
    #[serde(rename = "wait-for-websocket")]
    wait_for_websocket: bool,
    #[serde(rename = "record-output")]
    record_output: bool,
    interactive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cwd: Option<&'a str>,
}

/// What a finished command gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl Client {
    /// Runs a command in a running instance and returns its exit code and output.
    pub async fn exec(&self, instance: &str, req: &ExecRequest) -> Result<ExecOutput> {
        let url = self.url(&format!("{}/exec", instance_path(instance)), &[]);
        let body = ExecBody {
            command: &req.command,
            environment: &req.environment,
            wait_for_websocket: false,
            record_output: true,
            interactive: false,
            user: req.user,
            group: req.group,
            cwd: req.cwd.as_deref(),
        };
        let (request, reply) = self.send(Call::new(Method::POST, url).json(&body)).await?;
        let op = match reply {
            Reply::Async { operation } => {
                self.wait_operation(
                    &request,
                    &operation.id,
                    req.timeout.unwrap_or(self.operation_timeout()),
                )
                .await?
            }
            Reply::Sync { .. } => {
                return Err(Error::Decode {
                    request,
                    message: "exec answered without an operation".into(),
                })
            }
        };
        let meta = &op.metadata;
        let exit_code = meta
            .get("return")
            .and_then(|v| v.as_i64())
            .and_then(|v| i32::try_from(v).ok());
        let command_not_found = op.err.eq_ignore_ascii_case("command not found");
        let exit_code = match (op.status.as_str(), exit_code) {
            ("Success", Some(code)) => code,
            (_, _) if command_not_found => 127,
            ("Success", None) => {
                return Err(Error::Decode {
                    request,
                    message: format!("exec finished without an exit code: {meta}"),
                })
            }
            _ => {
                return Err(op.into_result(&request).err().unwrap_or(Error::Decode {
                    request,
                    message: "exec failed without a reason".into(),
                }))
            }
        };

        let mut out = ExecOutput {
            exit_code,
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        if let Some(output) = meta.get("output").and_then(|v| v.as_object()) {
            for (fd, target) in [("1", &mut out.stdout), ("2", &mut out.stderr)] {
                if let Some(log_url) = output.get(fd).and_then(|v| v.as_str()) {
                    *target = self.take_log(log_url).await?;
                }
            }
        }
        Ok(out)
    }

    /// Reads a recorded-output log (URL as LXD returned it) and deletes it.
    async fn take_log(&self, log_url: &str) -> Result<Vec<u8>> {
        let url = match self.project() {
            Some(p) => with_query(log_url, &[("project", p)]),
            None => log_url.to_string(),
        };
        let request = RequestInfo::new("GET", &url);
        let raw = self.raw(Method::GET, &url, &[], Body::Empty, None).await?;
        if !raw.status.is_success() {
            return Err(error_from_answer(&request, &raw));
        }
        let data = raw.body.to_vec();
        let del = RequestInfo::new("DELETE", &url);
        let raw = self
            .raw(Method::DELETE, &url, &[], Body::Empty, None)
            .await?;
        if !raw.status.is_success() {
            // The output was read; a log left behind is only clutter.
            tracing::warn!("{}", error_from_answer(&del, &raw));
        }
        Ok(data)
    }
}
