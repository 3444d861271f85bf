//! RFC 3464 `message/delivery-status` field parsing, plus the small text helpers
//! (addresses, RFC 3463 status codes) shared by the other recognisers.

use super::{Action, RecipientReport};

/// Per-message and per-recipient fields of one delivery-status body.
#[derive(Debug, Default)]
pub(super) struct StatusFields {
    pub reporting_mta: Option<String>,
    pub envelope_id: Option<String>,
    pub recipients: Vec<RecipientReport>,
}

/// Fields of one per-recipient group before they are turned into a report.
#[derive(Debug, Default)]
struct RecipientGroup {
    final_recipient: Option<String>,
    original_recipient: Option<String>,
    action: Option<String>,
    status: Option<String>,
    diagnostic: Option<String>,
    remote_mta: Option<String>,
    seen: Vec<&'static str>,
}

/// Most per-recipient groups read from one report; bounds memory on hostile input.
const MAX_GROUPS: usize = 1000;

/// Per-recipient field names we read (RFC 3464 section 2.3), lowercase.
const RECIPIENT_FIELDS: [&str; 6] = [
    "final-recipient",
    "original-recipient",
    "action",
    "status",
    "diagnostic-code",
    "remote-mta",
];

/// Parses the fields of a delivery-status body. RFC 3464 separates the per-message
/// group and each per-recipient group by blank lines, but real MTAs omit them
/// (AOL, Sun Messaging Server), so a repeated per-recipient field also starts a new group.
pub(super) fn parse_status_fields(text: &str) -> StatusFields {
    let mut fields = StatusFields::default();
    let mut groups: Vec<RecipientGroup> = Vec::new();
    let mut current = RecipientGroup::default();
    for line in unfold_lines(text) {
        let Some((name, value)) = split_field(&line) else {
            if line.trim().is_empty() && !current.seen.is_empty() {
                groups.push(std::mem::take(&mut current));
            }
            continue;
        };
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "reporting-mta" => set_once(&mut fields.reporting_mta, mta_name(value)),
            "original-envelope-id" => set_once(&mut fields.envelope_id, value.trim()),
            _ => {
                let Some(known) = RECIPIENT_FIELDS.iter().find(|known| **known == name) else {
                    continue;
                };
                if current.seen.contains(known) {
                    groups.push(std::mem::take(&mut current));
                }
                if groups.len() >= MAX_GROUPS {
                    break;
                }
                current.seen.push(known);
                current.set(known, value);
            }
        }
    }
    if !current.seen.is_empty() {
        groups.push(current);
    }
    fields.recipients = groups
        .into_iter()
        .filter_map(RecipientGroup::into_report)
        .collect();
    fields
}

impl RecipientGroup {
    fn set(&mut self, name: &str, value: &str) {
        let value = value.trim();
        let slot = match name {
            "final-recipient" => &mut self.final_recipient,
            "original-recipient" => &mut self.original_recipient,
            "action" => &mut self.action,
            "status" => &mut self.status,
            "diagnostic-code" => &mut self.diagnostic,
            _ => &mut self.remote_mta,
        };
        if !value.is_empty() {
            *slot = Some(value.to_owned());
        }
    }

    /// A group with neither a recipient nor an action or status says nothing (a stray
    /// `Remote-MTA:` or `Diagnostic-Code:`). A group with an action but a missing or
    /// broken recipient is kept; the caller may find the address in the prose.
    fn into_report(self) -> Option<RecipientReport> {
        let final_address = self
            .final_recipient
            .as_deref()
            .and_then(normalize_recipient);
        let original_address = self
            .original_recipient
            .as_deref()
            .and_then(normalize_recipient);
        // Sendmail writes a bare local part in Final-Recipient for local mailboxes.
        let recipient = match (final_address, original_address) {
            (Some(final_address), Some(original)) if !final_address.contains('@') => Some(original),
            (Some(final_address), _) => Some(final_address),
            (None, original) => original,
        };
        if recipient.is_none() && self.action.is_none() && self.status.is_none() {
            return None;
        }
        let diagnostic = self.diagnostic.as_deref().map(|d| strip_type(d).to_owned());
        let field_status = self.status.as_deref().and_then(find_status_code);
        let status = refine_status(field_status, diagnostic.as_deref());
        let action = match self.action.as_deref() {
            Some(action) => parse_action(action),
            None => action_from_status(status.as_deref()),
        };
        Some(RecipientReport {
            recipient,
            action,
            status,
            diagnostic,
            remote_mta: self.remote_mta.as_deref().map(|m| mta_name(m).to_owned()),
        })
    }
}

