//! The delivery-report parser (DSN, RFC 3464; ARF; vendor bounces; auto-replies) on raw bytes.
//! Oracle: never panics, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(report) = inboxd::parse::dsn::delivery_report(data) {
        let _ = format!("{report:?}");
    }
});
