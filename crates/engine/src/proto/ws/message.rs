//! The reading side of a WebSocket: bytes in, messages and control frames
//! out, every rule of RFC 6455 and 7692 checked on the way. A broken rule
//! is a [`WsError`] that names the close code to answer with.

use bytes::{Buf, BytesMut};

use super::close_code;
use super::deflate::{InflateError, Inflater};
use super::frame::{parse_header, unmask, OpCode};

/// What the peer did wrong; [`WsError::code`] is the close code for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsError {
    /// A framing or protocol rule (1002).
    Protocol(&'static str),
    /// A text message that is not UTF-8, or corrupt compressed data (1007).
    InvalidData(&'static str),
    /// A message or frame over the size limit (1009).
    TooBig,
}

impl WsError {
    pub fn code(self) -> u16 {
        match self {
            WsError::Protocol(_) => close_code::PROTOCOL,
            WsError::InvalidData(_) => close_code::INVALID_DATA,
            WsError::TooBig => close_code::TOO_BIG,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            WsError::Protocol(why) | WsError::InvalidData(why) => why,
            WsError::TooBig => "message too big",
        }
    }
}

/// What a complete frame meant.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A whole data message: [`Reader::take_message`] has its bytes.
    Message {
        text: bool,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// The peer's close frame: its code (1005 when it had none) and reason.
    Close {
        code: u16,
        reason: String,
    },
}

/// Close codes a peer may send (RFC 6455 §7.4; 1012-1014 are registered
/// since; 3000-4999 are for libraries and apps).
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The data frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct Current {
    mask: [u8; 4],
    /// Payload bytes still to come.
    remaining: u64,
    /// Payload bytes already taken (for unmasking at the right offset).
    offset: usize,
    fin: bool,
}

/// Turns bytes into messages; one per connection. Data frames are taken
/// as their bytes arrive (a large frame is never buffered whole, and
/// invalid UTF-8 fails as soon as it arrives); control frames are taken
/// whole (at most 125 bytes).
pub struct Reader {
    max_size: usize,
    inflater: Option<Inflater>,
    /// The message being assembled (inflated, unmasked).
    msg: Vec<u8>,
    /// A fragmented message is open.
    in_message: bool,
    text: bool,
    compressed: bool,
    /// Bytes of `msg` known to be valid UTF-8 (text messages).
    utf8_ok: usize,
    current: Option<Current>,
}

impl Reader {
    /// `max_size`: the largest message (and frame) accepted; `inflater`:
    /// permessage-deflate was agreed.
    pub fn new(max_size: usize, inflater: Option<Inflater>) -> Self {
        Reader {
            max_size,
            inflater,
            msg: Vec::new(),
            in_message: false,
            text: false,
            compressed: false,
            utf8_ok: 0,
            current: None,
        }
    }

    /// The message [`Incoming::Message`] announced.
    pub fn take_message(&mut self) -> Vec<u8> {
        self.utf8_ok = 0;
        std::mem::take(&mut self.msg)
    }

    /// Consumes what it can of `buf`: returns at the first complete message
    /// or control frame; `Ok(None)` when more bytes are needed.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, WsError> {
        loop {
            if let Some(cur) = self.current {
                if let Some(done) = self.payload(buf, cur)? {
                    return Ok(done);
                }
                continue;
            }
            let h = match parse_header(buf) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(None),
                Err(_) => return Err(WsError::Protocol("reserved opcode")),
            };
            if h.rsv23 {
                return Err(WsError::Protocol("reserved bits set"));
            }
            let Some(mask) = h.mask else {
                return Err(WsError::Protocol("unmasked client frame"));
            };
            if h.opcode.is_control() {
                if h.len > 125 {
                    return Err(WsError::Protocol("control frame over 125 bytes"));
                }
                if !h.fin {
                    return Err(WsError::Protocol("fragmented control frame"));
                }
                if h.rsv1 {
                    return Err(WsError::Protocol("RSV1 on a control frame"));
                }
                let total = h.header_len + h.len as usize;
                if buf.len() < total {
                    return Ok(None);
                }
                buf.advance(h.header_len);
                let mut payload = buf.split_to(h.len as usize);
                unmask(&mut payload, mask, 0);
                return match h.opcode {
                    OpCode::Ping => Ok(Some(Incoming::Ping(payload.to_vec()))),
                    OpCode::Pong => Ok(Some(Incoming::Pong(payload.to_vec()))),
                    _ => close_frame(&payload).map(Some),
                };
            }
            match (h.opcode, self.in_message) {
                (OpCode::Continuation, false) => {
                    return Err(WsError::Protocol("continuation with nothing to continue"))
                }
                (OpCode::Text | OpCode::Binary, true) => {
                    return Err(WsError::Protocol("new message inside a fragmented one"))
                }
                _ => {}
            }
            if h.rsv1 && (self.inflater.is_none() || h.opcode == OpCode::Continuation) {
                return Err(WsError::Protocol("RSV1 without permessage-deflate"));
            }
            // The per-frame bound: no frame larger than a message.
            if h.len > self.max_size as u64 {
                return Err(WsError::TooBig);
            }
            let compressed = if h.opcode == OpCode::Continuation {
                self.compressed
            } else {
                h.rsv1
            };
            let have = if h.opcode == OpCode::Continuation {
                self.msg.len() as u64
            } else {
                0
            };
            if !compressed && have + h.len > self.max_size as u64 {
                return Err(WsError::TooBig);
            }
            buf.advance(h.header_len);
            if h.opcode != OpCode::Continuation {
                self.in_message = true;
                self.text = h.opcode == OpCode::Text;
                self.compressed = h.rsv1;
                self.msg.clear();
                self.utf8_ok = 0;
            }
            self.current = Some(Current {
                mask,
                remaining: h.len,
                offset: 0,
                fin: h.fin,
            });
        }
    }

    /// Takes what `buf` holds of the current data frame's payload.
    /// `Some(result)` to return (a complete message, or "need more
    /// bytes"); `None` when the frame ended without ending the message.
    #[allow(clippy::option_option)]
    fn payload(
        &mut self,
        buf: &mut BytesMut,
        mut cur: Current,
    ) -> Result<Option<Option<Incoming>>, WsError> {
        let take = cur.remaining.min(buf.len() as u64) as usize;
        if take > 0 {
            let mut chunk = buf.split_to(take);
            unmask(&mut chunk, cur.mask, cur.offset);
            cur.offset += take;
            cur.remaining -= take as u64;
            if self.compressed {
                self.inflate(&chunk, false)?;
            } else {
                self.msg.extend_from_slice(&chunk);
            }
            if self.text {
                self.check_utf8(false)?;
            }
        }
        if cur.remaining > 0 {
            self.current = Some(cur);
            return Ok(Some(None));
        }
        self.current = None;
        if !cur.fin {
            return Ok(None);
        }
        if self.compressed {
            self.inflate(&[], true)?;
        }
        if self.text {
            self.check_utf8(true)?;
        }
        self.in_message = false;
        Ok(Some(Some(Incoming::Message { text: self.text })))
    }

    fn inflate(&mut self, data: &[u8], fin: bool) -> Result<(), WsError> {
        let limit = self.max_size;
        let inflater = self.inflater.as_mut().expect("checked with RSV1");
        inflater
            .inflate(data, fin, &mut self.msg, limit)
            .map_err(|e| match e {
                InflateError::TooBig => WsError::TooBig,
                InflateError::Corrupt => WsError::InvalidData("invalid compressed data"),
            })
    }

    /// Validates the text received so far; an incomplete character at the
    /// end may still complete unless the message ended (fail fast on what
    /// can never be valid).
    fn check_utf8(&mut self, fin: bool) -> Result<(), WsError> {
        match std::str::from_utf8(&self.msg[self.utf8_ok..]) {
            Ok(_) => {
                self.utf8_ok = self.msg.len();
                Ok(())
            }
            Err(e) if e.error_len().is_none() && !fin => {
                self.utf8_ok += e.valid_up_to();
                Ok(())
            }
            Err(_) => Err(WsError::InvalidData("invalid UTF-8 in a text message")),
        }
    }
}

