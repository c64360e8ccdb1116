//! Incremental decoder for `Transfer-Encoding: chunked` request bodies
//! (RFC 9112 §7.1).
//!
//! A byte-driven state machine, so input may be split anywhere. Nothing but the
//! payload is buffered: chunk extensions and trailer fields are validated and
//! dropped as they stream past, and only counted against limits.

use thiserror::Error;

/// Default cap on one chunk-size line (digits + extensions).
pub const DEFAULT_MAX_SIZE_LINE: usize = 4 * 1024;
/// Default cap on the whole trailer section.
pub const DEFAULT_MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Extension bytes allowed beyond the payload size, summed over the body: many
/// tiny chunks with fat extensions would otherwise cost us CPU for no payload.
const EXT_SLACK: u64 = 16 * 1024;

/// Result of one `decode` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Input bytes used; never past the end of the trailer section.
    pub consumed: usize,
    /// The last-chunk and trailer section have been fully consumed.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ChunkedError {
    #[error("invalid chunk size")]
    BadSize,
    #[error("chunk size overflows 64 bits")]
    SizeOverflow,
    #[error("line not terminated by CRLF")]
    BadLineEnd,
    #[error("invalid byte in chunk extension")]
    BadExtension,
    #[error("chunk extensions too large")]
    ExtensionTooLong,
    #[error("malformed trailer field")]
    BadTrailer,
    #[error("trailer section too large")]
    TrailersTooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting the first hex digit of a chunk size.
    SizeStart,
    /// In the hex digits.
    Size,
    /// Whitespace after the digits: only a ';' may follow (BWS before an extension).
    SizeWs,
    /// Inside chunk extensions, up to CR.
    Ext,
    /// CR of the size line seen.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// Start of a trailer field line, or of the final empty line.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    EndLf,
    Done,
    Failed(ChunkedError),
}

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Size being parsed, then the payload bytes left in the current chunk.
    size: u64,
    line_len: usize,
    trailer_len: usize,
    ext_total: u64,
    payload_total: u64,
    max_size_line: usize,
    max_trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::with_limits(DEFAULT_MAX_SIZE_LINE, DEFAULT_MAX_TRAILER_BYTES)
    }
}

