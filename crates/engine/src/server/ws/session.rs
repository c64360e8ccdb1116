//! One WebSocket: its state (shared by the driver and the bridge under one
//! mutex), and the bridge's side of it ([`WsExchange`]).
//!
//! The app's messages are written by the loop thread, as HTTP responses
//! are: a message is encoded (header and payload in one buffer) and left
//! for the end of the loop iteration, so messages sent without an await
//! in between leave in one write; the driver writes only what a full
//! socket left over, and its own frames (pongs, pings, closes).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::Notify;

use super::super::close::CloseReason;
use super::super::config::WsConfig;
use super::super::exchange::{
    AppEnd, Completion, ConnId, Event, Forwarded, HttpExchange, SendError, Sent, WsExchange,
    WsReceived, WsSend, WsWakeup,
};
use super::super::h1::state::Output;
use super::super::h1::Conn;
use super::super::shared::{Connection, Shared};
use super::super::stats::Stats;
use crate::net::tls::TlsInfo;
use crate::proto::h1::{
    reason_phrase, write_simple_response, RequestHead, ResponseEncoder, Version,
};
use crate::proto::ws::close_code;
use crate::proto::ws::handshake::is_reserved_header;
use crate::proto::ws::{encode_close, encode_frame, Deflater, OpCode, PerMessageDeflate};
use crate::runtime::lock;

/// Where the WebSocket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The app has not accepted or denied yet.
    Handshake,
    /// The app sent a denial response's start; its body is to come.
    Denying,
    /// Accepted: messages flow both ways.
    Open,
    /// Our close frame is out; the peer's is awaited.
    Closing,
    /// Nothing more to send: the driver flushes and ends with `end`.
    Done,
}

pub struct WsState {
    pub phase: Phase,
    /// `websocket.connect` was given.
    pub connected: bool,
    /// Messages waiting for the app's `receive()`: (bytes, text).
    pub incoming: VecDeque<(Vec<u8>, bool)>,
    /// What `receive()` gets once `incoming` is empty: the close code and
    /// reason, once the WebSocket is over for the app.
    pub disconnect: Option<(u16, String)>,
    pub out: Output,
    pub recv_waiting: bool,
    pub send_waiting: bool,
    /// The socket is gone: sends fail.
    pub closed: bool,
    /// The app sent `websocket.close` (later sends are out of order).
    pub app_closed: bool,
    /// How the connection ends once `out` is written (phase `Done`).
    pub end: CloseReason,
    /// The driver holds a protocol error's close until the app has taken
    /// the messages before it: `receive()` waiting tells it so.
    pub error_pending: bool,
    /// The denial response.
    enc: Option<ResponseEncoder>,
    deflater: Option<Deflater>,
    /// Compressed payload scratch space, kept between messages.
    zbuf: Vec<u8>,
}

pub struct WsSession {
    pub conn: Arc<Conn>,
    pub cfg: WsConfig,
    pub deflate: Option<PerMessageDeflate>,
    accept: String,
    version: Version,
    state: Mutex<WsState>,
    /// Wakes the driver (through `Shared::schedule`).
    pub(super) wake: Notify,
    me: Weak<WsSession>,
}

impl WsSession {
    pub fn new(
        conn: Arc<Conn>,
        cfg: WsConfig,
        deflate: Option<PerMessageDeflate>,
        accept: String,
        version: Version,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| WsSession {
            conn,
            cfg,
            deflate,
            accept,
            version,
            state: Mutex::new(WsState {
                phase: Phase::Handshake,
                connected: false,
                incoming: VecDeque::new(),
                disconnect: None,
                out: Output::default(),
                recv_waiting: false,
                send_waiting: false,
                closed: false,
                app_closed: false,
                end: CloseReason::WebSocketClosed,
                error_pending: false,
                enc: None,
                deflater: None,
                zbuf: Vec::new(),
            }),
            wake: Notify::new(),
            me: me.clone(),
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.conn.shared
    }

    pub fn lock(&self) -> MutexGuard<'_, WsState> {
        lock(&self.state)
    }

