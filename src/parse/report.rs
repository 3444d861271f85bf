//! Reports for `inboxd inspect FILE [--json]`: what the parser and threading see in one message.

use std::fmt::Write;

use serde::Serialize;

use super::thread::thread_keys;
use super::{Address, AttachmentInfo, ParsedMessage, ThreadKeys};

/// Characters of the text body shown in the human-readable report.
const TEXT_PREVIEW_CHARS: usize = 1000;

/// The JSON form of the report: the parsed message plus its thread keys.
#[derive(Serialize)]
struct InspectReport<'a> {
    message: &'a ParsedMessage,
    thread_keys: ThreadKeys,
}

/// The report as JSON: `{"message": ParsedMessage, "thread_keys": ThreadKeys}`.
pub fn inspect_json(parsed: &ParsedMessage) -> serde_json::Value {
    let report = InspectReport {
        message: parsed,
        thread_keys: thread_keys(parsed),
    };
    serde_json::to_value(report).unwrap_or_else(
        |error| serde_json::json!({ "error": format!("cannot serialize report: {error}") }),
    )
}

/// A human-readable report: identity and addresses, thread keys, bodies, attachments and nested
/// messages, automatic-mail signals, problems, and all header fields.
pub fn render_text(parsed: &ParsedMessage) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail, so the fmt::Results below are ignored.
    let _ = write_summary(&mut out, parsed);
    let _ = write_thread_keys(&mut out, &thread_keys(parsed));
    let _ = write_auto(&mut out, parsed);
    let _ = write_bodies(&mut out, parsed);
    let _ = write_attachments(&mut out, parsed);
    let _ = write_problems(&mut out, parsed);
    let _ = write_headers(&mut out, parsed);
    out
}

fn write_summary(out: &mut String, parsed: &ParsedMessage) -> std::fmt::Result {
    writeln!(out, "size:        {} bytes", parsed.size)?;
    if let Some(reason) = &parsed.unparsed {
        writeln!(out, "UNPARSED:    {reason}")?;
    }
    writeln!(
        out,
        "message-id:  {}",
        bracketed(parsed.message_id.as_deref())
    )?;
    writeln!(
        out,
        "subject:     {}",
        parsed.subject.as_deref().unwrap_or("(none)")
    )?;
    let date = parsed
        .date
        .map_or_else(|| "(none)".to_owned(), |d| d.to_rfc2822());
    writeln!(out, "date:        {date}")?;
    let address_fields = [
        ("from", &parsed.from),
        ("sender", &parsed.sender),
        ("reply-to", &parsed.reply_to),
        ("to", &parsed.to),
        ("cc", &parsed.cc),
        ("bcc", &parsed.bcc),
    ];
    for (label, list) in address_fields {
        if !list.is_empty() || label == "from" {
            writeln!(out, "{:<13}{}", format!("{label}:"), address_list(list))?;
        }
    }
    writeln!(out, "in-reply-to: {}", id_list(&parsed.in_reply_to))?;
    writeln!(out, "references:  {}", id_list(&parsed.references))
}

fn write_thread_keys(out: &mut String, keys: &ThreadKeys) -> std::fmt::Result {
    writeln!(out, "\nthread keys:")?;
    writeln!(
        out,
        "  message-id:   {}",
        bracketed(keys.message_id.as_deref())
    )?;
    writeln!(out, "  parents:      {}", id_list(&keys.parent_ids))?;
    writeln!(out, "  subject key:  {:?}", keys.normalized_subject)?;
    let participants = if keys.participants.is_empty() {
        "(none)".to_owned()
    } else {
        keys.participants.join(", ")
    };
    writeln!(out, "  participants: {participants}")
}

fn write_auto(out: &mut String, parsed: &ParsedMessage) -> std::fmt::Result {
    let auto = &parsed.auto;
    writeln!(
        out,
        "\nautomatic:   {} (auto-reply: {})",
        yes_no(auto.is_automatic),
        yes_no(auto.is_auto_reply)
    )?;
    let mut signals = Vec::new();
    if let Some(value) = &auto.auto_submitted {
        signals.push(format!("auto-submitted={value}"));
    }
    if let Some(value) = &auto.precedence {
        signals.push(format!("precedence={value}"));
    }
    if let Some(value) = &auto.list_id {
        signals.push(format!("list-id={value}"));
    }
    if auto.list_unsubscribe {
        signals.push("list-unsubscribe".to_owned());
    }
    if auto.x_autoreply {
        signals.push("x-autoreply".to_owned());
    }
    if !signals.is_empty() {
        writeln!(out, "  signals:   {}", signals.join(", "))?;
    }
    Ok(())
}

