//! Sends through the lab Postfix and checks the results in its log and in Dovecot.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::*;

/// How long Postfix and Dovecot get to deliver or bounce (the lab retries every 5 s).
const DELIVERY_WAIT: Duration = Duration::from_secs(90);

struct Lab {
    host: String,
    port: u16,
    imaps_port: u16,
    ca_file: PathBuf,
    maillog: PathBuf,
    password: String,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn lab_from_env() -> Lab {
    let port = |name: &str, default: &str| {
        env_or(name, default)
            .parse::<u16>()
            .expect("test port variable must be a port number")
    };
    Lab {
        host: env_or("INBOXD_TEST_SMTP_HOST", "127.0.0.1"),
        port: port("INBOXD_TEST_SMTP_PORT", "10025"),
        imaps_port: port("INBOXD_TEST_IMAPS_PORT", "10993"),
        ca_file: PathBuf::from(env_or(
            "INBOXD_TEST_IMAP_CA",
            "/tmp/inboxd-infra/dovecot/tls/ca.pem",
        )),
        maillog: PathBuf::from(env_or(
            "INBOXD_TEST_POSTFIX_LOG",
            "/tmp/inboxd-infra/postfix/log/maillog",
        )),
        password: env_or("INBOXD_TEST_IMAP_PASSWORD", "secret"),
    }
}

/// The lab, or `None` (with a note) when its Postfix is down; with CI=true that fails.
async fn reachable_lab() -> Option<Lab> {
    let lab = lab_from_env();
    let probe = TcpStream::connect((lab.host.as_str(), lab.port));
    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), probe).await {
        return Some(lab);
    }
    let note = format!("smtp test server {}:{} unreachable", lab.host, lab.port);
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{note} (CI=true)"
    );
    eprintln!("note: {note}; skipping");
    None
}

impl Lab {
    fn settings(&self, tls: SmtpTls) -> SmtpSettings {
        SmtpSettings {
            ca_file: Some(self.ca_file.clone()),
            insecure: tls == SmtpTls::Plain,
            ..settings_for(&self.host, self.port, tls)
        }
    }

