//! The lock file: one process at a time owns a journal's database.
//!
//! `<dir>/lock` is locked with `flock(LOCK_EX)` (through `std::fs::File::try_lock`) for as long as
//! its owner lives; the kernel releases it when the process dies, even by SIGKILL. The owner
//! writes who it is into the file (`pid=`, `role=writer|reader`, `run=`), so that a refused
//! process can say who holds the journal. The content is only meaningful while the file is locked.
//!
//! A process that spawns children can see its own closed lock still held for a moment: a child
//! shares the lock's open file until it executes its program (the descriptor is close-on-exec,
//! but exists between fork and exec). So this process remembers which journals it holds as
//! writer, and [`lingering`] tells that case from a real holder.

use crate::{Error, RunId};
use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The journal directories (canonical) whose writer lock this process holds.
static HELD_HERE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn held_here() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    HELD_HERE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Size of the fixed record written into the lock file (padded with spaces), so that an update
/// is one `pwrite` that never shortens the file.
const RECORD: usize = 96;

/// Who holds a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Writer,
    Reader,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Writer => "writer",
            Role::Reader => "reader",
        }
    }
}

/// A held lock; released when dropped (the file is closed).
#[derive(Debug)]
pub(crate) struct LockFile {
    file: File,
    path: PathBuf,
    role: Role,
    /// The canonical journal directory, registered in [`HELD_HERE`] (writers only).
    registered: Option<PathBuf>,
}

impl Drop for LockFile {
    fn drop(&mut self) {
        if let Some(dir) = self.registered.take() {
            held_here().remove(&dir);
        }
    }
}

/// True when `holder`, read from the held lock of `dir`, is this process, and yet this process
/// has no open writer for it: a spawned child still shares the lock for a moment. Worth
/// waiting for, unlike a real holder.
pub(crate) fn lingering(dir: &Path, holder: &Holder) -> bool {
    holder.pid == Some(std::process::id())
        && std::fs::canonicalize(dir).is_ok_and(|d| !held_here().contains(&d))
}

/// What the lock file says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    pub pid: Option<u32>,
    pub run: Option<RunId>,
    pub role: String,
}

pub(crate) fn lock_path(dir: &Path) -> PathBuf {
    dir.join("lock")
}

/// Tries to take the lock without waiting. `Ok(None)` if another holder has it.
pub(crate) fn try_lock(dir: &Path, role: Role) -> Result<Option<LockFile>, Error> {
    let path = lock_path(dir);
    let file = crate::layout::private_file()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    let registered = match role {
        Role::Writer => {
            let d = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
            held_here().insert(d.clone());
            Some(d)
        }
        Role::Reader => None,
    };
    let lock = LockFile {
        file,
        path,
        role,
        registered,
    };
    lock.set_run(None)?;
    Ok(Some(lock))
}

/// Reads what the lock file says about its holder (best effort: fields that cannot be read are
/// `None`).
pub(crate) fn read_holder(dir: &Path) -> Holder {
    let text = std::fs::read_to_string(lock_path(dir)).unwrap_or_default();
    let mut holder = Holder {
        pid: None,
        run: None,
        role: "another".to_string(),
    };
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("pid=") {
            holder.pid = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("run=") {
            holder.run = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("role=") {
            if v == "writer" || v == "reader" {
                holder.role = v.to_string();
            }
        }
    }
    holder
}

/// The error for a journal whose lock is held.
pub(crate) fn locked_error(dir: &Path) -> Error {
    let h = read_holder(dir);
    Error::Locked {
        dir: dir.to_path_buf(),
        pid: h.pid,
        run: h.run,
        role: h.role,
    }
}

impl LockFile {
    /// Records the run this holder is working on (or none).
    pub(crate) fn set_run(&self, run: Option<RunId>) -> Result<(), Error> {
        let run = run
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".to_string());
        let mut text = format!(
            "pid={}\nrole={}\nrun={}\n",
            std::process::id(),
            self.role.as_str(),
            run
        );
        while text.len() < RECORD {
            text.push(' ');
        }
        self.file
            .write_all_at(text.as_bytes(), 0)
            .map_err(|e| Error::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let a = try_lock(dir.path(), Role::Writer)
            .unwrap()
            .expect("first lock");
        let run = RunId::from_u128(0x1234);
        a.set_run(Some(run)).unwrap();
        assert!(try_lock(dir.path(), Role::Writer).unwrap().is_none());
        let h = read_holder(dir.path());
        assert_eq!(h.pid, Some(std::process::id()));
        assert_eq!(h.run, Some(run));
        assert_eq!(h.role, "writer");
        drop(a);
        assert!(try_lock(dir.path(), Role::Reader).unwrap().is_some());
    }
}
