//! Sends to a scripted peer: servers without DSN or 8BITMIME, a silent server, refused ports
//! and settings that must be refused before any connection.

use super::fake_server::FakeServer;
use super::*;

fn envelope(tag: &str) -> Envelope {
    Envelope {
        mail_from: format!("support+{tag}@inboxd.test"),
        recipients: vec!["alice@inboxd.test".to_owned()],
        envelope_id: format!("env+{tag}"),
    }
}

fn plain(port: u16) -> SmtpSettings {
    SmtpSettings {
        insecure: true,
        timeout: Duration::from_secs(10),
        ..settings_for("127.0.0.1", port, SmtpTls::Plain)
    }
}

fn command_starting<'a>(commands: &'a [String], prefix: &str) -> &'a str {
    commands
        .iter()
        .find(|command| command.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {commands:?}"))
}

#[tokio::test]
async fn server_with_dsn_gets_every_dsn_parameter() {
    let server = FakeServer::start(&["DSN", "8BITMIME", "SIZE 1000000"], true).await;
    let raw = test_message("alice@inboxd.test", "m1@inboxd.test");
    let outcome = send(&plain(server.port), &envelope("t1"), &dsn_all(), &raw)
        .await
        .expect("send");
    assert!(outcome.dsn_supported);
    let data = outcome.data.expect("data sent");
    assert_eq!(data.queue_id.as_deref(), Some("FAKE42"));
    let recorded = server.recorded();
    assert_eq!(
        command_starting(&recorded.commands, "MAIL"),
        format!(
            "MAIL FROM:<support+t1@inboxd.test> SIZE={} BODY=8BITMIME RET=HDRS ENVID=env+2Bt1",
            raw.len()
        )
    );
    assert_eq!(
        command_starting(&recorded.commands, "RCPT"),
        "RCPT TO:<alice@inboxd.test> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;alice@inboxd.test"
    );
}

#[tokio::test]
async fn server_without_dsn_gets_no_dsn_parameters() {
    let server = FakeServer::start(&["8BITMIME"], true).await;
    let raw = test_message("alice@inboxd.test", "m2@inboxd.test");
    let outcome = send(&plain(server.port), &envelope("t2"), &dsn_all(), &raw)
        .await
        .expect("send");
    assert!(!outcome.dsn_supported);
    assert!(outcome.data.is_some_and(|data| data.accepted));
    let recorded = server.recorded();
    assert_eq!(
        command_starting(&recorded.commands, "MAIL"),
        "MAIL FROM:<support+t2@inboxd.test> BODY=8BITMIME"
    );
    assert_eq!(
        command_starting(&recorded.commands, "RCPT"),
        "RCPT TO:<alice@inboxd.test>"
    );
    assert_eq!(recorded.commands.last().map(String::as_str), Some("QUIT"));
}

#[tokio::test]
async fn data_goes_out_dot_stuffed_and_otherwise_unchanged() {
    let server = FakeServer::start(&["8BITMIME"], true).await;
    let raw = test_message("alice@inboxd.test", "m3@inboxd.test");
    send(&plain(server.port), &envelope("t3"), &dsn_all(), &raw)
        .await
        .expect("send");
    let recorded = server.recorded();
    let mut expected = String::from_utf8(raw).expect("test message is utf-8");
    expected = expected.replace("\r\n.", "\r\n..");
    assert_eq!(String::from_utf8_lossy(&recorded.data), expected);
}

#[tokio::test]
async fn eight_bit_data_needs_8bitmime() {
    let server = FakeServer::start(&["DSN"], true).await;
    let raw = test_message("alice@inboxd.test", "m4@inboxd.test");
    let error = send(&plain(server.port), &envelope("t4"), &dsn_all(), &raw)
        .await
        .expect_err("no 8BITMIME");
    assert!(
        matches!(error, SmtpError::Unsupported("8BITMIME")),
        "{error:?}"
    );
    assert!(error.is_permanent());
    let recorded = server.recorded();
    assert!(!recorded.commands.iter().any(|c| c.starts_with("MAIL")));
}

#[tokio::test]
async fn starttls_is_required_when_configured() {
    let server = FakeServer::start(&["DSN"], true).await;
    let mut settings = plain(server.port);
    settings.tls = SmtpTls::StartTls;
    let error = check(&settings).await.expect_err("no STARTTLS offered");
    assert!(
        matches!(error, SmtpError::Unsupported("STARTTLS")),
        "{error:?}"
    );
}

#[tokio::test]
async fn silent_server_times_out() {
    // A real 300 ms wait: tokio's paused clock needs the test-util feature, which the main
    // crate does not enable.
    let server = FakeServer::start(&[], false).await;
    let mut settings = plain(server.port);
    settings.timeout = Duration::from_millis(300);
    let error = check(&settings).await.expect_err("no greeting");
    assert!(
        matches!(
            error,
            SmtpError::Timeout {
                operation: "greeting",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_transient());
}

#[tokio::test]
async fn refused_port_is_a_transient_connect_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    let error = check(&plain(port)).await.expect_err("nothing listens");
    assert!(matches!(error, SmtpError::Connect { .. }), "{error:?}");
    assert!(error.is_transient() && !error.is_permanent());
}

#[tokio::test]
async fn plain_text_is_refused_without_insecure() {
    let mut settings = plain(25);
    settings.insecure = false;
    let error = check(&settings).await.expect_err("plain needs insecure");
    assert!(matches!(error, SmtpError::Config(_)), "{error:?}");
    assert!(error.is_permanent());
}

#[tokio::test]
async fn unreadable_ca_file_is_a_config_error() {
    let mut settings = settings_for("127.0.0.1", 25, SmtpTls::StartTls);
    settings.ca_file = Some("/nonexistent/ca.pem".into());
    let error = check(&settings).await.expect_err("missing ca file");
    assert!(matches!(error, SmtpError::Config(_)), "{error:?}");
}
