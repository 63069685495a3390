//! Properties: `(name)` references in config values, the built-ins, and the global property
//! files.
//!
//! Precedence, highest first: built-ins (`instance`, `project`, `project/`,
//! `project_instance`) > `-P key=value` > `properties:` of the merged config > global files
//! (`--properties FILE` > `<config dir>/properties.yaml` > `<config dir>/properties.d/*.yaml`,
//! later names in sorted order winning over earlier ones).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::types::{Property, PropertySource};
use super::ConfigError;
use crate::input::yaml::{self, Walker};

/// A property value and where it comes from.
pub(crate) type Entry = (String, PropertySource);

/// Effective properties of one instance.
#[derive(Debug, Clone, Default)]
pub(crate) struct Properties {
    map: BTreeMap<String, Entry>,
}

impl Properties {
    /// Add a layer; it overrides what is already there.
    pub fn layer<I>(&mut self, values: I, source: impl Fn() -> PropertySource)
    where
        I: IntoIterator<Item = (String, String)>,
    {
        for (k, v) in values {
            self.map.insert(k, (v, source()));
        }
    }

    /// Add layers of global values, lowest precedence first.
    pub fn global(&mut self, globals: &[GlobalValue]) {
        for g in globals {
            self.map.insert(
                g.name.clone(),
                (g.value.clone(), PropertySource::Global(g.file.clone())),
            );
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(|(v, _)| v.as_str())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    pub fn list(&self) -> Vec<Property> {
        self.map
            .iter()
            .map(|(name, (value, source))| Property {
                name: name.clone(),
                value: value.clone(),
                source: source.clone(),
            })
            .collect()
    }
}

/// The built-in properties of an instance.
pub(crate) fn builtins(instance: &str, project: &str) -> Vec<(String, String)> {
    let (slash, underscore) = if project == "default" {
        (String::new(), instance.to_string())
    } else {
        (format!("{project}/"), format!("{project}_{instance}"))
    };
    vec![
        ("instance".into(), instance.into()),
        ("project".into(), project.into()),
        ("project/".into(), slash),
        ("project_instance".into(), underscore),
    ]
}

/// One value from a global property file.
#[derive(Debug, Clone)]
pub(crate) struct GlobalValue {
    pub name: String,
    pub value: String,
    pub file: PathBuf,
}

/// Read the global property files, lowest precedence first: `properties.d/*.yaml` sorted, then
/// `properties.yaml` (both optional, in `config_dir`), then `explicit` (which must exist).
pub(crate) fn load_global(
    config_dir: Option<&Path>,
    explicit: Option<&Path>,
) -> Result<Vec<GlobalValue>, Vec<ConfigError>> {
    let mut files = Vec::new();
    if let Some(dir) = config_dir {
        let d = dir.join("properties.d");
        if let Ok(entries) = std::fs::read_dir(&d) {
            let mut names: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            names.sort();
            files.extend(names);
        }
        let main = dir.join("properties.yaml");
        if main.exists() {
            files.push(main);
        }
    }
    if let Some(f) = explicit {
        files.push(f.to_path_buf());
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match read_property_file(&f) {
            Ok(values) => out.extend(values),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Read a property file: a YAML map of names to scalar values.
pub(crate) fn read_property_file(file: &Path) -> Result<Vec<GlobalValue>, Vec<ConfigError>> {
    let text = std::fs::read_to_string(file).map_err(|source| {
        vec![ConfigError::Read {
            file: file.to_path_buf(),
            source,
        }]
    })?;
    let doc = yaml::parse_document(file, &text).map_err(|e| vec![e])?;
    let mut w = Walker::new(file);
    let mut out = Vec::new();
    if let Some(m) = w.map(&doc, "(top level)") {
        for (name, key, v) in w.entries(m, "") {
            if name.contains(['(', ')']) {
                w.invalid(&key, "a property name cannot contain parentheses");
            } else if let Some(value) = w.string(v, &key) {
                out.push(GlobalValue {
                    name: name.to_string(),
                    value,
                    file: file.to_path_buf(),
                });
            }
        }
    }
    if w.errors.is_empty() {
        Ok(out)
    } else {
        Err(w.errors)
    }
}

/// Why a substitution failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubstError {
    /// `(name)` with no value.
    Unknown(String),
    /// `()`.
    Empty,
}

/// Replace every `(name)` in `text` (a name has no parentheses) with `lookup(name)`.
/// A `(` that is not closed before the next `(` is kept as text.
pub(crate) fn substitute<'a>(
    text: &str,
    lookup: impl Fn(&str) -> Option<&'a str>,
) -> Result<String, SubstError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('(') {
        let after = &rest[open + 1..];
        match after.find(['(', ')']) {
            Some(j) if after.as_bytes()[j] == b')' => {
                let name = &after[..j];
                if name.is_empty() {
                    return Err(SubstError::Empty);
                }
                let value = lookup(name).ok_or_else(|| SubstError::Unknown(name.to_string()))?;
                out.push_str(&rest[..open]);
                out.push_str(value);
                rest = &after[j + 1..];
            }
            Some(_) => {
                out.push_str(&rest[..open + 1]);
                rest = after;
            }
            None => break,
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Parse a `-P key=value` argument.
pub fn parse_property_arg(arg: &str) -> Result<(String, String), ConfigError> {
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains(['(', ')']) => {
            Ok((k.to_string(), v.to_string()))
        }
        _ => Err(ConfigError::BadPropertyArg {
            arg: arg.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props<'a>(
        pairs: &'a [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<&'static str> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
    }

    #[test]
    fn substitutes_every_reference() {
        let p = props(&[("instance", "web"), ("pool", "tank")]);
        assert_eq!(
            substitute("(pool)/reroot/(instance)", &p).unwrap(),
            "tank/reroot/web"
        );
        assert_eq!(substitute("plain", &p).unwrap(), "plain");
        assert_eq!(substitute("a(b", &p).unwrap(), "a(b");
        assert_eq!(substitute("x((instance))", &p).unwrap(), "x(web)");
    }

    #[test]
    fn unknown_and_empty_references_fail() {
        let p = props(&[("instance", "web")]);
        assert_eq!(
            substitute("(nope)/x", &p),
            Err(SubstError::Unknown("nope".into()))
        );
        assert_eq!(substitute("a()b", &p), Err(SubstError::Empty));
    }

    #[test]
    fn builtins_depend_on_project() {
        let d = builtins("web", "default");
        assert!(d.contains(&("project/".into(), String::new())));
        assert!(d.contains(&("project_instance".into(), "web".into())));
        let p = builtins("web", "sites");
        assert!(p.contains(&("project/".into(), "sites/".into())));
        assert!(p.contains(&("project_instance".into(), "sites_web".into())));
    }

    #[test]
    fn property_args_need_a_key() {
        assert_eq!(
            parse_property_arg("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert_eq!(
            parse_property_arg("a=").unwrap(),
            ("a".into(), String::new())
        );
        assert!(parse_property_arg("=x").is_err());
        assert!(parse_property_arg("novalue").is_err());
    }
}
