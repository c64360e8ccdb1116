//! The future that serves one WebSocket, from the upgrade request to the
//! end of the close handshake. The HTTP/1 driver calls [`serve`] and then
//! closes the connection as usual (FIN, linger, stats).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;

use super::super::close::CloseReason;
use super::super::exchange::{Event, WsExchange};
use super::super::h1::conn::READ_CHUNK;
use super::super::h1::Conn;
use super::super::stats::Stats;
use super::session::{Phase, WsSession, WsState};
use crate::proto::h1::RequestHead;
use crate::proto::ws::handshake::extension_offers;
use crate::proto::ws::{
    close_code, encode_frame, Incoming, OpCode, PerMessageDeflate, Reader, WsError,
};

/// The read buffer an accepted WebSocket starts with.
const IDLE_READ_BUFFER: usize = 2048;
/// How long we wait for the peer's close frame after sending ours.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long messages received before a protocol error may wait for the
/// app before the error's close frame goes out anyway.
const ERROR_GRACE: Duration = Duration::from_millis(500);
/// Bytes read before the handshake is answered (a client should send
/// nothing then; what it sends is kept).
const HANDSHAKE_READ_LIMIT: usize = 64 * 1024;

/// The HTTP/1 driver's hand-over (see [`super::super::h1::driver::UpgradeFn`]).
pub fn upgrade(
    conn: Arc<Conn>,
    head: RequestHead,
    accept: String,
    rbuf: BytesMut,
) -> Pin<Box<dyn Future<Output = CloseReason> + Send>> {
    Box::pin(serve(conn, head, accept, rbuf))
}

/// Serves a valid upgrade request on `conn`, starting with the bytes read
/// after the head (`rbuf`); returns why the connection ends.
pub async fn serve(
    conn: Arc<Conn>,
    head: RequestHead,
    accept: String,
    mut rbuf: BytesMut,
) -> CloseReason {
    let shared = conn.shared.clone();
    let Some(cfg) = shared.cfg.ws.clone() else {
        return CloseReason::ProtocolError;
    };
    let deflate = if cfg.per_message_deflate {
        PerMessageDeflate::negotiate(&extension_offers(&head))
    } else {
        None
    };
    Stats::inc(&shared.stats.requests);
    {
        // The WebSocket counts as a request in flight until it ends (the
        // HTTP/1 driver's close ends it).
        let mut st = conn.lock();
        st.seq += 1;
        st.in_flight = true;
        st.idle_since = None;
        shared.in_flight.fetch_add(1, Relaxed);
    }
    let session = WsSession::new(conn.clone(), cfg, deflate, accept, head.version);
    shared.register(conn.id, session.clone());
    shared.push_event(Event::WebSocket(
        session.clone() as Arc<dyn WsExchange>,
        head,
    ));
    let mut d = Driver {
        s: session.clone(),
        reader: Reader::new(session.cfg.max_size, session.deflate.map(|p| p.inflater())),
        broken: None,
        pending_error: None,
        next_ping: None,
        pong_due: None,
        close_due: None,
        ping_count: 0,
        last_ping: None,
        pong: None,
        pong_held: false,
        eof: false,
        // Zero means off, as None does: a zero interval would ping in a
        // busy loop, a zero timeout close every socket.
        ping_interval: session.cfg.ping_interval.filter(|d| !d.is_zero()),
        ping_timeout: session.cfg.ping_timeout.filter(|d| !d.is_zero()),
    };
    if rbuf.is_empty() {
        // An idle WebSocket keeps a small read buffer; reads that fill it
        // grow it (`Conn::read_some`), for large messages.
        rbuf = BytesMut::with_capacity(IDLE_READ_BUFFER);
    }
    let reason = d.run(&mut rbuf).await;
    session.mark_closed(close_code::ABNORMAL);
    reason
}

