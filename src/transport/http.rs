//! HTTP/1.1 (hyper) on an accepted connection: the WebSocket upgrade at `/ws`,
//! `/healthz` and `/metrics`. The upgrade checks the request, the `Origin`, the
//! connection caps and the token, in that order, before answering 101; a refusal is an
//! HTTP status, never a WebSocket.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    ACCEPT, ALLOW, AUTHORIZATION, CONNECTION, CONTENT_TYPE, HeaderValue, ORIGIN, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE, WWW_AUTHENTICATE,
};
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_util::sync::CancellationToken;

use crate::clock::unix_micros;
use crate::engine::pacer::{self, Hurry};
use crate::error::CloseReason;
use crate::metrics::Format;
use crate::session::auth::{self, AuthError};
use crate::session::limits::{AddressCounts, address_key};
use crate::transport::api;
use crate::transport::connection::{self, Start};
use crate::transport::context::Context;
use crate::transport::gate::{Permit, SocketPermit};
use crate::transport::metered::Metered;
use crate::transport::origin::OriginConfig;
use crate::transport::tls::{CountedTcp, ServerTls};
use crate::transport::ws::WebSocket;

/// What the HTTP side needs beyond the connection [`Context`].
#[derive(Clone)]
pub(crate) struct Http {
    /// The connection context.
    pub ctx: Arc<Context>,
    /// Origins allowed to upgrade.
    pub origins: OriginConfig,
    /// An upgraded connection's read buffer between messages (`[websocket]
    /// read_buffer_bytes`).
    pub read_chunk: usize,
    /// What this listener serves.
    pub routes: Routes,
    /// The bearer token `/metrics` requires, if any.
    pub metrics_token: Option<Arc<str>>,
    /// The bearer token of the HTTP API (`[api] token`); none: the API is off.
    pub api_token: Option<Arc<str>>,
}

/// What a listener serves besides `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Routes {
    /// The main listener: `/ws`, and `/metrics` unless it has a listener of its own.
    Main {
        /// Whether `/metrics` is served here.
        metrics: bool,
        /// Whether the browser demo is served at `/demo/`.
        demo: bool,
    },
    /// `[metrics] listen`: `/metrics` only.
    Metrics,
}

/// Serves one accepted TCP connection: TLS (unless plain), then HTTP/1.1 until it ends,
/// or until newer sockets shed it (see [`crate::transport::gate`]).
pub(crate) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    http: Arc<Http>,
    // Held until the connection is upgraded (a session's `Permit` counts it then) or
    // closed.
    socket: SocketPermit,
) {
    let _ = stream.set_nodelay(true);
    // Not held between ticks until its first request arrives (see `pacer::hurry`).
    let hurry = Some(pacer::hurry());
    let serve = async {
        match acceptor {
            Some(acceptor) => {
                // A stopping server waits for no TLS handshake (an idle socket would
                // hold the stop for 10 s).
                let handshake = tokio::select! {
                    done = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(CountedTcp::new(stream))) => done,
                    () = http.ctx.shutdown.cancelled() => return,
                };
                match handshake {
                    Ok(Ok(tls)) => serve_http(tls, peer, http.clone(), hurry).await,
                    // (A client that does not trust the certificate says so here.)
                    Ok(Err(e)) => {
                        http.ctx.metrics.tls_failures.inc();
                        crate::transport::log_refusal(peer, "tls", &format_args!("TLS handshake failed: {e}"));
                    }
                    Err(_) => {
                        http.ctx.metrics.tls_failures.inc();
                        crate::transport::log_refusal(peer, "tls", &"TLS handshake timed out");
                    }
                }
            }
            None => serve_http(stream, peer, http.clone(), hurry).await,
        }
    };
    tokio::select! {
        () = serve => {}
        () = socket.shed().cancelled() => tracing::debug!(%peer, "unfinished handshake shed for a newer one"),
    }
}

