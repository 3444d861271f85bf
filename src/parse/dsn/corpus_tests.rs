//! Agreement with labelled real-world bounces (tests/fixtures/bounces: sisimai and
//! flanker samples, see SOURCES.md there) and a no-panic sweep over the whole corpus.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Action, DeliveryReport, ReportKind, delivery_report};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bounces");

/// Counts of label agreements over one set of messages.
#[derive(Debug, Default)]
struct Agreement {
    bounces: usize,
    recipient: usize,
    action: usize,
    status: usize,
    message_id: usize,
    recipient_lists: usize,
    labelled: usize,
    kind: usize,
    is_bounce: usize,
    mismatches: Vec<String>,
}

fn kind_label(report: Option<&DeliveryReport>) -> &'static str {
    match report.map(|r| r.kind) {
        Some(ReportKind::Dsn | ReportKind::NonStandard) => "dsn",
        Some(ReportKind::FeedbackReport) => "feedback-report",
        Some(ReportKind::AutoReply) => "auto-reply",
        None => "not-bounce",
    }
}

fn action_label(action: Action) -> &'static str {
    match action {
        Action::Failed => "failed",
        Action::Delayed => "delayed",
        Action::Delivered => "delivered",
        Action::Relayed => "relayed",
        Action::Expanded => "expanded",
        Action::Unknown => "unknown",
    }
}

fn status_matches(label: &Value, ours: Option<&str>) -> bool {
    let mut accepted: Vec<&str> = label["acceptable_statuses"]
        .as_array()
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    accepted.extend(label["status"].as_str());
    match ours {
        Some(ours) => accepted.contains(&ours),
        None => accepted.is_empty(),
    }
}

fn check(agreement: &mut Agreement, name: &str, label: &Value, report: Option<&DeliveryReport>) {
    agreement.labelled += 1;
    let label_kind = label["kind"].as_str().unwrap_or_default();
    let mut wrong = Vec::new();
    if kind_label(report) == label_kind {
        agreement.kind += 1;
    } else {
        wrong.push(format!("kind {}", kind_label(report)));
    }
    let is_bounce = report.is_some_and(|r| r.is_bounce);
    if Some(is_bounce) == label["is_bounce"].as_bool() {
        agreement.is_bounce += 1;
    } else {
        wrong.push(format!("is_bounce {is_bounce}"));
    }
    if label_kind != "dsn" {
        record(agreement, name, wrong);
        return;
    }
    agreement.bounces += 1;
    let first = report.and_then(|r| r.recipients.first());
    let recipient = first.and_then(|r| r.recipient.as_deref());
    if recipient == label["recipient"].as_str() {
        agreement.recipient += 1;
    } else {
        wrong.push(format!(
            "recipient {recipient:?} want {}",
            label["recipient"]
        ));
    }
    let action = first.map(|r| action_label(r.action));
    if action == label["action"].as_str() {
        agreement.action += 1;
    } else {
        wrong.push(format!("action {action:?} want {}", label["action"]));
    }
    let status = first.and_then(|r| r.status.as_deref());
    if status_matches(label, status) {
        agreement.status += 1;
    } else {
        wrong.push(format!(
            "status {status:?} want {} {}",
            label["status"], label["acceptable_statuses"]
        ));
    }
    let ours: Vec<Option<&str>> = report
        .map(|r| {
            r.recipients
                .iter()
                .map(|r| r.recipient.as_deref())
                .collect()
        })
        .unwrap_or_default();
    let labelled: Vec<Option<&str>> = label["recipients"]
        .as_array()
        .map(|list| list.iter().map(|r| r["recipient"].as_str()).collect())
        .unwrap_or_default();
    if ours == labelled {
        agreement.recipient_lists += 1;
    } else {
        wrong.push(format!("recipient list {ours:?} want {labelled:?}"));
    }
    let message_id = report.and_then(|r| r.original_message_id.as_deref());
    if message_id == label["original_message_id"].as_str() {
        agreement.message_id += 1;
    } else {
        wrong.push(format!(
            "message-id {message_id:?} want {}",
            label["original_message_id"]
        ));
    }
    record(agreement, name, wrong);
}

