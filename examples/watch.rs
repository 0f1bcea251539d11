//! A minimal tickrelay client: connects over wss://, trusting the relay's development
//! certificate, joins an arena room, steers its avatar in a circle and prints what
//! arrives once a second (the state is verified against the server's checksums), and
//! the room's events, errors and its leaving the room as they come.
//!
//! ```sh
//! cargo run --release --example watch -- --url wss://127.0.0.1:7443/ws --cert tickrelay-dev-cert.pem
//! ```
//!
//! `--token JWT` (or `TICKRELAY_TOKEN`) for a relay that requires one; `--help` for the rest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tickrelay::frame::decode_server;
use tickrelay::mirror::StateMirror;
use tickrelay::proto::{self, ClientEnvelope, ClientMessage, client_message::Kind as Out, server_message::Kind as In};
use tickrelay::state::Schema;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The join's and the resync's request ids: above every input `seq`, which an input's
/// refusal names as its request id (docs/PROTOCOL.md, "Numbers that must not collide").
const JOIN_REQUEST: u64 = 1 << 53;
const RESYNC_REQUEST: u64 = JOIN_REQUEST + 1;

/// Watch an arena room: join, steer in a circle, print once a second what arrived.
#[derive(clap::Parser)]
struct Args {
    /// The relay's WebSocket URL.
    #[arg(long, default_value = "wss://127.0.0.1:7443/ws")]
    url: String,
    /// PEM file of the certificate to trust (the relay's development certificate).
    #[arg(long, default_value = "tickrelay-dev-cert.pem")]
    cert: String,
    /// JWT for a relay with `--auth jwt` (for example from `tickrelay token`); also read
    /// from TICKRELAY_TOKEN.
    #[arg(long, env = "TICKRELAY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The room to join (an arena room; created if it does not exist).
    #[arg(long, default_value = "demo")]
    room: String,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

fn envelope(kinds: Vec<Out>) -> Message {
    let messages = kinds.into_iter().map(|k| ClientMessage { kind: Some(k) }).collect();
    let envelope = ClientEnvelope {
        messages,
        first_event_seq: 0,
    };
    Message::Binary(envelope.encode_to_vec().into())
}

/// Step `seq` of a circle, with a ping to measure the round trip.
fn steer(room: &str, seq: u64) -> Message {
    let angle = seq as f32 * 0.8;
    let intent = vec![(angle.cos() * 127.0) as i8 as u8, (angle.sin() * 127.0) as i8 as u8];
    envelope(vec![
        Out::Input(proto::Input {
            room: room.to_string(),
            seq,
            payload: Some(proto::input::Payload::Intent(intent.into())),
        }),
        Out::Ping(proto::Ping {
            nonce: seq,
            sent_time_us: now_us(),
            ..Default::default()
        }),
    ])
}

fn now_us() -> u64 {
    tickrelay::clock::unix_micros()
}

/// An error code's name, as PROTOCOL.md lists it (`FORBIDDEN`, `ROOM_CLOSED`, …).
fn code_name(code: i32) -> String {
    proto::ErrorCode::try_from(code).map_or(code.to_string(), |c| {
        c.as_str_name().trim_start_matches("ERROR_CODE_").to_string()
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // The error in words, not as `Debug` quotes it.
    match run(<Args as clap::Parser>::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let rest = args
        .url
        .strip_prefix("wss://")
        .ok_or("the URL must start with wss://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);

    // Trust exactly the relay's certificate file, nothing else.
    let mut roots = rustls::RootCertStore::empty();
    let unreadable = |e: &dyn std::fmt::Display| {
        format!(
            "certificate file {}: {e} (run this where the relay runs, which writes it there, or pass --cert PATH)",
            args.cert
        )
    };
    for cert in CertificateDer::pem_file_iter(&args.cert).map_err(|e| unreadable(&e))? {
        roots.add(cert.map_err(|e| unreadable(&e))?)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(authority)
        .await
        .map_err(|e| format!("connecting to {authority}: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(ServerName::try_from(host.to_string())?, tcp)
        .await
        .map_err(|e| {
            // A relay run with --insecure-plain answers the TLS handshake in plain HTTP.
            let plain = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).is_some_and(|e| {
                matches!(e, rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType))
            });
            match plain {
                true => format!("the TLS handshake with {authority} failed ({e}): the server does not speak TLS (a relay run with --insecure-plain?); this example connects over wss:// only"),
                false => format!("the TLS handshake with {authority} failed: {e}"),
            }
        })?;
    let mut request = args.url.as_str().into_client_request()?;
    if let Some(token) = &args.token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
                format!(
                    "the relay refused the connection: HTTP {} {}",
                    response.status(),
                    body.trim()
                )
            }
            e => e.to_string(),
        })?;
    println!("connected to {}", args.url);

    ws.send(envelope(vec![Out::Join(proto::JoinRoom {
        request_id: JOIN_REQUEST,
        room: args.room.clone(),
        room_type: "arena".into(),
        ..Default::default()
    })]))
    .await?;

    let mut mirror = StateMirror::new();
    let (mut frames, mut bytes, mut seq) = (0u64, 0usize, 0u64);
    let mut rtt = String::from("–");
    let mut member = 0;
    let started = Instant::now();
    let mut second = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = second.tick() => {
                let elapsed = started.elapsed().as_secs();
                if elapsed > 0 {
                    let me = mirror.world().entities().find(|e| e.owner() == member);
                    let position = me.map(|e| format!("{:?}", (e.get(1), e.get(2)))).unwrap_or_default();
                    println!(
                        "t={elapsed}s tick={} entities={} frames={frames} bytes={bytes} checksums_ok={} rtt={rtt} avatar={position}",
                        mirror.tick(), mirror.world().len(), mirror.checksums_verified(),
                    );
                    frames = 0;
                    bytes = 0;
                }
                if elapsed >= args.seconds {
                    ws.close(None).await?;
                    return Ok(());
                }
                // Steer in a circle (once in the room) and measure the round trip.
                if member != 0 {
                    seq += 1;
                    ws.send(steer(&args.room, seq)).await?;
                }
            }
            message = ws.next() => {
                let Some(message) = message else { return Err("connection closed".into()) };
                match message? {
                    Message::Binary(data) => {
                        bytes += data.len();
                        for m in decode_server(&data)?.messages {
                            match m.kind {
                                Some(In::Joined(j)) => {
                                    member = j.member_id;
                                    // The room's declared kinds decode its packed blocks.
                                    mirror = StateMirror::with_schema(Schema::from_proto(&j.schema)?.into());
                                    println!("joined room {} ({}) as member {} at {} Hz", j.room, j.room_type, j.member_id, j.tick_rate);
                                    // The first step at once; the next once a second. (Inputs
                                    // are numbered above what the seat applied before.)
                                    seq = seq.max(j.last_input_seq) + 1;
                                    ws.send(steer(&args.room, seq)).await?;
                                }
                                Some(In::State(frame)) => {
                                    frames += 1;
                                    if let Err(desync) = mirror.apply(&frame) {
                                        println!("desync: {desync}; asking for a full snapshot");
                                        let resync = proto::Request {
                                            request_id: RESYNC_REQUEST,
                                            kind: Some(proto::request::Kind::Resync(proto::Resync { room: args.room.clone() })),
                                        };
                                        ws.send(envelope(vec![Out::Request(resync)])).await?;
                                    }
                                }
                                // Cluster mode: the room lives on another node. (A client
                                // of the library follows this by itself; this example
                                // does not.)
                                Some(In::Redirect(r)) => {
                                    ws.close(None).await?;
                                    return Err(format!("room {} lives on another node of the cluster: run again with --url {}", r.room, r.url).into());
                                }
                                Some(In::Pong(p)) => rtt = format!("{:.2}ms", now_us().saturating_sub(p.ping_sent_time_us) as f64 / 1000.0),
                                // The join refused: nothing to watch.
                                Some(In::Error(e)) if e.request_id == JOIN_REQUEST && member == 0 => {
                                    ws.close(None).await?;
                                    return Err(format!("the relay refused the join: {}: {}", code_name(e.code), e.message).into());
                                }
                                Some(In::Error(e)) => println!("error {}: {}", code_name(e.code), e.message),
                                Some(In::Event(e)) => println!("room event {:?} from member {}: {} bytes", e.kind, e.sender, e.payload.len()),
                                // Removed by the server (the room closed, or the game removed
                                // this member): nothing left to watch.
                                Some(In::Left(left)) => {
                                    println!("left room {}: {}: {}", left.room, code_name(left.reason), left.message);
                                    ws.close(None).await?;
                                    return Ok(());
                                }
                                _ => {}
                            }
                        }
                    }
                    Message::Close(frame) => {
                        match frame {
                            Some(frame) => println!("closed by the server: {} {}", u16::from(frame.code), frame.reason),
                            None => println!("closed by the server"),
                        }
                        return Ok(());
                    }
                    _ => {}
                }
            }
        }
    }
}
