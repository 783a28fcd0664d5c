//! HTTPS served directly with rustls. The certificate and key are read from PEM files and reloaded
//! on SIGHUP or when the files change (checked every `reload_check_ms`): new handshakes use the new
//! certificate, open connections keep theirs, nothing is dropped. A reload that fails (half-written
//! files during renewal) keeps serving the previous certificate and tries again on the next change.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsSettings;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.cert_file {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("tls.key_file {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("certificate and key do not form a usable TLS configuration: {0}")]
    Config(String),
}

impl TlsError {
    pub fn code(&self) -> &'static str {
        match self {
            TlsError::Cert { .. } => "tls_cert",
            TlsError::Key { .. } => "tls_key",
            TlsError::Config(_) => "tls_config",
        }
    }
}

pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Cert {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(err("holds no certificate".into()));
    }
    Ok(certs)
}

/// Loads the files into a server configuration (ring provider, HTTP/1.1).
pub fn load(settings: &TlsSettings) -> Result<ServerConfig, TlsError> {
    let certs = read_certs(&settings.cert_file)?;
    let key_err = |reason: String| TlsError::Key {
        path: settings.key_file.display().to_string(),
        reason,
    };
    let pem = std::fs::read(&settings.key_file).map_err(|e| key_err(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| key_err(format!("no PEM private key: {e}")))?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The served certificate: reloadable, with its expiry for metrics and the doctor.
#[derive(Clone)]
pub struct TlsState {
    pub rustls: RustlsConfig,
    settings: TlsSettings,
    not_after: Arc<AtomicI64>,
}

fn modified(settings: &TlsSettings) -> Option<(SystemTime, SystemTime)> {
    let c = std::fs::metadata(&settings.cert_file)
        .ok()?
        .modified()
        .ok()?;
    let k = std::fs::metadata(&settings.key_file)
        .ok()?
        .modified()
        .ok()?;
    Some((c, k))
}

impl TlsState {
    pub fn new(settings: &TlsSettings) -> Result<Self, TlsError> {
        let config = load(settings)?;
        let state = Self {
            rustls: RustlsConfig::from_config(Arc::new(config)),
            settings: settings.clone(),
            not_after: Arc::new(AtomicI64::new(0)),
        };
        state.note_expiry();
        Ok(state)
    }

    fn note_expiry(&self) {
        if let Some(t) = read_certs(&self.settings.cert_file)
            .ok()
            .and_then(|c| c.first().and_then(|leaf| cert_not_after(leaf)))
        {
            self.not_after.store(t, Ordering::Relaxed);
        }
    }

    /// Unix seconds when the served leaf certificate expires (0 if unknown).
    pub fn not_after(&self) -> i64 {
        self.not_after.load(Ordering::Relaxed)
    }

    /// Loads the files again and swaps them in for new handshakes.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = load(&self.settings)?;
        self.rustls.reload_from_config(Arc::new(config));
        self.note_expiry();
        tracing::info!(cert = %self.settings.cert_file.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// Reloads on SIGHUP and on file change until `stop` turns true.
    pub async fn watch(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).ok();
        let period = Duration::from_millis(self.settings.reload_check_ms);
        let mut seen = modified(&self.settings);
        loop {
            let hangup = async {
                match hup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let forced = tokio::select! {
                _ = hangup => true,
                _ = tokio::time::sleep(period) => false,
                _ = stop.changed() => return,
            };
            let now = modified(&self.settings);
            if forced || now != seen {
                match self.reload() {
                    Ok(()) => seen = now,
                    Err(e) => {
                        tracing::error!(error = %e, code = e.code(), "TLS reload failed; still serving the previous certificate")
                    }
                }
            }
        }
    }
}

/// A plain-HTTP server that sends every request to the same path on HTTPS.
pub fn redirect_router(https_port: u16) -> axum::Router {
    use axum::http::{header, StatusCode, Uri};
    use axum::response::IntoResponse;
    axum::Router::new().fallback(move |headers: axum::http::HeaderMap, uri: Uri| async move {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.rsplit_once(':').map(|(name, _)| name).unwrap_or(h))
            .filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-[]:".contains(&b))
            })
            .unwrap_or("localhost")
            .to_string();
        let port = if https_port == 443 {
            String::new()
        } else {
            format!(":{https_port}")
        };
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, format!("https://{host}{port}{path}"))],
        )
            .into_response()
    })
}

/// Serves `redirect_router` on `addr` until `stop` turns true.
pub async fn serve_redirect(
    listener: tokio::net::TcpListener,
    https_port: u16,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let served = axum::serve(listener, redirect_router(https_port))
        .with_graceful_shutdown(async move {
            let _ = stop.changed().await;
        })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "HTTP redirect listener failed");
    }
}

pub async fn bind_redirect(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// `notAfter` of an X.509 certificate, as Unix seconds. A small DER walk: Certificate ->
/// tbsCertificate -> (version?, serial, signature, issuer, validity -> notAfter).
pub fn cert_not_after(der: &[u8]) -> Option<i64> {
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let tag = *input.first()?;
        let first = *input.get(1)? as usize;
        let (len, head) = if first < 0x80 {
            (first, 2)
        } else {
            let n = first & 0x7f;
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | *input.get(2 + i)? as usize;
            }
            (len, 2 + n)
        };
        let body = input.get(head..head + len)?;
        Some((tag, body, &input[head + len..]))
    }
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after; // explicit version
    }
    for _ in 0..3 {
        rest = tlv(rest)?.2; // serial, signature algorithm, issuer
    }
    let (_, validity, _) = tlv(rest)?;
    let (_, _, after_not_before) = tlv(validity)?;
    let (tag, time, _) = tlv(after_not_before)?;
    let text = std::str::from_utf8(time).ok()?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i16 = text.get(0..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(0..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let num = |r: std::ops::Range<usize>| -> Option<i8> { rest.get(r)?.parse().ok() };
    let date = jiff::civil::DateTime::new(
        year,
        num(0..2)?,
        num(2..4)?,
        num(4..6)?,
        num(6..8)?,
        num(8..10)?,
        0,
    )
    .ok()?;
    Some(
        date.to_zoned(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp()
            .as_second(),
    )
}

/// Serves `app` over HTTPS on `listener` until `shutdown` completes, then stops gracefully
/// (in-flight requests finish, for up to 30 s).
pub fn spawn_https(
    listener: tokio::net::TcpListener,
    tls: TlsState,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let std_listener = listener.into_std()?;
    let handle = axum_server::Handle::new();
    let server = axum_server::tls_rustls::from_tcp_rustls(std_listener, tls.rustls.clone())?
        .handle(handle.clone());
    Ok(tokio::spawn(async move {
        let serve = server.serve(app.into_make_service_with_connect_info::<SocketAddr>());
        tokio::pin!(serve);
        tokio::select! {
            served = &mut serve => {
                if let Err(e) = served {
                    tracing::error!(error = %e, "HTTPS server failed");
                }
                return;
            }
            _ = shutdown => {}
        }
        // The handle's notification reaches only a server already waiting for it: repeat it
        // until the server has stopped.
        loop {
            handle.graceful_shutdown(Some(Duration::from_secs(30)));
            tokio::select! {
                served = &mut serve => {
                    if let Err(e) = served {
                        tracing::error!(error = %e, "HTTPS server failed");
                    }
                    return;
                }
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }))
}
