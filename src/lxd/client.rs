//! The [`Client`]: finding the socket, connecting, and the request helpers every endpoint
//! file builds on (project parameter, JSON bodies, sync/async answers).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::error::{Error, RequestInfo, Result};
use super::remote::{Endpoint, Remote};
use super::transport::{self, Body, RawResponse, Reply, Transport};
use super::types::{Operation, ServerInfo, ServerKind};

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Explicit socket path (the CLI's `--socket`); otherwise the usual places are tried.
    pub socket: Option<PathBuf>,
    /// Project for every request; `None` = the server's default project.
    pub project: Option<String>,
    /// Bound of one HTTP request. Default 60 s: LXD 5.0.2 was seen to stall every request for
    /// ~30 s when a container start/stop hook overlaps other operations.
    pub request_timeout: Duration,
    /// Default bound of the wait for an operation (start, copy, delete...).
    pub operation_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            socket: None,
            project: None,
            request_timeout: Duration::from_secs(60),
            operation_timeout: Duration::from_secs(120),
        }
    }
}

/// The sockets tried, in order, when none is given: `$LXD_DIR/unix.socket`,
/// `$INCUS_DIR/unix.socket`, then the Debian/source LXD, snap LXD and Incus paths.
pub fn socket_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for var in ["LXD_DIR", "INCUS_DIR"] {
        if let Some(dir) = std::env::var_os(var) {
            if !dir.is_empty() {
                out.push(Path::new(&dir).join("unix.socket"));
            }
        }
    }
    out.extend(
        [
            "/var/lib/lxd/unix.socket",
            "/var/snap/lxd/common/lxd/unix.socket",
            "/var/lib/incus/unix.socket",
        ]
        .iter()
        .map(PathBuf::from),
    );
    out
}

struct Inner {
    transport: Transport,
    server: ServerInfo,
    kind: ServerKind,
    request_timeout: Duration,
}

/// A connection to one LXD (or Incus) daemon, bound to one project.
///
/// Cheap to clone (an `Arc` inside); clones share the connection pool and can be used from
/// many tasks at once.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    project: Option<Arc<str>>,
    operation_timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("daemon", &describe(&self.inner.transport))
            .field("kind", &self.inner.kind)
            .field("project", &self.project)
            .finish()
    }
}

