//! The HTTP layer: a hyper client over the unix socket or HTTPS (a fresh connection per request),
//! bounded requests, URL building and the parsing of LXD's response envelope.
//!
//! Nothing here knows about instances or profiles: it sends a request and returns either raw
//! bytes (files, exec logs) or a [`Reply`] (the `sync`/`async`/`error` envelope, already turned
//! into a typed [`Error`] for error answers).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Method, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;
use serde::Deserialize;
use serde_json::Value;

use super::error::{Error, RemoteAt, RequestInfo, Result};
use super::remote::HttpsRemote;
use super::tls;
use super::types::Operation;

/// A request body: JSON, raw bytes with their content type, or nothing.
#[derive(Clone)]
pub(crate) enum Body {
    Empty,
    Json(Vec<u8>),
    Bytes {
        content_type: &'static str,
        data: Bytes,
    },
}

/// An answer as received: status, headers and the whole body.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RawResponse {
    /// A header as text, if present and readable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The client of one daemon: over its unix socket, or an HTTPS remote.
pub(crate) struct Transport {
    target: Target,
}

enum Target {
    Unix {
        socket: PathBuf,
        http: HyperClient<UnixConnector, Full<Bytes>>,
    },
    Https {
        /// The remote's name, as the user gave it.
        remote: String,
        /// Its address as written in config.yml, for messages.
        addr: String,
        https: Arc<HttpsRemote>,
    },
}

impl Transport {
    pub fn new(socket: PathBuf) -> Self {
        // No idle pool: one fresh connection per request. With a pool, hyper races a new
        // connect against the return of a busy connection and, when the busy one wins, keeps
        // the new one idle without ever writing to it. LXD 5.0.2 reads the first bytes of
        // each new connection inside its accept loop, so one such silent connection stops the
        // daemon from accepting any other client (its own start/stop hooks included) until it
        // closes: requests hung for up to the idle timeout and starts and stops failed.
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(UnixConnector);
        Transport {
            target: Target::Unix { socket, http },
        }
    }

    /// A transport to an HTTPS remote. Like the unix one it opens a fresh connection (TCP and
    /// TLS handshake) per request and keeps none idle, so that no idle connection can sit in
    /// LXD's accept path as described in [`Transport::new`].
    pub fn https(remote: &str, addr: &str, https: Arc<HttpsRemote>) -> Self {
        Transport {
            target: Target::Https {
                remote: remote.to_string(),
                addr: addr.to_string(),
                https,
            },
        }
    }

    /// The unix socket; empty for an HTTPS remote.
    pub fn socket(&self) -> &Path {
        match &self.target {
            Target::Unix { socket, .. } => socket,
            Target::Https { .. } => Path::new(""),
        }
    }

    /// The HTTPS remote's name, address and files, if this is one.
    pub fn remote(&self) -> Option<(&str, &str, &HttpsRemote)> {
        match &self.target {
            Target::Unix { .. } => None,
            Target::Https {
                remote,
                addr,
                https,
            } => Some((remote, addr, https)),
        }
    }

