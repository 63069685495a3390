//! Plain directories as filesystems: created with their parents, no snapshots, removed only by
//! [`destroy`](super::Filesystem::destroy).

use std::path::Path;

use super::{blocking, io_error, Ensured, Filesystem, Removed, StorageError};

pub(super) async fn exists(fs: &Filesystem, path: &Path) -> Result<bool, StorageError> {
    let (p, id) = (path.to_path_buf(), fs.id.clone());
    blocking(move || match std::fs::metadata(&p) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => Err(StorageError::Invalid {
            what: format!("filesystem `{id}`"),
            problem: format!("{} exists but is not a directory", p.display()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("inspect", &p)(e)),
    })
    .await
}

pub(super) async fn create(fs: &Filesystem, path: &Path) -> Result<Ensured, StorageError> {
    if exists(fs, path).await? {
        return Ok(Ensured::AlreadyExisted);
    }
    let p = path.to_path_buf();
    blocking(move || {
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io_error("create directory", parent))?;
        }
        // create_dir (not create_dir_all) tells whether this call made the directory.
        match std::fs::create_dir(&p) {
            Ok(()) => Ok(Ensured::Created),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && p.is_dir() => {
                Ok(Ensured::AlreadyExisted)
            }
            Err(e) => Err(io_error("create directory", &p)(e)),
        }
    })
    .await
}

pub(super) async fn destroy(path: &Path) -> Result<Removed, StorageError> {
    let p = path.to_path_buf();
    blocking(move || match std::fs::remove_dir_all(&p) {
        Ok(()) => Ok(Removed::Removed),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Removed::AlreadyAbsent),
        Err(e) => Err(io_error("remove directory", &p)(e)),
    })
    .await
}
