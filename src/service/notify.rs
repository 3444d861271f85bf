//! The sd_notify protocol (systemd.service `Type=notify`): datagrams such as `READY=1`, `STATUS=…`,
//! `STOPPING=1` and `WATCHDOG=1` sent to the socket named by `$NOTIFY_SOCKET`. Implemented on std's
//! Unix datagram sockets (no libsystemd), including abstract socket names (`@…`).
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Sends notifications to systemd; does nothing when not started by systemd.
#[derive(Clone, Default)]
pub struct Notifier {
    target: Option<Arc<(UnixDatagram, SocketAddr)>>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` (sd_watchdog_enabled semantics: the
    /// watchdog applies only when `WATCHDOG_PID` is unset or names this process).
    pub fn from_env() -> Notifier {
        let target = std::env::var("NOTIFY_SOCKET").ok().and_then(|name| {
            let address = if let Some(abstract_name) = name.strip_prefix('@') {
                SocketAddr::from_abstract_name(abstract_name.as_bytes()).ok()?
            } else {
                SocketAddr::from_pathname(&name).ok()?
            };
            let socket = UnixDatagram::unbound().ok()?;
            Some(Arc::new((socket, address)))
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.parse::<u64>().ok())
            .filter(|usec| *usec > 0 && for_us)
            .map(Duration::from_micros);
        Notifier { target, watchdog }
    }

    /// Whether a notification socket is configured.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog timeout systemd expects pings within, if enabled.
    pub fn watchdog_timeout(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, message: &str) {
        if let Some(target) = &self.target {
            let (socket, address) = &**target;
            if let Err(err) = socket.send_to_addr(message.as_bytes(), address) {
                warn!(error = %err, "cannot notify systemd");
            }
        }
    }

    /// The daemon is ready: database, key and index are open.
    pub fn ready(&self, status: &str) {
        self.send(&format!(
            "READY=1\nSTATUS={status}\nMAINPID={}",
            std::process::id()
        ));
    }

    /// A one-line status shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    /// Shutdown has begun.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    fn ping(&self) {
        self.send("WATCHDOG=1");
    }
}

/// Proof of life of the daemon's main loop: it beats on every turn; the watchdog pings systemd only
/// while beats are recent, so a wedged loop gets the daemon restarted.
#[derive(Clone)]
pub struct Heartbeat {
    started: Instant,
    last_millis: Arc<AtomicU64>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            started: Instant::now(),
            last_millis: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Heartbeat {
    /// Records a healthy turn of the main loop.
    pub fn beat(&self) {
        let millis = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.store(millis, Ordering::Relaxed);
    }

    /// Time since the last beat.
    pub fn age(&self) -> Duration {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.last_millis.load(Ordering::Relaxed)))
    }
}

/// Pings the watchdog at half its timeout while the heartbeat is younger than the timeout and
/// `healthy()` (a database round trip) succeeds.
pub async fn watchdog_task<F, Fut>(
    notifier: Notifier,
    heartbeat: Heartbeat,
    cancel: CancellationToken,
    healthy: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let Some(timeout) = notifier.watchdog_timeout() else {
        return;
    };
    let interval = timeout / 2;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let fresh = heartbeat.age() < timeout;
        let ok = fresh
            && tokio::time::timeout(interval, healthy())
                .await
                .unwrap_or(false);
        if ok {
            notifier.ping();
        } else {
            warn!(fresh, "main loop unhealthy; not pinging the watchdog");
        }
        debug!(ok, "watchdog check");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_the_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).expect("bind");
        receiver
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let notifier = Notifier {
            target: Some(Arc::new((
                UnixDatagram::unbound().expect("socket"),
                SocketAddr::from_pathname(&path).expect("address"),
            ))),
            watchdog: None,
        };
        notifier.ready("up");
        let mut buffer = [0u8; 256];
        let size = receiver.recv(&mut buffer).expect("datagram");
        let text = String::from_utf8_lossy(&buffer[..size]);
        assert!(text.starts_with("READY=1\nSTATUS=up"), "{text}");
        notifier.stopping();
        let size = receiver.recv(&mut buffer).expect("datagram");
        assert!(String::from_utf8_lossy(&buffer[..size]).contains("STOPPING=1"));
    }

    #[test]
    fn heartbeat_ages() {
        let heartbeat = Heartbeat::default();
        heartbeat.beat();
        assert!(heartbeat.age() < Duration::from_secs(1));
    }
}
