//! Incremental decoder for `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).

use thiserror::Error;

/// Result of one `decode` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub consumed: usize,
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkedError {
    #[error("invalid chunk size")]
    BadSize,
}

#[derive(Debug, Default)]
pub struct ChunkedDecoder {}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Decoded, ChunkedError> {
        let _ = (input, out);
        Err(ChunkedError::BadSize)
    }
}
