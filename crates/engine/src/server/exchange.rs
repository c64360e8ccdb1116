//! The seam between the protocol drivers and the ASGI bridge.
//!
//! A driver hands the bridge [`Event`]s; the bridge answers through the
//! [`HttpExchange`] of the request: ASGI messages in (already decoded from
//! Python into [`ResponsePart`]s), and what `receive()` gets out. The HTTP/1
//! driver implements it today; an HTTP/2 stream will implement the same
//! trait. Nothing here holds or knows a Python object: the bridge keeps the
//! waiting futures and is told, by a [`Event::Wake`], when to look again.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::net::tls::TlsInfo;
use crate::proto::h1::{RequestHead, ResponseError};

/// Identifies a connection for the life of the engine.
pub type ConnId = u64;

/// Something a driver wants the bridge to act on.
pub enum Event {
    /// A request head was parsed: build the scope and start the app.
    Request(Arc<dyn HttpExchange>, RequestHead),
    /// Body data, drain progress or a disconnect changed what a waiting
    /// `receive()` or `send()` of this exchange would get.
    Wake(Arc<dyn HttpExchange>),
    /// A valid WebSocket upgrade request: build the `websocket` scope and
    /// start the app.
    WebSocket(Arc<dyn WsExchange>, RequestHead),
    /// What a waiting `receive()` or `send()` of this WebSocket would get
    /// changed.
    WsWake(Arc<dyn WsExchange>),
    /// The connection is gone; what the bridge keeps for it can go.
    Closed(ConnId),
    /// A debug line (a connection opened or closed and why, a request
    /// refused): queued only while [`Shared::set_debug`] is on.
    ///
    /// [`Shared::set_debug`]: super::shared::Shared::set_debug
    Log(String),
}

/// A response message from the app.
pub enum ResponsePart<'a, 'h> {
    Start {
        status: u16,
        headers: &'a mut dyn Iterator<Item = (&'h [u8], &'h [u8])>,
        trailers: bool,
    },
    Body {
        data: &'a [u8],
        more: bool,
    },
    Trailers {
        headers: &'a mut dyn Iterator<Item = (&'h [u8], &'h [u8])>,
        more: bool,
    },
    /// `http.response.pathsend`: the final body is this file, sent by the
    /// engine (`sendfile`), never through Python.
    PathSend {
        path: &'a std::path::Path,
    },
    /// `http.response.early_hint`: a `103 Early Hints` with these `Link`
    /// values, if the client and the response's progress allow one.
    EarlyHint {
        links: &'a mut dyn Iterator<Item = &'h [u8]>,
    },
}

/// What a `send()` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Accepted; the app goes on.
    Done,
    /// Accepted, but the client is not reading: the app waits for a
    /// [`Event::Wake`] ([`HttpExchange::wakeup`] says when it may go on).
    Wait,
    /// The response is complete. A `receive()` still waiting gets
    /// `http.disconnect`.
    Complete(Completion),
}

/// A finished response, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub status: u16,
    pub body_bytes: u64,
    /// A `receive()` was waiting: it now gets `http.disconnect`.
    pub waiting_receive: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The client went away (after this, a waiting `receive()` gets
    /// `http.disconnect`).
    #[error("client disconnected")]
    Disconnected,
    /// A message out of order; the text completes "Unexpected ASGI message
    /// '...' sent, ".
    #[error("{0}")]
    Unexpected(&'static str),
    #[error("invalid response start: {0}")]
    Start(ResponseError),
    #[error("invalid response body: {0}")]
    Body(ResponseError),
    #[error("invalid trailers: {0}")]
    Trailers(ResponseError),
    #[error("invalid early hint: {0}")]
    EarlyHint(ResponseError),
    /// `http.response.pathsend` of a file that cannot be sent (missing, not
    /// a regular file, not the app's Content-Length).
    #[error("cannot send file {path}: {why}")]
    PathSend { path: String, why: String },
}

/// What `receive()` gets now.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A body chunk (handed to the caller's sink); `more` as in ASGI.
    Body { more: bool },
    /// `http.disconnect`.
    Disconnect,
    /// Nothing yet: the app waits for a [`Event::Wake`].
    Wait,
}

/// How the app's coroutine ending left the response. Every variant but
/// `Complete` carries what was sent, for the access log (status 0: no
/// response head was sent).
#[derive(Debug, PartialEq, Eq)]
pub enum AppEnd {
    /// The response was complete (or belongs to an earlier request).
    Complete,
    /// The client had gone; nothing more could be sent.
    ClientGone(Completion),
    /// Part of the response was written: the connection is closed so the
    /// client never sees a complete-looking response.
    Aborted(Completion),
    /// As `Aborted`, but the app had been told `http.disconnect` by the
    /// server (at shutdown): ending there is what it was asked to do, not
    /// an error of the app.
    Abandoned(Completion),
    /// Nothing was written: ferrule answered 500.
    Answered(Completion),
}

