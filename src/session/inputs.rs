//! The envelope almost every message is: inputs only, each a room, a `seq` and intent
//! bytes, and over QUIC acknowledgements of state frames (a room and a tick) riding
//! with them. Read here in place, without prost's generic decoder and its allocations
//! (the envelope's message list and each room name), which cost about half of the
//! work of handling an input. Anything else, or anything unusual in the encoding (a
//! field twice, an unknown field, an entity-writes payload, a varint longer than nine
//! bytes), is left to prost: [`read`] answers `None` and nothing is lost but the
//! shortcut.

/// One input read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntentInput<'a> {
    /// `Input.room`.
    pub room: &'a str,
    /// `Input.seq` (0 when absent).
    pub seq: u64,
    /// `Input.intent`, or `None` when the input has no payload.
    pub intent: Option<&'a [u8]>,
}

/// One message read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// An intent input.
    Input(IntentInput<'a>),
    /// `Ack{room, tick}`.
    Ack {
        /// `Ack.room`.
        room: &'a str,
        /// `Ack.tick` (0 when absent).
        tick: u64,
    },
}

/// Wire types (the low three bits of a field key).
const VARINT: u64 = 0;
const LEN: u64 = 2;
/// `ClientEnvelope.messages`, `ClientMessage.input` and `.ack`, and their fields.
const ENVELOPE_MESSAGES: u64 = 1 << 3 | LEN;
const MESSAGE_INPUT: u64 = 3 << 3 | LEN;
const MESSAGE_ACK: u64 = 8 << 3 | LEN;
const INPUT_ROOM: u64 = 1 << 3 | LEN;
const INPUT_SEQ: u64 = 2 << 3 | VARINT;
const INPUT_INTENT: u64 = 4 << 3 | LEN;
const ACK_ROOM: u64 = 1 << 3 | LEN;
const ACK_TICK: u64 = 2 << 3 | VARINT;

/// The messages of an envelope of intent inputs and acknowledgements only, read once
/// to be counted (the rate limiter charges the inputs before any is applied), the
/// first kept as read.
#[derive(Debug, Clone, Copy)]
pub struct InPlace<'a> {
    first: Item<'a>,
    /// The envelope after the first message.
    rest: &'a [u8],
    inputs: usize,
    acks: usize,
}

impl<'a> InPlace<'a> {
    /// How many inputs the envelope holds.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// How many acknowledgements it holds.
    pub fn acks(&self) -> usize {
        self.acks
    }

    /// The messages in order. Only envelopes of more than one message are read again.
    pub fn iter(&self) -> impl Iterator<Item = Item<'a>> + use<'a> {
        let mut rest = self.rest;
        std::iter::once(self.first).chain(std::iter::from_fn(move || {
            (!rest.is_empty()).then(|| next(&mut rest)).flatten()
        }))
    }
}

/// The messages of `envelope`, if it is a non-empty envelope of intent inputs and
/// acknowledgements only, every one of them read here exactly as prost would read it.
pub fn read(envelope: &[u8]) -> Option<InPlace<'_>> {
    let mut rest = envelope;
    let first = next(&mut rest)?;
    let after_first = rest;
    let (mut inputs, mut acks) = (0, 0);
    let mut count = |item: &Item| match item {
        Item::Input(_) => inputs += 1,
        Item::Ack { .. } => acks += 1,
    };
    count(&first);
    while !rest.is_empty() {
        count(&next(&mut rest)?);
    }
    Some(InPlace {
        first,
        rest: after_first,
        inputs,
        acks,
    })
}

/// Reads the next `messages` entry of an envelope.
fn next<'a>(envelope: &mut &'a [u8]) -> Option<Item<'a>> {
    let mut message = field(envelope, ENVELOPE_MESSAGES)?;
    let kind = varint(&mut message)?;
    let body = len_delimited(&mut message)?;
    if !message.is_empty() {
        return None;
    }
    match kind {
        MESSAGE_INPUT => input(body).map(Item::Input),
        MESSAGE_ACK => ack(body),
        _ => None,
    }
}

