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

/// A global property as `reroot property list` shows it: the value that wins, and the file it
/// comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GlobalProperty {
    pub name: String,
    pub value: String,
    pub file: PathBuf,
}

/// The global properties in effect (see [`load_global`]), one per name, by name.
pub fn global_properties(
    config_dir: Option<&Path>,
    explicit: Option<&Path>,
) -> Result<Vec<GlobalProperty>, Vec<ConfigError>> {
    let mut map = BTreeMap::new();
    for g in load_global(config_dir, explicit)? {
        map.insert(g.name.clone(), g);
    }
    Ok(map
        .into_values()
        .map(|g| GlobalProperty {
            name: g.name,
            value: g.value,
            file: g.file,
        })
        .collect())
}

/// Sets (`Some`) or removes (`None`) property `name` in the property file `file`, which is
/// created if missing. The file is read and checked first (a file that does not parse is left
/// as it is, with its errors), then written whole, sorted by name, to a temporary file beside it
/// that replaces it, so a crash leaves the old file or the new one. Comments are not kept.
pub fn set_property(
    file: &Path,
    name: &str,
    value: Option<&str>,
) -> Result<bool, Vec<ConfigError>> {
    if name.is_empty() || name.contains(['(', ')', '=']) || name.trim() != name {
        return Err(vec![ConfigError::Invalid {
            file: file.to_path_buf(),
            key: name.to_string(),
            message: "a property name is not empty and has no parentheses, `=` or surrounding \
                      spaces"
                .into(),
        }]);
    }
    let mut map: BTreeMap<String, String> = if file.exists() {
        read_property_file(file)?
            .into_iter()
            .map(|g| (g.name, g.value))
            .collect()
    } else {
        BTreeMap::new()
    };
    let changed = match value {
        Some(v) => map.insert(name.to_string(), v.to_string()).as_deref() != Some(v),
        None => map.remove(name).is_some(),
    };
    if !changed {
        return Ok(false);
    }
    let write = |e: std::io::Error| {
        vec![ConfigError::Read {
            file: file.to_path_buf(),
            source: e,
        }]
    };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write)?;
    }
    let text = serde_yaml::to_string(&map).map_err(|e| write(std::io::Error::other(e)))?;
    let text = if map.is_empty() {
        String::from("{}\n")
    } else {
        text
    };
    let tmp = file.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).map_err(write)?;
    std::fs::rename(&tmp, file).map_err(write)?;
    Ok(true)
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

    #[test]
    fn set_property_writes_a_file_that_reads_back_and_refuses_bad_names_and_files() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("sub/properties.yaml");
        assert!(set_property(&f, "fsroot", Some("/srv/sites")).unwrap());
        assert!(set_property(&f, "pool", Some("tank: main")).unwrap());
        assert!(
            !set_property(&f, "pool", Some("tank: main")).unwrap(),
            "unchanged"
        );
        let read: Vec<(String, String)> = read_property_file(&f)
            .unwrap()
            .into_iter()
            .map(|g| (g.name, g.value))
            .collect();
        assert_eq!(
            read,
            [
                ("fsroot".to_string(), "/srv/sites".to_string()),
                ("pool".to_string(), "tank: main".to_string())
            ]
        );
        assert!(set_property(&f, "fsroot", None).unwrap());
        assert!(!set_property(&f, "fsroot", None).unwrap());
        let listed = global_properties(Some(&d.path().join("sub")), None).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].name.as_str(), listed[0].file.clone()),
            ("pool", f.clone())
        );
        for bad in ["", "a(b)", "x=y", " sp"] {
            assert!(set_property(&f, bad, Some("v")).is_err(), "{bad:?}");
        }
        let broken = d.path().join("broken.yaml");
        std::fs::write(&broken, "a: [1\n").unwrap();
        assert!(set_property(&broken, "a", Some("b")).is_err());
        assert_eq!(
            std::fs::read_to_string(&broken).unwrap(),
            "a: [1\n",
            "left as it was"
        );
    }

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
