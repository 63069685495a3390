//! The names a run gives to things: the new root before the swap, the retired old root, the
//! filesystem snapshots, and the config keys that mark a root as built by a run.

use journal::RunId;

/// Config key on a new root: the id of the run that built it.
pub const RUN_KEY: &str = "user.reroot.run";
/// Config key on a new root: what it was copied from (`tpl/snap` or `image:alias`).
pub const SOURCE_KEY: &str = "user.reroot.source";
/// Config key on a new root: what identified its source's content when it was copied (the
/// snapshot's creation time, or the image's fingerprint).
pub const SOURCE_ID_KEY: &str = "user.reroot.source-id";

/// The longest instance name a rebuild accepts: the temporary names add 13 characters and LXD
/// allows 63.
pub const MAX_NAME_LEN: usize = 50;

fn short(run: RunId) -> String {
    journal::short_id(&run)
}

/// The new root's name until the swap: `<instance>-new-<run8>`.
pub fn temporary_name(instance: &str, run: RunId) -> String {
    format!("{instance}-new-{}", short(run))
}

/// The old root's name once retired: `<instance>-old-<run8>`.
pub fn retired_name(instance: &str, run: RunId) -> String {
    format!("{instance}-old-{}", short(run))
}

/// The name of the external filesystems' snapshots taken by a run: `reroot-<run8>`.
pub fn snapshot_name(run: RunId) -> String {
    format!("reroot-{}", short(run))
}

/// True if this instance is the new root built by `run`.
pub(crate) fn built_by(instance: &crate::lxd::Instance, run: RunId) -> bool {
    instance.config.get(RUN_KEY).map(String::as_str) == Some(run.to_string().as_str())
}

/// The instance under `name`, which must be the new root built by `run`.
pub(crate) async fn new_root(
    lxd: &crate::lxd::Client,
    name: &str,
    run: RunId,
) -> Result<crate::lxd::Versioned<crate::lxd::Instance>, crate::engine::StepError> {
    let current = lxd.get_instance(name).await?;
    if !built_by(&current.value, run) {
        return Err(crate::engine::StepError::new(format!(
            "{name} is not the new root of this run"
        )));
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_run_and_fit_lxd_limits() {
        let run: RunId = "1a2b3c4d-0000-4000-8000-000000000000".parse().unwrap();
        assert_eq!(temporary_name("web1", run), "web1-new-1a2b3c4d");
        assert_eq!(retired_name("web1", run), "web1-old-1a2b3c4d");
        assert_eq!(snapshot_name(run), "reroot-1a2b3c4d");
        let longest = "a".repeat(MAX_NAME_LEN);
        assert!(temporary_name(&longest, run).len() <= 63);
        assert!(retired_name(&longest, run).len() <= 63);
    }
}