    /// Waits for the Postfix log line of `queue_id` delivering to `recipient`, and returns it.
    async fn wait_for_log(&self, queue_id: &str, recipient: &str) -> String {
        let prefix = format!("{queue_id}: to=<{recipient}>");
        let deadline = Instant::now() + DELIVERY_WAIT;
        loop {
            let log = std::fs::read_to_string(&self.maillog).unwrap_or_default();
            let found = log.lines().find(|line| {
                line.contains(&prefix)
                    && (line.contains("status=sent") || line.contains("status=bounced"))
            });
            if let Some(line) = found {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no delivery line for {prefix} in {}",
                self.maillog.display()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until `user`'s INBOX has messages whose `header` contains `value` and returns
    /// them. Read-only: EXAMINE and BODY.PEEK change nothing in the mailbox.
    async fn wait_for_messages(&self, user: &str, header: &str, value: &str) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + DELIVERY_WAIT;
        loop {
            let messages = self.imap_messages(user, header, value).await;
            if !messages.is_empty() {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "no message with {header} containing {value} in {user}'s INBOX"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn imap_messages(&self, user: &str, header: &str, value: &str) -> Vec<Vec<u8>> {
        const SCRIPT: &str = r#"
import imaplib, ssl, sys
host, port, ca, user, password, header, value = sys.argv[1:8]
context = ssl.create_default_context(cafile=ca)
imap = imaplib.IMAP4_SSL(host, int(port), ssl_context=context, timeout=20)
imap.login(user, password)
imap.select("INBOX", readonly=True)
_, found = imap.uid("SEARCH", None, "HEADER", header, value)
for uid in found[0].split():
    _, parts = imap.uid("FETCH", uid, "(BODY.PEEK[])")
    sys.stdout.buffer.write(parts[0][1] + b"\n=====SPLIT=====\n")
imap.logout()
"#;
        let arguments = [
            self.host.clone(),
            self.imaps_port.to_string(),
            self.ca_file.display().to_string(),
            format!("{user}@inboxd.test"),
            self.password.clone(),
            header.to_owned(),
            value.to_owned(),
        ];
        let output = tokio::task::spawn_blocking(move || {
            Command::new("python3")
                .arg("-c")
                .arg(SCRIPT)
                .args(arguments)
                .output()
        })
        .await
        .expect("imap helper task")
        .expect("python3 runs");
        assert!(
            output.status.success(),
            "imap helper failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let separator: &[u8] = b"\n=====SPLIT=====\n";
        let mut messages = Vec::new();
        let mut rest = output.stdout.as_slice();
        while let Some(position) = rest
            .windows(separator.len())
            .position(|window| window == separator)
        {
            messages.push(rest[..position].to_vec());
            rest = &rest[position + separator.len()..];
        }
        messages
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn expect_queue_id(outcome: &SendOutcome) -> String {
    let data = outcome.data.as_ref().expect("data was sent");
    assert!(data.accepted && !data.permanent, "{data:?}");
    assert_eq!(data.code, 250);
    data.queue_id
        .clone()
        .expect("postfix reply names the queue id")
}

#[tokio::test]
async fn plain_with_insecure_delivers_to_alice_unchanged() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let settings = lab.settings(SmtpTls::Plain);
    check(&settings).await.expect("check over plain text");
    let tag = unique_tag();
    let message_id = format!("{tag}@inboxd.test");
    let envelope = Envelope {
        mail_from: format!("support+{tag}@inboxd.test"),
        recipients: vec!["alice@inboxd.test".to_owned()],
        envelope_id: format!("inboxd-{tag}"),
    };
    let raw = test_message("alice@inboxd.test", &message_id);
    let outcome = send(&settings, &envelope, &dsn_failures(), &raw)
        .await
        .expect("send to alice");
    assert!(outcome.dsn_supported, "the lab postfix announces DSN");
    assert_eq!(
        outcome.recipients,
        vec![("alice@inboxd.test".to_owned(), RecipientResult::Accepted)]
    );
    let queue_id = expect_queue_id(&outcome);
    let line = lab.wait_for_log(&queue_id, "alice@inboxd.test").await;
    assert!(line.contains("status=sent"), "{line}");

    let delivered = lab.wait_for_messages("alice", "Message-ID", &tag).await;
    assert_eq!(delivered.len(), 1);
    // Dot-stuffing undone by the server, line ends and 8-bit text intact, no line added.
    let body = "\r\n\r\nGrüße from the smtp module test.\r\n.a line that starts with a dot\r\n..and one with two\r\nlast line\r\n";
    assert!(
        delivered[0].ends_with(body.as_bytes()),
        "{}",
        String::from_utf8_lossy(&delivered[0])
    );
}

#[tokio::test]
async fn starttls_with_the_lab_ca_delivers_to_bob() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let settings = lab.settings(SmtpTls::StartTls);
    check(&settings).await.expect("check over starttls");
    let tag = unique_tag();
    let envelope = Envelope {
        mail_from: format!("support+{tag}@inboxd.test"),
        recipients: vec!["bob@inboxd.test".to_owned()],
        envelope_id: String::new(),
    };
    let raw = test_message("bob@inboxd.test", &format!("{tag}@inboxd.test"));
    let outcome = send(&settings, &envelope, &dsn_failures(), &raw)
        .await
        .expect("send to bob");
    let queue_id = expect_queue_id(&outcome);
    let line = lab.wait_for_log(&queue_id, "bob@inboxd.test").await;
    assert!(line.contains("status=sent"), "{line}");
}

#[tokio::test]
async fn certificate_from_an_untrusted_ca_is_a_tls_error() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    // Without ca_file only the system roots are trusted, and they do not know the lab CA.
    let mut settings = lab.settings(SmtpTls::StartTls);
    settings.ca_file = None;
    let error = check(&settings).await.expect_err("untrusted certificate");
    assert!(matches!(error, SmtpError::Tls { .. }), "{error:?}");
    assert!(error.to_string().contains("certificate"), "{error}");
    assert!(error.is_permanent() && !error.is_transient());
}

#[tokio::test]
async fn implicit_tls_verifies_the_certificate() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    // The lab has no SMTPS port; Dovecot's IMAPS port shows the TLS step: with the lab CA
    // the handshake passes and the IMAP greeting fails as SMTP, without it TLS fails.
    let mut settings = lab.settings(SmtpTls::Implicit);
    settings.port = lab.imaps_port;
    settings.timeout = Duration::from_secs(10);
    let error = check(&settings).await.expect_err("imap is not smtp");
    assert!(matches!(error, SmtpError::Protocol(_)), "{error:?}");
    settings.ca_file = None;
    let error = check(&settings).await.expect_err("untrusted certificate");
    assert!(matches!(error, SmtpError::Tls { .. }), "{error:?}");
}

#[tokio::test]
async fn unknown_user_bounces_to_the_verp_return_path_with_the_envelope_id() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let tag = unique_tag();
    let recipient = format!("nobody-{tag}@inboxd.test");
    // '+', '=' and a space must survive the xtext round trip.
    let envelope_id = format!("inboxd {tag}+id=1");
    let envelope = Envelope {
        mail_from: format!("support+{tag}@inboxd.test"),
        recipients: vec![recipient.clone()],
        envelope_id: envelope_id.clone(),
    };
    let message_id = format!("{tag}@inboxd.test");
    let raw = test_message(&recipient, &message_id);
    let outcome = send(
        &lab.settings(SmtpTls::StartTls),
        &envelope,
        &dsn_all(),
        &raw,
    )
    .await
    .expect("postfix accepts unknown local users at RCPT time");
    assert_eq!(outcome.recipients[0].1, RecipientResult::Accepted);
    let queue_id = expect_queue_id(&outcome);
    let line = lab.wait_for_log(&queue_id, &recipient).await;
    assert!(line.contains("status=bounced"), "{line}");

    // Dovecot delivers support+<tag> to support (recipient_delimiter "+").
    let reports = lab.wait_for_messages("support", "To", &tag).await;
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    let text = String::from_utf8_lossy(report);
    assert!(contains(report, "report-type=delivery-status"), "{text}");
    assert!(
        contains(report, &format!("Original-Envelope-Id: {envelope_id}")),
        "{text}"
    );
    assert!(
        contains(report, &format!("Original-Recipient: rfc822;{recipient}")),
        "{text}"
    );
    assert!(contains(report, "Action: failed"), "{text}");
    assert!(contains(report, "Status: 5.1.1"), "{text}");
    // RET=HDRS: only the header of the original comes back.
    assert!(contains(report, "text/rfc822-headers"), "{text}");
    assert!(contains(report, &message_id), "{text}");
    assert!(!contains(report, "line that starts with a dot"), "{text}");
}

#[tokio::test]
async fn mixed_recipients_get_their_own_results() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let tag = unique_tag();
    // lettre accepts `nobody@123.456`, Postfix refuses it at RCPT time (501 5.1.3).
    let recipients = ["alice@inboxd.test", "nobody@123.456", "not an address"];
    let envelope = Envelope {
        mail_from: format!("support+{tag}@inboxd.test"),
        recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
        envelope_id: format!("inboxd-{tag}"),
    };
    let raw = test_message("alice@inboxd.test", &format!("{tag}@inboxd.test"));
    let outcome = send(
        &lab.settings(SmtpTls::StartTls),
        &envelope,
        &dsn_failures(),
        &raw,
    )
    .await
    .expect("send with one good recipient");
    let results: Vec<&RecipientResult> = outcome.recipients.iter().map(|(_, r)| r).collect();
    assert_eq!(results[0], &RecipientResult::Accepted);
    let RecipientResult::PermanentFailure {
        code,
        enhanced,
        message,
    } = results[1]
    else {
        panic!("server should refuse the bad domain: {:?}", results[1]);
    };
    assert_eq!((*code, enhanced.as_deref()), (501, Some("5.1.3")));
    assert!(
        message.contains("Bad recipient address syntax"),
        "{message}"
    );
    let RecipientResult::PermanentFailure { message, .. } = results[2] else {
        panic!("bad syntax is refused locally: {:?}", results[2]);
    };
    assert!(message.contains("not sent to the server"), "{message}");
    let queue_id = expect_queue_id(&outcome);
    let line = lab.wait_for_log(&queue_id, "alice@inboxd.test").await;
    assert!(line.contains("status=sent"), "{line}");
}

#[tokio::test]
async fn without_an_accepted_recipient_no_data_is_sent() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let envelope = Envelope {
        mail_from: "support@inboxd.test".to_owned(),
        recipients: vec!["nobody@123.456".to_owned(), "x@1.2.3.4".to_owned()],
        envelope_id: String::new(),
    };
    let raw = test_message("nobody@123.456", &format!("{}@inboxd.test", unique_tag()));
    let outcome = send(
        &lab.settings(SmtpTls::Plain),
        &envelope,
        &dsn_failures(),
        &raw,
    )
    .await
    .expect("transaction runs");
    assert!(outcome.data.is_none(), "{outcome:?}");
    assert_eq!(outcome.recipients.len(), 2);
    assert!(
        outcome.recipients.iter().all(|(_, result)| matches!(
            result,
            RecipientResult::PermanentFailure { code: 501, .. }
        ))
    );
}

#[tokio::test]
async fn refused_return_path_is_a_permanent_rejection() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let envelope = Envelope {
        mail_from: "bounces@123.456".to_owned(),
        recipients: vec!["alice@inboxd.test".to_owned()],
        envelope_id: String::new(),
    };
    let raw = test_message(
        "alice@inboxd.test",
        &format!("{}@inboxd.test", unique_tag()),
    );
    let error = send(
        &lab.settings(SmtpTls::Plain),
        &envelope,
        &dsn_failures(),
        &raw,
    )
    .await
    .expect_err("postfix refuses the sender domain");
    let SmtpError::Rejected {
        command,
        code,
        permanent,
        ..
    } = &error
    else {
        panic!("expected a rejection: {error:?}");
    };
    assert_eq!((*command, *code, *permanent), ("MAIL FROM", 501, true));
    assert!(error.is_permanent() && !error.is_transient());
    assert!(
        !error.to_string().contains("123.456"),
        "address redacted: {error}"
    );
}

#[tokio::test]
async fn credentials_for_a_server_without_auth_fail_clearly() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let mut settings = lab.settings(SmtpTls::StartTls);
    settings.username = Some("support@inboxd.test".to_owned());
    settings.password = Some("hunter2-not-logged".to_owned());
    let error = check(&settings)
        .await
        .expect_err("the lab postfix offers no AUTH");
    assert!(
        matches!(
            error,
            SmtpError::Auth {
                code: None,
                permanent: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_auth());
    assert!(!format!("{error} {error:?}").contains("hunter2"));
}
