//! Remotes: the daemons named in the `lxc` and `incus` client configurations, so that
//! `--remote NAME` reaches what `lxc NAME:` (or `incus NAME:`) reaches, with the same files.
//!
//! A client configuration directory holds `config.yml` (`remotes: NAME: {addr, protocol,
//! ...}`), the client's `client.crt` and `client.key`, and `servercerts/NAME.crt`, the server
//! certificate `lxc remote add` pinned when the user accepted its fingerprint. The
//! directories read, in order: `$LXD_CONF` (else `~/.config/lxc`, then snap's
//! `~/snap/lxd/common/config`), then `$INCUS_CONF` (else `~/.config/incus`). The first
//! directory whose `config.yml` names the remote wins.
//!
//! Everything is read and checked here, before any connection: a remote that cannot be used
//! (no pinned certificate, no client key, a malformed file) is refused with an error naming
//! the file, and nothing is sent anywhere.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;

use super::tls;

/// Which client's conventions a configuration directory follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Lxc,
    Incus,
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tool::Lxc => "lxc",
            Tool::Incus => "incus",
        })
    }
}

/// A client configuration directory (`~/.config/lxc`, `$INCUS_CONF`...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDir {
    pub path: PathBuf,
    pub tool: Tool,
}

impl ConfigDir {
    pub fn new(path: impl Into<PathBuf>, tool: Tool) -> Self {
        ConfigDir {
            path: path.into(),
            tool,
        }
    }

    pub fn config_file(&self) -> PathBuf {
        self.path.join("config.yml")
    }
}

/// The directories searched for remotes, in order (see the module documentation): those of
/// `lxc`, then those of `incus`. `$LXD_CONF` and `$INCUS_CONF` replace their tool's default
/// directories, as they do for `lxc` and `incus` themselves.
pub fn config_dirs() -> Vec<ConfigDir> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let env_dir = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut out = Vec::new();
    match env_dir("LXD_CONF") {
        Some(d) => out.push(ConfigDir::new(d, Tool::Lxc)),
        None => {
            if let Some(h) = &home {
                out.push(ConfigDir::new(h.join(".config/lxc"), Tool::Lxc));
                out.push(ConfigDir::new(h.join("snap/lxd/common/config"), Tool::Lxc));
            }
        }
    }
    match env_dir("INCUS_CONF") {
        Some(d) => out.push(ConfigDir::new(d, Tool::Incus)),
        None => {
            if let Some(h) = &home {
                out.push(ConfigDir::new(h.join(".config/incus"), Tool::Incus));
            }
        }
    }
    out
}

/// Why a remote cannot be used. Each names the file to look at and what to do; none of them
/// has sent anything to any daemon.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("unknown remote {name:?}: {}", unknown_detail(.searched, .known))]
    Unknown {
        name: String,
        /// The config.yml files read (existing or not).
        searched: Vec<PathBuf>,
        /// Remote names found in them.
        known: Vec<String>,
    },
    #[error("{}: cannot read it: {message}", file.display())]
    Unreadable { file: PathBuf, message: String },
    #[error("{}: malformed {tool} client configuration: {message}", file.display())]
    Malformed {
        file: PathBuf,
        tool: Tool,
        message: String,
    },
    #[error("remote {name:?} in {}: {message}", file.display())]
    Unusable {
        name: String,
        file: PathBuf,
        message: String,
    },
    #[error(
        "remote {name:?} ({addr}) in {}: no pinned server certificate at {}; `{tool} remote add` \
         writes it when the server's fingerprint is accepted, or copy the server's certificate \
         there (its server.crt, e.g. /var/lib/lxd/server.crt) after checking its fingerprint",
        file.display(),
        server_cert.display()
    )]
    NoServerCert {
        name: String,
        addr: String,
        file: PathBuf,
        tool: Tool,
        server_cert: PathBuf,
    },
    #[error(
        "remote {name:?} ({addr}) in {}: no client {what} at {}; `{tool} remote add` creates \
         client.crt and client.key beside config.yml (the certificate must then be trusted by \
         the server: `{tool} config trust add client.crt` there)",
        file.display(),
        path.display()
    )]
    NoClientCert {
        name: String,
        addr: String,
        file: PathBuf,
        tool: Tool,
        /// `certificate` or `key`.
        what: &'static str,
        path: PathBuf,
    },
    #[error("{}: {message}", file.display())]
    BadPem { file: PathBuf, message: String },
}

