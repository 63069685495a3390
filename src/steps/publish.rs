//! The step of a `reroot publish` run: a template's snapshot published as an image under an
//! alias (what lxops users do with `incus publish TEMPLATE/SNAPSHOT --alias NAME`), so that
//! other configs can take it as their `image:`.
//!
//! | step | effect | undo |
//! |---|---|---|
//! | `publish` | the snapshot published as a private image with the alias, marked with the run id | deletes the image this run made (never another) |
//!
//! The image carries the run id in its properties ([`RUN_PROPERTY`]): that is how a resume
//! tells an image it published before it was killed (the daemon goes on packing it) from one
//! somebody else put under the alias, which is refused and left alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{PublishRequest, RunEnv};
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd::{self, OptionalExt, PublishSnapshot};

/// The image property that names the run that published it.
pub const RUN_PROPERTY: &str = "reroot.run";

/// What `publish` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// `instance/snapshot`.
    pub source: String,
    pub alias: String,
    pub fingerprint: String,
}

impl Output for Published {
    const STEP: &'static str = "publish";
}

/// The publish run's steps.
pub(super) fn steps() -> Vec<std::sync::Arc<dyn Step<RunEnv>>> {
    vec![std::sync::Arc::new(PublishStep)]
}

fn request(env: &RunEnv) -> Result<&PublishRequest, StepError> {
    env.options
        .publish
        .as_ref()
        .ok_or_else(|| StepError::new("this run records no image to publish"))
}

fn ours(image: &lxd::Image, run: journal::RunId) -> bool {
    image.properties.get(RUN_PROPERTY).map(String::as_str) == Some(run.to_string().as_str())
}

/// The image the alias points to now, if any.
async fn alias_target(lxd: &lxd::Client, alias: &str) -> Result<Option<lxd::Image>, StepError> {
    let Some(a) = lxd.get_image_alias(alias).await.optional()? else {
        return Ok(None);
    };
    Ok(Some(lxd.get_image(&a.target).await?))
}

/// The refusals a publish run would meet, checked read-only before the run is recorded, so
/// that a bad request leaves no failed run behind holding the template: the instance and its
/// snapshot must exist and the alias must be free. The step checks again (things may change
/// in between).
pub async fn precheck(
    lxd: &lxd::Client,
    instance: &str,
    req: &PublishRequest,
) -> Result<(), StepError> {
    if !lxd.instance_exists(instance).await? {
        return Err(StepError::new(format!(
            "instance {instance} does not exist: nothing was published"
        )));
    }
    if lxd
        .get_snapshot(instance, &req.snapshot)
        .await
        .optional()?
        .is_none()
    {
        return Err(no_snapshot(instance, &req.snapshot));
    }
    if let Some(image) = alias_target(lxd, &req.alias).await? {
        return Err(alias_taken(&req.alias, &image));
    }
    Ok(())
}

fn no_snapshot(instance: &str, snapshot: &str) -> StepError {
    StepError::new(format!(
        "instance {instance} has no snapshot {snapshot}: nothing was published"
    ))
}

fn alias_taken(alias: &str, image: &lxd::Image) -> StepError {
    StepError::new(format!(
        "image alias {alias} already points to image {} (not published by this run): nothing \
         was published; delete that alias or choose another",
        short(&image.fingerprint)
    ))
}

struct PublishStep;

impl Step<RunEnv> for PublishStep {
    fn name(&self) -> &'static str {
        Published::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let req = request(cx.env)?;
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            let source = format!("{}/{}", cx.instance, req.snapshot);
            let done = |fingerprint: String| {
                Published {
                    source: source.clone(),
                    alias: req.alias.clone(),
                    fingerprint,
                }
                .record()
            };
            // Published by an earlier attempt of this run: done.
            match alias_target(&lxd, &req.alias).await? {
                Some(image) if ours(&image, cx.run) => return done(image.fingerprint),
                Some(image) => return Err(alias_taken(&req.alias, &image)),
                None => {}
            }
            if lxd
                .get_snapshot(cx.instance, &req.snapshot)
                .await
                .optional()?
                .is_none()
            {
                return Err(no_snapshot(cx.instance, &req.snapshot));
            }
            // Made by an attempt killed before its alias was set: give it the alias.
            if let Some(image) = lxd
                .list_images()
                .await?
                .into_iter()
                .find(|i| ours(i, cx.run))
            {
                lxd.create_image_alias(&req.alias, &image.fingerprint)
                    .await?;
                return done(image.fingerprint);
            }
            let mut properties = BTreeMap::new();
            properties.insert(RUN_PROPERTY.to_string(), cx.run.to_string());
            properties.insert(
                "description".to_string(),
                format!("{source}, published by reroot run {}", cx.run),
            );
            if let Some(os) = &plan.ostype {
                properties.insert("os".to_string(), os.clone());
            }
            let published = lxd
                .publish_snapshot(&PublishSnapshot {
                    instance: cx.instance,
                    snapshot: &req.snapshot,
                    alias: &req.alias,
                    properties: &properties,
                })
                .await;
            match published {
                Ok(fingerprint) => done(fingerprint),
                Err(e) => {
                    // An attempt killed while the daemon packed the image may have finished
                    // meanwhile and taken the alias: that is this run's image.
                    match alias_target(&lxd, &req.alias).await? {
                        Some(image) if ours(&image, cx.run) => {
                            // This attempt's own image, if it made one, is a duplicate.
                            for other in lxd.list_images().await? {
                                if ours(&other, cx.run) && other.fingerprint != image.fingerprint {
                                    lxd.delete_image(&other.fingerprint).await?;
                                }
                            }
                            done(image.fingerprint)
                        }
                        _ => Err(e.into()),
                    }
                }
            }
        })
    }

    /// Deletes the images this run published (the alias goes with them); an image under the
    /// alias that this run did not make is left alone.
    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let (_, lxd) = cx.env.scope(cx.instance)?;
            for image in lxd.list_images().await? {
                if ours(&image, cx.run) {
                    lxd.delete_image(&image.fingerprint).await?;
                }
            }
            Ok(())
        })
    }
}

fn short(fingerprint: &str) -> &str {
    &fingerprint[..fingerprint.len().min(12)]
}
