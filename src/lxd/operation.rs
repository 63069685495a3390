//! Waiting for LXD's background operations.
//!
//! An async request returns an operation; its outcome is known only once
//! `GET /1.0/operations/<id>/wait` returns it finished. The wait is done in slices of a few
//! seconds up to a bound, so that a hung operation becomes a [`Error::Timeout`] naming the
//! request and the operation id instead of blocking forever.
//!
//! A finished operation is forgotten by LXD about 5 s later; if it is gone when asked for,
//! the result is [`Error::OperationLost`] and the caller decides from the object's state
//! (the instance endpoints do this for start, stop, create and delete).

use std::time::{Duration, Instant};

use hyper::Method;

use super::client::{decode, Call, Client};
use super::error::{Error, RequestInfo, Result};
use super::transport::{self, Body, Reply};
use super::types::Operation;

/// Longest single `/wait` call; the bound is reached through several of them.
const WAIT_SLICE: Duration = Duration::from_secs(5);

impl Operation {
    /// `Ok(self)` when it succeeded; the typed error (carrying LXD's `err`) when it failed or
    /// was cancelled.
    pub fn into_result(self, request: &RequestInfo) -> Result<Operation> {
        match self.status.as_str() {
            "Success" => Ok(self),
            _ => {
                let message = if self.err.is_empty() {
                    format!("operation ended with status {:?}", self.status)
                } else {
                    self.err.clone()
                };
                let code = u16::try_from(self.status_code).unwrap_or(400);
                Err(Error::from_lxd(
                    request.clone(),
                    code,
                    Some(&self.id),
                    message,
                ))
            }
        }
    }

    pub fn is_finished(&self) -> bool {
        !matches!(self.status.as_str(), "Running" | "Pending" | "")
    }
}

impl Client {
    /// Waits until the operation `id` (started by `request`) has finished, for at most
    /// `bound`, and returns it whatever its status (success, failure, cancelled).
    pub async fn wait_operation(
        &self,
        request: &RequestInfo,
        id: &str,
        bound: Duration,
    ) -> Result<Operation> {
        let deadline = Instant::now() + bound;
        let path = format!("/1.0/operations/{}/wait", transport::encode(id, false));
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let slice = remaining.min(WAIT_SLICE);
            // LXD takes whole seconds; never 0 (that would not wait) nor -1 (forever).
            let secs = slice.as_secs_f64().ceil().max(1.0) as u64;
            let url = self.url(&path, &[("timeout", &secs.to_string())]);
            let wait_request = RequestInfo::new("GET", &url);
            let sliced = Instant::now();
            let raw = self
                .raw(
                    Method::GET,
                    &url,
                    &[],
                    Body::Empty,
                    Some(Duration::from_secs(secs) + self.request_timeout()),
                )
                .await
                .map_err(|e| match e {
                    // Report the timeout against the request the caller made.
                    Error::Timeout { .. } => Error::Timeout {
                        request: request.clone(),
                        operation: Some(id.to_string()),
                        after: bound,
                    },
                    other => other,
                })?;
            let op: Operation = match transport::parse_reply(&wait_request, &raw) {
                Ok(Reply::Sync { metadata, .. }) => decode(&wait_request, metadata)?,
                Ok(Reply::Async { operation }) => operation,
                // The daemon does not know the operation (HTTP 404): it was forgotten, or the
                // daemon restarted. Not an error envelope carrying a 404 code with HTTP 200:
                // that is how Incus 6.0 reports an operation that failed with a "not found"
                // (a start of an instance whose rename a killed Incus left half done fails
                // so: see `repair`), and reading it as lost hid the daemon's message.
                Err(e) if e.is_not_found() && raw.status == hyper::StatusCode::NOT_FOUND => {
                    return Err(Error::OperationLost {
                        request: request.clone(),
                        operation: id.to_string(),
                    })
                }
                // Incus 6.0 answers a `/wait` with an error envelope (HTTP 200, error_code
                // 500) where LXD 5.0 returns the operation: with the operation's `err` when
                // it failed, and with "context deadline exceeded" when it is still running
                // at the end of the wait's timeout. The operation as
                // `GET /1.0/operations/<id>` shows which it was: failed (then its own status
                // code and message classify the error, as with LXD) or still running (then
                // the wait goes on, within the bound).
                Err(e) if answered_by_daemon(&e) => match self.read_operation(id).await {
                    Ok(op) if op.is_finished() => op,
                    Ok(op) if !op.status.is_empty() => {
                        // A wait refused at once, not at its timeout, must not make this a
                        // busy loop.
                        if sliced.elapsed() < Duration::from_millis(200) {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        op
                    }
                    Ok(_) => return Err(e),
                    Err(read) if read.is_not_found() => {
                        return Err(Error::OperationLost {
                            request: request.clone(),
                            operation: id.to_string(),
                        })
                    }
                    Err(_) => return Err(e),
                },
                Err(e) => return Err(e),
            };
            if op.is_finished() {
                tracing::debug!(
                    operation = id,
                    status = %op.status,
                    err = %op.err,
                    "operation finished"
                );
                return Ok(op);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    request: request.clone(),
                    operation: Some(id.to_string()),
                    after: bound,
                });
            }
        }
    }
}

