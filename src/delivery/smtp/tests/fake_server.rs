//! A scripted SMTP peer for what the lab Postfix cannot show: a server without DSN or
//! 8BITMIME, one that never greets, and the exact command lines and data the client sends.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the client sent: command lines and the message data (still dot-stuffed, without the
/// final `.` line).
#[derive(Debug, Default, Clone)]
pub(super) struct Recorded {
    pub(super) commands: Vec<String>,
    pub(super) data: Vec<u8>,
}

/// A server on 127.0.0.1 answering one connection.
pub(super) struct FakeServer {
    pub(super) port: u16,
    recorded: Arc<Mutex<Recorded>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    /// Starts a server announcing `keywords` after EHLO; with `greet = false` it accepts the
    /// connection and then says nothing.
    pub(super) async fn start(keywords: &'static [&'static str], greet: bool) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let port = listener.local_addr().expect("bound address").port();
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let shared = Arc::clone(&recorded);
        let task = tokio::spawn(async move {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            if greet {
                let _ = serve(stream, keywords, shared).await;
            } else {
                // Hold the connection open without a greeting until the test ends.
                std::future::pending::<()>().await;
                drop(stream);
            }
        });
        FakeServer {
            port,
            recorded,
            task,
        }
    }

    /// Everything recorded so far.
    pub(super) fn recorded(&self) -> Recorded {
        self.recorded.lock().expect("recorder lock").clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    stream: TcpStream,
    keywords: &[&str],
    recorded: Arc<Mutex<Recorded>>,
) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    writer.write_all(b"220 fake.test ESMTP\r\n").await?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let command = String::from_utf8_lossy(&line).trim_end().to_owned();
        recorded
            .lock()
            .expect("recorder lock")
            .commands
            .push(command.clone());
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => {
                let mut reply = String::from("250-fake.test\r\n");
                for keyword in keywords {
                    reply.push_str(&format!("250-{keyword}\r\n"));
                }
                reply.push_str("250 ENHANCEDSTATUSCODES\r\n");
                reply
            }
            "DATA" => {
                writer
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                read_data(&mut reader, &recorded).await?;
                "250 2.0.0 Ok: queued as FAKE42\r\n".to_owned()
            }
            "QUIT" => {
                writer.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => "250 2.0.0 Ok\r\n".to_owned(),
        };
        writer.write_all(reply.as_bytes()).await?;
    }
}

async fn read_data(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    recorded: &Arc<Mutex<Recorded>>,
) -> std::io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 || line == b".\r\n" {
            return Ok(());
        }
        recorded
            .lock()
            .expect("recorder lock")
            .data
            .extend_from_slice(&line);
    }
}
