//! Fixture tests: every `tests/fixtures/mime/x.eml` is parsed and checked against the fields
//! written in `x.json` (only the keys present are asserted; see SOURCES.md there for where each
//! message comes from). Also a robustness pass: truncated and corrupted variants of every fixture
//! must parse without panicking and keep their attachments extractable.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    Address, ParsedMessage, extract_part, inspect_json, parse_message, render_text, thread_keys,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mime");

fn fixture_messages() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .expect("fixture directory exists")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "eml"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 10,
        "expected the MIME fixtures in {FIXTURES}"
    );
    paths
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("fixture readable")
}

fn emails(list: &[Address]) -> Vec<String> {
    list.iter().filter_map(|a| a.email.clone()).collect()
}

fn names(list: &[Address]) -> Vec<String> {
    list.iter().filter_map(|a| a.name.clone()).collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn optional_string(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

#[test]
fn fixtures_match_their_expected_json() {
    for path in fixture_messages() {
        let expected_path = path.with_extension("json");
        let expected: Value =
            serde_json::from_slice(&read(&expected_path)).expect("expected json parses");
        let parsed = parse_message(&read(&path));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        check_identity(&name, &parsed, &expected);
        check_bodies(&name, &parsed, &expected);
        check_attachments(&name, &parsed, &expected);
        check_problems(&name, &parsed, &expected);
        check_threading_and_auto(&name, &parsed, &expected);
    }
}

fn check_identity(name: &str, parsed: &ParsedMessage, expected: &Value) {
    let fields: [(&str, Option<String>); 4] = [
        ("message_id", parsed.message_id.clone()),
        ("subject", parsed.subject.clone()),
        ("unparsed", parsed.unparsed.clone()),
        ("date", parsed.date.map(|d| d.to_rfc3339())),
    ];
    for (key, actual) in fields {
        if let Some(want) = expected.get(key) {
            assert_eq!(actual, optional_string(want), "{name}: {key}");
        }
    }
    let lists: [(&str, Vec<String>); 7] = [
        ("from", emails(&parsed.from)),
        ("from_names", names(&parsed.from)),
        ("to", emails(&parsed.to)),
        ("to_names", names(&parsed.to)),
        ("cc", emails(&parsed.cc)),
        ("in_reply_to", parsed.in_reply_to.clone()),
        ("references", parsed.references.clone()),
    ];
    for (key, actual) in lists {
        if let Some(want) = expected.get(key) {
            assert_eq!(actual, strings(want), "{name}: {key}");
        }
    }
    if let Some(count) = expected.get("header_count").and_then(Value::as_u64) {
        assert_eq!(parsed.headers.len() as u64, count, "{name}: header_count");
    }
}

fn check_bodies(name: &str, parsed: &ParsedMessage, expected: &Value) {
    if let Some(want) = expected.get("text_equals").and_then(Value::as_str) {
        assert_eq!(parsed.text_body, want, "{name}: text_equals");
    }
    for needle in strings(expected.get("text_contains").unwrap_or(&Value::Null)) {
        assert!(
            parsed.text_body.contains(&needle),
            "{name}: text lacks {needle:?}:\n{}",
            parsed.text_body
        );
    }
    for needle in strings(expected.get("text_not_contains").unwrap_or(&Value::Null)) {
        assert!(
            !parsed.text_body.contains(&needle),
            "{name}: text has {needle:?}"
        );
    }
    if let Some(want) = expected.get("html_body").and_then(Value::as_bool) {
        assert_eq!(
            parsed.html_body.is_some(),
            want,
            "{name}: html_body presence"
        );
    }
    for needle in strings(expected.get("html_contains").unwrap_or(&Value::Null)) {
        let html = parsed.html_body.as_deref().unwrap_or_default();
        assert!(html.contains(&needle), "{name}: html lacks {needle:?}");
    }
}

fn check_attachments(name: &str, parsed: &ParsedMessage, expected: &Value) {
    if let Some(want) = expected.get("attachments").and_then(Value::as_array) {
        assert_eq!(
            parsed.attachments.len(),
            want.len(),
            "{name}: attachment count {:?}",
            parsed.attachments
        );
        for (actual, want) in parsed.attachments.iter().zip(want) {
            let actual_json = serde_json::to_value(actual).expect("attachment serializes");
            for key in [
                "filename",
                "content_type",
                "size",
                "sha256",
                "inline",
                "is_message",
            ] {
                if let Some(want_value) = want.get(key) {
                    assert_eq!(
                        &actual_json[key], want_value,
                        "{name}: attachment {} {key}",
                        actual.part_index
                    );
                }
            }
        }
    }
    if let Some(want) = expected.get("nested").and_then(Value::as_array) {
        assert_eq!(parsed.nested.len(), want.len(), "{name}: nested count");
        for (actual, want) in parsed.nested.iter().zip(want) {
            assert_eq!(
                actual.subject,
                optional_string(&want["subject"]),
                "{name}: nested subject"
            );
            assert_eq!(
                actual.message_id,
                optional_string(&want["message_id"]),
                "{name}: nested message_id"
            );
            assert_eq!(
                emails(&actual.from),
                strings(&want["from"]),
                "{name}: nested from"
            );
        }
    }
}

fn check_problems(name: &str, parsed: &ParsedMessage, expected: &Value) {
    for needle in strings(expected.get("problems_include").unwrap_or(&Value::Null)) {
        assert!(
            parsed.problems.iter().any(|p| p.contains(&needle)),
            "{name}: no problem {needle:?} in {:?}",
            parsed.problems
        );
    }
    for needle in strings(expected.get("problems_exclude").unwrap_or(&Value::Null)) {
        assert!(
            !parsed.problems.iter().any(|p| p.contains(&needle)),
            "{name}: unexpected {needle:?} in {:?}",
            parsed.problems
        );
    }
    if let Some(count) = expected.get("problem_count").and_then(Value::as_u64) {
        assert_eq!(
            parsed.problems.len() as u64,
            count,
            "{name}: problems {:?}",
            parsed.problems
        );
    }
}

fn check_threading_and_auto(name: &str, parsed: &ParsedMessage, expected: &Value) {
    let keys = thread_keys(parsed);
    if let Some(want) = expected.get("parent_ids") {
        assert_eq!(keys.parent_ids, strings(want), "{name}: parent_ids");
    }
    if let Some(want) = expected.get("participants") {
        assert_eq!(keys.participants, strings(want), "{name}: participants");
    }
    if let Some(want) = expected.get("normalized_subject").and_then(Value::as_str) {
        assert_eq!(keys.normalized_subject, want, "{name}: normalized_subject");
    }
    if let Some(want) = expected.get("auto").and_then(Value::as_object) {
        let actual = serde_json::to_value(&parsed.auto).expect("auto serializes");
        for (key, want_value) in want {
            assert_eq!(&actual[key], want_value, "{name}: auto.{key}");
        }
    }
}

#[test]
fn every_fixture_renders_and_extracts_consistently() {
    for path in fixture_messages() {
        let raw = read(&path);
        let parsed = parse_message(&raw);
        assert_eq!(parsed.size, raw.len() as u64);
        let report = render_text(&parsed);
        assert!(
            report.contains(&format!("size:        {} bytes", raw.len())),
            "{}",
            path.display()
        );
        let json = inspect_json(&parsed);
        assert_eq!(json["message"]["size"], raw.len() as u64);
        for attachment in &parsed.attachments {
            let bytes =
                extract_part(&raw, attachment.part_index).expect("listed attachment extracts");
            assert_eq!(
                bytes.len() as u64,
                attachment.size,
                "{} part {}",
                path.display(),
                attachment.part_index
            );
        }
    }
}

/// Deterministic xorshift, so a failure reproduces.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound.max(1) as u64) as usize
    }
}

