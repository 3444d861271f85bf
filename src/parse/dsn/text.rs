//! Heuristics for non-standard bounces: mails from qmail, Exim, Gmail, Yahoo, old
//! Exchange, Lotus Notes and many others that explain the failure only in prose
//! instead of an RFC 3464 `message/delivery-status` part.

use super::fields::{addresses_in, find_failure_code};
use super::{Action, RecipientReport};

use std::collections::HashMap;

/// Longest diagnostic text kept per recipient, in bytes.
const MAX_DIAGNOSTIC: usize = 1000;

/// Most recipients read from prose; real bounces list a handful.
const MAX_RECIPIENTS: usize = 500;

/// Longest prose examined, in bytes: the explanation of a bounce is short, and this
/// bounds the work spent on large ordinary mails.
pub(super) const MAX_PROSE: usize = 128 * 1024;

/// Header names that, at the start of a report line, mean the line quotes a header of
/// the original message rather than naming a failed recipient.
const QUOTED_HEADERS: [&str; 20] = [
    "from:",
    "to:",
    "cc:",
    "bcc:",
    "reply-to:",
    "sender:",
    "return-path:",
    "received:",
    "message-id:",
    "in-reply-to:",
    "references:",
    "subject:",
    "date:",
    "errors-to:",
    "dkim-signature:",
    "resent-",
    "envelope-from",
    "x-",
    "delivered-to:",
    "sent:",
];

/// Phrases of a line that starts the returned original message in a text bounce.
const ORIGINAL_MARKERS: [&str; 13] = [
    "copy of the message",
    "copy of your message",
    "copy of the original message",
    "below this line is a copy",
    "message follows",
    "headers follow",
    "header follows",
    "header of the original message",
    "copy of the message header",
    "returned message",
    "original mail",
    "unsent message",
    "undelivered message",
];

/// Header fields that start a quoted header block at column 0.
const HEADER_BLOCK_STARTS: [&str; 5] = [
    "received:",
    "return-path:",
    "dkim-signature:",
    "arc-seal:",
    "x-received:",
];

/// Returns the part of `text` before the returned original message starts. Only the
/// first [`MAX_PROSE`] bytes are searched; without a marker there the whole text is prose.
pub(super) fn cut_before_original(text: &str) -> &str {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if offset > MAX_PROSE {
            break;
        }
        if is_original_marker(line) {
            return text.get(..offset).unwrap_or(text);
        }
        offset += line.len();
    }
    text
}

/// Longest line that can be a textual marker such as `--- Original message ---`.
const MAX_MARKER_LINE: usize = 200;

fn is_original_marker(line: &str) -> bool {
    let starts_block = HEADER_BLOCK_STARTS.iter().any(|start| {
        line.get(..start.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(start))
    });
    if starts_block {
        return true;
    }
    if line.len() > MAX_MARKER_LINE {
        return false;
    }
    let lower = line.trim_end().to_ascii_lowercase();
    let core = lower.trim_matches(|c: char| {
        c.is_whitespace() || matches!(c, '-' | '=' | '*' | '_' | ':' | '.')
    });
    // "The original message was received at ..." (Sendmail) is prose, not a marker.
    if core.starts_with("original message") && !core.contains("was received") {
        return true;
    }
    core.len() < 90 && ORIGINAL_MARKERS.iter().any(|marker| core.contains(marker))
}

/// One recipient found in the prose and the lines that explain its failure.
struct Block {
    recipient: String,
    lines: Vec<String>,
}

/// Finds failed recipients in the human-readable part of a bounce. Each address that is
/// not a known sender starts a block; the lines after it, up to the next address, are
/// its diagnostic, and the first RFC 3463 code in them is its status.
pub(super) fn recipients_from_text(
    report: &str,
    excluded: &[String],
    action: Action,
) -> Vec<RecipientReport> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut index_of: HashMap<String, usize> = HashMap::new();
    let mut preamble: Vec<String> = Vec::new();
    let mut current: Option<usize> = None;
    for line in report.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(address) = candidate_in(trimmed, excluded) {
            let index = match index_of.get(&address) {
                Some(index) => *index,
                None if blocks.len() < MAX_RECIPIENTS => {
                    index_of.insert(address.clone(), blocks.len());
                    blocks.push(Block {
                        recipient: address,
                        lines: Vec::new(),
                    });
                    blocks.len() - 1
                }
                None => break,
            };
            current = Some(index);
        }
        match current.and_then(|index| blocks.get_mut(index)) {
            Some(block) if block.lines.len() < 200 => block.lines.push(trimmed.to_owned()),
            Some(_) => {}
            None => preamble.push(trimmed.to_owned()),
        }
    }
    let preamble_status = find_failure_code(&preamble.join(" "));
    blocks
        .into_iter()
        .enumerate()
        .map(|(index, block)| {
            let diagnostic = block.lines.join(" ");
            let status = find_failure_code(&diagnostic)
                .or_else(|| (index == 0).then(|| preamble_status.clone()).flatten());
            RecipientReport {
                recipient: Some(block.recipient),
                action,
                status,
                diagnostic: Some(truncate(&diagnostic, MAX_DIAGNOSTIC)),
                remote_mta: None,
            }
        })
        .collect()
}

