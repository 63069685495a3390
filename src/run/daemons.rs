//! The daemons of a run, connected: the one the command connected to, and each remote that
//! the run's plans name (`remote:` in a config, a remote of the `lxc`/`incus` client
//! configuration). A run records them all ([`RunSpec::daemon`], [`RunSpec::remotes`]); a
//! resume, an undo or a prune connects to the same remotes again and refuses a daemon that is
//! not the one recorded, before it changes anything.

use std::collections::BTreeSet;

use super::spec::{Daemon, RunSpec};
use crate::lxd;
use crate::steps::{Daemons, InstancePlan};

/// Why the daemons of a run cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DaemonsError {
    /// A remote a plan names cannot be found or used in the client configuration.
    #[error("instance {instance}: remote {remote}: {source}")]
    Remote {
        instance: String,
        remote: String,
        #[source]
        source: Box<lxd::RemoteError>,
    },
    /// A remote could not be reached.
    #[error("instance {instance}: remote {remote}: {source}")]
    Connect {
        instance: String,
        remote: String,
        #[source]
        source: Box<lxd::Error>,
    },
    /// Refused, nothing done: the reason says which daemon and what to do.
    #[error("{0}")]
    Refused(String),
}

/// Connects to every remote the plans name, beside `default` (the daemon the command
/// connected to), each once.
pub async fn connect(
    default: lxd::Client,
    plans: &[InstancePlan],
) -> Result<Daemons, DaemonsError> {
    let mut daemons = Daemons::one(default);
    let mut seen = BTreeSet::new();
    for plan in plans {
        let Some(name) = &plan.remote else { continue };
        if !seen.insert(name.clone()) {
            continue;
        }
        let client = connect_remote(&plan.name, name).await?;
        daemons = daemons.with_remote(name, client);
    }
    Ok(daemons)
}

/// Connects to the remote `name` of the client configuration, which `instance` lives on.
pub async fn connect_remote(instance: &str, name: &str) -> Result<lxd::Client, DaemonsError> {
    let remote = lxd::Remote::find(name).map_err(|source| DaemonsError::Remote {
        instance: instance.to_string(),
        remote: name.to_string(),
        source: Box::new(source),
    })?;
    lxd::Client::connect_remote(&remote, lxd::ConnectOptions::default())
        .await
        .map_err(|source| DaemonsError::Connect {
            instance: instance.to_string(),
            remote: name.to_string(),
            source: Box::new(source),
        })
}

/// Records in `spec` the daemons its plans live on.
pub fn record(spec: &mut RunSpec, daemons: &Daemons) {
    spec.daemon = Some(Daemon::of(daemons.default_client()));
    let named: BTreeSet<&String> = spec
        .plans
        .iter()
        .filter_map(|p| p.remote.as_ref())
        .collect();
    spec.remotes = daemons
        .remotes()
        .iter()
        .filter(|(name, _)| named.contains(name))
        .map(|(name, client)| (name.clone(), Daemon::of(client)))
        .collect();
}

/// Refuses `daemons` unless each is the daemon `run` recorded for it: the default one, and
/// each remote by name. A remote the run recorded but that is missing here is refused too.
pub fn check(run: journal::RunId, spec: &RunSpec, daemons: &Daemons) -> Result<(), DaemonsError> {
    if let Some(recorded) = &spec.daemon {
        recorded
            .check(run, &Daemon::of(daemons.default_client()))
            .map_err(DaemonsError::Refused)?;
    }
    for (name, recorded) in &spec.remotes {
        let Some(client) = daemons.remotes().get(name) else {
            return Err(DaemonsError::Refused(format!(
                "run {run} has instances on remote {name}, which this command did not connect to"
            )));
        };
        recorded
            .check(run, &Daemon::of(client))
            .map_err(|e| DaemonsError::Refused(format!("remote {name}: {e}")))?;
    }
    Ok(())
}

/// Refuses plans with paths on the host (external filesystems, standalone device directories)
/// whose daemon runs on another host: reroot makes and snapshots those paths here, and the
/// daemon would mount whatever lies at the same paths on its own host.
pub fn refuse_host_paths_elsewhere(
    plans: &[InstancePlan],
    daemons: &Daemons,
) -> Result<(), DaemonsError> {
    for plan in plans {
        let lxd = daemons.daemon_of(plan).map_err(DaemonsError::Refused)?;
        if let Some(why) = host_paths_elsewhere(plan, lxd.on_this_host(), &lxd.address()) {
            return Err(DaemonsError::Refused(why));
        }
    }
    Ok(())
}

/// The rule of [`refuse_host_paths_elsewhere`] for one plan whose daemon, at `address`, is on
/// this host or not: why it is refused, if it is.
fn host_paths_elsewhere(plan: &InstancePlan, on_this_host: bool, address: &str) -> Option<String> {
    let paths = !plan.filesystems.is_empty() || plan.devices.iter().any(|d| d.filesystem.is_none());
    (!on_this_host && paths).then(|| {
        format!(
            "instance {}: its daemon ({address}) is on another host, and its filesystems and \
             device directories are made on this one: run reroot on the daemon's host, or give \
             the instance no external filesystems; nothing was done",
            plan.name
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::plan::{DevicePlan, FilesystemKind, FilesystemPlan};

    #[test]
    fn host_paths_are_refused_only_for_a_daemon_on_another_host() {
        let bare = crate::run::testing::plan("web");
        let mut with_fs = bare.clone();
        with_fs.filesystems.push(FilesystemPlan {
            id: "data".into(),
            kind: FilesystemKind::Dir {
                path: "/srv/web".into(),
            },
            transient: false,
            destroy: false,
            zfs_properties: Default::default(),
            clone_of: None,
        });
        let mut standalone = bare.clone();
        standalone.devices.push(DevicePlan {
            name: "logs".into(),
            path: "/var/log/app".into(),
            filesystem: None,
            dir: "/srv/logs/web".into(),
            readonly: false,
            template: None,
        });
        let addr = "remote far (https://10.0.0.5:8443)";
        for (plan, here, refused) in [
            (&bare, false, false),
            (&bare, true, false),
            (&with_fs, true, false),
            (&with_fs, false, true),
            (&standalone, true, false),
            (&standalone, false, true),
        ] {
            let why = host_paths_elsewhere(plan, here, addr);
            assert_eq!(why.is_some(), refused, "{plan:?} here={here}");
            if let Some(why) = why {
                assert!(why.contains("web") && why.contains(addr), "{why}");
                assert!(why.contains("nothing was done"), "{why}");
            }
        }
    }
}
