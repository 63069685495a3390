//! `launch`: a rebuild run that may only create instances. Scripts written for lxdops call
//! `launch` for an instance that must not exist yet; one that does is refused before any run
//! is recorded, so a mistyped name never replaces the root of a live instance.

use crate::steps::{Daemons, InstancePlan};

/// Why a launch is refused: the instances that already exist (with their config files), or a
/// daemon that could not say.
#[derive(Debug, thiserror::Error)]
pub enum LaunchRefused {
    #[error("{}", exists_message(.0))]
    Exists(Vec<(String, String)>),
    #[error("instance {instance}: {message}")]
    Lookup { instance: String, message: String },
}

/// The refusal for these `(instance, config file)` pairs, which exist.
fn exists_message(existing: &[(String, String)]) -> String {
    let list: Vec<String> = existing
        .iter()
        .map(|(name, file)| {
            if file.is_empty() {
                name.clone()
            } else {
                format!("{name} ({file})")
            }
        })
        .collect();
    format!(
        "launch: {} already exist{}: {}; nothing was done (`reroot rebuild` replaces the root \
         of an existing instance)",
        if existing.len() == 1 {
            "an instance"
        } else {
            "instances"
        },
        if existing.len() == 1 { "s" } else { "" },
        list.join(", ")
    )
}

/// Fails, naming every one of them, if any of the plans' instances exists on its daemon.
pub async fn refuse_existing(
    daemons: &Daemons,
    plans: &[InstancePlan],
) -> Result<(), LaunchRefused> {
    let mut existing = Vec::new();
    for plan in plans {
        let lookup = |message: String| LaunchRefused::Lookup {
            instance: plan.name.clone(),
            message,
        };
        let lxd = daemons.client(plan).map_err(lookup)?;
        if lxd
            .instance_exists(&plan.name)
            .await
            .map_err(|e| lookup(e.to_string()))?
        {
            let file = plan
                .config_files
                .first()
                .map(|(f, _)| f.clone())
                .unwrap_or_default();
            existing.push((plan.name.clone(), file));
        }
    }
    if existing.is_empty() {
        Ok(())
    } else {
        Err(LaunchRefused::Exists(existing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_each_existing_instance_and_its_config() {
        let one = vec![("web1".to_string(), "/c/web1.yaml".to_string())];
        assert_eq!(
            LaunchRefused::Exists(one).to_string(),
            "launch: an instance already exists: web1 (/c/web1.yaml); nothing was done \
             (`reroot rebuild` replaces the root of an existing instance)"
        );
        let two = vec![
            ("web1".to_string(), "/c/web1.yaml".to_string()),
            ("db".to_string(), String::new()),
        ];
        let text = LaunchRefused::Exists(two).to_string();
        assert!(text.starts_with("launch: instances already exist: web1 (/c/web1.yaml), db;"));
    }
}
