//! The floor: the least a relay can do for the side-by-side workloads, to show what
//! part of tickrelay's CPU per delivered frame the machine itself costs.
//!
//! One thread (a current-thread tokio runtime, like Colyseus's one JavaScript thread)
//! accepts WebSocket connections (TLS unless `--plain`), answers a client's first
//! message with `Joined`, and then, once per tick, writes one prebuilt state frame of
//! `--frame-bytes` to every connection — the same bytes for every member of a room,
//! one write each, no per-connection wake-up — and reads whatever clients send without
//! decoding it. No simulation, no delta encoding, no sessions, limits or checks. It
//! sleeps between ticks (as the relay's I/O threads do while rooms tick), so what
//! clients send is read once per tick; `--unpaced` wakes it for every message.
//!
//! Its frames carry a tick, a baseline and a time stamp, and an opaque packed block
//! whose header counts `--entities` changed entities, so `tickrelay-bots
//! --verify-share 0` (headers only) follow them, measure latency and count bytes per
//! entity as for the relay. `bench/side_by_side.sh --servers floor,floor-ws` runs it
//! over `wss://`, and with `--plain` over `ws://`, with the frame size tickrelay's run
//! measured.
//!
//! Run: `cargo run --release --example floor -- --help`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use prost::Message;
use tickrelay::clock::unix_micros;
use tickrelay::proto::{
    ClientEnvelope, Joined, Limits, ServerEnvelope, ServerMessage, StateFrame, Welcome, client_message,
    server_message::Kind,
};
use tickrelay::transport::tls::{self, ServerTls, TlsConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The least a relay can do (see the source's documentation).
#[derive(Parser, Debug)]
struct Args {
    /// Address to listen on (HTTPS / WSS unless --plain).
    #[arg(long, default_value = "127.0.0.1:7443")]
    listen: SocketAddr,
    /// Ticks per second.
    #[arg(long, default_value_t = 20)]
    tick_rate: u32,
    /// WebSocket payload bytes of each state frame.
    #[arg(long, default_value_t = 1235)]
    frame_bytes: usize,
    /// Changed entities the frames' packed block says it holds.
    #[arg(long, default_value_t = 260)]
    entities: u64,
    /// Where the generated development certificate is written.
    #[arg(long, default_value = "tickrelay-dev-cert.pem")]
    dev_cert_path: PathBuf,
    /// Plain ws:// and http:// instead of TLS.
    #[arg(long)]
    plain: bool,
    /// Wake for every message a client sends (the floor before the relay's I/O
    /// threads were paced), instead of once per tick.
    #[arg(long)]
    unpaced: bool,
}

trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}
type Stream = Box<dyn Io>;

/// A connection as the tick loop sees it.
struct Member {
    writer: WriteHalf<Stream>,
    session: u64,
    /// Set by the reader: the room the client asked to join (its first message), and
    /// the join's request id (a client takes only the answer to its latest join).
    room: Rc<RefCell<Option<(String, u64)>>>,
    closed: Rc<Cell<bool>>,
    /// The tick of the last frame written (0: none yet, Joined not sent).
    last: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // Paced as the relay's I/O threads are: asleep until the next tick (the tick loop
    // says when), then everything that arrived is read and every frame written.
    let next_tick = Arc::new(AtomicU64::new(0));
    let mut runtime = tokio::runtime::Builder::new_current_thread();
    if !args.unpaced {
        let next_tick = next_tick.clone();
        runtime.on_thread_park(move || {
            let wait = next_tick.load(Ordering::Relaxed).saturating_sub(unix_micros());
            if wait > 200 {
                std::thread::sleep(Duration::from_micros(wait));
            }
        });
    }
    let runtime = runtime.enable_all().build()?;
    tokio::task::LocalSet::new().block_on(&runtime, serve(args, next_tick))
}

async fn serve(args: Args, next_tick: Arc<AtomicU64>) -> Result<(), Box<dyn std::error::Error>> {
    let acceptor = if args.plain {
        None
    } else {
        let config = TlsConfig {
            dev_cert_path: args.dev_cert_path.clone(),
            ..TlsConfig::default()
        };
        Some(tokio_rustls::TlsAcceptor::from(tls::load(&config)?.config))
    };
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!(
        "floor: listening on {} ({})",
        args.listen,
        if args.plain { "plain" } else { "TLS" }
    );
    let arrivals: Rc<RefCell<Vec<Member>>> = Rc::default();
    tokio::task::spawn_local(tick_loop(
        args.tick_rate,
        args.frame_bytes,
        args.entities,
        arrivals.clone(),
        next_tick,
    ));
    let mut sessions = 0;
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        sessions += 1;
        let (acceptor, arrivals) = (acceptor.clone(), arrivals.clone());
        tokio::task::spawn_local(async move {
            let stream: Stream = match acceptor {
                // The relay's own TLS reads (readiness first), so the floor's I/O is
                // the relay's.
                Some(a) => match a.accept(tls::CountedTcp::new(tcp)).await {
                    Ok(tls) => Box::new(ServerTls::new(tls)),
                    Err(_) => return,
                },
                None => Box::new(tcp),
            };
            let _ = connection(stream, sessions, arrivals).await;
        });
    }
}