    /// From the loop thread: ask the driver to look at the state.
    pub fn schedule(&self) {
        if let Some(me) = self.me.upgrade() {
            self.shared().schedule(me);
        }
    }

    /// Tell the bridge that what a waiting call gets may have changed.
    pub fn push_wake(&self) {
        if let Some(me) = self.me.upgrade() {
            self.shared()
                .push_event(Event::WsWake(me as Arc<dyn WsExchange>));
        }
    }

    /// Writes `out` now, without blocking; a remainder is the driver's.
    /// Fails when the socket is gone (the state then says closed).
    pub(super) fn write_now(&self, st: &mut WsState) -> Result<(), ()> {
        if st.out.blocked || st.out.buf.is_empty() {
            return Ok(());
        }
        match self.conn.write_all(&mut st.out, 0) {
            Ok(()) => {
                if st.out.blocked {
                    self.schedule();
                }
                Ok(())
            }
            Err(_) => {
                st.closed = true;
                st.out.discard();
                Err(())
            }
        }
    }

    /// Writes from the driver (which owns a blocked output).
    pub(super) fn write_from_driver(&self, st: &mut WsState) -> Result<(), ()> {
        if st.out.buf.is_empty() {
            st.out.blocked = false;
            return Ok(());
        }
        st.out.blocked = false;
        match self.conn.write_all(&mut st.out, 0) {
            Ok(()) => Ok(()),
            Err(_) => {
                st.closed = true;
                st.out.discard();
                Err(())
            }
        }
    }

    /// Queues a close frame, and says what the app's `receive()` gets.
    pub(super) fn send_close(&self, st: &mut WsState, code: u16, reason: &str) {
        if code == close_code::NO_STATUS {
            encode_frame(&mut st.out.buf, OpCode::Close, false, b"");
        } else {
            encode_close(&mut st.out.buf, code, reason);
        }
        if st.disconnect.is_none() {
            st.disconnect = Some((code, reason.to_string()));
        }
    }

    /// The WebSocket is over for the app: a waiting `receive()` gets
    /// `websocket.disconnect` and a waiting `send()` fails.
    pub(super) fn mark_closed(&self, code: u16) {
        let mut st = self.lock();
        st.closed = true;
        st.out.discard();
        if st.disconnect.is_none() {
            st.disconnect = Some((code, String::new()));
        }
        let waiting = st.recv_waiting || st.send_waiting;
        drop(st);
        if waiting {
            self.push_wake();
        }
    }

    /// Encodes a data message into `out`.
    fn encode_message(&self, st: &mut WsState, data: &[u8], text: bool) {
        let op = if text { OpCode::Text } else { OpCode::Binary };
        let WsState {
            deflater,
            zbuf,
            out,
            ..
        } = st;
        match self.deflate {
            Some(pmd) => {
                // Made at the first message we send, not at accept: most
                // sockets are idle most of the time, and the compressor is
                // the largest part of one.
                let d = deflater.get_or_insert_with(|| pmd.deflater());
                zbuf.clear();
                d.compress(data, zbuf);
                encode_frame(&mut out.buf, op, true, zbuf);
                if pmd.server_no_context_takeover {
                    // Nothing to keep between messages: an idle socket
                    // holds no compressor.
                    *deflater = None;
                }
                if zbuf.capacity() > 256 * 1024 {
                    *zbuf = Vec::new();
                }
            }
            None => encode_frame(&mut out.buf, op, false, data),
        }
    }