/// How long a stopping server lets a request under way on an HTTP connection finish.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// How long an HTTP connection is served before it is closed (gracefully: a request
/// under way gets [`HTTP_DRAIN`]), upgrades aside: a keep-alive client sends another;
/// one that stopped reading a response holds its connection no longer.
const HTTP_CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// How long a request's head, and an API call's body, may take to arrive.
pub(crate) const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// About the most a request's line and headers may take (431 beyond; hyper applies it
/// to its read buffer, so a head that arrives in one go may pass up to about twice
/// this): room for a 16 KiB token in a header, far below hyper's default (~400 KiB), so
/// half-sent heads cost little memory.
const MAX_REQUEST_HEAD_BYTES: usize = 32 * 1024;

/// Connections the metrics listener serves at once (a scraper needs one or two),
/// and from one address; so that this listener, outside the gate's caps, cannot take
/// the process's file descriptors. Beyond them a new connection closes the oldest of
/// its address, or of the address holding the most (when that is one, the new one is
/// closed instead): one client holding connections open cannot shut the scraper and a
/// liveness probe out.
pub(crate) const METRICS_CONNECTIONS: usize = 64;
const METRICS_CONNECTIONS_PER_ADDRESS: usize = 8;

/// How long a metrics connection is served at most (a scraper opens another).
const METRICS_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// The metrics listener's open connections: by address, and each with the token that
/// closes it, oldest first.
#[derive(Default)]
struct MetricsConnections {
    per_address: AddressCounts,
    open: std::collections::VecDeque<(u64, std::net::IpAddr, CancellationToken)>,
    next: u64,
}

impl MetricsConnections {
    /// Closes the connection at `index` of `open` (it ends at its next poll).
    fn close(&mut self, index: usize) {
        if let Some((_, address, closed)) = self.open.remove(index) {
            self.per_address.remove(address);
            closed.cancel();
        }
    }
}

/// A metrics connection's place in [`MetricsConnections`] while it lives.
struct MetricsSlot {
    connections: Arc<parking_lot::Mutex<MetricsConnections>>,
    id: u64,
    /// Cancelled when a newer connection takes its place.
    closed: CancellationToken,
}

impl MetricsSlot {
    /// A slot for a connection from `address`, making room at the caps (none when
    /// every address holds one connection: the others are no less entitled).
    fn take(connections: &Arc<parking_lot::Mutex<MetricsConnections>>, address: std::net::IpAddr) -> Option<Self> {
        let mut c = connections.lock();
        let oldest_of = |c: &MetricsConnections, address| c.open.iter().position(|(_, a, _)| *a == address);
        if c.per_address.get(address) >= METRICS_CONNECTIONS_PER_ADDRESS {
            if let Some(oldest) = oldest_of(&c, address) {
                c.close(oldest);
            }
        } else if c.open.len() >= METRICS_CONNECTIONS {
            let most = c.per_address.most();
            if most <= 1 {
                return None;
            }
            if let Some(heaviest) = (c.open.iter()).position(|(_, a, _)| c.per_address.get(*a) == most) {
                c.close(heaviest);
            }
        }
        let (id, closed) = (c.next, CancellationToken::new());
        c.next += 1;
        c.per_address.add(address);
        c.open.push_back((id, address, closed.clone()));
        Some(Self {
            connections: connections.clone(),
            id,
            closed,
        })
    }
}

impl Drop for MetricsSlot {
    fn drop(&mut self) {
        let mut c = self.connections.lock();
        // (Gone already when a newer connection closed it.)
        if let Some(i) = c.open.iter().position(|(id, ..)| *id == self.id) {
            c.close(i);
        }
    }
}