fn set_once(slot: &mut Option<String>, value: &str) {
    if slot.is_none() && !value.is_empty() {
        *slot = Some(value.to_owned());
    }
}

/// All `Name: value` fields of a report body in order, names lowercase (used for the
/// RFC 5965 feedback fields, which share the RFC 3464 syntax).
pub(super) fn field_values(text: &str) -> Vec<(String, String)> {
    unfold_lines(text)
        .iter()
        .filter_map(|line| split_field(line))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
        .collect()
}

/// Joins folded continuation lines (RFC 5322 section 2.2.3 folding, used by RFC 3464 fields).
fn unfold_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for raw in text.lines() {
        let starts_folded = raw.starts_with([' ', '\t']) && !raw.trim().is_empty();
        match lines.last_mut() {
            Some(last) if starts_folded && split_field(last).is_some() => {
                last.push(' ');
                last.push_str(raw.trim());
            }
            _ => lines.push(raw.trim_end().to_owned()),
        }
    }
    lines
}

/// Splits `Name: value` when `Name` is a plausible field name.
fn split_field(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once(':')?;
    let plausible = !name.is_empty()
        && name.len() <= 40
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    plausible.then_some((name, value))
}

/// Removes the `type;` prefix of an RFC 3464 typed value (`dns; mx.example`,
/// `smtp; 550 ...`, `rfc822; user@example`).
pub(super) fn strip_type(value: &str) -> &str {
    let value = value.trim();
    match value.split_once(';') {
        Some((kind, rest)) if is_type_name(kind) => rest.trim(),
        _ => value,
    }
}

/// An MTA field (`dns; mx.example.org (TCP|192.0.2.1|25)`) reduced to the host name,
/// dropping the type and trailing comments.
pub(super) fn mta_name(value: &str) -> &str {
    strip_type(value)
        .split_whitespace()
        .next()
        .unwrap_or_default()
}

fn is_type_name(kind: &str) -> bool {
    let kind = kind.trim();
    !kind.is_empty()
        && kind.len() <= 20
        && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Reduces a recipient field (`rfc822; <User@Example.org>`) to a bare lowercase address.
pub(super) fn normalize_recipient(value: &str) -> Option<String> {
    let bare = strip_type(value);
    let bare = bare.split_whitespace().next().unwrap_or_default();
    let bare = bare.trim_matches(|c: char| matches!(c, '<' | '>' | '"' | '\'' | '(' | ')' | ','));
    (!bare.is_empty()).then(|| bare.to_ascii_lowercase())
}

/// Maps an `Action:` value (RFC 3464 section 2.3.3) to [`Action`].
pub(super) fn parse_action(value: &str) -> Action {
    let value = value.trim().to_ascii_lowercase();
    // "expired" (SendGrid) means the retry period ran out: the MTA gave up.
    if value.starts_with("fail") || value.starts_with("expire") {
        Action::Failed
    } else if value.starts_with("delay") {
        Action::Delayed
    } else if value.starts_with("deliver") {
        Action::Delivered
    } else if value.starts_with("relay") {
        Action::Relayed
    } else if value.starts_with("expand") {
        Action::Expanded
    } else {
        Action::Unknown
    }
}

/// Infers the action from the status class when `Action:` is missing (RFC 3463 section 3.1).
pub(super) fn action_from_status(status: Option<&str>) -> Action {
    match status.and_then(|s| s.bytes().next()) {
        Some(b'5') => Action::Failed,
        Some(b'4') => Action::Delayed,
        Some(b'2') => Action::Delivered,
        _ => Action::Unknown,
    }
}

/// Keeps a specific `Status:` code, but replaces a generic `X.0.0` by the more precise
/// code of the same class quoted in the diagnostic (`5.0.0` + `550 5.7.1 ...` gives `5.7.1`).
pub(super) fn refine_status(field: Option<String>, diagnostic: Option<&str>) -> Option<String> {
    let from_diagnostic = diagnostic.and_then(find_failure_code);
    match (field, from_diagnostic) {
        (Some(field), Some(precise))
            if field.ends_with(".0.0") && precise.get(..1) == field.get(..1) =>
        {
            Some(precise)
        }
        (Some(field), _) => Some(field),
        (None, precise) => precise,
    }
}

/// Finds the first RFC 3463 enhanced status code (`class.subject.detail`) in `text`.
pub(super) fn find_status_code(text: &str) -> Option<String> {
    status_codes(text).next()
}

/// Like [`find_status_code`] but only failure classes 4 and 5, skipping the `2.x.x`
/// replies a session transcript also carries. A code right after an SMTP reply code
/// (`550 5.2.2`, `550-'5.2.2`) is the remote server's own and wins over codes an
/// intermediate MTA put in front of it.
pub(super) fn find_failure_code(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let failures = || {
        (0..bytes.len())
            .filter_map(|start| status_code_at(bytes, start).map(|code| (start, code)))
            .filter(|(_, code)| !code.starts_with('2'))
    };
    failures()
        .find(|(start, _)| follows_reply_code(bytes, *start))
        .or_else(|| failures().next())
        .map(|(_, code)| code)
}

fn status_codes(text: &str) -> impl Iterator<Item = String> + '_ {
    let bytes = text.as_bytes();
    (0..bytes.len()).filter_map(move |start| status_code_at(bytes, start))
}

