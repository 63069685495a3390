//! Typed errors of the LXD client.
//!
//! Every error names the request that caused it (method and path) and, when LXD answered, LXD's
//! own message. LXD's status codes are not consistent (a duplicate profile is a 500, a duplicate
//! volume a 409, an instance name clash only shows up as a failed operation), so the kind is
//! derived from the HTTP status *and* the message: callers match on the kind, or use the
//! `is_*` helpers, and never parse messages themselves.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The request an error belongs to: `GET /1.0/instances/c1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// HTTP method.
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
}

impl RequestInfo {
    pub(crate) fn new(method: &str, path: &str) -> Self {
        RequestInfo {
            method: method.to_string(),
            path: path.to_string(),
        }
    }
}

impl fmt::Display for RequestInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// The HTTPS remote an error belongs to: its name and address (boxed in [`Error`], which
/// stays small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAt {
    pub name: String,
    /// As written in config.yml: `https://HOST:PORT`.
    pub addr: String,
}

impl fmt::Display for RemoteAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "remote {:?} at {}", self.name, self.addr)
    }
}

/// Hint appended to every transport error.
pub(crate) const START_HINT: &str = "is LXD (or Incus) running? start it (e.g. `bash scripts/testbed.sh`, or `lxd --group root`), or point --socket at its unix socket";

/// An error from the LXD client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object does not exist (HTTP 404, or a failed operation saying so).
    #[error("{request}: not found: {message}")]
    NotFound {
        request: RequestInfo,
        message: String,
    },
    /// The object already exists (409, LXD's 500 "already exists", or an operation that failed
    /// with "entry already exists", or with Incus's "UNIQUE constraint failed").
    #[error("{request}: already exists: {message}")]
    Conflict {
        request: RequestInfo,
        message: String,
    },
    /// The object changed since it was read: the ETag sent with `If-Match` is stale (412).
    #[error("{request}: changed since it was read (stale ETag): {message}")]
    PreconditionFailed {
        request: RequestInfo,
        message: String,
    },
    /// The object is busy: an instance that is running, a profile or volume still in use.
    #[error("{request}: in use: {message}")]
    InUse {
        request: RequestInfo,
        message: String,
    },
    /// LXD refused the request as invalid (other 4xx).
    #[error("{request}: refused by LXD: {message}")]
    BadRequest {
        request: RequestInfo,
        message: String,
    },
    /// LXD failed (other 5xx, or an unexpected status).
    #[error("{request}: LXD error {status}: {message}")]
    Server {
        request: RequestInfo,
        status: u16,
        message: String,
    },
    /// The request was accepted but its background operation failed for a reason that is none
    /// of the kinds above.
    #[error("{request}: operation {operation} failed: {message}")]
    OperationFailed {
        request: RequestInfo,
        operation: String,
        message: String,
    },
    /// No answer within the bound: the HTTP request itself, or the operation it started
    /// (which may still be running in LXD: look at the state before retrying).
    #[error("{request}: no result after {after:?}{}", operation_suffix(.operation))]
    Timeout {
        request: RequestInfo,
        operation: Option<String>,
        after: Duration,
    },
    /// The operation was no longer known to LXD when its result was asked for (LXD forgets
    /// finished operations ~5 s after they end). Its outcome is unknown: look at the state.
    #[error(
        "{request}: operation {operation} vanished before its result was read; check the state"
    )]
    OperationLost {
        request: RequestInfo,
        operation: String,
    },
    /// The socket is missing, is not a socket, or does not answer.
    #[error("{request}: cannot reach LXD at {}: {message} ({START_HINT})", socket.display())]
    Transport {
        request: RequestInfo,
        socket: PathBuf,
        message: String,
    },
    /// An HTTPS remote cannot be reached: no connection, or a TLS handshake that failed for
    /// another reason than the server's certificate.
    #[error("{request}: cannot reach {remote}: {message} (is the daemon listening there? `lxc config get core.https_address` on the server; check the address in the remote's config.yml)")]
    RemoteTransport {
        request: RequestInfo,
        remote: Box<RemoteAt>,
        message: String,
    },
    /// The remote's certificate is not the pinned one: refused during the TLS handshake,
    /// before any request was sent.
    #[error("{request}: {remote} presented a server certificate that is not the pinned one ({}): {message}; nothing was sent. If the server's certificate was replaced on purpose, check the new fingerprint on the server and replace the pinned file (or `lxc remote remove` and `lxc remote add` it again)", pinned.display())]
    CertificateMismatch {
        request: RequestInfo,
        remote: Box<RemoteAt>,
        pinned: PathBuf,
        message: String,
    },
    /// The remote does not trust the client's certificate: LXD answers `GET /1.0` with
    /// `"auth": "untrusted"` (and every other endpoint with 403).
    #[error("{request}: {remote} does not trust the client certificate {}: {message}; nothing was changed. Trust it on the server: copy it there and run `lxc config trust add client.crt` (Incus: `incus config trust add-certificate client.crt`)", cert.display())]
    Untrusted {
        request: RequestInfo,
        remote: Box<RemoteAt>,
        cert: PathBuf,
        message: String,
    },
    /// LXD answered something this client cannot read.
    #[error("{request}: unexpected answer from LXD: {message}")]
    Decode {
        request: RequestInfo,
        message: String,
    },
}