impl Client {
    /// Connects: finds the socket (see [`socket_candidates`]), reads `GET /1.0` and records
    /// the server kind, version and API extensions.
    ///
    /// With an explicit socket only that one is tried. Otherwise the first existing socket
    /// that answers wins; the error names the sockets tried.
    pub async fn connect(options: ConnectOptions) -> Result<Client> {
        if let Some(socket) = &options.socket {
            return Self::connect_to(socket.clone(), &options).await;
        }
        let candidates = socket_candidates();
        let mut last_error = None;
        for socket in &candidates {
            if !socket.exists() {
                continue;
            }
            match Self::connect_to(socket.clone(), &options).await {
                Ok(c) => return Ok(c),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Transport {
            request: RequestInfo::new("GET", "/1.0"),
            socket: candidates.first().cloned().unwrap_or_default(),
            message: format!(
                "no LXD or Incus socket found (tried {})",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }))
    }

    /// Connects to a remote of the `lxc`/`incus` client configuration ([`Remote::find`]): over
    /// HTTPS with the client certificate and the pinned server certificate, or, for a
    /// `unix://` remote, to that socket (`options.socket` is then ignored). The remote's own
    /// project applies when `options.project` is `None`.
    ///
    /// A server that does not trust the client certificate is refused here
    /// ([`Error::Untrusted`]), before any other request.
    pub async fn connect_remote(remote: &Remote, options: ConnectOptions) -> Result<Client> {
        let options = ConnectOptions {
            project: options.project.clone().or_else(|| remote.project.clone()),
            ..options
        };
        match &remote.endpoint {
            Endpoint::Unix(socket) => {
                Self::connect(ConnectOptions {
                    socket: socket.clone(),
                    ..options
                })
                .await
            }
            Endpoint::Https(https) => {
                let transport = Transport::https(&remote.name, &remote.addr, https.clone());
                Self::connect_with(transport, &options).await
            }
        }
    }

    async fn connect_to(socket: PathBuf, options: &ConnectOptions) -> Result<Client> {
        Self::connect_with(Transport::new(socket), options).await
    }

    async fn connect_with(transport: Transport, options: &ConnectOptions) -> Result<Client> {
        let request = RequestInfo::new("GET", "/1.0");
        let raw = transport
            .send(
                Method::GET,
                "/1.0",
                &[],
                Body::Empty,
                options.request_timeout,
            )
            .await?;
        let server: ServerInfo = match transport::parse_reply(&request, &raw)? {
            Reply::Sync { metadata, .. } => decode(&request, metadata)?,
            Reply::Async { .. } => {
                return Err(Error::Decode {
                    request,
                    message: "GET /1.0 answered with an operation".into(),
                })
            }
        };
        if let Some((remote, addr, https)) = transport.remote() {
            // LXD answers GET /1.0 to any TLS client, with `"auth": "untrusted"` and a short
            // public subset when it does not trust the certificate, and 403 "not authorized" on
            // every other endpoint: refuse here, with the fix, rather than at the first change.
            if server.auth != "trusted" {
                return Err(Error::Untrusted {
                    request,
                    remote: transport::remote_at(remote, addr),
                    cert: https.client_cert.clone(),
                    message: format!("GET /1.0 answered \"auth\": {:?}", server.auth),
                });
            }
        }
        let kind = if server.environment.server.eq_ignore_ascii_case("incus") {
            ServerKind::Incus
        } else {
            ServerKind::Lxd
        };
        tracing::debug!(
            daemon = %describe(&transport),
            %kind,
            version = %server.environment.server_version,
            extensions = server.api_extensions.len(),
            "connected"
        );
        Ok(Client {
            inner: Arc::new(Inner {
                transport,
                server,
                kind,
                request_timeout: options.request_timeout,
            }),
            project: options.project.as_deref().map(Arc::from),
            operation_timeout: options.operation_timeout,
        })
    }

    /// The same connection, working in another project.
    pub fn with_project(&self, project: &str) -> Client {
        Client {
            project: Some(Arc::from(project)),
            ..self.clone()
        }
    }

    /// The same connection, with another default bound for operations.
    pub fn with_operation_timeout(&self, timeout: Duration) -> Client {
        Client {
            operation_timeout: timeout,
            ..self.clone()
        }
    }

    /// The project requests go to (`None` = the server's default).
    pub fn project(&self) -> Option<&str> {
        self.project.as_deref()
    }

    /// The unix socket; empty when connected to an HTTPS remote (see [`Client::remote`]).
    pub fn socket(&self) -> &Path {
        self.inner.transport.socket()
    }

    /// The HTTPS remote's name and address, when connected to one.
    pub fn remote(&self) -> Option<(&str, &str)> {
        self.inner.transport.remote().map(|(n, a, _)| (n, a))
    }

    /// True when the daemon runs on this host: reached over a unix socket, or over HTTPS at a
    /// loopback address. Paths on the host (external filesystems, device directories) mean the
    /// same to it as to reroot only then.
    pub fn on_this_host(&self) -> bool {
        match self.inner.transport.remote() {
            None => true,
            Some((_, _, https)) => is_loopback_host(&https.host),
        }
    }

    /// Where the daemon answers: `unix:///var/lib/lxd/unix.socket`, or
    /// `remote NAME (https://HOST:PORT)`.
    pub fn address(&self) -> String {
        describe(&self.inner.transport)
    }

    pub fn server_kind(&self) -> ServerKind {
        self.inner.kind
    }

    /// `GET /1.0` as read when connecting.
    pub fn server_info(&self) -> &ServerInfo {
        &self.inner.server
    }

    pub fn server_version(&self) -> &str {
        &self.inner.server.environment.server_version
    }

    /// Whether the server announces this API extension (e.g. `instances_rebuild`).
    pub fn has_extension(&self, name: &str) -> bool {
        self.inner.server.api_extensions.iter().any(|e| e == name)
    }

    pub fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    /// Prefix of the file headers: `X-LXD-` or `X-Incus-`.
    pub(crate) fn header_prefix(&self) -> &'static str {
        match self.inner.kind {
            ServerKind::Lxd => "X-LXD-",
            ServerKind::Incus => "X-Incus-",
        }
    }

