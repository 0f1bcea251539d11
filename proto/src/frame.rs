//! Envelopes on the wire: one transport message carries one envelope holding one or
//! more messages. [`decode_client`] and [`decode_server`] turn arbitrary bytes into an
//! envelope or a typed [`DecodeError`]; they never panic. Over QUIC the control stream
//! carries envelopes length-delimited ([`split_stream_frame`]).

use bytes::{Bytes, BytesMut};
use prost::Message;

use crate::v1::{ClientEnvelope, ServerEnvelope, ServerMessage, server_message};

/// The ALPN protocol id a QUIC client offers.
pub const ALPN: &[u8] = b"tickrelay/1";

/// Largest frame a server sends on the QUIC control stream (a full snapshot of a big
/// room); clients refuse larger ones.
pub const MAX_SERVER_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Why an inbound message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are not a valid envelope (close 1007).
    #[error("undecodable envelope: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The envelope holds no messages.
    #[error("empty envelope")]
    Empty,
    /// A message of a kind this server does not know (a newer client, or garbage that
    /// happened to decode): answered with an error, not a close.
    #[error("message {index} of the envelope has no known kind")]
    UnknownKind {
        /// Position of the message in the envelope.
        index: usize,
    },
}

/// Decodes a client envelope.
pub fn decode_client(bytes: &[u8]) -> Result<ClientEnvelope, DecodeError> {
    let envelope = ClientEnvelope::decode(bytes)?;
    validate_client(&envelope)?;
    Ok(envelope)
}

/// Checks a decoded client envelope: at least one message, each of a known kind.
pub fn validate_client(envelope: &ClientEnvelope) -> Result<(), DecodeError> {
    if envelope.messages.is_empty() {
        return Err(DecodeError::Empty);
    }
    if let Some(index) = envelope.messages.iter().position(|m| m.kind.is_none()) {
        return Err(DecodeError::UnknownKind { index });
    }
    Ok(())
}

/// Decodes a server envelope (client side).
pub fn decode_server(bytes: &[u8]) -> Result<ServerEnvelope, DecodeError> {
    let envelope = ServerEnvelope::decode(bytes)?;
    if envelope.messages.is_empty() {
        return Err(DecodeError::Empty);
    }
    if let Some(index) = envelope.messages.iter().position(|m| m.kind.is_none()) {
        return Err(DecodeError::UnknownKind { index });
    }
    Ok(envelope)
}

/// Encodes one server message for an outbox's reliable queue.
pub fn encode_message(kind: server_message::Kind) -> Bytes {
    ServerMessage { kind: Some(kind) }.encode_to_vec().into()
}

/// Why a control-stream frame could not be split off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the limit.
    #[error("frame over the size limit")]
    TooBig,
    /// The length prefix is not a valid varint.
    #[error("invalid frame length")]
    BadLength,
}

/// Splits the first whole length-delimited frame (a protobuf varint length, then that
/// many bytes) off the front of `buf`. `Ok(None)`: not all of it has arrived yet. A
/// length over `max` is refused as soon as the prefix is read, before the body is
/// buffered.
pub fn split_stream_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    let mut len: u64 = 0;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        len |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if len > max as u64 {
                return Err(FrameError::TooBig);
            }
            let start = i + 1;
            let end = start + len as usize;
            if buf.len() < end {
                return Ok(None);
            }
            let mut frame = buf.split_to(end);
            return Ok(Some(frame.split_off(start).freeze()));
        }
    }
    if buf.len() >= 10 {
        Err(FrameError::BadLength)
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::encoding::encode_varint;

    use super::*;
    use crate::v1::{ClientMessage, Ping, client_message};

    #[test]
    fn stream_frames_split_whole_and_refuse_oversized_lengths() {
        let mut wire = BytesMut::new();
        for message in [
            encode_message(server_message::Kind::Ping(Ping::default())),
            Bytes::new(),
        ] {
            encode_varint(message.len() as u64, &mut wire);
            wire.extend_from_slice(&message);
        }
        let whole = wire.clone();
        // Byte by byte: nothing until a frame is complete, then exactly it.
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for &byte in whole.iter() {
            buf.extend_from_slice(&[byte]);
            while let Some(frame) = split_stream_frame(&mut buf, 1024).unwrap() {
                frames.push(frame);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(frames.len(), 2);
        assert!(ServerMessage::decode(&frames[0][..]).unwrap().kind.is_some());
        assert!(frames[1].is_empty());

        let mut big = BytesMut::new();
        encode_varint(2000, &mut big);
        assert_eq!(split_stream_frame(&mut big, 1024), Err(FrameError::TooBig));
        let mut bad = BytesMut::from(&[0xff; 10][..]);
        assert_eq!(split_stream_frame(&mut bad, 1024), Err(FrameError::BadLength));
    }
    #[test]
    fn typed_errors() {
        assert_eq!(decode_client(&[]), Err(DecodeError::Empty));
        assert!(matches!(decode_client(&[0xff]), Err(DecodeError::Protobuf(_))));
        // One message with no kind set.
        assert_eq!(decode_client(&[0x0a, 0x00]), Err(DecodeError::UnknownKind { index: 0 }));
        let ok = ClientEnvelope {
            messages: vec![ClientMessage {
                kind: Some(client_message::Kind::Ping(Ping::default())),
            }],
            first_event_seq: 0,
        };
        assert!(decode_client(&ok.encode_to_vec()).is_ok());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_client(&bytes);
            let _ = decode_server(&bytes);
        }
    }
}
