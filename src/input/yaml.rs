//! A small typed walk over a parsed YAML document that records every problem with its file and
//! key path (`devices.data.readonly`, `write_files[2].path`) instead of stopping at the first.
//! Shared by the instance-config and cloud-config parsers.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::ConfigError;

/// Reads values out of one file's YAML, collecting problems.
pub(crate) struct Walker {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

/// `a` + `b` → `a.b`; an empty prefix gives `b`.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// `a` + 3 → `a[3]`.
pub(crate) fn index(prefix: &str, i: usize) -> String {
    format!("{prefix}[{i}]")
}

/// The YAML type of a value, for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Parse YAML text (after its header line was checked) into a value; an empty document is an
/// empty map.
pub(crate) fn parse_document(file: &Path, text: &str) -> Result<Value, ConfigError> {
    match serde_yaml::from_str::<Value>(text) {
        Ok(Value::Null) => Ok(Value::Mapping(Mapping::new())),
        Ok(v) => Ok(v),
        Err(e) => Err(ConfigError::Yaml {
            file: file.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// Edit distance between two short strings (insertions, deletions, substitutions and swaps
/// of adjacent characters each count one): strsim's optimal string alignment.
fn distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}

/// The candidate closest to `word`, if it is close enough to be a likely typo
/// (same word with `_`/`-` swapped or another case, or a small edit distance).
pub(crate) fn suggest<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let norm = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    let w = norm(word);
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = if norm(c) == w {
            0
        } else {
            distance(&w, &norm(c))
        };
        let limit = (c.chars().count().max(word.chars().count()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

impl Walker {
    pub fn new(file: &Path) -> Self {
        Walker {
            file: file.to_path_buf(),
            errors: Vec::new(),
        }
    }

    pub fn wrong_type(&mut self, key: &str, expected: &'static str, v: &Value) {
        self.errors.push(ConfigError::WrongType {
            file: self.file.clone(),
            key: key.to_string(),
            expected,
            found: kind(v),
        });
    }

    pub fn invalid(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::Invalid {
            file: self.file.clone(),
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// A map, or `None` (and a problem unless the value is null).
    pub fn map<'v>(&mut self, v: &'v Value, key: &str) -> Option<&'v Mapping> {
        match v {
            Value::Mapping(m) => Some(m),
            Value::Null => None,
            other => {
                self.wrong_type(key, "a map", other);
                None
            }
        }
    }

    /// The entries of a map whose keys are in `allowed`. Other keys are reported as unknown
    /// (with a suggestion) unless `hint` gives a specific message for them.
    pub fn fields<'v>(
        &mut self,
        map: &'v Mapping,
        prefix: &str,
        allowed: &[&str],
        hint: impl Fn(&str) -> Option<String>,
    ) -> Vec<(&'v str, String, &'v Value)> {
        let mut out = Vec::new();
        for (k, v) in map {
            let Some(name) = self.key_name(k, prefix) else {
                continue;
            };
            let path = join(prefix, name);
            if allowed.contains(&name) {
                out.push((name, path, v));
            } else if let Some(message) = hint(name) {
                self.invalid(&path, message);
            } else {
                self.errors.push(ConfigError::UnknownKey {
                    file: self.file.clone(),
                    key: path,
                    suggestion: suggest(name, allowed.iter().copied()),
                });
            }
        }
        out
    }

    /// The entries of a map with free-form keys (ids, property names): keys must be
    /// non-empty strings.
    pub fn entries<'v>(
        &mut self,
        map: &'v Mapping,
        prefix: &str,
    ) -> Vec<(&'v str, String, &'v Value)> {
        let mut out = Vec::new();
        for (k, v) in map {
            if let Some(name) = self.key_name(k, prefix) {
                if name.is_empty() {
                    self.invalid(prefix, "empty key");
                    continue;
                }
                out.push((name, join(prefix, name), v));
            }
        }
        out
    }

    fn key_name<'v>(&mut self, k: &'v Value, prefix: &str) -> Option<&'v str> {
        match k {
            Value::String(s) => Some(s.as_str()),
            other => {
                let at = if prefix.is_empty() {
                    "(top level)"
                } else {
                    prefix
                };
                self.invalid(at, format!("keys must be strings, found {}", kind(other)));
                None
            }
        }
    }

    /// A string; numbers and booleans are accepted and written as YAML shows them.
    pub fn string(&mut self, v: &Value, key: &str) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.wrong_type(key, "a string", other);
                None
            }
        }
    }

    /// A string that must not be empty.
    pub fn nonempty_string(&mut self, v: &Value, key: &str) -> Option<String> {
        let s = self.string(v, key)?;
        if s.trim().is_empty() {
            self.invalid(key, "must not be empty");
            None
        } else {
            Some(s)
        }
    }

    pub fn bool(&mut self, v: &Value, key: &str) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            other => {
                self.wrong_type(key, "true or false", other);
                None
            }
        }
    }

    pub fn u64(&mut self, v: &Value, key: &str) -> Option<u64> {
        match v {
            Value::Number(n) => match n.as_u64() {
                Some(x) => Some(x),
                None => {
                    self.invalid(key, format!("expected a whole number >= 0, found {n}"));
                    None
                }
            },
            other => {
                self.wrong_type(key, "a whole number", other);
                None
            }
        }
    }

    /// A list of strings (null = empty), each item with its own key path.
    pub fn string_list(&mut self, v: &Value, key: &str) -> Vec<(String, String)> {
        match v {
            Value::Null => Vec::new(),
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let k = index(key, i);
                    self.string(item, &k).map(|s| (s, k))
                })
                .collect(),
            other => {
                self.wrong_type(key, "a list of strings", other);
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_and_separators() {
        let keys = [
            "filesystems",
            "devices",
            "profile-pattern",
            "cloud-config-files",
        ];
        assert_eq!(suggest("filesytems", keys).as_deref(), Some("filesystems"));
        assert_eq!(
            suggest("profile_pattern", keys).as_deref(),
            Some("profile-pattern")
        );
        assert_eq!(suggest("Devices", keys).as_deref(), Some("devices"));
        assert_eq!(suggest("zzz", keys), None);
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("same", "same"), 0);
        assert_eq!(distance("b46", "b64"), 1);
    }
}
