//! Why a connection closed: one typed reason per close, counted in stats.

/// The reason a connection ended. The driver returns exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed its side (between requests or during one).
    ClientEof,
    /// A read or write failed (reset, broken pipe).
    Reset,
    /// No new request within `timeout_keep_alive`.
    KeepAliveTimeout,
    /// A request head did not complete within `timeout_request_header`.
    HeaderTimeout,
    /// The app waited for body bytes longer than `timeout_request_body`.
    BodyTimeout,
    /// The client did not read the response for `timeout_send`.
    SendTimeout,
    /// A malformed request head or body (ferrule answered 4xx/505).
    ProtocolError,
    /// A request over a limit (413 body size, 503 concurrency).
    LimitExceeded,
    /// The server is stopping.
    Shutdown,
    /// The app failed after part of its response was written.
    AppAbort,
    /// The response ended the connection (`Connection: close`, HTTP/1.0).
    NotKeepAlive,
    /// The request body the app left unread was too large to skip.
    BodyNotRead,
    /// A file being sent could not be read, or shrank: the response cannot
    /// be completed.
    FileError,
    /// `--proxy-protocol`: the connection did not start with a valid PROXY
    /// protocol header (missing, garbled or too long).
    ProxyHeader,
    /// `--proxy-protocol`: the peer is not a trusted proxy.
    ProxyUntrusted,
    /// A WebSocket ended with a close handshake (either side's close
    /// frame), or after its handshake was denied.
    WebSocketClosed,
    /// A WebSocket peer did not answer a ping within `--ws-ping-timeout`.
    PingTimeout,
    /// TLS failed: a bad or truncated handshake, a bad record, a plain
    /// HTTP request on a TLS-only port, or bytes that are not TLS.
    TlsError,
}

impl CloseReason {
    pub const ALL: [CloseReason; 18] = [
        CloseReason::ClientEof,
        CloseReason::Reset,
        CloseReason::KeepAliveTimeout,
        CloseReason::HeaderTimeout,
        CloseReason::BodyTimeout,
        CloseReason::SendTimeout,
        CloseReason::ProtocolError,
        CloseReason::LimitExceeded,
        CloseReason::Shutdown,
        CloseReason::AppAbort,
        CloseReason::NotKeepAlive,
        CloseReason::BodyNotRead,
        CloseReason::FileError,
        CloseReason::ProxyHeader,
        CloseReason::ProxyUntrusted,
        CloseReason::WebSocketClosed,
        CloseReason::PingTimeout,
        CloseReason::TlsError,
    ];

    /// The stats key suffix (`closed_<name>`).
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::ClientEof => "client_eof",
            CloseReason::Reset => "reset",
            CloseReason::KeepAliveTimeout => "keep_alive_timeout",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::BodyTimeout => "body_timeout",
            CloseReason::SendTimeout => "send_timeout",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::LimitExceeded => "limit_exceeded",
            CloseReason::Shutdown => "shutdown",
            CloseReason::AppAbort => "app_abort",
            CloseReason::NotKeepAlive => "not_keep_alive",
            CloseReason::BodyNotRead => "body_not_read",
            CloseReason::FileError => "file_error",
            CloseReason::ProxyHeader => "proxy_header",
            CloseReason::ProxyUntrusted => "proxy_untrusted",
            CloseReason::WebSocketClosed => "websocket_closed",
            CloseReason::PingTimeout => "ping_timeout",
            CloseReason::TlsError => "tls_error",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// A graceful close flushes what is queued, sends FIN and lingers, so
    /// an unread request in our receive buffer does not turn the close into
    /// an RST that destroys the response in flight. The others drop the
    /// socket: it is dead, the client must not see a complete-looking
    /// response, or the peer is not one we speak HTTP with.
    pub fn graceful(self) -> bool {
        !matches!(
            self,
            CloseReason::ClientEof
                | CloseReason::Reset
                | CloseReason::BodyTimeout
                | CloseReason::SendTimeout
                | CloseReason::AppAbort
                | CloseReason::FileError
                | CloseReason::ProxyHeader
                | CloseReason::ProxyUntrusted
                | CloseReason::PingTimeout
                | CloseReason::TlsError
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_at_its_index() {
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
