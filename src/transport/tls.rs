//! TLS for the listener: a certificate and key from PEM files, or a self-signed
//! development certificate generated at the first start and written to a file clients
//! can trust. Its key is kept beside it (`<name>.key.pem`, readable by the owner only),
//! so later starts reuse the pair and the fingerprint clients pinned stays valid.
//! Configured files are read again every `reload_secs` (and on demand,
//! [`TlsReloader`]): a renewed certificate is served to new connections without a
//! restart. [`ServerTls`] is an accepted connection as the transports read it.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use parking_lot::{Mutex, RwLock};
use prometheus_client::metrics::gauge::Gauge;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// TLS settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain. With neither `cert` nor `key`, a self-signed development
    /// certificate is generated at start-up.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// Where the generated development certificate is written, for clients to trust
    /// (its key goes beside it, see [`dev_key_path`]; both are reused at the next start).
    pub dev_cert_path: PathBuf,
    /// Serve plain `ws://` and `http://` instead of TLS (only behind a TLS-terminating
    /// proxy).
    pub insecure_plain: bool,
    /// How often `cert` and `key` are read again (0: only when asked, SIGHUP for the
    /// binary); a changed pair that loads is served to new connections.
    pub reload_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            dev_cert_path: "tickrelay-dev-cert.pem".into(),
            insecure_plain: false,
            reload_secs: 60,
        }
    }
}

/// A ready TLS server configuration.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The rustls configuration for the acceptor.
    pub config: Arc<ServerConfig>,
    /// SHA-256 fingerprint of the leaf certificate, as colon-separated hex.
    pub fingerprint: String,
    /// When the leaf certificate expires (Unix seconds; none if it could not be read).
    pub not_after: Option<i64>,
    /// When the certificate new connections get expires (Unix seconds, 0 if it could
    /// not be read), kept through reloads: for `/metrics`.
    pub expiry: Gauge,
    /// The generated development certificate (PEM), if one was generated.
    pub dev_certificate: Option<String>,
    /// The configured files, read again by [`Tls::reloader`].
    files: Option<Arc<CertFiles>>,
}

impl Tls {
    /// What reads the configured certificate files again (none for the development
    /// certificate).
    pub fn reloader(&self) -> Option<TlsReloader> {
        self.files.clone().map(TlsReloader)
    }
}

/// A certificate that expires within this many days is warned about (at start, read
/// again, and by `tickrelay --check`).
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// Whole days from now to `not_after` (Unix seconds; negative once past; none if the
/// expiry could not be read).
pub fn days_left(not_after: Option<i64>) -> Option<i64> {
    let now = (crate::clock::unix_micros() / 1_000_000) as i64;
    not_after.map(|t| (t - now) / 86_400)
}

/// The warning for a certificate expiring within [`EXPIRY_WARNING_DAYS`] (at start,
/// read again, and by `tickrelay --check`), if it does.
pub fn expiry_warning(not_after: Option<i64>) -> Option<String> {
    let days = days_left(not_after).filter(|&days| days < EXPIRY_WARNING_DAYS)?;
    Some(format!(
        "the TLS certificate expires in {days} days: renew it (the relay reads renewed files without a restart)"
    ))
}

/// When `cert` expires, in Unix seconds (none if it cannot be parsed).
fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// How far this machine's clock may lag a certificate just issued (a CA that does
/// not backdate its certificates, a clock a little behind) before it is refused as
/// not valid yet.
const NOT_BEFORE_SKEW_SECS: i64 = 300;

