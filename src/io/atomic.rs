//! Atomic replacement of files: each file is written under a unique temporary name in its
//! target's directory, flushed and fsynced, then renamed over the target; the directory is
//! fsynced after the renames. A set of files is staged completely before the first rename.

use crate::error::{Result, WgradError};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes the temporary files of one process (the process id does it between processes).
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The prefix of every temporary file staged for `name`: `.{name}.tmp-`.
pub(crate) fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp-")
}

/// A file written under a temporary name, not yet renamed over its target. Dropping it without
/// [`Staged::commit`] or [`Staged::keep`] removes the temporary file.
pub(crate) struct Staged {
    temp: PathBuf,
    target: PathBuf,
    /// Whether the temporary file is no longer ours to remove (renamed, or kept on purpose).
    done: bool,
}

impl Staged {
    /// Writes `bytes` to a new temporary file beside `dir/name`, then flushes and fsyncs it.
    pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<Staged> {
        let target = dir.join(name);
        let (temp, mut file) = create_temp(dir, name)?;
        // From here on `staged` removes the temporary file if anything fails.
        let staged = Staged {
            temp,
            target,
            done: false,
        };
        file.write_all(bytes)
            .and_then(|()| file.flush())
            .and_then(|()| file.sync_all())
            .map_err(|e| WgradError::io(&staged.temp, e))?;
        Ok(staged)
    }

    /// Renames the temporary file over the target (not yet durable: fsync the directory).
    pub(crate) fn commit(&mut self) -> Result<()> {
        fs::rename(&self.temp, &self.target).map_err(|e| {
            WgradError::io(
                &self.target,
                io::Error::new(
                    e.kind(),
                    format!("cannot rename {} over it: {e}", self.temp.display()),
                ),
            )
        })?;
        self.done = true;
        Ok(())
    }

    /// Leaves the temporary file in place (for a reader to finish an interrupted set of renames).
    pub(crate) fn keep(&mut self) {
        self.done = true;
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Creates a temporary file `.{name}.tmp-{pid}-{n}` that did not exist before.
fn create_temp(dir: &Path, name: &str) -> Result<(PathBuf, File)> {
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!("{}{}-{n}", temp_prefix(name), std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            // Left by an earlier process that had the same id: take the next number.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(WgradError::io(&temp, e)),
        }
    }
}

/// Replaces the files `dir/name` with `bytes`, in the order given: all are staged (written and
/// fsynced under temporary names) before the first is renamed, and the directory is fsynced
/// before the first rename (so the staged names survive a power loss) and after the last.
///
/// If staging fails, every temporary file is removed and the targets are untouched. If a rename
/// fails after an earlier one succeeded, the files not yet renamed stay under their temporary
/// names, so that a reader can complete the set (as `load_checkpoint` does).
pub(crate) fn replace_files(dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    let mut staged = files
        .iter()
        .map(|(name, bytes)| Staged::write(dir, name, bytes))
        .collect::<Result<Vec<_>>>()?;
    sync_dir(dir)?;
    for i in 0..staged.len() {
        if let Err(e) = staged[i].commit() {
            if i > 0 {
                staged[i..].iter_mut().for_each(Staged::keep);
            }
            return Err(e);
        }
    }
    sync_dir(dir)
}

/// Makes renames and new names in `dir` durable. A no-op where directories cannot be opened
/// (Windows) or synced (some network and FUSE file systems answer EINVAL).
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e)
            if !matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
            ) =>
        {
            return Err(WgradError::io(dir, e));
        }
        _ => {}
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The temporary files for `name` in `dir` (left by interrupted writes), sorted by path.
pub(crate) fn temp_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let prefix = temp_prefix(name);
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut temps: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .map(|entry| entry.path())
        .collect();
    temps.sort();
    temps
}

/// Removes every temporary file for any of `names` in `dir`, ignoring failures (best effort).
pub(crate) fn remove_temp_files(dir: &Path, names: &[&str]) {
    for name in names {
        for temp in temp_files(dir, name) {
            let _ = fs::remove_file(temp);
        }
    }
}
