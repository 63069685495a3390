//! `reroot profile export` and `profile import`: daemon profiles (description, config,
//! devices) as a YAML document, and that document back onto a daemon. Import creates the
//! profiles that do not exist, leaves identical ones alone and refuses, before changing
//! anything, a profile that exists with other contents unless told to replace it. It is not a
//! journaled run: each profile is one request that happens or not, and the same import again
//! converges (creates what is still missing, leaves what it made alone), which is its resume.
//! What a replace overwrites is kept instead: the replaced profiles, as they were, are written
//! as a document of their own before the first change, which `profile import --replace`
//! of it puts back (its undo).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::lxd::{self, Config, Devices, OptionalExt, ProfilePut};

/// One exported profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedProfile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: Config,
    #[serde(default)]
    pub devices: Devices,
}

impl ExportedProfile {
    fn put(&self) -> ProfilePut {
        ProfilePut {
            description: self.description.clone(),
            config: self.config.clone(),
            devices: self.devices.clone(),
        }
    }
}

/// The document: `profiles: [...]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileDocument {
    pub profiles: Vec<ExportedProfile>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileIoError {
    #[error("{file}: {message}")]
    Bad { file: String, message: String },
    #[error("profile {0} does not exist")]
    Missing(String),
    #[error("profile {name}: {source}")]
    Lxd {
        name: String,
        #[source]
        source: Box<lxd::Error>,
    },
    #[error(
        "{file}: profile {} exists on the daemon with other contents; nothing changed (--replace overwrites)",
        .names.join(", ")
    )]
    Differs { file: String, names: Vec<String> },
    #[error(
        "{}: cannot keep the profiles --replace would overwrite: {source}; nothing changed",
        .path.display()
    )]
    Keep {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where an import of `file` at `at` keeps the profiles it replaces: beside it,
/// `<stem>.replaced-<YYYYMMDDhhmmss>.yaml` (UTC).
pub fn kept_path(file: &Path, at: std::time::SystemTime) -> std::path::PathBuf {
    let stamp: String = humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let stem = file
        .file_stem()
        .map_or_else(|| "profiles".into(), |s| s.to_string_lossy().into_owned());
    file.with_file_name(format!("{stem}.replaced-{stamp}.yaml"))
}

/// Writes `text` to `path`, which must not exist, readable by its owner only, synced.
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

fn lxd_err(name: &str) -> impl Fn(lxd::Error) -> ProfileIoError + '_ {
    move |source| ProfileIoError::Lxd {
        name: name.to_string(),
        source: Box::new(source),
    }
}

/// The YAML of the named daemon profiles, in the order given.
pub async fn export(lxd: &lxd::Client, names: &[String]) -> Result<String, ProfileIoError> {
    let mut profiles = Vec::new();
    for name in names {
        let p = lxd
            .get_profile(name)
            .await
            .optional()
            .map_err(lxd_err(name))?
            .ok_or_else(|| ProfileIoError::Missing(name.clone()))?
            .value;
        profiles.push(ExportedProfile {
            name: p.name,
            description: p.description,
            config: p.config,
            devices: p.devices,
        });
    }
    serde_yaml::to_string(&ProfileDocument { profiles }).map_err(|e| ProfileIoError::Bad {
        file: "(export)".into(),
        message: e.to_string(),
    })
}

/// Parses a profile document; `file` names it in errors. Never panics.
pub fn parse(file: &str, text: &str) -> Result<ProfileDocument, ProfileIoError> {
    let bad = |message: String| ProfileIoError::Bad {
        file: file.to_string(),
        message,
    };
    let doc: ProfileDocument =
        serde_yaml::from_str(text).map_err(|e| bad(format!("not a profile document: {e}")))?;
    let mut seen = std::collections::BTreeSet::new();
    for p in &doc.profiles {
        if p.name.is_empty() || p.name.contains('/') || p.name.trim() != p.name {
            return Err(bad(format!("key profiles: bad profile name {:?}", p.name)));
        }
        if !seen.insert(&p.name) {
            return Err(bad(format!("key profiles: profile {} given twice", p.name)));
        }
    }
    Ok(doc)
}

/// Reads and parses a profile file.
pub fn read(path: &Path) -> Result<ProfileDocument, ProfileIoError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ProfileIoError::Bad {
        file: file.clone(),
        message: e.to_string(),
    })?;
    parse(&file, &text)
}

