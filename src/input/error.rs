//! The one error type of config files (instance configs, property files and cloud-config files):
//! every message reads `<file>: <key path>: <what is wrong>`.

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem found in a config file. Display gives `<file>: <key path>: <what is wrong>`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The first line is not one of the accepted headers.
    #[error("{}: first line must be {expected}, found `{found}`", file.display())]
    Header {
        file: PathBuf,
        expected: &'static str,
        found: String,
    },
    /// The text is not valid YAML.
    #[error("{}: invalid YAML: {message}", file.display())]
    Yaml { file: PathBuf, message: String },
    /// A key that the format does not know, with a near-miss suggestion when there is one.
    #[error("{}: unknown key `{key}`{}", file.display(), Suggestion(suggestion))]
    UnknownKey {
        file: PathBuf,
        key: String,
        suggestion: Option<String>,
    },
    /// A value of the wrong YAML type.
    #[error("{}: {key}: expected {expected}, found {found}", file.display())]
    WrongType {
        file: PathBuf,
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    /// A value that has the right type but is not acceptable.
    #[error("{}: {key}: {message}", file.display())]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
    /// A `(property)` that no property source defines.
    #[error("{}: {key}: unknown property `({property})`{}", file.display(), Suggestion(suggestion))]
    UnknownProperty {
        file: PathBuf,
        key: String,
        property: String,
        suggestion: Option<String>,
    },
    /// `()`: a property reference without a name.
    #[error("{}: {key}: empty property name `()`", file.display())]
    EmptyProperty { file: PathBuf, key: String },
    /// A substituted path that leaves its filesystem or is not a valid path/dataset name.
    #[error("{}: {key}: `{value}`: {message}", file.display())]
    BadPath {
        file: PathBuf,
        key: String,
        value: String,
        message: String,
    },
    /// A list entry or a resolved value that must be unique appears twice.
    #[error("{}: {key}: duplicate {what} `{value}`", file.display())]
    Duplicate {
        file: PathBuf,
        key: String,
        what: &'static str,
        value: String,
    },
    /// A file includes itself, directly or through others.
    #[error("{}: include: include cycle: {}", chain.first().map(|p| p.display().to_string()).unwrap_or_default(), Chain(chain))]
    IncludeCycle { chain: Vec<PathBuf> },
    /// The instance name (from `--name` or the file name) breaks LXD's naming rules.
    #[error("{}: instance name `{name}`: {message}", file.display())]
    BadName {
        file: PathBuf,
        name: String,
        message: String,
    },
    /// `--name` given with more than one config file.
    #[error("--name can only be used with a single config file ({count} given)")]
    NameWithManyFiles { count: usize },
    /// A `-P key=value` argument that is not of that form.
    #[error("-P {arg}: expected key=value with a non-empty key")]
    BadPropertyArg { arg: String },
    /// A problem found while resolving the source instance of `device-template` or
    /// `device-origin` (resolved with `(instance)` = its name and without `-P` properties).
    #[error("{error} (while resolving source instance `{instance}`)")]
    InSource {
        instance: String,
        error: Box<ConfigError>,
    },
    /// Several problems, one per line.
    #[error("{}", Lines(.0))]
    Several(Vec<ConfigError>),
}

impl ConfigError {
    /// The file the problem is in, if it is about one file.
    pub fn file(&self) -> Option<&Path> {
        match self {
            ConfigError::Read { file, .. }
            | ConfigError::Header { file, .. }
            | ConfigError::Yaml { file, .. }
            | ConfigError::UnknownKey { file, .. }
            | ConfigError::WrongType { file, .. }
            | ConfigError::Invalid { file, .. }
            | ConfigError::UnknownProperty { file, .. }
            | ConfigError::EmptyProperty { file, .. }
            | ConfigError::BadPath { file, .. }
            | ConfigError::Duplicate { file, .. }
            | ConfigError::BadName { file, .. } => Some(file),
            ConfigError::IncludeCycle { chain } => chain.first().map(PathBuf::as_path),
            ConfigError::InSource { error, .. } => error.file(),
            ConfigError::NameWithManyFiles { .. }
            | ConfigError::BadPropertyArg { .. }
            | ConfigError::Several(_) => None,
        }
    }

    /// Every single problem: the members of [`ConfigError::Several`], or this one.
    pub fn into_list(self) -> Vec<ConfigError> {
        match self {
            ConfigError::Several(list) => list.into_iter().flat_map(Self::into_list).collect(),
            other => vec![other],
        }
    }

    /// One error from a list: the only one, or [`ConfigError::Several`].
    /// Returns `None` for an empty list.
    pub fn from_list(mut list: Vec<ConfigError>) -> Option<ConfigError> {
        match list.len() {
            0 => None,
            1 => list.pop(),
            _ => Some(ConfigError::Several(list)),
        }
    }
}

struct Suggestion<'a>(&'a Option<String>);

impl fmt::Display for Suggestion<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(s) => write!(f, " (did you mean `{s}`?)"),
            None => Ok(()),
        }
    }
}

struct Chain<'a>(&'a [PathBuf]);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" -> ")?;
            }
            write!(f, "{}", p.display())?;
        }
        Ok(())
    }
}

struct Lines<'a>(&'a [ConfigError]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