/// Serves `[metrics] listen` (plain HTTP, `/metrics` and `/healthz`) until shutdown.
pub(crate) async fn serve_metrics(listener: TcpListener, http: Arc<Http>) {
    let connections = Arc::new(parking_lot::Mutex::new(MetricsConnections::default()));
    loop {
        let (stream, peer) = tokio::select! {
            _ = http.ctx.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("metrics listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = MetricsSlot::take(&connections, address_key(peer.ip())) else {
            tracing::debug!(%peer, "metrics listener: every address holds a connection; closed");
            continue;
        };
        let http = http.clone();
        http.ctx.tracker.clone().spawn(async move {
            tokio::select! {
                () = serve_http(stream, peer, http, None) => {}
                () = slot.closed.cancelled() => tracing::debug!(%peer, "metrics connection closed for a newer one"),
                () = tokio::time::sleep(METRICS_CONNECTION_LIFETIME) => {}
            }
            drop(slot);
        });
    }
}

/// Serves HTTP/1.1 on `io` until the connection ends; `hurry` (see `pacer::hurry`)
/// is dropped when the first request arrives.
async fn serve_http<S>(io: S, peer: SocketAddr, http: Arc<Http>, hurry: Option<Hurry>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let hurry = parking_lot::Mutex::new(hurry);
    let service_http = http.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        drop(hurry.lock().take());
        let http = service_http.clone();
        async move {
            let main = matches!(http.routes, Routes::Main { .. });
            let response = match main.then(|| api::call_of(req.method(), req.uri().path())).flatten() {
                Some(Ok(api::Call::Publish(room))) => api::publish(req, room, &http).await,
                Some(Ok(api::Call::Close(room))) => api::close(req, room, &http).await,
                Some(Ok(api::Call::RemoveUser(room, user))) => api::remove_user(req, room, user, &http).await,
                Some(Ok(api::Call::Describe(room))) => api::describe(req, room, &http).await,
                Some(Ok(api::Call::List)) => api::list(req, &http).await,
                Some(Err(api::NotACall::Method(allowed))) if http.api_token.is_some() => method_not_allowed(allowed),
                Some(Err(api::NotACall::NotUtf8)) if http.api_token.is_some() => text(
                    StatusCode::BAD_REQUEST,
                    "bad request; a room or user id in the path is not UTF-8 once percent-decoded\n",
                ),
                Some(Err(api::NotACall::RoomId)) if http.api_token.is_some() => text(
                    StatusCode::BAD_REQUEST,
                    "bad request; a room id is 1-128 bytes once percent-decoded, without control characters\n",
                ),
                Some(Err(_)) => api::off(),
                None => route(req, peer, http),
            };
            Ok::<_, Infallible>(response)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(REQUEST_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, "HTTP connection error: {e}");
            }
        }
        // A request under way may finish (an API call: a few directory round trips, or
        // a room thread's answer, bounded at 2 s each), for a moment: a peer that stalls
        // in the middle of a head or a body (or does not read its response) does not
        // hold the stop up.
        _ = http.ctx.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(HTTP_DRAIN, conn).await;
        }
        () = tokio::time::sleep(HTTP_CONNECTION_LIFETIME) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(HTTP_DRAIN, conn).await;
        }
    }
}

pub(crate) type HttpResponse = Response<Full<Bytes>>;

/// The browser demo (`--demo`): the page and its bundle, built into the binary (the
/// bundle is built from `clients/web` by `npm run demo`, and checked in).
const DEMO: [(&str, &str, &[u8]); 4] = [
    ("/demo", HTML, DEMO_PAGE),
    ("/demo/", HTML, DEMO_PAGE),
    ("/demo/index.html", HTML, DEMO_PAGE),
    (
        "/demo/demo.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../clients/web/demo/demo.js"),
    ),
];
const DEMO_PAGE: &[u8] = include_bytes!("../../clients/web/demo/index.html");
const HTML: &str = "text/html; charset=utf-8";

