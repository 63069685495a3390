//! `reroot server`: which daemon answers (LXD or Incus) and where (the unix socket, or the
//! remote's name and address), its version, storage pools and instance count, as text or,
//! with `--json`, as one JSON object: the way to check a `--remote` set-up.

use std::process::ExitCode;

use serde::Serialize;

use super::{CliError, Global};
use crate::lxd::{self, Client};

/// The `--json` schema of `reroot server` (docs/json.md).
pub const SERVER: &str = "reroot.server/1";

#[derive(Debug, Serialize)]
struct ServerReport {
    schema: &'static str,
    kind: lxd::ServerKind,
    version: String,
    api_version: String,
    /// `unix:///path` or `remote NAME (https://HOST:PORT)`.
    address: String,
    /// Empty when the daemon is an HTTPS remote.
    socket: String,
    /// The remote's name and address (`--remote`), when it is an HTTPS remote.
    #[serde(skip_serializing_if = "Option::is_none")]
    remote: Option<RemoteReport>,
    /// The server's own name (`environment.server_name`).
    server_name: String,
    project: String,
    storage_driver: String,
    api_extensions: usize,
    storage_pools: Vec<PoolReport>,
    instances: usize,
}

#[derive(Debug, Serialize)]
struct RemoteReport {
    name: String,
    addr: String,
}

#[derive(Debug, Serialize)]
struct PoolReport {
    name: String,
    driver: String,
    status: String,
}

/// Runs `reroot server` with the global `--socket` or `--remote`, `--project` and `--json`
/// flags.
pub async fn run(global: &Global) -> Result<ExitCode, CliError> {
    let client = super::connect(global).await?;
    let report = report(&client).await?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

async fn report(client: &Client) -> Result<ServerReport, lxd::Error> {
    let info = client.server_info();
    let pools = client.list_storage_pools().await?;
    let instances = client.list_instance_names().await?.len();
    Ok(ServerReport {
        schema: SERVER,
        kind: client.server_kind(),
        version: info.environment.server_version.clone(),
        api_version: info.api_version.clone(),
        address: client.address(),
        socket: client.socket().display().to_string(),
        remote: client.remote().map(|(name, addr)| RemoteReport {
            name: name.to_string(),
            addr: addr.to_string(),
        }),
        server_name: info.environment.server_name.clone(),
        project: client.project().unwrap_or("default").to_string(),
        storage_driver: info.environment.storage.clone(),
        api_extensions: info.api_extensions.len(),
        storage_pools: pools
            .into_iter()
            .map(|p| PoolReport {
                name: p.name,
                driver: p.driver,
                status: p.status,
            })
            .collect(),
        instances,
    })
}

fn render(r: &ServerReport) -> String {
    let kind = match r.kind {
        lxd::ServerKind::Lxd => "LXD",
        lxd::ServerKind::Incus => "Incus",
    };
    let place = match &r.remote {
        Some(remote) => format!("remote:     {} at {}\n", remote.name, remote.addr),
        None => format!("socket:     {}\n", r.socket),
    };
    let mut out = format!(
        "server:     {kind} {} (API {}, {} extensions) on {}\n{place}project:    {}\ninstances:  {}\n",
        r.version, r.api_version, r.api_extensions, r.server_name, r.project, r.instances
    );
    if r.storage_pools.is_empty() {
        out.push_str("pools:      none\n");
    } else {
        out.push_str("pools:\n");
        let width = r
            .storage_pools
            .iter()
            .map(|p| p.name.len())
            .max()
            .unwrap_or(0);
        for p in &r.storage_pools {
            out.push_str(&format!(
                "  {:width$}  {}  {}\n",
                p.name, p.driver, p.status
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_reports() {
        let r = ServerReport {
            schema: SERVER,
            kind: lxd::ServerKind::Lxd,
            version: "5.0.2".into(),
            api_version: "1.0".into(),
            address: "unix:///var/lib/lxd/unix.socket".into(),
            socket: "/var/lib/lxd/unix.socket".into(),
            remote: None,
            server_name: "host1".into(),
            project: "default".into(),
            storage_driver: "btrfs".into(),
            api_extensions: 318,
            storage_pools: vec![PoolReport {
                name: "default".into(),
                driver: "btrfs".into(),
                status: "Created".into(),
            }],
            instances: 4,
        };
        let text = render(&r);
        assert!(text.contains("server:     LXD 5.0.2"), "{text}");
        assert!(
            text.contains("socket:     /var/lib/lxd/unix.socket"),
            "{text}"
        );
        assert!(text.contains("instances:  4"), "{text}");
        assert!(text.contains("  default  btrfs  Created"), "{text}");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["schema"], "reroot.server/1");
        assert_eq!(v["kind"], "lxd");
        assert_eq!(v["storage_pools"][0]["driver"], "btrfs");
        assert_eq!(v["instances"], 4);
        assert!(v.get("remote").is_none());

        let r = ServerReport {
            address: "remote box (https://10.0.0.5:8443)".into(),
            socket: String::new(),
            remote: Some(RemoteReport {
                name: "box".into(),
                addr: "https://10.0.0.5:8443".into(),
            }),
            ..r
        };
        let text = render(&r);
        assert!(
            text.contains("remote:     box at https://10.0.0.5:8443"),
            "{text}"
        );
        assert!(!text.contains("socket:"), "{text}");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["remote"]["name"], "box");
    }
}
