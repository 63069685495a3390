//! Reading `#cloud-config` files: the subset reroot applies (packages, write_files, users,
//! timezone, runcmd). Unknown keys are errors, with a suggestion for near misses.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Serialize;
use serde_yaml::Value;

use crate::input::yaml::{self, Walker};
use crate::input::ConfigError;

/// Largest decoded `write_files` content accepted (a guard against gzip bombs).
pub const MAX_CONTENT: usize = 64 << 20;

/// One parsed cloud-config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloudConfig {
    pub file: PathBuf,
    pub packages: Vec<String>,
    pub write_files: Vec<WriteFile>,
    pub users: Vec<User>,
    pub timezone: Option<String>,
    /// Each command as an argument vector (a string `S` in the file is `sh -c S`).
    pub runcmd: Vec<Vec<String>>,
}

/// A `write_files` entry with its content decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteFile {
    /// Key path in the file, e.g. `write_files[2]`.
    pub key: String,
    pub path: String,
    #[serde(skip)]
    pub content: Vec<u8>,
    /// Owner user (name or number); default `root`.
    pub user: String,
    /// Owner group (name or number); `None` = the user's primary group.
    pub group: Option<String>,
    /// Permission bits; default 0644.
    pub mode: u32,
    pub append: bool,
    pub defer: bool,
}

/// A `users` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Key path in the file, e.g. `users[0]`.
    pub key: String,
    pub name: String,
    pub uid: Option<u32>,
    pub shell: Option<String>,
    pub homedir: Option<String>,
    pub no_create_home: bool,
    pub primary_group: Option<String>,
    pub groups: Vec<String>,
    pub gecos: Option<String>,
    pub ssh_authorized_keys: Vec<String>,
    /// sudoers rules without the user name (`true` = `ALL=(ALL) NOPASSWD:ALL`); empty = none.
    pub sudo: Vec<String>,
    /// Disable password login (default true).
    pub lock_passwd: bool,
}

impl User {
    /// The home directory: `homedir`, `/root` for root, else `/home/<name>`.
    pub fn home(&self) -> String {
        match &self.homedir {
            Some(h) => h.clone(),
            None if self.name == "root" => "/root".into(),
            None => format!("/home/{}", self.name),
        }
    }
}

const TOP_KEYS: &[&str] = &["packages", "write_files", "users", "timezone", "runcmd"];
const FILE_KEYS: &[&str] = &[
    "path",
    "content",
    "encoding",
    "owner",
    "permissions",
    "append",
    "defer",
];
const USER_KEYS: &[&str] = &[
    "name",
    "uid",
    "shell",
    "homedir",
    "no_create_home",
    "primary_group",
    "groups",
    "gecos",
    "ssh_authorized_keys",
    "sudo",
    "lock_passwd",
];

/// The message for a key that lxdops (through its cloudconfig library, which ignores unknown
/// keys) skipped without a word, where the user meant a key reroot knows: a spelling with `-`
/// for `_` (`write-files`), or `mode` for `permissions`. Someone moving from lxdops has to hear
/// that those settings never took effect there, not only that reroot refuses them.
pub(crate) fn lxdops_ignored(key: &str, allowed: &[&str]) -> Option<String> {
    let (right, effect) = match key {
        "mode" if allowed.contains(&"permissions") => {
            ("permissions", "the file got the default permissions 0644")
        }
        _ => {
            let right = key.replace('-', "_");
            let known = allowed.iter().find(|a| **a == right && right != key)?;
            let effect = match *known {
                "write_files" => "those files were never written",
                "packages" => "those packages were never installed",
                "users" => "those users were never created",
                "runcmd" => "those commands never ran",
                _ => "the setting never took effect",
            };
            (*known, effect)
        }
    };
    Some(format!(
        "not a cloud-config key: lxdops ignored it without a word ({effect}); the key is `{right}`"
    ))
}

/// The sudo rule `sudo: true` stands for.
pub const SUDO_ALL: &str = "ALL=(ALL) NOPASSWD:ALL";