/// Why no client would accept `cert` now: it has expired, or is not valid yet (none
/// if it is valid, or its dates cannot be read).
fn out_of_date(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let (validity, now) = (parsed.validity(), (crate::clock::unix_micros() / 1_000_000) as i64);
    if validity.not_after.timestamp() <= now {
        Some(format!("the certificate has expired (on {})", validity.not_after))
    } else if validity.not_before.timestamp() > now + NOT_BEFORE_SKEW_SECS {
        Some(format!(
            "the certificate is not valid yet (from {})",
            validity.not_before
        ))
    } else {
        None
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot load {path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The development certificate could not be generated or written.
    #[error("development certificate: {0}")]
    DevCert(String),
    /// rustls refused the certificate or key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Loads or generates the certificate described by `config`.
pub fn load(config: &TlsConfig) -> Result<Tls, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth();
    let expiry = Gauge::default();
    let (mut server, (fingerprint, not_after), dev_certificate, files) = match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => {
            let files = Arc::new(CertFiles::load(cert, key, provider, expiry.clone())?);
            let served = files.current.read();
            let leaf = (served.fingerprint.clone(), served.not_after);
            drop(served);
            (builder.with_cert_resolver(files.clone()), leaf, None, Some(files))
        }
        _ => {
            let (chain, key, pem) = dev_cert(&config.dev_cert_path)?;
            let leaf = (fingerprint(&chain[0]), not_after(&chain[0]));
            (builder.with_single_cert(chain, key)?, leaf, Some(pem), None)
        }
    };
    expiry.set(not_after.unwrap_or(0));
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        config: Arc::new(server),
        fingerprint,
        not_after,
        expiry,
        dev_certificate,
        files,
    })
}

/// Configured certificate and key files: what new handshakes get (QUIC's too: its
/// configuration shares this resolver), read again by [`TlsReloader::reload`].
#[derive(Debug)]
struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Served>,
    /// The last files that did not load, by digest, with why: warned about once.
    failed: Mutex<Option<([u8; 32], String)>>,
    /// Kept at the served certificate's expiry ([`Tls::expiry`]).
    expiry: Gauge,
}

/// The pair new handshakes get, and the digest of the files it came from (not the
/// files: the key's bytes stay out of memory and out of `Debug`).
#[derive(Debug)]
struct Served {
    certified: Arc<CertifiedKey>,
    fingerprint: String,
    not_after: Option<i64>,
    digest: [u8; 32],
}

impl CertFiles {
    fn load(cert: &Path, key: &Path, provider: Arc<CryptoProvider>, expiry: Gauge) -> Result<Self, TlsError> {
        let served = served(cert, key, &provider, &read_pair(cert, key)?)?;
        Ok(Self {
            cert: cert.into(),
            key: key.into(),
            provider,
            current: RwLock::new(served),
            failed: Mutex::new(None),
            expiry,
        })
    }
}

/// Both files' contents.
fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| TlsError::Pem {
            path: path.into(),
            message: e.to_string(),
        })
    };
    Ok((read(cert)?, read(key)?))
}

/// What tells two readings of the files apart.
fn digest((cert, key): &(Vec<u8>, Vec<u8>)) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update((cert.len() as u64).to_le_bytes());
    hash.update(cert);
    hash.update(key);
    hash.finalize().into()
}

/// The pair in `files` (the contents of `cert` and `key`), checked: a chain, a key,
/// and the key the certificate's.
fn served(cert: &Path, key: &Path, provider: &CryptoProvider, files: &(Vec<u8>, Vec<u8>)) -> Result<Served, TlsError> {
    let pem_error = |path: &Path, message: String| TlsError::Pem {
        path: path.into(),
        message,
    };
    let chain = CertificateDer::pem_slice_iter(&files.0)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(pem_error(cert, "no certificate in the file".into()));
    };
    // Clients would refuse it: a start stops, a renewal gone wrong does not replace
    // a certificate that works.
    if let Some(why) = out_of_date(leaf) {
        return Err(pem_error(cert, why));
    }
    let (fingerprint, not_after) = (fingerprint(leaf), not_after(leaf));
    let private = PrivateKeyDer::from_pem_slice(&files.1).map_err(|e| pem_error(key, e.to_string()))?;
    let certified = CertifiedKey::from_der(chain, private, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => pem_error(
            key,
            format!("not the private key of the certificate in {} ({e})", cert.display()),
        ),
        e => pem_error(key, format!("{e}, with the certificate in {}", cert.display())),
    })?;
    Ok(Served {
        certified: Arc::new(certified),
        fingerprint,
        not_after,
        digest: digest(files),
    })
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().certified.clone())
    }
}

