//! `prepare`: builds the new root under a temporary name while the old one still runs, so the
//! copy stays out of the downtime.
//!
//! The early cloud-config files are not pushed here but by the `files` step after the swap:
//! on LXD 5.0.2 a file push into a stopped instance that is then renamed makes its first start
//! wait 15-40 s (LXD keeps the file session under the old name; seen on the testbed), while a
//! push under the final name costs a few milliseconds of downtime.

use serde::{Deserialize, Serialize};

use super::names::{built_by, temporary_name, RUN_KEY, SOURCE_ID_KEY, SOURCE_KEY};
use super::plan::RootSource;
use super::preflight::Preflight;
use super::RunEnv;
use crate::engine::{BoxFuture, Output, Step, StepCx, StepError};
use crate::lxd::{ImagePull, NewInstance, OptionalExt, ServerKind, Stop};

pub(super) struct Prepare;

/// What `prepare` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    /// The new root's temporary name.
    pub temporary: String,
}

impl Output for Prepared {
    const STEP: &'static str = "prepare";
}

impl Step<RunEnv> for Prepare {
    fn name(&self) -> &'static str {
        Prepared::STEP
    }

    fn apply<'a>(
        &'a self,
        cx: &'a StepCx<'a, RunEnv>,
    ) -> BoxFuture<'a, Result<serde_json::Value, StepError>> {
        Box::pin(async move {
            let (plan, lxd) = cx.env.scope(cx.instance)?;
            let pre: Preflight = cx.outputs.of()?;
            let tmp = temporary_name(cx.instance, cx.run);
            let result = Prepared {
                temporary: tmp.clone(),
            }
            .record()?;

            // Already swapped in a previous attempt: nothing left to prepare.
            if let Some(i) = lxd.get_instance(cx.instance).await.optional()? {
                if built_by(&i.value, cx.run) {
                    return Ok(result);
                }
            }
            match lxd.get_instance(&tmp).await.optional()? {
                Some(i) if !built_by(&i.value, cx.run) => {
                    return Err(StepError::new(format!(
                        "an instance named {tmp} exists and was not made by this run"
                    )));
                }
                Some(_) => {}
                None => {
                    let new = match &plan.source {
                        RootSource::Snapshot { instance, snapshot } => {
                            NewInstance::copy_of_snapshot(&tmp, instance, snapshot)
                        }
                        RootSource::Image {
                            pull: Some(image), ..
                        } => NewInstance::pulled_image(
                            &tmp,
                            &image.fingerprint,
                            ImagePull {
                                mode: "pull".into(),
                                server: image.server.clone(),
                                // Each daemon's name for the other's API: LXD 5.0 knows only
                                // `lxd`; Incus 6.0 takes `incus` (and `lxd`) for either.
                                protocol: match lxd.server_kind() {
                                    ServerKind::Lxd => "lxd",
                                    ServerKind::Incus => "incus",
                                }
                                .into(),
                                certificate: image.certificate.clone(),
                            },
                        ),
                        RootSource::Image { alias, .. } => {
                            NewInstance::from_image_alias(&tmp, alias)
                        }
                    };
                    let mut config = plan.config.clone();
                    config.extend(pre.hwaddrs.clone());
                    config.insert(RUN_KEY.to_string(), cx.run.to_string());
                    config.insert(SOURCE_KEY.to_string(), plan.source.describe());
                    config.insert(SOURCE_ID_KEY.to_string(), pre.source_id.clone());
                    let profiles = pre.new_root_profiles(plan);
                    let new = new
                        .ephemeral(plan.ephemeral)
                        .profiles(profiles)
                        .config(config)
                        .description(&format!("built by reroot run {}", cx.run));
                    if let Err(e) = lxd.create_instance(&new).await {
                        // A create whose answer was lost may have happened: look before failing.
                        let made = lxd.get_instance(&tmp).await.optional()?;
                        if !made.is_some_and(|i| built_by(&i.value, cx.run)) {
                            return Err(e.into());
                        }
                    }
                }
            }
            Ok(result)
        })
    }

    /// The new root exists, under its temporary name or already swapped in.
    fn holds<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<bool, StepError>> {
        Box::pin(async move { Ok(cx.env.new_root_name(cx.instance, cx.run).await?.is_some()) })
    }

    /// Deletes the new root if it still has its temporary name (the undo of `swap` has put it
    /// back there). Never touches an instance this run did not make.
    fn undo<'a>(&'a self, cx: &'a StepCx<'a, RunEnv>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            let (_, lxd) = cx.env.scope(cx.instance)?;
            let tmp = temporary_name(cx.instance, cx.run);
            let Some(i) = lxd.get_instance(&tmp).await.optional()? else {
                return Ok(());
            };
            if !built_by(&i.value, cx.run) {
                return Err(StepError::new(format!(
                    "{tmp} was not made by this run; leaving it alone"
                )));
            }
            lxd.stop_instance(&tmp, Stop::Force)
                .await
                .map_err(super::state_change_error)?;
            lxd.delete_instance(&tmp).await?;
            Ok(())
        })
    }
}
