//! The real server on 127.0.0.1:0 with a generated dev certificate, and what a test
//! needs from it: addresses and URLs, TLS trusting exactly its certificate, metrics,
//! shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tickrelay::config::{Config, Simulations};
use tickrelay::metrics::Metrics;
use tickrelay::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::{Transport, WAIT, eventually};

/// A running server; dropping it shuts the server down.
pub struct TestServer {
    /// The TCP address (`wss://`, `https://`).
    pub addr: SocketAddr,
    /// The UDP address (`quic://`).
    pub quic_addr: SocketAddr,
    /// The generated certificate, PEM.
    pub cert_pem: String,
    /// The server's metrics.
    pub metrics: Arc<Metrics>,
    /// The `[metrics] listen` address, when configured.
    pub metrics_addr: Option<SocketAddr>,
    /// Cancel to shut the server down.
    pub shutdown: CancellationToken,
    /// The server task; ends after a shutdown, within its 5 s deadline.
    pub task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The server with test defaults: 60 Hz rooms, a relay and an arena type, two
/// simulation threads.
pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

/// The server with the defaults of [`start`] after `adjust` changed them.
pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config::loopback(60);
    adjust(&mut config);
    start_config(config).await
}

/// An adjustment for [`start_with`]: room searches (`ListRooms`, `QuickJoin`) at any
/// rate, for tests that make many from one address.
pub fn many_searches(config: &mut Config) {
    config.room_searches_per_second = 1e6;
    config.room_search_burst = 1e6;
}

/// The server with exactly `config` (start from [`Config::loopback`]).
pub async fn start_config(config: Config) -> TestServer {
    start_with_simulations(config, &Simulations::new()).await
}

/// The server with exactly `config` and the program's own `simulations`.
pub async fn start_with_simulations(config: Config, simulations: &Simulations) -> TestServer {
    let server = Server::bind_with(config, simulations).await.expect("server starts");
    let cert_pem = server.dev_certificate().expect("dev certificate").to_string();
    serve(server, cert_pem)
}

/// Runs a bound `server` whose clients trust the certificates in `cert_pem` (one
/// or more, PEM).
pub fn serve(server: Server, cert_pem: String) -> TestServer {
    let addr = server.local_addr();
    let quic_addr = server.quic_addr().expect("QUIC is on by default");
    let metrics = server.metrics();
    let metrics_addr = server.metrics_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone(), Duration::from_secs(5)));
    TestServer {
        addr,
        quic_addr,
        cert_pem,
        metrics,
        metrics_addr,
        shutdown,
        task: Some(task),
    }
}

impl TestServer {
    /// The URL a client connects to over `transport`.
    pub fn url(&self, transport: Transport) -> String {
        match transport {
            Transport::WebSocket => format!("wss://localhost:{}/ws", self.addr.port()),
            Transport::Quic => format!("quic://localhost:{}", self.quic_addr.port()),
        }
    }

    /// The value of one (labelled) sample in the metrics text, 0 if absent.
    pub fn metric(&self, sample: &str) -> u64 {
        let text = self.metrics.render(tickrelay::metrics::Format::Prometheus);
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits (see [`eventually`]) until `sample` reaches `at_least`; returns how long
    /// it took.
    pub async fn wait_for_metric(&self, sample: &str, at_least: u64) -> Duration {
        let start = Instant::now();
        eventually(&format!("{sample} reaching {at_least}"), || {
            let value = self.metric(sample);
            std::future::ready(if value >= at_least { Ok(()) } else { Err(value) })
        })
        .await;
        start.elapsed()
    }

    /// A TLS client configuration that trusts only this server's certificate.
    pub fn tls_config(&self) -> rustls::ClientConfig {
        self.tls_config_with(rustls::crypto::aws_lc_rs::default_provider())
    }

    /// [`TestServer::tls_config`] with the cryptography (key exchange groups, cipher
    /// suites) of `provider`.
    pub fn tls_config_with(&self, provider: rustls::crypto::CryptoProvider) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.cert_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth()
    }

    /// A TLS connection that trusts only this server's certificate.
    pub async fn tls_connect(&self) -> TlsStream<TcpStream> {
        self.tls_over(TcpStream::connect(self.addr).await.unwrap()).await
    }

    /// TLS over `tcp`, trusting only this server's certificate.
    pub async fn tls_over(&self, tcp: TcpStream) -> TlsStream<TcpStream> {
        self.try_tls_over(tcp)
            .await
            .expect("TLS handshake with the dev certificate")
    }

    /// [`TestServer::tls_over`] that reports a failed handshake instead of panicking.
    pub async fn try_tls_over(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        TlsConnector::from(Arc::new(self.tls_config()))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    /// A plain HTTP/1.1 GET over TLS; returns (status, body).
    pub async fn https_get(&self, path: &str) -> (u16, String) {
        self.https_request("GET", path, "", b"").await
    }

    /// One HTTPS request with extra header lines (each ending in `\r\n`) and a body;
    /// the status and body of the answer.
    pub async fn https_request(&self, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, String) {
        let mut tls = self.tls_connect().await;
        let length = body.len();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {length}\r\n{headers}\r\n"
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        tls.write_all(body).await.unwrap();
        let mut response = String::new();
        tokio::time::timeout(WAIT, tls.read_to_string(&mut response))
            .await
            .unwrap()
            .unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
        (status, body)
    }
}
