//! The daemons of a run: the one the command connected to, and the remotes that instances'
//! configs name (`remote:`). A run over several daemons keeps one journal; each instance's
//! steps talk to its own daemon, and each daemon bounds its own instances (see
//! `EngineOptions::groups`), since each is its own bottleneck.
//!
//! Connecting is not done here (see `run::daemons`): this is the map the steps read.

use std::collections::BTreeMap;

use super::InstancePlan;
use crate::lxd;

/// The clients of a run's daemons.
#[derive(Debug, Clone)]
pub struct Daemons {
    /// The daemon the command connected to (`--remote`, `--socket` or the usual socket): the
    /// one of every plan that names no remote.
    default: lxd::Client,
    /// The remotes plans name, by name.
    remotes: BTreeMap<String, lxd::Client>,
}

impl Daemons {
    /// Only the daemon the command connected to.
    pub fn one(default: lxd::Client) -> Daemons {
        Daemons {
            default,
            remotes: BTreeMap::new(),
        }
    }

    /// With the remote `name` reached through `client`.
    pub fn with_remote(mut self, name: &str, client: lxd::Client) -> Daemons {
        self.remotes.insert(name.to_string(), client);
        self
    }

    /// The daemon the command connected to.
    pub fn default_client(&self) -> &lxd::Client {
        &self.default
    }

    /// The remotes, by name.
    pub fn remotes(&self) -> &BTreeMap<String, lxd::Client> {
        &self.remotes
    }

    /// The daemon `plan` lives on, in no particular project; an error when its remote was not
    /// connected (a caller's bug, or a plan from another run).
    pub fn daemon_of(&self, plan: &InstancePlan) -> Result<&lxd::Client, String> {
        match &plan.remote {
            None => Ok(&self.default),
            Some(name) => self.remotes.get(name).ok_or_else(|| {
                format!(
                    "instance {} lives on remote {name}, which this command did not connect to",
                    plan.name
                )
            }),
        }
    }

    /// The client for `plan`: its daemon, in its project.
    pub fn client(&self, plan: &InstancePlan) -> Result<lxd::Client, String> {
        let lxd = self.daemon_of(plan)?;
        Ok(if lxd.project() == Some(plan.project.as_str()) {
            lxd.clone()
        } else {
            lxd.with_project(&plan.project)
        })
    }

    /// The key that tells `plan`'s daemon from the others: its certificate's fingerprint
    /// (two remote names for one daemon are one daemon), else its address.
    pub fn group(&self, plan: &InstancePlan) -> String {
        match self.daemon_of(plan) {
            Ok(lxd) => Self::key(lxd),
            Err(_) => plan.remote.clone().unwrap_or_default(),
        }
    }

    fn key(lxd: &lxd::Client) -> String {
        let fp = &lxd.server_info().environment.certificate_fingerprint;
        if fp.is_empty() {
            lxd.address()
        } else {
            fp.clone()
        }
    }

    /// How many different daemons the plans live on.
    pub fn count(&self, plans: &[InstancePlan]) -> usize {
        let keys: std::collections::BTreeSet<String> =
            plans.iter().map(|p| self.group(p)).collect();
        keys.len()
    }
}