impl Client {
    /// `GET /1.0/operations/<id>`: the operation as it is now, without waiting.
    async fn read_operation(&self, id: &str) -> Result<Operation> {
        // Sent and read here, not through `get_json`, which waits on operations itself.
        let url = self.url(
            &format!("/1.0/operations/{}", transport::encode(id, false)),
            &[],
        );
        let (request, reply) = self.send(Call::new(Method::GET, url)).await?;
        match reply {
            Reply::Sync { metadata, .. } => decode(&request, metadata),
            Reply::Async { operation } => Ok(operation),
        }
    }
}

/// True for an error that is the daemon's own answer (an error envelope), as opposed to no
/// answer or one that could not be read.
fn answered_by_daemon(e: &Error) -> bool {
    !matches!(
        e,
        Error::Transport { .. }
            | Error::Timeout { .. }
            | Error::OperationLost { .. }
            | Error::Decode { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(body: &str) -> Operation {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn failed_operation_carries_err() {
        // `/wait` answer metadata for a duplicate instance name (LXD 5.0.2).
        let o = op(
            r#"{"id":"abc","class":"task","status":"Failure","status_code":400,
            "err":"Failed creating instance record: Add instance info to the database: This \"instances\" entry already exists",
            "metadata":null,"may_cancel":false}"#,
        );
        assert!(o.is_finished());
        let e = o
            .into_result(&RequestInfo::new("POST", "/1.0/instances"))
            .unwrap_err();
        assert!(e.is_conflict(), "{e:?}");
        assert!(e
            .to_string()
            .starts_with("POST /1.0/instances: already exists"));

        // The same operation as Incus 6.0 reports it (`GET /1.0/operations/<id>`).
        let o = op(
            r#"{"id":"abe","class":"task","status":"Failure","status_code":400,
            "err":"Failed creating instance record: Add instance info to the database: Failed to create \"instances\" entry: UNIQUE constraint failed: instances.project_id, instances.name",
            "metadata":null,"may_cancel":false}"#,
        );
        let e = o
            .into_result(&RequestInfo::new("POST", "/1.0/instances"))
            .unwrap_err();
        assert!(e.is_conflict(), "{e:?}");

        let o = op(
            r#"{"id":"abd","status":"Failure","status_code":400,"err":"The instance is already stopped"}"#,
        );
        let e = o
            .into_result(&RequestInfo::new("PUT", "/1.0/instances/c/state"))
            .unwrap_err();
        assert_eq!(e.message(), "The instance is already stopped");
        assert!(matches!(e, Error::OperationFailed { ref operation, .. } if operation == "abd"));
    }

    #[test]
    fn success_and_running() {
        let o = op(r#"{"id":"x","status":"Success","status_code":200,"metadata":{"return":3}}"#);
        assert!(o.is_finished());
        let o = o.into_result(&RequestInfo::new("POST", "/x")).unwrap();
        assert_eq!(o.metadata["return"], 3);
        let running = op(r#"{"id":"y","status":"Running","status_code":103}"#);
        assert!(!running.is_finished());
    }
}
