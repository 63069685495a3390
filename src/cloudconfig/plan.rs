//! The ordered plan of a set of cloud-config files for one OS type: what `cloudconfig print`
//! shows and what [`super::apply`] carries out.
//!
//! Order, for each file in turn: non-deferred `write_files`, `packages`, `users`, `timezone`,
//! deferred `write_files`, `runcmd`.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::parse::{CloudConfig, User, WriteFile};
use crate::input::{ConfigError, OsType};

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Write (or append to) a file.
    WriteFile(WriteFile),
    /// Run a command (packages, runcmd); a non-zero exit stops the apply.
    Run {
        /// Where it comes from, e.g. `packages` or `runcmd[2]`.
        key: String,
        argv: Vec<String>,
    },
    /// Create the user, or bring an existing one to this state.
    User(User),
    /// Point `/etc/localtime` at the zone and write `/etc/timezone`.
    Timezone { zone: String },
}

/// An action and the file it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub file: PathBuf,
    #[serde(flatten)]
    pub action: Action,
}

/// Every step of a set of files, in application order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub ostype: Option<OsType>,
    pub steps: Vec<Step>,
}

fn needs_os(file: &std::path::Path, key: &str, what: &str) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_path_buf(),
        key: key.to_string(),
        message: format!("{what} need an OS type (`ostype` in the instance config, or --ostype)"),
    }
}

/// The commands that install packages.
fn package_commands(
    os: OsType,
    cc: &CloudConfig,
    updated: &mut bool,
) -> Result<Vec<Vec<String>>, ConfigError> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut out = Vec::new();
    match os {
        OsType::Busybox => {
            return Err(ConfigError::Invalid {
                file: cc.file.clone(),
                key: "packages".into(),
                message: "busybox has no package manager".into(),
            })
        }
        OsType::Debian => {
            if !*updated {
                out.push(s(&["apt-get", "update"]));
                *updated = true;
            }
            let mut argv = s(&[
                "env",
                "DEBIAN_FRONTEND=noninteractive",
                "apt-get",
                "-y",
                "install",
            ]);
            argv.extend(cc.packages.iter().cloned());
            out.push(argv);
        }
        OsType::Alpine => {
            let mut argv = s(&["apk", "add", "--no-progress"]);
            argv.extend(cc.packages.iter().cloned());
            out.push(argv);
        }
        OsType::OpenWrt => {
            if !*updated {
                out.push(s(&["opkg", "update"]));
                *updated = true;
            }
            let mut argv = s(&["opkg", "install"]);
            argv.extend(cc.packages.iter().cloned());
            out.push(argv);
        }
    }
    Ok(out)
}

/// Build the plan of parsed files for an OS type. Fails (before anything is applied) when a
/// file asks for something the OS type cannot do.
pub fn plan(configs: &[CloudConfig], ostype: Option<OsType>) -> Result<Plan, ConfigError> {
    let mut steps = Vec::new();
    let mut errors = Vec::new();
    let mut updated = false;
    for cc in configs {
        let mut push = |action| {
            steps.push(Step {
                file: cc.file.clone(),
                action,
            })
        };
        for f in cc.write_files.iter().filter(|f| !f.defer) {
            push(Action::WriteFile(f.clone()));
        }
        if !cc.packages.is_empty() {
            match ostype.ok_or_else(|| needs_os(&cc.file, "packages", "packages")) {
                Ok(os) => match package_commands(os, cc, &mut updated) {
                    Ok(cmds) => {
                        for argv in cmds {
                            push(Action::Run {
                                key: "packages".into(),
                                argv,
                            })
                        }
                    }
                    Err(e) => errors.push(e),
                },
                Err(e) => errors.push(e),
            }
        }
        if !cc.users.is_empty() {
            match ostype {
                None => errors.push(needs_os(&cc.file, "users", "users")),
                Some(OsType::OpenWrt) => errors.push(ConfigError::Invalid {
                    file: cc.file.clone(),
                    key: "users".into(),
                    message: "users are not supported on openwrt".into(),
                }),
                Some(_) => {
                    for u in &cc.users {
                        push(Action::User(u.clone()));
                    }
                }
            }
        }
        if let Some(zone) = &cc.timezone {
            if ostype == Some(OsType::OpenWrt) {
                errors.push(ConfigError::Invalid {
                    file: cc.file.clone(),
                    key: "timezone".into(),
                    message: "timezone is not supported on openwrt (set it with uci)".into(),
                });
            } else {
                push(Action::Timezone { zone: zone.clone() });
            }
        }
        for f in cc.write_files.iter().filter(|f| f.defer) {
            push(Action::WriteFile(f.clone()));
        }
        for (i, argv) in cc.runcmd.iter().enumerate() {
            push(Action::Run {
                key: format!("runcmd[{i}]"),
                argv: argv.clone(),
            });
        }
    }
    match ConfigError::from_list(errors) {
        Some(e) => Err(e),
        None => Ok(Plan { ostype, steps }),
    }
}

pub use crate::shell::display_argv;

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        match &self.action {
            Action::WriteFile(w) => write!(
                f,
                "{} {} ({}:{} {:04o}, {} bytes){}",
                if w.append { "append to" } else { "write" },
                w.path,
                w.user,
                w.group.as_deref().unwrap_or("(primary group)"),
                w.mode,
                w.content.len(),
                if w.defer { ", deferred" } else { "" }
            ),
            Action::Run { key, argv } => write!(f, "{key}: run {}", display_argv(argv)),
            Action::User(u) => {
                write!(f, "user {}: create or update", u.name)?;
                if let Some(uid) = u.uid {
                    write!(f, ", uid {uid}")?;
                }
                if let Some(g) = &u.primary_group {
                    write!(f, ", primary group {g}")?;
                }
                if !u.groups.is_empty() {
                    write!(f, ", groups {}", u.groups.join(","))?;
                }
                if let Some(s) = &u.shell {
                    write!(f, ", shell {s}")?;
                }
                write!(f, ", home {}", u.home())?;
                if !u.ssh_authorized_keys.is_empty() {
                    write!(f, ", {} authorized key(s)", u.ssh_authorized_keys.len())?;
                }
                if !u.sudo.is_empty() {
                    write!(f, ", sudo")?;
                }
                Ok(())
            }
            Action::Timezone { zone } => write!(
                f,
                "timezone {zone}: /etc/localtime -> /usr/share/zoneinfo/{zone}, /etc/timezone"
            ),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            writeln!(f, "{s}")?;
        }
        Ok(())
    }
}
