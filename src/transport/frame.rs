//! WebSocket framing on the server's side of an upgraded connection (RFC 6455 §5),
//! sans IO: [`FrameReader`] turns the bytes a client sent into whole messages and
//! control frames, and [`put_header`] / [`control_frame`] frame what the server sends.
//!
//! The server negotiates no extension, so every reserved bit must be clear; client
//! frames must be masked; control frames are final and carry at most 125 bytes; a
//! fragmented message is continued by continuation frames only (control frames may
//! come between them). Anything else is a [`FrameError::Protocol`] (close 1002). A
//! frame or message longer than the limit is refused from its header, before its
//! payload is read ([`FrameError::TooBig`], close 1009).

use bytes::{Buf, Bytes, BytesMut};

/// The longest header of a frame the server sends (unmasked): two bytes, and eight
/// for a length over 65,535.
pub(crate) const MAX_HEADER_BYTES: usize = 10;

const FIN: u8 = 0x80;
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

/// The longest payload of a control frame.
const MAX_CONTROL_PAYLOAD: usize = 125;

/// Writes the header of a final frame with `opcode` and `len` payload bytes at the
/// end of `room` (at most [`MAX_HEADER_BYTES`]); returns where it starts.
pub(crate) fn put_header(room: &mut [u8; MAX_HEADER_BYTES], opcode: u8, len: usize) -> usize {
    let start = match len {
        0..=125 => {
            room[9] = len as u8;
            8
        }
        126..=65_535 => {
            room[7] = 126;
            room[8..].copy_from_slice(&(len as u16).to_be_bytes());
            6
        }
        _ => {
            room[1] = 127;
            room[2..].copy_from_slice(&(len as u64).to_be_bytes());
            0
        }
    };
    room[start] = FIN | opcode;
    start
}

/// Appends a control frame (ping, pong or close) of at most 125 payload bytes.
pub(crate) fn control_frame(out: &mut BytesMut, opcode: u8, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
    out.extend_from_slice(&[FIN | opcode, payload.len() as u8]);
    out.extend_from_slice(payload);
}

/// The payload of a close frame: the code, then the reason (the caller keeps it
/// within 123 bytes).
pub(crate) fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// What a client sent: a whole message or a control frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A binary message.
    Binary(Bytes),
    /// A text message (the relay takes none); `utf8`: whether it is valid UTF-8.
    Text { utf8: bool },
    /// A ping: answer with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong of this many payload bytes.
    Pong(usize),
    /// A close, with its code if it had one (echo it, then end).
    Close(Option<u16>),
}

/// Why the client's bytes are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The framing is broken (close 1002).
    Protocol(&'static str),
    /// A frame or message over the size limit (close 1009).
    TooBig,
}

/// A parsed frame header.
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Header bytes, mask included.
    len: usize,
    payload: usize,
}

/// Reassembles a client's frames into messages. Bytes read go in [`FrameReader::buf`];
/// [`FrameReader::next`] takes out what is complete.
pub(crate) struct FrameReader {
    buf: BytesMut,
    /// A fragmented message under way: text or binary, and its payload so far.
    partial: Option<(u8, BytesMut)>,
    max_message: usize,
    read_chunk: usize,
}

impl FrameReader {
    /// A reader of messages up to `max_message` bytes whose buffer holds `read_chunk`
    /// bytes between messages (see [`FrameReader::buf`]), starting with `read` (bytes
    /// that arrived with the upgrade request).
    pub(crate) fn new(max_message: usize, read_chunk: usize, read: &[u8]) -> Self {
        Self {
            buf: BytesMut::from(read),
            partial: None,
            max_message,
            read_chunk,
        }
    }

    /// The buffer the next read appends to, with room for at least a read chunk. It
    /// grows while a large message arrives and goes back to a read chunk once empty,
    /// so an idle connection holds one chunk whatever it was sent before.
    pub(crate) fn buf(&mut self) -> &mut BytesMut {
        // Once the payloads handed out are dropped, this reuses the same allocation.
        self.buf.reserve(self.read_chunk);
        if self.buf.is_empty() && self.buf.capacity() > 4 * self.read_chunk {
            self.buf = BytesMut::with_capacity(self.read_chunk);
        }
        &mut self.buf
    }

