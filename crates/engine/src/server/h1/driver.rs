//! The future that serves one HTTP/1.1 connection until it closes:
//!
//! 0. [`Driver::read_proxy_header`]: with `--proxy-protocol`, the PROXY
//!    protocol header that must come first;
//! 1. [`Driver::read_head`]: wait for a request head (keep-alive timeout
//!    while idle, header timeout once bytes arrived, shutdown);
//! 2. [`Driver::run_request`]: hand it to the bridge, decode the body into
//!    a bounded buffer, flush what the loop thread could not write, apply
//!    the body and send timeouts;
//! 3. [`Driver::after_response`]: keep the connection or not, skip an
//!    unread body;
//! 4. [`Driver::close`]: flush, FIN and linger for a graceful close, count
//!    the [`CloseReason`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::{timeout_at, Instant, Sleep};

use super::super::close::CloseReason;
use super::super::exchange::{Event, HttpExchange};
use super::super::stats::Stats;
use super::conn::{Conn, WriteError, DRIVER_FILE_CHUNKS, READ_CHUNK};
use super::state::{BodyReader, Reading, Writing};
use crate::net::{proxy_protocol, tls};
use crate::proto::h1::{
    write_simple_response, BodyFraming, ChunkedDecoder, HeadParser, RequestHead, ResponseEncoder,
};
use crate::proto::ws::{check_upgrade, Upgrade};

/// Unread request body ferrule reads and discards after the response so the
/// connection can be reused; beyond it the connection is closed instead.
const DRAIN_LIMIT: u64 = 256 * 1024;
const LINGER: Duration = Duration::from_secs(1);

/// What serves a connection after a valid WebSocket upgrade request (the
/// head, the `Sec-WebSocket-Accept` value, the bytes read after the head):
/// the WebSocket driver, which the accept loop passes in (it sits above
/// both drivers).
pub type UpgradeFn = fn(
    Arc<Conn>,
    RequestHead,
    String,
    BytesMut,
) -> Pin<Box<dyn Future<Output = CloseReason> + Send>>;

/// What serves a connection as HTTP/2 (the HTTP/2 driver, passed in by
/// the accept loop): the bytes read so far (the connection preface first),
/// and the `Upgrade: h2c` request to answer as stream 1, if that is how
/// HTTP/2 began.
pub type H2Fn = fn(
    Arc<Conn>,
    BytesMut,
    Option<RequestHead>,
) -> Pin<Box<dyn Future<Output = CloseReason> + Send>>;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How [`Driver::serve`] ended.
enum Served {
    Closed(CloseReason),
    /// A valid WebSocket upgrade: the WebSocket driver takes over.
    Upgrade(RequestHead, String),
    /// HTTP/2 (the preface, or an `Upgrade: h2c` request): the HTTP/2
    /// driver takes over.
    H2(Option<RequestHead>),
}

/// Serves `conn` until it closes; returns why it closed.
pub async fn run(conn: Arc<Conn>, upgrade: UpgradeFn) -> CloseReason {
    run_with_h2(conn, upgrade, None).await
}

/// As [`run`], with `h2` serving the connections that turn out to speak
/// HTTP/2 (when `--http` allows it).
pub async fn run_with_h2(conn: Arc<Conn>, upgrade: UpgradeFn, h2: Option<H2Fn>) -> CloseReason {
    let mut d = Driver::new(conn);
    d.h2 = h2.filter(|_| d.conn.shared.cfg.http.h2());
    let reason = match d.serve().await {
        Served::Closed(reason) => reason,
        Served::Upgrade(head, accept) => {
            let rbuf = std::mem::take(&mut d.rbuf);
            upgrade(d.conn.clone(), head, accept, rbuf).await
        }
        Served::H2(head) => match d.h2 {
            Some(h2) => {
                let rbuf = std::mem::take(&mut d.rbuf);
                h2(d.conn.clone(), rbuf, head).await
            }
            None => CloseReason::ProtocolError,
        },
    };
    d.close(reason).await;
    reason
}