/// A user or group name acceptable to every supported OS.
pub fn valid_account_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// Read and parse a cloud-config file.
pub fn parse_file(file: &Path) -> Result<CloudConfig, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    parse_str(file, &text)
}

/// Parse the text of a cloud-config file; every problem is reported.
pub fn parse_str(file: &Path, text: &str) -> Result<CloudConfig, ConfigError> {
    crate::input::check_header(file, text, &["#cloud-config"], "`#cloud-config`")?;
    let doc = yaml::parse_document(file, text)?;
    let mut w = Walker::new(file);
    let mut cc = CloudConfig {
        file: file.to_path_buf(),
        packages: Vec::new(),
        write_files: Vec::new(),
        users: Vec::new(),
        timezone: None,
        runcmd: Vec::new(),
    };
    if let Some(top) = w.map(&doc, "(top level)") {
        for (name, key, v) in w.fields(top, "", TOP_KEYS, |k| lxdops_ignored(k, TOP_KEYS)) {
            match name {
                "packages" => {
                    for (p, k) in w.string_list(v, &key) {
                        if p.is_empty() || p.starts_with('-') || p.contains(char::is_whitespace) {
                            w.invalid(&k, format!("`{p}` is not a package name"));
                        } else {
                            cc.packages.push(p);
                        }
                    }
                }
                "write_files" => cc.write_files = items(&mut w, v, &key, write_file),
                "users" => cc.users = items(&mut w, v, &key, user),
                "timezone" => {
                    if let Some(tz) = w.nonempty_string(v, &key) {
                        if valid_timezone(&tz) {
                            cc.timezone = Some(tz);
                        } else {
                            w.invalid(
                                &key,
                                format!("`{tz}` is not a timezone name like Europe/Athens"),
                            );
                        }
                    }
                }
                "runcmd" => cc.runcmd = items(&mut w, v, &key, command),
                _ => {}
            }
        }
    }
    match ConfigError::from_list(w.errors) {
        Some(e) => Err(e),
        None => Ok(cc),
    }
}

fn valid_timezone(tz: &str) -> bool {
    !tz.starts_with('/')
        && !tz.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        && tz
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-/".contains(c))
}

fn items<T>(
    w: &mut Walker,
    v: &Value,
    key: &str,
    each: fn(&mut Walker, &Value, &str) -> Option<T>,
) -> Vec<T> {
    match v {
        Value::Null => Vec::new(),
        Value::Sequence(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, item)| each(w, item, &yaml::index(key, i)))
            .collect(),
        other => {
            w.wrong_type(key, "a list", other);
            Vec::new()
        }
    }
}

fn command(w: &mut Walker, v: &Value, key: &str) -> Option<Vec<String>> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(vec!["sh".into(), "-c".into(), s.clone()]),
        Value::String(_) => {
            w.invalid(key, "empty command");
            None
        }
        Value::Sequence(_) => {
            let argv: Vec<String> = w.string_list(v, key).into_iter().map(|(s, _)| s).collect();
            if argv.is_empty() || argv[0].is_empty() {
                w.invalid(key, "empty command");
                None
            } else {
                Some(argv)
            }
        }
        other => {
            w.wrong_type(
                key,
                "a string (run by sh -c) or a list (an argument vector)",
                other,
            );
            None
        }
    }
}

fn decode(w: &mut Walker, key: &str, content: &str, encoding: &str) -> Option<Vec<u8>> {
    let b64 = |w: &mut Walker| -> Option<Vec<u8>> {
        let compact: String = content.chars().filter(|c| !c.is_whitespace()).collect();
        match base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) {
            Ok(b) => Some(b),
            Err(e) => {
                w.invalid(key, format!("content is not valid base64: {e}"));
                None
            }
        }
    };
    match encoding {
        "plain" | "text/plain" => Some(content.as_bytes().to_vec()),
        "b64" | "base64" => b64(w),
        "gzip+b64" | "gz+b64" | "gzip+base64" | "gz+base64" => {
            let packed = b64(w)?;
            let mut out = Vec::new();
            let mut dec =
                flate2::read::GzDecoder::new(packed.as_slice()).take(MAX_CONTENT as u64 + 1);
            match dec.read_to_end(&mut out) {
                Ok(_) if out.len() > MAX_CONTENT => {
                    w.invalid(
                        key,
                        format!("decompressed content is larger than {MAX_CONTENT} bytes"),
                    );
                    None
                }
                Ok(_) => Some(out),
                Err(e) => {
                    w.invalid(key, format!("content is not valid gzip: {e}"));
                    None
                }
            }
        }
        other => {
            let known = [
                "plain",
                "b64",
                "base64",
                "gzip+b64",
                "gz+b64",
                "gzip+base64",
                "gz+base64",
            ];
            let hint = yaml::suggest(other, known)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            w.invalid(
                &key.replace(".content", ".encoding"),
                format!(
                    "unknown encoding `{other}`{hint}; known: {}",
                    known.join(", ")
                ),
            );
            None
        }
    }
}