/// The upgrade, the `Welcome`, then reading (and dropping) what the client sends.
async fn connection(mut stream: Stream, session: u64, arrivals: Rc<RefCell<Vec<Member>>>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut len = 0;
    let head_end = loop {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 || len + n == buf.len() {
            return Ok(());
        }
        len += n;
        if let Some(end) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let key = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-key"))
        })
        .map(|(_, v)| v.trim().to_string());
    let Some(key) = key else {
        // /healthz, /metrics: an empty 200.
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await?;
        return stream.shutdown().await;
    };
    let accept = derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await?;
    let welcome = Kind::Welcome(Welcome {
        protocol_version: tickrelay::proto::PROTOCOL_VERSION,
        session_id: session,
        resume_token: format!("floor-{session}"),
        limits: Some(Limits {
            max_message_bytes: 16 * 1024,
            messages_per_second: 50,
            message_burst: 100,
            bytes_per_second: 64 * 1024,
            byte_burst: 128 * 1024,
        }),
        heartbeat_interval_ms: 30_000,
        heartbeat_timeout_ms: 5_000,
        resume_grace_ms: 20_000,
        server_time_us: unix_micros(),
        user_id: format!("anonymous-{session}"),
        resumed: false,
        events_received: 0,
    });
    stream.write_all(&ws_frame(&envelope(welcome, 0))).await?;
    // The client joins once it has the Welcome: it must not wait in rustls's buffer.
    stream.flush().await?;

    let (mut reader, writer) = tokio::io::split(stream);
    let room = Rc::new(RefCell::new(None));
    let closed = Rc::new(Cell::new(false));
    arrivals.borrow_mut().push(Member {
        writer,
        session,
        room: room.clone(),
        closed: closed.clone(),
        last: 0,
    });
    // Bytes after the handshake (the client may already have sent its join).
    let mut pending = buf[head_end..len].to_vec();
    loop {
        if room.borrow().is_none() {
            *room.borrow_mut() = join_room(&pending);
        } else {
            pending.clear(); // read and dropped: the floor does nothing with inputs
        }
        let n = reader.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            closed.set(true);
            return Ok(());
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

/// The room and request id of the first `JoinRoom` in the client's WebSocket
/// messages so far.
fn join_room(mut bytes: &[u8]) -> Option<(String, u64)> {
    loop {
        let b1 = *bytes.get(1)?;
        let mut rest = &bytes[2..];
        let len = match b1 & 0x7f {
            126 => {
                let len = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?);
                rest = &rest[2..];
                usize::from(len)
            }
            127 => {
                let len = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
                rest = &rest[8..];
                usize::try_from(len).ok()?
            }
            n => usize::from(n),
        };
        let mask: [u8; 4] = rest.get(..4)?.try_into().ok()?;
        let payload: Vec<u8> = (rest.get(4..4 + len)?.iter().enumerate())
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        let joined = ClientEnvelope::decode(&payload[..]).ok().and_then(|envelope| {
            envelope.messages.into_iter().find_map(|m| match m.kind {
                Some(client_message::Kind::Join(join)) => Some((join.room, join.request_id)),
                _ => None,
            })
        });
        if joined.is_some() {
            return joined;
        }
        bytes = &rest[4 + len..];
    }
}

