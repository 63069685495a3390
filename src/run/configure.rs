//! `configure`: an instance's cloud-config files applied to it while it runs, as lxdops'
//! `configure` does, without a run (nothing is replaced, so there is nothing to journal or
//! undo). Applying converges ([`crate::cloudconfig::apply`]): a second configure changes no
//! file, user or timezone; only commands (`packages`, `runcmd`) run again, by nature, and are
//! counted apart so that "nothing changed" can be said truthfully.

use std::path::PathBuf;

use serde::Serialize;

use crate::cloudconfig::{self, Action, CloudConfigError, LxdGuest, OsType};
use crate::lxd::{self, OptionalExt};

/// Why an instance was not configured.
#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    /// No such instance: `launch` creates it.
    #[error("instance {instance} does not exist (`reroot launch` creates it)")]
    Missing { instance: String },
    /// Commands need a running container; starting it is the user's decision.
    #[error("instance {instance} is {status}: configure applies cloud-config to a running instance (start it first)")]
    NotRunning { instance: String, status: String },
    #[error("instance {instance}: {source}")]
    Lxd {
        instance: String,
        #[source]
        source: lxd::Error,
    },
    #[error("instance {instance}: {source}")]
    CloudConfig {
        instance: String,
        #[source]
        source: CloudConfigError,
    },
}

/// One action of the apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Done {
    /// The cloud-config file it comes from.
    pub file: PathBuf,
    /// What it is (`write /etc/motd`, `user app`, `runcmd[0]: ...`).
    pub what: String,
    /// A command: it ran, and whether it changed anything cannot be known.
    pub command: bool,
    /// Not a command, and the instance was not already as wanted.
    pub changed: bool,
}

/// What configuring one instance did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Configured {
    pub instance: String,
    pub actions: Vec<Done>,
}

impl Configured {
    /// How many actions changed something (commands not counted).
    pub fn changed(&self) -> usize {
        self.actions.iter().filter(|a| a.changed).count()
    }

    /// How many commands ran.
    pub fn commands(&self) -> usize {
        self.actions.iter().filter(|a| a.command).count()
    }

    /// One line: what changed, what was already as wanted, how many commands ran.
    pub fn summary(&self) -> String {
        if self.actions.is_empty() {
            return format!("{}: no cloud-config to apply", self.instance);
        }
        let changed = self.changed();
        let commands = self.commands();
        let unchanged = self.actions.len() - changed - commands;
        let mut text = if changed == 0 {
            format!(
                "{}: nothing changed ({unchanged} already as wanted",
                self.instance
            )
        } else {
            format!(
                "{}: {changed} changed, {unchanged} already as wanted",
                self.instance
            )
        };
        if commands > 0 {
            text.push_str(&format!(
                "; {commands} command{} ran",
                if commands == 1 { "" } else { "s" }
            ));
        }
        if changed == 0 {
            text.push(')');
        }
        text
    }
}

/// Applies `files` (already checked when the config was loaded) to `instance`, which must be
/// running. The OS type is detected from the container when not given.
pub async fn configure(
    lxd: &lxd::Client,
    instance: &str,
    files: &[PathBuf],
    ostype: Option<OsType>,
) -> Result<Configured, ConfigureError> {
    let lxd_err = |source| ConfigureError::Lxd {
        instance: instance.to_string(),
        source,
    };
    let cc_err = |source| ConfigureError::CloudConfig {
        instance: instance.to_string(),
        source,
    };
    let Some(current) = lxd
        .get_instance(instance)
        .await
        .optional()
        .map_err(lxd_err)?
    else {
        return Err(ConfigureError::Missing {
            instance: instance.to_string(),
        });
    };
    if current.value.status != "Running" {
        return Err(ConfigureError::NotRunning {
            instance: instance.to_string(),
            status: current.value.status,
        });
    }
    let mut done = Configured {
        instance: instance.to_string(),
        actions: Vec::new(),
    };
    if files.is_empty() {
        return Ok(done);
    }
    let configs = cloudconfig::parse_files(files).map_err(|e| cc_err(e.into()))?;
    let guest = LxdGuest::new(lxd, instance);
    let os = match ostype {
        Some(o) => o,
        None => cloudconfig::detect_ostype(&guest).await.map_err(|source| {
            cc_err(CloudConfigError::Guest {
                file: files[0].clone(),
                key: "(OS type detection)".into(),
                source,
            })
        })?,
    };
    let plan = cloudconfig::plan(&configs, Some(os)).map_err(|e| cc_err(e.into()))?;
    let outcomes = cloudconfig::apply(&guest, &plan).await.map_err(cc_err)?;
    // `apply` gives one outcome per step, in order.
    for (step, o) in plan.steps.iter().zip(outcomes) {
        let command = matches!(step.action, Action::Run { .. });
        done.actions.push(Done {
            file: o.file,
            what: o.what,
            command,
            changed: o.changed && !command,
        });
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(changed: bool, command: bool) -> Done {
        Done {
            file: "a.yaml".into(),
            what: "x".into(),
            command,
            changed,
        }
    }

    #[test]
    fn the_summary_says_nothing_changed_only_when_nothing_did() {
        let cases: [(&[Done], &str); 4] = [
            (&[], "web: no cloud-config to apply"),
            (
                &[done(false, false), done(false, false)],
                "web: nothing changed (2 already as wanted)",
            ),
            (
                &[done(true, false), done(false, false), done(false, true)],
                "web: 1 changed, 1 already as wanted; 1 command ran",
            ),
            (
                &[done(false, false), done(false, true), done(false, true)],
                "web: nothing changed (1 already as wanted; 2 commands ran)",
            ),
        ];
        for (actions, want) in cases {
            let c = Configured {
                instance: "web".into(),
                actions: actions.to_vec(),
            };
            assert_eq!(c.summary(), want);
        }
    }
}