fn close_frame(payload: &[u8]) -> Result<Incoming, WsError> {
    match payload.len() {
        0 => Ok(Incoming::Close {
            code: close_code::NO_STATUS,
            reason: String::new(),
        }),
        1 => Err(WsError::Protocol("close frame of one byte")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !valid_close_code(code) {
                return Err(WsError::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(&payload[2..])
                .map_err(|_| WsError::Protocol("close reason is not UTF-8"))?;
            Ok(Incoming::Close {
                code,
                reason: reason.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::deflate::PerMessageDeflate;
    use super::*;

    /// A masked client frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n < 65536 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        let mut p = payload.to_vec();
        unmask(&mut p, mask, 0);
        out.extend_from_slice(&p);
        out
    }

    fn read_all(r: &mut Reader, wire: &[u8]) -> Result<Vec<Incoming>, WsError> {
        let mut buf = BytesMut::from(wire);
        let mut got = Vec::new();
        while let Some(x) = r.next(&mut buf)? {
            got.push(x);
        }
        Ok(got)
    }

    #[test]
    fn fragments_with_a_ping_between_make_one_message() {
        let mut wire = frame(0x01, b"Hel");
        wire.extend(frame(0x89, b"p"));
        wire.extend(frame(0x80, b"lo"));
        let mut r = Reader::new(1000, None);
        let got = read_all(&mut r, &wire).unwrap();
        assert_eq!(
            got,
            vec![
                Incoming::Ping(b"p".to_vec()),
                Incoming::Message { text: true }
            ]
        );
        assert_eq!(r.take_message(), b"Hello");
    }

    #[test]
    fn a_partial_frame_waits_for_its_bytes() {
        let wire = frame(0x82, &[9; 300]);
        let mut r = Reader::new(1000, None);
        let mut buf = BytesMut::from(&wire[..100]);
        assert_eq!(r.next(&mut buf), Ok(None));
        buf.extend_from_slice(&wire[100..]);
        assert_eq!(
            r.next(&mut buf),
            Ok(Some(Incoming::Message { text: false }))
        );
        assert_eq!(r.take_message(), vec![9; 300]);
    }

    #[test]
    fn protocol_errors_are_1002() {
        let unmasked = [0x81, 0x01, b'a'];
        let cases: Vec<Vec<u8>> = vec![
            unmasked.to_vec(),
            frame(0xc1, b"a"),      // RSV1 without deflate
            frame(0xa1, b"a"),      // RSV2
            frame(0x83, b"a"),      // reserved opcode
            frame(0x80, b"a"),      // continuation of nothing
            frame(0x09, b"a"),      // fragmented ping
            frame(0x89, &[0; 126]), // ping over 125
            frame(0x88, &[3]),      // one-byte close
            frame(0x88, &1005u16.to_be_bytes()),
            frame(0x88, &999u16.to_be_bytes()),
            frame(0x88, &2000u16.to_be_bytes()),
            [frame(0x01, b"a"), frame(0x81, b"b")].concat(),
            [&1000u16.to_be_bytes()[..], &[0xff]]
                .concat()
                .pipe(|p| frame(0x88, &p)),
        ];
        for (i, wire) in cases.iter().enumerate() {
            let err = read_all(&mut Reader::new(1000, None), wire).unwrap_err();
            assert_eq!(err.code(), 1002, "case {i}: {err:?}");
        }
    }

    trait Pipe: Sized {
        fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
            f(self)
        }
    }
    impl<T> Pipe for T {}

    #[test]
    fn invalid_utf8_is_1007_also_across_fragments_and_fails_fast() {
        let mut r = Reader::new(1000, None);
        let err = read_all(&mut r, &frame(0x81, &[0xce, 0xba, 0xff])).unwrap_err();
        assert_eq!(err.code(), 1007);
        // "κ" split across two fragments is fine.
        let mut r = Reader::new(1000, None);
        let wire = [frame(0x01, &[0xce]), frame(0x80, &[0xba])].concat();
        assert_eq!(
            read_all(&mut r, &wire).unwrap(),
            vec![Incoming::Message { text: true }]
        );
        // A first fragment that can never become valid fails before the end.
        let mut r = Reader::new(1000, None);
        let err = read_all(&mut r, &frame(0x01, &[b'a', 0xf5])).unwrap_err();
        assert_eq!(err.code(), 1007);
        // An incomplete character at the end of the message fails.
        let mut r = Reader::new(1000, None);
        let err = read_all(&mut r, &frame(0x81, &[0xce])).unwrap_err();
        assert_eq!(err.code(), 1007);
    }

    #[test]
    fn messages_and_frames_over_the_limit_are_1009() {
        let mut r = Reader::new(10, None);
        assert_eq!(
            read_all(&mut r, &frame(0x82, &[0; 11])),
            Err(WsError::TooBig)
        );
        let mut r = Reader::new(10, None);
        let wire = [frame(0x02, &[0; 6]), frame(0x80, &[0; 6])].concat();
        assert_eq!(read_all(&mut r, &wire), Err(WsError::TooBig));
        // The header alone is enough to refuse a frame over the limit.
        let mut r = Reader::new(10, None);
        let wire = frame(0x82, &[0; 1000]);
        assert_eq!(read_all(&mut r, &wire[..8]), Err(WsError::TooBig));
    }

    #[test]
    fn close_frames_give_their_code_and_reason() {
        let mut r = Reader::new(10, None);
        let p = [&3000u16.to_be_bytes()[..], b"bye"].concat();
        assert_eq!(
            read_all(&mut r, &frame(0x88, &p)).unwrap(),
            vec![Incoming::Close {
                code: 3000,
                reason: "bye".into()
            }]
        );
        assert_eq!(
            read_all(&mut r, &frame(0x88, b"")).unwrap(),
            vec![Incoming::Close {
                code: 1005,
                reason: String::new()
            }]
        );
    }

    #[test]
    fn compressed_messages_inflate_and_bombs_are_1009() {
        let pmd = PerMessageDeflate::negotiate(&[b"permessage-deflate"]).unwrap();
        let mut z = Vec::new();
        pmd.deflater().compress(b"hello hello hello", &mut z);
        // Compressed, in two fragments: RSV1 only on the first.
        let (a, b) = z.split_at(z.len() / 2);
        let wire = [frame(0x41, a), frame(0x80, b)].concat();
        let mut r = Reader::new(1000, Some(pmd.inflater()));
        assert_eq!(
            read_all(&mut r, &wire).unwrap(),
            vec![Incoming::Message { text: true }]
        );
        assert_eq!(r.take_message(), b"hello hello hello");
        let mut bomb = Vec::new();
        pmd.deflater().compress(&vec![0; 1 << 20], &mut bomb);
        let mut r = Reader::new(1000, Some(pmd.inflater()));
        assert_eq!(read_all(&mut r, &frame(0xc2, &bomb)), Err(WsError::TooBig));
    }
}