fn route(req: Request<Incoming>, peer: SocketAddr, http: Arc<Http>) -> HttpResponse {
    let ws = matches!(http.routes, Routes::Main { .. });
    let metrics = matches!(http.routes, Routes::Main { metrics: true, .. } | Routes::Metrics);
    let demo = matches!(http.routes, Routes::Main { demo: true, .. });
    let path = req.uri().path();
    let demo_file = DEMO.iter().find(|(name, ..)| *name == path).filter(|_| demo);
    let served = path == "/healthz"
        || path == "/readyz"
        || (path == "/ws" && ws)
        || (path == "/metrics" && metrics)
        || demo_file.is_some();
    // HEAD is GET without the body (hyper leaves it out), the upgrade excepted.
    let method = match req.method() {
        &Method::HEAD if path != "/ws" => Method::GET,
        method => method.clone(),
    };
    match (&method, path) {
        _ if !served && ws && !demo && path.starts_with("/demo") => text(
            StatusCode::NOT_FOUND,
            "not found; the browser demo is served with --demo (`demo = true`)\n",
        ),
        _ if !served && ws && path == "/metrics" => text(
            StatusCode::NOT_FOUND,
            "not found; /metrics is served on the `[metrics] listen` address\n",
        ),
        _ if !served && demo => text(
            StatusCode::NOT_FOUND,
            "not found; the browser demo is at /demo/, the WebSocket endpoint at /ws\n",
        ),
        _ if !served && ws => text(StatusCode::NOT_FOUND, "not found; the WebSocket endpoint is /ws\n"),
        _ if !served => text(StatusCode::NOT_FOUND, "not found; this listener serves /metrics\n"),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") if http.ctx.draining.load(std::sync::atomic::Ordering::Acquire) => {
            text(StatusCode::SERVICE_UNAVAILABLE, "not ready: draining before it stops\n")
        }
        (&Method::GET, "/readyz") => match http.ctx.cluster.as_ref().map_or(Ok(None), |c| c.readiness()) {
            Ok(None) => text(StatusCode::OK, "ready\n"),
            Ok(Some(warning)) => text(StatusCode::OK, format!("ready; {warning}\n")),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
        },
        (&Method::GET, "/metrics") => metrics_response(&req, &http),
        (&Method::GET, "/ws") => upgrade(req, peer, http),
        (&Method::GET, _) => match demo_file {
            Some(&(_, content_type, body)) => {
                let mut response = text(StatusCode::OK, Bytes::from_static(body));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                response
            }
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
        _ => {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            let allow = if path == "/ws" { "GET" } else { "GET, HEAD" };
            response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
            response
        }
    }
}

/// `/metrics` in the format the `Accept` header asks for, to a reader with the token
/// when one is configured.
fn metrics_response(req: &Request<Incoming>, http: &Http) -> HttpResponse {
    if let Some(token) = &http.metrics_token
        && !bearer_matches(req, token)
    {
        return unauthorized("/metrics needs its bearer token\n");
    }
    let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    let mut response = text(StatusCode::OK, http.ctx.metrics.rendered(format));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    response
}

/// Whether the request's `Authorization: Bearer` is `token` (compared in constant
/// time: the token guards an endpoint).
pub(crate) fn bearer_matches(req: &Request<Incoming>, token: &str) -> bool {
    let header = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let offered = auth::token_from_request(header, None, std::iter::empty());
    // Compared as digests, byte for byte without an early exit: the time taken tells
    // nothing of the token, its length included.
    offered.is_some_and(|o| {
        let (offered, token) = (Sha256::digest(o.as_bytes()), Sha256::digest(token.as_bytes()));
        offered.iter().zip(token.iter()).fold(0, |acc, (a, b)| acc | (a ^ b)) == 0
    })
}

/// A gate's refusal (429 or 503) with `Retry-After: 1`: the handshake rate refills
/// within a second, and caps free up as connections close.
fn too_many(status: StatusCode, message: &str) -> HttpResponse {
    let mut response = text(status, format!("{message}\n"));
    response
        .headers_mut()
        .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// 405 with `Allow: allowed`.
fn method_not_allowed(allowed: &'static str) -> HttpResponse {
    let mut response = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; use {allowed}\n"),
    );
    response
        .headers_mut()
        .insert(hyper::header::ALLOW, HeaderValue::from_static(allowed));
    response
}