fn operation_suffix(op: &Option<String>) -> String {
    match op {
        Some(id) => format!(" (operation {id} may still be running)"),
        None => String::new(),
    }
}

/// Result alias of the LXD client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The request that caused the error.
    pub fn request(&self) -> &RequestInfo {
        match self {
            Error::NotFound { request, .. }
            | Error::Conflict { request, .. }
            | Error::PreconditionFailed { request, .. }
            | Error::InUse { request, .. }
            | Error::BadRequest { request, .. }
            | Error::Server { request, .. }
            | Error::OperationFailed { request, .. }
            | Error::Timeout { request, .. }
            | Error::OperationLost { request, .. }
            | Error::Transport { request, .. }
            | Error::RemoteTransport { request, .. }
            | Error::CertificateMismatch { request, .. }
            | Error::Untrusted { request, .. }
            | Error::Decode { request, .. } => request,
        }
    }

    /// LXD's message (or the transport's), without the request prefix.
    pub fn message(&self) -> String {
        match self {
            Error::NotFound { message, .. }
            | Error::Conflict { message, .. }
            | Error::PreconditionFailed { message, .. }
            | Error::InUse { message, .. }
            | Error::BadRequest { message, .. }
            | Error::Server { message, .. }
            | Error::OperationFailed { message, .. }
            | Error::Transport { message, .. }
            | Error::RemoteTransport { message, .. }
            | Error::CertificateMismatch { message, .. }
            | Error::Untrusted { message, .. }
            | Error::Decode { message, .. } => message.clone(),
            Error::Timeout { after, .. } => format!("no result after {after:?}"),
            Error::OperationLost { operation, .. } => format!("operation {operation} vanished"),
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }
    pub fn is_precondition_failed(&self) -> bool {
        matches!(self, Error::PreconditionFailed { .. })
    }
    pub fn is_in_use(&self) -> bool {
        matches!(self, Error::InUse { .. })
    }
    pub fn is_bad_request(&self) -> bool {
        matches!(self, Error::BadRequest { .. })
    }
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }
    pub fn is_operation_lost(&self) -> bool {
        matches!(self, Error::OperationLost { .. })
    }
    /// The daemon cannot be reached (local socket or HTTPS remote).
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            Error::Transport { .. } | Error::RemoteTransport { .. }
        )
    }
    /// An HTTPS remote presented another certificate than the pinned one.
    pub fn is_certificate_mismatch(&self) -> bool {
        matches!(self, Error::CertificateMismatch { .. })
    }
    /// An HTTPS remote does not trust the client certificate.
    pub fn is_untrusted(&self) -> bool {
        matches!(self, Error::Untrusted { .. })
    }

    /// True when the outcome of the request is unknown (timeout, vanished operation, lost
    /// connection): the caller should look at the state, then retry idempotently.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(
            self,
            Error::Timeout { .. }
                | Error::OperationLost { .. }
                | Error::Transport { .. }
                | Error::RemoteTransport { .. }
        )
    }

    /// True when a change may have happened although it was not reported as done: its outcome
    /// is unknown (see [`Error::is_outcome_unknown`]), or LXD reported a failure that is not a
    /// plain refusal (a failed operation, a server error), which LXD 5.0 also reports for
    /// changes it made before a later part failed. The caller looks at the live state before
    /// it believes the failure.
    pub fn outcome_needs_checking(&self) -> bool {
        self.is_outcome_unknown()
            || matches!(self, Error::OperationFailed { .. } | Error::Server { .. })
    }

    /// Builds the error for an LXD error answer or a failed operation, from the HTTP (or
    /// operation) status and LXD's message.
    pub(crate) fn from_lxd(
        request: RequestInfo,
        status: u16,
        operation: Option<&str>,
        message: String,
    ) -> Error {
        let m = message.to_ascii_lowercase();
        // LXD 5.0 says "already exists"; Incus 6.0 passes the database's own words up for a
        // duplicate instance or snapshot name ("UNIQUE constraint failed: instances.name").
        if m.contains("already exists") || m.contains("unique constraint failed") {
            return Error::Conflict { request, message };
        }
        if status == 412 || m.contains("etag doesn't match") {
            return Error::PreconditionFailed { request, message };
        }
        if status == 404 {
            return Error::NotFound { request, message };
        }
        if status == 409 {
            return Error::Conflict { request, message };
        }
        if m.contains("is running")
            || m.contains("in use")
            || m.contains("used by running")
            || m.contains("is busy")
        {
            return Error::InUse { request, message };
        }
        if let Some(operation) = operation {
            // A failed operation carries no useful HTTP status (always 400); only its message
            // tells what happened.
            if m.contains("not found") {
                return Error::NotFound { request, message };
            }
            return Error::OperationFailed {
                request,
                operation: operation.to_string(),
                message,
            };
        }
        match status {
            400..=499 => Error::BadRequest { request, message },
            _ => Error::Server {
                request,
                status,
                message,
            },
        }
    }
}

