//! The listener: TCP accept, TLS, HTTP/1.1 (hyper) with three routes — the WebSocket
//! upgrade at `/ws`, `/healthz` and `/metrics` — and shutdown.
//!
//! Shutdown follows three steps: stop accepting, signal every task (a
//! `CancellationToken`; each session closes with 1001), then wait for all of them
//! with a deadline (a `TaskTracker`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    AUTHORIZATION, CONNECTION, CONTENT_TYPE, HeaderValue, ORIGIN, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE, WWW_AUTHENTICATE,
};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{self, AuthMode, Authenticator};
use crate::config::{Config, ConfigError};
use crate::connection::{self, Start};
use crate::gate::Gate;
use crate::metrics::Metrics;
use crate::quic;
use crate::registry::Registry;
use crate::session::{Session, SessionContext};
use crate::sim_pool::SimPool;
use crate::tls::{self, TlsError};
use crate::ws::WebSocket;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A socket or thread could not be created.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A pre-created room could not be created.
    #[error("cannot create room `{0}`: {1}")]
    Room(String, crate::sim_pool::PoolError),
}

/// What every connection task shares.
pub(crate) struct Shared {
    pub config: Config,
    pub pool: Arc<SimPool>,
    pub session_ctx: SessionContext,
    pub registry: Registry<Session>,
    pub gate: Arc<Gate>,
    pub slow_consumer: Duration,
    pub metrics: Arc<Metrics>,
    pub ws_config: WebSocketConfig,
    pub next_session: AtomicU64,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    tls: Option<tls::Tls>,
    quic: Option<quinn::Endpoint>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("local_addr", &self.local_addr).finish()
    }
}