/// 401 with `WWW-Authenticate: Bearer`.
pub(crate) fn unauthorized(message: &'static str) -> HttpResponse {
    let mut response = text(StatusCode::UNAUTHORIZED, message);
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> HttpResponse {
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
/// and hands the upgraded connection to the WebSocket driver. A client that offered
/// the `tickrelay.v1` subprotocol (a browser) gets the origin and token refusals as an
/// upgrade closed at once with 4001 or 4000 instead ([`refuse_in_band`]).
fn upgrade(req: Request<Incoming>, peer: SocketAddr, http: Arc<Http>) -> HttpResponse {
    // Only HTTP/1.1 upgrades (hyper would answer 101 to an HTTP/1.0 one and then
    // close): refused before the origin, the caps and the token cost anything.
    if req.version() != hyper::Version::HTTP_11 {
        return text(StatusCode::BAD_REQUEST, "a WebSocket upgrade needs HTTP/1.1\n");
    }
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
    let ctx = &http.ctx;
    let metrics = &ctx.metrics;

    // A browser (it offers the subprotocol: it cannot send a header) never sees an
    // HTTP status; it gets origin and token refusals in band instead.
    let offered_protocol = header_has_token(&req, SEC_WEBSOCKET_PROTOCOL, auth::PROTOCOL);
    let mut origins = req.headers().get_all(ORIGIN).iter();
    let origin = origins.next().map(|v| v.to_str().unwrap_or("invalid"));
    // Two `Origin` headers: no browser sends that; neither is trusted.
    let origin_refused = if origins.next().is_some() {
        Some("origin not allowed: several Origin headers".to_string())
    } else {
        (!http.origins.allows(origin)).then(|| format!("origin not allowed: {}", origin.unwrap_or("none")))
    };
    if let Some(why) = &origin_refused {
        crate::transport::log_refusal(peer, "websocket", why);
        if !offered_protocol {
            metrics.count_refused_upgrade(StatusCode::FORBIDDEN);
            return text(StatusCode::FORBIDDEN, "origin not allowed\n");
        }
    }
    let permit = match ctx.gate.admit(peer.ip(), std::time::Instant::now()) {
        Ok(permit) => permit,
        Err(refusal) => {
            metrics.count_refused_upgrade(refusal.status);
            crate::transport::log_refusal(peer, "websocket", &refusal.message);
            return too_many(refusal.status, refusal.message);
        }
    };
    if let Some(reason) = origin_refused {
        metrics.count_refused_upgrade(StatusCode::FORBIDDEN);
        return refuse_in_band(req, &accept, &http, permit, CloseReason::Forbidden.code(), reason);
    }
    let query = req.uri().query();
    let protocols = req
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let authorization = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = auth::token_from_request(authorization, query, protocols);
    let identity = match ctx.session.auth.authenticate(token, unix_micros() / 1_000_000) {
        Ok(identity) => identity.with_address(peer.ip()),
        Err(e) => {
            // Signed by a key the relay does not hold yet (its set is fetched again):
            // the client's fault only if it stays unknown, so a retry, not a give-up.
            let unknown_key = e == AuthError::UnknownKey;
            let status = if unknown_key {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::UNAUTHORIZED
            };
            metrics.count_auth_failure(e.kind());
            metrics.count_refused_upgrade(status);
            crate::transport::log_refusal(peer, "websocket", &format_args!("authentication failed: {e}"));
            if unknown_key {
                let mut response = text(status, format!("{e}\n"));
                let retry = HeaderValue::from(auth::KEYS_REFETCH.as_secs());
                response.headers_mut().insert(hyper::header::RETRY_AFTER, retry);
                return response;
            }
            if offered_protocol {
                let reason = format!("authentication failed: {e}");
                return refuse_in_band(req, &accept, &http, permit, CloseReason::AuthFailed.code(), reason);
            }
            let mut response = text(StatusCode::UNAUTHORIZED, format!("{e}\n"));
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tickrelay\", error=\"invalid_token\""),
            );
            return response;
        }
    };
    let client = client_id(query);
    let start = match query.and_then(|q| auth::query_param(q, "resume")) {
        None => Start::New { identity, client },
        Some(token) => Start::Resume {
            token: token.to_string(),
            identity,
            // Without a number (a client that does not track them, or a new process
            // with a stored resume token) nothing is sent again, and every room
            // sends its `Joined` again.
            received: query
                .and_then(|q| auth::query_param(q, "received"))
                .and_then(|n| n.parse().ok()),
            client,
        },
    };
    let task_ctx = ctx.clone();
    accept_websocket(req, &accept, &http, offered_protocol, move |ws| {
        connection::serve(ws, peer, task_ctx, start, permit)
    })
}

