//! The byte stream under the SMTP session and the TLS setup.
//!
//! The TCP connection is opened here rather than by lettre for two reasons: lettre leaves
//! Nagle's algorithm on, and it writes the message data and the closing `CRLF . CRLF` in two
//! writes, so the second waits for the server's delayed ACK (measured on loopback: about 45 ms
//! per message, against 2-20 ms in one write); and opening the socket and the implicit TLS
//! handshake here gives each step its own timeout and a precise error. STARTTLS still goes
//! through lettre, with the same trust anchors.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use lettre::transport::smtp::client::{
    AsyncTokioStream, Certificate, CertificateStore, TlsParameters,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use super::{SmtpError, SmtpSettings};

/// A connection that is plain TCP (before STARTTLS, or `SmtpTls::Plain`) or implicit TLS.
#[derive(Debug)]
pub(super) enum Transport {
    /// Unencrypted TCP; lettre wraps it in TLS on STARTTLS.
    Plain(TcpStream),
    /// TLS from the first byte; boxed because the rustls state is large.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncTokioStream for Transport {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Transport::Plain(stream) => stream.peer_addr(),
            Transport::Tls(stream) => stream.get_ref().0.peer_addr(),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_read(context, buffer),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_read(context, buffer),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_write(context, buffer),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_write(context, buffer),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_flush(context),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(context),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_shutdown(context),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(context),
        }
    }
}

/// Opens the TCP connection under the timeout, with Nagle off (see the module comment).
pub(super) async fn open_tcp(settings: &SmtpSettings) -> Result<TcpStream, SmtpError> {
    let address = (settings.host.as_str(), settings.port);
    let tcp = match tokio::time::timeout(settings.timeout, TcpStream::connect(address)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(error)) => {
            return Err(SmtpError::Connect {
                host: settings.host.clone(),
                port: settings.port,
                reason: error.to_string(),
            });
        }
        Err(_) => {
            return Err(SmtpError::Timeout {
                operation: "connect",
                after: settings.timeout,
            });
        }
    };
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(error = %error, "cannot disable nagle on smtp socket");
    }
    Ok(tcp)
}

/// The certificates TLS trusts: only those in `ca_file` when set, else the system roots.
pub(super) struct TrustAnchors(Arc<Vec<CertificateDer<'static>>>);

/// System roots, loaded once per process: reading the store takes tens of milliseconds of
/// blocking file I/O (measured about 40 ms here), so it runs once, on the blocking pool.
static SYSTEM_ROOTS: OnceCell<Arc<Vec<CertificateDer<'static>>>> = OnceCell::const_new();

impl TrustAnchors {
    /// Reads `ca_file` (every time, so a replaced file is picked up) or the cached system
    /// roots.
    pub(super) async fn load(ca_file: Option<&Path>) -> Result<TrustAnchors, SmtpError> {
        let certificates = match ca_file {
            Some(path) => Arc::new(certificates_from_pem_file(path).await?),
            None => SYSTEM_ROOTS
                .get_or_try_init(load_system_roots)
                .await?
                .clone(),
        };
        Ok(TrustAnchors(certificates))
    }

    /// rustls client configuration for implicit TLS, with the ring provider chosen
    /// explicitly so no process-wide default is needed.
    pub(super) fn rustls_connector(&self) -> Result<TlsConnector, SmtpError> {
        let mut roots = RootCertStore::empty();
        let (_, ignored) = roots.add_parsable_certificates(self.0.iter().cloned());
        if roots.is_empty() {
            return Err(SmtpError::Config(format!(
                "no usable trust anchor ({ignored} certificates ignored)"
            )));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| SmtpError::Config(format!("tls protocol setup failed: {error}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsConnector::from(Arc::new(config)))
    }

    /// lettre's TLS settings for STARTTLS, trusting the same certificates; the server's
    /// certificate must match `host`.
    pub(super) fn lettre_parameters(&self, host: &str) -> Result<TlsParameters, SmtpError> {
        let mut builder =
            TlsParameters::builder(host.to_owned()).certificate_store(CertificateStore::None);
        for certificate in self.0.iter() {
            let certificate = Certificate::from_der(certificate.to_vec())
                .map_err(|error| SmtpError::Config(format!("unusable trust anchor: {error}")))?;
            builder = builder.add_root_certificate(certificate);
        }
        builder
            .build()
            .map_err(|error| SmtpError::Config(format!("cannot set up tls: {error}")))
    }
}

async fn certificates_from_pem_file(
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, SmtpError> {
    let shown = path.display();
    let pem = tokio::fs::read(path)
        .await
        .map_err(|error| SmtpError::Config(format!("cannot read ca_file {shown}: {error}")))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| SmtpError::Config(format!("ca_file {shown} is not valid pem: {error}")))?;
    let mut roots = RootCertStore::empty();
    for certificate in &certificates {
        roots.add(certificate.clone()).map_err(|error| {
            SmtpError::Config(format!(
                "ca_file {shown} holds an unusable certificate: {error}"
            ))
        })?;
    }
    if certificates.is_empty() {
        return Err(SmtpError::Config(format!(
            "ca_file {shown} contains no certificate"
        )));
    }
    Ok(certificates)
}

async fn load_system_roots() -> Result<Arc<Vec<CertificateDer<'static>>>, SmtpError> {
    let loaded = tokio::task::spawn_blocking(rustls_native_certs::load_native_certs)
        .await
        .map_err(|error| SmtpError::Config(format!("loading system roots failed: {error}")))?;
    for error in &loaded.errors {
        tracing::warn!(error = %error, "skipping unreadable system root certificate");
    }
    if loaded.certs.is_empty() {
        return Err(SmtpError::Config(
            "no system root certificates found; set ca_file".to_owned(),
        ));
    }
    Ok(Arc::new(loaded.certs))
}

/// The implicit TLS handshake (RFC 8314 §3.3) under the timeout. Certificate and alert
/// failures become [`SmtpError::Tls`].
pub(super) async fn implicit_tls(
    connector: &TlsConnector,
    settings: &SmtpSettings,
    tcp: TcpStream,
) -> Result<Transport, SmtpError> {
    let host = &settings.host;
    let server_name = ServerName::try_from(host.clone())
        .map_err(|_| SmtpError::Config(format!("host {host} is not a valid tls server name")))?;
    let handshake = connector.connect(server_name, tcp);
    match tokio::time::timeout(settings.timeout, handshake).await {
        Ok(Ok(stream)) => Ok(Transport::Tls(Box::new(stream))),
        Ok(Err(error)) => Err(match tls_error_in_io(&error) {
            Some(tls_error) => SmtpError::Tls {
                host: host.clone(),
                reason: tls_error.to_string(),
            },
            None => SmtpError::Connect {
                host: host.clone(),
                port: settings.port,
                reason: format!("tls handshake: {error}"),
            },
        }),
        Err(_) => Err(SmtpError::Timeout {
            operation: "tls handshake",
            after: settings.timeout,
        }),
    }
}

/// tokio-rustls reports a rustls failure as an `io::Error` wrapping the rustls error.
pub(super) fn tls_error_in_io(error: &io::Error) -> Option<&rustls::Error> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}