fn input(mut input: &[u8]) -> Option<IntentInput<'_>> {
    let (mut room, mut seq, mut intent) = (None, None, None);
    while !input.is_empty() {
        match varint(&mut input)? {
            INPUT_ROOM if room.is_none() => room = Some(string(&mut input)?),
            INPUT_SEQ if seq.is_none() => seq = Some(varint(&mut input)?),
            INPUT_INTENT if intent.is_none() => intent = Some(len_delimited(&mut input)?),
            _ => return None,
        }
    }
    Some(IntentInput {
        room: room.unwrap_or(""),
        seq: seq.unwrap_or(0),
        intent,
    })
}

fn ack(mut ack: &[u8]) -> Option<Item<'_>> {
    let (mut room, mut tick) = (None, None);
    while !ack.is_empty() {
        match varint(&mut ack)? {
            ACK_ROOM if room.is_none() => room = Some(string(&mut ack)?),
            ACK_TICK if tick.is_none() => tick = Some(varint(&mut ack)?),
            _ => return None,
        }
    }
    Some(Item::Ack {
        room: room.unwrap_or(""),
        tick: tick.unwrap_or(0),
    })
}

/// Reads a length-delimited field whose key must be `key`.
fn field<'a>(buf: &mut &'a [u8], key: u64) -> Option<&'a [u8]> {
    (varint(buf)? == key).then(|| len_delimited(buf)).flatten()
}

/// A length-delimited UTF-8 string (prost refuses any other).
fn string<'a>(buf: &mut &'a [u8]) -> Option<&'a str> {
    std::str::from_utf8(len_delimited(buf)?).ok()
}

fn len_delimited<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(varint(buf)?).ok()?;
    let (value, rest) = buf.split_at_checked(len)?;
    *buf = rest;
    Some(value)
}