/// The `client` query parameter (see [`connection::client_id`]).
fn client_id(query: Option<&str>) -> Option<String> {
    connection::client_id(query.and_then(|q| auth::query_param(q, "client"))?)
}

/// An upgraded connection as the WebSocket driver takes it.
type UpgradedWebSocket = WebSocket<Metered<Socket>>;

/// Answers 101 and hands the upgraded connection to `serve`.
fn accept_websocket<F, Fut>(
    mut req: Request<Incoming>,
    accept: &str,
    http: &Http,
    offered_protocol: bool,
    serve: F,
) -> HttpResponse
where
    F: FnOnce(UpgradedWebSocket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let on_upgrade = hyper::upgrade::on(&mut req);
    let ctx = http.ctx.clone();
    let read_chunk = http.read_chunk;
    http.ctx.tracker.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let (socket, read) = Socket::from_upgraded(upgraded);
                let raw = Metered::new(socket, &ctx.session.settings.rate);
                let max_message = ctx.session.settings.max_message_bytes as usize;
                serve(WebSocket::new(raw, &read, max_message, read_chunk)).await;
            }
            Err(e) => tracing::debug!("upgrade failed: {e}"),
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(accept).expect("base64 is a valid header value"),
    );
    // Browsers that offered subprotocols (to carry a token) require one back.
    if offered_protocol {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(auth::PROTOCOL));
    }
    response
}

/// An upgraded connection's socket, taken back from hyper (its boxed, rewinding
/// wrapper cost two trait conversions and a dynamic call per read and per write).
///
/// Its reads keep the kernel from acknowledging a client's message on its own. While
/// rooms tick, a client's input is read shortly before the tick and answered by the
/// frame after it, which carries the acknowledgement; but a socket leaves the
/// kernel's interactive ("pingpong") mode whenever its delayed acknowledgement timer
/// fires (an input that came more than 40 ms before the frame), and outside that mode
/// every read of a small message sends a bare ACK (a packet out, and on loopback the
/// client's handling of it too: 14 % of the relay's CPU samples in one W1a profile;
/// see BENCHMARKS.md, "Bare ACKs"). So the first read after the socket ran dry puts it
/// back in that mode (`TCP_QUICKACK` off: one `setsockopt` per burst of reads).
pub(crate) struct Socket {
    stream: Stream,
    /// Set since the last read that found nothing.
    acks_held: bool,
}

enum Stream {
    /// A `wss://` connection.
    Tls(ServerTls),
    /// A `ws://` connection (`--insecure-plain`).
    Plain(TcpStream),
    /// Another stream (not expected: what hyper handed over, as it is).
    Other(TokioIo<Upgraded>),
}

impl Socket {
    /// The socket under `upgraded`, and what hyper had read past the request.
    fn from_upgraded(upgraded: Upgraded) -> (Self, Vec<u8>) {
        let (stream, read) = match upgraded.downcast::<TokioIo<TlsStream<CountedTcp>>>() {
            Ok(parts) => (
                Stream::Tls(ServerTls::new(parts.io.into_inner())),
                parts.read_buf.to_vec(),
            ),
            Err(upgraded) => match upgraded.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => (Stream::Plain(parts.io.into_inner()), parts.read_buf.to_vec()),
                Err(upgraded) => (Stream::Other(TokioIo::new(upgraded)), Vec::new()),
            },
        };
        let socket = Self {
            stream,
            acks_held: false,
        };
        (socket, read)
    }

    fn tcp(&self) -> Option<&TcpStream> {
        match &self.stream {
            Stream::Tls(s) => Some(s.tcp()),
            Stream::Plain(s) => Some(s),
            Stream::Other(_) => None,
        }
    }
}

