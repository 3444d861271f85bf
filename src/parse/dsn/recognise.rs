//! The three recognisers for delivery failures: RFC 3464 fields, SES notifications
//! and prose-only bounces. Each returns `None` when the message is not its kind.

use mail_parser::Message;

use super::parts::{self, Original};
use super::{Action, DeliveryReport, RecipientReport, ReportKind, fields, ses, text};

/// A parsed message with what every recogniser reads.
pub(super) struct Mail<'m> {
    /// The parsed message.
    pub message: &'m Message<'m>,
    /// Human-readable text parts (see [`parts::report_texts`]).
    pub texts: Vec<String>,
    /// The texts without the returned message, capped at [`text::MAX_PROSE`].
    pub prose: String,
    /// What the returned original message tells us.
    pub original: Original,
}

impl<'m> Mail<'m> {
    /// Gathers the texts, prose and original-message identity of `message`.
    pub(super) fn new(message: &'m Message<'m>) -> Self {
        let texts = parts::report_texts(message);
        let original = parts::find_original(message, &texts);
        let joined = texts
            .iter()
            .map(|t| text::cut_before_original(t))
            .collect::<Vec<_>>()
            .join("\n");
        let prose = text::truncate(&joined, text::MAX_PROSE);
        Mail {
            message,
            texts,
            prose,
            original,
        }
    }
}

/// RFC 3464: fields from `message/delivery-status` parts, or the same fields written
/// into the text of a report whose MIME structure is broken or flattened.
pub(super) fn standard_report(mail: &Mail<'_>) -> Option<DeliveryReport> {
    let Mail {
        message,
        texts,
        original,
        ..
    } = mail;
    let status_parts = parts::bodies_of_type(
        message,
        "message",
        &["delivery-status", "global-delivery-status"],
    );
    let from_parts = status_parts
        .iter()
        .map(|body| fields::parse_status_fields(body));
    let mut found = from_parts
        .filter(|f| !f.recipients.is_empty())
        .collect::<Vec<_>>();
    let mut kind = ReportKind::Dsn;
    if found.is_empty() {
        let embedded: Vec<&String> = texts
            .iter()
            .filter(|text| has_embedded_status_fields(text))
            .collect();
        if embedded.is_empty() {
            return None;
        }
        // Fields pasted into a person's mail are not a report: outside a
        // multipart/report they count only next to another bounce signal.
        let declared = parts::report_type(message).as_deref() == Some("delivery-status");
        if !declared && bounce_evidence(message, &mail.prose).message_score() == 0 {
            return None;
        }
        found = embedded
            .into_iter()
            .map(|text| fields::parse_status_fields(text))
            .filter(|f| !f.recipients.is_empty())
            .collect();
        if !declared {
            kind = ReportKind::NonStandard;
        }
    }
    let first = found.first()?;
    let reporting_mta = first.reporting_mta.clone();
    let envelope_id = first.envelope_id.clone();
    let mut recipients: Vec<RecipientReport> =
        found.into_iter().flat_map(|f| f.recipients).collect();
    repair_recipients(&mut recipients, mail);
    Some(finish(
        kind,
        reporting_mta,
        envelope_id,
        original,
        recipients,
    ))
}

/// Exim writes a mailbox file path and Sendmail a bare source route (`@mx.example`) in
/// `Final-Recipient` for some failures; the prose part still names the address.
fn repair_recipients(recipients: &mut [RecipientReport], mail: &Mail<'_>) {
    if recipients
        .iter()
        .all(|r| r.recipient.as_deref().is_some_and(is_address))
    {
        return;
    }
    let in_prose = text::recipients_from_text(
        &mail.prose,
        &known_senders(mail.message, &mail.original),
        Action::Unknown,
    );
    let count = recipients.len();
    for (index, recipient) in recipients.iter_mut().enumerate() {
        if recipient.recipient.as_deref().is_some_and(is_address) {
            continue;
        }
        let from_prose = if count == 1 {
            in_prose.first()
        } else {
            in_prose.get(index)
        };
        if let Some(address) = from_prose.and_then(|r| r.recipient.clone()) {
            recipient.recipient = Some(address);
        }
    }
}

