//! Envelopes on the wire: one transport message carries one envelope holding one or
//! more messages.
//!
//! Outbound, [`encode_batch`] turns an outbox [`Batch`] into one `ServerEnvelope`
//! without re-encoding anything: reliable messages are already-encoded
//! `ServerMessage`s, and a state frame is its shared body plus the member's
//! `last_input_seq` field (protobuf allows a message's fields to be concatenated).
//! Inbound, [`decode_client`] and [`decode_server`] turn arbitrary bytes into an
//! envelope or a typed [`DecodeError`]; they never panic.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use crate::delta;
use crate::outbox::{Batch, PendingState};
use crate::proto::{ClientEnvelope, ServerEnvelope, ServerMessage, server_message};

/// `ServerEnvelope.messages`, `ServerEnvelope.first_seq` and `ServerMessage.state`
/// field numbers.
const ENVELOPE_MESSAGES: u32 = 1;
const ENVELOPE_FIRST_SEQ: u32 = 2;
const MESSAGE_STATE: u32 = 5;

/// The already-encoded, reliable part of an envelope: the connection's `Welcome` (not
/// numbered) and the numbered messages.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reliable<'a> {
    /// The `Welcome`, first.
    pub welcome: Option<&'a Bytes>,
    /// Encoded `ServerMessage`s, in order.
    pub messages: &'a [Bytes],
    /// The sequence number of `messages[0]`; 0: the messages are not numbered (a
    /// transport's own ping).
    pub first_seq: u64,
}

impl Reliable<'_> {
    fn first_seq_written(&self) -> Option<u64> {
        (self.first_seq != 0 && !self.messages.is_empty()).then_some(self.first_seq)
    }

    fn len(&self) -> usize {
        let messages: usize = self
            .welcome
            .into_iter()
            .chain(self.messages)
            .map(|m| nested_len(ENVELOPE_MESSAGES, m.len()))
            .sum();
        let seq = self
            .first_seq_written()
            .map_or(0, |s| key_len(ENVELOPE_FIRST_SEQ) + encoded_len_varint(s));
        messages + seq
    }

    fn encode(&self, buf: &mut BytesMut) {
        if let Some(seq) = self.first_seq_written() {
            encode_key(ENVELOPE_FIRST_SEQ, WireType::Varint, buf);
            encode_varint(seq, buf);
        }
        for message in self.welcome.into_iter().chain(self.messages) {
            encode_key(ENVELOPE_MESSAGES, WireType::LengthDelimited, buf);
            encode_varint(message.len() as u64, buf);
            buf.put_slice(message);
        }
    }
}

impl Batch {
    /// The reliable part of this batch.
    pub fn reliable_part(&self) -> Reliable<'_> {
        Reliable {
            welcome: self.welcome.as_ref(),
            messages: &self.reliable,
            first_seq: self.first_seq,
        }
    }
}

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

/// Encoded size of `batch` as a `ServerEnvelope`.
pub fn batch_len(batch: &Batch) -> usize {
    envelope_len(batch.reliable_part(), &batch.states)
}

/// Encoded size of a `ServerEnvelope` holding only `state` (a QUIC datagram).
pub fn state_envelope_len(state: &PendingState) -> usize {
    envelope_len(Reliable::default(), std::slice::from_ref(state))
}

fn envelope_len(reliable: Reliable<'_>, states: &[PendingState]) -> usize {
    let reliable = reliable.len();
    let states: usize = states
        .iter()
        .map(|s| nested_len(ENVELOPE_MESSAGES, state_message_len(s)))
        .sum();
    reliable + states
}

/// Appends `batch` to `buf` as one `ServerEnvelope`: reliable messages first, in
/// order, then the state frames.
pub fn encode_batch(batch: &Batch, buf: &mut BytesMut) {
    encode_envelope(batch.reliable_part(), &batch.states, buf);
}

