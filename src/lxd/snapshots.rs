//! Instance snapshots: create, list, rename, restore, delete.

use hyper::Method;
use serde_json::json;

use super::client::{Call, Client};
use super::error::Result;
use super::instances::instance_path;
use super::transport::encode;
use super::types::{Snapshot, Versioned};

fn snapshot_path(instance: &str, snapshot: &str) -> String {
    format!(
        "{}/snapshots/{}",
        instance_path(instance),
        encode(snapshot, false)
    )
}

impl Client {
    /// Takes a (stateless) snapshot, running or not. `expires_at` is an RFC 3339 time
    /// (`2030-01-01T00:00:00Z`). A name already taken is a Conflict error.
    pub async fn create_snapshot(
        &self,
        instance: &str,
        name: &str,
        expires_at: Option<&str>,
    ) -> Result<()> {
        let mut body = json!({ "name": name, "stateful": false });
        if let Some(t) = expires_at {
            body["expires_at"] = json!(t);
        }
        let url = self.url(&format!("{}/snapshots", instance_path(instance)), &[]);
        self.execute(Call::new(Method::POST, url).json(&body), None)
            .await?;
        Ok(())
    }

    /// The instance's snapshots, oldest first as LXD lists them.
    pub async fn list_snapshots(&self, instance: &str) -> Result<Vec<Snapshot>> {
        let (mut list, _) = self
            .get_json::<Vec<Snapshot>>(
                &format!("{}/snapshots", instance_path(instance)),
                &[("recursion", "1")],
            )
            .await?;
        // Some versions name snapshots "instance/snap": keep only the snapshot's own name.
        for s in &mut list {
            if let Some((_, own)) = s.name.rsplit_once('/') {
                s.name = own.to_string();
            }
        }
        Ok(list)
    }

    /// One snapshot and its ETag.
    pub async fn get_snapshot(&self, instance: &str, name: &str) -> Result<Versioned<Snapshot>> {
        let (mut value, etag): (Snapshot, _) =
            self.get_json(&snapshot_path(instance, name), &[]).await?;
        if let Some((_, own)) = value.name.rsplit_once('/') {
            value.name = own.to_string();
        }
        Ok(Versioned { value, etag })
    }

    /// Deletes a snapshot. Returns `false` when it did not exist.
    pub async fn delete_snapshot(&self, instance: &str, name: &str) -> Result<bool> {
        let url = self.url(&snapshot_path(instance, name), &[]);
        match self.execute(Call::new(Method::DELETE, url), None).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Renames a snapshot.
    pub async fn rename_snapshot(&self, instance: &str, name: &str, new_name: &str) -> Result<()> {
        let url = self.url(&snapshot_path(instance, name), &[]);
        self.execute(
            Call::new(Method::POST, url).json(&json!({ "name": new_name })),
            None,
        )
        .await?;
        Ok(())
    }

    /// Restores the instance to a snapshot (root filesystem, config and devices). A running
    /// instance is stopped, restored and started again by LXD.
    pub async fn restore_snapshot(&self, instance: &str, name: &str) -> Result<()> {
        let url = self.url(&instance_path(instance), &[]);
        self.execute(
            Call::new(Method::PUT, url).json(&json!({ "restore": name })),
            None,
        )
        .await?;
        Ok(())
    }
}
