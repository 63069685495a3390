//! Instances: list, get, create (from an image or as a copy of a snapshot), update, rename,
//! delete, start/stop and state.
//!
//! Start, stop and delete are idempotent: starting a running instance, stopping a stopped one
//! or deleting a missing one succeeds and returns `false` ("nothing to do"). When the outcome
//! of such a request is unknown (operation timed out or vanished), the instance's state is
//! read and decides.

use std::time::Duration;

use hyper::Method;
use serde_json::json;

use super::client::{name_from_url, Call, Client};
use super::error::{OptionalExt, Result};
use super::transport::encode;
use super::types::{Instance, InstancePatch, InstancePut, InstanceState, NewInstance, Versioned};

/// How to stop an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Kill it (SIGKILL to every process), bounded by the client's operation timeout.
    Force,
    /// Ask init to shut down (SIGPWR) and give up after `timeout` (LXD then reports a failure,
    /// although the instance may still finish stopping shortly after).
    Clean { timeout: Duration },
}

/// How many times a read-modify-write is tried while the object keeps changing under it
/// (LXD itself rewrites an instance's `volatile.*` keys when it starts or stops, so a stale
/// ETag is met in normal operation at scale).
pub const STALE_ETAG_TRIES: u32 = 5;

/// Margin added to a clean stop's own timeout before the client gives up waiting.
const CLEAN_STOP_MARGIN: Duration = Duration::from_secs(10);

pub(crate) fn instance_path(name: &str) -> String {
    format!("/1.0/instances/{}", encode(name, false))
}

impl Client {
    /// All instances of the project, with their config and devices (`recursion=1`).
    pub async fn list_instances(&self) -> Result<Vec<Instance>> {
        let (list, _) = self
            .get_json::<Vec<Instance>>("/1.0/instances", &[("recursion", "1")])
            .await?;
        Ok(list)
    }

    /// The names of all instances of the project (one cheap request).
    pub async fn list_instance_names(&self) -> Result<Vec<String>> {
        let (urls, _) = self.get_json::<Vec<String>>("/1.0/instances", &[]).await?;
        Ok(urls.iter().map(|u| name_from_url(u)).collect())
    }

    /// One instance and its ETag. A missing instance is [`Error::NotFound`].
    pub async fn get_instance(&self, name: &str) -> Result<Versioned<Instance>> {
        let (value, etag) = self.get_json(&instance_path(name), &[]).await?;
        Ok(Versioned { value, etag })
    }

    /// Whether the instance exists.
    pub async fn instance_exists(&self, name: &str) -> Result<bool> {
        Ok(self.get_instance(name).await.optional()?.is_some())
    }

    /// `GET /1.0/instances/<name>/state`: status, PID of init...
    pub async fn instance_state(&self, name: &str) -> Result<InstanceState> {
        let (state, _) = self
            .get_json(&format!("{}/state", instance_path(name)), &[])
            .await?;
        Ok(state)
    }