    /// Sends one request and reads the whole answer, within `timeout`.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(String, String)],
        body: Body,
        timeout: Duration,
    ) -> Result<RawResponse> {
        let info = RequestInfo::new(method.as_str(), path_and_query);
        let uri = match &self.target {
            Target::Unix { socket, .. } => unix_uri(socket, path_and_query),
            Target::Https { .. } => path_and_query
                .parse::<hyper::Uri>()
                .map_err(|e| format!("invalid request path {path_and_query:?}: {e}")),
        }
        .map_err(|message| Error::Decode {
            request: info.clone(),
            message,
        })?;
        let mut builder = hyper::Request::builder().method(method.clone()).uri(uri);
        if let Target::Https { https, .. } = &self.target {
            builder = builder.header("Host", host_header(&https.host, https.port));
        }
        for (k, v) in headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let bytes = match body {
            Body::Empty => Bytes::new(),
            Body::Json(v) => {
                builder = builder.header("Content-Type", "application/json");
                Bytes::from(v)
            }
            Body::Bytes { content_type, data } => {
                builder = builder.header("Content-Type", content_type);
                data
            }
        };
        let request = builder.body(Full::new(bytes)).map_err(|e| Error::Decode {
            request: info.clone(),
            message: format!("cannot build the request: {e}"),
        })?;

        let started = Instant::now();
        let exchange = async {
            let resp = match &self.target {
                Target::Unix { http, .. } => http.request(request).await.map_err(|e| {
                    let detail = error_chain(&e);
                    self.transport_error(&info, detail)
                })?,
                Target::Https { https, .. } => self.https_request(https, &info, request).await?,
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.transport_error(&info, format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, Error>(RawResponse {
                status,
                headers,
                body,
            })
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                request: info.clone(),
                operation: None,
                after: timeout,
            }),
        };
        let ms = started.elapsed().as_millis();
        match &result {
            Ok(r) => tracing::debug!(
                method = %method,
                path = path_and_query,
                status = r.status.as_u16(),
                ms,
                "lxd request"
            ),
            Err(e) => tracing::debug!(
                method = %method,
                path = path_and_query,
                ms,
                error = %e,
                "lxd request failed"
            ),
        }
        result
    }

    /// One request over a new TCP connection and TLS session to an HTTPS remote.
    async fn https_request(
        &self,
        https: &HttpsRemote,
        info: &RequestInfo,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let tcp = tokio::net::TcpStream::connect((https.host.as_str(), https.port))
            .await
            .map_err(|e| self.transport_error(info, format!("cannot connect: {e}")))?;
        // Requests are small and each connection carries one: do not wait to fill segments.
        let _ = tcp.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(https.tls.config.clone())
            .connect(https.server_name.clone(), tcp)
            .await
            .map_err(|e| self.handshake_error(https, info, e))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| self.transport_error(info, error_chain(&e)))?;
        // The connection runs beside the request and ends when the answer has been read and
        // the sender dropped; its own errors show up in `send_request` or the body read.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        sender
            .send_request(request)
            .await
            .map_err(|e| self.transport_error(info, error_chain(&e)))
    }

    /// A failed TLS handshake: the pinned certificate did not match, or another failure.
    fn handshake_error(&self, https: &HttpsRemote, info: &RequestInfo, e: std::io::Error) -> Error {
        let rustls_error = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if rustls_error == Some(&tls::MISMATCH) {
            if let Target::Https { remote, addr, .. } = &self.target {
                let presented = https
                    .tls
                    .verifier
                    .refused_fingerprint()
                    .unwrap_or_else(|| "unknown".into());
                return Error::CertificateMismatch {
                    request: info.clone(),
                    remote: remote_at(remote, addr),
                    pinned: https.server_cert.clone(),
                    message: format!(
                        "its SHA-256 fingerprint is {presented}, the pinned one's is {}",
                        https.tls.verifier.pinned_fingerprint()
                    ),
                };
            }
        }
        self.transport_error(info, format!("TLS handshake failed: {}", error_chain(&e)))
    }

    /// A transport error that says what is wrong with the socket path, or names the remote.
    fn transport_error(&self, info: &RequestInfo, detail: String) -> Error {
        match &self.target {
            Target::Unix { socket, .. } => Error::Transport {
                request: info.clone(),
                socket: socket.clone(),
                message: describe_socket_problem(socket, &detail),
            },
            Target::Https { remote, addr, .. } => Error::RemoteTransport {
                request: info.clone(),
                remote: remote_at(remote, addr),
                message: detail,
            },
        }
    }
}

/// Explains why a socket path cannot be used: missing, not a socket, or not answering.
pub(crate) fn describe_socket_problem(socket: &Path, detail: &str) -> String {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(socket) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "the socket does not exist".to_string()
        }
        Ok(m) if !m.file_type().is_socket() => {
            "the path exists but is not a unix socket".to_string()
        }
        _ => format!("no answer: {detail}"),
    }
}

pub(crate) fn remote_at(name: &str, addr: &str) -> Box<RemoteAt> {
    Box::new(RemoteAt {
        name: name.to_string(),
        addr: addr.to_string(),
    })
}

