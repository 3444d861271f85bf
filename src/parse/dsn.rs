//! Delivery-report recogniser: tells bounces (RFC 3464 DSNs and the many non-standard
//! text bounces), ARF feedback reports (RFC 5965) and automatic replies (RFC 3834)
//! apart from ordinary mail, and extracts per-recipient results.
//!
//! Pure: bytes in, values out. Nothing here logs, because reports carry addresses.

use mail_parser::MessageParser;
use serde::Serialize;

mod automatic;
mod fields;
mod parts;
mod recognise;
mod ses;
mod text;

/// What kind of report a message is.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ReportKind {
    /// RFC 3464 delivery status notification (`message/delivery-status` fields).
    Dsn,
    /// Bounce explained only in prose (qmail, Exim, Gmail, Yahoo...) or SES JSON.
    NonStandard,
    /// RFC 5965 Abuse Reporting Format feedback report (spam complaint).
    FeedbackReport,
    /// RFC 3834 automatic reply (out of office, vacation).
    AutoReply,
}

/// Per-recipient outcome, as in the RFC 3464 `Action:` field (section 2.3.3).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Delivery failed for good.
    Failed,
    /// Delivery is late; the MTA keeps trying.
    Delayed,
    /// Delivered to the recipient's mailbox.
    Delivered,
    /// Handed to a system that does not send reports.
    Relayed,
    /// Delivered and forwarded to further addresses (mailing list, alias).
    Expanded,
    /// No action stated (feedback reports, auto-replies, unknown values).
    Unknown,
}

/// A recognised report about a message we sent.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Which family of report this is.
    pub kind: ReportKind,
    /// True when some recipient failed or was delayed; false for delivered-only DSNs,
    /// feedback reports and auto-replies.
    pub is_bounce: bool,
    /// `Reporting-MTA` without its `dns;` type.
    pub reporting_mta: Option<String>,
    /// `Original-Envelope-Id`: the ENVID we gave at MAIL FROM (RFC 3461).
    pub envelope_id: Option<String>,
    /// Message-ID of the returned original message, with angle brackets.
    pub original_message_id: Option<String>,
    /// Return-Path of the returned original message, for VERP matching.
    pub original_envelope_from: Option<String>,
    /// One entry per recipient the report is about, in report order.
    pub recipients: Vec<RecipientReport>,
}

/// The outcome for one recipient.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecipientReport {
    /// Bare lowercase address (`Final-Recipient` without `rfc822;`).
    pub recipient: Option<String>,
    /// What happened to the message for this recipient.
    pub action: Action,
    /// RFC 3463 enhanced status code such as `5.1.1`.
    pub status: Option<String>,
    /// Diagnostic text, usually the remote SMTP reply.
    pub diagnostic: Option<String>,
    /// `Remote-MTA` without its `dns;` type.
    pub remote_mta: Option<String>,
}

/// Recognises a delivery report in a raw RFC 5322 message. Returns `None` for ordinary
/// mail. Never panics, whatever the input.
pub fn delivery_report(raw: &[u8]) -> Option<DeliveryReport> {
    let message = MessageParser::default().parse(raw)?;
    if message.parts.is_empty() {
        return None;
    }
    let mail = recognise::Mail::new(&message);
    // Most specific first: machine-readable parts, then SES JSON, then prose. Bounces
    // also carry `Auto-Submitted: auto-replied` (Exim), so auto-replies come last.
    automatic::feedback_report(&message, &mail.original)
        .or_else(|| recognise::standard_report(&mail))
        .or_else(|| recognise::ses_report(&mail))
        .or_else(|| recognise::text_report(&mail))
        .or_else(|| automatic::auto_reply(&message))
}

#[cfg(test)]
mod corpus_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// A Postfix-style RFC 3464 report with two recipients and the returned message.
    const POSTFIX_DSN: &str = "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r