fn unknown_detail(searched: &[PathBuf], known: &[String]) -> String {
    let files = if searched.is_empty() {
        "no client configuration directory (HOME, LXD_CONF and INCUS_CONF are unset)".to_string()
    } else {
        format!(
            "not in {}",
            searched
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let names = if known.is_empty() {
        "no remotes are defined there".to_string()
    } else {
        format!("remotes defined: {}", known.join(", "))
    };
    format!("{files} ({names}; add one with `lxc remote add NAME https://HOST:8443`)")
}

/// What `config.yml` says about one remote (other keys are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RemoteEntry {
    #[serde(default)]
    pub addr: String,
    /// `lxd`, `incus`, `simplestreams` or `oci`; absent means the tool's own daemon.
    #[serde(default)]
    pub protocol: Option<String>,
    /// `tls` (the default), `candid`, `oidc`.
    #[serde(default)]
    pub auth_type: Option<String>,
    #[serde(default)]
    pub public: bool,
    /// The remote's default project.
    #[serde(default)]
    pub project: Option<String>,
}

/// A client's `config.yml`, as far as remotes go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ClientConfig {
    #[serde(default, rename = "default-remote")]
    pub default_remote: Option<String>,
    #[serde(default)]
    pub remotes: BTreeMap<String, RemoteEntry>,
}

impl ClientConfig {
    /// Parses `config.yml` text. An empty file is an empty configuration, as for `lxc`.
    pub fn parse(text: &str) -> Result<ClientConfig, String> {
        if text.trim().is_empty() {
            return Ok(ClientConfig::default());
        }
        // `remotes: ~` or a document that is only `~`: no remotes.
        let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if value.is_null() {
            return Ok(ClientConfig::default());
        }
        serde_yaml::from_value(value).map_err(|e| e.to_string())
    }
}

/// Where a remote is: an HTTPS address, or a local unix socket (`addr: unix://` is lxc's
/// `local` remote; `unix:///path` names a socket).
#[derive(Clone)]
pub enum Endpoint {
    /// `None` = find the local socket as without `--remote`.
    Unix(Option<PathBuf>),
    Https(Arc<HttpsRemote>),
}

/// An HTTPS remote, its files read and checked.
pub struct HttpsRemote {
    pub host: String,
    pub port: u16,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub server_cert: PathBuf,
    pub(crate) server_name: ServerName<'static>,
    pub(crate) tls: tls::Tls,
}

/// A remote, ready to connect to.
#[derive(Clone)]
pub struct Remote {
    pub name: String,
    /// The address as written in config.yml (`https://10.0.0.5:8443`, `unix://`).
    pub addr: String,
    /// The remote's default project from config.yml, if any.
    pub project: Option<String>,
    /// The config.yml it was read from (`None` for the built-in `local`).
    pub config_file: Option<PathBuf>,
    pub endpoint: Endpoint,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("config_file", &self.config_file)
            .finish()
    }
}

impl Remote {
    /// Finds a remote in the usual client configuration directories ([`config_dirs`]).
    pub fn find(name: &str) -> Result<Remote, RemoteError> {
        Self::find_in(&config_dirs(), name)
    }