/// What import does with each profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportAction {
    pub name: String,
    /// `create`, `unchanged` or `replace`.
    pub action: &'static str,
}

/// What an import did, or would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Imported {
    pub actions: Vec<ImportAction>,
    /// The document holding the replaced profiles as they were; `None` when none was replaced.
    pub kept: Option<std::path::PathBuf>,
}

/// Imports `doc` (from `file`): every decision is taken before the first change, so a
/// refusal changes nothing. With `dry_run`, only the decisions. The profiles it replaces are
/// first written, as they are, to `keep_at` (a new file; an existing one is refused).
pub async fn import(
    lxd: &lxd::Client,
    file: &str,
    doc: &ProfileDocument,
    replace: bool,
    dry_run: bool,
    keep_at: &Path,
) -> Result<Imported, ProfileIoError> {
    let mut actions = Vec::new();
    let mut differs = Vec::new();
    for p in &doc.profiles {
        let now = lxd
            .get_profile(&p.name)
            .await
            .optional()
            .map_err(lxd_err(&p.name))?;
        let action = match now {
            None => "create",
            Some(v) if v.value.to_put() == p.put() => "unchanged",
            Some(_) => {
                differs.push(p.name.clone());
                "replace"
            }
        };
        actions.push(ImportAction {
            name: p.name.clone(),
            action,
        });
    }
    if !differs.is_empty() && !replace {
        return Err(ProfileIoError::Differs {
            file: file.to_string(),
            names: differs,
        });
    }
    if dry_run {
        return Ok(Imported {
            actions,
            kept: None,
        });
    }
    let kept = if differs.is_empty() {
        None
    } else {
        let text = export(lxd, &differs).await?;
        write_new(keep_at, &text).map_err(|source| ProfileIoError::Keep {
            path: keep_at.to_path_buf(),
            source,
        })?;
        Some(keep_at.to_path_buf())
    };
    for (p, a) in doc.profiles.iter().zip(&actions) {
        match a.action {
            "create" => lxd.create_profile(&p.name, &p.put()).await,
            "replace" => lxd.put_profile(&p.name, &p.put(), None).await,
            _ => Ok(()),
        }
        .map_err(lxd_err(&p.name))?;
    }
    Ok(Imported { actions, kept })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_refuses_by_name() {
        let doc = parse(
            "p.yaml",
            "profiles:\n- name: web\n  config: {limits.cpu: \"2\"}\n  devices:\n    d: {type: disk, path: /d, source: /srv/d}\n",
        )
        .unwrap();
        assert_eq!(doc.profiles[0].name, "web");
        assert_eq!(doc.profiles[0].devices["d"]["path"], "/d");
        let e = parse("p.yaml", "profiles:\n- name: a\n- name: a\n").unwrap_err();
        assert!(e.to_string().contains("p.yaml") && e.to_string().contains("twice"));
        let e = parse("p.yaml", "profile: []\n").unwrap_err();
        assert!(e.to_string().starts_with("p.yaml: "), "{e}");
    }

    #[test]
    fn replaced_profiles_are_kept_beside_the_file_under_the_time() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_200_000);
        let kept = kept_path(Path::new("/etc/reroot/web.yaml"), at);
        assert_eq!(
            kept,
            Path::new("/etc/reroot/web.replaced-20261202082640.yaml")
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.yaml");
        write_new(&path, "profiles: []\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            write_new(&path, "x").is_err(),
            "an existing file is never overwritten"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "profiles: []\n");
    }

    proptest! {
        #[test]
        fn any_text_is_an_error_or_a_document(text in "\\PC{0,200}") {
            let _ = parse("x.yaml", &text);
        }

        #[test]
        fn export_form_round_trips(name in "[a-z][a-z0-9-]{0,20}", key in "[a-z.]{1,12}", value in "\\PC{0,20}") {
            let doc = ProfileDocument { profiles: vec![ExportedProfile {
                name, description: value.clone(),
                config: Config::from([(key.clone(), value.clone())]),
                devices: Devices::from([(key.clone(), lxd::Device::from([("path".to_string(), value)]))]),
            }]};
            let text = serde_yaml::to_string(&doc).unwrap();
            prop_assert_eq!(parse("x.yaml", &text).unwrap(), doc);
        }
    }
}
