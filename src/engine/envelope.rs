//! Outbound envelopes, encoded without re-encoding anything: a transport cuts an
//! outbox [`Batch`] into `ServerEnvelope`s of a bounded size ([`split_envelopes`]) and
//! encodes each ([`encode_envelope`], or [`encode_envelope_sharing`], which leaves a
//! large shared body out of the copy; [`encode_batch`] is the whole batch as one
//! envelope, for tests and benches). Reliable messages are
//! already-encoded `ServerMessage`s, and a state frame is its shared body plus the
//! member's `last_input_seq` field (protobuf allows a message's fields to be
//! concatenated).

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use tickrelay_proto::delta;

use crate::engine::outbox::{Batch, PendingState};

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

/// Encoded size of a `ServerEnvelope` holding only `state` (a QUIC datagram).
pub fn state_envelope_len(state: &PendingState) -> usize {
    envelope_len(Reliable::default(), std::slice::from_ref(state))
}

/// Encoded size of a `ServerEnvelope` holding `reliable`, then `states`.
pub fn envelope_len(reliable: Reliable<'_>, states: &[PendingState]) -> usize {
    let reliable = reliable.len();
    let states: usize = states
        .iter()
        .map(|s| nested_len(ENVELOPE_MESSAGES, state_message_len(s)))
        .sum();
    reliable + states
}

/// Where a batch is split into several envelopes: one holds at most this many bytes
/// of messages, unless a single message is larger (a room's full snapshot, up to its
/// `max_state_bytes`: 4 MiB by default). So a member of many large rooms gets their
/// snapshots one message each, never one message of all of them together (over a
/// client's message limit, and a write buffer that size per connection).
pub const SPLIT_ENVELOPE_BYTES: usize = 1 << 20;

/// Room for an envelope's `first_seq` field beside its messages.
const FIRST_SEQ_ROOM: usize = 16;

/// `reliable` and `states` as the envelopes to write, in order: all in one when they
/// fit `limit` bytes, otherwise split between messages (see
/// [`SPLIT_ENVELOPE_BYTES`]), each envelope numbered from its first reliable message.
pub fn split_envelopes<'a>(
    reliable: Reliable<'a>,
    states: &'a [PendingState],
    limit: usize,
) -> impl Iterator<Item = (Reliable<'a>, &'a [PendingState])> {
    // The messages in writing order: the welcome, the numbered ones, the states.
    let welcome = usize::from(reliable.welcome.is_some());
    let numbered_end = welcome + reliable.messages.len();
    let size = move |i: usize| match i {
        _ if i < welcome => reliable.welcome.map_or(0, |w| nested_len(ENVELOPE_MESSAGES, w.len())),
        _ if i < numbered_end => nested_len(ENVELOPE_MESSAGES, reliable.messages[i - welcome].len()),
        _ => nested_len(ENVELOPE_MESSAGES, state_message_len(&states[i - numbered_end])),
    };
    // Messages `from..to` as one envelope.
    let part = move |from: usize, to: usize| {
        let (first, last) = (
            from.clamp(welcome, numbered_end) - welcome,
            to.clamp(welcome, numbered_end) - welcome,
        );
        let part = Reliable {
            welcome: reliable.welcome.filter(|_| from == 0),
            messages: &reliable.messages[first..last],
            first_seq: if reliable.first_seq == 0 || first == last {
                0
            } else {
                reliable.first_seq + first as u64
            },
        };
        (
            part,
            &states[from.max(numbered_end) - numbered_end..to.max(numbered_end) - numbered_end],
        )
    };
    let total = numbered_end + states.len();
    let (mut from, mut done) = (0, false);
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        // The messages from `from` on that fit, and at least one.
        let mut bytes = FIRST_SEQ_ROOM;
        let end = (from..total)
            .find(|&i| {
                bytes += size(i);
                i > from && bytes > limit
            })
            .unwrap_or(total);
        done = end == total;
        let envelope = part(from, end);
        from = end;
        Some(envelope)
    })
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
        encode_state_head(state, buf);
        buf.put_slice(&state.body);
        encode_state_tail(state, buf);
    }
}