/// Turns a NotFound error into `None`, for callers to whom "absent" is an answer.
pub trait OptionalExt<T> {
    /// `Ok(Some(v))` on success, `Ok(None)` when the object does not exist, other errors as is.
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExt<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> RequestInfo {
        RequestInfo::new("POST", "/1.0/profiles")
    }

    /// HTTP status, operation id (for failed operations), LXD's message, expected kind.
    type Case = (u16, Option<&'static str>, &'static str, fn(&Error) -> bool);

    #[test]
    fn kinds_follow_status_and_message() {
        // Messages captured from LXD 5.0.2.
        let cases: &[Case] = &[
            (404, None, "Instance not found", Error::is_not_found),
            (500, None, "Error inserting \"p\" into database: The profile already exists", Error::is_conflict),
            (409, None, "Volume by that name already exists", Error::is_conflict),
            (
                400,
                Some("op1"),
                "Failed creating instance record: Add instance info to the database: This \"instances\" entry already exists",
                Error::is_conflict,
            ),
            // Incus 6.0.4.
            (
                400,
                Some("op3"),
                "Failed creating instance snapshot record \"s1\": Add snapshot info to the database: Failed to create \"instances_snapshots\" entry: UNIQUE constraint failed: instances_snapshots.instance_id, instances_snapshots.name",
                Error::is_conflict,
            ),
            (412, None, "ETag doesn't match: abc vs def", Error::is_precondition_failed),
            (400, None, "Instance is running", Error::is_in_use),
            (500, None, "Profile is currently in use", Error::is_in_use),
            (400, None, "The storage volume is still in use", Error::is_in_use),
            (400, None, "Instance is not running", Error::is_bad_request),
            (400, None, "Unknown action: 'jump'", Error::is_bad_request),
        ];
        for (status, op, msg, check) in cases {
            let e = Error::from_lxd(req(), *status, *op, msg.to_string());
            assert!(check(&e), "{status} {msg:?} classified as {e:?}");
            assert_eq!(e.message(), *msg);
            assert_eq!(e.request(), &req());
        }
        let e = Error::from_lxd(
            req(),
            500,
            None,
            "Invalid config: Unknown configuration key: bogus.key".into(),
        );
        assert!(matches!(e, Error::Server { status: 500, .. }));
        let e = Error::from_lxd(
            req(),
            400,
            Some("op2"),
            "Failed getting root disk: No root device could be found".into(),
        );
        assert!(matches!(&e, Error::OperationFailed { operation, .. } if operation == "op2"));
    }

