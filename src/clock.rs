//! The one place that reads the wall clock, so tests and tools agree on time.
use chrono::{DateTime, Utc};

/// The current time, truncated to microseconds so it round-trips through every database backend.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    let micros = now.timestamp_micros();
    DateTime::from_timestamp_micros(micros).unwrap_or(now)
}