/// True when `start` is preceded by a 4xx/5xx reply code and at most two separators.
fn follows_reply_code(bytes: &[u8], start: usize) -> bool {
    let mut end = start;
    while end > 0
        && start - end < 3
        && bytes
            .get(end - 1)
            .is_some_and(|b| matches!(b, b' ' | b'-' | b'\'' | b'"'))
    {
        end -= 1;
    }
    if end == start || end < 3 {
        return false;
    }
    let Some(code) = bytes.get(end - 3..end) else {
        return false;
    };
    let standalone = end == 3
        || bytes
            .get(end - 4)
            .is_some_and(|b| !b.is_ascii_alphanumeric());
    standalone && matches!(code.first(), Some(b'4' | b'5')) && code.iter().all(u8::is_ascii_digit)
}

/// Matches `[245].d{1,3}.d{1,3}` at `start`, not glued to other digits or dots, so that
/// IP addresses and version numbers are not taken for status codes.
fn status_code_at(bytes: &[u8], start: usize) -> Option<String> {
    let first = *bytes.get(start)?;
    if !matches!(first, b'2' | b'4' | b'5') {
        return None;
    }
    if start > 0
        && bytes
            .get(start - 1)
            .is_some_and(|b| b.is_ascii_digit() || *b == b'.')
    {
        return None;
    }
    let mut end = start + 1;
    for _ in 0..2 {
        if bytes.get(end) != Some(&b'.') {
            return None;
        }
        let digits = bytes
            .get(end + 1..)?
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if !(1..=3).contains(&digits) {
            return None;
        }
        end += 1 + digits;
    }
    let glued = match bytes.get(end) {
        Some(b'.') => bytes.get(end + 1).is_some_and(u8::is_ascii_digit),
        Some(b) => b.is_ascii_alphanumeric(),
        None => false,
    };
    if glued {
        return None;
    }
    std::str::from_utf8(bytes.get(start..end)?)
        .ok()
        .map(str::to_owned)
}

