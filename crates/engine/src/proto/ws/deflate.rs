//! permessage-deflate (RFC 7692): negotiating the extension's parameters,
//! and deflating and inflating messages with flate2 (raw deflate).
//!
//! Inflating is bounded while it runs: output grows in steps of at most
//! [`INFLATE_STEP`] bytes and never past the caller's limit plus one byte,
//! so a compression bomb costs no more memory than the limit before it is
//! refused.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Output bytes added per inflate step.
pub const INFLATE_STEP: usize = 64 * 1024;

/// The tail every compressed message loses on the wire (§7.2.1).
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// The largest window we compress with, and ask a client to compress
/// with when it lets us choose: zlib's state for a 15-bit window is about
/// 4 times a 12-bit one's, per socket, for little gain on chat-sized
/// messages.
pub const PREFERRED_WINDOW_BITS: u8 = 12;

/// The parameters agreed with a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerMessageDeflate {
    /// Our compressor starts each message afresh.
    pub server_no_context_takeover: bool,
    /// The client said it starts each message afresh (we echo it).
    pub client_no_context_takeover: bool,
    /// Our compressor's window (the client asked for at most this).
    pub server_max_window_bits: Option<u8>,
    /// The client offered `client_max_window_bits` (with this value, or
    /// 15 for none): we ask for at most [`PREFERRED_WINDOW_BITS`] and
    /// inflate with that window.
    pub client_max_window_bits: Option<u8>,
}

/// One parameter of an offer, or why the offer is unusable.
fn window_bits(value: Option<&[u8]>) -> Option<u8> {
    let v = value?;
    let v = v
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(v);
    if v.is_empty() || v.len() > 2 || !v.iter().all(u8::is_ascii_digit) || v[0] == b'0' {
        return None;
    }
    let n: u8 = std::str::from_utf8(v).ok()?.parse().ok()?;
    (8..=15).contains(&n).then_some(n)
}

impl PerMessageDeflate {
    /// Reads one offer's parameters (`;`-separated, after the name). None
    /// when the offer is invalid (unknown or repeated parameter, bad value)
    /// or asks for what we cannot do (a 256-byte window: zlib's smallest
    /// raw-deflate window is 512 bytes).
    fn from_offer(params: &[u8]) -> Option<Self> {
        let mut pmd = PerMessageDeflate {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: None,
        };
        let mut seen = [false; 4];
        for p in params.split(|&b| b == b';') {
            let p = p.trim_ascii();
            if p.is_empty() {
                return None;
            }
            let (name, value) = match p.iter().position(|&b| b == b'=') {
                Some(i) => (p[..i].trim_ascii(), Some(p[i + 1..].trim_ascii())),
                None => (p, None),
            };
            let slot = match name {
                b"server_no_context_takeover" if value.is_none() => {
                    pmd.server_no_context_takeover = true;
                    0
                }
                b"client_no_context_takeover" if value.is_none() => {
                    pmd.client_no_context_takeover = true;
                    1
                }
                b"server_max_window_bits" => {
                    let bits = window_bits(value)?;
                    if bits < 9 {
                        return None;
                    }
                    pmd.server_max_window_bits = Some(bits);
                    2
                }
                b"client_max_window_bits" => {
                    pmd.client_max_window_bits = Some(match value {
                        Some(_) => window_bits(value)?,
                        None => 15,
                    });
                    3
                }
                _ => return None,
            };
            if std::mem::replace(&mut seen[slot], true) {
                return None;
            }
        }
        Some(pmd)
    }