    /// After a message or close was encoded from the loop thread: write it
    /// at the end of the loop iteration (or now, past the high-water mark);
    /// tell the app to wait while the client does not read.
    fn flush_or_defer(&self, st: &mut WsState) -> Result<Sent, SendError> {
        let high_water = self.shared().cfg.write_high_water as u64;
        if st.out.pending() >= high_water {
            self.write_now(st).map_err(|_| SendError::Disconnected)?;
        } else if !st.out.deferred && !st.out.blocked {
            st.out.deferred = true;
            if let Some(me) = self.me.upgrade() {
                self.shared().defer(me);
            }
        }
        if st.out.blocked && st.out.pending() > high_water {
            st.send_waiting = true;
            return Ok(Sent::Wait);
        }
        Ok(Sent::Done)
    }

    /// A plain response that ends the connection (403, 500).
    fn reply_and_end(&self, st: &mut WsState, status: u16) {
        let shared = self.shared();
        let date = shared.date.get();
        write_simple_response(
            &mut st.out.buf,
            status,
            reason_phrase(status).as_bytes(),
            true,
            &shared.cfg.defaults,
            &date,
        );
        shared.stats.response_ended(status, None);
        Stats::inc(&shared.stats.responses);
        st.phase = Phase::Done;
        st.end = CloseReason::NotKeepAlive;
        let _ = self.write_now(st);
        self.schedule();
    }

    fn accept(
        &self,
        st: &mut WsState,
        subprotocol: Option<&[u8]>,
        headers: &mut dyn Iterator<Item = (&[u8], &[u8])>,
    ) -> Result<Sent, SendError> {
        let shared = self.shared();
        let ext = self.deflate.map(|d| d.response());
        let mut all: Vec<(&[u8], &[u8])> = headers
            .filter(|(n, _)| !is_reserved_header(n, subprotocol.is_some()))
            .collect();
        all.push((b"Upgrade", b"websocket"));
        all.push((b"Connection", b"Upgrade"));
        all.push((b"Sec-WebSocket-Accept", self.accept.as_bytes()));
        if let Some(e) = &ext {
            all.push((b"Sec-WebSocket-Extensions", e.as_bytes()));
        }
        if let Some(p) = subprotocol {
            all.push((b"Sec-WebSocket-Protocol", p));
        }
        let mut enc = ResponseEncoder::new(Version::Http11, false, true);
        enc.start(101, all, false).map_err(SendError::Start)?;
        let date = shared.date.get();
        enc.body(b"", false, &shared.cfg.defaults, &date, &mut st.out.buf)
            .map_err(SendError::Body)?;
        shared.stats.response_ended(101, None);
        Stats::inc(&shared.stats.responses);
        st.phase = Phase::Open;
        // The 101 leaves at once (the client waits for it); the driver
        // starts reading frames and pinging.
        self.write_now(st).map_err(|_| SendError::Disconnected)?;
        self.schedule();
        Ok(Sent::Done)
    }

    fn receive_now(&self, st: &mut WsState, sink: &mut dyn FnMut(&[u8], bool)) -> WsReceived {
        if !st.connected {
            st.connected = true;
            return WsReceived::Connect;
        }
        if let Some((data, text)) = st.incoming.pop_front() {
            // The queue had been full: the driver reads the socket again.
            if st.incoming.len() + 1 == self.cfg.max_queue {
                self.schedule();
            }
            sink(&data, text);
            return WsReceived::Message { text };
        }
        match &st.disconnect {
            Some((code, reason)) => WsReceived::Disconnect {
                code: *code,
                reason: reason.clone(),
            },
            None => WsReceived::Wait,
        }
    }
}

impl WsExchange for WsSession {
    fn id(&self) -> ConnId {
        self.conn.id
    }

    fn peer(&self) -> Option<SocketAddr> {
        HttpExchange::peer(&*self.conn)
    }

    fn local(&self) -> Option<SocketAddr> {
        self.conn.local
    }