fn write_bodies(out: &mut String, parsed: &ParsedMessage) -> std::fmt::Result {
    let html = parsed
        .html_body
        .as_ref()
        .map_or_else(|| "none".to_owned(), |h| format!("{} bytes", h.len()));
    writeln!(
        out,
        "\nbody:        text {} bytes, html {html}",
        parsed.text_body.len()
    )?;
    if !parsed.text_body.is_empty() {
        let preview: String = parsed.text_body.chars().take(TEXT_PREVIEW_CHARS).collect();
        writeln!(out, "--- text ---")?;
        writeln!(out, "{}", preview.trim_end())?;
        if preview.len() < parsed.text_body.len() {
            writeln!(
                out,
                "[... {} more bytes]",
                parsed.text_body.len() - preview.len()
            )?;
        }
        writeln!(out, "------------")?;
    }
    Ok(())
}

fn write_attachments(out: &mut String, parsed: &ParsedMessage) -> std::fmt::Result {
    writeln!(out, "\nattachments: {}", parsed.attachments.len())?;
    for attachment in &parsed.attachments {
        writeln!(out, "  {}", describe(attachment))?;
    }
    if !parsed.nested.is_empty() {
        writeln!(out, "nested messages: {}", parsed.nested.len())?;
        for nested in &parsed.nested {
            writeln!(
                out,
                "  part {}: subject {:?}, from {}, message-id {}",
                nested.part_index,
                nested.subject.as_deref().unwrap_or(""),
                address_list(&nested.from),
                bracketed(nested.message_id.as_deref()),
            )?;
        }
    }
    Ok(())
}

fn describe(attachment: &AttachmentInfo) -> String {
    let mut line = format!(
        "part {}: {} {} bytes {:?} sha256:{}",
        attachment.part_index,
        attachment.content_type,
        attachment.size,
        attachment.filename.as_deref().unwrap_or(""),
        attachment.sha256.get(..16).unwrap_or_default(),
    );
    if attachment.inline {
        line.push_str(" [inline]");
    }
    if attachment.is_message {
        line.push_str(" [message]");
    }
    if let Some(parent) = attachment.within_message {
        let _ = write!(line, " [inside part {parent}]");
    }
    line
}

fn write_problems(out: &mut String, parsed: &ParsedMessage) -> std::fmt::Result {
    writeln!(out, "\nproblems:    {}", parsed.problems.len())?;
    for problem in &parsed.problems {
        writeln!(out, "  - {problem}")?;
    }
    Ok(())
}

fn write_headers(out: &mut String, parsed: &ParsedMessage) -> std::fmt::Result {
    writeln!(out, "\nheaders:     {}", parsed.headers.len())?;
    for (name, value) in &parsed.headers {
        writeln!(out, "  {name}: {value}")?;
    }
    Ok(())
}

fn address_list(list: &[Address]) -> String {
    if list.is_empty() {
        return "(none)".to_owned();
    }
    let rendered: Vec<String> = list
        .iter()
        .map(|address| match (&address.name, &address.email) {
            (Some(name), Some(email)) => format!("{name:?} <{email}>"),
            (None, Some(email)) => format!("<{email}>"),
            (Some(name), None) => format!("{name:?}"),
            (None, None) => String::new(),
        })
        .collect();
    rendered.join(", ")
}

fn id_list(ids: &[String]) -> String {
    if ids.is_empty() {
        return "(none)".to_owned();
    }
    ids.iter()
        .map(|id| format!("<{id}>"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn bracketed(id: Option<&str>) -> String {
    id.map_or_else(|| "(none)".to_owned(), |id| format!("<{id}>"))
}

fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

#[cfg(test)]
mod tests {
    use super::super::parse_message;
    use super::*;

    const RAW: &[u8] = b"From: Ann <ann@x.org>\r\nTo: bob@y.org\r\nSubject: Re: Hi\r\nMessage-ID: <m2@x>\r\n\
References: <m1@x>\r\nAuto-Submitted: auto-replied\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nhello there\r\n--b\r\nContent-Type: application/pdf; name=a.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b--\r\n";

    #[test]
    fn text_report_shows_each_section() {
        let text = render_text(&parse_message(RAW));
        for expected in [
            "message-id:  <m2@x>",
            "subject:     Re: Hi",
            "from:        \"Ann\" <ann@x.org>",
            "parents:      <m1@x>",
            "subject key:  \"hi\"",
            "participants: ann@x.org, bob@y.org",
            "automatic:   yes (auto-reply: yes)",
            "auto-submitted=auto-replied",
            "hello there",
            "part 2: application/pdf 4 bytes \"a.pdf\"",
            "problems:    1",
            "missing date header",
            "headers:     7",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn text_report_shows_unparsed_reason() {
        let text = render_text(&parse_message(b""));
        assert!(text.contains("UNPARSED:    empty message"));
    }

    #[test]
    fn json_report_has_message_and_thread_keys() {
        let value = inspect_json(&parse_message(RAW));
        assert_eq!(value["message"]["message_id"], "m2@x");
        assert_eq!(value["message"]["attachments"][0]["filename"], "a.pdf");
        assert_eq!(value["thread_keys"]["parent_ids"][0], "m1@x");
        assert_eq!(value["thread_keys"]["normalized_subject"], "hi");
    }
}
