//! Running under systemd: readiness and status notifications (sd_notify protocol), the watchdog, and
//! startup checks of the host (free disk space).
pub mod malloc;
mod notify;

pub use notify::{Heartbeat, Notifier, watchdog_task};

use std::path::Path;

/// Refuse to start below this much free space in the data directory: SQLite, blob files and the index
/// need room to commit, and a full disk mid-transaction only rolls back.
pub const MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;

/// A host problem found at startup.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "data directory {path} has only {free_mb} MB free (at least {need_mb} MB needed); free some space or move data_dir"
    )]
    DiskFull {
        path: String,
        free_mb: u64,
        need_mb: u64,
    },
    #[error("cannot check free space of {path}: {message}")]
    Statvfs { path: String, message: String },
}

/// Bytes available to this user in the file system holding `path`.
pub fn free_bytes(path: &Path) -> Result<u64, ServiceError> {
    let stats = nix::sys::statvfs::statvfs(path).map_err(|err| ServiceError::Statvfs {
        path: path.display().to_string(),
        message: err.to_string(),
    })?;
    Ok(stats
        .blocks_available()
        .saturating_mul(stats.fragment_size()))
}

/// Refuses a data directory on a (nearly) full disk.
pub fn check_free_space(path: &Path, needed: u64) -> Result<u64, ServiceError> {
    let free = free_bytes(path)?;
    if free < needed {
        return Err(ServiceError::DiskFull {
            path: path.display().to_string(),
            free_mb: free / (1024 * 1024),
            need_mb: needed / (1024 * 1024),
        });
    }
    Ok(free)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_measured_and_enforced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let free = check_free_space(dir.path(), 1).expect("some space is free");
        assert!(free > 0);
        let err = check_free_space(dir.path(), u64::MAX).expect_err("nobody has that much");
        assert!(err.to_string().contains("free some space"), "{err}");
    }
}
