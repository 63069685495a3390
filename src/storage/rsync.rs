//! Filling a new device directory from the same device of the template instance with
//! `rsync -a <template>/ <dir>/`. Never with `--delete`: files already in the target are kept
//! (same-named files are updated from the template).

use std::ffi::OsString;
use std::path::Path;

use super::command::{self, RSYNC_TIMEOUT};
use super::device::absolute;
use super::{blocking, StorageError};

/// Copies the content of `template` into `dir` (`rsync -a template/ dir/`), preserving modes,
/// owners and times. Meant only for device directories this run has just created. A missing
/// template or target is an error naming it.
pub async fn rsync_template(template: &Path, dir: &Path) -> Result<(), StorageError> {
    let template = absolute(template, "device template")?;
    let dir = absolute(dir, "device directory")?;
    for (path, what) in [(&template, "device template"), (&dir, "device directory")] {
        let p = path.clone();
        if !blocking(move || Ok(p.is_dir())).await? {
            return Err(StorageError::Invalid {
                what: what.to_string(),
                problem: format!("{} is not an existing directory", path.display()),
            });
        }
    }
    let with_slash = |p: &Path| {
        let mut s = OsString::from(p.as_os_str());
        s.push("/");
        s
    };
    command::run(
        "rsync",
        [
            OsString::from("-a"),
            with_slash(&template),
            with_slash(&dir),
        ],
        RSYNC_TIMEOUT,
    )
    .await?;
    Ok(())
}
