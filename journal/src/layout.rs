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

/// The mode of the journal directory and the directories in it: only its owner may enter. The
/// journal holds each run's plans, and with them the text of its cloud-config files, whose
/// `write_files` carry keys, tokens and passwords.
pub(crate) const DIR_MODE: u32 = 0o700;
/// The mode of the files the journal writes: only its owner may read them.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Creates the journal directory `dir` (its parents as usual) with [`DIR_MODE`]; an existing
/// one is left as it is (see [`tighten`]).
pub(crate) fn create_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Options that create a file (if missing) with [`FILE_MODE`].
pub(crate) fn private_file() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// What [`tighten`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Tightened {
    /// Entries whose mode was changed.
    pub changed: usize,
    /// Of those, the ones another local user could actually read: a file readable by group or
    /// others, or a directory they could list, reached through directories they could enter.
    /// Entries made by sled inside a private `db/` are tightened without being counted here.
    pub exposed: Vec<(String, u32)>,
}

/// Takes group and other permissions off the journal directory and everything in it
/// (directories become at most [`DIR_MODE`], files at most [`FILE_MODE`]). Symbolic links are
/// neither followed nor changed.
pub(crate) fn tighten(dir: &Path) -> Result<Tightened, Error> {
    let mut out = Tightened::default();
    tighten_at(dir, dir, true, &mut out)?;
    Ok(out)
}

fn tighten_at(root: &Path, path: &Path, reachable: bool, out: &mut Tightened) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    let is_dir = meta.is_dir();
    let open_to_others = mode & 0o077 != 0;
    if open_to_others {
        let name = match path.strip_prefix(root) {
            Ok(p) if p.as_os_str().is_empty() => ".".to_string(),
            Ok(p) => p.display().to_string(),
            Err(_) => path.display().to_string(),
        };
        // Readable (a file) or listable (a directory) by group or others, through directories
        // they may enter.
        if reachable && mode & 0o044 != 0 {
            out.exposed.push((name, mode));
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & !0o077))
            .map_err(|e| Error::io(path, e))?;
        out.changed += 1;
    }
    if is_dir {
        let inner = reachable && mode & 0o011 != 0;
        for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
            let entry = entry.map_err(|e| Error::io(path, e))?;
            tighten_at(root, &entry.path(), inner, out)?;
        }
    }
    Ok(())
}

/// The warning for a journal [`tighten`] found open to other users, if it was.
pub(crate) fn tightened_note(dir: &Path, t: &Tightened) -> Option<String> {
    if t.exposed.is_empty() {
        return None;
    }
    let shown: Vec<String> = t
        .exposed
        .iter()
        .take(4)
        .map(|(name, mode)| format!("{name} {mode:04o}"))
        .collect();
    let more = t.exposed.len().saturating_sub(shown.len());
    Some(format!(
        "{} was readable by other local users ({}{}), and it holds the runs' plans with the \
         text of their cloud-config files: its directories are now {DIR_MODE:04o} and its \
         files {FILE_MODE:04o}",
        dir.display(),
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    ))
}