/// `HOST:PORT` for the Host header, with an IPv6 host in brackets.
fn host_header(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The whole `source()` chain of an error, joined: hyper's top-level messages are vague.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// A `unix://<hex socket path>:0/<path>` URI as hyperlocal's connector expects, built without
/// panicking on unusual input.
fn unix_uri(socket: &Path, path_and_query: &str) -> std::result::Result<hyper::Uri, String> {
    use std::fmt::Write;
    let mut hex = String::with_capacity(socket.as_os_str().len() * 2);
    for b in socket.as_os_str().as_encoded_bytes() {
        let _ = write!(hex, "{b:02x}");
    }
    format!("unix://{hex}:0{path_and_query}")
        .parse()
        .map_err(|e| format!("invalid request path {path_and_query:?}: {e}"))
}

/// Percent-encodes a path segment or query value (everything but unreserved characters;
/// `/` is kept when `keep_slash`).
pub(crate) fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/');
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Appends query parameters (values encoded) to a path that may already have a query.
pub(crate) fn with_query(path: &str, query: &[(&str, &str)]) -> String {
    let mut out = path.to_string();
    let mut sep = if path.contains('?') { '&' } else { '?' };
    for (k, v) in query {
        out.push(sep);
        out.push_str(k);
        out.push('=');
        out.push_str(&encode(v, true));
        sep = '&';
    }
    out
}

/// LXD's response envelope.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub error_code: u16,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub metadata: Value,
}

/// A successful answer, read from the envelope.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Done: the metadata, and the ETag when the object has one.
    Sync {
        metadata: Value,
        etag: Option<String>,
    },
    /// Accepted: the operation to wait for.
    Async { operation: Operation },
}

/// Reads an answer: an error answer becomes a typed [`Error`], a sync or async answer a
/// [`Reply`].
pub(crate) fn parse_reply(request: &RequestInfo, raw: &RawResponse) -> Result<Reply> {
    if !raw.status.is_success() {
        return Err(error_from_answer(request, raw));
    }
    let env: Envelope = serde_json::from_slice(&raw.body).map_err(|e| Error::Decode {
        request: request.clone(),
        message: format!(
            "HTTP {} with a body that is not LXD's envelope ({e}): {}",
            raw.status.as_u16(),
            snippet(&raw.body)
        ),
    })?;
    match env.kind.as_str() {
        "sync" => Ok(Reply::Sync {
            metadata: env.metadata,
            etag: raw.header("etag").map(str::to_string),
        }),
        "async" => {
            let mut operation: Operation =
                serde_json::from_value(env.metadata).map_err(|e| Error::Decode {
                    request: request.clone(),
                    message: format!("async answer without a readable operation: {e}"),
                })?;
            if operation.id.is_empty() {
                operation.id = env
                    .operation
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string();
            }
            if operation.id.is_empty() {
                return Err(Error::Decode {
                    request: request.clone(),
                    message: "async answer without an operation id".into(),
                });
            }
            Ok(Reply::Async { operation })
        }
        "error" => Err(Error::from_lxd(
            request.clone(),
            if env.error_code == 0 {
                raw.status.as_u16()
            } else {
                env.error_code
            },
            None,
            env.error,
        )),
        other => Err(Error::Decode {
            request: request.clone(),
            message: format!("unknown answer type {other:?}"),
        }),
    }
}

/// The typed error for a non-2xx answer, using LXD's message when the body is an envelope.
pub(crate) fn error_from_answer(request: &RequestInfo, raw: &RawResponse) -> Error {
    let status = raw.status.as_u16();
    let message = match serde_json::from_slice::<Envelope>(&raw.body) {
        Ok(env) if !env.error.is_empty() => env.error,
        _ if raw.body.is_empty() => raw
            .status
            .canonical_reason()
            .unwrap_or("no message")
            .to_string(),
        _ => snippet(&raw.body),
    };
    Error::from_lxd(request.clone(), status, None, message)
}