/// What waiting calls may now return, after an [`Event::Wake`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wakeup {
    /// For a waiting `receive()`: what it gets (never [`Received::Wait`]).
    pub receive: Option<Received>,
    /// For a waiting `send()`: `Ok` to go on, `Err` if the client went away.
    pub send: Option<Result<(), ()>>,
}

/// `X-Forwarded-*` values from a trusted proxy, for the scope.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Forwarded<'a> {
    pub scheme: Option<&'static str>,
    pub client: Option<&'a str>,
}

/// One request/response exchange as the bridge sees it. `seq` names the
/// request on its connection: calls from an earlier request's callables are
/// answered as for a finished response.
pub trait HttpExchange: Send + Sync {
    fn id(&self) -> ConnId;
    /// Peer and local addresses (None on a Unix domain socket).
    fn peer(&self) -> Option<SocketAddr>;
    fn local(&self) -> Option<SocketAddr>;
    /// The `X-Forwarded-*` values to believe for this request.
    fn forwarded<'h>(&self, head: &'h RequestHead) -> Forwarded<'h>;
    /// The connection's TLS parameters (the scope's `tls` extension and
    /// `https`); None on plain HTTP.
    fn tls(&self) -> Option<Arc<TlsInfo>> {
        None
    }
    /// The current request's `seq`.
    fn seq(&self) -> u64;
    /// True once the client is gone: sends fail.
    fn is_closed(&self) -> bool;
    /// Whether `send()` would be refused now (checked before the message is
    /// decoded, so an out-of-order message of any type gets that error).
    fn check_send(&self, seq: u64) -> Result<(), SendError>;
    fn send(&self, seq: u64, part: ResponsePart<'_, '_>) -> Result<Sent, SendError>;
    /// The next request body chunk goes to `sink`.
    fn receive(&self, seq: u64, sink: &mut dyn FnMut(&[u8])) -> Received;
    /// The app's coroutine ended (`failed`: it raised).
    fn app_done(&self, seq: u64, failed: bool) -> AppEnd;
    /// After an [`Event::Wake`]: what the waiting calls get (a body chunk
    /// goes to `sink`).
    fn wakeup(&self, sink: &mut dyn FnMut(&[u8])) -> Wakeup;
}

/// A message from a WebSocket app (ASGI `websocket.*`, decoded by the
/// bridge).
pub enum WsSend<'a, 'h> {
    /// `websocket.accept`.
    Accept {
        subprotocol: Option<&'a [u8]>,
        headers: &'a mut dyn Iterator<Item = (&'h [u8], &'h [u8])>,
    },
    /// `websocket.send` (`text` or `bytes`).
    Message { data: &'a [u8], text: bool },
    /// `websocket.close`.
    Close { code: u16, reason: &'a str },
    /// `websocket.http.response.start` (the denial extension).
    ResponseStart {
        status: u16,
        headers: &'a mut dyn Iterator<Item = (&'h [u8], &'h [u8])>,
    },
    /// `websocket.http.response.body`.
    ResponseBody { data: &'a [u8], more: bool },
}

/// What a WebSocket `receive()` gets now.
#[derive(Debug, PartialEq, Eq)]
pub enum WsReceived {
    /// `websocket.connect` (the first call).
    Connect,
    /// `websocket.receive`; the bytes went to the sink (valid UTF-8 when
    /// `text`).
    Message {
        text: bool,
    },
    /// `websocket.disconnect`.
    Disconnect {
        code: u16,
        reason: String,
    },
    Wait,
}

/// After an [`Event::WsWake`]: what the waiting calls now get.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WsWakeup {
    pub receive: Option<WsReceived>,
    pub send: Option<Result<(), ()>>,
}

/// One WebSocket as the bridge sees it: from the upgrade request to the
/// close, one app call.
pub trait WsExchange: Send + Sync {
    fn id(&self) -> ConnId;
    fn peer(&self) -> Option<SocketAddr>;
    fn local(&self) -> Option<SocketAddr>;
    fn forwarded<'h>(&self, head: &'h RequestHead) -> Forwarded<'h>;
    /// The connection's TLS session (None over plain TCP or a Unix socket).
    fn tls(&self) -> Option<Arc<TlsInfo>> {
        None
    }
    /// Whether `send()` would be refused now (before decoding a message).
    fn check_send(&self) -> Result<(), SendError>;
    /// The handshake is not answered yet (no accept, no denial).
    fn accepting(&self) -> bool;
    fn send(&self, part: WsSend<'_, '_>) -> Result<Sent, SendError>;
    /// A message's bytes go to `sink` (with true for text).
    fn receive(&self, sink: &mut dyn FnMut(&[u8], bool)) -> WsReceived;
    /// The app's coroutine ended (`failed`: it raised).
    fn app_done(&self, failed: bool) -> AppEnd;
    fn wakeup(&self, sink: &mut dyn FnMut(&[u8], bool)) -> WsWakeup;
}