struct Driver {
    conn: Arc<Conn>,
    rbuf: BytesMut,
    /// Incremental: a head dribbled in byte by byte costs linear, not
    /// quadratic, parsing work.
    parser: HeadParser,
    /// One timer per connection, moved rather than re-created: tokio
    /// extends a later deadline without touching its timer wheel.
    timer: Pin<Box<Sleep>>,
    /// The HTTP/2 driver, when HTTP/2 may be spoken.
    h2: Option<H2Fn>,
    /// No request head was read yet: the preface may come.
    first: bool,
}

impl Driver {
    fn new(conn: Arc<Conn>) -> Self {
        let timer = Box::pin(tokio::time::sleep(conn.shared.cfg.keep_alive_timeout));
        Self {
            conn,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            parser: HeadParser::new(),
            timer,
            h2: None,
            first: true,
        }
    }

    async fn serve(&mut self) -> Served {
        if self.conn.shared.cfg.proxy_protocol.is_some() {
            if let Err(reason) = self.read_proxy_header().await {
                return Served::Closed(reason);
            }
        }
        loop {
            let head = match self.read_head().await {
                Ok(Some(head)) => head,
                Ok(None) => return Served::H2(None),
                Err(reason) => return Served::Closed(reason),
            };
            self.first = false;
            if self.h2.is_some() && self.h2c_upgrade(&head) {
                return Served::H2(Some(head));
            }
            if self.conn.shared.cfg.ws.is_some() {
                match self.upgrade(&head) {
                    Ok(None) => {}
                    Ok(Some(accept)) => return Served::Upgrade(head, accept),
                    Err(reason) => return Served::Closed(reason),
                }
            }
            if let Err(reason) = self.run_request(head).await {
                return Served::Closed(reason);
            }
            if let Err(reason) = self.after_response().await {
                return Served::Closed(reason);
            }
        }
    }

    /// A WebSocket upgrade request: `Ok(Some(accept))` when it is valid
    /// and may be served, `Ok(None)` when it is plain HTTP; an invalid one
    /// is answered here (400, or 426 for another version) and ends the
    /// connection.
    fn upgrade(&mut self, head: &RequestHead) -> Result<Option<String>, CloseReason> {
        let conn = &self.conn;
        let shared = &conn.shared;
        let id = conn.id;
        match check_upgrade(head) {
            Upgrade::No => Ok(None),
            Upgrade::Valid { accept } => {
                if let Some((status, reason, why)) = self.refuse(head) {
                    shared
                        .debug(|| format!("Connection {id}: upgrade refused with {status}: {why}"));
                    conn.reply_and_close(status, true);
                    return Err(reason);
                }
                Ok(Some(accept))
            }
            Upgrade::Bad(why) => {
                shared.debug(|| {
                    format!("Connection {id}: bad WebSocket upgrade, answered 400: {why}")
                });
                conn.reply_and_close(400, true);
                Err(CloseReason::ProtocolError)
            }
            Upgrade::Version => {
                shared.debug(|| format!("Connection {id}: WebSocket version not 13, answered 426"));
                Stats::inc(&shared.stats.bad_requests);
                shared.stats.response_ended(426, None);
                let mut st = conn.lock();
                let date = shared.date.get();
                let mut resp = Vec::new();
                write_simple_response(
                    &mut resp,
                    426,
                    b"Upgrade Required",
                    true,
                    &shared.cfg.defaults,
                    &date,
                );
                // The status line, then the version we speak.
                let eol = resp.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
                st.out.buf.extend_from_slice(&resp[..eol]);
                st.out
                    .buf
                    .extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
                st.out.buf.extend_from_slice(&resp[eol..]);
                st.closed = true;
                Err(CloseReason::ProtocolError)
            }
        }
    }

