//! `reroot instance addresses`: each instance's network interfaces and their addresses, from
//! `GET /1.0/instances/NAME/state` (`network`), the loopback left out: it is the same in every
//! container and says nothing about how to reach it.

use serde::Serialize;
use serde_json::Value;

use super::ViewError;
use crate::lxd::{self, OptionalExt};
use crate::report;

/// The schema of the `--json` document.
pub const ADDRESSES: &str = "reroot.instance-addresses/1";

/// One address of an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    /// `inet` or `inet6`.
    pub family: String,
    pub address: String,
    /// The prefix length, as LXD gives it (`24`, `64`).
    pub netmask: String,
    /// `global`, `link` or `local`.
    pub scope: String,
}

/// One interface other than `lo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub name: String,
    /// Its MAC address (empty when LXD gives none).
    pub hwaddr: String,
    /// `up` or `down`.
    pub state: String,
    pub addresses: Vec<Address>,
}

/// The addresses of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Addresses {
    pub instance: String,
    /// `Running`, `Stopped`, ...: a stopped instance has no interfaces.
    pub status: String,
    /// Sorted by name.
    pub interfaces: Vec<Interface>,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The interfaces of a state's `network` object (absent or null when stopped), without `lo`,
/// sorted by name, each address as LXD lists it.
pub fn interfaces(network: Option<&Value>) -> Vec<Interface> {
    let Some(Value::Object(map)) = network else {
        return Vec::new();
    };
    // A map: sorted by name already.
    map.iter()
        .filter(|(name, _)| name.as_str() != "lo")
        .map(|(name, nic)| Interface {
            name: name.clone(),
            hwaddr: text(nic, "hwaddr"),
            state: text(nic, "state"),
            addresses: nic
                .get("addresses")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .map(|a| Address {
                            family: text(a, "family"),
                            address: text(a, "address"),
                            netmask: text(a, "netmask"),
                            scope: text(a, "scope"),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// The addresses of `instance` (in the client's project); a missing instance is an error.
pub async fn addresses(lxd: &lxd::Client, instance: &str) -> Result<Addresses, ViewError> {
    let state = lxd
        .instance_state(instance)
        .await
        .optional()
        .map_err(|source| ViewError::Lxd {
            instance: instance.to_string(),
            source: Box::new(source),
        })?
        .ok_or_else(|| ViewError::Missing {
            instance: instance.to_string(),
            project: lxd.project().unwrap_or_default().to_string(),
        })?;
    Ok(Addresses {
        instance: instance.to_string(),
        interfaces: interfaces(state.extra.get("network")),
        status: state.status,
    })
}

impl Addresses {
    /// Rows of the text table: one per address; an interface without any gets one row with
    /// `-`, an instance without interfaces one row saying why.
    fn rows(&self) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        if self.interfaces.is_empty() {
            let why = if self.status == "Running" {
                "(no interface but lo)".to_string()
            } else {
                format!("({}: no interfaces)", self.status)
            };
            rows.push(vec![self.instance.clone(), why]);
        }
        for nic in &self.interfaces {
            if nic.addresses.is_empty() {
                rows.push(vec![
                    self.instance.clone(),
                    nic.name.clone(),
                    "-".into(),
                    "-".into(),
                    nic.state.clone(),
                ]);
            }
            for a in &nic.addresses {
                rows.push(vec![
                    self.instance.clone(),
                    nic.name.clone(),
                    a.family.clone(),
                    format!("{}/{}", a.address, a.netmask),
                    a.scope.clone(),
                ]);
            }
        }
        rows
    }

    /// The text table of several instances, in the order given.
    pub fn table(all: &[Addresses]) -> String {
        let rows: Vec<Vec<String>> = all.iter().flat_map(Addresses::rows).collect();
        report::table(&["INSTANCE", "IFACE", "FAMILY", "ADDRESS", "SCOPE"], &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lo_is_left_out_and_each_address_kept() {
        let network = json!({
            "lo": {"addresses": [{"family": "inet", "address": "127.0.0.1", "netmask": "8", "scope": "local"}], "state": "up"},
            "eth0": {"addresses": [
                {"family": "inet", "address": "10.0.3.7", "netmask": "24", "scope": "global"},
                {"family": "inet6", "address": "fe80::1", "netmask": "64", "scope": "link"}
            ], "hwaddr": "00:16:3e:aa:bb:cc", "state": "up"},
            "eth1": {"addresses": null, "state": "down"}
        });
        let nics = interfaces(Some(&network));
        let names: Vec<&str> = nics.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"]);
        assert_eq!(nics[0].addresses.len(), 2);
        assert_eq!(nics[0].addresses[0].address, "10.0.3.7");
        assert_eq!(nics[0].hwaddr, "00:16:3e:aa:bb:cc");
        assert!(nics[1].addresses.is_empty());
        assert!(interfaces(None).is_empty());
        assert!(interfaces(Some(&Value::Null)).is_empty());

        let shown = Addresses::table(&[
            Addresses {
                instance: "web".into(),
                status: "Running".into(),
                interfaces: nics,
            },
            Addresses {
                instance: "db".into(),
                status: "Stopped".into(),
                interfaces: Vec::new(),
            },
        ]);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 5, "{shown}");
        assert!(
            lines[1].starts_with("web")
                && lines[1].contains("10.0.3.7/24")
                && lines[1].ends_with("global")
        );
        assert!(lines[3].contains("eth1") && lines[3].ends_with("down"));
        assert!(lines[4].starts_with("db") && lines[4].contains("(Stopped: no interfaces)"));
        assert!(!shown.contains("127.0.0.1"));
    }
}