    /// The first acceptable permessage-deflate offer among the
    /// `Sec-WebSocket-Extensions` header values (offers are comma-separated;
    /// other extensions are ignored).
    pub fn negotiate(headers: &[&[u8]]) -> Option<Self> {
        headers
            .iter()
            .flat_map(|h| h.split(|&b| b == b','))
            .find_map(|offer| {
                let offer = offer.trim_ascii();
                let (name, params) = match offer.iter().position(|&b| b == b';') {
                    Some(i) => (offer[..i].trim_ascii(), &offer[i + 1..]),
                    None => (offer, &b""[..]),
                };
                if name != b"permessage-deflate" {
                    return None;
                }
                if params.trim_ascii().is_empty() {
                    return Some(PerMessageDeflate {
                        server_no_context_takeover: false,
                        client_no_context_takeover: false,
                        server_max_window_bits: None,
                        client_max_window_bits: None,
                    });
                }
                Self::from_offer(params)
            })
    }

    /// The `Sec-WebSocket-Extensions` value of our answer.
    pub fn response(&self) -> String {
        let mut s = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        // Always said: the server may choose a smaller window than asked
        // (RFC 7692 7.1.2.1).
        s.push_str(&format!(
            "; server_max_window_bits={}",
            self.server_window_bits()
        ));
        if let Some(b) = self.client_window_bits() {
            s.push_str(&format!("; client_max_window_bits={b}"));
        }
        s
    }

    /// The window we compress with.
    pub fn server_window_bits(&self) -> u8 {
        self.server_max_window_bits
            .unwrap_or(15)
            .min(PREFERRED_WINDOW_BITS)
    }

    /// The window we ask the client to compress with, when it offered to
    /// take one (at most what it offered).
    pub fn client_window_bits(&self) -> Option<u8> {
        self.client_max_window_bits
            .map(|b| b.min(PREFERRED_WINDOW_BITS))
    }

    pub fn deflater(&self) -> Deflater {
        Deflater {
            c: Compress::new_with_window_bits(
                Compression::fast(),
                false,
                self.server_window_bits(),
            ),
            no_context: self.server_no_context_takeover,
        }
    }

    pub fn inflater(&self) -> Inflater {
        Inflater {
            // A client told to use a window of 8 bits may: zlib's raw
            // inflate needs 9, and a larger window reads it.
            d: Decompress::new_with_window_bits(
                false,
                self.client_window_bits().unwrap_or(15).max(9),
            ),
            no_context: self.client_no_context_takeover,
        }
    }
}

/// Compresses the messages we send.
pub struct Deflater {
    c: Compress,
    no_context: bool,
}

impl Deflater {
    /// Appends `data`, compressed, without the final `00 00 ff ff`.
    pub fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let mut at = 0;
        loop {
            out.reserve(data.len() / 2 + 64);
            let before = self.c.total_in();
            let _ = self.c.compress_vec(&data[at..], out, FlushCompress::Sync);
            at += (self.c.total_in() - before) as usize;
            // Done when all input is in and the flush had room to finish.
            if at == data.len() && out.len() < out.capacity() {
                break;
            }
        }
        if out.len() - start >= 4 && out.ends_with(&TAIL) {
            out.truncate(out.len() - 4);
        }
        if out.len() == start {
            // Nothing new to flush (an empty message after a flushed one):
            // send an empty stored block's header, so the peer's added
            // tail completes a valid block (RFC 7692 §7.2.3.6).
            out.push(0);
        }
        if self.no_context {
            self.c.reset();
        }
    }
}

/// A compressed message inflated past its limit, or corrupt data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    TooBig,
    Corrupt,
}

/// Inflates the messages we receive.
pub struct Inflater {
    d: Decompress,
    no_context: bool,
}

