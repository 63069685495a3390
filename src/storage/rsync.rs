//! Filling a new device directory from the same device of the template instance with
//! `rsync -a <template>/ <dir>/`. Never with `--delete`: files already in the target are kept
//! (same-named files are updated from the template). The target directory keeps its own owner
//! (given when it was created), whatever the template directory's owner is.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::command::{self, RSYNC_TIMEOUT};
use super::device::absolute;
use super::{blocking, io_error, StorageError};

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
    let d = dir.clone();
    let owner = blocking(move || {
        std::fs::metadata(&d)
            .map(|m| (m.uid(), m.gid()))
            .map_err(io_error("inspect", &d))
    })
    .await?;
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
    // `rsync -a src/ dst/` gives dst the owner of src: put the device directory's owner back.
    blocking(move || {
        std::os::unix::fs::chown(&dir, Some(owner.0), Some(owner.1))
            .map_err(io_error("chown", &dir))
    })
    .await
}
