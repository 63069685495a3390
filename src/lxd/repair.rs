//! What a daemon killed in the middle of a change leaves half done, and finishing it.
//!
//! LXD and Incus rename an instance in two parts: first its storage volume (the volume's
//! database record, its directory or subvolume, the `containers/NAME` symlink), then the
//! instance's own database record. A daemon killed between the two (SIGKILL, OOM killer, a
//! host crash) comes back with the instance under its old name and its volume under the new
//! one. Nothing the daemon offers repairs that: every request that loads the instance's
//! storage then fails with "not found" (Incus 6.0.4: `Failed getting instance pool: Instance
//! storage pool not found` for a start, `Failed loading instance storage pool: ...` for a
//! rename), the public API refuses to rename an instance's volume, and `admin recover` only
//! imports volumes that have no database record. Seen in reroot's crash test that kills the
//! daemon while websites are down: about one kill in three landed inside a rename, and the
//! website stayed down.
//!
//! The repair finishes what the daemon was doing: the instance's record takes the name its
//! volume already has, through the daemon's own SQL endpoint (`POST /internal/sql`, what
//! `lxd sql global` and `incus admin sql global` send). It is done only when the live state
//! is exactly that half-done rename (the instance there, no volume under its name, the
//! volume under the new name, no instance of the new name), and the names are plain
//! instance names, so the statement cannot touch anything else.

use hyper::Method;
use serde_json::json;

use super::client::{Call, Client};
use super::error::{OptionalExt, Result};
use super::transport::encode;

/// The path of an instance's own volume in `pool` (`container` or `virtual-machine`).
fn instance_volume_path(pool: &str, kind: &str, name: &str) -> String {
    format!(
        "/1.0/storage-pools/{}/volumes/{}/{}",
        encode(pool, false),
        encode(kind, false),
        encode(name, false)
    )
}

/// Whether `name` is safe to put between quotes in SQL: instance names are host names
/// (letters, digits, hyphens) and project names add underscores and dots; anything else
/// is refused rather than escaped.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The statement that gives the instance `from` of `project` the name `to`, or `None` when a
/// name is not a plain one.
pub(crate) fn rename_record_sql(project: &str, from: &str, to: &str) -> Option<String> {
    if !(plain_name(project) && plain_name(from) && plain_name(to)) {
        return None;
    }
    Some(format!(
        "UPDATE instances SET name = '{to}' WHERE name = '{from}' \
         AND project_id = (SELECT id FROM projects WHERE name = '{project}')"
    ))
}

impl Client {
    /// Finishes a rename of `from` to `to` that the daemon left half done (see the module
    /// docs). `Ok(true)`: it was half done and is now done (`to` is the instance);
    /// `Ok(false)`: the live state is not that, nothing was changed.
    pub async fn finish_interrupted_rename(&self, from: &str, to: &str) -> Result<bool> {
        let Some(inst) = self.get_instance(from).await.optional()? else {
            return Ok(false);
        };
        if self.instance_exists(to).await? {
            return Ok(false);
        }
        let Some(pool) = inst
            .value
            .expanded_devices
            .get("root")
            .and_then(|d| d.get("pool"))
            .cloned()
        else {
            return Ok(false);
        };
        let kind = if inst.value.instance_type == "virtual-machine" {
            "virtual-machine"
        } else {
            "container"
        };
        let here = self
            .get_json::<serde_json::Value>(&instance_volume_path(&pool, kind, from), &[])
            .await
            .optional()?;
        let there = self
            .get_json::<serde_json::Value>(&instance_volume_path(&pool, kind, to), &[])
            .await
            .optional()?;
        if here.is_some() || there.is_none() {
            return Ok(false);
        }
        let project = self.project().unwrap_or("default");
        let Some(query) = rename_record_sql(project, from, to) else {
            return Ok(false);
        };
        tracing::warn!(
            instance = from,
            to,
            pool = %pool,
            "the daemon was stopped in the middle of renaming {from} to {to} (its volume is \
             renamed, the instance is not): finishing the rename"
        );
        self.execute(
            Call::new(Method::POST, "/internal/sql".to_string())
                .json(&json!({ "database": "global", "query": query })),
            None,
        )
        .await?;
        Ok(self.instance_exists(to).await? && !self.instance_exists(from).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_renames_one_instance_of_one_project() {
        assert_eq!(
            rename_record_sql("default", "web-1", "web-1-old-1a2b3c4d").as_deref(),
            Some(
                "UPDATE instances SET name = 'web-1-old-1a2b3c4d' WHERE name = 'web-1' \
                 AND project_id = (SELECT id FROM projects WHERE name = 'default')"
            )
        );
    }

    #[test]
    fn names_that_are_not_plain_give_no_statement() {
        for (project, from, to) in [
            ("default", "web'; DROP TABLE instances; --", "x"),
            ("default", "web", "x y"),
            ("de\"fault", "web", "x"),
            ("default", "", "x"),
            ("default", "web", "wéb"),
        ] {
            assert_eq!(rename_record_sql(project, from, to), None, "{from} {to}");
        }
    }
}
