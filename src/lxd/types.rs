//! Typed LXD objects as the REST API returns them, and the bodies this client sends.
//!
//! Fields LXD may omit default to empty values, so that objects from other LXD or Incus
//! versions still read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Configuration keys and values (`limits.memory`, `user.*`, `volatile.*`...).
pub type Config = BTreeMap<String, String>;
/// One device: its keys (`type`, `path`, `source`, `pool`...).
pub type Device = BTreeMap<String, String>;
/// Devices by name.
pub type Devices = BTreeMap<String, Device>;

/// A value read together with its ETag, to send back in `If-Match` on update.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    /// The `Etag` header as received (with its quotes), if LXD sent one.
    pub etag: Option<String>,
}

/// Which daemon answers on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    Lxd,
    Incus,
}

impl std::fmt::Display for ServerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerKind::Lxd => "LXD",
            ServerKind::Incus => "Incus",
        })
    }
}

/// `GET /1.0`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ServerInfo {
    #[serde(default)]
    pub api_extensions: Vec<String>,
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub auth: String,
    #[serde(default)]
    pub environment: ServerEnvironment,
}

/// `environment` of [`ServerInfo`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ServerEnvironment {
    /// `lxd` or `incus`.
    #[serde(default)]
    pub server: String,
    #[serde(default)]
    pub server_name: String,
    /// SHA-256 of the daemon's own certificate: what tells one daemon from another, whatever
    /// the way it is reached (socket or HTTPS).
    #[serde(default)]
    pub certificate_fingerprint: String,
    #[serde(default)]
    pub server_version: String,
    #[serde(default)]
    pub storage: String,
    #[serde(default)]
    pub storage_version: String,
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub driver_version: String,
    #[serde(default)]
    pub kernel_version: String,
}

/// A background operation (`/1.0/operations/<id>`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Operation {
    #[serde(default)]
    pub id: String,
    /// `task` or `websocket`.
    #[serde(default)]
    pub class: String,
    #[serde(default)]
    pub description: String,
    /// `Running`, `Success`, `Failure`, `Cancelled`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub status_code: i64,
    #[serde(default)]
    pub resources: Option<BTreeMap<String, Vec<String>>>,
    /// Result of the operation (e.g. the exit code and output paths of an exec).
    #[serde(default)]
    pub metadata: Value,
    #[serde(default)]
    pub may_cancel: bool,
    /// Why it failed.
    #[serde(default)]
    pub err: String,
}

/// An instance (`GET /1.0/instances/<name>` or `?recursion=1`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Instance {
    pub name: String,
    /// `Running`, `Stopped`, `Frozen`, `Error`...
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub status_code: i64,
    /// `container` or `virtual-machine`.
    #[serde(rename = "type", default)]
    pub instance_type: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: Config,
    #[serde(default)]
    pub devices: Devices,
    #[serde(default)]
    pub expanded_config: Config,
    #[serde(default)]
    pub expanded_devices: Devices,
    #[serde(default)]
    pub profiles: Vec<String>,
    #[serde(default)]
    pub ephemeral: bool,
    #[serde(default)]
    pub stateful: bool,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub last_used_at: String,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub project: String,
}

impl Instance {
    pub fn is_running(&self) -> bool {
        self.status == "Running"
    }

    /// The writable part, to modify and send back with `put_instance`.
    pub fn to_put(&self) -> InstancePut {
        InstancePut {
            architecture: self.architecture.clone(),
            config: self.config.clone(),
            devices: self.devices.clone(),
            ephemeral: self.ephemeral,
            profiles: self.profiles.clone(),
            stateful: self.stateful,
            description: self.description.clone(),
        }
    }
}

/// Full replacement of an instance's writable fields (`PUT /1.0/instances/<name>`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct InstancePut {
    pub architecture: String,
    pub config: Config,
    pub devices: Devices,
    pub ephemeral: bool,
    pub profiles: Vec<String>,
    pub stateful: bool,
    pub description: String,
}

/// A merge of some fields (`PATCH /1.0/instances/<name>`): keys given replace their old
/// values, others are kept; a config value `""` removes the key. Devices cannot be removed by
/// PATCH: use `put_instance`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InstancePatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Config>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<Devices>,
    /// Replaces the whole list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Deleted by the daemon when it stops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral: Option<bool>,
}

