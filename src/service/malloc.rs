//! The process's own glibc malloc settings, so the daemon keeps the same bounded memory however it is
//! started (systemd, the CLI, a container).
//!
//! glibc serves allocations above a threshold with their own `mmap`, returned to the kernel on free. By
//! default that threshold moves up to the size of the largest block freed so far (up to 32 MiB): after
//! the first message with a 2 MB attachment, every later buffer below 2 MB (raw messages, decoded
//! parts, bodies) comes from the per-thread heaps instead, which fragment and are rarely given back.
//! Over a 50,000-message import that grew the process from 130 MB to 255 MB while its live heap stayed
//! under 100 MB (issue #3). A fixed threshold keeps large buffers out of the heaps for good.
//!
//! The setting must be in place before the first allocation, which only the environment can do
//! (`GLIBC_TUNABLES`); the binary re-executes itself once with it, before any thread exists. The same
//! PID carries on (systemd's main PID does not change). Set `GLIBC_TUNABLES` yourself to choose other
//! values; nothing is changed then.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The settings applied: blocks of 512 KiB and more get their own mapping. 256 KiB bounded memory a
/// little better but cost 15–25 % more CPU in page faults on a 50,000-message import.
pub const TUNABLES: &str = "glibc.malloc.mmap_threshold=524288";
/// Set in the re-executed process, so a libc that ignores `GLIBC_TUNABLES` cannot cause a loop.
const MARKER: &str = "INBOXD_MALLOC_TUNED";

/// What to do at start, given the environment: the value to set, or `None` to carry on as is.
fn wanted(tunables: Option<OsString>, marker: Option<OsString>) -> Option<&'static str> {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return None;
    }
    (tunables.is_none() && marker.is_none()).then_some(TUNABLES)
}

/// Re-executes this binary with [`TUNABLES`] unless the environment already has `GLIBC_TUNABLES`. Call
/// first thing in `main`, before any thread starts. Returns only when nothing was to be done or the
/// re-execution failed (the binary replaced on disk, say): the process then simply runs untuned.
pub fn apply() {
    let Some(tunables) = wanted(std::env::var_os("GLIBC_TUNABLES"), std::env::var_os(MARKER))
    else {
        return;
    };
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = Command::new(exe);
    if let Some(argv0) = args.next() {
        command.arg0(argv0);
    }
    command
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .env(MARKER, "1");
    // `exec` returns only on failure; the error is not worth a message before logging exists.
    let _failed = command.exec();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunes_only_an_untuned_environment() {
        let tuned = cfg!(all(target_os = "linux", target_env = "gnu")).then_some(TUNABLES);
        assert_eq!(wanted(None, None), tuned);
        assert_eq!(wanted(Some("glibc.malloc.arena_max=2".into()), None), None);
        assert_eq!(wanted(None, Some("1".into())), None);
    }
}
