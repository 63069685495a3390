//! Images: publishing an instance snapshot as an image (`POST /1.0/images` with a source of
//! type `snapshot`), listing and deleting them.

use std::collections::BTreeMap;
use std::time::Duration;

use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client::{Call, Client};
use super::error::Result;
use super::transport::encode;

/// An image (the parts reroot uses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub fingerprint: String,
    /// Served to untrusted clients too (a daemon pulling it from this server is one).
    #[serde(default)]
    pub public: bool,
    /// Free-form string properties (`os`, `description`, ... and whatever the publisher set).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub aliases: Vec<ImageAliasName>,
}

/// LXD may send an empty list as `null`.
fn null_as_empty<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> std::result::Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// An alias as an image lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageAliasName {
    pub name: String,
}

/// What to publish: a snapshot of an instance, under an alias, with properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishSnapshot<'a> {
    pub instance: &'a str,
    pub snapshot: &'a str,
    pub alias: &'a str,
    pub properties: &'a BTreeMap<String, String>,
}

/// How long a publish may take: the daemon packs and compresses the whole root filesystem.
pub const PUBLISH_BOUND: Duration = Duration::from_secs(30 * 60);

impl Client {
    /// Publishes an instance snapshot as a private image with one alias and these properties,
    /// waiting (at most [`PUBLISH_BOUND`]) for the daemon to pack it. Returns its fingerprint.
    /// An alias already taken fails the operation (a Conflict or a failed operation, depending
    /// on the daemon) after the image was made: the caller checks the alias first.
    pub async fn publish_snapshot(&self, p: &PublishSnapshot<'_>) -> Result<String> {
        let body = json!({
            "source": {
                "type": "snapshot",
                "name": format!("{}/{}", p.instance, p.snapshot),
            },
            "aliases": [{ "name": p.alias, "description": "" }],
            "properties": p.properties,
            "public": false,
        });
        let url = self.url("/1.0/images", &[]);
        let done = self
            .execute(
                Call::new(Method::POST, url).json(&body),
                Some(PUBLISH_BOUND),
            )
            .await?;
        Ok(done
            .metadata
            .get("fingerprint")
            .and_then(|f| f.as_str())
            .unwrap_or_default()
            .to_string())
    }

    /// The images of the project.
    pub async fn list_images(&self) -> Result<Vec<Image>> {
        let (images, _) = self
            .get_json::<Vec<Image>>("/1.0/images", &[("recursion", "1")])
            .await?;
        Ok(images)
    }

    /// One image by fingerprint; a missing one is a NotFound error.
    pub async fn get_image(&self, fingerprint: &str) -> Result<Image> {
        let (image, _) = self
            .get_json(&format!("/1.0/images/{}", encode(fingerprint, false)), &[])
            .await?;
        Ok(image)
    }

    /// Deletes an image (its aliases go with it). Returns `false` when it did not exist.
    pub async fn delete_image(&self, fingerprint: &str) -> Result<bool> {
        let url = self.url(&format!("/1.0/images/{}", encode(fingerprint, false)), &[]);
        match self.execute(Call::new(Method::DELETE, url), None).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Points a new alias at an image.
    pub async fn create_image_alias(&self, name: &str, fingerprint: &str) -> Result<()> {
        let url = self.url("/1.0/images/aliases", &[]);
        let body = json!({ "name": name, "target": fingerprint, "description": "" });
        self.execute(Call::new(Method::POST, url).json(&body), None)
            .await?;
        Ok(())
    }
}