/// `GET /1.0/instances/<name>/state` (the parts reroot uses; the rest is in `extra`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct InstanceState {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub status_code: i64,
    /// PID of the instance's init on the host, 0 when stopped.
    #[serde(default)]
    pub pid: i64,
    #[serde(default)]
    pub processes: i64,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl InstanceState {
    pub fn is_running(&self) -> bool {
        self.status == "Running"
    }
    pub fn is_stopped(&self) -> bool {
        self.status == "Stopped"
    }

    /// The first address of global scope (IPv4 or IPv6) on an interface other than the
    /// loopback, as `IFACE ADDRESS`, from the state's `network` (absent when stopped).
    pub fn global_address(&self) -> Option<String> {
        let network = self.extra.get("network")?.as_object()?;
        for (iface, v) in network {
            if iface == "lo" {
                continue;
            }
            let addresses = v.get("addresses").and_then(Value::as_array);
            for a in addresses.into_iter().flatten() {
                if a.get("scope").and_then(Value::as_str) == Some("global") {
                    if let Some(addr) = a.get("address").and_then(Value::as_str) {
                        return Some(format!("{iface} {addr}"));
                    }
                }
            }
        }
        None
    }
}

/// Where a new instance comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum InstanceSource {
    /// An image, by alias or fingerprint (exactly one of the two is set).
    Image {
        #[serde(skip_serializing_if = "Option::is_none")]
        alias: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
        /// Where the daemon pulls the image from, when it is another server's.
        #[serde(flatten)]
        pull: Option<ImagePull>,
    },
    /// A copy of an instance or of a snapshot (`"tpl/snap"`).
    Copy {
        source: String,
        /// Do not copy the source's snapshots.
        instance_only: bool,
    },
}

/// An image the daemon fetches from another server (`"mode": "pull"`), as `lxc launch
/// REMOTE:ALIAS` asks it: the daemon connects to `server` itself, as an untrusted client that
/// pins `certificate`, so it sees the server's public images only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImagePull {
    /// Always `pull`.
    pub mode: String,
    /// `https://HOST:PORT`.
    pub server: String,
    /// `lxd` (LXD 5.0 knows no other name for a daemon's API) or `incus`.
    pub protocol: String,
    /// The server's certificate, PEM.
    pub certificate: String,
}

/// Body of `POST /1.0/instances`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewInstance {
    pub name: String,
    #[serde(rename = "type")]
    pub instance_type: String,
    pub source: InstanceSource,
    /// Always sent: LXD 5.0.2 fails a copy without profiles ("No root device could be found").
    pub profiles: Vec<String>,
    pub config: Config,
    pub devices: Devices,
    pub ephemeral: bool,
    pub description: String,
}

impl NewInstance {
    fn new(name: &str, source: InstanceSource) -> Self {
        NewInstance {
            name: name.to_string(),
            instance_type: "container".to_string(),
            source,
            profiles: vec!["default".to_string()],
            config: Config::new(),
            devices: Devices::new(),
            ephemeral: false,
            description: String::new(),
        }
    }

    /// A container from the image with this alias, with the `default` profile.
    pub fn from_image_alias(name: &str, alias: &str) -> Self {
        Self::new(
            name,
            InstanceSource::Image {
                alias: Some(alias.to_string()),
                fingerprint: None,
                pull: None,
            },
        )
    }

    /// A container from the image with this fingerprint, with the `default` profile.
    pub fn from_image_fingerprint(name: &str, fingerprint: &str) -> Self {
        Self::new(
            name,
            InstanceSource::Image {
                alias: None,
                fingerprint: Some(fingerprint.to_string()),
                pull: None,
            },
        )
    }

    /// A container from the image with this fingerprint on another server, which the daemon
    /// pulls from it (and keeps in its own image store).
    pub fn pulled_image(name: &str, fingerprint: &str, pull: ImagePull) -> Self {
        Self::new(
            name,
            InstanceSource::Image {
                alias: None,
                fingerprint: Some(fingerprint.to_string()),
                pull: Some(pull),
            },
        )
    }