To: sender@example.com\r
Subject: Undelivered Mail Returned to Sender\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B1\"\r
\r
--B1\r
Content-Type: text/plain\r
\r
I'm sorry to have to inform you that your message could not be delivered.\r
\r
--B1\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; mx.example.org\r
Original-Envelope-Id: ENV-42\r
\r
Final-Recipient: rfc822; <Gone@Example.NET>\r
Original-Recipient: rfc822;gone@example.net\r
Action: failed\r
Status: 5.0.0\r
Remote-MTA: dns; mx.example.net\r
Diagnostic-Code: smtp; 550 5.7.1 <gone@example.net>: Relay access denied\r
\r
Final-Recipient: rfc822; slow@example.net\r
Action: delayed\r
Status: 4.4.1\r
\r
--B1\r
Content-Type: message/rfc822\r
\r
Return-Path: <bounce+abc=example.net@example.com>\r
From: sender@example.com\r
To: gone@example.net, slow@example.net\r
Message-ID: <orig-1@example.com>\r
Subject: hello\r
\r
hello\r
--B1--\r
";

    #[test]
    fn rfc3464_report_gives_every_recipient_and_the_original() {
        let report = delivery_report(POSTFIX_DSN.as_bytes()).expect("dsn is recognised");
        assert_eq!(report.kind, ReportKind::Dsn);
        assert!(report.is_bounce);
        assert_eq!(report.reporting_mta.as_deref(), Some("mx.example.org"));
        assert_eq!(report.envelope_id.as_deref(), Some("ENV-42"));
        assert_eq!(
            report.original_message_id.as_deref(),
            Some("<orig-1@example.com>")
        );
        assert_eq!(
            report.original_envelope_from.as_deref(),
            Some("bounce+abc=example.net@example.com")
        );
        let first = &report.recipients[0];
        assert_eq!(first.recipient.as_deref(), Some("gone@example.net"));
        assert_eq!(first.action, Action::Failed);
        // Generic 5.0.0 refined from the remote reply in the diagnostic.
        assert_eq!(first.status.as_deref(), Some("5.7.1"));
        assert_eq!(
            first.diagnostic.as_deref(),
            Some("550 5.7.1 <gone@example.net>: Relay access denied")
        );
        assert_eq!(first.remote_mta.as_deref(), Some("mx.example.net"));
        let second = &report.recipients[1];
        assert_eq!(
            (second.recipient.as_deref(), second.action),
            (Some("slow@example.net"), Action::Delayed)
        );
        assert_eq!(second.status.as_deref(), Some("4.4.1"));
    }

    #[test]
    fn delivered_only_report_is_not_a_bounce() {
        let raw = POSTFIX_DSN
            .replace("Action: failed", "Action: delivered")
            .replace("Action: delayed", "Action: relayed");
        let report = delivery_report(raw.as_bytes()).expect("dsn is recognised");
        assert_eq!(report.kind, ReportKind::Dsn);
        assert!(!report.is_bounce);
        assert_eq!(report.recipients[0].action, Action::Delivered);
    }

    const QMAIL_BOUNCE: &str = "From: MAILER-DAEMON@mail.example.org\n\
To: sender@example.com\n\
Subject: failure notice\n\
\n\
Hi. This is the qmail-send program at mail.example.org.\n\
I'm afraid I wasn't able to deliver your message to the following addresses.\n\
This is a permanent error; I've given up. Sorry it didn't work out.\n\
\n\
<nobody@example.net>:\n\
Sorry, no mailbox here by that name. (#5.1.1)\n\
\n\
--- Below this line is a copy of the message.\n\
\n\
Return-Path: <sender@example.com>\n\
Message-ID: <q-1@example.com>\n\
From: sender@example.com\n\
To: nobody@example.net\n\
\n\
hi\n";

    #[test]
    fn qmail_text_bounce_is_read_from_prose() {
        let report = delivery_report(QMAIL_BOUNCE.as_bytes()).expect("qmail bounce is recognised");
        assert_eq!(report.kind, ReportKind::NonStandard);
        assert!(report.is_bounce);
        assert_eq!(report.recipients.len(), 1);
        let recipient = &report.recipients[0];
        assert_eq!(recipient.recipient.as_deref(), Some("nobody@example.net"));
        assert_eq!(recipient.action, Action::Failed);
        assert_eq!(recipient.status.as_deref(), Some("5.1.1"));
        assert_eq!(
            report.original_message_id.as_deref(),
            Some("<q-1@example.com>")
        );
        assert_eq!(
            report.original_envelope_from.as_deref(),
            Some("sender@example.com")
        );
    }

    #[test]
    fn postfix_text_bounce_without_dsn_part() {
        let raw = "From: MAILER-DAEMON@mail.example.org (Mail Delivery System)\n\
Subject: Undelivered Mail Returned to Sender\n\
To: sender@example.com\n\
\n\
This is the mail system at host mail.example.org.\n\
\n\
I'm sorry to have to inform you that your message could not\n\
be delivered to one or more recipients. It's attached below.\n\
\n\
For further assistance, please send mail to postmaster.\n\
\n\
                   The mail system\n\
\n\
<nobody@example.net>: host mx.example.net[192.0.2.1] said: 550 5.1.1\n\
    <nobody@example.net>: Recipient address rejected: User unknown (in reply to\n\
    RCPT TO command)\n\
<full@example.net>: host mx.example.net[192.0.2.1] said: 552 5.2.2 quota\n";
        let report = delivery_report(raw.as_bytes()).expect("postfix bounce is recognised");
        assert_eq!(report.kind, ReportKind::NonStandard);
        let summary: Vec<_> = report
            .recipients
            .iter()
            .map(|r| (r.recipient.as_deref(), r.action, r.status.as_deref()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Some("nobody@example.net"), Action::Failed, Some("5.1.1")),
                (Some("full@example.net"), Action::Failed, Some("5.2.2"))
            ]
        );
    }

    #[test]
    fn sendmail_warning_without_dsn_part_is_delayed() {
        let raw = "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.org>\n\
To: sender@example.com\n\
Subject: Warning: could not send message for past 4 hours\n\
\n\
    **      THIS IS A WARNING MESSAGE ONLY      **\n\
The original message was received at Mon, 1 Jan 2024 10:00:00 GMT\n\
   ----- Transcript of session follows -----\n\
<slow@example.net>... Deferred: Connection timed out with mx.example.net.\n\
Warning: message still undelivered after 4 hours\n\
Will keep trying until message is 5 days old\n";
        let report = delivery_report(raw.as_bytes()).expect("warning is recognised");
        assert!(report.is_bounce);
        assert_eq!(
            report.recipients[0].recipient.as_deref(),
            Some("slow@example.net")
        );
        assert_eq!(report.recipients[0].action, Action::Delayed);
        assert_eq!(report.recipients[0].status, None);
    }

    #[test]
    fn status_fields_pasted_by_a_person_are_not_a_report() {
        let raw = "From: bob@example.org\nTo: support@example.com\nSubject: help\n\n\
I got this back:\nFinal-Recipient: rfc822; carol@example.net\nAction: failed\nStatus: 5.1.1\n";
        assert_eq!(delivery_report(raw.as_bytes()), None);
        let from_daemon = raw.replace("From: bob@example.org", "From: MAILER-DAEMON@example.org");
        let report = delivery_report(from_daemon.as_bytes()).expect("daemon report is recognised");
        assert_eq!(report.kind, ReportKind::NonStandard);
        assert_eq!(
            report.recipients[0].recipient.as_deref(),
            Some("carol@example.net")
        );
    }

    #[test]
    fn forwarded_bounce_written_by_a_person_is_not_a_report() {
        let raw = "From: bob@example.org\nTo: support@example.com\nSubject: Fwd: Undeliverable: invoice\n\n\
My mail to carol@example.net could not be delivered, why?\n";
        assert_eq!(delivery_report(raw.as_bytes()), None);
    }

    #[test]
    fn exim_delay_warning_is_delayed() {
        let raw = "From: Mail Delivery System <Mailer-Daemon@mx.example.org>\n\
To: sender@example.com\n\
Subject: Warning: message 1abc-000 delayed 24 hours\n\
X-Failed-Recipients: late@example.net\n\
\n\
This message was created automatically by mail delivery software.\n\
A message that you sent has not yet been delivered to one or more of its\n\
recipients after more than 24 hours on the queue on mx.example.org.\n\
\n\
  late@example.net\n\
    host mx.example.net [192.0.2.1]: 451 4.3.0 try again later\n\
\n\
No action is required on your part. Delivery attempts will continue.\n";
        let report = delivery_report(raw.as_bytes()).expect("delay warning is recognised");
        assert!(report.is_bounce);
        let recipient = &report.recipients[0];
        assert_eq!(recipient.recipient.as_deref(), Some("late@example.net"));
        assert_eq!(recipient.action, Action::Delayed);
        assert_eq!(recipient.status.as_deref(), Some("4.3.0"));
    }

    #[test]
    fn feedback_report_is_not_a_bounce() {
        let raw = "From: feedback@isp.example\r\n\
To: abuse@example.com\r\n\
Subject: complaint\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\
\r\n\
--F\r\n\
Content-Type: text/plain\r\n\
\r\n\
This is an email abuse report.\r\n\
--F\r\n\
Content-Type: message/feedback-report\r\n\
\r\n\
Feedback-Type: abuse\r\n\
User-Agent: ISP-FBL/1.0\r\n\
Version: 1\r\n\
Original-Rcpt-To: <User@ISP.example>\r\n\
\r\n\
--F\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: sender@example.com\r\n\
Message-ID: <m-7@example.com>\r\n\
\r\n\
--F--\r\n";
        let report = delivery_report(raw.as_bytes()).expect("arf is recognised");
        assert_eq!(report.kind, ReportKind::FeedbackReport);
        assert!(!report.is_bounce);
        assert_eq!(
            report.recipients[0].recipient.as_deref(),
            Some("user@isp.example")
        );
        assert_eq!(report.recipients[0].diagnostic.as_deref(), Some("abuse"));
        assert_eq!(
            report.original_message_id.as_deref(),
            Some("<m-7@example.com>")
        );
    }

    #[test]
    fn out_of_office_is_an_auto_reply() {
        let raw = "From: Anna <anna@example.net>\nTo: sender@example.com\n\
Subject: Automatic reply: hello\nAuto-Submitted: auto-replied\n\nI am away until Monday.\n";
        let report = delivery_report(raw.as_bytes()).expect("auto-reply is recognised");
        assert_eq!(report.kind, ReportKind::AutoReply);
        assert!(!report.is_bounce);
        assert_eq!(
            report.recipients[0].recipient.as_deref(),
            Some("anna@example.net")
        );
    }

    #[test]
    fn ordinary_mail_is_not_a_report() {
        let plain =
            "From: bob@example.org\nTo: alice@example.com\nSubject: lunch?\n\nSee you at noon.\n";
        assert_eq!(delivery_report(plain.as_bytes()), None);
        // Bounce wording written by a person is one signal only.
        let wording = "From: bob@example.org\nTo: alice@example.com\nSubject: re: invoice\n\n\
My mail to carol@example.net could not be delivered, can you forward it?\n";
        assert_eq!(delivery_report(wording.as_bytes()), None);
    }

    #[test]
    fn garbage_never_panics() {
        let mut inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"\r\n\r\n".to_vec(),
            b"Content-Type: message/delivery-status\n\nFinal-Recipient:\nAction:\nStatus: 5.\n".to_vec(),
            b"From: <>\nSubject: failure notice\n\n@@@@ a@ @b.c 5.1. 5..1 550-' <@>:\n".to_vec(),
            "Subject: undeliverable\nFrom: postmaster@x.example\n\n\u{e9}\u{fffd} \u{3042}@\u{3042}.jp".as_bytes().to_vec(),
        ];
        let dsn = POSTFIX_DSN.as_bytes();
        inputs.extend(
            (0..dsn.len())
                .step_by(7)
                .map(|cut| dsn.get(..cut).unwrap_or_default().to_vec()),
        );
        inputs.push(dsn.iter().map(|b| b.wrapping_mul(31)).collect());
        for input in &inputs {
            let _ = delivery_report(input);
        }
        // Truncated inside the returned message the report itself is still complete.
        let truncated = dsn.get(..dsn.len() - 20).unwrap_or_default();
        assert!(delivery_report(truncated).is_some_and(|r| r.is_bounce));
    }

    #[test]
    fn serializes_kinds_and_actions_in_lowercase() {
        let report = delivery_report(POSTFIX_DSN.as_bytes()).expect("dsn is recognised");
        let json = serde_json::to_value(&report).expect("report serializes");
        assert_eq!(json["kind"], "dsn");
        assert_eq!(json["recipients"][0]["action"], "failed");
        let kinds = [
            ReportKind::NonStandard,
            ReportKind::FeedbackReport,
            ReportKind::AutoReply,
        ];
        let names: Vec<_> = kinds
            .iter()
            .map(|k| serde_json::to_value(k).expect("kind serializes"))
            .collect();
        assert_eq!(names, vec!["non-standard", "feedback-report", "auto-reply"]);
    }
}