/// Reads the configured certificate files again ([`Tls::reloader`]): a renewed
/// certificate is served to new connections without a restart; connections already
/// open keep the one they began with.
#[derive(Debug, Clone)]
pub struct TlsReloader(Arc<CertFiles>);

impl TlsReloader {
    /// Reads both files; when they changed and hold a certificate with its key, new
    /// handshakes get it. The new certificate's fingerprint, or `None` when the files
    /// did not change. A pair that does not load (a key not the certificate's, say,
    /// read between the writes of a renewal) leaves the one in use in place.
    pub fn reload(&self) -> Result<Option<String>, TlsError> {
        self.reload_files().1
    }

    /// [`TlsReloader::reload`], and the digest of the files read (zeros when they
    /// could not be).
    fn reload_files(&self) -> ([u8; 32], Result<Option<String>, TlsError>) {
        let CertFiles { cert, key, .. } = &*self.0;
        let files = match read_pair(cert, key) {
            Ok(files) => files,
            Err(e) => return ([0; 32], Err(e)),
        };
        let read = digest(&files);
        if self.0.current.read().digest == read {
            return (read, Ok(None));
        }
        let outcome = served(cert, key, &self.0.provider, &files).map(|served| {
            if let Some(warning) = expiry_warning(served.not_after) {
                tracing::warn!(sha256 = %served.fingerprint, "read again: {warning}");
            }
            let fingerprint = served.fingerprint.clone();
            self.0.expiry.set(served.not_after.unwrap_or(0));
            *self.0.current.write() = served;
            Some(fingerprint)
        });
        (read, outcome)
    }

    /// The SHA-256 fingerprint of the certificate new connections get.
    pub fn fingerprint(&self) -> String {
        self.0.current.read().fingerprint.clone()
    }

    /// [`TlsReloader::reload`] on a blocking thread (the files may be on a slow
    /// mount), its outcome logged: a failure once until the files or the reason
    /// change, not at every reading.
    pub async fn reload_in_background(&self) {
        let reloader = self.clone();
        let _ = tokio::task::spawn_blocking(move || reloader.reload_logged()).await;
    }

    fn reload_logged(&self) {
        let (read, outcome) = self.reload_files();
        let mut failed = self.0.failed.lock();
        match outcome {
            Ok(Some(sha256)) => tracing::info!(%sha256, "TLS certificate reloaded: new connections get it"),
            Ok(None) => {}
            Err(e) => {
                let why = e.to_string();
                if failed.as_ref() != Some(&(read, why.clone())) {
                    tracing::warn!("TLS certificate not reloaded (the one in use is kept): {why}");
                    *failed = Some((read, why));
                }
                return;
            }
        }
        *failed = None;
    }
}

/// SHA-256 of a certificate's DER bytes as `AB:CD:...`.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

type DevCert = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String);

/// Where the development certificate's key is kept: beside it, `<name>.key.pem`.
pub fn dev_key_path(cert: &Path) -> PathBuf {
    cert.with_extension("key.pem")
}

/// The development certificate of an earlier start, or a new one. A new one is made
/// under a lock file beside it (`<name>.lock`): nodes started together from one
/// directory share one certificate (the first makes it, the others read it), so a
/// client trusting it trusts every node. A pair already there is read without the
/// lock (the directory may be read-only): the key is written before the certificate,
/// and a certificate read half-written, or not the key's, is not reused.
fn dev_cert(cert: &Path) -> Result<DevCert, TlsError> {
    if let Some(reused) = reuse_dev_cert(cert) {
        return Ok(reused);
    }
    writable_dev_cert_path(cert)?;
    let lock_path = cert.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .and_then(|file| file.lock().map(|()| file))
        .map_err(|e| TlsError::DevCert(format!("cannot lock {}: {e}", lock_path.display())))?;
    let made = match reuse_dev_cert(cert) {
        Some(reused) => Ok(reused),
        None => write_dev_cert(cert),
    };
    drop(lock);
    made
}

/// The subject's common name of the development certificates tickrelay makes (rcgen's
/// default).
const DEV_CERT_NAME: &str = "rcgen self signed cert";