    /// `path` with `query` and the project parameter.
    pub(crate) fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut q: Vec<(&str, &str)> = query.to_vec();
        if let Some(p) = self.project.as_deref() {
            q.push(("project", p));
        }
        transport::with_query(path, &q)
    }

    /// Sends a request to an already-built URL and returns the raw answer (any status).
    pub(crate) async fn raw(
        &self,
        method: Method,
        url: &str,
        headers: &[(String, String)],
        body: Body,
        timeout: Option<Duration>,
    ) -> Result<RawResponse> {
        self.inner
            .transport
            .send(
                method,
                url,
                headers,
                body,
                timeout.unwrap_or(self.inner.request_timeout),
            )
            .await
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// Sends a request and reads the envelope, without waiting for an operation.
    pub(crate) async fn send(&self, call: Call<'_>) -> Result<(RequestInfo, Reply)> {
        let request = RequestInfo::new(call.method.as_str(), &call.url);
        let mut headers = Vec::new();
        if let Some(etag) = call.etag {
            headers.push(("If-Match".to_string(), etag.to_string()));
        }
        let raw = self
            .raw(call.method, &call.url, &headers, call.body, None)
            .await?;
        let reply = transport::parse_reply(&request, &raw)?;
        Ok((request, reply))
    }

    /// Sends a request and, when LXD answers with an operation, waits for it (within
    /// `bound`, or the client's operation timeout). Sync and async answers are both accepted,
    /// whatever the endpoint usually does.
    pub(crate) async fn execute(&self, call: Call<'_>, bound: Option<Duration>) -> Result<Done> {
        let (request, reply) = self.send(call).await?;
        match reply {
            Reply::Sync { metadata, etag } => Ok(Done {
                metadata,
                etag,
                operation: None,
            }),
            Reply::Async { operation } => {
                let op = self
                    .wait_operation(
                        &request,
                        &operation.id,
                        bound.unwrap_or(self.operation_timeout),
                    )
                    .await?;
                let op = op.into_result(&request)?;
                Ok(Done {
                    metadata: op.metadata.clone(),
                    etag: None,
                    operation: Some(op),
                })
            }
        }
    }

    /// A GET of a sync object, decoded, with its ETag.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<(T, Option<String>)> {
        let url = self.url(path, query);
        let request = RequestInfo::new("GET", &url);
        let done = self.execute(Call::new(Method::GET, url), None).await?;
        Ok((decode(&request, done.metadata)?, done.etag))
    }
}

fn describe(transport: &Transport) -> String {
    match transport.remote() {
        Some((name, addr, _)) => format!("remote {name} ({addr})"),
        None => format!("unix://{}", transport.socket().display()),
    }
}

/// One request to send: method, full URL, body, optional `If-Match`.
pub(crate) struct Call<'a> {
    pub method: Method,
    pub url: String,
    pub body: Body,
    pub etag: Option<&'a str>,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, url: String) -> Self {
        Call {
            method,
            url,
            body: Body::Empty,
            etag: None,
        }
    }

    /// JSON body (serialising a plain struct or map cannot fail; a failure would be a bug and
    /// is reported as an empty object rather than a panic).
    pub fn json<B: Serialize + ?Sized>(mut self, body: &B) -> Self {
        self.body = Body::Json(serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec()));
        self
    }

    pub fn etag(mut self, etag: Option<&'a str>) -> Self {
        self.etag = etag;
        self
    }
}

/// The result of a finished request: the sync metadata, or the operation's metadata.
#[derive(Debug)]
pub(crate) struct Done {
    pub metadata: Value,
    pub etag: Option<String>,
    #[allow(dead_code)]
    pub operation: Option<Operation>,
}

/// Decodes a metadata value into a type, as a Decode error naming the request.
pub(crate) fn decode<T: DeserializeOwned>(request: &RequestInfo, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::Decode {
        request: request.clone(),
        message: format!("cannot read the answer: {e}"),
    })
}

/// The last path component of an LXD URL (`/1.0/instances/c1?project=p` → `c1`),
/// percent-decoded.
pub(crate) fn name_from_url(url: &str) -> String {
    let path = url.split('?').next().unwrap_or(url);
    let last = path.rsplit('/').next().unwrap_or(path);
    percent_decode(last)
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_urls() {
        assert_eq!(name_from_url("/1.0/instances/c1"), "c1");
        assert_eq!(name_from_url("/1.0/instances/c1?project=p"), "c1");
        assert_eq!(name_from_url("/1.0/profiles/a%20b"), "a b");
        assert_eq!(name_from_url("/1.0/x/%2"), "%2");
    }

    #[test]
    fn candidates_end_with_the_usual_paths() {
        let c = socket_candidates();
        assert_eq!(
            &c[c.len() - 3..],
            &[
                PathBuf::from("/var/lib/lxd/unix.socket"),
                PathBuf::from("/var/snap/lxd/common/lxd/unix.socket"),
                PathBuf::from("/var/lib/incus/unix.socket"),
            ]
        );
    }
}

/// True for a host name or address of this host's loopback: `localhost`, 127.0.0.0/8, `::1`
/// (with or without brackets). Any other name may resolve elsewhere, so it is not trusted to.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod host_tests {
    use super::is_loopback_host;

    #[test]
    fn only_loopback_addresses_are_this_host() {
        for (host, local) in [
            ("127.0.0.1", true),
            ("127.1.2.3", true),
            ("localhost", true),
            ("LOCALHOST", true),
            ("::1", true),
            ("[::1]", true),
            ("10.0.0.5", false),
            ("192.168.1.1", false),
            ("::", false),
            ("lxd.example.com", false),
            ("localhost.example.com", false),
            ("", false),
        ] {
            assert_eq!(is_loopback_host(host), local, "{host}");
        }
    }
}