    /// `--proxy-protocol`: reads the header a trusted proxy sends first,
    /// under the header timeout, and takes the client it names. Bytes after
    /// it stay in `rbuf` for the first request. A peer that is not trusted
    /// cannot be a proxy whose header we believe: it is refused.
    async fn read_proxy_header(&mut self) -> Result<(), CloseReason> {
        let Driver {
            conn, rbuf, timer, ..
        } = self;
        let shared = &conn.shared;
        let Some(trusted) = shared.cfg.proxy_protocol.as_ref() else {
            return Ok(());
        };
        let trusts = match conn.peer {
            Some(p) => trusted.trusts(p.ip()),
            None => trusted.trusts_unix(),
        };
        if !trusts {
            return Err(CloseReason::ProxyUntrusted);
        }
        timer
            .as_mut()
            .reset(Instant::now() + shared.cfg.header_timeout);
        loop {
            match proxy_protocol::parse(rbuf) {
                Ok(Some(header)) => {
                    let _ = rbuf.split_to(header.len);
                    if let Some(client) = header.source {
                        let _ = conn.proxied.set(client);
                    }
                    // Under TLS, the bytes after the header pick the transport.
                    return conn.stream.end_raw(rbuf).map_err(|e| read_error(&e));
                }
                Ok(None) if rbuf.len() >= proxy_protocol::MAX_HEADER => {
                    return Err(CloseReason::ProxyHeader)
                }
                Ok(None) => {}
                Err(_) => return Err(CloseReason::ProxyHeader),
            }
            if shared.is_shutting_down() {
                return Err(CloseReason::Shutdown);
            }
            let n = tokio::select! {
                biased;
                r = conn.read_some(rbuf) => r.map_err(|e| read_error(&e))?,
                _ = timer.as_mut() => return Err(CloseReason::HeaderTimeout),
                _ = shared.shutdown.notified() => return Err(CloseReason::Shutdown),
            };
            if n == 0 {
                return Err(CloseReason::ClientEof);
            }
        }
    }

    /// An `Upgrade: h2c` request (RFC 7540 §3.2) that can switch: on a
    /// plain connection, with `HTTP2-Settings`, without a body (one with a
    /// body is served as HTTP/1.1, as the RFC allows).
    fn h2c_upgrade(&self, head: &RequestHead) -> bool {
        !self.conn.stream.is_tls()
            && head.framing == BodyFraming::Empty
            && head
                .header(b"upgrade")
                .is_some_and(|v| v.eq_ignore_ascii_case(b"h2c"))
            && head.header(b"http2-settings").is_some()
    }

    /// Waits for the next request head (one may already be buffered).
    /// Ok(None): the connection starts with the HTTP/2 preface.
    async fn read_head(&mut self) -> Result<Option<RequestHead>, CloseReason> {
        let sniff_h2 = self.first && self.h2.is_some();
        let h2_only = self.first && !self.conn.shared.cfg.http.h1();
        let Driver {
            conn,
            rbuf,
            parser,
            timer,
            ..
        } = self;
        let shared = &conn.shared;
        let cfg = &shared.cfg;
        let mut head_deadline: Option<Instant> = None;
        parser.reset();
        loop {
            let mut partial_preface = false;
            if (sniff_h2 || h2_only) && !rbuf.is_empty() {
                let n = rbuf.len().min(H2_PREFACE.len());
                let preface = sniff_h2 && rbuf[..n] == H2_PREFACE[..n];
                if preface && n == H2_PREFACE.len() {
                    return Ok(None);
                }
                if !preface && h2_only {
                    // --http h2: nothing but HTTP/2 is spoken here.
                    return Err(CloseReason::ProtocolError);
                }
                partial_preface = preface;
            }
            match if partial_preface {
                Ok(None)
            } else {
                parser.parse(rbuf, &cfg.limits)
            } {
                Ok(Some(head)) => return Ok(Some(head)),
                // Wire rule 5: a read left the head incomplete.
                Ok(None) if !rbuf.is_empty() => conn.stream.quickack(),
                Ok(None) => {}
                Err(e) => {
                    Stats::inc(&shared.stats.bad_requests);
                    shared.stats.response_ended(e.status(), None);
                    let mut st = conn.lock();
                    let date = shared.date.get();
                    let reason = e.to_string();
                    shared.debug(|| {
                        format!(
                            "Connection {}: malformed request, answered {}: {reason}",
                            conn.id,
                            e.status()
                        )
                    });
                    write_simple_response(
                        &mut st.out.buf,
                        e.status(),
                        reason.as_bytes(),
                        true,
                        &cfg.defaults,
                        &date,
                    );
                    return Err(CloseReason::ProtocolError);
                }
            }
            // A TLS handshake to do counts as a head that began.
            let idle = rbuf.is_empty() && !conn.stream.handshake_pending();
            // Stopping: an idle connection gets the drain window for one
            // more request, then closes.
            let drain = if idle {
                shared.shutdown.drain_deadline()
            } else {
                None
            };
            let deadline = if let Some(end) = drain {
                if Instant::now() >= end {
                    return Err(CloseReason::Shutdown);
                }
                end
            } else if idle {
                let since = conn.lock().idle_since.take();
                since.unwrap_or_else(Instant::now) + cfg.keep_alive_timeout
            } else {
                *head_deadline.get_or_insert_with(|| Instant::now() + cfg.header_timeout)
            };
            timer.as_mut().reset(deadline);
            let n = tokio::select! {
                biased;
                r = conn.read_some(rbuf) => r.map_err(|e| read_error(&e))?,
                _ = timer.as_mut() => {
                    return Err(if drain.is_some() {
                        CloseReason::Shutdown
                    } else if idle {
                        CloseReason::KeepAliveTimeout
                    } else {
                        CloseReason::HeaderTimeout
                    });
                }
                // Woken by the stop: look again, now with the drain window.
                _ = shared.shutdown.notified(), if idle && drain.is_none() => continue,
            };
            if n == 0 {
                return Err(CloseReason::ClientEof);
            }
        }
    }