fn record(agreement: &mut Agreement, name: &str, wrong: Vec<String>) {
    if !wrong.is_empty() {
        agreement
            .mismatches
            .push(format!("{name}: {}", wrong.join("; ")));
    }
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        100.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[test]
fn labelled_bounces_meet_quality_targets() {
    let mut agreement = Agreement::default();
    for source in ["sisimai", "flanker"] {
        let labels_path = Path::new(FIXTURES).join(format!("bounces-{source}.json"));
        let labels_text =
            std::fs::read_to_string(&labels_path).expect("label file is in the fixtures");
        let labels: Value = serde_json::from_str(&labels_text).expect("label file is valid json");
        let messages = labels["messages"]
            .as_object()
            .expect("labels have a messages map");
        for (name, label) in messages {
            let raw = std::fs::read(Path::new(FIXTURES).join(source).join(name))
                .expect("labelled file exists");
            let report = delivery_report(&raw);
            check(
                &mut agreement,
                &format!("{source}/{name}"),
                label,
                report.as_ref(),
            );
        }
    }
    for line in &agreement.mismatches {
        println!("mismatch {line}");
    }
    let bounces = agreement.bounces;
    let figures = [
        ("recipient", percent(agreement.recipient, bounces)),
        ("action", percent(agreement.action, bounces)),
        ("status", percent(agreement.status, bounces)),
        (
            "original message-id",
            percent(agreement.message_id, bounces),
        ),
        (
            "whole recipient list",
            percent(agreement.recipient_lists, bounces),
        ),
        (
            "kind (all labelled)",
            percent(agreement.kind, agreement.labelled),
        ),
        (
            "is_bounce (all labelled)",
            percent(agreement.is_bounce, agreement.labelled),
        ),
    ];
    println!(
        "{bounces} dsn-labelled of {} labelled messages",
        agreement.labelled
    );
    for (what, value) in figures {
        println!("{what}: {value:.1}%");
    }
    assert!(
        figures[0].1 >= 95.0,
        "recipient agreement {:.1}% below 95%",
        figures[0].1
    );
    assert!(
        figures[1].1 >= 95.0,
        "action agreement {:.1}% below 95%",
        figures[1].1
    );
    assert!(
        figures[2].1 >= 90.0,
        "status agreement {:.1}% below 90%",
        figures[2].1
    );
    assert!(
        figures[5].1 >= 95.0,
        "kind agreement {:.1}% below 95%",
        figures[5].1
    );
}

fn files_under(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, found);
        } else {
            found.push(path);
        }
    }
}

/// Every corpus file, MIME torture tests included, goes through without a panic; mail
/// that is not a report (the mime/ and threads/ folders) must almost never be taken for one.
/// The shared corpus lives outside the repository; set INBOXD_CORPUS to move it.
#[test]
fn whole_corpus_never_panics_and_ordinary_mail_is_not_a_report() {
    let root = std::env::var("INBOXD_CORPUS").unwrap_or_else(|_| "/work/shared/corpus".to_owned());
    let mut files = Vec::new();
    files_under(Path::new(&root), &mut files);
    if files.is_empty() {
        println!("corpus {root} not found, sweeping the bounce fixtures only");
        files_under(Path::new(FIXTURES), &mut files);
    }
    let mut ordinary = 0;
    let mut ordinary_reports = Vec::new();
    let mut reports = 0;
    for path in &files {
        let raw = std::fs::read(path).expect("corpus file is readable");
        let report = delivery_report(&raw);
        reports += usize::from(report.is_some());
        let text = path.to_string_lossy();
        if text.contains("/mime/") || text.contains("/threads/") {
            ordinary += 1;
            if let Some(report) = report {
                ordinary_reports.push(format!("{text}: {:?}", report.kind));
            }
        }
    }
    println!("{} files, {reports} classified as reports", files.len());
    println!(
        "{} of {ordinary} mime/threads files classified as reports",
        ordinary_reports.len()
    );
    for line in &ordinary_reports {
        println!("ordinary mail taken for a report: {line}");
    }
    assert!(
        ordinary_reports.len() * 50 <= ordinary,
        "too many ordinary mails taken for reports"
    );
}

/// Truncated and byte-flipped copies of every labelled fixture go through without a panic.
#[test]
fn damaged_fixtures_never_panic() {
    let mut files = Vec::new();
    files_under(Path::new(FIXTURES), &mut files);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut runs = 0;
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
    {
        let raw = std::fs::read(path).expect("fixture is readable");
        for _ in 0..6 {
            let cut = usize::try_from(next()).unwrap_or_default() % (raw.len() + 1);
            let _ = delivery_report(raw.get(..cut).unwrap_or_default());
            let mut flipped = raw.clone();
            for _ in 0..8 {
                if let Some(byte) =
                    flipped.get_mut(usize::try_from(next()).unwrap_or_default() % raw.len().max(1))
                {
                    *byte = u8::try_from(next() % 256).unwrap_or(b'@');
                }
            }
            let _ = delivery_report(&flipped);
            runs += 2;
        }
    }
    assert!(runs >= 2000, "only {runs} damaged inputs were tried");
}
