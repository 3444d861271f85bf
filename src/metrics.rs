//! Process-wide counters for `/metrics` (Prometheus text format 0.0.4). Hand-rolled statics: the daemon
//! has a handful of series, so a metrics framework would cost more than it gives. Counters count since
//! the process started, as Prometheus expects (it handles resets).
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static MESSAGES_INGESTED: AtomicU64 = AtomicU64::new(0);
static MESSAGES_DUPLICATE: AtomicU64 = AtomicU64::new(0);
static PURGED_CONVERSATIONS: AtomicU64 = AtomicU64::new(0);
static PURGED_MESSAGES: AtomicU64 = AtomicU64::new(0);
static PURGE_RUNS: AtomicU64 = AtomicU64::new(0);
static SYNC_ERRORS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
/// OAuth token refreshes by (mailbox, outcome).
static OAUTH_REFRESHES: Mutex<BTreeMap<(String, String), u64>> = Mutex::new(BTreeMap::new());

/// Upper bounds (seconds) of the search latency histogram buckets.
const SEARCH_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
static SEARCH_BUCKET_COUNTS: [AtomicU64; 10] = [const { AtomicU64::new(0) }; 10];
static SEARCH_COUNT: AtomicU64 = AtomicU64::new(0);
/// Sum of search latencies in microseconds.
static SEARCH_SUM_MICROS: AtomicU64 = AtomicU64::new(0);

/// A committed ingest batch: `stored` new messages, `duplicates` skipped.
pub fn record_ingest(stored: u64, duplicates: u64) {
    MESSAGES_INGESTED.fetch_add(stored, Ordering::Relaxed);
    MESSAGES_DUPLICATE.fetch_add(duplicates, Ordering::Relaxed);
}

/// A failed sync pass of a mailbox (the name is an admin-chosen label, never an address).
pub fn record_sync_error(mailbox: &str) {
    let mut map = SYNC_ERRORS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *map.entry(mailbox.to_string()).or_insert(0) += 1;
}

/// An OAuth access-token refresh of a mailbox; `outcome` is `ok`, `invalid_grant` or `error`.
pub fn record_oauth_refresh(mailbox: &str, outcome: &str) {
    let mut map = OAUTH_REFRESHES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *map.entry((mailbox.to_string(), outcome.to_string()))
        .or_insert(0) += 1;
}

/// A finished purge run that removed these many conversations and messages.
pub fn record_purge(conversations: u64, messages: u64) {
    PURGE_RUNS.fetch_add(1, Ordering::Relaxed);
    PURGED_CONVERSATIONS.fetch_add(conversations, Ordering::Relaxed);
    PURGED_MESSAGES.fetch_add(messages, Ordering::Relaxed);
}

