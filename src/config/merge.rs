//! Includes: reading a config file with everything it includes, and merging them.
//!
//! Include paths are relative to the including file. They are substituted with `(instance)`,
//! the `-P` properties and the global properties only (config properties are not known yet);
//! a path naming a property that is undefined or empty is dropped (a conditional include).
//! Files are merged in post-order, includes first and the including file last, so the
//! including file wins: on scalars (a later non-empty value replaces), on whole map entries
//! (`filesystems`, `devices`, `properties`: per key, no deep merge) and on `lxc-options`
//! (a later non-empty list replaces). Lists (`profiles`, `cloud-config-files`) are appended,
//! includes first. Unlike lxops, `ostype` and `image` follow the same rule: the including
//! file wins. A file included twice (a diamond) is merged once, where it is first reached;
//! a cycle is an error naming the chain.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::file::{self, Field, RawConfig};
use super::properties::{substitute, Properties, SubstError};
use super::types::ConfigFileDigest;
use super::ConfigError;

/// A top file merged with its includes.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub merged: RawConfig,
    /// The top file first, then the included files in merge order.
    pub files: Vec<ConfigFileDigest>,
}

/// The absolute form of a path, with `.` and `..` removed lexically (symlinks are not
/// resolved; file identity uses `canonicalize`).
pub(crate) fn absolute(p: &Path) -> PathBuf {
    use std::path::Component;
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Substitute a conditional path (include or cloud-config file): `None` drops it.
pub(crate) fn conditional_path(
    field: &Field<String>,
    props: &Properties,
    errors: &mut Vec<ConfigError>,
) -> Option<PathBuf> {
    match substitute(&field.value, |k| props.get(k).filter(|v| !v.is_empty())) {
        Ok(s) if s.trim().is_empty() => None,
        Ok(s) => {
            let base = field.file.parent().unwrap_or(Path::new("/"));
            Some(absolute(&base.join(s)))
        }
        Err(SubstError::Unknown(_)) => None,
        Err(SubstError::Empty) => {
            errors.push(ConfigError::EmptyProperty {
                file: field.file.clone(),
                key: field.key.clone(),
            });
            None
        }
    }
}

/// Read `top` and everything it includes, and merge. `None` if the top file itself could not
/// be read; problems go to `errors`.
pub(crate) fn read_tree(
    top: &Path,
    props: &Properties,
    errors: &mut Vec<ConfigError>,
) -> Option<Tree> {
    let mut state = State {
        stack: Vec::new(),
        visited: HashSet::new(),
        out: Vec::new(),
    };
    visit(&absolute(top), &mut state, props, errors);
    let top_abs = absolute(top);
    let last = state.out.pop()?;
    if last.file != top_abs {
        // The top file could not be read; what was collected belongs to nothing.
        return None;
    }
    let mut files = vec![ConfigFileDigest {
        path: last.file.clone(),
        sha256: last.sha256.clone(),
    }];
    files.extend(state.out.iter().map(|c| ConfigFileDigest {
        path: c.file.clone(),
        sha256: c.sha256.clone(),
    }));
    let mut merged = RawConfig::default();
    for c in state.out {
        merged = overlay(merged, c);
    }
    merged = overlay(merged, last);
    Some(Tree { merged, files })
}

struct State {
    /// (identity, path as reached)
    stack: Vec<(PathBuf, PathBuf)>,
    visited: HashSet<PathBuf>,
    out: Vec<RawConfig>,
}

fn visit(path: &Path, state: &mut State, props: &Properties, errors: &mut Vec<ConfigError>) {
    let identity = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if let Some(pos) = state.stack.iter().position(|(id, _)| *id == identity) {
        let mut chain: Vec<PathBuf> = state.stack[pos..].iter().map(|(_, p)| p.clone()).collect();
        chain.push(path.to_path_buf());
        errors.push(ConfigError::IncludeCycle { chain });
        return;
    }
    if !state.visited.insert(identity.clone()) {
        return;
    }
    let (raw, mut errs) = file::read(path);
    errors.append(&mut errs);
    let Some(raw) = raw else { return };
    state.stack.push((identity, path.to_path_buf()));
    for inc in &raw.include {
        if let Some(p) = conditional_path(inc, props, errors) {
            if !p.exists() {
                errors.push(ConfigError::Invalid {
                    file: inc.file.clone(),
                    key: inc.key.clone(),
                    message: format!("included file {} does not exist", p.display()),
                });
                continue;
            }
            visit(&p, state, props, errors);
        }
    }
    state.stack.pop();
    state.out.push(raw);
}

fn scalar<T>(
    base: Option<Field<T>>,
    top: Option<Field<T>>,
    empty: impl Fn(&T) -> bool,
) -> Option<Field<T>> {
    match top {
        Some(t) if !empty(&t.value) => Some(t),
        _ => base.or(top),
    }
}

fn entries<T>(mut base: Vec<(String, T)>, top: Vec<(String, T)>) -> Vec<(String, T)> {
    for (k, v) in top {
        match base.iter_mut().find(|(bk, _)| *bk == k) {
            Some(slot) => slot.1 = v,
            None => base.push((k, v)),
        }
    }
    base
}

/// Merge `top` over `base` (the including file over what it includes).
pub(crate) fn overlay(base: RawConfig, top: RawConfig) -> RawConfig {
    let s = |v: &String| v.trim().is_empty();
    let mut profiles = base.profiles;
    profiles.extend(top.profiles);
    let mut cloud = base.cloud_config_files;
    cloud.extend(top.cloud_config_files);
    RawConfig {
        file: top.file,
        sha256: top.sha256,
        description: scalar(base.description, top.description, s),
        ostype: scalar(base.ostype, top.ostype, |_| false),
        image: scalar(base.image, top.image, s),
        project: scalar(base.project, top.project, s),
        remote: scalar(base.remote, top.remote, s),
        origin: scalar(base.origin, top.origin, s),
        device_template: scalar(base.device_template, top.device_template, s),
        device_origin: scalar(base.device_origin, top.device_origin, s),
        source_config: scalar(base.source_config, top.source_config, s),
        lxc_options: if top.lxc_options.is_empty() {
            base.lxc_options
        } else {
            top.lxc_options
        },
        profiles,
        profile_pattern: scalar(base.profile_pattern, top.profile_pattern, s),
        device_owner: scalar(base.device_owner, top.device_owner, s),
        device_placement: scalar(base.device_placement, top.device_placement, s),
        filesystems: entries(base.filesystems, top.filesystems),
        devices: entries(base.devices, top.devices),
        properties: entries(base.properties, top.properties),
        include: top.include,
        cloud_config_files: cloud,
        stop_timeout: scalar(base.stop_timeout, top.stop_timeout, |_| false),
        health_check: scalar(base.health_check, top.health_check, |_| false),
        stop: scalar(base.stop, top.stop, |_| false),
        snapshot: scalar(base.snapshot, top.snapshot, s),
        wait_ready: scalar(base.wait_ready, top.wait_ready, |_| false),
    }
}