/// Octal permissions: `"0644"`, `"644"`, `"0o644"`, or a YAML number whose digits are octal.
fn permissions(w: &mut Walker, v: &Value, key: &str) -> Option<u32> {
    let s = w.string(v, key)?;
    let digits = s.trim().trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 && !digits.is_empty() => Some(m),
        _ => {
            w.invalid(key, format!("`{s}` is not an octal mode like \"0644\""));
            None
        }
    }
}

fn write_file(w: &mut Walker, v: &Value, key: &str) -> Option<WriteFile> {
    let m = match v {
        Value::Mapping(m) => m,
        other => {
            w.wrong_type(key, "a map", other);
            return None;
        }
    };
    let errors_before = w.errors.len();
    let mut path = None;
    let mut content = String::new();
    let mut encoding = "plain".to_string();
    let mut user = "root".to_string();
    let mut group = Some("root".to_string());
    let mut mode = 0o644;
    let (mut append, mut defer) = (false, false);
    for (n, k, v) in w.fields(m, key, FILE_KEYS, |k| lxdops_ignored(k, FILE_KEYS)) {
        match n {
            "path" => {
                if let Some(p) = w.nonempty_string(v, &k) {
                    if !p.starts_with('/') {
                        w.invalid(&k, format!("`{p}` must be an absolute path"));
                    } else if p.ends_with('/') || p.split('/').any(|c| c == "..") {
                        w.invalid(&k, format!("`{p}` must name a file, without `..`"));
                    } else {
                        path = Some(p);
                    }
                }
            }
            "content" => content = w.string(v, &k).unwrap_or_default(),
            "encoding" => encoding = w.string(v, &k).unwrap_or_default(),
            "owner" => {
                if let Some(o) = w.nonempty_string(v, &k) {
                    let (u, g) = match o.split_once(':') {
                        Some((u, g)) => (u.to_string(), Some(g.to_string())),
                        None => (o.clone(), None),
                    };
                    let ok = |s: &str| valid_account_name(s) || s.parse::<u32>().is_ok();
                    if ok(&u) && g.as_deref().is_none_or(ok) {
                        user = u;
                        group = g;
                    } else {
                        w.invalid(&k, format!("`{o}`: expected USER or USER:GROUP"));
                    }
                }
            }
            "permissions" => mode = permissions(w, v, &k).unwrap_or(mode),
            "append" => append = w.bool(v, &k).unwrap_or(false),
            "defer" => defer = w.bool(v, &k).unwrap_or(false),
            _ => {}
        }
    }
    if path.is_none() && !m.contains_key("path") {
        w.invalid(key, "missing `path`");
    }
    let content = decode(w, &yaml::join(key, "content"), &content, &encoding)?;
    if w.errors.len() > errors_before {
        return None;
    }
    Some(WriteFile {
        key: key.to_string(),
        path: path?,
        content,
        user,
        group,
        mode,
        append,
        defer,
    })
}

