//! Automatic-mail signals: RFC 3834 (Auto-Submitted), RFC 2369/2919 (list headers) and the
//! de-facto markers of vacation responders and bulk senders.

use super::{AutoSignals, ParsedMessage};

/// Subject prefixes that vacation responders put on their replies (Outlook, Exchange, Gmail,
/// Apple and others, in the languages we see most).
const AUTO_REPLY_SUBJECT_PREFIXES: &[&str] = &[
    "out of office",
    "automatic reply",
    "auto reply",
    "auto-reply",
    "autoreply",
    "auto response",
    "automatic response",
    "auto:",
    "abwesenheitsnotiz",
    "automatische antwort",
    "réponse automatique",
    "respuesta automática",
    "risposta automatica",
    "resposta automática",
    "automatisch antwoord",
    "autosvar",
    "automaattinen vastaus",
    "automatyczna odpowiedź",
    "自动回复",
    "自動回覆",
];

/// Precedence values that mark bulk or automatic mail (RFC 3834 section 3.1.8 tells responders
/// to stay silent on these).
const BULK_PRECEDENCE: &[&str] = &["bulk", "junk", "list", "auto_reply", "auto-reply"];

/// Reads the signals from the decoded header list, subject and From of a parsed message.
pub(super) fn auto_signals(parsed: &ParsedMessage) -> AutoSignals {
    let header = |wanted: &str| {
        parsed
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| value.trim())
    };
    let auto_submitted = header("Auto-Submitted")
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let precedence = header("Precedence")
        .filter(|v| !v.is_empty())
        .map(str::to_ascii_lowercase);
    let list_id = header("List-Id").and_then(list_identifier);
    let list_unsubscribe = header("List-Unsubscribe").is_some();
    let x_autoreply = ["X-Autoreply", "X-Autorespond"]
        .iter()
        .any(|name| header(name).is_some_and(is_affirmative));
    let response_suppressed = header("X-Auto-Response-Suppress").is_some();
    let null_return_path = header("Return-Path").is_some_and(|v| v.replace(' ', "") == "<>");

    // RFC 3834 section 5.1: the keyword before any parameters; "no" means a human sent it.
    let submitted_keyword = auto_submitted.as_deref().map(|v| {
        v.split([';', '('])
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    let submitted_by_machine = submitted_keyword.as_deref().is_some_and(|k| k != "no");
    let bulk = precedence
        .as_deref()
        .is_some_and(|p| BULK_PRECEDENCE.contains(&p));
    let is_auto_reply = submitted_keyword.as_deref() == Some("auto-replied")
        || x_autoreply
        || matches!(precedence.as_deref(), Some("auto_reply" | "auto-reply"))
        || parsed.subject.as_deref().is_some_and(has_auto_reply_prefix);
    let from_daemon = parsed
        .from
        .iter()
        .filter_map(|a| a.email.as_deref())
        .any(is_daemon_address);

    AutoSignals {
        is_automatic: submitted_by_machine
            || bulk
            || list_id.is_some()
            || list_unsubscribe
            || response_suppressed
            || null_return_path
            || from_daemon
            || is_auto_reply,
        is_auto_reply,
        auto_submitted,
        precedence,
        list_id,
        list_unsubscribe,
        x_autoreply,
    }
}

/// The `<list-id>` of RFC 2919, or the whole value when it has no brackets.
fn list_identifier(value: &str) -> Option<String> {
    let inner = match (value.rfind('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => value.get(open + 1..close).unwrap_or_default(),
        _ => value,
    };
    let inner = inner.trim();
    (!inner.is_empty()).then(|| inner.to_owned())
}

fn is_affirmative(value: &str) -> bool {
    !["no", "false", "0"]
        .iter()
        .any(|negative| value.eq_ignore_ascii_case(negative))
}

fn has_auto_reply_prefix(subject: &str) -> bool {
    let lowered = subject.trim_start().to_lowercase();
    AUTO_REPLY_SUBJECT_PREFIXES
        .iter()
        .any(|prefix| lowered.starts_with(prefix))
}

fn is_daemon_address(email: &str) -> bool {
    let local = email.split('@').next().unwrap_or_default();
    local.eq_ignore_ascii_case("mailer-daemon")
}

#[cfg(test)]
mod tests {
    use super::super::{AutoSignals, parse_message};

    fn signals(headers: &str) -> AutoSignals {
        let raw = format!("From: a@x.org\r\nTo: b@y.org\r\n{headers}\r\nbody\r\n");
        parse_message(raw.as_bytes()).auto
    }

    #[test]
    fn plain_mail_is_not_automatic() {
        let auto = signals("Subject: hello\r\nAuto-Submitted: no\r\n");
        assert!(!auto.is_automatic && !auto.is_auto_reply);
        assert_eq!(auto.auto_submitted.as_deref(), Some("no"));
    }

    #[test]
    fn auto_submitted_follows_rfc_3834() {
        let auto = signals("Auto-Submitted: auto-generated (failure)\r\n");
        assert!(auto.is_automatic && !auto.is_auto_reply);
        let auto = signals("Auto-Submitted: Auto-Replied\r\n");
        assert!(auto.is_automatic && auto.is_auto_reply);
    }

    #[test]
    fn list_and_bulk_headers_are_automatic() {
        let auto = signals("List-Id: Notmuch Mail <notmuch.notmuchmail.org>\r\n");
        assert_eq!(auto.list_id.as_deref(), Some("notmuch.notmuchmail.org"));
        assert!(auto.is_automatic && !auto.is_auto_reply);
        let auto = signals("List-Unsubscribe: <mailto:u@x.org>\r\n");
        assert!(auto.list_unsubscribe && auto.is_automatic);
        let auto = signals("Precedence: BULK\r\n");
        assert_eq!(auto.precedence.as_deref(), Some("bulk"));
        assert!(auto.is_automatic);
        let auto = signals("Precedence: first-class\r\n");
        assert!(!auto.is_automatic);
        let auto = signals("X-Auto-Response-Suppress: All\r\n");
        assert!(auto.is_automatic && !auto.is_auto_reply);
        let auto = signals("Return-Path: <>\r\n");
        assert!(auto.is_automatic);
    }

    #[test]
    fn vacation_markers_are_auto_replies() {
        for headers in [
            "X-Autoreply: yes\r\n",
            "X-Autorespond: on\r\n",
            "Precedence: auto_reply\r\n",
            "Subject: Out of Office: Re: your order\r\n",
            "Subject: Automatic reply: hello\r\n",
            "Subject: Auto reply: Nyaan\r\n",
            "Subject: =?utf-8?q?R=C3=A9ponse_automatique?= : absent\r\n",
        ] {
            let auto = signals(headers);
            assert!(auto.is_auto_reply && auto.is_automatic, "{headers}");
        }
        assert!(signals("X-Autoreply: yes\r\n").x_autoreply);
        assert!(!signals("Subject: Re: out of office plans\r\n").is_auto_reply);
    }

    #[test]
    fn mailer_daemon_is_automatic() {
        let raw = b"From: MAILER-DAEMON@mx.example.org\r\nSubject: failure\r\n\r\nbody";
        assert!(parse_message(raw).auto.is_automatic);
    }
}