    /// Creates an instance (from an image, or as a copy of a snapshot) and waits until it
    /// exists. A copy is created stopped. A name already taken is [`Error::Conflict`].
    pub async fn create_instance(&self, new: &NewInstance) -> Result<()> {
        let url = self.url("/1.0/instances", &[]);
        match self
            .execute(Call::new(Method::POST, url).json(new), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_operation_lost() => {
                // The operation finished and was forgotten: the instance tells the outcome.
                if self.instance_exists(&new.name).await? {
                    Ok(())
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Merges `patch` into the instance (PATCH). With `etag`, refused with
    /// [`Error::PreconditionFailed`] if the instance changed since it was read.
    pub async fn patch_instance(
        &self,
        name: &str,
        patch: &InstancePatch,
        etag: Option<&str>,
    ) -> Result<()> {
        let url = self.url(&instance_path(name), &[]);
        self.execute(Call::new(Method::PATCH, url).json(patch).etag(etag), None)
            .await?;
        Ok(())
    }

    /// A read-modify-write of the instance under its ETag: reads it, asks `change` for the
    /// patch (`None`: nothing to change) and sends it with the ETag read. If the instance
    /// changed in between (a stale ETag), it is read again and `change` asked again, at most
    /// [`STALE_ETAG_TRIES`] times. Returns whether a patch was sent.
    pub async fn update_instance(
        &self,
        name: &str,
        mut change: impl FnMut(&Instance) -> Option<InstancePatch>,
    ) -> Result<bool> {
        let mut tries = 0;
        loop {
            tries += 1;
            let current = self.get_instance(name).await?;
            let Some(patch) = change(&current.value) else {
                return Ok(false);
            };
            match self
                .patch_instance(name, &patch, current.etag.as_deref())
                .await
            {
                Ok(()) => return Ok(true),
                Err(e) if e.is_precondition_failed() && tries < STALE_ETAG_TRIES => {
                    tracing::info!(
                        instance = name,
                        tries,
                        "stale ETag; reading the instance again"
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Replaces the instance's writable fields (PUT): the way to remove a device. Typical use:
    /// `get_instance`, modify `value.to_put()`, `put_instance` with the ETag read.
    pub async fn put_instance(
        &self,
        name: &str,
        put: &InstancePut,
        etag: Option<&str>,
    ) -> Result<()> {
        let url = self.url(&instance_path(name), &[]);
        self.execute(Call::new(Method::PUT, url).json(put).etag(etag), None)
            .await?;
        Ok(())
    }

    /// Renames a (stopped) instance.
    ///
    /// A rename whose operation LXD reports as failed may have happened all the same: LXD 5.0.2
    /// renames the instance in its database and storage before it moves the log directory, and
    /// a leftover `/var/log/lxd/NEW` makes the last part fail ("Failed renaming container:
    /// rename /var/log/lxd/OLD /var/log/lxd/NEW: file exists") with the rename done and not
    /// rolled back. So a failure that is not a plain refusal is checked against the state: the
    /// old name gone and the new one there means it happened.
    pub async fn rename_instance(&self, name: &str, new_name: &str) -> Result<()> {
        let url = self.url(&instance_path(name), &[]);
        match self
            .execute(
                Call::new(Method::POST, url).json(&json!({ "name": new_name })),
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            // "Not found" with the instance there: a daemon killed in an earlier rename of it
            // left the instance's volume renamed and the instance not (see `repair`).
            Err(e) if e.is_not_found() => {
                match self.finish_interrupted_rename(name, new_name).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(e),
                    Err(repair) => {
                        tracing::warn!(instance = name, new_name, error = %repair, "could not finish a rename the daemon left half done");
                        Err(e)
                    }
                }
            }
            Err(e) if e.outcome_needs_checking() => {
                let moved = matches!(self.instance_exists(name).await, Ok(false))
                    && matches!(self.instance_exists(new_name).await, Ok(true));
                if moved {
                    tracing::warn!(instance = name, new_name, error = %e, "LXD reported the rename as failed, but it happened");
                    Ok(())
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes a stopped instance (a running one is [`Error::InUse`]). Returns `false` when
    /// it did not exist.
    pub async fn delete_instance(&self, name: &str) -> Result<bool> {
        let url = self.url(&instance_path(name), &[]);
        match self.execute(Call::new(Method::DELETE, url), None).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) if e.is_operation_lost() => {
                if self.instance_exists(name).await? {
                    Err(e)
                } else {
                    Ok(true)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Starts the instance. Returns `false` when it was already running.
    pub async fn start_instance(&self, name: &str) -> Result<bool> {
        self.change_state(
            name,
            json!({ "action": "start" }),
            self.operation_timeout(),
            "Running",
            "already running",
        )
        .await
    }

    /// Stops the instance. Returns `false` when it was already stopped. On a timeout the
    /// instance may still stop later: retrying is safe.
    pub async fn stop_instance(&self, name: &str, how: Stop) -> Result<bool> {
        let (body, bound) = match how {
            Stop::Force => (
                json!({ "action": "stop", "force": true }),
                self.operation_timeout(),
            ),
            Stop::Clean { timeout } => (
                json!({ "action": "stop", "force": false, "timeout": timeout.as_secs().max(1) }),
                timeout + CLEAN_STOP_MARGIN,
            ),
        };
        self.change_state(name, body, bound, "Stopped", "already stopped")
            .await
    }

    async fn change_state(
        &self,
        name: &str,
        body: serde_json::Value,
        bound: Duration,
        target: &str,
        already: &str,
    ) -> Result<bool> {
        let url = self.url(&format!("{}/state", instance_path(name)), &[]);
        match self
            .execute(Call::new(Method::PUT, url).json(&body), Some(bound))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.message().to_ascii_lowercase().contains(already) => Ok(false),
            Err(e) if e.outcome_needs_checking() => {
                // Outcome unknown, or reported as failed by a daemon that may have done it
                // anyway: the state decides.
                match self.instance_state(name).await {
                    Ok(state) if state.status == target => Ok(true),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}