/// A state message's bytes before its shared body: the envelope's and the message's
/// field keys and lengths.
fn encode_state_head(state: &PendingState, buf: &mut BytesMut) {
    let frame_len = frame_len(state);
    encode_key(ENVELOPE_MESSAGES, WireType::LengthDelimited, buf);
    encode_varint(nested_len(MESSAGE_STATE, frame_len) as u64, buf);
    encode_key(MESSAGE_STATE, WireType::LengthDelimited, buf);
    encode_varint(frame_len as u64, buf);
}

/// A state message's bytes after its shared body: the member's own part and fields.
fn encode_state_tail(state: &PendingState, buf: &mut BytesMut) {
    buf.put_slice(&state.own);
    delta::encode_member_part(state.baseline, state.last_input_seq, buf);
}

/// State bodies of at least this many bytes are not copied into a connection's own
/// buffer by [`encode_envelope_sharing`]: a room's full snapshot (up to 4 MiB by
/// default) is then written from the one copy the room encoded for every member that
/// gets it in that tick, rather than from a copy per connection.
pub const SHARED_BODY_BYTES: usize = 64 * 1024;

/// The bytes [`encode_envelope`] writes, with each state body of at least
/// [`SHARED_BODY_BYTES`] not copied: the bytes before the first such body go into
/// `buf`, then `parts` gets, in order, each such body as it is (shared with every
/// other holder) and the bytes between and after them. Writing `buf`, then every
/// part, writes the envelope. With no large body, `parts` stays empty.
pub fn encode_envelope_sharing(
    reliable: Reliable<'_>,
    states: &[PendingState],
    buf: &mut BytesMut,
    parts: &mut VecDeque<Bytes>,
) {
    if states.iter().all(|state| state.body.len() < SHARED_BODY_BYTES) {
        return encode_envelope(reliable, states, buf);
    }
    reliable.encode(buf);
    // What follows the last shared body, until the next one (or the end).
    let mut between = BytesMut::new();
    for state in states {
        let out = if parts.is_empty() { &mut *buf } else { &mut between };
        encode_state_head(state, out);
        if state.body.len() >= SHARED_BODY_BYTES {
            if !between.is_empty() {
                parts.push_back(between.split().freeze());
            }
            parts.push_back(state.body.clone());
        } else {
            out.put_slice(&state.body);
        }
        let out = if parts.is_empty() { &mut *buf } else { &mut between };
        encode_state_tail(state, out);
    }
    if !between.is_empty() {
        parts.push_back(between.freeze());
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

/// [`encode_stream_frame`]'s frame with its large state bodies shared, as
/// [`encode_envelope_sharing`] leaves them: `buf`, then `parts`.
pub fn encode_stream_frame_sharing(
    reliable: Reliable<'_>,
    states: &[PendingState],
    buf: &mut BytesMut,
    parts: &mut VecDeque<Bytes>,
) {
    encode_varint(envelope_len(reliable, states) as u64, buf);
    encode_envelope_sharing(reliable, states, buf, parts);
}

fn state_message_len(state: &PendingState) -> usize {
    nested_len(MESSAGE_STATE, frame_len(state))
}

/// The length of one `StateFrame`: the shared body, the member's own part and the
/// per-member fields.
fn frame_len(state: &PendingState) -> usize {
    state.body.len() + state.own.len() + delta::member_part_len(state.baseline, state.last_input_seq)
}

fn nested_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use tickrelay_proto::frame::{decode_server, encode_message, split_stream_frame};
    use tickrelay_proto::v1::{Ping, StateFrame, server_message};

    use super::*;

    fn ping(nonce: u64) -> Bytes {
        encode_message(server_message::Kind::Ping(Ping {
            nonce,
            ..Ping::default()
        }))
    }

    fn state(room: u64, body_len: usize) -> PendingState {
        PendingState {
            room,
            tick: 9,
            baseline: 0,
            // A frame whose room id pads it to about `body_len` bytes.
            body: StateFrame {
                room: "r".repeat(body_len),
                ..Default::default()
            }
            .encode_to_vec()
            .into(),
            own: Bytes::new(),
            last_input_seq: 0,
            server_time_us: 0,
            last: false,
        }
    }

    #[test]
    fn a_batch_over_the_limit_is_split_between_messages_in_order() {
        let welcome = ping(0);
        let messages: Vec<Bytes> = (1..=3).map(ping).collect();
        let reliable = Reliable {
            welcome: Some(&welcome),
            messages: &messages,
            first_seq: 40,
        };
        let states = [state(1, 600), state(2, 3_000), state(3, 100), state(4, 100)];
        let parts: Vec<_> = split_envelopes(reliable, &states, 1_000).collect();
        let shape: Vec<(bool, usize, u64, Vec<u64>)> = (parts.iter())
            .map(|(r, s)| {
                (
                    r.welcome.is_some(),
                    r.messages.len(),
                    r.first_seq,
                    s.iter().map(|s| s.room).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                (true, 3, 40, vec![1]),
                // Larger than the limit: alone.
                (false, 0, 0, vec![2]),
                (false, 0, 0, vec![3, 4]),
            ]
        );
        // Each part is an envelope of its own, and together they hold every message.
        let mut decoded = Vec::new();
        for (reliable, states) in &parts {
            let mut buf = BytesMut::new();
            encode_envelope(*reliable, states, &mut buf);
            assert!(buf.len() <= 1_000 || states.len() == 1, "{} bytes", buf.len());
            decoded.extend(decode_server(&buf).unwrap().messages);
        }
        assert_eq!(decoded.len(), 8);
        // Numbered messages split across envelopes keep their numbers.
        let parts: Vec<_> = split_envelopes(reliable, &[], 12).collect();
        let seqs: Vec<(usize, u64)> = parts.iter().map(|(r, _)| (r.messages.len(), r.first_seq)).collect();
        assert_eq!(seqs, [(0, 0), (1, 40), (1, 41), (1, 42)]);
        assert_eq!(split_envelopes(reliable, &states, usize::MAX).count(), 1);
    }

    /// A large state body is not copied: its part is the room's own bytes, and the
    /// parts after the buffer make the same envelope as one encoded whole.
    #[test]
    fn large_bodies_are_shared_not_copied() {
        let messages = [ping(1)];
        let reliable = Reliable {
            welcome: None,
            messages: &messages,
            first_seq: 3,
        };
        let mut states = [
            state(1, 100),
            state(2, SHARED_BODY_BYTES + 10),
            state(3, 50),
            state(4, SHARED_BODY_BYTES),
        ];
        // (Each with a member part after its body.)
        states.iter_mut().for_each(|s| s.last_input_seq = 7);
        let mut whole = BytesMut::new();
        encode_envelope(reliable, &states, &mut whole);
        let (mut buf, mut parts) = (BytesMut::new(), VecDeque::new());
        encode_envelope_sharing(reliable, &states, &mut buf, &mut parts);
        let shared: Vec<bool> = (parts.iter())
            .map(|part| states.iter().any(|s| s.body.as_ptr() == part.as_ptr()))
            .collect();
        assert_eq!(shared, [true, false, true, false]);
        assert!(buf.len() < 300, "the buffer holds {} bytes", buf.len());
        for part in &parts {
            buf.put_slice(part);
        }
        assert_eq!(buf, whole);
        // Nothing large: nothing apart.
        let (mut buf, mut parts) = (BytesMut::new(), VecDeque::new());
        encode_envelope_sharing(reliable, &[state(1, 100), state(3, 50)], &mut buf, &mut parts);
        assert!(parts.is_empty());
    }

    #[test]
    fn stream_frames_hold_one_envelope_each() {
        let mut wire = BytesMut::new();
        let message = encode_message(server_message::Kind::Ping(Ping::default()));
        let one = Reliable {
            messages: std::slice::from_ref(&message),
            first_seq: 7,
            ..Reliable::default()
        };
        encode_stream_frame(one, &[], &mut wire);
        encode_stream_frame(Reliable::default(), &[], &mut wire);
        let first = split_stream_frame(&mut wire, 1024).unwrap().unwrap();
        let envelope = decode_server(&first).unwrap();
        assert_eq!((envelope.messages.len(), envelope.first_seq), (1, 7));
        assert!(split_stream_frame(&mut wire, 1024).unwrap().unwrap().is_empty());
        assert!(wire.is_empty());
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
                own: Bytes::new(),
                last_input_seq: 300,
                server_time_us: 0,
                last: false,
            }],
            ..Batch::default()
        };
        let mut buf = BytesMut::new();
        encode_batch(&batch, &mut buf);
        assert_eq!(buf.len(), envelope_len(batch.reliable_part(), &batch.states));
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
}
