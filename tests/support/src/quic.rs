//! A QUIC connection to the test server: handshake, control stream and `Hello`, then
//! the read loop over the control stream and the state datagrams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use prost::Message as _;
use tickrelay::frame::{ALPN, MAX_SERVER_FRAME_BYTES, split_stream_frame};
use tickrelay::proto;
use tokio::net::UdpSocket;

use crate::client::Incoming;
use crate::{TestServer, WAIT};

/// A QUIC connection with its control stream.
pub struct QuicConn {
    /// The client endpoint (one per connection).
    pub endpoint: quinn::Endpoint,
    /// The connection.
    pub conn: quinn::Connection,
    /// The sending half of the control stream.
    pub send: quinn::SendStream,
    recv: quinn::RecvStream,
    inbound: BytesMut,
    /// The control stream's bytes read per second, at most (a client on a slow path);
    /// none: as fast as they come.
    pub read_rate: Option<f64>,
    /// Seconds of reading owed to `read_rate`, slept in steps of at least 5 ms (a
    /// timer's granularity is a millisecond).
    read_owed: f64,
}

impl QuicConn {
    /// Handshake, control stream and `Hello` (with `token` and `resume` token, empty
    /// for none, and `received` when resuming), through `via`: the server's address,
    /// or a forwarder in front of it.
    pub async fn open(server: &TestServer, via: SocketAddr, token: &str, resume: &str, received: u64) -> Self {
        Self::open_with(client_config(server), via, token, resume, received).await
    }

    /// [`QuicConn::open`] with a client configuration of the caller's.
    pub async fn open_with(
        config: quinn::ClientConfig,
        via: SocketAddr,
        token: &str,
        resume: &str,
        received: u64,
    ) -> Self {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(config);
        let conn = tokio::time::timeout(WAIT, endpoint.connect(via, "localhost").unwrap())
            .await
            .expect("QUIC handshake within the wait time")
            .expect("QUIC handshake");
        let (mut send, recv) = conn.open_bi().await.unwrap();
        let hello = proto::Hello {
            token: token.into(),
            resume_token: resume.into(),
            received_seq: (!resume.is_empty()).then_some(received),
            ..Default::default()
        };
        send.write_all(&hello.encode_length_delimited_to_vec()).await.unwrap();
        Self {
            endpoint,
            conn,
            send,
            recv,
            inbound: BytesMut::new(),
            read_rate: None,
            read_owed: 0.0,
        }
    }

    /// The next envelope (a control-stream frame or a datagram), or how the
    /// connection ended.
    pub async fn recv(&mut self) -> Incoming {
        loop {
            if let Some(frame) = split_stream_frame(&mut self.inbound, MAX_SERVER_FRAME_BYTES).unwrap() {
                return Incoming::Envelope(frame);
            }
            // The stream first, as the client library reads it: once the server's
            // close has arrived, the datagram side is ready with it at once, though
            // the stream may still hold the last words written before it (a
            // stopping node's `GoingAway`).
            tokio::select! {
                biased;
                chunk = self.recv.read_chunk(64 * 1024, true) => match chunk {
                    Ok(Some(chunk)) => {
                        self.inbound.extend_from_slice(&chunk.bytes);
                        if let Some(rate) = self.read_rate {
                            self.read_owed += chunk.bytes.len() as f64 / rate;
                            if self.read_owed >= 0.005 {
                                tokio::time::sleep(Duration::from_secs_f64(std::mem::take(&mut self.read_owed))).await;
                            }
                        }
                    }
                    Ok(None) => return closed(self.conn.closed().await),
                    Err(quinn::ReadError::ConnectionLost(e)) => return closed(e),
                    Err(e) => return Incoming::Ended(e.to_string()),
                },
                datagram = self.conn.read_datagram() => match datagram {
                    Ok(bytes) => return Incoming::Envelope(bytes),
                    Err(e) => return closed(e),
                },
            }
        }
    }

    /// Sends one length-prefixed frame on the control stream.
    pub async fn send_frame(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut frame = Vec::new();
        prost::encoding::encode_varint(bytes.len() as u64, &mut frame);
        frame.extend_from_slice(bytes);
        self.send.write_all(&frame).await.map_err(|e| e.to_string())
    }
}

