//! A QUIC connection to the test server: handshake, control stream and `Hello`, then
//! the read loop over the control stream and the state datagrams.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use prost::Message as _;
use tickrelay::frame::{ALPN, MAX_SERVER_FRAME_BYTES, split_stream_frame};
use tickrelay::proto;

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
}

impl QuicConn {
    /// Handshake, control stream and `Hello` (with `token` and `resume` token, empty
    /// for none, and `received` when resuming), through `via`: the server's address,
    /// or a forwarder in front of it.
    pub async fn open(server: &TestServer, via: SocketAddr, token: &str, resume: &str, received: u64) -> Self {
        let mut crypto = server.tls_config();
        crypto.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
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
        }
    }

    /// The next envelope (a control-stream frame or a datagram), or how the
    /// connection ended.
    pub async fn recv(&mut self) -> Incoming {
        loop {
            if let Some(frame) = split_stream_frame(&mut self.inbound, MAX_SERVER_FRAME_BYTES).unwrap() {
                return Incoming::Envelope(frame);
            }
            tokio::select! {
                chunk = self.recv.read_chunk(64 * 1024, true) => match chunk {
                    Ok(Some(chunk)) => self.inbound.extend_from_slice(&chunk.bytes),
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