#[test]
fn corrupted_fixtures_never_panic() {
    let mut rng = Xorshift(0x2545_f491_4f6c_dd1d);
    let corrupting_bytes = [
        b'\n', b'\r', b'-', b'=', b'<', b'>', b':', b'"', b';', 0xff, 0x00,
    ];
    for path in fixture_messages() {
        let raw = read(&path);
        for round in 0..40 {
            let mut data = raw.clone();
            if round % 2 == 0 {
                data.truncate(rng.below(raw.len() + 1));
            } else {
                for _ in 0..1 + rng.below(16) {
                    let at = rng.below(data.len());
                    if let (Some(byte), Some(&new)) = (
                        data.get_mut(at),
                        corrupting_bytes.get(rng.below(corrupting_bytes.len())),
                    ) {
                        *byte = new;
                    }
                }
            }
            let started = Instant::now();
            let parsed = parse_message(&data);
            let _ = thread_keys(&parsed);
            let _ = render_text(&parsed);
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{} round {round} slow",
                path.display()
            );
            for attachment in &parsed.attachments {
                assert!(
                    extract_part(&data, attachment.part_index).is_some(),
                    "{} round {round}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn hostile_structures_stay_fast() {
    let deep_multipart: String = (0..2000)
        .map(|i| format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"))
        .collect();
    let many_parts: String = (0..20_000)
        .map(|_| "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n")
        .collect();
    let cases = [
        format!("From: a@x.org\r\n{deep_multipart}body"),
        format!(
            "From: a@x.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n{many_parts}--b--\r\n"
        ),
        format!(
            "From: a@x.org\r\nContent-Type: text/html\r\n\r\n{}",
            "<div><script>".repeat(50_000)
        ),
        format!(
            "From: a@x.org\r\nReferences: {}\r\n\r\nx",
            "<a@b> ".repeat(50_000)
        ),
        format!("{}: v\r\n\r\nx", "X".repeat(100_000)),
    ];
    for case in &cases {
        let started = Instant::now();
        let parsed = parse_message(case.as_bytes());
        let _ = render_text(&parsed);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "slow on {:?}",
            case.get(..60)
        );
    }
}