/// Whether a start could use the development certificate at `cert`: a pair there to
/// reuse (whoever made it), or a path where it may write one (nothing there, or one tickrelay made).
pub fn check_dev_cert(cert: &Path) -> Result<(), TlsError> {
    match reuse_dev_cert(cert) {
        Some(_) => Ok(()),
        None => writable_dev_cert_path(cert),
    }
}

/// Whether a development certificate may be written at `cert` (and its key beside
/// it): nothing there yet (in a directory that exists), or one tickrelay made (an
/// older one, or one whose key is gone, is made again). Anything else is refused
/// rather than written over: a path given by mistake must not cost a real
/// certificate or key.
fn writable_dev_cert_path(cert: &Path) -> Result<(), TlsError> {
    let refuse = |why: String| {
        Err(TlsError::DevCert(format!(
            "{}: {why}; give --dev-cert-path ([tls] dev_cert_path) another file, or configure a certificate with \
             --tls-cert and --tls-key",
            cert.display()
        )))
    };
    let key = dev_key_path(cert);
    if kept_dev_key(cert).is_err() {
        return refuse(format!("{} holds something other than a private key", key.display()));
    }
    match std::fs::read(cert) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = cert
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            // (A file another start wrote since it was read is no link: it is read
            // again under the lock.)
            let dangling = std::fs::symlink_metadata(cert).is_ok_and(|m| m.file_type().is_symlink())
                && std::fs::metadata(cert).is_err();
            if dangling {
                refuse("a link to nothing".into())
            } else if !parent.is_dir() {
                refuse(format!("no directory {}", parent.display()))
            } else {
                Ok(())
            }
        }
        Err(e) => refuse(format!("cannot read it ({e})")),
        Ok(pem) => {
            let leaf = CertificateDer::pem_slice_iter(&pem).next().and_then(Result::ok);
            let name = leaf.as_ref().and_then(|leaf| {
                let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
                let cn = parsed.subject().iter_common_name().next()?.as_str().ok()?.to_string();
                Some(cn)
            });
            match name.as_deref() {
                Some(DEV_CERT_NAME) => Ok(()),
                _ if pem.trim_ascii().is_empty() => Ok(()),
                _ => refuse("it holds something other than a development certificate tickrelay made".into()),
            }
        }
    }
}

/// The key beside the development certificate `cert`, kept when a new certificate is
/// made (its certificate deleted, or a start stopped between writing the key and the
/// certificate): `Ok(None)` when there is none (or an empty file), `Err` when the file
/// holds something that is not a key (never written over).
fn kept_dev_key(cert: &Path) -> Result<Option<rcgen::KeyPair>, ()> {
    match std::fs::read_to_string(dev_key_path(cert)) {
        Ok(pem) if !pem.trim_ascii().is_empty() => rcgen::KeyPair::from_pem(&pem).map(Some).map_err(drop),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(_) => Err(()),
    }
}

/// The development certificate and key of an earlier start, when both files are there
/// and belong together (anything else: `None`, and a new pair is made).
fn reuse_dev_cert(cert: &Path) -> Option<DevCert> {
    let pem = std::fs::read_to_string(cert).ok()?;
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    // One no client would accept (made elsewhere, expired) is not used.
    if out_of_date(chain.first()?).is_some() {
        return None;
    }
    let key = PrivateKeyDer::from_pem_file(dev_key_path(cert)).ok()?;
    // rustls checks that the key is the certificate's.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())
        .ok()?;
    (chain.len() == 1).then_some((chain, key, pem))
}

