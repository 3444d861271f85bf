//! The byte stream under the IMAP session (plain TCP or rustls) and the TLS client setup.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use super::ImapError;

/// A connection that is either still plain (before `STARTTLS`, or `TlsMode::Plain`) or TLS.
#[derive(Debug)]
pub(super) enum Transport {
    /// Unencrypted TCP.
    Plain(TcpStream),
    /// TLS over TCP; boxed because the rustls state is large.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// System trust anchors, loaded once per process (reading the store takes milliseconds of
/// blocking file I/O, so it runs on the blocking pool).
static SYSTEM_ROOTS: OnceCell<Arc<RootCertStore>> = OnceCell::const_new();

/// Builds the TLS connector: trusts only the PEM certificates in `ca_file` when given, the
/// system roots otherwise. Uses the ring provider explicitly so no process-wide default is needed.
pub(crate) async fn tls_connector(ca_file: Option<&Path>) -> Result<TlsConnector, ImapError> {
    let roots = match ca_file {
        Some(path) => Arc::new(roots_from_pem_file(path).await?),
        None => SYSTEM_ROOTS
            .get_or_try_init(load_system_roots)
            .await?
            .clone(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ImapError::Config(format!("tls protocol setup failed: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn roots_from_pem_file(path: &Path) -> Result<RootCertStore, ImapError> {
    let shown = path.display();
    let pem = tokio::fs::read(path)
        .await
        .map_err(|error| ImapError::Config(format!("cannot read ca_file {shown}: {error}")))?;
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|error| {
            ImapError::Config(format!("ca_file {shown} is not valid pem: {error}"))
        })?;
        roots.add(certificate).map_err(|error| {
            ImapError::Config(format!(
                "ca_file {shown} holds an unusable certificate: {error}"
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(ImapError::Config(format!(
            "ca_file {shown} contains no certificate"
        )));
    }
    Ok(roots)
}

async fn load_system_roots() -> Result<Arc<RootCertStore>, ImapError> {
    let loaded = tokio::task::spawn_blocking(rustls_native_certs::load_native_certs)
        .await
        .map_err(|error| ImapError::Config(format!("loading system roots failed: {error}")))?;
    for error in &loaded.errors {
        tracing::warn!(error = %error, "skipping unreadable system root certificate");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
    if ignored > 0 {
        tracing::debug!(
            added,
            ignored,
            "some system root certificates were not usable"
        );
    }
    if roots.is_empty() {
        return Err(ImapError::Config(
            "no system root certificates found; set ca_file".to_owned(),
        ));
    }
    Ok(Arc::new(roots))
}

/// Runs the TLS handshake. Certificate and alert failures become [`ImapError::Tls`].
pub(super) async fn start_tls(
    connector: &TlsConnector,
    host: &str,
    port: u16,
    tcp: TcpStream,
) -> Result<Transport, ImapError> {
    let server_name = rustls_pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| ImapError::Config(format!("host {host} is not a valid tls server name")))?;
    match connector.connect(server_name, tcp).await {
        Ok(stream) => Ok(Transport::Tls(Box::new(stream))),
        Err(error) => Err(classify_handshake_error(host, port, error)),
    }
}

fn classify_handshake_error(host: &str, port: u16, error: io::Error) -> ImapError {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls_error) => ImapError::Tls {
            host: host.to_owned(),
            reason: tls_error.to_string(),
        },
        None => ImapError::Connect {
            host: host.to_owned(),
            port,
            source: error,
        },
    }
}
