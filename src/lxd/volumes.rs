//! Custom storage volumes of a pool: create, get, list, copy, snapshot, delete.
//!
//! Creation is sync on some drivers (local btrfs) and async on others: both are accepted.

use hyper::Method;
use serde_json::json;

use super::client::{Call, Client};
use super::error::Result;
use super::transport::encode;
use super::types::{NewVolume, StorageVolume, Versioned};

fn custom_path(pool: &str) -> String {
    format!("/1.0/storage-pools/{}/volumes/custom", encode(pool, false))
}

fn volume_path(pool: &str, volume: &str) -> String {
    format!("{}/{}", custom_path(pool), encode(volume, false))
}

impl Client {
    /// Creates a custom volume. A name already taken is a Conflict error.
    pub async fn create_volume(&self, pool: &str, volume: &NewVolume) -> Result<()> {
        let url = self.url(&custom_path(pool), &[]);
        self.execute(Call::new(Method::POST, url).json(volume), None)
            .await?;
        Ok(())
    }

    /// One custom volume and its ETag.
    pub async fn get_volume(&self, pool: &str, name: &str) -> Result<Versioned<StorageVolume>> {
        let (value, etag) = self.get_json(&volume_path(pool, name), &[]).await?;
        Ok(Versioned { value, etag })
    }

    /// The custom volumes of a pool (their snapshots, which LXD lists too, left out).
    pub async fn list_volumes(&self, pool: &str) -> Result<Vec<StorageVolume>> {
        let (list, _) = self
            .get_json::<Vec<StorageVolume>>(&custom_path(pool), &[("recursion", "1")])
            .await?;
        Ok(list
            .into_iter()
            .filter(|v| {
                !v.name.contains('/') && (v.volume_type.is_empty() || v.volume_type == "custom")
            })
            .collect())
    }

    /// Copies a custom volume (or a volume snapshot, `"vol/snap"`) to a new volume in `pool`.
    /// With `volume_only`, the source's snapshots are not copied.
    pub async fn copy_volume(
        &self,
        pool: &str,
        new_name: &str,
        source_pool: &str,
        source: &str,
        volume_only: bool,
    ) -> Result<()> {
        let body = json!({
            "name": new_name,
            "type": "custom",
            "source": {
                "type": "copy",
                "pool": source_pool,
                "name": source,
                "volume_only": volume_only,
            },
        });
        let url = self.url(&custom_path(pool), &[]);
        self.execute(Call::new(Method::POST, url).json(&body), None)
            .await?;
        Ok(())
    }

    /// Takes a snapshot of a custom volume.
    pub async fn snapshot_volume(&self, pool: &str, volume: &str, snapshot: &str) -> Result<()> {
        let url = self.url(&format!("{}/snapshots", volume_path(pool, volume)), &[]);
        self.execute(
            Call::new(Method::POST, url).json(&json!({ "name": snapshot })),
            None,
        )
        .await?;
        Ok(())
    }

    /// The names of a custom volume's snapshots.
    pub async fn list_volume_snapshots(&self, pool: &str, volume: &str) -> Result<Vec<String>> {
        let (urls, _) = self
            .get_json::<Vec<String>>(&format!("{}/snapshots", volume_path(pool, volume)), &[])
            .await?;
        Ok(urls
            .iter()
            .map(|u| super::client::name_from_url(u))
            .collect())
    }

    /// Deletes a custom volume snapshot. Returns `false` when it did not exist.
    pub async fn delete_volume_snapshot(
        &self,
        pool: &str,
        volume: &str,
        snapshot: &str,
    ) -> Result<bool> {
        let url = self.url(
            &format!(
                "{}/snapshots/{}",
                volume_path(pool, volume),
                encode(snapshot, false)
            ),
            &[],
        );
        self.delete_ok_if_missing(url).await
    }

    /// Deletes a custom volume (with its snapshots). Returns `false` when it did not exist;
    /// a volume attached to an instance is an InUse error.
    pub async fn delete_volume(&self, pool: &str, name: &str) -> Result<bool> {
        let url = self.url(&volume_path(pool, name), &[]);
        self.delete_ok_if_missing(url).await
    }

    async fn delete_ok_if_missing(&self, url: String) -> Result<bool> {
        match self.execute(Call::new(Method::DELETE, url), None).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}