    /// Serves one request until its response is complete and written.
    async fn run_request(&mut self, head: RequestHead) -> Result<(), CloseReason> {
        if let Some((status, reason, why)) = self.refuse(&head) {
            let id = self.conn.id;
            self.conn
                .shared
                .debug(|| format!("Connection {id}: request refused with {status}: {why}"));
            self.conn.reply_and_close(status, true);
            return Err(reason);
        }
        if let Some(failure) = self.start_request(head) {
            self.conn.debug_body_failure(failure);
            self.conn.reply_and_close(failure.status(), false);
            self.conn.push_wake();
            return Err(body_close_reason(failure.status()));
        }
        let Driver {
            conn, rbuf, timer, ..
        } = self;
        let shared = &conn.shared;
        let cfg = &shared.cfg;
        let mut stalled_since: Option<Instant> = None;
        loop {
            let (want_read, want_write, waiting_body) = {
                let mut st = conn.lock();
                if st.closed {
                    // A write from the loop thread failed.
                    return Err(CloseReason::Reset);
                }
                st.has_next = st.body_done() && !rbuf.is_empty();
                if st.response_done() && st.out.is_empty() {
                    return Ok(());
                }
                let reading_body = matches!(st.reading, Reading::Body(_));
                let room = st.body_buf.len() < cfg.body_buffer;
                // After the body: keep watching for EOF (disconnect) and
                // buffer pipelined bytes, up to a head's size.
                let want_read = (reading_body && room)
                    || (st.body_done() && rbuf.len() < cfg.limits.max_head_bytes);
                let waiting_body = reading_body && st.recv_waiting;
                (want_read, !st.out.is_empty(), waiting_body)
            };
            // Body idle timeout while the app waits for bytes; send timeout
            // while output does not drain (a client that stopped reading).
            let now = Instant::now();
            let deadline = if want_write {
                Some(*stalled_since.get_or_insert(now) + cfg.send_timeout)
            } else if waiting_body {
                stalled_since = None;
                Some(now + cfg.body_timeout)
            } else {
                stalled_since = None;
                None
            };
            // A response that ends on the loop thread may not wake the
            // driver (see `Conn::end_response`): look again after a
            // keep-alive period, so an idle connection still times out.
            let recheck = deadline.is_none();
            if recheck {
                timer.as_mut().reset(now + cfg.keep_alive_timeout);
            }
            tokio::select! {
                biased;
                _ = conn.wake.notified() => {}
                r = conn.stream.writable(), if want_write => {
                    let res = r.map_err(WriteError::Socket).and_then(|_| {
                        let mut st = conn.lock();
                        let before = st.out.pending();
                        conn.write_out(&mut st, DRIVER_FILE_CHUNKS)
                            .map(|_| (st.out.pending() < before, !st.out.is_empty()))
                    });
                    match res {
                        Ok((progress, more)) => {
                            if progress {
                                stalled_since = None;
                            }
                            conn.notify_if_waiting();
                            if progress && more {
                                // A big file to a fast reader: let the other
                                // connections and Python run between steps.
                                tokio::task::yield_now().await;
                            }
                        }
                        Err(e) => {
                            conn.mark_closed();
                            return Err(match e {
                                WriteError::Socket(_) => CloseReason::Reset,
                                WriteError::File { .. } => CloseReason::FileError,
                            });
                        }
                    }
                }
                r = conn.read_some(rbuf), if want_read => {
                    let n = match r {
                        Ok(n) => n,
                        Err(_) => {
                            conn.mark_closed();
                            return Err(CloseReason::Reset);
                        }
                    };
                    if n == 0 {
                        // The client closed its side mid-request: like a
                        // reset, the app's receive() gets http.disconnect
                        // and its next send() raises.
                        conn.mark_closed();
                        return Err(CloseReason::ClientEof);
                    }
                    let mut st = conn.lock();
                    st.pump_body(rbuf, cfg.max_body);
                    let broken = st.body_failure();
                    let wake = st.recv_waiting;
                    drop(st);
                    if let Some(failure) = broken {
                        // The app learns of it as a disconnect (never as a
                        // complete body); the client gets 400/413 if nothing
                        // of the response was sent, and the connection ends
                        // because framing is in doubt.
                        conn.debug_body_failure(failure);
                        conn.reply_and_close(failure.status(), false);
                        conn.push_wake();
                        return Err(body_close_reason(failure.status()));
                    }
                    if wake {
                        conn.push_wake();
                    }
                }
                _ = timer.as_mut(), if recheck => {}
                _ = tokio::time::sleep_until(deadline.unwrap_or(now)), if deadline.is_some() => {
                    conn.mark_closed();
                    return Err(if want_write {
                        CloseReason::SendTimeout
                    } else {
                        CloseReason::BodyTimeout
                    });
                }
            }
        }
    }

