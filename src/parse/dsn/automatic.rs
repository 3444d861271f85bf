//! Reports that are not about delivery: ARF feedback reports (RFC 5965) and
//! automatic replies such as out-of-office notices (RFC 3834).

use mail_parser::Message;

use super::fields::{field_values, mta_name, normalize_recipient};
use super::parts::{Original, address_list, bodies_of_type, header_text, report_type};
use super::{Action, DeliveryReport, RecipientReport, ReportKind};

/// Recognises an RFC 5965 feedback report: a `message/feedback-report` part, or a
/// `multipart/report; report-type=feedback-report` whose part is mislabelled.
pub(super) fn feedback_report(
    message: &Message<'_>,
    original: &Original,
) -> Option<DeliveryReport> {
    let bodies = bodies_of_type(message, "message", &["feedback-report"]);
    if bodies.is_empty() && report_type(message).as_deref() != Some("feedback-report") {
        return None;
    }
    let fields: Vec<(String, String)> = bodies.iter().flat_map(|body| field_values(body)).collect();
    let value = |name: &str| {
        fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.clone())
    };
    let recipient = value("original-rcpt-to")
        .and_then(|rcpt| normalize_recipient(&rcpt))
        .or_else(|| original.recipients.first().cloned());
    Some(DeliveryReport {
        kind: ReportKind::FeedbackReport,
        is_bounce: false,
        reporting_mta: value("reporting-mta").map(|mta| mta_name(&mta).to_owned()),
        envelope_id: value("original-envelope-id"),
        original_message_id: original.message_id.clone(),
        original_envelope_from: original.envelope_from.clone(),
        recipients: vec![RecipientReport {
            recipient,
            action: Action::Unknown,
            status: None,
            diagnostic: value("feedback-type"),
            remote_mta: None,
        }],
    })
}

/// Subject prefixes of automatic replies in the languages we see most.
const AUTO_REPLY_SUBJECTS: [&str; 16] = [
    "auto:",
    "auto reply",
    "auto-reply",
    "autoreply",
    "automatic reply",
    "auto response",
    "auto-response",
    "autoresponse",
    "out of office",
    "out of the office",
    "abwesenheitsnotiz",
    "automatische antwort",
    "réponse automatique",
    "respuesta automática",
    "risposta automatica",
    "vacation reply",
];

/// Recognises an automatic reply by its RFC 3834 `Auto-Submitted: auto-replied` field,
/// the vendor fields vacation responders add, or its subject.
pub(super) fn auto_reply(message: &Message<'_>) -> Option<DeliveryReport> {
    let header = |name: &str| header_text(message, name).map(|v| v.to_ascii_lowercase());
    let auto_submitted = header("Auto-Submitted").is_some_and(|v| v.starts_with("auto-replied"));
    let vendor_field = [
        "X-Autoreply",
        "X-Autorespond",
        "X-Autoresponder",
        "X-Vacation",
    ]
    .iter()
    .any(|name| header(name).is_some())
        || header("X-Apple-Action").is_some_and(|v| v.contains("vacation"))
        || header("Precedence").is_some_and(|v| v.contains("auto_reply"));
    let subject = message.subject().unwrap_or_default().trim().to_lowercase();
    let by_subject = AUTO_REPLY_SUBJECTS
        .iter()
        .any(|prefix| subject.starts_with(prefix));
    if !(auto_submitted || vendor_field || by_subject) {
        return None;
    }
    let recipient = address_list(message.from()).into_iter().next();
    Some(DeliveryReport {
        kind: ReportKind::AutoReply,
        is_bounce: false,
        reporting_mta: None,
        envelope_id: None,
        original_message_id: None,
        original_envelope_from: None,
        recipients: vec![RecipientReport {
            recipient,
            action: Action::Unknown,
            status: None,
            diagnostic: None,
            remote_mta: None,
        }],
    })
}
