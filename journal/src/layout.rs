//! The journal directory: the names of what it holds (listed in `journal/FORMAT.md`,
//! [`mod@crate::format`]), the clean-close marker, and the one way a change of the directory
//! itself is made durable. Every other module names files through here.

use std::fs::File;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Where a database that could not be opened after a crash is moved before it is rebuilt.
pub(crate) const DAMAGED_DB_DIR: &str = "db.damaged";

/// Makes a change of the directory's entries (a create, rename or removal) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// The marker a writer leaves when it closes cleanly (`<dir>/clean`): the live log's length and
/// the number of events then. Its absence after a writer ran means the writer died.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CleanMark {
    pub log_len: u64,
    pub events: u64,
}

pub(crate) const CLEAN_FILE: &str = "clean";

pub(crate) fn read_clean(dir: &Path) -> Result<Option<CleanMark>, Error> {
    let path = dir.join(CLEAN_FILE);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            Error::corrupt(
                None,
                None,
                format!("{}: not a clean-close marker: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}