/// Generates a development certificate for localhost (valid until the year 4096) and
/// writes it to `cert`, its key beside it (owner-only).
fn write_dev_cert(cert: &Path) -> Result<DevCert, TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dev_error = |e: rcgen::Error| TlsError::DevCert(e.to_string());
    let key_path = dev_key_path(cert);
    let cannot_write =
        |path: &Path, e: std::io::Error| TlsError::DevCert(format!("cannot write {}: {e}", path.display()));
    let key = match kept_dev_key(cert) {
        Ok(Some(kept)) => kept,
        Ok(None) => {
            let key = rcgen::KeyPair::generate().map_err(dev_error)?;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&key_path)
                .and_then(|mut f| f.write_all(key.serialize_pem().as_bytes()))
                .map_err(|e| cannot_write(&key_path, e))?;
            key
        }
        Err(()) => {
            return Err(TlsError::DevCert(format!(
                "{} is not a private key",
                key_path.display()
            )));
        }
    };
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let certified = (rcgen::CertificateParams::new(names).map_err(dev_error)?)
        .self_signed(&key)
        .map_err(dev_error)?;
    let pem = certified.pem();
    std::fs::write(cert, &pem).map_err(|e| cannot_write(cert, e))?;
    let der = PrivatePkcs8KeyDer::from(key.serialize_der());
    Ok((vec![certified.der().clone()], der.into(), pem))
}

/// A TCP socket that counts the bytes read from it: the TLS records under a
/// [`ServerTls`].
#[derive(Debug)]
pub struct CountedTcp {
    tcp: TcpStream,
    read: u64,
}

impl CountedTcp {
    /// Wraps an accepted socket (hand it to the TLS acceptor).
    pub fn new(tcp: TcpStream) -> Self {
        Self { tcp, read: 0 }
    }
}

impl AsyncRead for CountedTcp {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.tcp).poll_read(cx, buf))?;
        self.read += (buf.filled().len() - before) as u64;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for CountedTcp {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// TLS bytes a connection may read beyond `TLS_BYTES_PER_BYTE` per byte of data ...
const TLS_SLACK_BYTES: u64 = 64 * 1024;

/// ... and per byte of data: a client's records carry at least a byte each, 22 bytes
/// of TLS around it (a client that sends records of a byte is well under this).
const TLS_BYTES_PER_BYTE: u64 = 32;

/// An accepted TLS connection whose reads ask the socket's readiness first while
/// rustls has nothing buffered: a connection is polled for input at every wake-up,
/// most of them for output, and a TLS read prepares its record buffer before it finds
/// the socket empty. Writes go to the TLS stream as they are.
///
/// The byte rate limit counts what the TLS records hold: records that hold nothing but
/// padding would cost their decryption unmetered (rustls refuses 33 of them in a row,
/// not 32 with a byte of data between each). So a connection that read more than
/// 32 TLS bytes per byte of data since the upgrade, and 64 KiB more, fails its read
/// as a flood.
#[derive(Debug)]
pub struct ServerTls {
    stream: Box<TlsStream<CountedTcp>>,
    /// TLS bytes read before the upgrade (the handshake, the HTTP request).
    tls_at_start: u64,
    /// Bytes of data read since.
    data: u64,
}

impl ServerTls {
    /// Wraps an accepted connection.
    pub fn new(stream: TlsStream<CountedTcp>) -> Self {
        let tls_at_start = stream.get_ref().0.read;
        Self {
            stream: Box::new(stream),
            tls_at_start,
            data: 0,
        }
    }

    /// The TCP socket under the TLS session.
    pub fn tcp(&self) -> &TcpStream {
        &self.stream.get_ref().0.tcp
    }
}

impl AsyncRead for ServerTls {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let (tcp, session) = this.stream.get_ref();
        if session.wants_read() {
            // A poll, not a future: the socket keeps the waker when the read that
            // asked is dropped, which the connection loop relies on (see
            // `Transport::recv`).
            ready!(tcp.tcp.poll_read_ready(cx))?;
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut *this.stream).poll_read(cx, buf);
        this.data += (buf.filled().len() - before) as u64;
        let tls = this.stream.get_ref().0.read - this.tls_at_start;
        if tls > TLS_SLACK_BYTES + TLS_BYTES_PER_BYTE * this.data {
            return Poll::Ready(Err(std::io::Error::other(crate::transport::metered::Flooded)));
        }
        read
    }
}

