//! One daemon (or offline command) per data directory: an advisory lock on `<data_dir>/inboxd.lock`.
//! The kernel releases it when the process dies, so a crash never leaves a stale lock behind.
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The data directory is in use.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "data directory {dir} is in use by another inboxd process (pid {pid}); stop it first, or point data_dir elsewhere"
    )]
    Busy { dir: PathBuf, pid: String },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held for the life of the process; dropping it releases the lock.
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock or says who holds it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let path = data_dir.join("inboxd.lock");
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(LockError::Busy {
                    dir: data_dir.to_path_buf(),
                    pid: pid.trim().to_string(),
                });
            }
            Err(TryLockError::Error(err)) => return Err(io(err)),
        }
        file.set_len(0).map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataDirLock { _file: file })
    }

    /// Takes the lock, waiting up to `wait` while another process holds it. Short-lived commands take
    /// the lock for a moment (to migrate, or to see whether a daemon runs); a daemon starting at that
    /// instant must not give up, while a second daemon is still refused once `wait` has passed.
    pub fn acquire_within(data_dir: &Path, wait: Duration) -> Result<DataDirLock, LockError> {
        let deadline = Instant::now() + wait;
        loop {
            match DataDirLock::acquire(data_dir) {
                Err(LockError::Busy { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_and_released_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DataDirLock::acquire(dir.path()).expect("first lock");
        let err = DataDirLock::acquire(dir.path())
            .err()
            .expect("second must fail");
        assert!(
            err.to_string().contains("in use by another inboxd process"),
            "{err}"
        );
        drop(first);
        DataDirLock::acquire(dir.path()).expect("lock after release");
    }
}
