//! From a merged config to a [`ResolvedInstance`]: properties substituted, names, paths and
//! datasets checked, duplicates found, the device source (template) resolved.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use super::file::{Field, RawConfig};
use super::merge::{self, absolute, conditional_path, read_tree, Tree};
use super::properties::{builtins, substitute, GlobalValue, Properties, SubstError};
use super::types::*;
use super::{ConfigError, LoadOptions};
use crate::input::yaml::suggest;

/// Default seconds of clean stop before a forced stop.
pub const DEFAULT_STOP_TIMEOUT: u64 = 30;

/// Default seconds to wait, after a start, for the container to be ready for cloud-config
/// (what lxdops waited for an IPv4 address).
pub const DEFAULT_WAIT_READY: u64 = 300;

/// Suffix of the instance's own profile when there is no `profile-pattern`.
pub const PROFILE_SUFFIX: &str = ".reroot";

/// Check an instance name against LXD's rules.
pub fn check_instance_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters long".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(format!(
            "may only contain ASCII letters, digits and hyphens (found `{c}`)"
        ));
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("must not start with a digit".into());
    }
    if name.starts_with('-') {
        return Err("must not start with a hyphen".into());
    }
    if name.ends_with('-') {
        return Err("must not end with a hyphen".into());
    }
    Ok(())
}

/// What is wrong with `image: REMOTE:ALIAS` (as the lxops tutorial writes `images:alpine/3.23`),
/// if anything: both parts must be there. Whether the remote exists and serves the image is
/// asked when a run is planned (`run::images`), not here: a config is read without the
/// client configuration.
fn remote_image(v: &str) -> Option<String> {
    let (remote, alias) = v.split_once(':')?;
    if remote.is_empty() || alias.is_empty() || remote.contains('/') {
        return Some(format!(
            "`{v}`: expected ALIAS, or REMOTE:ALIAS for an image on a remote of the lxc/incus \
             client configuration"
        ));
    }
    None
}