impl Inflater {
    /// Inflates `input` (a frame's payload) onto `out`; `fin`: the message
    /// ends here (its lost tail is added). Fails once `out` would exceed
    /// `limit` bytes: `out` never grows beyond `limit + 1`.
    pub fn inflate(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        self.feed(input, out, limit)?;
        if fin {
            self.feed(&TAIL, out, limit)?;
            if self.no_context {
                self.d.reset(false);
            }
        }
        Ok(())
    }

    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        let mut at = 0;
        loop {
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            let room = (limit + 1 - out.len()).min(INFLATE_STEP);
            if out.capacity() - out.len() < room {
                out.reserve_exact(room);
            }
            let spare = out.capacity() - out.len();
            let (in_before, out_before) = (self.d.total_in(), out.len());
            let status = self
                .d
                .decompress_vec(&input[at..], out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            at += (self.d.total_in() - in_before) as usize;
            let produced = out.len() - out_before;
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            if status == Status::StreamEnd {
                // A final block (BFINAL) ends the deflate stream: the next
                // message starts a new one.
                self.d.reset(false);
                if at == input.len() {
                    return Ok(());
                }
                continue;
            }
            if at == input.len() && produced < spare {
                return Ok(());
            }
            if produced == 0 && at < input.len() && self.d.total_in() == in_before {
                // No progress with input left and room to write: corrupt.
                return Err(InflateError::Corrupt);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pmd(offer: &str) -> Option<PerMessageDeflate> {
        PerMessageDeflate::negotiate(&[offer.as_bytes()])
    }

    #[test]
    fn the_first_acceptable_offer_wins() {
        let p = pmd("x-foo, permessage-deflate; server_max_window_bits=8, permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(p.server_max_window_bits, None);
        assert_eq!(
            p.response(),
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        );
        let p = pmd("permessage-deflate; server_no_context_takeover; server_max_window_bits=10")
            .unwrap();
        assert_eq!(
            p.response(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"
        );
    }

    #[test]
    fn windows_are_at_most_12_bits_and_never_more_than_offered() {
        let answer = |offer: &str| pmd(offer).unwrap().response();
        assert_eq!(
            answer("permessage-deflate"),
            "permessage-deflate; server_max_window_bits=12"
        );
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits=10"),
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10"
        );
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits=8; server_max_window_bits=15"),
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=8"
        );
        // A client compressing with an 8-bit window inflates.
        let p = pmd("permessage-deflate; client_max_window_bits=8").unwrap();
        let mut c = Compress::new_with_window_bits(Compression::best(), false, 9);
        let msg: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let mut z = Vec::with_capacity(40_000);
        c.compress_vec(&msg, &mut z, FlushCompress::Sync).unwrap();
        z.truncate(z.len() - 4);
        let mut out = Vec::new();
        p.inflater().inflate(&z, true, &mut out, 1 << 20).unwrap();
        assert_eq!(out, msg);
    }

    #[test]
    fn invalid_offers_are_declined() {
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(pmd(bad), None, "{bad}");
        }
    }

    fn roundtrip(p: PerMessageDeflate, msgs: &[&[u8]]) {
        let mut d = p.deflater();
        let mut i = p.inflater();
        for m in msgs {
            let mut z = Vec::new();
            d.compress(m, &mut z);
            let mut out = Vec::new();
            i.inflate(&z, true, &mut out, 1 << 20).unwrap();
            assert_eq!(&out, m);
        }
    }

    #[test]
    fn messages_roundtrip_with_and_without_context() {
        let msgs: [&[u8]; 4] = [b"hello hello hello", b"", b"hello again", &[7; 100_000]];
        roundtrip(pmd("permessage-deflate").unwrap(), &msgs);
        roundtrip(
            pmd("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9")
                .unwrap(),
            &msgs,
        );
    }

    #[test]
    fn a_bomb_stops_at_the_limit_plus_one_byte() {
        let p = pmd("permessage-deflate").unwrap();
        let mut z = Vec::new();
        p.deflater().compress(&vec![0u8; 10 << 20], &mut z);
        assert!(z.len() < 200_000, "10 MiB of zeros compress well");
        let mut out = Vec::new();
        let r = p.inflater().inflate(&z, true, &mut out, 100_000);
        assert_eq!(r, Err(InflateError::TooBig));
        assert!(out.capacity() <= 100_001, "capacity {}", out.capacity());
    }

    #[test]
    fn garbage_is_corrupt() {
        let p = pmd("permessage-deflate").unwrap();
        let mut out = Vec::new();
        let r = p.inflater().inflate(&[0xff; 32], true, &mut out, 1000);
        assert_eq!(r, Err(InflateError::Corrupt));
    }
}