#[inline]
fn hex_value(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

/// HTAB / SP / VCHAR / obs-text: what a field value or extension may hold.
#[inline]
fn is_text(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// `max_size_line`: bytes of one chunk-size line (digits + extensions);
    /// `max_trailer_bytes`: the whole trailer section including its final CRLF.
    pub fn with_limits(max_size_line: usize, max_trailer_bytes: usize) -> Self {
        ChunkedDecoder {
            state: State::SizeStart,
            size: 0,
            line_len: 0,
            trailer_len: 0,
            ext_total: 0,
            payload_total: 0,
            max_size_line,
            max_trailer_bytes,
        }
    }

    /// The whole body, trailers included, has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode as much of `input` as possible, appending chunk payload to `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Decoded, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => break,
                State::Failed(e) => return Err(e),
                State::Data => {
                    // Bulk path: copy as much payload as is here.
                    let avail = (input.len() - i) as u64;
                    let take = avail.min(self.size) as usize;
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    self.size -= take as u64;
                    self.payload_total += take as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                }
                _ => {
                    let b = input[i];
                    i += 1;
                    if let Err(e) = self.step(b) {
                        self.state = State::Failed(e);
                        return Err(e);
                    }
                }
            }
        }
        if let State::Failed(e) = self.state {
            return Err(e);
        }
        Ok(Decoded {
            consumed: i,
            done: self.state == State::Done,
        })
    }

    /// Advance the framing state machine by one byte (everything but payload).
    #[inline]
    fn step(&mut self, b: u8) -> Result<(), ChunkedError> {
        use ChunkedError as E;
        self.state = match self.state {
            State::SizeStart => {
                let v = hex_value(b).ok_or(E::BadSize)?;
                self.size = v;
                self.line_len = 1;
                State::Size
            }
            State::Size => {
                self.count_line()?;
                if let Some(v) = hex_value(b) {
                    if self.size > u64::MAX >> 4 {
                        return Err(E::SizeOverflow);
                    }
                    self.size = (self.size << 4) | v;
                    State::Size
                } else {
                    match b {
                        b'\r' => State::SizeLf,
                        b';' => self.ext_byte(State::Ext)?,
                        b' ' | b'\t' => self.ext_byte(State::SizeWs)?,
                        // "0x10", "5\n", "1g": all malformed sizes.
                        b'\n' => return Err(E::BadLineEnd),
                        _ => return Err(E::BadSize),
                    }
                }
            }
            State::SizeWs => {
                self.count_line()?;
                match b {
                    b' ' | b'\t' => self.ext_byte(State::SizeWs)?,
                    b';' => self.ext_byte(State::Ext)?,
                    _ => return Err(E::BadSize),
                }
            }
            State::Ext => {
                self.count_line()?;
                match b {
                    b'\r' => State::SizeLf,
                    _ if is_text(b) => self.ext_byte(State::Ext)?,
                    _ => return Err(E::BadExtension),
                }
            }
            State::SizeLf => {
                if b != b'\n' {
                    return Err(E::BadLineEnd);
                }
                if self.size == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                }
            }
            State::DataCr => {
                if b != b'\r' {
                    return Err(E::BadLineEnd);
                }
                State::DataLf
            }
            State::DataLf => {
                if b != b'\n' {
                    return Err(E::BadLineEnd);
                }
                State::SizeStart
            }
            State::TrailerStart => {
                self.count_trailer()?;
                match b {
                    b'\r' => State::EndLf,
                    b'\n' => return Err(E::BadLineEnd),
                    // Leading SP/HTAB would be obs-fold; ':' an empty name.
                    _ if super::request::is_tchar(b) => State::TrailerName,
                    _ => return Err(E::BadTrailer),
                }
            }
            State::TrailerName => {
                self.count_trailer()?;
                match b {
                    b':' => State::TrailerValue,
                    _ if super::request::is_tchar(b) => State::TrailerName,
                    _ => return Err(E::BadTrailer),
                }
            }
            State::TrailerValue => {
                self.count_trailer()?;
                match b {
                    b'\r' => State::TrailerLf,
                    b'\n' => return Err(E::BadLineEnd),
                    _ if is_text(b) => State::TrailerValue,
                    _ => return Err(E::BadTrailer),
                }
            }
            State::TrailerLf => {
                self.count_trailer()?;
                if b != b'\n' {
                    return Err(E::BadLineEnd);
                }
                State::TrailerStart
            }
            State::EndLf => {
                self.count_trailer()?;
                if b != b'\n' {
                    return Err(E::BadLineEnd);
                }
                State::Done
            }
            // Handled by `decode` before stepping.
            State::Data | State::Done | State::Failed(_) => self.state,
        };
        Ok(())
    }

    #[inline]
    fn count_line(&mut self) -> Result<(), ChunkedError> {
        self.line_len += 1;
        if self.line_len > self.max_size_line {
            return Err(ChunkedError::ExtensionTooLong);
        }
        Ok(())
    }

    /// Count one extension byte against the whole-body overhead budget.
    #[inline]
    fn ext_byte(&mut self, next: State) -> Result<State, ChunkedError> {
        self.ext_total += 1;
        if self.ext_total > EXT_SLACK + self.payload_total {
            return Err(ChunkedError::ExtensionTooLong);
        }
        Ok(next)
    }

    #[inline]
    fn count_trailer(&mut self) -> Result<(), ChunkedError> {
        self.trailer_len += 1;
        if self.trailer_len > self.max_trailer_bytes {
            return Err(ChunkedError::TrailersTooLarge);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