fn user(w: &mut Walker, v: &Value, key: &str) -> Option<User> {
    let m = match v {
        Value::String(s) if s == "default" => {
            w.invalid(
                key,
                "the cloud-init `default` user is not supported: list users with a name",
            );
            return None;
        }
        Value::Mapping(m) => m,
        other => {
            w.wrong_type(key, "a map with at least `name`", other);
            return None;
        }
    };
    let errors_before = w.errors.len();
    let mut u = User {
        key: key.to_string(),
        name: String::new(),
        uid: None,
        shell: None,
        homedir: None,
        no_create_home: false,
        primary_group: None,
        groups: Vec::new(),
        gecos: None,
        ssh_authorized_keys: Vec::new(),
        sudo: Vec::new(),
        lock_passwd: true,
    };
    let abs = |w: &mut Walker, v: &Value, k: &str| -> Option<String> {
        let s = w.nonempty_string(v, k)?;
        if s.starts_with('/') && !s.contains(':') && !s.contains('\n') {
            Some(s)
        } else {
            w.invalid(k, format!("`{s}` must be an absolute path without `:`"));
            None
        }
    };
    let name = |w: &mut Walker, s: String, k: &str| -> Option<String> {
        if valid_account_name(&s) {
            Some(s)
        } else {
            w.invalid(k, format!("`{s}` is not a valid user or group name"));
            None
        }
    };
    for (n, k, v) in w.fields(m, key, USER_KEYS, |k| lxdops_ignored(k, USER_KEYS)) {
        match n {
            "name" => {
                if let Some(s) = w.nonempty_string(v, &k) {
                    u.name = name(w, s, &k).unwrap_or_default();
                }
            }
            "uid" => {
                if let Some(x) = w.u64(v, &k) {
                    match u32::try_from(x) {
                        Ok(x) => u.uid = Some(x),
                        Err(_) => w.invalid(&k, "too large for a uid"),
                    }
                }
            }
            "shell" => u.shell = abs(w, v, &k),
            "homedir" => u.homedir = abs(w, v, &k),
            "no_create_home" => u.no_create_home = w.bool(v, &k).unwrap_or(false),
            "primary_group" => {
                if let Some(s) = w.nonempty_string(v, &k) {
                    u.primary_group = name(w, s, &k);
                }
            }
            "groups" => {
                let list: Vec<(String, String)> = match v {
                    Value::String(s) => s
                        .split(',')
                        .map(|g| (g.trim().to_string(), k.clone()))
                        .filter(|(g, _)| !g.is_empty())
                        .collect(),
                    _ => w.string_list(v, &k),
                };
                for (g, gk) in list {
                    if let Some(g) = name(w, g, &gk) {
                        if !u.groups.contains(&g) {
                            u.groups.push(g);
                        }
                    }
                }
            }
            "gecos" => {
                if let Some(s) = w.string(v, &k) {
                    if s.contains([':', '\n']) {
                        w.invalid(&k, "must not contain `:` or a newline");
                    } else {
                        u.gecos = Some(s);
                    }
                }
            }
            "ssh_authorized_keys" => {
                for (key_line, kk) in w.string_list(v, &k) {
                    let t = key_line.trim();
                    if t.is_empty() || t.contains('\n') {
                        w.invalid(&kk, "an authorized key is one non-empty line");
                    } else {
                        u.ssh_authorized_keys.push(t.to_string());
                    }
                }
            }
            "sudo" => match v {
                Value::Bool(true) => u.sudo = vec![SUDO_ALL.to_string()],
                Value::Bool(false) | Value::Null => u.sudo.clear(),
                Value::String(s) => u.sudo = vec![s.trim().to_string()],
                Value::Sequence(_) => {
                    u.sudo = w
                        .string_list(v, &k)
                        .into_iter()
                        .map(|(s, _)| s.trim().to_string())
                        .collect()
                }
                other => w.wrong_type(&k, "true, false, a rule or a list of rules", other),
            },
            "lock_passwd" => u.lock_passwd = w.bool(v, &k).unwrap_or(true),
            _ => {}
        }
    }
    if u.sudo.iter().any(|r| r.is_empty() || r.contains('\n')) {
        w.invalid(
            &yaml::join(key, "sudo"),
            "a sudo rule is one non-empty line",
        );
    }
    if u.name.is_empty() && !m.contains_key("name") {
        w.invalid(key, "missing `name`");
    }
    if w.errors.len() > errors_before || u.name.is_empty() {
        return None;
    }
    Some(u)
}