/// An application close is the server's close code and reason; anything else ended
/// the connection without one.
fn closed(e: quinn::ConnectionError) -> Incoming {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => Incoming::Closed(
            c.error_code.into_inner() as u16,
            String::from_utf8_lossy(&c.reason).into_owned(),
        ),
        e => Incoming::Ended(e.to_string()),
    }
}

/// A QUIC client configuration that trusts `server`'s certificate and speaks its ALPN.
pub fn client_config(server: &TestServer) -> quinn::ClientConfig {
    let mut crypto = server.tls_config();
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    quinn::ClientConfig::new(Arc::new(crypto))
}

/// Counters of the forwarder.
#[derive(Default)]
pub struct Counters {
    /// Packets from the server to the client forwarded.
    pub down: AtomicU64,
    /// Packets from the server to the client dropped.
    pub down_dropped: AtomicU64,
    /// Bytes of the packets from the server to the client forwarded.
    pub down_bytes: AtomicU64,
    /// Packets from the client to the server forwarded.
    pub up: AtomicU64,
    /// Packets from the client to the server dropped.
    pub up_dropped: AtomicU64,
    /// While set, every packet from the client to the server is dropped (a path
    /// that stopped acknowledging).
    pub stalled: AtomicBool,
    /// While set, every packet from the server to the client is dropped (a spoofed
    /// source address: the answers go to someone else).
    pub deaf: AtomicBool,
}

/// A UDP forwarder between one QUIC client and the server (see [`lossy_forwarder`]).
pub struct Forwarder {
    /// Where the client connects instead of the server.
    pub addr: SocketAddr,
    /// What it forwarded and dropped.
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards one client's UDP packets to `server` and back, dropping `loss` of them
/// in each direction, chosen by a seeded generator (the same packets every run for
/// the same traffic).
pub async fn lossy_forwarder(server: SocketAddr, loss: f64, seed: u64) -> Forwarder {
    forwarder(server, loss, seed, Duration::ZERO).await
}

/// A loss-free forwarder that holds every packet `one_way` in each direction, so the
/// path's round trip is twice that.
pub async fn slow_forwarder(server: SocketAddr, one_way: Duration) -> Forwarder {
    forwarder(server, 0.0, 0, one_way).await
}

async fn forwarder(server: SocketAddr, loss: f64, seed: u64, delay: Duration) -> Forwarder {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(server).await.unwrap();
    let addr = front.local_addr().unwrap();
    let counters = Arc::new(Counters::default());
    let c = counters.clone();
    // Sends after the delay (the packets of one direction keep their order: each
    // waits the same time).
    let later = move |socket: &Arc<UdpSocket>, packet: &[u8], to: Option<SocketAddr>| {
        let (socket, packet) = (socket.clone(), packet.to_vec());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = match to {
                Some(to) => socket.send_to(&packet, to).await,
                None => socket.send(&packet).await,
            };
        });
    };
    let task = tokio::spawn(async move {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut client = None;
        let mut up = vec![0u8; 65536];
        let mut down = vec![0u8; 65536];
        loop {
            tokio::select! {
                received = front.recv_from(&mut up) => {
                    let Ok((n, from)) = received else { return };
                    client = Some(from);
                    if c.stalled.load(Ordering::Relaxed) || rng.f64() < loss {
                        c.up_dropped.fetch_add(1, Ordering::Relaxed);
                    } else {
                        c.up.fetch_add(1, Ordering::Relaxed);
                        if delay.is_zero() {
                            let _ = back.send(&up[..n]).await;
                        } else {
                            later(&back, &up[..n], None);
                        }
                    }
                }
                received = back.recv(&mut down) => {
                    let Ok(n) = received else { return };
                    let Some(to) = client else { continue };
                    if c.deaf.load(Ordering::Relaxed) || rng.f64() < loss {
                        c.down_dropped.fetch_add(1, Ordering::Relaxed);
                    } else {
                        c.down.fetch_add(1, Ordering::Relaxed);
                        c.down_bytes.fetch_add(n as u64, Ordering::Relaxed);
                        if delay.is_zero() {
                            let _ = front.send_to(&down[..n], to).await;
                        } else {
                            later(&front, &down[..n], Some(to));
                        }
                    }
                }
            }
        }
    });
    Forwarder { addr, counters, task }
}
