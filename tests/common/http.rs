//! Helpers for tests of the HTTP API: a raw HTTP/1.1 client (so a test can send anything, including
//! broken bodies), a client bound to a token, and Maildir fixtures.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP answer.
pub struct Answer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "status {} body is not JSON ({err}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A raw HTTP/1.1 exchange over TCP (so the test can send anything, including broken bodies).
pub async fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to the api");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str("\r\n");
    // The server may answer (413) and close before taking the whole body: ignore write errors.
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw)).await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// A client bound to one token.
#[derive(Clone)]
pub struct Api {
    pub address: SocketAddr,
    pub token: Option<String>,
}

impl Api {
    pub fn with(&self, token: &str) -> Api {
        Api {
            address: self.address,
            token: Some(token.to_string()),
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        http(self.address, "GET", path, self.token.as_deref(), None, b"").await
    }

    pub async fn send(&self, method: &str, path: &str, body: &Value) -> Answer {
        let bytes = body.to_string();
        http(
            self.address,
            method,
            path,
            self.token.as_deref(),
            Some("application/json"),
            bytes.as_bytes(),
        )
        .await
    }
}

/// A Maildir with `messages` as new mail.
pub fn maildir(root: &Path, name: &str, messages: &[Vec<u8>]) -> PathBuf {
    let path = root.join(name);
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(path.join(sub)).expect("maildir");
    }
    for (index, raw) in messages.iter().enumerate() {
        std::fs::write(path.join(format!("new/{index}.{name}.host")), raw).expect("message");
    }
    path
}
