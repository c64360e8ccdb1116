//! Frame headers, by tungstenite's protocol layer (`FrameHeader::parse` and
//! `format`), and what ferrule adds around it: unmasking, and encoding a
//! whole message (header and payload) into one buffer, so a small message
//! leaves in one write.

use std::io::Cursor;

use tungstenite::protocol::frame::coding::{Control, Data, OpCode as TOpCode};
use tungstenite::protocol::frame::FrameHeader;

/// The opcodes RFC 6455 defines (a reserved one is a protocol error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }

    fn to_tungstenite(self) -> TOpCode {
        match self {
            OpCode::Continuation => TOpCode::Data(Data::Continue),
            OpCode::Text => TOpCode::Data(Data::Text),
            OpCode::Binary => TOpCode::Data(Data::Binary),
            OpCode::Close => TOpCode::Control(Control::Close),
            OpCode::Ping => TOpCode::Control(Control::Ping),
            OpCode::Pong => TOpCode::Control(Control::Pong),
        }
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub rsv1: bool,
    /// RSV2 or RSV3: no extension ferrule speaks uses them.
    pub rsv23: bool,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
    /// Bytes of the header itself.
    pub header_len: usize,
}

/// A header that cannot be: a reserved opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadOpcode;

/// Parses the frame header at the start of `buf`; `Ok(None)` when more
/// bytes are needed.
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>, BadOpcode> {
    let mut cur = Cursor::new(buf);
    let (h, len) = match FrameHeader::parse(&mut cur) {
        Ok(Some(x)) => x,
        Ok(None) => return Ok(None),
        // Reading from a slice fails only on a reserved opcode.
        Err(_) => return Err(BadOpcode),
    };
    let opcode = match h.opcode {
        TOpCode::Data(Data::Continue) => OpCode::Continuation,
        TOpCode::Data(Data::Text) => OpCode::Text,
        TOpCode::Data(Data::Binary) => OpCode::Binary,
        TOpCode::Control(Control::Close) => OpCode::Close,
        TOpCode::Control(Control::Ping) => OpCode::Ping,
        TOpCode::Control(Control::Pong) => OpCode::Pong,
        _ => return Err(BadOpcode),
    };
    Ok(Some(Header {
        fin: h.is_final,
        rsv1: h.rsv1,
        rsv23: h.rsv2 || h.rsv3,
        opcode,
        mask: h.mask,
        len,
        header_len: cur.position() as usize,
    }))
}

/// XORs `buf` with `mask`, `offset` bytes into the masked payload (so a
/// payload may be unmasked in pieces).
pub fn unmask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut key = [0u8; 8];
    for (i, k) in key.iter_mut().enumerate() {
        *k = mask[(offset + i) & 3];
    }
    let word = u64::from_ne_bytes(key);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 7];
    }
}

/// Appends one unmasked, final frame (a server's) to `out`: header, then
/// payload, in the same buffer. `rsv1`: compressed (permessage-deflate).
pub fn encode_frame(out: &mut Vec<u8>, opcode: OpCode, rsv1: bool, payload: &[u8]) {
    let h = FrameHeader {
        is_final: true,
        rsv1,
        rsv2: false,
        rsv3: false,
        opcode: opcode.to_tungstenite(),
        mask: None,
    };
    out.reserve(h.len(payload.len() as u64) + payload.len());
    // Writing to a Vec cannot fail.
    let _ = h.format(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and as much of `reason` as fits in a
/// control frame (123 bytes, cut at a character boundary).
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = [0u8; 125];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
    encode_frame(out, OpCode::Close, false, &payload[..2 + cut]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_client_frame_parses_and_unmasks() {
        // "Hello", masked, from RFC 6455 §5.7.
        let wire = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let h = parse_header(&wire).unwrap().unwrap();
        assert!(h.fin && !h.rsv1 && !h.rsv23);
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!((h.len, h.header_len), (5, 6));
        let mut p = wire[6..].to_vec();
        unmask(&mut p, h.mask.unwrap(), 0);
        assert_eq!(&p, b"Hello");
    }

    #[test]
    fn unmasking_in_pieces_equals_unmasking_at_once() {
        let mask = [1, 2, 3, 4];
        let data: Vec<u8> = (0..100u8).collect();
        let mut whole = data.clone();
        unmask(&mut whole, mask, 0);
        let mut pieces = data.clone();
        let (a, b) = pieces.split_at_mut(37);
        unmask(a, mask, 0);
        unmask(b, mask, 37);
        assert_eq!(whole, pieces);
        unmask(&mut whole, mask, 0);
        assert_eq!(whole, data, "masking twice gives the data back");
    }

    #[test]
    fn incomplete_headers_need_more_and_reserved_opcodes_fail() {
        assert_eq!(parse_header(&[0x81]), Ok(None));
        assert_eq!(parse_header(&[0x82, 0xfe, 0x01]), Ok(None));
        assert_eq!(parse_header(&[0x83, 0x80, 0, 0, 0, 0]), Err(BadOpcode));
        assert_eq!(parse_header(&[0x8b, 0x80, 0, 0, 0, 0]), Err(BadOpcode));
    }

    #[test]
    fn frames_encode_with_the_shortest_length_form() {
        let mut out = Vec::new();
        encode_frame(&mut out, OpCode::Text, false, b"hi");
        assert_eq!(out, b"\x81\x02hi");
        out.clear();
        encode_frame(&mut out, OpCode::Binary, true, &[0; 200]);
        assert_eq!(&out[..4], &[0xc2, 126, 0, 200]);
        assert_eq!(out.len(), 204);
        out.clear();
        encode_frame(&mut out, OpCode::Binary, false, &vec![0; 70000]);
        assert_eq!(&out[..2], &[0x82, 127]);
        assert_eq!(out.len(), 10 + 70000);
    }

    #[test]
    fn a_close_reason_is_cut_to_fit_a_control_frame() {
        let mut out = Vec::new();
        encode_close(&mut out, 1000, &"é".repeat(100));
        assert!(out.len() - 2 <= 125);
        let reason = std::str::from_utf8(&out[4..]).expect("cut at a char boundary");
        assert_eq!(reason.len(), 122);
    }
}