/// The start of a body, as text, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let t = text.trim();
    match t.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(status: u16, body: &str, etag: Option<&str>) -> RawResponse {
        let mut headers = HeaderMap::new();
        if let Some(e) = etag {
            headers.insert("etag", e.parse().unwrap());
        }
        RawResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Bytes::from(body.to_string()),
        }
    }

    fn req() -> RequestInfo {
        RequestInfo::new("GET", "/1.0/instances/c1")
    }

    #[test]
    fn sync_answer_with_etag() {
        let body = r#"{"type":"sync","status":"Success","status_code":200,"operation":"","error_code":0,"error":"","metadata":{"name":"c1","status":"Running"}}"#;
        match parse_reply(&req(), &raw(200, body, Some("\"abc\""))).unwrap() {
            Reply::Sync { metadata, etag } => {
                assert_eq!(metadata["name"], "c1");
                assert_eq!(etag.as_deref(), Some("\"abc\""));
            }
            other => panic!("expected sync, got {other:?}"),
        }
    }

    #[test]
    fn async_answer_gives_operation() {
        let body = r#"{"type":"async","status":"Operation created","status_code":100,"operation":"/1.0/operations/6916c8a6-9b7d-4abd-90b3-aedfec7f7492","error_code":0,"error":"","metadata":{"id":"6916c8a6-9b7d-4abd-90b3-aedfec7f7492","class":"task","description":"Creating instance","created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z","status":"Running","status_code":103,"resources":{"instances":["/1.0/instances/r-tpl"]},"metadata":null,"may_cancel":false,"err":"","location":"none"}}"#;
        match parse_reply(&req(), &raw(202, body, None)).unwrap() {
            Reply::Async { operation } => {
                assert_eq!(operation.id, "6916c8a6-9b7d-4abd-90b3-aedfec7f7492");
                assert_eq!(operation.status, "Running");
                assert_eq!(operation.class, "task");
            }
            other => panic!("expected async, got {other:?}"),
        }
    }

    #[test]
    fn error_answers_are_typed() {
        let nf = r#"{"type":"error","status":"","status_code":0,"operation":"","error_code":404,"error":"Instance not found","metadata":null}"#;
        let e = parse_reply(&req(), &raw(404, nf, None)).unwrap_err();
        assert!(e.is_not_found(), "{e:?}");
        assert_eq!(e.message(), "Instance not found");

        let stale = r#"{"type":"error","error_code":412,"error":"ETag doesn't match: 1 vs 2","metadata":null}"#;
        assert!(parse_reply(&req(), &raw(412, stale, None))
            .unwrap_err()
            .is_precondition_failed());

        let dup = r#"{"type":"error","error_code":500,"error":"Error inserting \"p\" into database: The profile already exists","metadata":null}"#;
        assert!(parse_reply(&req(), &raw(500, dup, None))
            .unwrap_err()
            .is_conflict());

        // Not an envelope at all: the status decides, the body is the message.
        let e = parse_reply(&req(), &raw(502, "bad gateway", None)).unwrap_err();
        assert!(
            matches!(&e, Error::Server { status: 502, message, .. } if message == "bad gateway")
        );
        // A 200 that is not JSON.
        let e = parse_reply(&req(), &raw(200, "<html>", None)).unwrap_err();
        assert!(matches!(e, Error::Decode { .. }));
    }

    #[test]
    fn encoding_and_query() {
        assert_eq!(encode("/etc/a b&c", true), "/etc/a%20b%26c");
        assert_eq!(encode("a/b", false), "a%2Fb");
        assert_eq!(
            with_query("/1.0/instances", &[("recursion", "1"), ("project", "p")]),
            "/1.0/instances?recursion=1&project=p"
        );
        assert_eq!(with_query("/x?a=1", &[("b", "2")]), "/x?a=1&b=2");
    }

    #[test]
    fn uri_carries_socket_in_hex() {
        let u = unix_uri(Path::new("/var/lib/lxd/unix.socket"), "/1.0?x=1").unwrap();
        assert_eq!(u.scheme_str(), Some("unix"));
        assert_eq!(u.path_and_query().unwrap().as_str(), "/1.0?x=1");
        assert!(unix_uri(Path::new("/s"), "/bad path").is_err());
    }
}