/// The first address of `line` that can be a failed recipient.
fn candidate_in(line: &str, excluded: &[String]) -> Option<String> {
    let lower = line.to_ascii_lowercase();
    if QUOTED_HEADERS
        .iter()
        .any(|header| lower.starts_with(header))
    {
        return None;
    }
    addresses_in(line).into_iter().find_map(|(start, address)| {
        let before = lower.get(..start).unwrap_or_default();
        let in_url = before.ends_with(['/', '?', '&']);
        // "MAIL FROM:<a@b>", "envelope-from <a@b>", "(generated from a@b)": the sender.
        let window = tail(before, 16);
        let after_from = window.contains("from");
        let local = address.split('@').next().unwrap_or_default();
        let daemon = local.starts_with("mailer-daemon") || local == "mailer_daemon";
        let known = excluded.contains(&address);
        (!in_url && !after_from && !daemon && !known).then_some(address)
    })
}

/// The last `max` bytes of `text` or a little less, on a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text.get(start..).unwrap_or_default()
}

/// Phrases saying the message is still queued (RFC 3464 "delayed").
const DELAY_PHRASES: [&str; 12] = [
    "has been delayed",
    "delivery delayed",
    "delivery is delayed",
    "warning message only",
    "will be retried",
    "will retry",
    "still trying",
    "continue trying",
    "not yet been delivered",
    "still undelivered",
    "keep trying",
    "(delay)",
];

/// Phrases saying the MTA gave up, which overrule any delay wording.
const FAILURE_PHRASES: [&str; 8] = [
    "giving up",
    "given up",
    "permanent",
    "too long",
    "not going to try again",
    "will be deleted",
    "fatal error",
    "could not be delivered for",
];

/// `Delayed` for a delay warning, `Failed` otherwise: a text bounce is only sent when
/// delivery failed or is late.
pub(super) fn text_action(report: &str, subject: &str) -> Action {
    let lower = format!("{subject}\n{report}").to_ascii_lowercase();
    let delayed = DELAY_PHRASES.iter().any(|p| lower.contains(p));
    let failed = FAILURE_PHRASES.iter().any(|p| lower.contains(p));
    if delayed && !failed {
        Action::Delayed
    } else {
        Action::Failed
    }
}

/// Subject phrases of delivery failure notices.
const SUBJECT_PHRASES: [&str; 20] = [
    "undeliver",
    "delivery status notification",
    "delivery failure",
    "failure notice",
    "returned mail",
    "mail delivery failed",
    "delivery failed",
    "delivery notification",
    "not delivered",
    "could not be delivered",
    "returned to sender",
    "delivery has failed",
    "failed delivery",
    "mail system error",
    "delivery problem",
    "could not send",
    "delayed mail",
    "delivery delayed",
    "non-delivery",
    "nondeliverable",
];

/// Body phrases of delivery failure notices.
const BODY_PHRASES: [&str; 25] = [
    "could not be delivered",
    "couldn't be delivered",
    "wasn't able to deliver",
    "was not able to deliver",
    "unable to deliver",
    "could not deliver",
    "did not reach the following recipient",
    "delivery to the following recipient",
    "following address(es) failed",
    "following address failed",
    "following addresses had permanent",
    "error delivering your mail",
    "undeliverable",
    "mail delivery software",
    "delivery has failed",
    "failed permanently",
    "permanent error",
    "has been delayed",
    "delivery failed",
    "failed to deliver",
    "invalid final delivery",
    "qmail-send program",
    "error has occurred while attempting to deliver",
    "recipients failed",
    "transcript of session follows",
];

/// Evidence that a message without a machine-readable report is a bounce.
pub(super) struct BounceEvidence<'a> {
    /// True for the null reverse path: `Return-Path: <>` or a From without address.
    pub null_sender: bool,
    /// Address of the first From mailbox.
    pub from_address: Option<&'a str>,
    /// Display name of the first From mailbox.
    pub from_name: Option<&'a str>,
    /// Decoded Subject.
    pub subject: &'a str,
    /// Human-readable prose without the returned message.
    pub report: &'a str,
    /// Exim and Gmail name failed recipients in `X-Failed-Recipients`.
    pub has_failed_recipients_header: bool,
    /// The returned original was addressed to the recipient found in the prose.
    pub returned_to_recipient: bool,
}

