//! Amazon SES event notifications delivered by mail through SNS: a JSON body with
//! `notificationType` `Bounce`, `Delivery` or `Complaint` instead of an RFC 3464 part.
//! Read by plain string scanning; only a handful of keys matter.

use super::fields::{find_status_code, mta_name, parse_action, strip_type};
use super::{Action, RecipientReport, ReportKind};

/// Recipients and kind read from an SES notification body.
pub(super) struct SesNotification {
    pub kind: ReportKind,
    pub reporting_mta: Option<String>,
    pub recipients: Vec<RecipientReport>,
}

/// Parses `text` when it is an SES notification.
pub(super) fn parse(text: &str) -> Option<SesNotification> {
    let body = text.trim_start();
    if !body.starts_with('{') {
        return None;
    }
    let notification_type = string_after(body, "notificationType")?;
    let (section, kind) = match notification_type.as_str() {
        "Bounce" => ("bouncedRecipients", ReportKind::NonStandard),
        "Delivery" => ("delivery", ReportKind::NonStandard),
        "Complaint" => ("complainedRecipients", ReportKind::FeedbackReport),
        _ => return None,
    };
    let start = body.find(&format!("\"{section}\""))?;
    let section_text = body.get(start..)?;
    let recipients = match notification_type.as_str() {
        "Delivery" => delivered(section_text),
        "Complaint" => complained(section_text),
        _ => bounced(section_text),
    };
    let reporting_mta =
        string_after(section_text, "reportingMTA").map(|mta| mta_name(&mta).to_owned());
    Some(SesNotification {
        kind,
        reporting_mta,
        recipients,
    })
}

fn bounced(section: &str) -> Vec<RecipientReport> {
    let list = section.split(']').next().unwrap_or_default();
    list.split("\"emailAddress\"")
        .skip(1)
        .filter_map(|object| {
            let recipient = string_value(object)?;
            let diagnostic = string_after(object, "diagnosticCode");
            let status = string_after(object, "status")
                .and_then(|s| find_status_code(&s))
                .or_else(|| diagnostic.as_deref().and_then(find_status_code));
            let action =
                string_after(object, "action").map_or(Action::Failed, |a| parse_action(&a));
            Some(RecipientReport {
                recipient: Some(recipient.to_ascii_lowercase()),
                action,
                status,
                diagnostic: diagnostic.map(|d| strip_type(&d).to_owned()),
                remote_mta: None,
            })
        })
        .collect()
}

fn delivered(section: &str) -> Vec<RecipientReport> {
    let response = string_after(section, "smtpResponse");
    let status = response.as_deref().and_then(find_status_code);
    let Some(list_start) = section.find("\"recipients\"") else {
        return Vec::new();
    };
    let list = section.get(list_start..).unwrap_or_default();
    let list = list.split(']').next().unwrap_or_default();
    // `"recipients":["a","b"` splits into "", recipients, :[, a, ",", b.
    list.split('"')
        .skip(3)
        .step_by(2)
        .filter(|item| item.contains('@'))
        .map(|address| RecipientReport {
            recipient: Some(address.to_ascii_lowercase()),
            action: Action::Delivered,
            status: status.clone(),
            diagnostic: response.clone(),
            remote_mta: None,
        })
        .collect()
}

fn complained(section: &str) -> Vec<RecipientReport> {
    let list = section.split(']').next().unwrap_or_default();
    list.split("\"emailAddress\"")
        .skip(1)
        .filter_map(string_value)
        .map(|address| RecipientReport {
            recipient: Some(address.to_ascii_lowercase()),
            action: Action::Unknown,
            status: None,
            diagnostic: None,
            remote_mta: None,
        })
        .collect()
}

/// The string value of the first `"key": "value"` in `text`.
fn string_after(text: &str, key: &str) -> Option<String> {
    let start = text.find(&format!("\"{key}\""))? + key.len() + 2;
    string_value(text.get(start..)?)
}

/// Reads `: "value"` at the start of `text`, undoing `\"` and `\\` escapes.
fn string_value(text: &str) -> Option<String> {
    let rest = text
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => value.push(chars.next()?),
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounce_notification_gives_recipient_and_status() {
        let body = r#"{"notificationType":"Bounce","bounce":{"bouncedRecipients":[{"emailAddress":"A@example.com","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}],"reportingMTA":"dsn; a1.example.com"}}"#;
        let parsed = parse(body).expect("bounce notification parses");
        assert_eq!(parsed.reporting_mta.as_deref(), Some("a1.example.com"));
        assert_eq!(parsed.recipients.len(), 1);
        assert_eq!(
            parsed.recipients[0].recipient.as_deref(),
            Some("a@example.com")
        );
        assert_eq!(parsed.recipients[0].status.as_deref(), Some("5.1.1"));
        assert_eq!(parsed.recipients[0].action, Action::Failed);
    }

    #[test]
    fn delivery_notification_is_delivered() {
        let body = r#"{"notificationType":"Delivery","delivery":{"recipients":["ok@example.com"],"smtpResponse":"250 2.6.0 Message received"}}"#;
        let parsed = parse(body).expect("delivery notification parses");
        assert_eq!(parsed.recipients[0].action, Action::Delivered);
        assert_eq!(parsed.recipients[0].status.as_deref(), Some("2.6.0"));
        assert!(parse("not json").is_none());
    }
}