struct Driver {
    s: Arc<WsSession>,
    reader: Reader,
    /// The peer broke the protocol (close code sent): its later bytes are
    /// not parsed; the reason the connection ends with.
    broken: Option<CloseReason>,
    /// The peer broke a rule while messages before it still wait for the
    /// app: the close goes out once the app has taken them (and answered
    /// them), or at this deadline.
    pending_error: Option<(WsError, Instant)>,
    next_ping: Option<Instant>,
    pong_due: Option<Instant>,
    close_due: Option<Instant>,
    ping_count: u64,
    /// The payload of our last ping while it is unanswered: only a pong
    /// that echoes it counts as the answer.
    last_ping: Option<[u8; 8]>,
    /// The answer to the peer's latest ping, while our output is blocked:
    /// one at most (a newer ping's pong replaces it, RFC 6455 5.5.3), so a
    /// peer that pings and never reads cannot grow our output.
    pong: Option<Vec<u8>>,
    /// The pong deadline is off while the app's queue is full: the peer's
    /// pong cannot be read then, through no fault of the peer.
    pong_held: bool,
    ping_interval: Option<Duration>,
    ping_timeout: Option<Duration>,
    /// The peer half-closed during the close handshake while our output
    /// was still pending: we only write now.
    eof: bool,
}

impl Driver {
    async fn run(&mut self, rbuf: &mut BytesMut) -> CloseReason {
        let s = self.s.clone();
        let conn = &s.conn;
        let shared = conn.shared.clone();
        let mut timer = Box::pin(tokio::time::sleep(Duration::from_secs(3600)));
        loop {
            let now = Instant::now();
            let (want_read, want_write) = {
                let mut st = s.lock();
                if st.closed {
                    return CloseReason::Reset;
                }
                if shared.is_shutting_down() {
                    self.on_shutdown(&mut st, now);
                }
                if st.phase == Phase::Open && self.next_ping.is_none() {
                    self.next_ping = self.ping_interval.map(|i| now + i);
                }
                // Waiting for the peer's close, or for a client that does
                // not read to take our last bytes: both are bounded.
                if self.close_due.is_none() {
                    self.close_due = match st.phase {
                        Phase::Closing => Some(now + CLOSE_TIMEOUT),
                        Phase::Done => Some(now + shared.cfg.send_timeout),
                        _ => None,
                    };
                }
                drop(st);
                if let Err(end) = self.parse(rbuf) {
                    return end;
                }
                let mut st = s.lock();
                self.close_for_error(&mut st, now);
                if !st.out.blocked {
                    if let Some(p) = self.pong.take() {
                        if st.phase == Phase::Open {
                            encode_frame(&mut st.out.buf, OpCode::Pong, false, &p);
                        }
                    }
                }
                // Frames the driver queued (pongs, closes) leave now unless
                // the loop thread writes them at the end of its iteration.
                if !st.out.deferred && !st.out.blocked && s.write_now(&mut st).is_err() {
                    return CloseReason::Reset;
                }
                if st.phase == Phase::Done && st.out.is_empty() {
                    return st.end;
                }
                let room = match st.phase {
                    Phase::Handshake | Phase::Denying => rbuf.len() < HANDSHAKE_READ_LIMIT,
                    // Data frames stream into their message: what stays in
                    // `rbuf` is at most a control frame and a header. A
                    // peer that does not read our output is not read
                    // either, past the high-water mark.
                    Phase::Open | Phase::Closing => {
                        self.broken.is_some()
                            || st.incoming.len() < s.cfg.max_queue
                                && rbuf.len() < READ_CHUNK
                                && st.out.pending() <= shared.cfg.write_high_water as u64
                    }
                    // Bytes after the end are not read, only EOF is watched.
                    Phase::Done => {
                        rbuf.clear();
                        true
                    }
                } && !self.eof;
                let app_full = matches!(st.phase, Phase::Open | Phase::Closing)
                    && self.broken.is_none()
                    && st.incoming.len() >= s.cfg.max_queue;
                if app_full {
                    if self.pong_due.take().is_some() {
                        self.pong_held = true;
                    }
                } else if self.pong_held {
                    // Reading again: the peer gets a full timeout.
                    self.pong_held = false;
                    self.pong_due = self.ping_timeout.map(|t| now + t);
                }
                (room, st.out.blocked)
            };
            let deadline = [
                self.next_ping,
                self.pong_due,
                self.close_due,
                self.pending_error.map(|(_, d)| d),
            ]
            .into_iter()
            .flatten()
            .min();
            if let Some(d) = deadline {
                timer.as_mut().reset(d);
            }
            tokio::select! {
                biased;
                _ = s.wake.notified() => {}
                r = conn.stream.writable(), if want_write => {
                    let mut st = s.lock();
                    if r.is_err() || s.write_from_driver(&mut st).is_err() {
                        return CloseReason::Reset;
                    }
                    let low_water = (shared.cfg.write_high_water / 2) as u64;
                    if st.send_waiting && st.out.pending() <= low_water {
                        drop(st);
                        s.push_wake();
                    }
                }
                r = conn.read_some(rbuf), if want_read => {
                    match r {
                        Ok(n) if n > 0 => {}
                        _ => {
                            let mut st = s.lock();
                            let phase = st.phase;
                            if r.is_ok()
                                && matches!(phase, Phase::Closing | Phase::Done)
                                && !st.out.is_empty()
                            {
                                // The peer's half-close ends its side only:
                                // our last data and close frame still go
                                // out, within the send timeout.
                                st.phase = Phase::Done;
                                st.end = CloseReason::WebSocketClosed;
                                self.eof = true;
                                self.close_due = Some(Instant::now() + shared.cfg.send_timeout);
                                continue;
                            }
                            drop(st);
                            return match phase {
                                // Our close frame was answered by a close of
                                // the TCP connection: good enough.
                                Phase::Closing | Phase::Done => CloseReason::WebSocketClosed,
                                _ if r.is_err() => CloseReason::Reset,
                                _ => CloseReason::ClientEof,
                            };
                        }
                    }
                }
                _ = timer.as_mut(), if deadline.is_some() => {
                    if let Some(end) = self.on_timer() {
                        return end;
                    }
                }
                _ = shared.shutdown.notified(), if !shared.is_shutting_down() => {}
            }
        }
    }