/// Every plausible mail address in `line`, lowercase, with its byte offset.
pub(super) fn addresses_in(line: &str) -> Vec<(usize, String)> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    for (at, _) in line.match_indices('@') {
        let local_len = bytes
            .get(..at)
            .unwrap_or_default()
            .iter()
            .rev()
            .take_while(|b| is_local_byte(**b))
            .count();
        let domain_len = bytes
            .get(at + 1..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'.' || **b == b'-')
            .count();
        let local = line.get(at - local_len..at).unwrap_or_default();
        let domain = line
            .get(at + 1..at + 1 + domain_len)
            .unwrap_or_default()
            .trim_end_matches(['.', '-']);
        let local = local.trim_start_matches('.');
        if !local.is_empty() && is_domain(domain) {
            found.push((
                at - local.len(),
                format!("{local}@{domain}").to_ascii_lowercase(),
            ));
        }
    }
    found
}

fn is_local_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-' | b'=' | b'\'')
}

fn is_domain(domain: &str) -> bool {
    let mut labels = domain.split('.');
    let tld = domain.rsplit('.').next().unwrap_or_default();
    domain.contains('.')
        && labels.all(|label| !label.is_empty() && !label.starts_with('-'))
        && (tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic())
            || tld.starts_with("xn--"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_skip_ips_and_versions() {
        assert_eq!(
            find_status_code("host 192.0.2.135 said 550 5.1.1 no"),
            Some("5.1.1".into())
        );
        assert_eq!(
            find_status_code("Exim 4.72 at 4.2.2.1 id 15.20.239.5"),
            None
        );
        assert_eq!(find_status_code("(#5.4.4)"), Some("5.4.4".into()));
        assert_eq!(
            find_failure_code("250 2.1.0 Ok 451 4.3.0 Error"),
            Some("4.3.0".into())
        );
        assert_eq!(
            find_status_code("550 5.7.509 Access denied"),
            Some("5.7.509".into())
        );
        let relayed = "5.1.0 - Unknown address error 550-'5.2.2 <a@example.jp>... Mailbox Full'";
        assert_eq!(find_failure_code(relayed), Some("5.2.2".into()));
    }

    #[test]
    fn generic_status_is_refined_from_diagnostic() {
        assert_eq!(
            refine_status(Some("5.0.0".into()), Some("550 5.7.1 no")),
            Some("5.7.1".into())
        );
        assert_eq!(
            refine_status(Some("5.1.1".into()), Some("550 5.7.1 no")),
            Some("5.1.1".into())
        );
        assert_eq!(
            refine_status(Some("4.0.0".into()), Some("550 5.7.1 no")),
            Some("4.0.0".into())
        );
        assert_eq!(
            refine_status(None, Some("smtp; 452 4.2.2 full")),
            Some("4.2.2".into())
        );
    }

    #[test]
    fn recipients_are_bare_and_lowercase() {
        assert_eq!(
            normalize_recipient("rfc822; <User@Example.ORG>"),
            Some("user@example.org".into())
        );
        assert_eq!(
            normalize_recipient("RFC822;kijitora@example.jp"),
            Some("kijitora@example.jp".into())
        );
    }

    #[test]
    fn addresses_are_found_in_prose() {
        let found = addresses_in("550 <Neko@Example.jp>... user unknown; see a@b.c.");
        let found: Vec<_> = found.into_iter().map(|(_, a)| a).collect();
        assert_eq!(found, vec!["neko@example.jp".to_owned()]);
        assert!(addresses_in("ids like 1234@567 are not mail").is_empty());
    }

    #[test]
    fn groups_split_on_repeated_fields_without_blank_lines() {
        let text = "Reporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; a@example.jp\n\
                    Action: failed\nStatus: 5.2.2\nDiagnostic-Code: smtp; 550 5.2.2 full\n\
                    Final-Recipient: rfc822; b@example.jp\nAction: delayed\nStatus: 4.0.0\n";
        let fields = parse_status_fields(text);
        assert_eq!(fields.reporting_mta.as_deref(), Some("mx.example.org"));
        let recipients: Vec<_> = fields
            .recipients
            .iter()
            .map(|r| (r.recipient.clone(), r.action))
            .collect();
        assert_eq!(
            recipients,
            vec![
                (Some("a@example.jp".into()), Action::Failed),
                (Some("b@example.jp".into()), Action::Delayed)
            ]
        );
        assert_eq!(
            fields.recipients[0].diagnostic.as_deref(),
            Some("550 5.2.2 full")
        );
    }
}
