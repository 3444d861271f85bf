//! The config loader on arbitrary TOML text. Oracle: never panics; an error names a key or the syntax.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(error) = inboxd::config::Config::from_toml(&text, None) {
        assert!(!error.to_string().is_empty());
    }
});