impl Server {
    /// Validates the configuration, sets up TLS, starts the simulation threads,
    /// creates the configured rooms and binds the listener.
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        config.validate()?;
        let tls = if config.tls.insecure_plain {
            tracing::warn!("serving plain ws:// and http:// without TLS: only do this behind a TLS-terminating proxy");
            None
        } else {
            let tls = tls::load(&config.tls)?;
            if tls.dev_certificate.is_some() {
                tracing::warn!(
                    path = %config.tls.dev_cert_path.display(),
                    sha256 = %tls.fingerprint,
                    "no certificate configured: generated a self-signed development certificate for localhost; \
                     clients must trust this file (not for production)"
                );
            } else {
                tracing::info!(sha256 = %tls.fingerprint, "loaded TLS certificate");
            }
            Some(tls)
        };
        let pool = Arc::new(SimPool::start(config.pool_config())?);
        for room in &config.rooms {
            pool.create_persistent(&room.id, &room.room_type)
                .map_err(|e| ServerError::Room(room.id.clone(), e))?;
        }
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let quic = match (&tls, config.quic.enabled) {
            (Some(tls), true) => Some(bind_quic(&config, tls, local_addr)?),
            (None, true) => {
                tracing::warn!("QUIC needs TLS: not serving QUIC with tls.insecure_plain");
                None
            }
            (_, false) => None,
        };
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(config.websocket.read_buffer_bytes)
            .write_buffer_size(0)
            .max_write_buffer_size(config.websocket.max_write_buffer_bytes)
            .max_message_size(Some(config.websocket.max_message_bytes))
            .max_frame_size(Some(config.websocket.max_message_bytes));
        let metrics = Arc::new(Metrics::new(pool.metrics().clone()));
        let auth = Arc::new(Authenticator::new(&config.auth).map_err(ConfigError::Invalid)?);
        if auth.mode() == AuthMode::Anonymous {
            tracing::warn!(
                "auth.mode = \"anonymous\": every connection is accepted without a token (development only)"
            );
        }
        let session_ctx = SessionContext {
            pool: pool.clone(),
            auth,
            settings: Arc::new(config.session_settings()),
        };
        let registry = Registry::new(config.connections.max_connections);
        let gate = Gate::new(config.connections.clone());
        let slow_consumer = Duration::from_secs_f64(config.session.slow_consumer_secs);
        Ok(Self {
            listener,
            local_addr,
            tls,
            quic,
            shared: Arc::new(Shared {
                config,
                pool,
                session_ctx,
                registry,
                gate,
                slow_consumer,
                metrics,
                ws_config,
                next_session: AtomicU64::new(1),
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
            }),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound QUIC address, when QUIC is served.
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.quic.as_ref()?.local_addr().ok()
    }

    /// The generated development certificate (PEM), if one was generated.
    pub fn dev_certificate(&self) -> Option<&str> {
        self.tls.as_ref()?.dev_certificate.as_deref()
    }

    /// The server's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// The simulation pool.
    pub fn pool(&self) -> Arc<SimPool> {
        self.shared.pool.clone()
    }

    /// Serves until `shutdown` is cancelled, then closes every session with 1001 and
    /// waits up to `grace` for them to finish.
    pub async fn run(self, shutdown: CancellationToken, grace: Duration) {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        tracing::info!("listening on {scheme}://{}/ws", self.local_addr);
        let acceptor = self.tls.as_ref().map(|t| TlsAcceptor::from(t.config.clone()));
        let shared = self.shared;
        shared.tracker.spawn(reap_parked_sessions(shared.clone()));
        if let Some(endpoint) = self.quic {
            if let Ok(addr) = endpoint.local_addr() {
                tracing::info!("listening on quic://{addr} (ALPN tickrelay/1)");
            }
            shared.tracker.spawn(quic::accept(endpoint, shared.clone()));
        }
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let shared2 = shared.clone();
            let acceptor = acceptor.clone();
            shared.tracker.spawn(async move {
                serve_connection(stream, peer, acceptor, shared2).await;
            });
        }
        drop(self.listener);
        tracing::info!("shutting down: closing every session");
        shared.shutdown.cancel();
        shared.tracker.close();
        if tokio::time::timeout(grace, shared.tracker.wait()).await.is_err() {
            tracing::warn!("shutdown deadline reached with sessions still open");
        }
        // Sessions parked for resume end now (their members leave their rooms).
        drop(shared.registry.expire_all());
    }
}

/// Binds QUIC on `quic.listen`, by default the TCP listener's address and port. With
/// an ephemeral TCP port (`listen` port 0) whose number is taken on UDP, any free UDP
/// port is used instead.
fn bind_quic(config: &Config, tls: &tls::Tls, tcp: SocketAddr) -> Result<quinn::Endpoint, ServerError> {
    let addr = config.quic.listen.unwrap_or(tcp);
    match quic::bind(config, tls, addr) {
        Err(_) if config.quic.listen.is_none() && config.listen.port() == 0 => {
            Ok(quic::bind(config, tls, SocketAddr::new(tcp.ip(), 0))?)
        }
        result => Ok(result?),
    }
}