    /// A container copied from `instance/snapshot` (without the source's snapshots), with
    /// the `default` profile until [`NewInstance::profiles`] says otherwise.
    pub fn copy_of_snapshot(name: &str, instance: &str, snapshot: &str) -> Self {
        Self::new(
            name,
            InstanceSource::Copy {
                source: format!("{instance}/{snapshot}"),
                instance_only: true,
            },
        )
    }

    pub fn profiles(mut self, profiles: Vec<String>) -> Self {
        self.profiles = profiles;
        self
    }
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }
    pub fn config_key(mut self, key: &str, value: &str) -> Self {
        self.config.insert(key.to_string(), value.to_string());
        self
    }
    pub fn devices(mut self, devices: Devices) -> Self {
        self.devices = devices;
        self
    }
    pub fn device(mut self, name: &str, device: Device) -> Self {
        self.devices.insert(name.to_string(), device);
        self
    }
    pub fn ephemeral(mut self, ephemeral: bool) -> Self {
        self.ephemeral = ephemeral;
        self
    }
    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_string();
        self
    }
}

/// An instance snapshot (`GET /1.0/instances/<name>/snapshots?recursion=1`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Snapshot {
    /// The snapshot's own name (without `instance/`).
    pub name: String,
    #[serde(default)]
    pub created_at: String,
    /// Empty or `0001-01-01T00:00:00Z` when it never expires.
    #[serde(default)]
    pub expires_at: String,
    #[serde(default)]
    pub stateful: bool,
    #[serde(default)]
    pub config: Config,
    #[serde(default)]
    pub devices: Devices,
    #[serde(default)]
    pub profiles: Vec<String>,
    #[serde(default)]
    pub size: i64,
}

/// A profile.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Profile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: Config,
    #[serde(default)]
    pub devices: Devices,
    /// URLs of the instances (and snapshots) that use it.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub used_by: Vec<String>,
}

/// The writable part of a profile (`PUT`/`PATCH /1.0/profiles/<name>`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ProfilePut {
    pub description: String,
    pub config: Config,
    pub devices: Devices,
}

impl Profile {
    pub fn to_put(&self) -> ProfilePut {
        ProfilePut {
            description: self.description.clone(),
            config: self.config.clone(),
            devices: self.devices.clone(),
        }
    }
}

/// A storage pool.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct StoragePool {
    pub name: String,
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: Config,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub used_by: Vec<String>,
}

/// A storage volume.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct StorageVolume {
    pub name: String,
    /// `custom`, `container`, `image`...
    #[serde(rename = "type", default)]
    pub volume_type: String,
    /// `filesystem` or `block`.
    #[serde(default)]
    pub content_type: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: Config,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub used_by: Vec<String>,
    #[serde(default)]
    pub location: String,
}

/// Body of a custom volume creation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewVolume {
    pub name: String,
    #[serde(rename = "type")]
    pub volume_type: String,
    pub content_type: String,
    pub description: String,
    pub config: Config,
}

impl NewVolume {
    /// An empty filesystem volume.
    pub fn filesystem(name: &str) -> Self {
        NewVolume {
            name: name.to_string(),
            volume_type: "custom".to_string(),
            content_type: "filesystem".to_string(),
            description: String::new(),
            config: Config::new(),
        }
    }
    pub fn config_key(mut self, key: &str, value: &str) -> Self {
        self.config.insert(key.to_string(), value.to_string());
        self
    }
}

/// An image alias.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ImageAlias {
    pub name: String,
    /// Fingerprint of the image it points to.
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub description: String,
    /// `container` or `virtual-machine`.
    #[serde(rename = "type", default)]
    pub image_type: String,
}

