//! Session failures against a scripted local server (replies Dovecot never sends).

use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

use tokio_util::sync::CancellationToken;

use super::*;

/// What the scripted server does when it receives `SELECT`.
#[derive(Clone, Copy)]
enum OnSelect {
    /// Never answers.
    Silent,
    /// Writes these bytes (`{tag}` replaced by the command's tag), then keeps serving.
    Reply(&'static str),
    /// Writes these bytes, then closes the connection.
    ReplyAndClose(&'static str),
}

/// A one-connection plain-text IMAP server that accepts any LOGIN; returns its port.
async fn scripted_server(on_select: OnSelect) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    tokio::spawn(async move {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let (reader, mut writer) = socket.into_split();
        let mut lines = BufReader::new(reader).lines();
        if writer
            .write_all(b"* OK scripted server ready\r\n")
            .await
            .is_err()
        {
            return;
        }
        while let Ok(Some(line)) = lines.next_line().await {
            let mut words = line.split(' ');
            let tag = words.next().unwrap_or("*").to_owned();
            let command = words.next().unwrap_or("").to_ascii_uppercase();
            let reply = match (command.as_str(), on_select) {
                ("LOGIN", _) => format!("{tag} OK [CAPABILITY IMAP4rev1 IDLE] logged in\r\n"),
                ("SELECT", OnSelect::Silent) => continue,
                ("SELECT", OnSelect::Reply(bytes)) => bytes.replace("{tag}", &tag),
                ("SELECT", OnSelect::ReplyAndClose(bytes)) => {
                    let _ = writer.write_all(bytes.as_bytes()).await;
                    return;
                }
                _ => format!("{tag} BAD unexpected command\r\n"),
            };
            if writer.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    port
}

async fn connect_scripted(on_select: OnSelect) -> ImapClient {
    let port = scripted_server(on_select).await;
    let settings = ImapSettings {
        host: "127.0.0.1".to_owned(),
        port,
        tls: TlsMode::Plain,
        username: "user@example.test".to_owned(),
        password: "secret".to_owned(),
        auth: crate::oauth::sasl::AuthMechanism::Password,
        ca_file: None,
        insecure: true,
        timeout: Duration::from_millis(500),
    };
    ImapClient::connect(&settings)
        .await
        .expect("login to scripted server")
}

#[tokio::test]
async fn timeout_drops_the_session_and_later_calls_fail_fast() {
    let mut client = connect_scripted(OnSelect::Silent).await;
    assert!(client.supports_idle() && client.is_usable());
    let error = client.select("INBOX").await.expect_err("silent select");
    assert!(error.is_timeout() && error.is_transient(), "{error:?}");
    assert!(!client.is_usable());
    let next = client.uids_after(0).await.expect_err("session is gone");
    assert!(matches!(next, ImapError::Disconnected) && next.is_transient());
    let idle = client
        .idle_wait(Duration::from_secs(1), &CancellationToken::new())
        .await;
    assert!(matches!(idle, Err(ImapError::Disconnected)), "{idle:?}");
}

#[tokio::test]
async fn unparseable_response_is_a_protocol_error_without_server_bytes() {
    let mut client = connect_scripted(OnSelect::Reply("* GARBAGE (secret-mail-content\r\n")).await;
    let error = client.select("INBOX").await.expect_err("garbage");
    assert!(matches!(error, ImapError::Protocol(_)), "{error:?}");
    assert!(!format!("{error} {error:?}").contains("secret-mail-content"));
    assert!(!client.is_usable());
}

#[tokio::test]
async fn bye_then_close_is_a_transient_connection_loss() {
    let mut client =
        connect_scripted(OnSelect::ReplyAndClose("* BYE server shutting down\r\n")).await;
    let error = client.select("INBOX").await.expect_err("bye");
    assert!(
        matches!(error, ImapError::ConnectionLost { .. }),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert!(!client.is_usable());
}

#[tokio::test]
async fn select_without_uidvalidity_is_a_protocol_error() {
    let mut client = connect_scripted(OnSelect::Reply("* 3 EXISTS\r\n{tag} OK selected\r\n")).await;
    let error = client.select("INBOX").await.expect_err("no uidvalidity");
    assert!(matches!(error, ImapError::Protocol(_)), "{error:?}");
}
