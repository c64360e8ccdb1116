//! Errors of request-head parsing, each mapped to the status code to answer with.

use thiserror::Error;

/// Why a request head was refused. Every variant ends the connection: after a
/// bad head the server cannot know where the next request starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HeadError {
    #[error("malformed request line")]
    BadRequestLine,
    #[error("malformed request target")]
    BadTarget,
    #[error("malformed header field")]
    BadHeader,
    #[error("line ends with a bare LF (CRLF required)")]
    BareLineFeed,
    #[error("invalid Content-Length")]
    BadContentLength,
    #[error("invalid Transfer-Encoding")]
    BadTransferEncoding,
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncodingHttp10,
    #[error("both Content-Length and Transfer-Encoding")]
    ConflictingFraming,
    #[error("missing, repeated or invalid Host header")]
    BadHost,
    #[error("request head too large")]
    HeadTooLarge,
    #[error("too many header fields")]
    TooManyHeaders,
    #[error("request target too long")]
    UriTooLong,
    #[error("transfer coding not implemented")]
    UnsupportedTransferCoding,
    #[error("HTTP version not supported")]
    UnsupportedVersion,
}

impl HeadError {
    /// Status code of the error response.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::HeadTooLarge | HeadError::TooManyHeaders => 431,
            HeadError::UriTooLong => 414,
            HeadError::UnsupportedTransferCoding => 501,
            HeadError::UnsupportedVersion => 505,
            HeadError::BadRequestLine
            | HeadError::BadTarget
            | HeadError::BadHeader
            | HeadError::BareLineFeed
            | HeadError::BadContentLength
            | HeadError::BadTransferEncoding
            | HeadError::TransferEncodingHttp10
            | HeadError::ConflictingFraming
            | HeadError::BadHost => 400,
        }
    }
}