/// One search and how long it took.
pub fn record_search(elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    for (bound, count) in SEARCH_BUCKETS.iter().zip(&SEARCH_BUCKET_COUNTS) {
        if seconds <= *bound {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
    SEARCH_COUNT.fetch_add(1, Ordering::Relaxed);
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    SEARCH_SUM_MICROS.fetch_add(micros, Ordering::Relaxed);
}

/// Gauges read at scrape time (from the database), passed in by the caller.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    /// Outbox rows waiting to be sent (queued or retry).
    pub outbox_queued: u64,
    /// Mailboxes by name with their current status (`ok`, `idle`, an error status…).
    pub mailbox_status: Vec<(String, String)>,
}

/// Escapes a label value (Prometheus text format: backslash, quote and newline).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every series in the Prometheus text exposition format.
pub fn render(gauges: &Gauges) -> String {
    let mut out = String::new();
    let counter = |out: &mut String, name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    counter(
        &mut out,
        "inboxd_messages_ingested_total",
        "Messages stored by ingest since start.",
        MESSAGES_INGESTED.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "inboxd_messages_duplicate_total",
        "Fetched messages skipped as already stored.",
        MESSAGES_DUPLICATE.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP inboxd_sync_errors_total Failed sync passes per mailbox.\n# TYPE inboxd_sync_errors_total counter"
    );
    let errors = SYNC_ERRORS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for (mailbox, count) in &errors {
        let _ = writeln!(
            out,
            "inboxd_sync_errors_total{{mailbox=\"{}\"}} {count}",
            label(mailbox)
        );
    }
    let _ = writeln!(
        out,
        "# HELP inboxd_mailbox_up Whether the mailbox's last sync succeeded (1) or failed (0).\n# TYPE inboxd_mailbox_up gauge"
    );
    for (mailbox, status) in &gauges.mailbox_status {
        let up = u8::from(status == "ok" || status == "idle");
        let _ = writeln!(
            out,
            "inboxd_mailbox_up{{mailbox=\"{}\"}} {up}",
            label(mailbox)
        );
    }
    let _ = writeln!(
        out,
        "# HELP inboxd_mailbox_needs_reauthorization Whether the provider refused the mailbox's OAuth refresh token (1): run `inboxd mailbox authorize NAME`.\n# TYPE inboxd_mailbox_needs_reauthorization gauge"
    );
    for (mailbox, status) in &gauges.mailbox_status {
        let refused = u8::from(status == "needs_reauthorization");
        let _ = writeln!(
            out,
            "inboxd_mailbox_needs_reauthorization{{mailbox=\"{}\"}} {refused}",
            label(mailbox)
        );
    }
    let _ = writeln!(
        out,
        "# HELP inboxd_oauth_refreshes_total OAuth access-token refreshes per mailbox and outcome.\n# TYPE inboxd_oauth_refreshes_total counter"
    );
    let refreshes = OAUTH_REFRESHES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for ((mailbox, outcome), count) in &refreshes {
        let _ = writeln!(
            out,
            "inboxd_oauth_refreshes_total{{mailbox=\"{}\",outcome=\"{}\"}} {count}",
            label(mailbox),
            label(outcome)
        );
    }
    let _ = writeln!(
        out,
        "# HELP inboxd_outbox_queued Replies waiting to be sent (queued or retrying).\n# TYPE inboxd_outbox_queued gauge\ninboxd_outbox_queued {}",
        gauges.outbox_queued
    );
    let _ = writeln!(
        out,
        "# HELP inboxd_search_duration_seconds Time to answer a search.\n# TYPE inboxd_search_duration_seconds histogram"
    );
    for (bound, count) in SEARCH_BUCKETS.iter().zip(&SEARCH_BUCKET_COUNTS) {
        let _ = writeln!(
            out,
            "inboxd_search_duration_seconds_bucket{{le=\"{bound}\"}} {}",
            count.load(Ordering::Relaxed)
        );
    }
    let total = SEARCH_COUNT.load(Ordering::Relaxed);
    let sum = SEARCH_SUM_MICROS.load(Ordering::Relaxed) as f64 / 1_000_000.0;
    let _ = writeln!(
        out,
        "inboxd_search_duration_seconds_bucket{{le=\"+Inf\"}} {total}\ninboxd_search_duration_seconds_sum {sum}\ninboxd_search_duration_seconds_count {total}"
    );
    counter(
        &mut out,
        "inboxd_purge_runs_total",
        "Finished retention purge runs.",
        PURGE_RUNS.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "inboxd_purged_conversations_total",
        "Conversations removed by retention purges.",
        PURGED_CONVERSATIONS.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "inboxd_purged_messages_total",
        "Messages removed by retention purges.",
        PURGED_MESSAGES.load(Ordering::Relaxed),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_every_series_and_cumulative_buckets() {
        record_search(Duration::from_millis(3));
        record_sync_error("quote\"d");
        record_purge(2, 5);
        record_oauth_refresh("gmail", "ok");
        let text = render(&Gauges {
            outbox_queued: 4,
            mailbox_status: vec![
                ("support".to_string(), "ok".to_string()),
                ("gmail".to_string(), "needs_reauthorization".to_string()),
            ],
        });
        for series in [
            "inboxd_messages_ingested_total ",
            "inboxd_outbox_queued 4",
            "inboxd_mailbox_up{mailbox=\"support\"} 1",
            "inboxd_sync_errors_total{mailbox=\"quote\\\"d\"}",
            "inboxd_search_duration_seconds_bucket{le=\"+Inf\"}",
            "inboxd_purged_messages_total ",
            "inboxd_mailbox_needs_reauthorization{mailbox=\"gmail\"} 1",
            "inboxd_mailbox_needs_reauthorization{mailbox=\"support\"} 0",
            "inboxd_oauth_refreshes_total{mailbox=\"gmail\",outcome=\"ok\"}",
        ] {
            assert!(text.contains(series), "{series} missing in\n{text}");
        }
        let bucket = |le: &str| -> u64 {
            text.lines()
                .find(|line| {
                    line.starts_with(&format!(
                        "inboxd_search_duration_seconds_bucket{{le=\"{le}\"}}"
                    ))
                })
                .and_then(|line| line.rsplit(' ').next())
                .and_then(|value| value.parse().ok())
                .unwrap_or(0)
        };
        assert!(bucket("0.005") >= 1 && bucket("1") >= bucket("0.005"));
        assert!(bucket("0.001") <= bucket("0.0025"));
    }
}