    #[test]
    fn display_names_request_and_message() {
        let e = Error::from_lxd(
            RequestInfo::new("GET", "/1.0/instances/nope"),
            404,
            None,
            "Instance not found".into(),
        );
        assert_eq!(
            e.to_string(),
            "GET /1.0/instances/nope: not found: Instance not found"
        );
        let t = Error::Timeout {
            request: RequestInfo::new("PUT", "/1.0/instances/c1/state"),
            operation: Some("1234".into()),
            after: Duration::from_secs(2),
        };
        let s = t.to_string();
        assert!(
            s.contains("PUT /1.0/instances/c1/state") && s.contains("1234") && s.contains("2s"),
            "{s}"
        );
        let tr = Error::Transport {
            request: RequestInfo::new("GET", "/1.0"),
            socket: PathBuf::from("/nope/unix.socket"),
            message: "socket does not exist".into(),
        };
        assert!(tr.to_string().contains("/nope/unix.socket"));
        assert!(tr.is_outcome_unknown());
    }

    #[test]
    fn remote_errors_name_the_remote_and_are_classified() {
        let remote = || {
            Box::new(RemoteAt {
                name: "box".into(),
                addr: "https://10.0.0.5:8443".into(),
            })
        };
        let request = || RequestInfo::new("GET", "/1.0");
        let down = Error::RemoteTransport {
            request: request(),
            remote: remote(),
            message: "cannot connect: Connection refused".into(),
        };
        assert!(down.is_transport() && down.is_outcome_unknown());
        let mismatch = Error::CertificateMismatch {
            request: request(),
            remote: remote(),
            pinned: PathBuf::from("/c/servercerts/box.crt"),
            message: "its SHA-256 fingerprint is aa".into(),
        };
        let untrusted = Error::Untrusted {
            request: request(),
            remote: remote(),
            cert: PathBuf::from("/c/client.crt"),
            message: "GET /1.0 answered \"auth\": \"untrusted\"".into(),
        };
        // Refusals before anything was sent or changed: not "outcome unknown", not worth a
        // retry.
        for e in [&mismatch, &untrusted] {
            assert!(!e.is_transport() && !e.outcome_needs_checking(), "{e:?}");
        }
        assert!(mismatch.is_certificate_mismatch() && untrusted.is_untrusted());
        for (e, file) in [
            (&down, ""),
            (&mismatch, "/c/servercerts/box.crt"),
            (&untrusted, "/c/client.crt"),
        ] {
            let s = e.to_string();
            assert!(
                s.contains("remote \"box\" at https://10.0.0.5:8443") && s.contains(file),
                "{s}"
            );
        }
    }

    #[test]
    fn optional_maps_only_not_found() {
        let nf: Result<u8> = Err(Error::from_lxd(req(), 404, None, "x".into()));
        assert!(nf.optional().unwrap().is_none());
        let ok: Result<u8> = Ok(3);
        assert_eq!(ok.optional().unwrap(), Some(3));
        let other: Result<u8> = Err(Error::from_lxd(req(), 500, None, "boom".into()));
        assert!(other.optional().is_err());
    }
}