    /// A request ferrule answers itself instead of starting the app.
    fn refuse(&self, head: &RequestHead) -> Option<(u16, CloseReason, &'static str)> {
        let shared = &self.conn.shared;
        let cfg = &shared.cfg;
        if let (Some(max), BodyFraming::Length(n)) = (cfg.max_body, head.framing) {
            if n > max {
                return Some((
                    413,
                    CloseReason::LimitExceeded,
                    "Content-Length over --limit-request-body",
                ));
            }
        }
        if let Some(limit) = cfg.limit_concurrency {
            if shared.in_flight.load(Relaxed) >= limit {
                return Some((
                    503,
                    CloseReason::LimitExceeded,
                    "--limit-concurrency reached",
                ));
            }
        }
        None
    }

    /// Sets up the request's state and hands the head to the bridge.
    /// Returns the failure if the body bytes already here are broken or
    /// too large.
    fn start_request(&mut self, head: RequestHead) -> Option<super::state::BodyFailure> {
        let conn = &self.conn;
        let shared = &conn.shared;
        Stats::inc(&shared.stats.requests);
        shared.in_flight.fetch_add(1, Relaxed);
        let broken = {
            let mut st = conn.lock();
            st.seq += 1;
            st.told_disconnect = false;
            st.started = shared.stats.request_started();
            st.in_flight = true;
            st.idle_since = None;
            st.has_next = false;
            st.body_buf.clear();
            st.body_received = 0;
            st.writing = Writing::Open;
            st.recv_waiting = false;
            st.send_waiting = false;
            st.reading = match head.framing {
                BodyFraming::Empty | BodyFraming::Length(0) => Reading::Complete,
                BodyFraming::Length(n) => Reading::Body(BodyReader::Length(n)),
                BodyFraming::Chunked => Reading::Body(BodyReader::Chunked(ChunkedDecoder::new())),
            };
            st.expect_continue = head.expect_continue && !st.body_done();
            // Reuse the previous request's encoder and its header buffer.
            let enc = match st.enc.as_mut() {
                Some(enc) => {
                    enc.reset(head.version, head.is_head(), head.keep_alive);
                    enc
                }
                None => st.enc.insert(ResponseEncoder::new(
                    head.version,
                    head.is_head(),
                    head.keep_alive,
                )),
            };
            if shared.is_shutting_down() {
                enc.force_close();
            }
            st.keep_alive = head.keep_alive;
            st.pump_body(&mut self.rbuf, shared.cfg.max_body);
            st.body_failure()
        };
        shared.push_event(Event::Request(conn.clone() as Arc<dyn HttpExchange>, head));
        broken
    }