    fn forwarded<'h>(&self, head: &'h RequestHead) -> Forwarded<'h> {
        HttpExchange::forwarded(&*self.conn, head)
    }

    fn tls(&self) -> Option<Arc<TlsInfo>> {
        HttpExchange::tls(&*self.conn)
    }

    fn check_send(&self) -> Result<(), SendError> {
        let st = self.lock();
        if st.app_closed {
            return Err(SendError::Unexpected(
                "after sending 'websocket.close' or response already completed",
            ));
        }
        // The peer closed, the connection dropped, or the server is
        // closing it (an error, shutdown).
        if st.closed || matches!(st.phase, Phase::Closing | Phase::Done) {
            return Err(SendError::Disconnected);
        }
        Ok(())
    }

    fn accepting(&self) -> bool {
        self.lock().phase == Phase::Handshake
    }

    fn send(&self, part: WsSend<'_, '_>) -> Result<Sent, SendError> {
        if let WsSend::Close { .. } = part {
            // Closing what the peer or the server already closes is
            // nothing to fail on (apps close in `finally` blocks).
            let mut st = self.lock();
            if !st.app_closed && (st.closed || matches!(st.phase, Phase::Closing | Phase::Done)) {
                st.app_closed = true;
                return Ok(Sent::Done);
            }
        }
        self.check_send()?;
        let shared = self.shared();
        let mut guard = self.lock();
        let st = &mut *guard;
        match part {
            WsSend::Accept {
                subprotocol,
                headers,
            } => match st.phase {
                Phase::Handshake => self.accept(st, subprotocol, headers),
                _ => Err(SendError::Unexpected(
                    "after 'websocket.accept' or a response",
                )),
            },
            WsSend::Message { data, text } => match st.phase {
                Phase::Open => {
                    self.encode_message(st, data, text);
                    self.flush_or_defer(st)
                }
                Phase::Handshake | Phase::Denying => {
                    Err(SendError::Unexpected("before 'websocket.accept'"))
                }
                // The peer closed, or the server is closing it.
                Phase::Closing | Phase::Done => Err(SendError::Disconnected),
            },
            WsSend::Close { code, reason } => match st.phase {
                // A close before accept denies the handshake: 403.
                Phase::Handshake => {
                    st.app_closed = true;
                    st.disconnect.get_or_insert((code, reason.to_string()));
                    self.reply_and_end(st, 403);
                    Ok(Sent::Done)
                }
                Phase::Open => {
                    st.app_closed = true;
                    self.send_close(st, code, reason);
                    st.phase = Phase::Closing;
                    let sent = self.flush_or_defer(st)?;
                    // The driver starts waiting for the peer's close.
                    self.schedule();
                    Ok(if sent == Sent::Wait { Sent::Done } else { sent })
                }
                Phase::Denying => Err(SendError::Unexpected(
                    "after 'websocket.http.response.start'",
                )),
                Phase::Closing | Phase::Done => {
                    st.app_closed = true;
                    Ok(Sent::Done)
                }
            },
            WsSend::ResponseStart { status, headers } => match st.phase {
                Phase::Handshake => {
                    // The connection ends with this response.
                    let mut enc = ResponseEncoder::new(self.version, false, false);
                    enc.start(status, headers, false)
                        .map_err(SendError::Start)?;
                    st.enc = Some(enc);
                    st.phase = Phase::Denying;
                    Ok(Sent::Done)
                }
                _ => Err(SendError::Unexpected(
                    "after 'websocket.accept' or a response",
                )),
            },
            WsSend::ResponseBody { data, more } => {
                if st.phase != Phase::Denying {
                    return Err(SendError::Unexpected(
                        "before 'websocket.http.response.start'",
                    ));
                }
                let date = shared.date.get();
                let WsState { enc, out, .. } = st;
                let enc = enc.as_mut().expect("set with the phase");
                enc.body(data, more, &shared.cfg.defaults, &date, &mut out.buf)
                    .map_err(SendError::Body)?;
                if !enc.is_complete() {
                    return self.flush_or_defer(st);
                }
                let done = Completion {
                    status: enc.status(),
                    body_bytes: enc.body_bytes(),
                    waiting_receive: false,
                };
                shared.stats.response_ended(done.status, None);
                Stats::inc(&shared.stats.responses);
                st.phase = Phase::Done;
                st.end = CloseReason::NotKeepAlive;
                st.app_closed = true;
                st.disconnect
                    .get_or_insert((close_code::ABNORMAL, String::new()));
                let _ = self.write_now(st);
                self.schedule();
                Ok(Sent::Complete(done))
            }
        }
    }

    fn receive(&self, sink: &mut dyn FnMut(&[u8], bool)) -> WsReceived {
        let mut st = self.lock();
        let got = self.receive_now(&mut st, sink);
        if got == WsReceived::Wait {
            st.recv_waiting = true;
            if st.error_pending {
                self.schedule();
            }
        }
        got
    }

    fn app_done(&self, failed: bool) -> AppEnd {
        let shared = self.shared();
        let mut guard = self.lock();
        let st = &mut *guard;
        if failed {
            Stats::inc(&shared.stats.app_errors);
        }
        let none = Completion {
            status: 0,
            body_bytes: 0,
            waiting_receive: false,
        };
        if st.closed {
            st.phase = Phase::Done;
            drop(guard);
            self.schedule();
            return AppEnd::ClientGone(none);
        }
        let end = match st.phase {
            Phase::Handshake => {
                // Neither accepted nor denied: answer 500, as for HTTP.
                self.reply_and_end(st, 500);
                AppEnd::Answered(Completion {
                    status: 500,
                    ..none
                })
            }
            Phase::Denying => {
                let head = st.enc.as_ref().is_some_and(|e| e.head_written());
                if head {
                    // Part of the response is out: end without a clean end.
                    st.phase = Phase::Done;
                    st.end = CloseReason::AppAbort;
                    st.out.discard();
                    st.closed = true;
                    AppEnd::Aborted(none)
                } else {
                    st.out.discard();
                    self.reply_and_end(st, 500);
                    AppEnd::Answered(Completion {
                        status: 500,
                        ..none
                    })
                }
            }
            Phase::Open => {
                // The app ended without closing: close for it (1011 if it
                // failed).
                let code = if failed {
                    close_code::INTERNAL
                } else {
                    close_code::NORMAL
                };
                self.send_close(st, code, "");
                st.phase = Phase::Closing;
                let _ = self.write_now(st);
                AppEnd::Complete
            }
            Phase::Closing | Phase::Done => AppEnd::Complete,
        };
        st.app_closed = true;
        drop(guard);
        self.schedule();
        end
    }

    fn wakeup(&self, sink: &mut dyn FnMut(&[u8], bool)) -> WsWakeup {
        let mut st = self.lock();
        let mut up = WsWakeup::default();
        if st.recv_waiting {
            let got = self.receive_now(&mut st, sink);
            if got != WsReceived::Wait {
                st.recv_waiting = false;
                up.receive = Some(got);
            }
        }
        if st.send_waiting {
            if st.closed || matches!(st.phase, Phase::Done) {
                up.send = Some(Err(()));
            } else if st.out.pending() <= (self.shared().cfg.write_high_water / 2) as u64 {
                up.send = Some(Ok(()));
            }
            if up.send.is_some() {
                st.send_waiting = false;
            }
        }
        up
    }
}

impl Connection for WsSession {
    fn wake_driver(&self) {
        self.wake.notify_one();
    }

    fn flush_deferred(&self) {
        let mut st = self.lock();
        st.out.deferred = false;
        let failed = self.write_now(&mut st).is_err();
        let waiting = st.recv_waiting || st.send_waiting;
        // A driver that ends once its output is out must hear it left.
        let ending = st.phase != Phase::Open;
        drop(st);
        if ending {
            self.schedule();
        }
        if failed {
            self.schedule();
            if waiting {
                self.push_wake();
            }
        }
    }

    fn on_shutdown(&self) {
        // The driver closes with 1012 and tells the app.
        self.schedule();
    }
}