/// Appends one `ServerEnvelope` holding the already-encoded `reliable` messages, in
/// order, then the `states`.
pub fn encode_envelope(reliable: Reliable<'_>, states: &[PendingState], buf: &mut BytesMut) {
    buf.reserve(envelope_len(reliable, states));
    reliable.encode(buf);
    for state in states {
        let frame_len = state.body.len() + delta::member_part_len(state.baseline, state.last_input_seq);
        encode_key(ENVELOPE_MESSAGES, WireType::LengthDelimited, buf);
        encode_varint(nested_len(MESSAGE_STATE, frame_len) as u64, buf);
        encode_key(MESSAGE_STATE, WireType::LengthDelimited, buf);
        encode_varint(frame_len as u64, buf);
        buf.put_slice(&state.body);
        delta::encode_member_part(state.baseline, state.last_input_seq, buf);
    }
}

/// Appends one control-stream frame (QUIC): the envelope's length as a protobuf
/// varint, then the envelope, as [`encode_envelope`] writes it.
pub fn encode_stream_frame(reliable: Reliable<'_>, states: &[PendingState], buf: &mut BytesMut) {
    let len = envelope_len(reliable, states);
    buf.reserve(len + encoded_len_varint(len as u64));
    encode_varint(len as u64, buf);
    encode_envelope(reliable, states, buf);
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

fn state_message_len(state: &PendingState) -> usize {
    nested_len(
        MESSAGE_STATE,
        state.body.len() + delta::member_part_len(state.baseline, state.last_input_seq),
    )
}

fn nested_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::proto::{Ping, StateFrame, client_message};

    #[test]
    fn stream_frames_split_whole_and_refuse_oversized_lengths() {
        let mut wire = BytesMut::new();
        let message = encode_message(server_message::Kind::Ping(Ping::default()));
        let one = Reliable {
            messages: std::slice::from_ref(&message),
            first_seq: 7,
            ..Reliable::default()
        };
        encode_stream_frame(one, &[], &mut wire);
        encode_stream_frame(Reliable::default(), &[], &mut wire);
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
        assert_eq!(decode_server(&frames[0]).unwrap().messages.len(), 1);
        assert!(frames[1].is_empty());

        let mut big = BytesMut::new();
        encode_varint(2000, &mut big);
        assert_eq!(split_stream_frame(&mut big, 1024), Err(FrameError::TooBig));
        let mut bad = BytesMut::from(&[0xff; 10][..]);
        assert_eq!(split_stream_frame(&mut bad, 1024), Err(FrameError::BadLength));
    }

    #[test]
    fn batch_encodes_as_one_server_envelope() {
        let body = {
            let mut buf = Vec::new();
            StateFrame {
                room: "r".into(),
                tick: 9,
                ..Default::default()
            }
            .encode(&mut buf)
            .unwrap();
            Bytes::from(buf)
        };
        let welcome = encode_message(server_message::Kind::Welcome(Default::default()));
        let batch = Batch {
            welcome: Some(welcome),
            reliable: vec![encode_message(server_message::Kind::Ping(Ping {
                nonce: 1,
                sent_time_us: 2,
                received_seq: 0,
            }))],
            first_seq: 300,
            states: vec![PendingState {
                room: 1,
                tick: 9,
                baseline: 8,
                body,
                last_input_seq: 300,
                server_time_us: 0,
            }],
        };
        let mut buf = BytesMut::new();
        encode_batch(&batch, &mut buf);
        assert_eq!(buf.len(), batch_len(&batch));
        let envelope = decode_server(&buf).unwrap();
        assert_eq!(envelope.messages.len(), 3);
        assert_eq!(envelope.first_seq, 300);
        assert!(matches!(
            envelope.messages[0].kind,
            Some(server_message::Kind::Welcome(_))
        ));
        match &envelope.messages[2].kind {
            Some(server_message::Kind::State(s)) => {
                assert_eq!(
                    (s.room.as_str(), s.tick, s.baseline_tick, s.last_input_seq),
                    ("r", 9, 8, 300)
                );
            }
            other => panic!("expected a state frame, got {other:?}"),
        }
    }

    #[test]
    fn typed_errors() {
        assert_eq!(decode_client(&[]), Err(DecodeError::Empty));
        assert!(matches!(decode_client(&[0xff]), Err(DecodeError::Protobuf(_))));
        // One message with no kind set.
        assert_eq!(decode_client(&[0x0a, 0x00]), Err(DecodeError::UnknownKind { index: 0 }));
        let ok = ClientEnvelope {
            messages: vec![crate::proto::ClientMessage {
                kind: Some(client_message::Kind::Ping(Ping::default())),
            }],
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