/// A list LXD may send as `null` when it is empty: LXD 5.0.2 answers `"used_by": null` for a
/// storage pool nothing uses (seen on the testbed), which a plain `Vec` refuses, failing the
/// whole listing.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unused_storage_pool_reads_with_no_users() {
        // LXD 5.0.2 (`GET /1.0/storage-pools?recursion=1`) for a pool nothing uses.
        let body = r#"[{"config":{"source":"/var/lib/lxd/storage-pools/b"},"description":"",
          "name":"b","driver":"dir","used_by":null,"status":"Created","locations":["none"]},
          {"name":"default","driver":"btrfs","used_by":["/1.0/profiles/default"]}]"#;
        let pools: Vec<StoragePool> = serde_json::from_str(body).unwrap();
        assert!(pools[0].used_by.is_empty());
        assert_eq!(pools[1].used_by, ["/1.0/profiles/default"]);
        let missing: StoragePool = serde_json::from_str(r#"{"name":"c"}"#).unwrap();
        assert!(missing.used_by.is_empty());
    }

    #[test]
    fn instance_reads_lxd_object() {
        // Captured from LXD 5.0.2 (`GET /1.0/instances?recursion=1`, one element).
        let body = r#"{"architecture":"x86_64","config":{"image.os":"busybox","volatile.base_image":"8a02"},
          "created_at":"2025-11-22T03:30:00.1Z","description":"","devices":{},"ephemeral":false,
          "expanded_config":{"image.os":"busybox"},"expanded_devices":{"root":{"path":"/","pool":"default","type":"disk"}},
          "last_used_at":"1970-01-01T00:00:00Z","location":"none","name":"r-tpl","profiles":["default"],
          "project":"default","stateful":false,"status":"Stopped","status_code":102,"type":"container"}"#;
        let i: Instance = serde_json::from_str(body).unwrap();
        assert_eq!(i.name, "r-tpl");
        assert_eq!(i.instance_type, "container");
        assert!(!i.is_running());
        assert_eq!(i.expanded_devices["root"]["pool"], "default");
        let put = serde_json::to_value(i.to_put()).unwrap();
        assert_eq!(put["profiles"][0], "default");
        assert!(put.get("name").is_none());
    }

    #[test]
    fn a_pulled_image_names_its_server_protocol_and_certificate() {
        let pull = ImagePull {
            mode: "pull".into(),
            server: "https://127.0.0.1:8444".into(),
            protocol: "lxd".into(),
            certificate: "PEM".into(),
        };
        let new = NewInstance::pulled_image("a", "dcbe", pull);
        assert_eq!(
            serde_json::to_value(&new.source).unwrap(),
            serde_json::json!({"type": "image", "fingerprint": "dcbe", "mode": "pull",
                "server": "https://127.0.0.1:8444", "protocol": "lxd", "certificate": "PEM"})
        );
    }

    #[test]
    fn new_instance_bodies() {
        let copy = NewInstance::copy_of_snapshot("w1", "tpl", "base");
        let v = serde_json::to_value(&copy).unwrap();
        assert_eq!(v["source"]["type"], "copy");
        assert_eq!(v["source"]["source"], "tpl/base");
        assert_eq!(v["source"]["instance_only"], true);
        assert_eq!(v["profiles"][0], "default");
        let img = NewInstance::from_image_alias("a", "reroot-old");
        let v = serde_json::to_value(&img).unwrap();
        assert_eq!(
            v["source"],
            serde_json::json!({"type":"image","alias":"reroot-old"})
        );
        assert_eq!(v["type"], "container");
    }

    #[test]
    fn a_global_address_is_found_past_the_loopback_and_link_local_ones() {
        let state = |network: Value| -> InstanceState {
            serde_json::from_value(serde_json::json!({"status": "Running", "network": network}))
                .unwrap()
        };
        let link = serde_json::json!({"family": "inet6", "address": "fe80::1", "scope": "link"});
        let lo = serde_json::json!({"family": "inet", "address": "127.0.0.1", "scope": "global"});
        let v4 = serde_json::json!({"family": "inet", "address": "10.0.3.5", "scope": "global"});
        assert_eq!(state(serde_json::json!(null)).global_address(), None);
        let none = state(serde_json::json!({
            "lo": {"addresses": [lo.clone()]},
            "eth0": {"addresses": [link.clone()]},
            "eth1": {"addresses": null},
        }));
        assert_eq!(none.global_address(), None);
        let some = state(serde_json::json!({
            "eth0": {"addresses": null},
            "eth1": {"addresses": [link, v4]},
            "lo": {"addresses": [lo]},
        }));
        assert_eq!(some.global_address().as_deref(), Some("eth1 10.0.3.5"));
    }

    #[test]
    fn patch_sends_only_given_fields() {
        let p = InstancePatch {
            description: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"description":"x"})
        );
    }
}
