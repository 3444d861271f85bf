//! Tests of whole sends: `lab` against the real test Postfix (scripts/testlab; settings from
//! INBOXD_TEST_SMTP_HOST, INBOXD_TEST_SMTP_PORT, INBOXD_TEST_IMAP_CA, INBOXD_TEST_POSTFIX_LOG,
//! INBOXD_TEST_IMAPS_PORT, INBOXD_TEST_IMAP_PASSWORD), `scripted` against a scripted peer for
//! servers the lab does not have. Lab tests deliver only to alice and bob; bounces go to
//! support's INBOX, which they read but never change. When the lab is unreachable a lab test
//! prints a note and passes, except with CI=true, where it fails.

mod fake_server;
mod lab;
mod scripted;

use std::time::Duration;

use super::*;

/// A unique tag for addresses, ids and subjects of one test.
fn unique_tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A small CRLF message with a line starting with a dot (to prove dot-stuffing round-trips)
/// and 8-bit text (so `BODY=8BITMIME` is used).
fn test_message(to: &str, message_id: &str) -> Vec<u8> {
    format!(
        "From: Support <support@inboxd.test>\r\n\
         To: <{to}>\r\n\
         Subject: smtp module test {message_id}\r\n\
         Message-ID: <{message_id}>\r\n\
         Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         Grüße from the smtp module test.\r\n\
         .a line that starts with a dot\r\n\
         ..and one with two\r\n\
         last line\r\n"
    )
    .into_bytes()
}

/// Failure notices only: what lab sends to alice and bob ask for, so that they put no
/// success notices into support's INBOX.
fn dsn_failures() -> DsnRequest {
    DsnRequest {
        notify: vec![Notify::Failure],
        ret_headers_only: true,
    }
}

fn dsn_all() -> DsnRequest {
    DsnRequest {
        notify: vec![Notify::Success, Notify::Failure, Notify::Delay],
        ret_headers_only: true,
    }
}

fn settings_for(host: &str, port: u16, tls: SmtpTls) -> SmtpSettings {
    SmtpSettings {
        host: host.to_owned(),
        port,
        tls,
        username: None,
        password: None,
        auth: crate::oauth::sasl::AuthMechanism::Password,
        ca_file: None,
        insecure: false,
        timeout: Duration::from_secs(30),
        helo_name: "tests.inboxd.test".to_owned(),
    }
}

#[test]
fn error_predicates_follow_the_reply_class() {
    let rejected = |code: u16| SmtpError::Rejected {
        command: "MAIL FROM",
        code,
        message: "x".to_owned(),
        permanent: code >= 500,
    };
    assert!(rejected(451).is_transient() && !rejected(451).is_permanent());
    assert!(rejected(550).is_permanent() && !rejected(550).is_transient());
    let lost = SmtpError::ConnectionLost {
        operation: "DATA",
        reason: "reset".to_owned(),
    };
    assert!(lost.is_transient() && !lost.is_permanent());
    let protocol = SmtpError::Protocol("garbage".to_owned());
    assert!(!protocol.is_transient() && !protocol.is_permanent());
    assert!(SmtpError::Unsupported("8BITMIME").is_permanent());
}

#[test]
fn error_display_hides_addresses() {
    let error = SmtpError::Rejected {
        command: "MAIL FROM",
        code: 553,
        message: "5.1.8 <bounces+abc@example.org>: Sender address rejected".to_owned(),
        permanent: true,
    };
    let shown = error.to_string();
    assert!(!shown.contains("example.org"), "{shown}");
    assert!(
        shown.contains("553 5.1.8 <address> Sender address rejected"),
        "{shown}"
    );
}
