//! Reading one `#lxdops` / `#lxops-v1` instance config file into raw values that remember the
//! file and key they came from. Nothing is substituted or merged here.

use std::path::{Path, PathBuf};

use serde_yaml::Value;
use sha2::{Digest, Sha256};

use super::types::{FilesystemKind, OsType};
use super::ConfigError;
use crate::input::yaml::{self, Walker};

/// The header lines an instance config may start with.
pub(crate) const HEADERS: &[&str] = &["#lxdops", "#lxops-v1"];

/// A value and where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Field<T> {
    pub value: T,
    pub file: PathBuf,
    pub key: String,
}

#[derive(Debug, Clone)]
pub(crate) struct RawFilesystem {
    pub pattern: Field<String>,
    pub kind: Option<FilesystemKind>,
    pub zfs_properties: Vec<(String, String)>,
    pub destroy: bool,
    pub transient: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct RawDevice {
    pub path: Field<String>,
    pub filesystem: Option<Field<String>>,
    pub dir: Option<Field<String>>,
    pub readonly: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct RawHealthCheck {
    pub command: Vec<String>,
    pub timeout: u64,
}

/// One parsed config file (before includes are merged).
#[derive(Debug, Clone, Default)]
pub(crate) struct RawConfig {
    /// Absolute path of the file.
    pub file: PathBuf,
    pub sha256: String,
    pub description: Option<Field<String>>,
    pub ostype: Option<Field<OsType>>,
    pub image: Option<Field<String>>,
    pub project: Option<Field<String>>,
    pub remote: Option<Field<String>>,
    pub origin: Option<Field<String>>,
    pub device_template: Option<Field<String>>,
    pub device_origin: Option<Field<String>>,
    /// Unsubstituted; relative to the file's directory.
    pub source_config: Option<Field<String>>,
    pub lxc_options: Vec<Field<String>>,
    pub profiles: Vec<Field<String>>,
    pub profile_pattern: Option<Field<String>>,
    pub device_owner: Option<Field<String>>,
    pub device_placement: Option<Field<String>>,
    pub filesystems: Vec<(String, Field<RawFilesystem>)>,
    pub devices: Vec<(String, Field<RawDevice>)>,
    pub properties: Vec<(String, Field<String>)>,
    pub include: Vec<Field<String>>,
    pub cloud_config_files: Vec<Field<String>>,
    pub stop_timeout: Option<Field<u64>>,
    pub health_check: Option<Field<RawHealthCheck>>,
    /// lxdops `stop: true`: stop the instance once it is built and configured.
    pub stop: Option<Field<bool>>,
    /// lxdops `snapshot: NAME`: then take this snapshot of its root.
    pub snapshot: Option<Field<String>>,
    /// Seconds to wait, after a start, for the container to be up before cloud-config.
    pub wait_ready: Option<Field<u64>>,
}

const TOP_KEYS: &[&str] = &[
    "description",
    "ostype",
    "os",
    "image",
    "project",
    "remote",
    "origin",
    "device-template",
    "device-origin",
    "source-config",
    "lxc-options",
    "profiles",
    "profile-pattern",
    "device-owner",
    "device-placement",
    "filesystems",
    "devices",
    "properties",
    "include",
    "cloud-config-files",
    "stop-timeout",
    "health-check",
    "stop",
    "snapshot",
    "wait-ready",
];

fn lxdops_only(key: &str) -> Option<String> {
    const LXDOPS_ONLY: &[&str] = &[
        "container",
        "profile-config",
        "profiles-config",
        "profiles-run",
    ];
    LXDOPS_ONLY
        .contains(&key)
        .then(|| format!("`{key}` is an lxdops key that reroot does not support; remove it"))
}

fn mk<T>(value: T, file: &Path, key: &str) -> Field<T> {
    Field {
        value,
        file: file.to_path_buf(),
        key: key.to_string(),
    }
}

/// Hex sha256 of some bytes.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) use crate::input::check_header;

/// Read and parse one file. Returns what could be parsed and every problem found.
pub(crate) fn read(file: &Path) -> (Option<RawConfig>, Vec<ConfigError>) {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(source) => {
            return (
                None,
                vec![ConfigError::Read {
                    file: file.to_path_buf(),
                    source,
                }],
            )
        }
    };
    let text = match String::from_utf8(bytes.clone()) {
        Ok(t) => t,
        Err(_) => {
            return (
                None,
                vec![ConfigError::Invalid {
                    file: file.to_path_buf(),
                    key: "(file)".into(),
                    message: "not UTF-8 text".into(),
                }],
            )
        }
    };
    match parse(file, &text) {
        Ok((mut raw, errors)) => {
            raw.sha256 = sha256_hex(&bytes);
            (Some(raw), errors)
        }
        Err(e) => (None, vec![e]),
    }
}

/// Parse the text of one config file. A bad header or YAML syntax is a hard error; every other
/// problem is returned beside the partial result.
pub(crate) fn parse(file: &Path, text: &str) -> Result<(RawConfig, Vec<ConfigError>), ConfigError> {
    check_header(file, text, HEADERS, "`#lxdops` or `#lxops-v1`")?;
    let doc = yaml::parse_document(file, text)?;
    let mut w = Walker::new(file);
    let mut raw = RawConfig {
        file: file.to_path_buf(),
        ..RawConfig::default()
    };
    let Some(top) = w.map(&doc, "(top level)") else {
        return Ok((raw, w.errors));
    };
    let mut os_name: Option<Field<OsType>> = None;
    let mut os_image: Option<Field<String>> = None;
    for (name, key, v) in w.fields(top, "", TOP_KEYS, lxdops_only) {
        match name {
            "description" => raw.description = w.string(v, &key).map(|s| mk(s, file, &key)),
            "ostype" => raw.ostype = ostype(&mut w, v, &key).map(|o| mk(o, file, &key)),
            "os" => {
                if let Some(m) = w.map(v, &key) {
                    let hint = |k: &str| {
                        (k == "version").then(|| {
                            "`os.version` is not used by reroot: put the full image name in \
                             `image` (or `os.image`)"
                                .to_string()
                        })
                    };
                    for (n, k, v) in w.fields(m, &key, &["name", "image"], hint) {
                        if n == "name" {
                            os_name = ostype(&mut w, v, &k).map(|o| mk(o, file, &k));
                        } else {
                            os_image = w.string(v, &k).map(|s| mk(s, file, &k));
                        }
                    }
                }
            }
            "image" => raw.image = w.string(v, &key).map(|s| mk(s, file, &key)),
            "project" => raw.project = w.string(v, &key).map(|s| mk(s, file, &key)),
            "remote" => raw.remote = w.nonempty_string(v, &key).map(|s| mk(s, file, &key)),
            "origin" => raw.origin = w.string(v, &key).map(|s| mk(s, file, &key)),
            "device-template" => raw.device_template = w.string(v, &key).map(|s| mk(s, file, &key)),
            "device-origin" => raw.device_origin = w.string(v, &key).map(|s| mk(s, file, &key)),
            "source-config" => {
                raw.source_config = w.nonempty_string(v, &key).map(|s| mk(s, file, &key))
            }
            "lxc-options" => {
                raw.lxc_options = w
                    .string_list(v, &key)
                    .into_iter()
                    .map(|(s, k)| mk(s, file, &k))
                    .collect()
            }
            "profiles" => {
                raw.profiles = w
                    .string_list(v, &key)
                    .into_iter()
                    .map(|(s, k)| mk(s, file, &k))
                    .collect()
            }
            "profile-pattern" => raw.profile_pattern = w.string(v, &key).map(|s| mk(s, file, &key)),
            "device-owner" => raw.device_owner = w.string(v, &key).map(|s| mk(s, file, &key)),
            "device-placement" => {
                raw.device_placement = w.string(v, &key).map(|s| mk(s, file, &key))
            }
            "filesystems" => raw.filesystems = filesystems(&mut w, v, &key),
            "devices" => raw.devices = devices(&mut w, v, &key),
            "properties" => {
                if let Some(m) = w.map(v, &key) {
                    for (n, k, v) in w.entries(m, &key) {
                        if n.contains(['(', ')']) {
                            w.invalid(&k, "a property name cannot contain parentheses");
                        } else if let Some(s) = w.string(v, &k) {
                            raw.properties.push((n.to_string(), mk(s, file, &k)));
                        }
                    }
                }
            }
            "include" => {
                raw.include = w
                    .string_list(v, &key)
                    .into_iter()
                    .map(|(s, k)| mk(s, file, &k))
                    .collect()
            }
            "cloud-config-files" => {
                raw.cloud_config_files = w
                    .string_list(v, &key)
                    .into_iter()
                    .map(|(s, k)| mk(s, file, &k))
                    .collect()
            }
            "stop-timeout" => raw.stop_timeout = w.u64(v, &key).map(|n| mk(n, file, &key)),
            "health-check" => {
                raw.health_check = health_check(&mut w, v, &key).map(|h| mk(h, file, &key))
            }
            "stop" => raw.stop = w.bool(v, &key).map(|b| mk(b, file, &key)),
            "snapshot" => raw.snapshot = w.string(v, &key).map(|s| mk(s, file, &key)),
            "wait-ready" => raw.wait_ready = w.u64(v, &key).map(|n| mk(n, file, &key)),
            _ => {}
        }
    }
    match (os_name, &raw.ostype) {
        (Some(o), Some(_)) => w.invalid(
            &o.key,
            "give the OS type once: `ostype` or `os.name`, not both",
        ),
        (Some(o), None) => raw.ostype = Some(o),
        (None, _) => {}
    }
    match (os_image, &raw.image) {
        (Some(i), Some(_)) => w.invalid(
            &i.key,
            "give the image once: `image` or `os.image`, not both",
        ),
        (Some(i), None) => raw.image = Some(i),
        (None, _) => {}
    }
    Ok((raw, w.errors))
}

fn ostype(w: &mut Walker, v: &Value, key: &str) -> Option<OsType> {
    let s = w.string(v, key)?;
    match s.parse() {
        Ok(o) => Some(o),
        Err(message) => {
            w.invalid(key, message);
            None
        }
    }
}

fn filesystems(w: &mut Walker, v: &Value, key: &str) -> Vec<(String, Field<RawFilesystem>)> {
    let mut out = Vec::new();
    let Some(m) = w.map(v, key) else { return out };
    for (id, k, v) in w.entries(m, key) {
        let Some(fm) = w.map(v, &k) else {
            if v.is_null() {
                w.invalid(&k, "a filesystem needs at least a `pattern`");
            }
            continue;
        };
        let mut pattern = None;
        let mut kind = None;
        let mut zfs_properties = Vec::new();
        let (mut destroy, mut transient) = (false, false);
        let allowed = ["pattern", "kind", "zfsproperties", "destroy", "transient"];
        for (n, fk, fv) in w.fields(fm, &k, &allowed, |_| None) {
            match n {
                "pattern" => pattern = w.nonempty_string(fv, &fk),
                "kind" => {
                    if let Some(s) = w.string(fv, &fk) {
                        match s.parse() {
                            Ok(x) => kind = Some(x),
                            Err(message) => w.invalid(&fk, message),
                        }
                    }
                }
                "zfsproperties" => {
                    if let Some(pm) = w.map(fv, &fk) {
                        for (pn, pk, pv) in w.entries(pm, &fk) {
                            if let Some(s) = w.string(pv, &pk) {
                                zfs_properties.push((pn.to_string(), s));
                            }
                        }
                    }
                }
                "destroy" => destroy = w.bool(fv, &fk).unwrap_or(false),
                "transient" => transient = w.bool(fv, &fk).unwrap_or(false),
                _ => {}
            }
        }
        let Some(pattern) = pattern else {
            if !fm.contains_key("pattern") {
                w.invalid(&k, "missing `pattern`");
            }
            continue;
        };
        out.push((
            id.to_string(),
            Field {
                value: RawFilesystem {
                    pattern: Field {
                        value: pattern,
                        file: w.file.clone(),
                        key: yaml::join(&k, "pattern"),
                    },
                    kind,
                    zfs_properties,
                    destroy,
                    transient,
                },
                file: w.file.clone(),
                key: k,
            },
        ));
    }
    out
}

fn devices(w: &mut Walker, v: &Value, key: &str) -> Vec<(String, Field<RawDevice>)> {
    let mut out = Vec::new();
    let Some(m) = w.map(v, key) else { return out };
    for (name, k, v) in w.entries(m, key) {
        let Some(dm) = w.map(v, &k) else {
            if v.is_null() {
                w.invalid(&k, "a device needs at least a `path`");
            }
            continue;
        };
        let mut path = None;
        let mut filesystem = None;
        let mut dir = None;
        let mut readonly = false;
        let allowed = ["path", "filesystem", "dir", "readonly"];
        for (n, dk, dv) in w.fields(dm, &k, &allowed, |_| None) {
            let file = w.file.clone();
            let fld = |value: String| mk(value, &file, &dk);
            match n {
                "path" => path = w.nonempty_string(dv, &dk).map(fld),
                "filesystem" => {
                    filesystem = w.string(dv, &dk).filter(|s| !s.is_empty()).map(|s| Field {
                        value: s,
                        file: w.file.clone(),
                        key: dk.clone(),
                    })
                }
                "dir" => dir = w.nonempty_string(dv, &dk).map(fld),
                "readonly" => readonly = w.bool(dv, &dk).unwrap_or(false),
                _ => {}
            }
        }
        let Some(path) = path else {
            if !dm.contains_key("path") {
                w.invalid(&k, "missing `path` (the mount path inside the container)");
            }
            continue;
        };
        out.push((
            name.to_string(),
            Field {
                value: RawDevice {
                    path,
                    filesystem,
                    dir,
                    readonly,
                },
                file: w.file.clone(),
                key: k,
            },
        ));
    }
    out
}

fn health_check(w: &mut Walker, v: &Value, key: &str) -> Option<RawHealthCheck> {
    let m = w.map(v, key)?;
    let mut command = None;
    let mut timeout = 30;
    for (n, k, v) in w.fields(m, key, &["command", "timeout"], |_| None) {
        match n {
            "command" => match v {
                Value::String(s) if !s.trim().is_empty() => {
                    command = Some(vec!["sh".to_string(), "-c".to_string(), s.clone()])
                }
                Value::Sequence(_) => {
                    let argv: Vec<String> =
                        w.string_list(v, &k).into_iter().map(|(s, _)| s).collect();
                    if argv.is_empty() {
                        w.invalid(&k, "the command list must not be empty");
                    } else {
                        command = Some(argv);
                    }
                }
                Value::String(_) => w.invalid(&k, "must not be empty"),
                other => w.wrong_type(&k, "a string or a list of strings", other),
            },
            "timeout" => {
                if let Some(t) = w.u64(v, &k) {
                    if t == 0 {
                        w.invalid(&k, "must be at least 1 second");
                    } else {
                        timeout = t;
                    }
                }
            }
            _ => {}
        }
    }
    match command {
        Some(command) => Some(RawHealthCheck { command, timeout }),
        None => {
            if !m.contains_key("command") {
                w.invalid(key, "missing `command`");
            }
            None
        }
    }
}