    /// The response is complete: keep the connection or say why not.
    async fn after_response(&mut self) -> Result<(), CloseReason> {
        let shared = &self.conn.shared;
        let (keep, body_left, aborted) = {
            let mut st = self.conn.lock();
            st.end_request(shared);
            // An app that stopped because the server told it to (shutdown)
            // did not fail: the close is the shutdown's.
            let aborted = st.writing == Writing::Aborted
                && !(st.told_disconnect && shared.is_shutting_down());
            // A response that went out without `Connection: close` while
            // the server began to stop: its client will send again, so the
            // connection stays for the drain window (`read_head`), whose
            // request is answered with `Connection: close`.
            let keep = st.keep_alive && !aborted && st.body_failure().is_none();
            (keep, st.body_left(), aborted)
        };
        if !keep {
            return Err(if aborted {
                CloseReason::AppAbort
            } else if shared.is_shutting_down() {
                CloseReason::Shutdown
            } else {
                CloseReason::NotKeepAlive
            });
        }
        if body_left != Some(0) && !self.drain_body(body_left).await {
            return Err(CloseReason::BodyNotRead);
        }
        Ok(())
    }

    /// Discards the rest of an unread request body so the connection can be
    /// reused. false = too much or broken: close instead.
    async fn drain_body(&mut self, left: Option<u64>) -> bool {
        if left.is_some_and(|n| n > DRAIN_LIMIT) {
            return false;
        }
        let deadline = Instant::now() + LINGER;
        let mut total: u64 = 0;
        loop {
            {
                let mut st = self.conn.lock();
                let before = self.rbuf.len();
                st.pump_body(&mut self.rbuf, None);
                total += (before - self.rbuf.len()) as u64;
                st.body_buf.clear();
                if st.body_failure().is_some() || total > DRAIN_LIMIT {
                    return false;
                }
                if st.body_done() {
                    return true;
                }
            }
            match timeout_at(deadline, self.conn.read_some(&mut self.rbuf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return false,
            }
        }
    }

    async fn close(&mut self, reason: CloseReason) {
        let conn = &self.conn;
        let shared = &conn.shared;
        if reason.graceful() {
            // Flush what is queued (an error response, a final chunk), then
            // FIN and linger so an unread request in our receive buffer
            // does not turn our close into an RST that destroys the
            // response in flight.
            let _ = timeout_at(Instant::now() + LINGER * 5, conn.flush()).await;
            conn.stream.shutdown_write();
            let deadline = Instant::now() + LINGER;
            let mut scratch = BytesMut::with_capacity(4096);
            loop {
                scratch.clear();
                match timeout_at(deadline, conn.read_some(&mut scratch)).await {
                    Ok(Ok(n)) if n > 0 => continue,
                    _ => break,
                }
            }
        }
        let _ = socket2::SockRef::from(&conn.stream).shutdown(std::net::Shutdown::Both);
        conn.mark_closed();
        let requests = {
            // Read now, not before the linger: the response may have ended
            // meanwhile.
            let mut st = conn.lock();
            st.end_request(shared);
            st.seq
        };
        let had_request = requests > 0;
        shared.debug(|| {
            let why = match conn.stream.tls_error() {
                Some(e) => format!(" ({e})"),
                None => String::new(),
            };
            format!(
                "Connection {} closed: {}{why} after {requests} request(s)",
                conn.id,
                reason.name()
            )
        });
        shared.unregister(conn.id);
        shared.stats.active_connections.fetch_sub(1, Relaxed);
        shared.stats.closed(reason);
        if had_request {
            shared.push_event(Event::Closed(conn.id));
        }
    }
}

/// A failed read: the TLS layer's failures are counted apart from resets.
fn read_error(e: &std::io::Error) -> CloseReason {
    if tls::is_tls_failure(e) {
        CloseReason::TlsError
    } else {
        CloseReason::Reset
    }
}

fn body_close_reason(status: u16) -> CloseReason {
    if status == 413 {
        CloseReason::LimitExceeded
    } else {
        CloseReason::ProtocolError
    }
}