/// True when prose carries RFC 3464 recipient fields at line starts.
fn has_embedded_status_fields(text: &str) -> bool {
    let starts = |line: &str, name: &str| {
        line.get(..name.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(name))
    };
    let (mut recipient, mut outcome) = (false, false);
    for line in text.lines() {
        recipient |= starts(line, "final-recipient:") || starts(line, "original-recipient:");
        outcome |= starts(line, "action:") || starts(line, "status:");
        if recipient && outcome {
            return true;
        }
    }
    false
}

/// Amazon SES bounce, delivery and complaint notifications sent by mail.
pub(super) fn ses_report(mail: &Mail<'_>) -> Option<DeliveryReport> {
    let notification = mail.texts.iter().find_map(|text| ses::parse(text))?;
    if notification.recipients.is_empty() {
        return None;
    }
    Some(finish(
        notification.kind,
        notification.reporting_mta,
        None,
        &mail.original,
        notification.recipients,
    ))
}

/// Non-standard bounces: recipients, codes and the failed/delayed verdict from prose.
pub(super) fn text_report(mail: &Mail<'_>) -> Option<DeliveryReport> {
    let Mail {
        message,
        original,
        prose: report,
        ..
    } = mail;
    let mut evidence = bounce_evidence(message, report);
    if evidence.message_score() == 0 {
        return None;
    }
    let action = text::text_action(report, evidence.subject);
    let failed_header = parts::header_text(message, "X-Failed-Recipients");
    let mut recipients =
        text::recipients_from_text(report, &known_senders(message, original), action);
    if recipients.is_empty()
        && let Some(header) = failed_header.as_deref()
    {
        recipients = header
            .split(',')
            .filter_map(fields::normalize_recipient)
            .filter(|address| is_address(address))
            .map(|address| text_recipient(address, action))
            .collect();
    }
    if recipients.is_empty() {
        // Mail to oneself bounces to the failed address itself (mailbox full, loops):
        // then only the reporting daemon is certainly not the recipient.
        let daemon = parts::address_list(message.from());
        recipients = text::recipients_from_text(report, &daemon, action);
    }
    evidence.returned_to_recipient = recipients
        .first()
        .and_then(|r| r.recipient.as_ref())
        .is_some_and(|r| original.recipients.contains(r));
    if recipients.is_empty() || !evidence.is_bounce() {
        return None;
    }
    Some(finish(
        ReportKind::NonStandard,
        None,
        None,
        original,
        recipients,
    ))
}

/// The header and prose signals of a possible bounce.
fn bounce_evidence<'a>(message: &'a Message<'_>, report: &'a str) -> text::BounceEvidence<'a> {
    let from = message.from().and_then(|from| from.first());
    let null_sender = parts::header_text(message, "Return-Path").is_some_and(|path| path == "<>")
        || (parts::header_text(message, "From").is_some()
            && from.and_then(|a| a.address.as_deref()).is_none());
    text::BounceEvidence {
        null_sender,
        from_address: from.and_then(|addr| addr.address.as_deref()),
        from_name: from.and_then(|addr| addr.name.as_deref()),
        subject: message.subject().unwrap_or_default(),
        report,
        has_failed_recipients_header: parts::header_text(message, "X-Failed-Recipients").is_some(),
        returned_to_recipient: false,
    }
}

/// Addresses that are normally not the failed recipient: the original's author and
/// the bounce's own From/To/Cc/Reply-To/Sender.
fn known_senders(message: &Message<'_>, original: &Original) -> Vec<String> {
    let mut known = original.senders.clone();
    for addresses in [
        message.from(),
        message.to(),
        message.cc(),
        message.reply_to(),
        message.sender(),
    ] {
        known.extend(parts::address_list(addresses));
    }
    known
}

/// `local@domain` with both sides present (not a file path or a bare source route).
fn is_address(address: &str) -> bool {
    address
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
}

fn text_recipient(address: String, action: Action) -> RecipientReport {
    RecipientReport {
        recipient: Some(address),
        action,
        status: None,
        diagnostic: None,
        remote_mta: None,
    }
}

fn finish(
    kind: ReportKind,
    reporting_mta: Option<String>,
    envelope_id: Option<String>,
    original: &Original,
    recipients: Vec<RecipientReport>,
) -> DeliveryReport {
    let is_bounce = recipients
        .iter()
        .any(|r| matches!(r.action, Action::Failed | Action::Delayed));
    DeliveryReport {
        kind,
        is_bounce,
        reporting_mta,
        envelope_id,
        original_message_id: original.message_id.clone(),
        original_envelope_from: original.envelope_from.clone(),
        recipients,
    }
}