/// Puts `tcp` in the kernel's interactive mode (see [`Socket`]). Best effort: a socket
/// that refuses acknowledges as before; Linux only (elsewhere: nothing).
fn hold_acks(tcp: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = socket2::SockRef::from(tcp).set_tcp_quickack(false);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = tcp;
}

/// Delegates to the stream of the variant.
macro_rules! stream_call {
    ($stream:expr, $method:ident($($arg:expr),*)) => {
        match $stream {
            Stream::Tls(s) => Pin::new(s).$method($($arg),*),
            Stream::Plain(s) => Pin::new(s).$method($($arg),*),
            Stream::Other(s) => Pin::new(s).$method($($arg),*),
        }
    };
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        // Only once there is something to read (a poll may find nothing: a wake-up
        // for nothing, tokio's budget spent), and before it is read: the kernel
        // decides during the read whether to acknowledge.
        if !this.acks_held
            && let Some(tcp) = this.tcp()
            && tcp.poll_read_ready(cx).is_ready()
        {
            hold_acks(tcp);
            this.acks_held = true;
        }
        let read = stream_call!(&mut this.stream, poll_read(cx, buf));
        if read.is_pending() {
            this.acks_held = false;
        }
        read
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        stream_call!(&mut self.get_mut().stream, poll_write(cx, data))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        stream_call!(&mut self.get_mut().stream, poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Other(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        stream_call!(&mut self.get_mut().stream, poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        stream_call!(&mut self.get_mut().stream, poll_shutdown(cx))
    }
}

/// Refuses a browser's upgrade in a way its page can read: a browser shows a page no
/// HTTP status of a failed upgrade (only a 1006 close), so the connection is upgraded
/// and closed at once with `code` and `reason` (cut to 123 bytes). No session exists; the connection
/// holds its `permit` (the caps count it) until the close is answered, a second or two
/// at most.
fn refuse_in_band(
    req: Request<Incoming>,
    accept: &str,
    http: &Http,
    permit: Permit,
    code: u16,
    reason: String,
) -> HttpResponse {
    accept_websocket(req, accept, http, true, move |mut ws| async move {
        ws.close_with(code, &reason).await;
        drop(permit);
    })
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// `TCP_QUICKACK` reads back as "not in the interactive mode".
    fn acks_at_once(tcp: &TcpStream) -> bool {
        socket2::SockRef::from(tcp).tcp_quickack().unwrap()
    }

    #[tokio::test]
    async fn the_first_read_of_a_burst_puts_the_socket_back_in_the_mode_where_the_reply_carries_the_ack() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut socket = Socket {
            stream: Stream::Plain(server),
            acks_held: false,
        };
        let mut buf = [0u8; 64];
        for message in [&b"input 1"[..], b"input 2"] {
            // As after a delayed acknowledgement timer fired.
            socket2::SockRef::from(socket.tcp().unwrap())
                .set_tcp_quickack(true)
                .unwrap();
            assert!(acks_at_once(socket.tcp().unwrap()));
            client.write_all(message).await.unwrap();
            let n = socket.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], message);
            assert!(!acks_at_once(socket.tcp().unwrap()), "read in the interactive mode");
            // The socket ran dry: the next read sets the mode again.
            let dry = std::future::poll_fn(|cx| {
                Poll::Ready(Pin::new(&mut socket).poll_read(cx, &mut ReadBuf::new(&mut buf)))
            })
            .await;
            assert!(dry.is_pending());
            assert!(!socket.acks_held);
        }
    }
}
