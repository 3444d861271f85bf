//! Connecting: TLS modes, certificate checks, credentials, unreachable and silent servers.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use super::*;

#[tokio::test]
async fn implicit_tls_and_starttls_with_lab_ca() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    for mode in [TlsMode::Implicit, TlsMode::StartTls] {
        let mut client = ImapClient::connect(&lab.settings("alice", mode))
            .await
            .unwrap_or_else(|error| panic!("{mode:?}: {error}"));
        assert!(client.supports_idle(), "{mode:?}: dovecot announces IDLE");
        let inbox = client.select("INBOX").await.expect("select inbox");
        assert!(inbox.uid_validity > 0);
        client.logout().await;
    }
}

#[tokio::test]
async fn plain_is_refused_unless_insecure() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let mut settings = lab.settings("alice", TlsMode::Plain);
    let refused = ImapClient::connect(&settings).await;
    assert!(matches!(refused, Err(ImapError::Config(_))), "{refused:?}");
    settings.insecure = true;
    let mut client = ImapClient::connect(&settings)
        .await
        .expect("plain with insecure");
    client.select("INBOX").await.expect("select over plain");
    client.logout().await;
}

#[tokio::test]
async fn system_roots_do_not_trust_the_lab_certificate() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    for mode in [TlsMode::Implicit, TlsMode::StartTls] {
        let mut settings = lab.settings("alice", mode);
        settings.ca_file = None;
        let error = ImapClient::connect(&settings)
            .await
            .expect_err("lab certificate must not verify against system roots");
        assert!(error.is_tls(), "{mode:?}: {error:?}");
        assert!(!error.is_transient());
        let shown = error.to_string();
        assert!(
            shown.contains(&lab.host) && shown.contains("set ca_file"),
            "{shown}"
        );
    }
}

#[tokio::test]
async fn unreadable_ca_file_is_a_config_error() {
    let lab = lab_from_env();
    let mut settings = lab.settings("alice", TlsMode::Implicit);
    settings.ca_file = Some(PathBuf::from("/nonexistent/inboxd-ca.pem"));
    let error = ImapClient::connect(&settings)
        .await
        .expect_err("missing ca file");
    assert!(matches!(error, ImapError::Config(_)), "{error:?}");
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_without_the_password() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let mut settings = lab.settings("alice", TlsMode::Implicit);
    settings.password = "not-the-password-42".to_owned();
    let error = ImapClient::connect(&settings)
        .await
        .expect_err("bad password");
    assert!(error.is_auth(), "{error:?}");
    assert!(!error.is_transient());
    let shown = format!("{error} {error:?}");
    assert!(shown.contains("alice@inboxd.test") && shown.contains("check the password"));
    assert!(!shown.contains("not-the-password-42"));
}

#[tokio::test]
async fn closed_port_is_a_transient_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    let mut settings = lab_from_env().settings("alice", TlsMode::Implicit);
    settings.host = "127.0.0.1".to_owned();
    settings.port = port;
    let error = ImapClient::connect(&settings)
        .await
        .expect_err("closed port");
    assert!(matches!(error, ImapError::Connect { .. }), "{error:?}");
    assert!(error.is_transient());
}

#[tokio::test]
async fn silent_server_times_out() {
    // Accepts TCP but never speaks: the greeting (plain) or handshake (TLS) must time out.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let keep_open = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    for mode in [TlsMode::Plain, TlsMode::Implicit] {
        let mut settings = lab_from_env().settings("alice", mode);
        settings.host = "127.0.0.1".to_owned();
        settings.port = port;
        settings.insecure = true;
        settings.timeout = Duration::from_millis(500);
        let started = Instant::now();
        let error = ImapClient::connect(&settings)
            .await
            .expect_err("silent server");
        assert!(
            error.is_timeout() && error.is_transient(),
            "{mode:?}: {error:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    keep_open.abort();
}