/// Check the name of an instance snapshot (`snapshot:`): LXD refuses `/` in it, and an empty
/// name would mean none.
fn check_snapshot_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("the snapshot name must not be empty".into());
    }
    if s.contains('/') || s.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{s}` is not a valid snapshot name (no `/` or spaces)"
        ));
    }
    if s == "." || s == ".." {
        return Err(format!("`{s}` is not a valid snapshot name"));
    }
    Ok(())
}

/// Check a ZFS dataset name: `pool/a/b`, components of letters, digits and `_-.:`.
fn check_dataset(s: &str) -> Result<(), String> {
    if s.starts_with('/') {
        return Err("a zfs dataset name does not start with `/` (use `kind: dir` or `kind: btrfs` for a path)".into());
    }
    if s.ends_with('/') {
        return Err("a zfs dataset name does not end with `/`".into());
    }
    for (i, c) in s.split('/').enumerate() {
        if c.is_empty() {
            return Err("empty component in zfs dataset name".into());
        }
        if c == "." || c == ".." {
            return Err(format!("`{c}` is not allowed in a zfs dataset name"));
        }
        if let Some(bad) = c
            .chars()
            .find(|ch| !(ch.is_ascii_alphanumeric() || "_-.:".contains(*ch)))
        {
            return Err(format!(
                "character `{bad}` is not allowed in a zfs dataset name"
            ));
        }
        if i == 0 && !c.starts_with(|ch: char| ch.is_ascii_alphabetic()) {
            return Err("a zfs pool name starts with a letter".into());
        }
    }
    Ok(())
}

/// A normalized absolute path without `..`.
fn check_absolute(s: &str, what: &str) -> Result<PathBuf, String> {
    let p = Path::new(s);
    if !p.is_absolute() {
        return Err(format!("{what} must be an absolute path"));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(format!("`..` is not allowed in {what}"));
    }
    Ok(p.components().collect())
}

/// A normalized relative path without `..`; `.` gives the empty path.
fn check_relative(s: &str, fs: &str) -> Result<PathBuf, String> {
    let p = Path::new(s);
    if p.is_absolute() {
        return Err(format!(
            "must be relative to filesystem `{fs}` (an absolute dir is only for a device without a filesystem)"
        ));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(format!("`..` would leave filesystem `{fs}`"));
    }
    Ok(p.components().filter(|c| *c != Component::CurDir).collect())
}

/// Substitutes fields with one property set, recording problems.
struct Subst<'a> {
    props: &'a Properties,
    errors: &'a mut Vec<ConfigError>,
}

impl Subst<'_> {
    fn field(&mut self, f: &Field<String>) -> Option<String> {
        self.text(&f.value, &f.file, &f.key)
    }

    fn text(&mut self, text: &str, file: &Path, key: &str) -> Option<String> {
        match substitute(text, |k| self.props.get(k)) {
            Ok(s) => Some(s),
            Err(SubstError::Unknown(property)) => {
                let suggestion = suggest(&property, self.props.names());
                self.errors.push(ConfigError::UnknownProperty {
                    file: file.to_path_buf(),
                    key: key.to_string(),
                    property,
                    suggestion,
                });
                None
            }
            Err(SubstError::Empty) => {
                self.errors.push(ConfigError::EmptyProperty {
                    file: file.to_path_buf(),
                    key: key.to_string(),
                });
                None
            }
        }
    }

    fn bad_path(&mut self, f: &Field<String>, value: &str, message: String) {
        self.errors.push(ConfigError::BadPath {
            file: f.file.clone(),
            key: f.key.clone(),
            value: value.to_string(),
            message,
        });
    }

    fn invalid<T>(&mut self, f: &Field<T>, message: impl Into<String>) {
        self.errors.push(ConfigError::Invalid {
            file: f.file.clone(),
            key: f.key.clone(),
            message: message.into(),
        });
    }
}

/// The properties that include paths see: `(instance)`, `-P` and global ones.
pub(crate) fn include_properties(
    name: &str,
    opts: &LoadOptions,
    globals: &[GlobalValue],
) -> Properties {
    let mut p = Properties::default();
    p.global(globals);
    p.layer(opts.properties.iter().cloned(), || {
        PropertySource::CommandLine
    });
    p.layer([("instance".to_string(), name.to_string())], || {
        PropertySource::BuiltIn
    });
    p
}

/// Every property of an instance, by precedence.
fn instance_properties(
    merged: &RawConfig,
    name: &str,
    project: &str,
    opts: &LoadOptions,
    globals: &[GlobalValue],
) -> Properties {
    let mut p = Properties::default();
    p.global(globals);
    for (k, f) in &merged.properties {
        p.layer([(k.clone(), f.value.clone())], || {
            PropertySource::Config(f.file.clone())
        });
    }
    p.layer(opts.properties.iter().cloned(), || {
        PropertySource::CommandLine
    });
    p.layer(builtins(name, project), || PropertySource::BuiltIn);
    p
}

/// Resolve one config file named on the command line.
pub(crate) fn resolve_file(
    top: &Path,
    name: Option<&str>,
    opts: &LoadOptions,
    globals: &[GlobalValue],
    errors: &mut Vec<ConfigError>,
) -> Option<(ResolvedInstance, Properties)> {
    let top = absolute(top);
    let name = match name {
        Some(n) => n.to_string(),
        None => top
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let before = errors.len();
    if let Err(message) = check_instance_name(&name) {
        errors.push(ConfigError::BadName {
            file: top.clone(),
            name: name.clone(),
            message,
        });
    }
    let include_props = include_properties(&name, opts, globals);
    let tree = read_tree(&top, &include_props, errors)?;
    // Unknown keys change nothing else, so resolution goes on to find more problems; after
    // any other problem it would only report consequences.
    if errors[before..]
        .iter()
        .any(|e| !matches!(e, ConfigError::UnknownKey { .. }))
    {
        return None;
    }
    resolve_tree(&tree, &name, opts, globals, errors)
}

fn resolve_tree(
    tree: &Tree,
    name: &str,
    opts: &LoadOptions,
    globals: &[GlobalValue],
    errors: &mut Vec<ConfigError>,
) -> Option<(ResolvedInstance, Properties)> {
    let before = errors.len();
    let m = &tree.merged;
    let project = match (&opts.project, &m.project) {
        (Some(p), _) if !p.is_empty() => p.clone(),
        (_, Some(p)) => p.value.trim().to_string(),
        _ => "default".to_string(),
    };
    if project.is_empty() || project.contains(['/', ' ', '\t']) {
        let (file, key) = match &m.project {
            Some(f) => (f.file.clone(), f.key.clone()),
            None => (m.file.clone(), "project".into()),
        };
        errors.push(ConfigError::Invalid {
            file,
            key,
            message: format!("invalid project name `{project}`"),
        });
    }
    let props = instance_properties(m, name, &project, opts, globals);
    let mut s = Subst {
        props: &props,
        errors,
    };

    let remote = m.remote.as_ref().and_then(|f| {
        let v = s.field(f)?;
        let v = v.trim().to_string();
        if v.is_empty() || v.contains(['/', ' ', '\t', ':']) {
            s.invalid(
                f,
                format!("`{v}` is not a remote name (as `lxc remote list` shows them)"),
            );
            return None;
        }
        Some(v)
    });
    let image = m
        .image
        .as_ref()
        .and_then(|f| Some((f, s.field(f)?)))
        .filter(|(_, v)| !v.is_empty())
        .and_then(|(f, v)| match remote_image(&v) {
            Some(message) => {
                s.invalid(f, message);
                None
            }
            None => Some(v),
        });
    let origin = m.origin.as_ref().and_then(|f| {
        let v = s.field(f)?;
        match parse_origin(&v) {
            Ok(o) => Some(o),
            Err(message) => {
                s.invalid(f, message);
                None
            }
        }
    });
    let profile = match &m.profile_pattern {
        Some(f) => s.field(f).unwrap_or_default(),
        None => format!("{name}{PROFILE_SUFFIX}"),
    };
    if let Some(f) = &m.profile_pattern {
        if profile.is_empty()
            || profile.contains(['/', ' ', '\t'])
            || profile == "."
            || profile == ".."
        {
            s.invalid(f, format!("`{profile}` is not a valid profile name"));
        }
    }
    let device_placement = match &m.device_placement {
        None => DevicePlacement::default(),
        Some(f) => match s.field(f).map(|v| v.trim().parse::<DevicePlacement>()) {
            Some(Ok(p)) => p,
            Some(Err(message)) => {
                s.invalid(f, message);
                DevicePlacement::default()
            }
            None => DevicePlacement::default(),
        },
    };
    let device_owner = m.device_owner.as_ref().and_then(|f| {
        let v = s.field(f)?;
        match parse_owner(&v) {
            Some(o) => Some(o),
            None => {
                s.invalid(f, format!("`{v}`: expected uid:gid, two numbers"));
                None
            }
        }
    });

    // lxc-options
    let mut instance_config = BTreeMap::new();
    let mut ephemeral = false;
    let mut extra_profiles: Vec<Field<String>> = Vec::new();
    let mut tokens: Vec<(String, &Field<String>)> = Vec::new();
    for f in &m.lxc_options {
        let Some(v) = s.field(f) else { continue };
        let v = v.trim().to_string();
        match v.split_once(char::is_whitespace) {
            Some((flag, rest)) if v.starts_with('-') && !flag.contains('=') => {
                tokens.push((flag.to_string(), f));
                tokens.push((rest.trim().to_string(), f));
            }
            _ => tokens.push((v, f)),
        }
    }
    let mut it = tokens.into_iter();
    while let Some((tok, f)) = it.next() {
        let (flag, inline) = match tok.split_once('=') {
            Some((fl, val)) if fl.starts_with("--") => (fl.to_string(), Some(val.to_string())),
            _ => (tok.clone(), None),
        };
        match flag.as_str() {
            "-c" | "--config" => {
                let Some(kv) = inline.or_else(|| it.next().map(|(t, _)| t)) else {
                    s.invalid(f, format!("`{flag}` needs key=value"));
                    continue;
                };
                match kv.split_once('=') {
                    Some((k, v)) if !k.is_empty() => {
                        instance_config.insert(k.to_string(), v.to_string());
                    }
                    _ => s.invalid(f, format!("`{flag} {kv}`: expected key=value")),
                }
            }
            "-p" | "--profile" => match inline.or_else(|| it.next().map(|(t, _)| t)) {
                Some(p) if !p.is_empty() => extra_profiles.push(Field {
                    value: p,
                    file: f.file.clone(),
                    key: f.key.clone(),
                }),
                _ => s.invalid(f, format!("`{flag}` needs a profile name")),
            },
            "-e" | "--ephemeral" => ephemeral = true,
            "--vm" => s.invalid(f, "`--vm`: reroot manages containers only"),
            _ => s.invalid(
                f,
                format!(
                    "unsupported lxc option `{tok}` (supported: -c/--config KEY=VALUE, -p/--profile NAME, -e/--ephemeral)"
                ),
            ),
        }
    }

    // profiles
    let mut profiles = Vec::new();
    let mut seen: HashMap<String, ()> = HashMap::new();
    let config_profiles: Vec<&Field<String>> =
        m.profiles.iter().chain(extra_profiles.iter()).collect();
    for f in &config_profiles {
        let v = f.value.trim().to_string();
        if v.is_empty() || v.contains('/') {
            s.invalid(f, format!("`{v}` is not a valid profile name"));
            continue;
        }
        if seen.insert(v.clone(), ()).is_some() {
            s.errors.push(ConfigError::Duplicate {
                file: f.file.clone(),
                key: f.key.clone(),
                what: "profile",
                value: v,
            });
            continue;
        }
        if v == profile {
            s.invalid(
                f,
                format!("`{v}` is the instance's own profile; it is attached anyway"),
            );
            continue;
        }
        profiles.push(v);
    }
    if profiles.is_empty() {
        profiles.push("default".to_string());
    }

    let (filesystems, devices) = resolve_storage(m, &mut s);

    // cloud-config files
    let mut cloud_config_files: Vec<PathBuf> = Vec::new();
    let mut missing_cloud = false;
    for f in &m.cloud_config_files {
        let Some(p) = conditional_path(f, &props, s.errors) else {
            continue;
        };
        let p: PathBuf = p.components().collect();
        if cloud_config_files.contains(&p) {
            s.errors.push(ConfigError::Duplicate {
                file: f.file.clone(),
                key: f.key.clone(),
                what: "cloud-config file",
                value: p.display().to_string(),
            });
            continue;
        }
        if !p.is_file() {
            s.invalid(
                f,
                format!("cloud-config file {} does not exist", p.display()),
            );
            missing_cloud = true;
        }
        cloud_config_files.push(p);
    }

    // The files' own problems, and what the OS type cannot do (packages on busybox, users on
    // openwrt), are found now, not halfway through a rebuild: by the checker the caller gives
    // (config reads no cloud-config itself).
    // With a file missing, the others are still checked, but not planned as a whole.
    if let Some(check) = opts.cloud_config_check {
        let present: Vec<PathBuf> = cloud_config_files
            .iter()
            .filter(|p| p.is_file())
            .cloned()
            .collect();
        let ostype = m
            .ostype
            .as_ref()
            .map(|o| o.value)
            .filter(|_| !missing_cloud);
        s.errors.extend(check(&present, ostype));
    }
    let health_check = m.health_check.as_ref().map(|h| HealthCheck {
        command: h.value.command.clone(),
        timeout: h.value.timeout,
    });
    let stop_timeout = m
        .stop_timeout
        .as_ref()
        .map_or(DEFAULT_STOP_TIMEOUT, |f| f.value);

    let stop = m.stop.as_ref().is_some_and(|f| f.value);
    if let (true, true, Some(f)) = (stop, ephemeral, &m.stop) {
        s.invalid(
            f,
            "an ephemeral instance (`-e` in lxc-options) is deleted by the daemon when it \
             stops: `stop: true` would delete it",
        );
    }
    let snapshot = m.snapshot.as_ref().and_then(|f| {
        let v = s.field(f)?.trim().to_string();
        match check_snapshot_name(&v) {
            Ok(()) => Some(v),
            Err(message) => {
                s.invalid(f, message);
                None
            }
        }
    });

    let device_source = device_source(m, &project, &filesystems, opts, globals, &mut s);

    if s.errors.len() > before {
        return None;
    }
    let instance = ResolvedInstance {
        name: name.to_string(),
        project,
        remote,
        description: m
            .description
            .as_ref()
            .map(|f| f.value.clone())
            .unwrap_or_default(),
        config_file: m.file.clone(),
        ostype: m.ostype.as_ref().map(|f| f.value),
        image,
        origin,
        device_source,
        profiles,
        profile,
        device_placement,
        device_owner,
        filesystems,
        devices,
        cloud_config_files,
        instance_config,
        ephemeral,
        stop_timeout,
        health_check,
        stop,
        snapshot,
        wait_ready: m
            .wait_ready
            .as_ref()
            .map_or(DEFAULT_WAIT_READY, |f| f.value),
        files: tree.files.clone(),
    };
    Some((instance, props))
}

fn parse_owner(v: &str) -> Option<Owner> {
    let (u, g) = v.trim().split_once(':')?;
    Some(Owner {
        uid: u.parse().ok()?,
        gid: g.parse().ok()?,
    })
}

/// `[project_]instance`: instance names cannot hold `_`, so the first `_` ends the project.
fn parse_qualified(v: &str) -> Result<(Option<String>, String), String> {
    let (project, inst) = match v.split_once('_') {
        Some((p, i)) if !p.is_empty() => (Some(p.to_string()), i.to_string()),
        Some(_) => return Err(format!("`{v}`: empty project before `_`")),
        None => (None, v.to_string()),
    };
    check_instance_name(&inst).map_err(|m| format!("instance `{inst}` {m}"))?;
    Ok((project, inst))
}

/// `[project_]instance[/snapshot]`.
pub(crate) fn parse_origin(v: &str) -> Result<Origin, String> {
    let (inst, snapshot) = match v.split_once('/') {
        Some((i, s)) => {
            if s.is_empty() || s.contains('/') {
                return Err(format!("`{v}`: expected [PROJECT_]INSTANCE[/SNAPSHOT]"));
            }
            (i, Some(s.to_string()))
        }
        None => (v, None),
    };
    let (project, instance) = parse_qualified(inst)?;
    Ok(Origin {
        project,
        instance,
        snapshot,
    })
}

/// Resolve the filesystems and devices of a merged config with one property set.
fn resolve_storage(m: &RawConfig, s: &mut Subst<'_>) -> (Vec<Filesystem>, Vec<Device>) {
    let mut filesystems: Vec<Filesystem> = Vec::new();
    for (id, f) in &m.filesystems {
        let fs = &f.value;
        let Some(value) = s.field(&fs.pattern) else {
            continue;
        };
        let kind = fs.kind.unwrap_or(if value.starts_with('/') {
            FilesystemKind::Dir
        } else {
            FilesystemKind::Zfs
        });
        let path = match kind {
            FilesystemKind::Zfs => match check_dataset(&value) {
                Ok(()) => FilesystemPath::Zfs {
                    dataset: value.clone(),
                },
                Err(e) => {
                    s.bad_path(&fs.pattern, &value, e);
                    continue;
                }
            },
            FilesystemKind::Btrfs | FilesystemKind::Dir => {
                let what = if kind == FilesystemKind::Btrfs {
                    "a btrfs subvolume path"
                } else {
                    "a directory filesystem path"
                };
                match check_absolute(&value, what) {
                    Ok(p) if p == Path::new("/") => {
                        s.bad_path(&fs.pattern, &value, "a filesystem cannot be `/`".into());
                        continue;
                    }
                    Ok(p) if kind == FilesystemKind::Btrfs => FilesystemPath::Btrfs { path: p },
                    Ok(p) => FilesystemPath::Dir { path: p },
                    Err(e) => {
                        s.bad_path(&fs.pattern, &value, e);
                        continue;
                    }
                }
            }
        };
        if !fs.zfs_properties.is_empty() && kind != FilesystemKind::Zfs {
            s.invalid(f, "`zfsproperties` only applies to zfs filesystems");
        }
        if let Some(other) = filesystems.iter().find(|o| o.path == path) {
            let message = format!("filesystem `{}` has the same path", other.id);
            s.errors.push(ConfigError::Duplicate {
                file: fs.pattern.file.clone(),
                key: fs.pattern.key.clone(),
                what: "filesystem path",
                value: format!("{} ({message})", path.display()),
            });
            continue;
        }
        filesystems.push(Filesystem {
            id: id.clone(),
            path,
            destroy: fs.destroy,
            transient: fs.transient,
            zfs_properties: fs.zfs_properties.iter().cloned().collect(),
        });
    }

    let mut devices: Vec<Device> = Vec::new();
    for (name, f) in &m.devices {
        let d = &f.value;
        let Some(path) = s.field(&d.path) else {
            continue;
        };
        let path = match check_absolute(&path, "a device path") {
            Ok(p) => p.display().to_string(),
            Err(e) => {
                s.bad_path(&d.path, &path, e);
                continue;
            }
        };
        if devices.iter().any(|o| o.path == path) {
            s.errors.push(ConfigError::Duplicate {
                file: d.path.file.clone(),
                key: d.path.key.clone(),
                what: "device path",
                value: path,
            });
            continue;
        }
        let dir_text = match &d.dir {
            Some(df) => match s.field(df) {
                Some(v) => Some(v),
                None => continue,
            },
            None => None,
        };
        let (filesystem, subdir, host_dir) = match &d.filesystem {
            Some(fsf) => {
                let id = fsf.value.trim();
                if !m.filesystems.iter().any(|(k, _)| k == id) {
                    let suggestion = suggest(id, m.filesystems.iter().map(|(k, _)| k.as_str()));
                    s.invalid(
                        fsf,
                        format!(
                            "no filesystem `{id}`{}",
                            suggestion
                                .map(|x| format!(" (did you mean `{x}`?)"))
                                .unwrap_or_default()
                        ),
                    );
                    continue;
                }
                let Some(fs) = filesystems.iter().find(|x| x.id == id) else {
                    continue; // its own problem is already reported
                };
                let text = dir_text.unwrap_or_else(|| name.clone());
                let sub = match check_relative(&text, id) {
                    Ok(p) => p,
                    Err(e) => {
                        let field = d.dir.clone().unwrap_or_else(|| Field {
                            value: text.clone(),
                            file: f.file.clone(),
                            key: f.key.clone(),
                        });
                        s.bad_path(&field, &text, e);
                        continue;
                    }
                };
                let host = if sub.as_os_str().is_empty() {
                    fs.path.default_dir()
                } else {
                    fs.path.default_dir().join(&sub)
                };
                (Some(id.to_string()), sub, host)
            }
            None => {
                let Some(text) = dir_text else {
                    s.invalid(f, "a device without `filesystem` needs an absolute `dir`");
                    continue;
                };
                let df = d.dir.clone().unwrap_or_else(|| Field {
                    value: text.clone(),
                    file: f.file.clone(),
                    key: f.key.clone(),
                });
                match check_absolute(&text, "the dir of a device without a filesystem") {
                    Ok(p) => (None, PathBuf::new(), p),
                    Err(e) => {
                        s.bad_path(&df, &text, e);
                        continue;
                    }
                }
            }
        };
        devices.push(Device {
            name: name.clone(),
            path,
            filesystem,
            subdir,
            host_dir,
            readonly: d.readonly,
        });
    }
    filesystems.sort_by_key(|f| f.path.display());
    (filesystems, devices)
}

/// Resolve `device-origin` / `device-template` into the source instance.
fn device_source(
    m: &RawConfig,
    project: &str,
    filesystems: &[Filesystem],
    opts: &LoadOptions,
    globals: &[GlobalValue],
    s: &mut Subst<'_>,
) -> Option<DeviceSource> {
    let (spec, is_origin) = match (&m.device_origin, &m.device_template) {
        (Some(f), _) if !f.value.trim().is_empty() => (f, true),
        (_, Some(f)) if !f.value.trim().is_empty() => (f, false),
        _ => return None,
    };
    let value = s.field(spec)?;
    let (qualified, snapshot) = if is_origin {
        match value.split_once('@') {
            Some((i, snap)) if !i.is_empty() && !snap.is_empty() && !snap.contains(['/', '@']) => {
                (i.to_string(), Some(snap.to_string()))
            }
            _ => {
                s.invalid(
                    spec,
                    format!("`{value}`: expected [PROJECT_]INSTANCE@SNAPSHOT"),
                );
                return None;
            }
        }
    } else {
        (value.clone(), None)
    };
    let (src_project, src_name) = match parse_qualified(&qualified) {
        Ok(x) => x,
        Err(message) => {
            s.invalid(spec, message);
            return None;
        }
    };
    if is_origin {
        for fs in filesystems.iter().filter(|f| !f.transient) {
            if fs.path.kind() != FilesystemKind::Zfs {
                s.invalid(
                    spec,
                    format!(
                        "cannot clone filesystem `{}` ({}): device-origin needs zfs filesystems (mark it transient or use device-template)",
                        fs.id,
                        fs.path.display()
                    ),
                );
            }
        }
    }
    // The source config: `source-config`, else this one.
    let mut local_errors = Vec::new();
    let src_tree_owned;
    let src_merged: &RawConfig = match &m.source_config {
        Some(f) => {
            let rel = s.field(f)?;
            let path = f.file.parent().unwrap_or(Path::new("/")).join(rel);
            if !path.is_file() {
                s.invalid(
                    f,
                    format!("source config {} does not exist", path.display()),
                );
                return None;
            }
            let inc = merge::absolute(&path);
            let props = include_properties(&src_name, opts, globals);
            src_tree_owned = read_tree(&inc, &props, &mut local_errors);
            match &src_tree_owned {
                Some(t) => &t.merged,
                None => {
                    s.errors.append(&mut local_errors);
                    return None;
                }
            }
        }
        None => m,
    };
    let src_project = src_project
        .or_else(|| {
            m.source_config
                .as_ref()
                .and(src_merged.project.as_ref())
                .map(|p| p.value.trim().to_string())
                .filter(|p| !p.is_empty())
        })
        .unwrap_or_else(|| project.to_string());
    // The source sees `-P` too: the demo's configs take a host-wide root such as `(fsroot)`
    // from the command line, for the template's data as for the website's; only `(instance)`
    // differs (lxops hid `-P` from the source, so those configs could not resolve).
    let props = instance_properties(src_merged, &src_name, &src_project, opts, globals);
    let mut sub = Subst {
        props: &props,
        errors: &mut local_errors,
    };
    let (src_fs, src_devices) = resolve_storage(src_merged, &mut sub);
    if !local_errors.is_empty() {
        s.errors
            .extend(local_errors.into_iter().map(|e| ConfigError::InSource {
                instance: src_name.clone(),
                error: Box::new(e),
            }));
        return None;
    }
    let instance = SourceInstance {
        name: src_name,
        project: src_project,
        config_file: src_merged.file.clone(),
        filesystems: src_fs,
        devices: src_devices,
    };
    Some(match snapshot {
        Some(snapshot) => DeviceSource::Origin { instance, snapshot },
        None => DeviceSource::Template { instance },
    })
}