    /// At shutdown: an open WebSocket closes with 1012 (the app hears it);
    /// one not accepted yet tells the app it is gone.
    fn on_shutdown(&mut self, st: &mut WsState, now: Instant) {
        match st.phase {
            Phase::Open => {
                self.s.send_close(st, close_code::RESTART, "");
                st.phase = Phase::Closing;
                self.close_due = Some(now + CLOSE_TIMEOUT);
                self.wake_receive(st);
            }
            Phase::Handshake if st.disconnect.is_none() => {
                st.disconnect = Some((close_code::RESTART, String::new()));
                self.wake_receive(st);
            }
            _ => {}
        }
    }

    fn wake_receive(&self, st: &mut WsState) {
        if st.recv_waiting {
            self.s.push_wake();
        }
    }

    /// Takes the complete frames in `rbuf`, while the app's queue has room.
    fn parse(&mut self, rbuf: &mut BytesMut) -> Result<(), CloseReason> {
        let s = self.s.clone();
        if self.broken.is_some() {
            rbuf.clear();
            return Ok(());
        }
        loop {
            {
                let st = s.lock();
                let open = matches!(st.phase, Phase::Open | Phase::Closing);
                if !open || st.incoming.len() >= s.cfg.max_queue || rbuf.is_empty() {
                    return Ok(());
                }
            }
            let got = self.reader.next(rbuf);
            let mut st = s.lock();
            match got {
                Ok(None) => return Ok(()),
                Ok(Some(Incoming::Message { text })) => {
                    let data = self.reader.take_message();
                    if st.phase == Phase::Open {
                        st.incoming.push_back((data, text));
                        // A waiting receive() waits on an empty queue: one
                        // wake-up for a burst of messages.
                        if st.incoming.len() == 1 {
                            self.wake_receive(&mut st);
                        }
                    }
                }
                Ok(Some(Incoming::Ping(payload))) => {
                    if st.phase == Phase::Open {
                        if st.out.blocked {
                            self.pong = Some(payload);
                        } else {
                            encode_frame(&mut st.out.buf, OpCode::Pong, false, &payload);
                        }
                    }
                }
                Ok(Some(Incoming::Pong(payload))) => {
                    // An unsolicited pong (or one for an older ping) is
                    // no answer.
                    if self.last_ping.is_some_and(|p| p[..] == payload[..]) {
                        self.last_ping = None;
                        self.pong_due = None;
                    }
                }
                Ok(Some(Incoming::Close { code, reason })) => {
                    if st.phase == Phase::Open {
                        // The peer starts the close: echo its code.
                        s.send_close(&mut st, code, "");
                        st.disconnect = Some((code, reason));
                        self.wake_receive(&mut st);
                    }
                    st.phase = Phase::Done;
                    st.end = CloseReason::WebSocketClosed;
                    return Ok(());
                }
                Err(e) => {
                    let reason = if e.code() == close_code::TOO_BIG {
                        CloseReason::LimitExceeded
                    } else {
                        CloseReason::ProtocolError
                    };
                    self.broken = Some(reason);
                    rbuf.clear();
                    if st.phase == Phase::Open {
                        // What arrived before the error reaches the app
                        // first (close_for_error sends the close).
                        self.pending_error = Some((e, Instant::now() + ERROR_GRACE));
                        st.error_pending = true;
                    } else {
                        st.phase = Phase::Done;
                        st.end = reason;
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Sends the close of a protocol error once the messages before it
    /// were taken by the app (which then waits in `receive()`), or at the
    /// grace deadline.
    fn close_for_error(&mut self, st: &mut WsState, now: Instant) {
        let Some((e, deadline)) = self.pending_error else {
            return;
        };
        let drained = st.incoming.is_empty() && (st.recv_waiting || st.app_closed);
        if !(drained || now >= deadline || st.phase != Phase::Open) {
            return;
        }
        self.pending_error = None;
        st.error_pending = false;
        if st.phase == Phase::Open {
            self.s.send_close(st, e.code(), e.reason());
            self.wake_receive(st);
        }
        st.phase = Phase::Done;
        st.end = self.broken.unwrap_or(CloseReason::ProtocolError);
    }

    /// A ping is due, a pong is late, or the peer's close is late.
    fn on_timer(&mut self) -> Option<CloseReason> {
        let now = Instant::now();
        let s = self.s.clone();
        let mut st = s.lock();
        if self.pending_error.is_some() {
            self.close_for_error(&mut st, now);
        }
        if self.close_due.is_some_and(|d| d <= now) {
            return Some(if st.out.is_empty() {
                CloseReason::WebSocketClosed
            } else {
                // Our close frame never left: the client stopped reading.
                CloseReason::SendTimeout
            });
        }
        if self.pong_due.is_some_and(|d| d <= now) {
            if st.phase == Phase::Open {
                s.send_close(&mut st, close_code::INTERNAL, "keepalive ping timeout");
                let _ = s.write_now(&mut st);
            }
            st.disconnect
                .get_or_insert((close_code::INTERNAL, String::new()));
            return Some(CloseReason::PingTimeout);
        }
        if self.next_ping.is_some_and(|d| d <= now) {
            self.next_ping = self.ping_interval.map(|i| now + i);
            // One ping at a time: an unanswered one keeps its deadline.
            if st.phase == Phase::Open && self.last_ping.is_none() {
                self.ping_count += 1;
                let payload = self.ping_count.to_be_bytes();
                encode_frame(&mut st.out.buf, OpCode::Ping, false, &payload);
                self.last_ping = Some(payload);
                self.pong_due = self.ping_timeout.map(|t| now + t);
            }
        }
        None
    }
}