impl AsyncWrite for ServerTls {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A fresh directory of this test's own, and settings that keep the development
    /// certificate there.
    fn dev_cert_in(name: &str) -> (PathBuf, TlsConfig) {
        let dir = std::env::temp_dir().join(format!("tickrelay-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = TlsConfig {
            dev_cert_path: dir.join("dev.pem"),
            ..Default::default()
        };
        (dir, config)
    }

    #[test]
    fn the_development_certificate_is_kept_across_starts() {
        let (dir, config) = dev_cert_in("tls");
        let key_path = dev_key_path(&config.dev_cert_path);
        let first = load(&config).unwrap();
        assert_eq!(load(&config).unwrap().fingerprint, first.fingerprint, "reused");
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is the owner's alone");
        // A key that is not the certificate's: a new pair, kept from then on.
        let stranger = rcgen::KeyPair::generate().unwrap().serialize_pem();
        std::fs::write(&key_path, stranger).unwrap();
        let second = load(&config).unwrap();
        assert_ne!(second.fingerprint, first.fingerprint);
        assert_eq!(load(&config).unwrap().fingerprint, second.fingerprint);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A pair already there is used without its lock file (a read-only directory, or
    /// here a lock path that cannot be opened, even by root).
    #[test]
    fn a_kept_certificate_is_read_without_its_lock() {
        let (dir, config) = dev_cert_in("tls-no-lock");
        let first = load(&config).unwrap();
        let lock_path = config.dev_cert_path.with_extension("lock");
        std::fs::remove_file(&lock_path).unwrap();
        std::fs::create_dir(&lock_path).unwrap();
        assert_eq!(load(&config).unwrap().fingerprint, first.fingerprint);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Configured files are read again: unchanged, nothing happens; a renewed pair is
    /// taken; a pair that does not load is not, and says why.
    #[test]
    fn configured_files_are_read_again() {
        let (dir, _) = dev_cert_in("tls-reload");
        let config = TlsConfig {
            cert: Some(dir.join("cert.pem")),
            key: Some(dir.join("key.pem")),
            ..Default::default()
        };
        let write = |cert: &str, key: &str| {
            std::fs::write(dir.join("cert.pem"), cert).unwrap();
            std::fs::write(dir.join("key.pem"), key).unwrap();
        };
        let issue = || {
            let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
            (pair.cert.pem(), pair.signing_key.serialize_pem())
        };
        let ((first, first_key), (renewed, renewed_key)) = (issue(), issue());
        write(&first, &first_key);
        let tls = load(&config).unwrap();
        let reloader = tls.reloader().expect("configured files");
        assert_eq!(reloader.reload().unwrap(), None, "unchanged");
        // A renewal read between its two writes: the old key with the new certificate.
        write(&renewed, &first_key);
        let e = reloader.reload().unwrap_err().to_string();
        assert!(
            e.contains("not the private key of the certificate in") && e.contains("cert.pem"),
            "{e}"
        );
        assert_eq!(reloader.fingerprint(), tls.fingerprint, "the pair in use is kept");
        write(&renewed, &renewed_key);
        let taken = reloader.reload().unwrap().expect("renewed");
        assert_ne!(taken, tls.fingerprint);
        assert_eq!(reloader.fingerprint(), taken);
        assert_eq!(reloader.reload().unwrap(), None);
        // A renewal gone wrong: a certificate expired, or not valid yet, does not
        // replace one that works; and no start serves one (no client would accept it).
        let dated = |from: i32, to: i32| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(to, 1, 1);
            (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
        };
        for ((cert, key), why) in [(dated(2020, 2021), "has expired"), (dated(2090, 2091), "not valid yet")] {
            write(&cert, &key);
            let e = reloader.reload().unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
            assert_eq!(reloader.fingerprint(), taken);
            let e = load(&config).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("cert.pem"), "{e}");
        }
        write(&renewed, &renewed_key);
        std::fs::remove_file(dir.join("key.pem")).unwrap();
        let e = reloader.reload().unwrap_err().to_string();
        assert!(e.contains("key.pem"), "{e}");
        assert_eq!(reloader.fingerprint(), taken);
        let _ = std::fs::remove_dir_all(&dir);
        let (dir, dev) = dev_cert_in("tls-reload-dev");
        assert!(load(&dev).unwrap().reloader().is_none(), "nothing to read again");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A development certificate is never written over a file that is not one: a
    /// path given by mistake must not cost a real certificate.
    #[test]
    fn a_development_certificate_replaces_only_its_own_kind() {
        let (dir, config) = dev_cert_in("tls-dev-path");
        let path = &config.dev_cert_path;
        let real = {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["game.example".to_string()]).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "game.example");
            params.self_signed(&key).unwrap().pem()
        };
        for kept in [real.as_str(), "not a certificate"] {
            std::fs::write(path, kept).unwrap();
            let e = load(&config).unwrap_err().to_string();
            assert!(e.contains("something other than a development certificate"), "{e}");
            assert_eq!(std::fs::read_to_string(path).unwrap(), kept, "left as it was");
        }
        // One of ours whose key is gone is made again.
        std::fs::remove_file(path).unwrap();
        let first = load(&config).unwrap().fingerprint;
        std::fs::remove_file(dev_key_path(path)).unwrap();
        assert_ne!(load(&config).unwrap().fingerprint, first);
        let nowhere = TlsConfig {
            dev_cert_path: dir.join("missing").join("dev.pem"),
            ..Default::default()
        };
        let e = load(&nowhere).unwrap_err().to_string();
        assert!(e.contains("no directory"), "{e}");
        let e = check_dev_cert(&dir).unwrap_err().to_string();
        assert!(e.contains("cannot read it"), "a directory: {e}");
        // Nor over a key: one whose certificate is gone gets a new certificate, a file
        // that is not a key is left as it is.
        let key_pem = std::fs::read_to_string(dev_key_path(path)).unwrap();
        std::fs::remove_file(path).unwrap();
        let again = load(&config).unwrap();
        assert_eq!(
            std::fs::read_to_string(dev_key_path(path)).unwrap(),
            key_pem,
            "the key kept"
        );
        assert!(reuse_dev_cert(path).is_some(), "a pair again: {}", again.fingerprint);
        std::fs::remove_file(path).unwrap();
        for beside in ["REAL KEY", "\n"] {
            std::fs::write(dev_key_path(path), "REAL KEY").unwrap();
            std::fs::write(path, beside).unwrap();
            let e = load(&config).unwrap_err().to_string();
            assert!(e.contains("something other than a private key"), "{e}");
            assert_eq!(std::fs::read_to_string(dev_key_path(path)).unwrap(), "REAL KEY");
        }
        std::fs::remove_file(path).unwrap();
        std::fs::remove_file(dev_key_path(path)).unwrap();
        // A pair made elsewhere (openssl, mkcert) is used as it is.
        let (chain, key) = {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "mkcert development certificate");
            (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
        };
        std::fs::write(path, &chain).unwrap();
        std::fs::write(dev_key_path(path), &key).unwrap();
        check_dev_cert(path).unwrap();
        assert_eq!(load(&config).unwrap().dev_certificate.as_deref(), Some(chain.as_str()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A development certificate path that is a link to nothing is refused, not
    /// written through.
    #[test]
    fn a_dangling_link_at_the_development_certificate_path_is_refused() {
        let (dir, config) = dev_cert_in("tls-dangling");
        let path = config.dev_cert_path.clone();
        std::os::unix::fs::symlink(dir.join("nowhere.pem"), &path).unwrap();
        let e = load(&config).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("a link to nothing"), "{e}");
        assert!(!dir.join("nowhere.pem").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Nodes started at once from one directory end with one certificate.
    #[test]
    fn starts_at_once_share_one_development_certificate() {
        let (dir, config) = dev_cert_in("tls-race");
        let fingerprints: Vec<String> = std::thread::scope(|s| {
            let starts: Vec<_> = (0..4).map(|_| s.spawn(|| load(&config).unwrap().fingerprint)).collect();
            starts.into_iter().map(|start| start.join().unwrap()).collect()
        });
        assert!(fingerprints.iter().all(|f| *f == fingerprints[0]), "{fingerprints:?}");
        assert_eq!(load(&config).unwrap().fingerprint, fingerprints[0], "the one on disk");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
