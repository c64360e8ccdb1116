//! Response encoding: status line, headers and body framing into the caller's buffer.

use thiserror::Error;

use super::request::Version;

pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ResponseError {
    #[error("invalid response header")]
    InvalidHeader,
    #[error("invalid status code")]
    InvalidStatus,
    #[error("response already started")]
    AlreadyStarted,
    #[error("response not started")]
    NotStarted,
    #[error("response already complete")]
    AlreadyComplete,
    #[error("body longer than Content-Length")]
    BodyTooLong,
    #[error("body shorter than Content-Length")]
    BodyTooShort,
}

#[derive(Debug, Clone, Default)]
pub struct ResponseDefaults {
    pub server_header: bool,
    pub date_header: bool,
    pub extra: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug)]
pub struct ResponseEncoder {
    version: Version,
    head_request: bool,
    keep_alive: bool,
    status: u16,
}

impl ResponseEncoder {
    pub fn new(version: Version, head_request: bool, keep_alive: bool) -> Self {
        ResponseEncoder { version, head_request, keep_alive, status: 0 }
    }

    pub fn start<'h>(
        &mut self,
        status: u16,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        trailers: bool,
    ) -> Result<(), ResponseError> {
        let _ = (headers, trailers, self.version, self.head_request);
        self.status = status;
        Ok(())
    }

    pub fn body(
        &mut self,
        chunk: &[u8],
        more: bool,
        defaults: &ResponseDefaults,
        date: &[u8; 29],
        out: &mut Vec<u8>,
    ) -> Result<(), ResponseError> {
        let _ = (chunk, more, defaults, date, out);
        Ok(())
    }

    pub fn trailers<'h>(
        &mut self,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        more: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), ResponseError> {
        let _ = (headers, more, out);
        Ok(())
    }

    pub fn force_close(&mut self) {
        self.keep_alive = false;
    }
    pub fn is_started(&self) -> bool {
        self.status != 0
    }
    pub fn head_written(&self) -> bool {
        false
    }
    pub fn is_complete(&self) -> bool {
        false
    }
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }
    pub fn status(&self) -> u16 {
        self.status
    }
    pub fn body_bytes(&self) -> u64 {
        0
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    let _ = status;
    ""
}

pub fn write_simple_response(
    out: &mut Vec<u8>,
    status: u16,
    body: &[u8],
    close: bool,
    defaults: &ResponseDefaults,
    date: &[u8; 29],
) {
    let _ = (out, status, body, close, defaults, date);
}