    /// The next whole message or control frame among the bytes read, or `None` until
    /// more bytes arrive. After an error the connection must close.
    pub(crate) fn next(&mut self) -> Result<Option<Incoming>, FrameError> {
        loop {
            let Some(header) = self.header()? else {
                return Ok(None);
            };
            if self.buf.len() < header.len + header.payload {
                return Ok(None);
            }
            self.buf.advance(header.len);
            let mut payload = self.buf.split_to(header.payload);
            unmask(&mut payload, header.mask);
            if let Some(incoming) = self.frame(&header, payload)? {
                return Ok(Some(incoming));
            }
        }
    }

    /// Parses the header at the front of the buffer, if all of it has arrived, and
    /// checks it against the rules and the limit.
    fn header(&self) -> Result<Option<Header>, FrameError> {
        let b = &self.buf[..];
        if b.len() < 2 {
            return Ok(None);
        }
        if b[0] & 0x70 != 0 {
            return Err(FrameError::Protocol("reserved bits set"));
        }
        if b[1] & 0x80 == 0 {
            return Err(FrameError::Protocol("unmasked client frame"));
        }
        let (fin, opcode) = (b[0] & FIN != 0, b[0] & 0x0F);
        let (payload, at) = match b[1] & 0x7F {
            126 if b.len() < 4 => return Ok(None),
            126 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() < 10 => return Ok(None),
            127 => (u64::from_be_bytes(b[2..10].try_into().expect("eight bytes")), 10),
            short => (u64::from(short), 2),
        };
        if b.len() < at + 4 {
            return Ok(None);
        }
        match opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {}
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin {
                    return Err(FrameError::Protocol("fragmented control frame"));
                }
                if payload > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(FrameError::Protocol("control frame over 125 bytes"));
                }
            }
            _ => return Err(FrameError::Protocol("unknown opcode")),
        }
        if payload >> 63 != 0 {
            return Err(FrameError::Protocol("frame length with its top bit set"));
        }
        let so_far = match (&self.partial, opcode) {
            (Some((_, so_far)), OP_CONTINUATION) => so_far.len() as u64,
            _ => 0,
        };
        if payload + so_far > self.max_message as u64 {
            return Err(FrameError::TooBig);
        }
        Ok(Some(Header {
            fin,
            opcode,
            mask: b[at..at + 4].try_into().expect("four bytes"),
            len: at + 4,
            payload: payload as usize,
        }))
    }

    /// One whole, unmasked frame: a message or control frame to hand out, or `None`
    /// for a fragment of a message still under way.
    fn frame(&mut self, header: &Header, payload: BytesMut) -> Result<Option<Incoming>, FrameError> {
        let (opcode, payload) = match (header.opcode, self.partial.take()) {
            (OP_PING, partial) => {
                self.partial = partial;
                return Ok(Some(Incoming::Ping(payload.freeze())));
            }
            (OP_PONG, partial) => {
                self.partial = partial;
                return Ok(Some(Incoming::Pong(payload.len())));
            }
            (OP_CLOSE, _) => return close(&payload).map(Some),
            (OP_CONTINUATION, None) => return Err(FrameError::Protocol("continuation of no message")),
            (OP_CONTINUATION, Some((opcode, mut so_far))) => {
                so_far.extend_from_slice(&payload);
                (opcode, so_far)
            }
            (_, Some(_)) => return Err(FrameError::Protocol("new message inside a fragmented one")),
            (opcode, None) => (opcode, payload),
        };
        if !header.fin {
            self.partial = Some((opcode, payload));
            return Ok(None);
        }
        Ok(Some(match opcode {
            OP_TEXT => Incoming::Text {
                utf8: std::str::from_utf8(&payload).is_ok(),
            },
            _ => Incoming::Binary(payload.freeze()),
        }))
    }
}