    /// Finds a remote in these directories, in order. A directory without config.yml is
    /// skipped; a config.yml that cannot be read or parsed is an error (it may be the one
    /// meant), as is a remote that is found but cannot be used.
    pub fn find_in(dirs: &[ConfigDir], name: &str) -> Result<Remote, RemoteError> {
        let mut searched = Vec::new();
        let mut known = Vec::new();
        for dir in dirs {
            let file = dir.config_file();
            searched.push(file.clone());
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(RemoteError::Unreadable {
                        file,
                        message: e.to_string(),
                    })
                }
            };
            let config = ClientConfig::parse(&text).map_err(|message| RemoteError::Malformed {
                file: file.clone(),
                tool: dir.tool,
                message,
            })?;
            if let Some(entry) = config.remotes.get(name) {
                return Self::from_entry(dir, &file, name, entry);
            }
            known.extend(config.remotes.keys().cloned());
        }
        // `local` is built into lxc and incus: it need not be written in config.yml.
        if name == "local" {
            return Ok(Remote {
                name: name.to_string(),
                addr: "unix://".to_string(),
                project: None,
                config_file: None,
                endpoint: Endpoint::Unix(None),
            });
        }
        known.sort();
        known.dedup();
        Err(RemoteError::Unknown {
            name: name.to_string(),
            searched,
            known,
        })
    }

    fn from_entry(
        dir: &ConfigDir,
        file: &Path,
        name: &str,
        entry: &RemoteEntry,
    ) -> Result<Remote, RemoteError> {
        let unusable = |message: String| RemoteError::Unusable {
            name: name.to_string(),
            file: file.to_path_buf(),
            message,
        };
        match entry.protocol.as_deref() {
            None | Some("") | Some("lxd") | Some("incus") => {}
            Some(other) => {
                return Err(unusable(format!(
                    "protocol {other:?} is an image server, not an LXD or Incus daemon"
                )))
            }
        }
        if entry.public {
            return Err(unusable(
                "a public remote serves images only; reroot needs a daemon it is trusted by".into(),
            ));
        }
        match entry.auth_type.as_deref() {
            None | Some("") | Some("tls") => {}
            Some(other) => {
                return Err(unusable(format!(
                    "auth_type {other:?} is not supported: reroot authenticates with the client \
                     certificate (auth_type: tls)"
                )))
            }
        }
        let addr = entry.addr.trim().to_string();
        let project = entry.project.clone().filter(|p| !p.is_empty());
        if let Some(rest) = addr.strip_prefix("unix://") {
            let socket = (!rest.is_empty()).then(|| PathBuf::from(rest));
            return Ok(Remote {
                name: name.to_string(),
                addr,
                project,
                config_file: Some(file.to_path_buf()),
                endpoint: Endpoint::Unix(socket),
            });
        }
        let (host, port) = parse_https_addr(&addr).map_err(unusable)?;
        // Only sent as SNI for a DNS name; the pin, not the name, decides (see tls.rs).
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| unusable(format!("address {addr:?}: invalid host: {e}")))?;
        let server_cert = dir.path.join("servercerts").join(format!("{name}.crt"));
        let client_cert = dir.path.join("client.crt");
        let client_key = dir.path.join("client.key");
        if !server_cert.exists() {
            return Err(RemoteError::NoServerCert {
                name: name.to_string(),
                addr,
                file: file.to_path_buf(),
                tool: dir.tool,
                server_cert,
            });
        }
        for (what, path) in [("certificate", &client_cert), ("key", &client_key)] {
            if !path.exists() {
                return Err(RemoteError::NoClientCert {
                    name: name.to_string(),
                    addr,
                    file: file.to_path_buf(),
                    tool: dir.tool,
                    what,
                    path: path.clone(),
                });
            }
        }
        let pinned = read_certs(&server_cert)?;
        let pinned = pinned
            .into_iter()
            .next()
            .ok_or_else(|| RemoteError::BadPem {
                file: server_cert.clone(),
                message: "no certificate in it".into(),
            })?;
        let chain = read_certs(&client_cert)?;
        if chain.is_empty() {
            return Err(RemoteError::BadPem {
                file: client_cert.clone(),
                message: "no certificate in it".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_file(&client_key).map_err(|e| RemoteError::BadPem {
            file: client_key.clone(),
            message: format!("no readable private key (PKCS#8, SEC1 or PKCS#1 PEM): {e}"),
        })?;
        let tls = tls::Tls::new(pinned, chain, key).map_err(|message| RemoteError::BadPem {
            file: client_key.clone(),
            message: format!(
                "cannot use this key with {}: {message}",
                client_cert.display()
            ),
        })?;
        Ok(Remote {
            name: name.to_string(),
            addr,
            project,
            config_file: Some(file.to_path_buf()),
            endpoint: Endpoint::Https(Arc::new(HttpsRemote {
                host,
                port,
                client_cert,
                client_key,
                server_cert,
                server_name,
                tls,
            })),
        })
    }
}

fn read_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, RemoteError> {
    let bad = |message: String| RemoteError::BadPem {
        file: file.to_path_buf(),
        message,
    };
    CertificateDer::pem_file_iter(file)
        .map_err(|e| bad(format!("cannot read a PEM certificate: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate: {e}")))
}

/// `https://HOST[:PORT][/]` → host and port (8443 by default, as for lxc). IPv6 hosts are
/// written in brackets.
pub fn parse_https_addr(addr: &str) -> Result<(String, u16), String> {
    let rest = addr.strip_prefix("https://").ok_or_else(|| {
        format!("address {addr:?} is neither https://HOST:PORT nor unix://[PATH]")
    })?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('@') || rest.contains('?') {
        return Err(format!(
            "address {addr:?}: only https://HOST[:PORT] is supported (no path, user or query)"
        ));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("address {addr:?}: unclosed [ in an IPv6 address"))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or_else(|| {
                    format!("address {addr:?}: expected :PORT after the IPv6 address")
                })?),
            ),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(format!("address {addr:?} has no host"));
    }
    let port = match port {
        None => 8443,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("address {addr:?}: {p:?} is not a port"))?,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_https_addr("https://127.0.0.1:8443").unwrap(),
            ("127.0.0.1".into(), 8443)
        );
        assert_eq!(
            parse_https_addr("https://lxd.example/").unwrap(),
            ("lxd.example".into(), 8443)
        );
        assert_eq!(
            parse_https_addr("https://[::1]:9443").unwrap(),
            ("::1".into(), 9443)
        );
        for bad in [
            "http://x:8443",
            "https://",
            "https://x:0",
            "https://x:http",
            "https://x/1.0",
            "https://[::1",
            "10.0.0.1:8443",
        ] {
            assert!(parse_https_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_lxc_config() {
        let text = r#"
default-remote: local
remotes:
  images:
    addr: https://images.linuxcontainers.org
    protocol: simplestreams
    public: true
  local:
    addr: unix://
    public: false
  box:
    addr: https://10.0.0.5:8443
    auth_type: tls
    project: web
    protocol: lxd
    public: false
aliases: {}
"#;
        let c = ClientConfig::parse(text).unwrap();
        assert_eq!(c.default_remote.as_deref(), Some("local"));
        assert_eq!(c.remotes.len(), 3);
        assert_eq!(c.remotes["box"].addr, "https://10.0.0.5:8443");
        assert_eq!(c.remotes["box"].project.as_deref(), Some("web"));
        assert!(c.remotes["images"].public);
        assert_eq!(ClientConfig::parse("").unwrap(), ClientConfig::default());
        assert_eq!(ClientConfig::parse("~\n").unwrap(), ClientConfig::default());
        assert!(ClientConfig::parse("remotes: [1, 2]").is_err());
        assert!(ClientConfig::parse("remotes:\n  x: 3\n").is_err());
    }

    fn dir_with(config: &str) -> (tempfile::TempDir, ConfigDir) {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("config.yml"), config).unwrap();
        let d = ConfigDir::new(t.path(), Tool::Lxc);
        (t, d)
    }

    #[test]
    fn refusals_name_the_file() {
        let (_t, d) = dir_with("remotes:\n  box:\n    addr: https://127.0.0.1:8443\n");
        let e = Remote::find_in(std::slice::from_ref(&d), "nope").unwrap_err();
        let s = e.to_string();
        assert!(matches!(e, RemoteError::Unknown { .. }), "{s}");
        assert!(s.contains("config.yml") && s.contains("box"), "{s}");

        let e = Remote::find_in(std::slice::from_ref(&d), "box").unwrap_err();
        let s = e.to_string();
        assert!(matches!(e, RemoteError::NoServerCert { .. }), "{s}");
        assert!(s.contains("servercerts/box.crt"), "{s}");

        std::fs::create_dir(d.path.join("servercerts")).unwrap();
        std::fs::write(d.path.join("servercerts/box.crt"), "x").unwrap();
        let e = Remote::find_in(std::slice::from_ref(&d), "box").unwrap_err();
        assert!(
            matches!(
                &e,
                RemoteError::NoClientCert {
                    what: "certificate",
                    ..
                }
            ),
            "{e}"
        );
        std::fs::write(d.path.join("client.crt"), "x").unwrap();
        let e = Remote::find_in(std::slice::from_ref(&d), "box").unwrap_err();
        assert!(
            matches!(&e, RemoteError::NoClientCert { what: "key", .. }),
            "{e}"
        );
        std::fs::write(d.path.join("client.key"), "x").unwrap();
        let e = Remote::find_in(std::slice::from_ref(&d), "box").unwrap_err();
        assert!(
            matches!(&e, RemoteError::BadPem { file, .. } if file.ends_with("servercerts/box.crt")),
            "{e}"
        );

        let (_t2, bad) = dir_with("remotes: [\n");
        let e = Remote::find_in(&[bad, d.clone()], "box").unwrap_err();
        assert!(matches!(e, RemoteError::Malformed { .. }), "{e}");

        let (_t3, img) = dir_with(
            "remotes:\n  images:\n    addr: https://images.example\n    protocol: simplestreams\n",
        );
        let e = Remote::find_in(&[img], "images").unwrap_err();
        assert!(matches!(e, RemoteError::Unusable { .. }), "{e}");
    }

    #[test]
    fn unix_remotes_and_builtin_local() {
        let (_t, d) = dir_with("remotes:\n  other:\n    addr: unix:///run/x/unix.socket\n");
        let r = Remote::find_in(std::slice::from_ref(&d), "other").unwrap();
        assert!(
            matches!(&r.endpoint, Endpoint::Unix(Some(p)) if p == Path::new("/run/x/unix.socket"))
        );
        let r = Remote::find_in(&[d], "local").unwrap();
        assert!(matches!(r.endpoint, Endpoint::Unix(None)));
    }

    proptest! {
        /// Whatever config.yml holds, reading it gives a configuration or an error, never a
        /// panic.
        #[test]
        fn config_reader_never_panics(text in "\\PC*") {
            let _ = ClientConfig::parse(&text);
        }

        #[test]
        fn yaml_shaped_config_never_panics(
            lines in proptest::collection::vec(
                "( {0,6})(remotes|addr|protocol|public|project|default-remote|[a-z]{1,5})?(:)? ?(https://[a-z0-9.:\\[\\]]{0,12}|unix://|true|~|\\[|\\{|-|&a|\\*a|!!str|[0-9]{1,4})?",
                0..12,
            )
        ) {
            let text = lines.join("\n");
            let _ = ClientConfig::parse(&text);
        }

        /// The whole lookup (file read, parse, the entry's checks) on arbitrary entries: a
        /// remote or an error, never a panic.
        #[test]
        fn lookup_never_panics(
            addr in "(https://|unix://|http://)?[a-z0-9.:\\[\\]/@?]{0,20}",
            protocol in "(lxd|incus|simplestreams|oci|)",
            extra in "(public: true|auth_type: oidc|project: p|)",
        ) {
            let config = format!(
                "remotes:\n  r:\n    addr: \"{addr}\"\n    protocol: \"{protocol}\"\n    {extra}\n"
            );
            let (_t, d) = dir_with(&config);
            let _ = Remote::find_in(&[d], "r");
        }

        #[test]
        fn address_parser_never_panics(addr in "(https://)?\\PC{0,30}") {
            let _ = parse_https_addr(&addr);
        }
    }
}
