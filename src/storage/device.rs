//! Device directories: the host directories inside an instance's filesystems that are attached
//! to the instance as disk devices.
//!
//! A device directory is created once, owned by the instance's mapped owner (see
//! [`owner`](super::owner)), and never re-chowned afterwards: existing data keeps its owners.

use std::path::{Path, PathBuf};

use super::{blocking, io_error, Ensured, Owner, StorageError};

/// Makes sure the device directory `dir` exists (parents included, owned by root).
///
/// Only when this call creates `dir` is it chowned to `owner` (not recursively). The directory
/// is made under a temporary name (`.<name>.reroot-new` beside it), chowned, then renamed into
/// place, so a crash never leaves a created-but-not-chowned `dir` behind. An existing `dir` is
/// left untouched ([`Ensured::AlreadyExisted`]).
pub async fn ensure_device_dir(dir: &Path, owner: Option<Owner>) -> Result<Ensured, StorageError> {
    let dir = absolute(dir, "device directory")?;
    blocking(move || {
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => return Ok(Ensured::AlreadyExisted),
            Ok(_) => {
                return Err(StorageError::Invalid {
                    what: "device directory".to_string(),
                    problem: format!("{} exists but is not a directory", dir.display()),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("inspect", &dir)(e)),
        }
        let (parent, name) = match (dir.parent(), dir.file_name()) {
            (Some(parent), Some(name)) => (parent.to_path_buf(), name.to_string_lossy().into_owned()),
            _ => {
                return Err(StorageError::Invalid {
                    what: "device directory".to_string(),
                    problem: format!("{} has no parent directory", dir.display()),
                })
            }
        };
        std::fs::create_dir_all(&parent).map_err(io_error("create directory", &parent))?;
        let staging = parent.join(format!(".{name}.reroot-new"));
        match std::fs::create_dir(&staging) {
            Ok(()) => {}
            // Left by an interrupted earlier call: it never became `dir`, reuse it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && staging.is_dir() => {}
            Err(e) => return Err(io_error("create directory", &staging)(e)),
        }
        if let Some(owner) = owner {
            tracing::debug!(dir = %dir.display(), uid = owner.uid, gid = owner.gid, "chown new device directory");
            std::os::unix::fs::chown(&staging, Some(owner.uid), Some(owner.gid))
                .map_err(io_error("chown", &staging))?;
        }
        if dir.exists() {
            // Created by someone else meanwhile: theirs wins, ours (empty) goes.
            let _ = std::fs::remove_dir(&staging);
            return Ok(Ensured::AlreadyExisted);
        }
        std::fs::rename(&staging, &dir).map_err(io_error("rename into place", &staging))?;
        Ok(Ensured::Created)
    })
    .await
}

/// Sets the owner of `path` itself (not recursively). For the root directory of a filesystem
/// that was just created ([`Ensured::Created`]), which is also the device directory of devices
/// with dir `.`; never for existing data.
pub async fn set_owner(path: &Path, owner: Owner) -> Result<(), StorageError> {
    let path = absolute(path, "directory to chown")?;
    tracing::debug!(path = %path.display(), uid = owner.uid, gid = owner.gid, "chown");
    blocking(move || {
        std::os::unix::fs::chown(&path, Some(owner.uid), Some(owner.gid))
            .map_err(io_error("chown", &path))
    })
    .await
}

pub(super) fn absolute(path: &Path, what: &str) -> Result<PathBuf, StorageError> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Err(StorageError::Invalid {
            what: what.to_string(),
            problem: format!("{} is not an absolute path", path.display()),
        })
    }
}
