//! Scratch space: the files a request writes before they are whole (an upload being received,
//! an ingest in progress, an attachment or a module about to be renamed into place).
//!
//! Every process that opens the data dir (`serve`, `dataop worker`, the command-line tools)
//! gets its own directory `<data_dir>/tmp/p<pid>-<random>/`, next to a lock file
//! `p<pid>-<random>.lock` that the process holds (an exclusive `flock`) as long as it lives.
//! The lock file is created and locked under a hidden name and renamed into place, so it
//! never appears unlocked. A process that is killed leaves its directory behind, but the
//! operating system drops its lock; the next process to open the data dir (see
//! [`Scratch::open`]) removes every directory whose lock it can take, so several live
//! processes sharing one data dir never remove each other's files. Entries that an older
//! version of dataop left directly in `tmp/` (`upload-*`, `ingest-*`, `demo-outpatients-*`)
//! and hidden lock files that never got renamed are removed once they are an hour old.
//!
//! The directory is removed when the process drops its [`Scratch`]. Each writer bounds what it
//! puts there: a catalog upload at most `upload_limit_bytes` plus its ingest, an attachment
//! [`crate::admission::handlers::attachments::MAX_FILE_BYTES`], a module
//! [`crate::jobs::model::MAX_MODULE_BYTES`]; each removes its file whatever the request's
//! outcome, and [`Scratch::ensure_room`] refuses to start one on a file system that would be
//! left with less than [`RESERVE_BYTES`] free.

use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Space a writer must leave free on the data dir's file system, so that a large upload
/// never takes the room the database needs to go on working (64 MiB).
pub const RESERVE_BYTES: u64 = 64 * 1024 * 1024;

/// Age after which an entry of an older layout, or an unfinished lock file, is removed.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// Prefixes of the scratch files older versions wrote directly into `tmp/`.
const LEGACY_PREFIXES: &[&str] = &["upload-", "ingest-", "demo-outpatients-"];

/// This process's scratch directory, removed when dropped.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: File,
}

/// The scratch root of a data dir.
pub fn root(data_dir: &Path) -> PathBuf {
    data_dir.join("tmp")
}

impl Scratch {
    /// Removes what dead processes left in `<data_dir>/tmp/` and creates this process's
    /// directory there.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let root = root(data_dir);
        std::fs::create_dir_all(&root)?;
        let removed = sweep(&root)?;
        if removed > 0 {
            tracing::info!(removed, "removed scratch files left by stopped processes");
        }
        let name = format!(
            "p{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let hidden = root.join(format!(".{name}.lock"));
        let lock = File::create_new(&hidden)?;
        lock.lock()?;
        let lock_path = root.join(format!("{name}.lock"));
        std::fs::rename(&hidden, &lock_path)?;
        let dir = root.join(&name);
        std::fs::create_dir(&dir)?;
        Ok(Self {
            dir,
            lock_path,
            _lock: lock,
        })
    }

    /// The directory to write into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new file name in the directory: `<prefix>-<random><suffix>`.
    pub fn file(&self, prefix: &str, suffix: &str) -> PathBuf {
        self.dir.join(format!(
            "{prefix}-{}{suffix}",
            uuid::Uuid::new_v4().simple()
        ))
    }

    /// `Err` of kind [`io::ErrorKind::StorageFull`] unless the file system of the scratch
    /// directory has room for `bytes` more and still [`RESERVE_BYTES`] free afterwards.
    pub fn ensure_room(&self, bytes: u64) -> io::Result<()> {
        let free = available_bytes(&self.dir)?;
        if free < bytes.saturating_add(RESERVE_BYTES) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("{free} bytes free, {bytes} needed and {RESERVE_BYTES} kept in reserve"),
            ));
        }
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// Bytes an unprivileged writer may still put on the file system holding `path`.
pub fn available_bytes(path: &Path) -> io::Result<u64> {
    let s = rustix::fs::statvfs(path)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Removes the directories of processes that hold their lock no longer, and stale entries of
/// older layouts; how many entries were removed.
pub fn sweep(root: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let gone = if let Some(owner) = name.strip_suffix(".lock").filter(|_| is_process(&name)) {
            sweep_process(root, owner, &path)?
        } else if is_process(&name) {
            // A directory whose lock file is gone: its owner died after the sweep that removed
            // the lock had begun, or the removal of the directory failed half-way.
            !root.join(format!("{name}.lock")).exists() && remove(&path)
        } else if (name.starts_with('.') && name.ends_with(".lock")
            || LEGACY_PREFIXES.iter().any(|p| name.starts_with(p)))
            && older_than(&path, STALE_AFTER)
        {
            remove(&path)
        } else {
            false
        };
        removed += usize::from(gone);
    }
    Ok(removed)
}

/// Whether a name is one of a process's (`p<pid>-<random>`, with or without `.lock`).
fn is_process(name: &str) -> bool {
    let stem = name.strip_suffix(".lock").unwrap_or(name);
    stem.strip_prefix('p')
        .and_then(|s| s.split_once('-'))
        .is_some_and(|(pid, rest)| {
            !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && !rest.is_empty()
                && rest.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

/// Removes the directory `owner` and its lock file `lock` when no live process holds the lock.
fn sweep_process(root: &Path, owner: &str, lock: &Path) -> io::Result<bool> {
    let file = match File::open(lock) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(false),
        Err(TryLockError::Error(e)) => return Err(e),
    }
    let dir = root.join(owner);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::remove_file(lock)?;
    Ok(true)
}

fn remove(path: &Path) -> bool {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    result.is_ok()
}

/// Whether `path` and, for a directory, everything directly in it, were last changed more
/// than `age` ago.
fn older_than(path: &Path, age: Duration) -> bool {
    let Some(limit) = SystemTime::now().checked_sub(age) else {
        return false;
    };
    let old = |p: &Path| {
        std::fs::symlink_metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < limit)
    };
    if !old(path) {
        return false;
    }
    match std::fs::read_dir(path) {
        Ok(entries) => entries.flatten().all(|e| old(&e.path())),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_keeps_its_directory_and_a_dropped_one_is_removed() {
        let data = tempfile::tempdir().unwrap();
        let first = Scratch::open(data.path()).unwrap();
        std::fs::write(first.file("upload", ".csv"), b"a,b\n").unwrap();
        let second = Scratch::open(data.path()).unwrap();
        assert_eq!(std::fs::read_dir(first.dir()).unwrap().count(), 1);
        let second_dir = second.dir().to_path_buf();
        drop(second);
        assert!(!second_dir.exists());
        assert_eq!(std::fs::read_dir(root(data.path())).unwrap().count(), 2);
    }

    #[test]
    fn names() {
        assert!(is_process("p123-0af3"));
        assert!(is_process("p123-0af3.lock"));
        assert!(!is_process("p-0af3"));
        assert!(!is_process("upload-0af3.csv"));
        assert!(!is_process("pig-x"));
    }
}