fn envelope(kind: Kind, first_seq: u64) -> Vec<u8> {
    ServerEnvelope {
        messages: vec![ServerMessage { kind: Some(kind) }],
        first_seq,
    }
    .encode_to_vec()
}

/// A server-to-client WebSocket binary message (unmasked).
fn ws_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x82);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Once per tick: every joined member gets the room's frame, one write each.
async fn tick_loop(
    rate: u32,
    frame_bytes: usize,
    entities: u64,
    arrivals: Rc<RefCell<Vec<Member>>>,
    next_tick: Arc<AtomicU64>,
) {
    let mut members: Vec<Member> = Vec::new();
    let mut interval = tokio::time::interval(Duration::from_secs(1) / rate);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // An opaque packed block: kind 1, none added, `entities` changed, then padding.
    let mut header = Vec::new();
    for v in [1, 0, entities] {
        prost::encoding::encode_varint(v, &mut header);
    }
    let mut frames: HashMap<(String, bool), Bytes> = HashMap::new();
    for tick in 1u64.. {
        interval.tick().await;
        next_tick.store(unix_micros() + 1_000_000 / u64::from(rate), Ordering::Relaxed);
        members.append(&mut arrivals.borrow_mut());
        members.retain(|m| !m.closed.get());
        frames.clear();
        let now = unix_micros();
        let mut frame = |room: &str, full: bool| {
            let key = (room.to_string(), full);
            frames
                .entry(key)
                .or_insert_with(|| {
                    let state = |packed: Vec<Bytes>| {
                        envelope(
                            Kind::State(StateFrame {
                                room: room.to_string(),
                                tick,
                                baseline_tick: if full { 0 } else { tick - 1 },
                                packed,
                                server_time_us: now,
                                ..Default::default()
                            }),
                            0,
                        )
                    };
                    // Pad the block so the WebSocket payload is `frame_bytes` long.
                    let bare = state(vec![Bytes::from(header.clone())]).len();
                    let mut block = header.clone();
                    block.resize(header.len() + frame_bytes.saturating_sub(bare + 2), 0);
                    Bytes::from(ws_frame(&state(vec![Bytes::from(block)])))
                })
                .clone()
        };
        let mut gone = Vec::new();
        for (i, m) in members.iter_mut().enumerate() {
            let Some((room, request_id)) = m.room.borrow().clone() else {
                continue;
            };
            let result = if m.last == 0 {
                let joined = Kind::Joined(Joined {
                    request_id,
                    room: room.clone(),
                    room_type: "arena".into(),
                    member_id: m.session,
                    tick_rate: rate,
                    max_members: 1024,
                    ..Default::default()
                });
                let mut out = ws_frame(&envelope(joined, 1));
                out.extend_from_slice(&frame(&room, true));
                m.writer.write_all(&out).await
            } else {
                m.writer.write_all(&frame(&room, false)).await
            };
            // tokio-rustls's `write_all` can return with records still buffered in
            // rustls (its socket write would block); without the flush they waited for
            // a later write, seconds behind (2026-12-02: W2 frames 3-9 s late).
            let result = match result {
                Ok(()) => m.writer.flush().await,
                e => e,
            };
            match result {
                Ok(()) => m.last = tick,
                Err(_) => gone.push(i),
            }
        }
        for i in gone.into_iter().rev() {
            members.swap_remove(i);
        }
    }
}
