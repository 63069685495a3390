//! Where a host command runs: this machine, or another one reached with `ssh`.
//!
//! `ssh` itself runs as an argument vector like every other command. It hands the remote side
//! one line, which the remote user's shell splits again, so each word of the remote command is
//! quoted for a POSIX shell here ([`remote_line`]): a dataset name can never become two
//! arguments or a command substitution on the other side. `BatchMode=yes` makes a missing key
//! fail at once instead of waiting at a password prompt that nobody will answer.
//! `ConnectTimeout` ([`CONNECT_TIMEOUT_SECS`]) makes a host that accepts the connection and
//! never answers (seen: a listener that sends no banner) fail with ssh's own "Connection timed
//! out during banner exchange", before the command's bound kills it with no reason given; it
//! comes after the caller's options, because ssh takes the first value it is given, so a
//! `--ssh-option ConnectTimeout=N` wins.

use std::ffi::OsString;

use serde::{Deserialize, Serialize};

use super::StorageError;

/// ssh's `ConnectTimeout` unless an option sets it: the TCP connection and the banner exchange
/// (well below the 60 s bound of a host command, so that ssh says why it gave up).
pub const CONNECT_TIMEOUT_SECS: u32 = 15;

/// A machine host commands run on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// `[user@]host` for `ssh`; `None`: this machine.
    #[serde(default)]
    pub ssh: Option<String>,
    /// `ssh -o` options (`Port=2222`, `IdentityFile=...`), in order.
    #[serde(default)]
    pub ssh_options: Vec<String>,
}

impl Host {
    /// This machine.
    pub fn local() -> Host {
        Host::default()
    }

    /// A machine reached by `ssh DESTINATION`, checked to be a plain `[user@]host`.
    pub fn ssh(destination: &str, options: Vec<String>) -> Result<Host, StorageError> {
        let plain = !destination.is_empty()
            && !destination.starts_with('-')
            && destination
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "@._-:[]".contains(c));
        if !plain {
            return Err(StorageError::Invalid {
                what: format!("host {destination:?}"),
                problem: "give [user@]host (letters, digits, @ . _ - : [ ]); a port or a key \
                          goes in --ssh-option Port=N, IdentityFile=PATH"
                    .to_string(),
            });
        }
        for o in &options {
            let (key, value) = o.split_once('=').unwrap_or((o.as_str(), ""));
            if key.is_empty()
                || !key.chars().all(|c| c.is_ascii_alphanumeric())
                || value.is_empty()
                || value.contains(['\n', '\0'])
            {
                return Err(StorageError::Invalid {
                    what: format!("ssh option {o:?}"),
                    problem: "give KEY=VALUE, as ssh -o takes it (Port=2222)".to_string(),
                });
            }
        }
        Ok(Host {
            ssh: Some(destination.to_string()),
            ssh_options: options,
        })
    }

    /// Whether this is this machine.
    pub fn is_local(&self) -> bool {
        self.ssh.is_none()
    }

    /// For messages: `this machine` or `host NAME`.
    pub fn describe(&self) -> String {
        match &self.ssh {
            None => "this machine".to_string(),
            Some(h) => format!("host {h}"),
        }
    }

    /// The argument vector that runs `program args` on this host: itself here, or
    /// `ssh -o BatchMode=yes [-o OPTION]... -o ConnectTimeout=15 -- DESTINATION LINE` there.
    pub fn argv(&self, program: &str, args: Vec<OsString>) -> (String, Vec<OsString>) {
        let Some(destination) = &self.ssh else {
            return (program.to_string(), args);
        };
        let mut ssh: Vec<OsString> = vec!["-o".into(), "BatchMode=yes".into()];
        for o in &self.ssh_options {
            ssh.push("-o".into());
            ssh.push(o.into());
        }
        ssh.push("-o".into());
        ssh.push(format!("ConnectTimeout={CONNECT_TIMEOUT_SECS}").into());
        ssh.push("--".into());
        ssh.push(destination.into());
        ssh.push(remote_line(program, &args).into());
        ("ssh".to_string(), ssh)
    }
}

/// The one line `ssh` sends: every word single-quoted for the remote shell.
pub fn remote_line(program: &str, args: &[OsString]) -> String {
    std::iter::once(program.to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn here_the_command_is_itself() {
        let (p, a) = Host::local().argv("zfs", vec!["send".into(), "tank/a@s".into()]);
        assert_eq!(
            (p.as_str(), a),
            ("zfs", vec!["send".into(), "tank/a@s".into()])
        );
    }

    #[test]
    fn there_it_is_one_quoted_line_after_ssh_options() {
        let host = Host::ssh("root@backup", vec!["Port=2222".into()]).unwrap();
        let (p, a) = host.argv("zfs", vec!["receive".into(), "tank/it's".into()]);
        assert_eq!(p, "ssh");
        let a: Vec<String> = a.iter().map(|s| s.to_string_lossy().into()).collect();
        assert_eq!(
            a,
            [
                "-o",
                "BatchMode=yes",
                "-o",
                "Port=2222",
                "-o",
                "ConnectTimeout=15",
                "--",
                "root@backup",
                r"'zfs' 'receive' 'tank/it'\''s'"
            ]
        );
        // The remote shell reads the line back as the same words.
        assert_eq!(
            shlex::split(&a[8]).unwrap(),
            ["zfs", "receive", "tank/it's"]
        );
    }

    #[test]
    fn a_connect_timeout_given_comes_before_the_default_so_ssh_takes_it() {
        let host = Host::ssh("h", vec!["ConnectTimeout=3".into()]).unwrap();
        let (_, a) = host.argv("true", vec![]);
        let at = |w: &str| a.iter().position(|x| x == w).unwrap();
        assert!(at("ConnectTimeout=3") < at("ConnectTimeout=15"), "{a:?}");
        assert!(at("ConnectTimeout=15") < at("--"), "{a:?}");
    }

    #[test]
    fn a_host_that_looks_like_an_option_or_holds_a_shell_word_is_refused() {
        for bad in ["", "-oProxyCommand=x", "a b", "host;rm", "$(x)"] {
            assert!(Host::ssh(bad, vec![]).is_err(), "{bad:?}");
        }
        for bad in ["Port", "=2", "Po rt=2", "Port="] {
            assert!(Host::ssh("h", vec![bad.into()]).is_err(), "{bad:?}");
        }
        assert!(Host::ssh("admin@10.0.0.2", vec!["IdentityFile=/k".into()]).is_ok());
    }
}