impl BounceEvidence<'_> {
    /// Needs two independent signals, so a person writing "could not be delivered" in an
    /// ordinary mail is not taken for a bounce.
    pub(super) fn is_bounce(&self) -> bool {
        self.message_score() + usize::from(self.returned_to_recipient) >= 2
    }

    /// Signals found without looking for recipients: zero means the message cannot be a
    /// bounce, whatever addresses it mentions.
    pub(super) fn message_score(&self) -> usize {
        let subject = self.subject.trim().to_ascii_lowercase();
        let report = self.report.to_ascii_lowercase();
        // A reply or forward of a bounce is written by a person.
        let reply = ["re:", "fw:", "fwd:", "aw:", "wg:", "tr:", "sv:"]
            .iter()
            .any(|p| subject.starts_with(p));
        [
            self.has_failed_recipients_header,
            self.has_failed_recipients_header,
            self.is_daemon_sender(),
            !reply && SUBJECT_PHRASES.iter().any(|p| subject.contains(p)),
            BODY_PHRASES.iter().any(|p| report.contains(p)),
        ]
        .into_iter()
        .filter(|signal| *signal)
        .count()
    }

    /// Mailer-daemon, postmaster or the null sender (RFC 5321 section 4.5.5).
    fn is_daemon_sender(&self) -> bool {
        let name = self.from_name.unwrap_or_default().to_ascii_lowercase();
        let Some(address) = self.from_address else {
            return self.null_sender || name.contains("mailer-daemon");
        };
        if self.null_sender {
            return true;
        }
        let local = address
            .split('@')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        [
            "mailer-daemon",
            "mailer_daemon",
            "mailerdaemon",
            "mail-daemon",
            "postmaster",
            "mdaemon",
        ]
        .iter()
        .any(|daemon| local == *daemon)
            || name.contains("mail delivery")
            || name.contains("mailer-daemon")
            || local.contains("mail.delivery")
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
pub(super) fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_stops_at_copy_marker_but_not_at_sendmail_prose() {
        let text = "The original message was received at Mon\n<a@example.jp>\n\
                    ------ This is a copy of the message, including all the headers. ------\nFrom: b@example.jp\n";
        assert_eq!(
            cut_before_original(text),
            "The original message was received at Mon\n<a@example.jp>\n"
        );
    }

    #[test]
    fn blocks_give_each_recipient_its_code() {
        let report = "The following address(es) failed:\n  a@example.jp\n    host mx: 550 5.2.2 <a@example.jp>... full\n\
                      b@example.jp\n    RCPT TO:<b@example.jp> 550 5.1.1 unknown\n    MAIL FROM:<me@example.org>\n";
        let found = recipients_from_text(report, &[], Action::Failed);
        let summary: Vec<_> = found
            .iter()
            .map(|r| (r.recipient.clone(), r.status.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Some("a@example.jp".into()), Some("5.2.2".into())),
                (Some("b@example.jp".into()), Some("5.1.1".into()))
            ]
        );
    }

    #[test]
    fn senders_and_quoted_headers_are_not_recipients() {
        let report = "To: x@example.jp\nbad sender MAIL FROM:<me@example.org>\n(generated from me2@example.org)\nz@example.net\n";
        let found = recipients_from_text(report, &["me2@example.org".into()], Action::Failed);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].recipient.as_deref(), Some("z@example.net"));
    }

    #[test]
    fn sender_context_is_found_in_non_ascii_lines() {
        // The 16-byte window before the address starts inside a Cyrillic letter.
        let line = "from mx: доставка невозможна a@example.jp";
        assert_eq!(candidate_in(line, &[]).as_deref(), Some("a@example.jp"));
        assert_eq!(candidate_in("MAIL FROM:<a@example.jp>", &[]), None);
        assert_eq!(tail("aé", 1), "");
    }

    #[test]
    fn delay_wording_is_overruled_by_giving_up() {
        assert_eq!(
            text_action("Delivery has been delayed. Will retry.", ""),
            Action::Delayed
        );
        assert_eq!(
            text_action("will retry ... Giving up on 192.0.2.1.", ""),
            Action::Failed
        );
        assert_eq!(
            text_action("550 user unknown", "failure notice"),
            Action::Failed
        );
    }
}