/// A close frame's payload: nothing, or a code (one a peer may send) and a UTF-8
/// reason.
fn close(payload: &[u8]) -> Result<Incoming, FrameError> {
    let [high, low, reason @ ..] = payload else {
        return match payload.len() {
            0 => Ok(Incoming::Close(None)),
            _ => Err(FrameError::Protocol("close frame of one byte")),
        };
    };
    let code = u16::from_be_bytes([*high, *low]);
    // RFC 6455 §7.4: 1004-1006 and 1015 are reserved, below 1000 and 1016-2999
    // unassigned.
    if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
        return Err(FrameError::Protocol("close code not allowed"));
    }
    if std::str::from_utf8(reason).is_err() {
        return Err(FrameError::Protocol("close reason not UTF-8"));
    }
    Ok(Incoming::Close(Some(code)))
}

/// Unmasks a client payload in place.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let value = u32::from_ne_bytes((&*chunk).try_into().expect("four bytes")) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (byte, key) in chunks.into_remainder().iter_mut().zip(mask) {
        *byte ^= key;
    }
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    use super::*;

    const LIMIT: usize = 1000;

    /// A client frame (masked).
    fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut room = [0; MAX_HEADER_BYTES];
        let start = put_header(&mut room, opcode, payload.len());
        let mut out = room[start..].to_vec();
        out[0] &= if fin { 0xFF } else { !FIN };
        out[1] |= 0x80;
        let mask = [0x12, 0x34, 0x56, 0x78];
        out.extend(mask);
        out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        out
    }

    fn binary(payload: &[u8]) -> Vec<u8> {
        client_frame(OP_BINARY, true, payload)
    }

    /// Everything `bytes` holds, fed `step` bytes at a time.
    fn read_all(bytes: &[u8], step: usize) -> Result<Vec<Incoming>, FrameError> {
        let mut reader = FrameReader::new(LIMIT, 16, &[]);
        let mut out = Vec::new();
        for chunk in bytes.chunks(step) {
            reader.buf().extend_from_slice(chunk);
            while let Some(incoming) = reader.next()? {
                out.push(incoming);
            }
        }
        Ok(out)
    }

    #[test]
    fn messages_and_control_frames_arrive_whole_however_the_bytes_are_split() {
        let mut bytes = binary(b"hello");
        bytes.extend(client_frame(OP_PING, true, b"p"));
        bytes.extend(binary(&[7; 300])); // a 16-bit length
        bytes.extend(client_frame(OP_PONG, true, b"pong"));
        bytes.extend(binary(b""));
        bytes.extend(client_frame(OP_CLOSE, true, &close_payload(4000, "bye")));
        let expected = vec![
            Incoming::Binary(Bytes::from_static(b"hello")),
            Incoming::Ping(Bytes::from_static(b"p")),
            Incoming::Binary(Bytes::from(vec![7; 300])),
            Incoming::Pong(4),
            Incoming::Binary(Bytes::new()),
            Incoming::Close(Some(4000)),
        ];
        for step in [1, 2, 3, 7, 64, bytes.len()] {
            assert_eq!(read_all(&bytes, step).unwrap(), expected, "step {step}");
        }
    }

    #[test]
    fn the_buffer_of_an_idle_connection_goes_back_to_one_chunk() {
        let mut reader = FrameReader::new(LIMIT, 16, &[]);
        reader.buf().extend_from_slice(&binary(&[1; LIMIT]));
        assert!(matches!(reader.next(), Ok(Some(Incoming::Binary(b))) if b.len() == LIMIT));
        assert!(reader.buf().capacity() < 4 * 16 + 16, "{}", reader.buf.capacity());
    }

    #[test]
    fn fragments_are_joined_and_control_frames_may_come_between_them() {
        let mut bytes = client_frame(OP_BINARY, false, b"ab");
        bytes.extend(client_frame(OP_PING, true, b""));
        bytes.extend(client_frame(OP_CONTINUATION, false, b""));
        bytes.extend(client_frame(OP_CONTINUATION, true, b"cd"));
        bytes.extend(client_frame(OP_TEXT, false, "é".as_bytes()));
        bytes.extend(client_frame(OP_CONTINUATION, true, b"!"));
        bytes.extend(client_frame(OP_TEXT, true, &[0xff]));
        assert_eq!(
            read_all(&bytes, 5).unwrap(),
            vec![
                Incoming::Ping(Bytes::new()),
                Incoming::Binary(Bytes::from_static(b"abcd")),
                Incoming::Text { utf8: true },
                Incoming::Text { utf8: false },
            ]
        );
    }

    #[test]
    fn broken_framing_is_a_protocol_error() {
        let ping = || client_frame(OP_PING, true, b"");
        let continuation = client_frame(OP_CONTINUATION, true, b"x");
        let mut unmasked = Vec::new();
        Frame::message(b"x".to_vec(), OpCode::Data(Data::Binary), true)
            .format(&mut unmasked)
            .unwrap();
        let mut reserved = binary(b"x");
        reserved[0] |= 0x40;
        let mut unknown = binary(b"x");
        unknown[0] = (unknown[0] & 0xF0) | 0x3;
        let mut fragmented_ping = ping();
        fragmented_ping[0] &= !FIN;
        let long_ping = client_frame(OP_PING, true, &[0; 126]);
        let mut interleaved = client_frame(OP_BINARY, false, b"a");
        interleaved.extend(binary(b"b"));
        let one_byte_close = client_frame(OP_CLOSE, true, &[3]);
        let reserved_code = client_frame(OP_CLOSE, true, &close_payload(1005, ""));
        let bad_reason = client_frame(OP_CLOSE, true, &[0x03, 0xe8, 0xff]);
        let cases = [
            (unmasked, "unmasked client frame"),
            (reserved, "reserved bits set"),
            (unknown, "unknown opcode"),
            (continuation, "continuation of no message"),
            (fragmented_ping, "fragmented control frame"),
            (long_ping, "control frame over 125 bytes"),
            (interleaved, "new message inside a fragmented one"),
            (one_byte_close, "close frame of one byte"),
            (reserved_code, "close code not allowed"),
            (bad_reason, "close reason not UTF-8"),
        ];
        for (bytes, why) in cases {
            assert_eq!(read_all(&bytes, 1), Err(FrameError::Protocol(why)), "{why}");
        }
    }

    #[test]
    fn frames_and_messages_over_the_limit_are_refused_from_their_header() {
        // Only the header of a frame over the limit is needed to refuse it.
        let over = binary(&[0; LIMIT + 1]);
        assert_eq!(read_all(&over[..8], 8), Err(FrameError::TooBig));
        assert_eq!(read_all(&binary(&[0; LIMIT]), 100).unwrap().len(), 1);
        // Fragments adding up to more than the limit.
        let mut bytes = client_frame(OP_BINARY, false, &[0; LIMIT / 2 + 1]);
        bytes.extend(client_frame(OP_CONTINUATION, true, &[0; LIMIT / 2]));
        assert_eq!(read_all(&bytes, 64), Err(FrameError::TooBig));
        // A 64-bit length with its top bit set.
        let mut huge = vec![0x82, 0xFF];
        huge.extend(u64::MAX.to_be_bytes());
        huge.extend([0; 4]);
        assert_eq!(
            read_all(&huge, 14),
            Err(FrameError::Protocol("frame length with its top bit set"))
        );
    }

    /// The frames the server writes are byte for byte tungstenite's, at every length
    /// encoding's edges.
    #[test]
    fn server_frames_are_tungstenites() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 1 << 20] {
            let payload = vec![0xab; len];
            let mut expected = Vec::new();
            let frame = Frame::message(payload.clone(), OpCode::Data(Data::Binary), true);
            frame.format(&mut expected).unwrap();
            let mut room = [0; MAX_HEADER_BYTES];
            let start = put_header(&mut room, OP_BINARY, len);
            let mut ours = room[start..].to_vec();
            ours.extend_from_slice(&payload);
            assert_eq!(ours, expected, "length {len}");
        }
        let mut ours = BytesMut::new();
        control_frame(&mut ours, OP_CLOSE, &close_payload(4002, "replaced"));
        let mut expected = Vec::new();
        Frame::close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 4002.into(),
            reason: "replaced".into(),
        }))
        .format(&mut expected)
        .unwrap();
        assert_eq!(&ours[..], &expected[..]);
    }
}