/// Ends parked sessions whose resume grace is over, every 100 ms.
async fn reap_parked_sessions(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = every.tick() => {
                let expired = shared.registry.expire(std::time::Instant::now());
                if !expired.is_empty() {
                    tracing::debug!(count = expired.len(), "resume grace over; ending sessions");
                }
                drop(expired);
                shared.metrics.sessions_parked.set(shared.registry.parked() as i64);
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, acceptor: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    match acceptor {
        Some(acceptor) => {
            let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await;
            match handshake {
                Ok(Ok(tls)) => serve_http(tls, peer, shared).await,
                Ok(Err(e)) => {
                    shared.metrics.tls_failures.inc();
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                }
                Err(_) => {
                    shared.metrics.tls_failures.inc();
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        }
        None => serve_http(stream, peer, shared).await,
    }
}

async fn serve_http<S>(io: S, peer: SocketAddr, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_shared = shared.clone();
    let service = service_fn(move |req| {
        let shared = service_shared.clone();
        async move { Ok::<_, Infallible>(route(req, peer, shared)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, "HTTP connection error: {e}");
            }
        }
        _ = shared.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

type HttpResponse = Response<Full<Bytes>>;

fn route(req: Request<Incoming>, peer: SocketAddr, shared: Arc<Shared>) -> HttpResponse {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/metrics") => {
            let mut response = text(StatusCode::OK, shared.metrics.render());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            response
        }
        (&Method::GET, "/ws") => upgrade(req, peer, shared),
        (_, "/healthz" | "/metrics" | "/ws") => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => text(StatusCode::NOT_FOUND, "not found; the WebSocket endpoint is /ws\n"),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

fn header_has_token(req: &Request<Incoming>, name: hyper::header::HeaderName, token: &str) -> bool {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Validates a WebSocket upgrade request (RFC 6455 §4.2.1) and the server's
/// protections, in this order: the request itself (400/426), the `Origin` (403), the
/// connection caps and handshake rate (503/429), the token (401). Then it answers 101
/// and hands the upgraded connection to the WebSocket driver.
fn upgrade(mut req: Request<Incoming>, peer: SocketAddr, shared: Arc<Shared>) -> HttpResponse {
    if !header_has_token(&req, CONNECTION, "upgrade") || !header_has_token(&req, UPGRADE, "websocket") {
        return text(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade request\n");
    }
    if req.headers().get(SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        let mut response = text(StatusCode::UPGRADE_REQUIRED, "unsupported WebSocket version; use 13\n");
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return response;
    }
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    let accept = derive_accept_key(key.as_bytes());
    let metrics = &shared.metrics;

    let origin = req.headers().get(ORIGIN).map(|v| v.to_str().unwrap_or("invalid"));
    if !shared.config.origins.allows(origin) {
        metrics.count_refused_upgrade(StatusCode::FORBIDDEN);
        tracing::debug!(%peer, ?origin, "origin refused");
        return text(StatusCode::FORBIDDEN, "origin not allowed\n");
    }
    let permit = match shared.gate.admit(peer.ip(), std::time::Instant::now()) {
        Ok(permit) => permit,
        Err(refusal) => {
            metrics.count_refused_upgrade(refusal.status);
            return text(refusal.status, format!("{}\n", refusal.message));
        }
    };
    let query = req.uri().query();
    let protocols = req
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let authorization = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = auth::token_from_request(authorization, query, protocols);
    let identity = match shared.session_ctx.auth.authenticate(token) {
        Ok(identity) => identity,
        Err(e) => {
            metrics.count_auth_failure(e.kind());
            metrics.count_refused_upgrade(StatusCode::UNAUTHORIZED);
            let mut response = text(StatusCode::UNAUTHORIZED, format!("{e}\n"));
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tickrelay\", error=\"invalid_token\""),
            );
            return response;
        }
    };
    let start = match query.and_then(|q| auth::query_param(q, "resume")) {
        None => Start::New(identity),
        Some(token) => Start::Resume {
            token: token.to_string(),
            identity,
            // Without a number (a client that does not track them) nothing is sent
            // again.
            received: query
                .and_then(|q| auth::query_param(q, "received"))
                .and_then(|n| n.parse().ok())
                .unwrap_or(u64::MAX),
        },
    };
    let offered_protocol = header_has_token(&req, SEC_WEBSOCKET_PROTOCOL, auth::PROTOCOL);

    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_shared = shared.clone();
    shared.tracker.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(task_shared.ws_config))
                        .await;
                connection::serve(WebSocket::new(ws), peer, task_shared, start, permit).await;
            }
            Err(e) => tracing::debug!(%peer, "upgrade failed: {e}"),
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    // Browsers that offered subprotocols (to carry a token) require one back.
    if offered_protocol {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(auth::PROTOCOL));
    }
    response
}
