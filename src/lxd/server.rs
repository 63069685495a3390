//! Server-wide reads: `GET /1.0` again, storage pools and image aliases.

use super::client::Client;
use super::error::Result;
use super::transport::encode;
use super::types::{ImageAlias, ServerInfo, StoragePool};

impl Client {
    /// Reads `GET /1.0` now (the copy kept from connecting is [`Client::server_info`]).
    pub async fn fetch_server_info(&self) -> Result<ServerInfo> {
        let (info, _) = self.get_json("/1.0", &[]).await?;
        Ok(info)
    }

    /// The storage pools.
    pub async fn list_storage_pools(&self) -> Result<Vec<StoragePool>> {
        let (pools, _) = self
            .get_json::<Vec<StoragePool>>("/1.0/storage-pools", &[("recursion", "1")])
            .await?;
        Ok(pools)
    }

    /// The image aliases of the project.
    pub async fn list_image_aliases(&self) -> Result<Vec<ImageAlias>> {
        let (aliases, _) = self
            .get_json::<Vec<ImageAlias>>("/1.0/images/aliases", &[("recursion", "1")])
            .await?;
        Ok(aliases)
    }

    /// One image alias; a missing one is a NotFound error (use `.optional()` to test for it).
    pub async fn get_image_alias(&self, name: &str) -> Result<ImageAlias> {
        let (mut alias, _): (ImageAlias, _) = self
            .get_json(&format!("/1.0/images/aliases/{}", encode(name, false)), &[])
            .await?;
        if alias.name.is_empty() {
            alias.name = name.to_string();
        }
        Ok(alias)
    }
}
