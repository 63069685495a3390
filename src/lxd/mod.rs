//! A thin, typed client for the LXD (and Incus) REST API over the local unix socket or, for a
//! remote of the `lxc`/`incus` client configuration, over HTTPS.
//!
//! It sends requests, waits for the operations they start (always within a bound), and turns
//! answers into typed objects and typed [`Error`]s. It holds no business logic: the engine
//! decides what to do; this module only does it.
//!
//! ```no_run
//! # async fn demo() -> reroot::lxd::Result<()> {
//! use reroot::lxd::{Client, ConnectOptions, NewInstance, Stop};
//! let lxd = Client::connect(ConnectOptions::default()).await?;
//! lxd.create_instance(&NewInstance::copy_of_snapshot("web1", "tpl", "base")).await?;
//! lxd.start_instance("web1").await?;
//! lxd.stop_instance("web1", Stop::Force).await?;
//! lxd.delete_instance("web1").await?;
//! # Ok(()) }
//! ```
//!
//! - [`Client::connect`] finds the socket (`--socket`, `$LXD_DIR`, `$INCUS_DIR`, the usual
//!   paths) and records the server kind, version and API extensions.
//! - [`Client::connect_remote`] reaches a [`Remote`] of the `lxc`/`incus` client configuration
//!   ([`Remote::find`]) over HTTPS, with its client certificate and pinned server certificate.
//! - Every request carries the client's project; [`Client::with_project`] gives a client for
//!   another one, sharing the connection pool.
//! - Start, stop and delete are idempotent (`Ok(false)` = nothing to do); other "absent is
//!   fine" cases use [`OptionalExt::optional`].
//! - Each request is logged with `tracing::debug!` (method, path, status, milliseconds).

mod client;
mod error;
mod exec;
mod files;
mod images;
mod instances;
mod operation;
mod profiles;
mod remote;
mod repair;
mod server;
mod snapshots;
mod tls;
mod transport;
mod types;
mod volumes;

pub use client::{socket_candidates, Client, ConnectOptions};
pub use error::{Error, OptionalExt, RemoteAt, RequestInfo, Result};
pub use exec::{ExecOutput, ExecRequest};
pub use files::{FileContent, FileOptions, FileType, WriteMode};
pub use images::{Image, ImageAliasName, PublishSnapshot, PUBLISH_BOUND};
pub use instances::{Stop, STALE_ETAG_TRIES};
pub use remote::{
    config_dirs, parse_https_addr, ClientConfig, ConfigDir, Endpoint, HttpsRemote, Remote,
    RemoteEntry, RemoteError, Tool,
};
pub use types::{
    Config, Device, Devices, ImageAlias, ImagePull, Instance, InstancePatch, InstancePut,
    InstanceSource, InstanceState, NewInstance, NewVolume, Operation, Profile, ProfilePut,
    ServerEnvironment, ServerInfo, ServerKind, Snapshot, StoragePool, StorageVolume, Versioned,
};
