//! Profiles: create, get, list, update (PATCH or PUT, with an optional ETag), rename, delete.

use hyper::Method;
use serde_json::json;

use super::client::{Call, Client};
use super::error::Result;
use super::transport::encode;
use super::types::{Profile, ProfilePut, Versioned};

fn profile_path(name: &str) -> String {
    format!("/1.0/profiles/{}", encode(name, false))
}

impl Client {
    /// Creates a profile. A name already taken is a Conflict error.
    pub async fn create_profile(&self, name: &str, profile: &ProfilePut) -> Result<()> {
        let body = json!({
            "name": name,
            "description": profile.description,
            "config": profile.config,
            "devices": profile.devices,
        });
        let url = self.url("/1.0/profiles", &[]);
        self.execute(Call::new(Method::POST, url).json(&body), None)
            .await?;
        Ok(())
    }

    /// One profile and its ETag.
    pub async fn get_profile(&self, name: &str) -> Result<Versioned<Profile>> {
        let (value, etag) = self.get_json(&profile_path(name), &[]).await?;
        Ok(Versioned { value, etag })
    }

    /// All profiles of the project.
    pub async fn list_profiles(&self) -> Result<Vec<Profile>> {
        let (list, _) = self
            .get_json::<Vec<Profile>>("/1.0/profiles", &[("recursion", "1")])
            .await?;
        Ok(list)
    }

    /// Merges into the profile (PATCH: config keys and devices given replace theirs).
    pub async fn patch_profile(
        &self,
        name: &str,
        patch: &serde_json::Value,
        etag: Option<&str>,
    ) -> Result<()> {
        let url = self.url(&profile_path(name), &[]);
        self.execute(Call::new(Method::PATCH, url).json(patch).etag(etag), None)
            .await?;
        Ok(())
    }

    /// A read-modify-write of the profile under its ETag, like
    /// [`Client::update_instance`]: `change` gives the new description, config and devices
    /// (`None`: nothing to change); a stale ETag means read and ask again, at most
    /// [`super::STALE_ETAG_TRIES`] times. Returns whether the profile was written.
    pub async fn update_profile(
        &self,
        name: &str,
        mut change: impl FnMut(&Profile) -> Option<ProfilePut>,
    ) -> Result<bool> {
        let mut tries = 0;
        loop {
            tries += 1;
            let current = self.get_profile(name).await?;
            let Some(put) = change(&current.value) else {
                return Ok(false);
            };
            match self.put_profile(name, &put, current.etag.as_deref()).await {
                Ok(()) => return Ok(true),
                Err(e) if e.is_precondition_failed() && tries < super::STALE_ETAG_TRIES => {
                    tracing::info!(
                        profile = name,
                        tries,
                        "stale ETag; reading the profile again"
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Replaces the profile's description, config and devices (PUT). With `etag`, refused
    /// with a PreconditionFailed error if it changed since it was read.
    pub async fn put_profile(
        &self,
        name: &str,
        put: &ProfilePut,
        etag: Option<&str>,
    ) -> Result<()> {
        let url = self.url(&profile_path(name), &[]);
        self.execute(Call::new(Method::PUT, url).json(put).etag(etag), None)
            .await?;
        Ok(())
    }

    pub async fn rename_profile(&self, name: &str, new_name: &str) -> Result<()> {
        let url = self.url(&profile_path(name), &[]);
        self.execute(
            Call::new(Method::POST, url).json(&json!({ "name": new_name })),
            None,
        )
        .await?;
        Ok(())
    }

    /// Deletes a profile. Returns `false` when it did not exist; a profile still used by an
    /// instance is an InUse error.
    pub async fn delete_profile(&self, name: &str) -> Result<bool> {
        let url = self.url(&profile_path(name), &[]);
        match self.execute(Call::new(Method::DELETE, url), None).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}