/// A varint of at most nine bytes (63 bits: every value prost and this agree on).
fn varint(buf: &mut &[u8]) -> Option<u64> {
    // Keys, lengths and small numbers: one byte.
    if let Some((&byte, rest)) = buf.split_first()
        && byte < 0x80
    {
        *buf = rest;
        return Some(u64::from(byte));
    }
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(9) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            *buf = &buf[i + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto::{Ack, ClientEnvelope, ClientMessage, Input, Ping, client_message, input};

    fn envelope(kinds: Vec<client_message::Kind>) -> Vec<u8> {
        let messages = kinds.into_iter().map(|k| ClientMessage { kind: Some(k) }).collect();
        ClientEnvelope {
            messages,
            first_event_seq: 0,
        }
        .encode_to_vec()
    }

    fn intent(room: &str, seq: u64, payload: Option<&[u8]>) -> client_message::Kind {
        client_message::Kind::Input(Input {
            room: room.into(),
            seq,
            payload: payload.map(|p| input::Payload::Intent(p.to_vec().into())),
        })
    }

    /// Messages as (room, seq or tick, intent, is an ack), for comparing readers.
    type Read = Option<Vec<(String, u64, Option<Vec<u8>>, bool)>>;

    /// What prost reads from `bytes`, as intent inputs and acks (`None` when it is
    /// not an envelope of those only).
    fn by_prost(bytes: &[u8]) -> Read {
        let envelope = ClientEnvelope::decode(bytes).ok()?;
        if envelope.first_event_seq != 0 {
            return None;
        }
        let messages = envelope.messages.into_iter().map(|m| match m.kind {
            Some(client_message::Kind::Input(Input { room, seq, payload })) => match payload {
                None => Some((room, seq, None, false)),
                Some(input::Payload::Intent(bytes)) => Some((room, seq, Some(bytes.to_vec()), false)),
                Some(input::Payload::Writes(_)) => None,
            },
            Some(client_message::Kind::Ack(Ack { room, tick })) => Some((room, tick, None, true)),
            _ => None,
        });
        messages.collect()
    }

    fn by_reader(bytes: &[u8]) -> Read {
        let read = read(bytes)?;
        let items: Vec<_> = (read.iter())
            .map(|item| match item {
                Item::Input(i) => (i.room.to_string(), i.seq, i.intent.map(<[u8]>::to_vec), false),
                Item::Ack { room, tick } => (room.to_string(), tick, None, true),
            })
            .collect();
        let acks = items.iter().filter(|i| i.3).count();
        assert_eq!(
            (read.inputs(), read.acks()),
            (items.len() - acks, acks),
            "counts and iter agree"
        );
        Some(items)
    }

    fn ack(room: &str, tick: u64) -> client_message::Kind {
        client_message::Kind::Ack(Ack {
            room: room.into(),
            tick,
        })
    }

    #[test]
    fn reads_what_clients_send() {
        let bytes = envelope(vec![
            intent("arena-1", 7, Some(&[1, 2])),
            intent("", 0, Some(&[])),
            intent("r", 1 << 53, None),
            ack("arena-1", 41),
        ]);
        let read = read(&bytes).unwrap();
        let items: Vec<_> = read.iter().collect();
        assert_eq!((read.inputs(), read.acks()), (3, 1));
        assert_eq!(
            items,
            [
                Item::Input(IntentInput {
                    room: "arena-1",
                    seq: 7,
                    intent: Some(&[1, 2])
                }),
                Item::Input(IntentInput {
                    room: "",
                    seq: 0,
                    intent: Some(&[])
                }),
                Item::Input(IntentInput {
                    room: "r",
                    seq: 1 << 53,
                    intent: None
                }),
                Item::Ack {
                    room: "arena-1",
                    tick: 41
                },
            ]
        );
        // An acknowledgement alone (a QUIC datagram).
        let bytes = envelope(vec![ack("r", 0)]);
        let items: Vec<_> = read_all(&bytes);
        assert_eq!(items, [Item::Ack { room: "r", tick: 0 }]);
    }

    fn read_all(bytes: &[u8]) -> Vec<Item<'_>> {
        read(bytes).unwrap().iter().collect()
    }

    #[test]
    fn leaves_everything_else_to_prost() {
        let writes = client_message::Kind::Input(Input {
            room: "r".into(),
            seq: 1,
            payload: Some(input::Payload::Writes(Box::default())),
        });
        let ping = client_message::Kind::Ping(Ping::default());
        let mut not_utf8 = envelope(vec![intent("x", 1, Some(&[1]))]);
        let x = not_utf8.iter().position(|&b| b == b'x').unwrap();
        not_utf8[x] = 0xff;
        for bytes in [
            vec![],
            envelope(vec![writes]),
            envelope(vec![intent("r", 1, Some(&[1])), ping]),
            envelope(vec![intent("r", u64::MAX, Some(&[1]))]),
            not_utf8,
        ] {
            if let Some(read) = read(&bytes) {
                panic!("read {} inputs from {bytes:02x?}", read.inputs());
            }
        }
    }

    #[test]
    fn agrees_with_prost_on_every_encoding_it_accepts() {
        let base = envelope(vec![
            intent("room-\u{e9}", 300, Some(&[9, 8, 7])),
            ack("b", 1 << 40),
            intent("b", 1, None),
        ]);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut accepted = 0;
        for _ in 0..50_000 {
            let mut bytes = base.clone();
            for _ in 0..rng.usize(1..4) {
                match rng.u8(..3) {
                    0 if !bytes.is_empty() => {
                        let i = rng.usize(..bytes.len());
                        bytes[i] = rng.u8(..);
                    }
                    1 if !bytes.is_empty() => {
                        bytes.truncate(rng.usize(..bytes.len()));
                    }
                    _ => {
                        let i = rng.usize(..=bytes.len());
                        bytes.insert(i, rng.u8(..));
                    }
                }
            }
            if let Some(read) = by_reader(&bytes) {
                accepted += 1;
                assert_eq!(Some(read), by_prost(&bytes), "{bytes:02x?}");
            }
        }
        assert!(accepted > 1_000, "only {accepted} mutated envelopes were read in place");
    }
}
