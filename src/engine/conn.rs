//! One tokio task per connection: reads, parses request heads, decodes
//! request bodies into a bounded buffer, flushes what the Python side could
//! not write at once, and enforces keep-alive and header timeouts.
//!
//! The response itself is written by the Python side (`send()`), directly
//! from the loop thread, so a small response costs one write syscall and no
//! task wake-up.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use pyo3::prelude::*;
use tokio::io::Interest;
use tokio::sync::Notify;
use tokio::time::timeout_at;

use super::stats::Stats;
use super::stream::Stream;
use super::{lock, Event, Shared};
use crate::http1::{
    write_simple_response, BodyFraming, ChunkedDecoder, HeadParser, RequestHead, ResponseEncoder,
    Version,
};

const READ_CHUNK: usize = 16 * 1024;
/// Unread request body ferrule reads and discards after the response so the
/// connection can be reused; beyond it the connection is closed instead.
const DRAIN_LIMIT: u64 = 256 * 1024;
const LINGER: Duration = Duration::from_secs(1);

pub enum BodyReader {
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// What the Python side and the task share about a connection.
pub struct ConnState {
    /// Sequence number of the current request; stale receive/send objects
    /// from an earlier request on this connection are refused with it.
    pub seq: u64,
    pub active: bool,
    pub body: BodyReader,
    pub body_buf: Vec<u8>,
    /// The body was fully decoded into `body_buf`.
    pub body_done: bool,
    /// The app has been given the final body chunk.
    pub body_delivered: bool,
    pub body_error: bool,
    /// Bytes of request body decoded so far (for the body size limit).
    pub body_received: u64,
    pub body_too_large: bool,
    pub expect_continue: bool,
    /// Socket gone (error, reset, or closed by us): sends fail.
    pub closed: bool,
    pub enc: Option<ResponseEncoder>,
    pub out: Vec<u8>,
    /// A write hit EAGAIN: the task owns flushing `out` until it drains.
    pub write_pending: bool,
    /// `out` holds output waiting for the end of this dispatch batch or
    /// loop iteration (the connection is on `Shared::deferred`).
    pub deferred: bool,
    /// The response ended the usual way (see asgi::finish_response) but its
    /// bytes wait on `Shared::deferred`: whether it ends quietly is decided
    /// when they are written.
    pub quiet_pending: bool,
    pub response_done: bool,
    /// Close the connection without a clean end of response (app failed
    /// mid-stream): the client must not see a complete-looking response.
    pub abort: bool,
    pub keep_alive_after: bool,
    /// The response ended on the loop thread without waking the task (see
    /// `asgi::finish_response`); the idle keep-alive time counts from here.
    pub done_at: Option<tokio::time::Instant>,
    /// The task holds bytes beyond the current request (pipelined): it must
    /// be woken when the response ends, as no new readiness will come.
    pub has_next: bool,
    pub recv_waiter: Option<Py<PyAny>>,
    pub send_waiter: Option<Py<PyAny>>,
    pub log: Option<LogInfo>,
}

impl ConnState {
    /// The current request stops counting as in flight (once, whichever of
    /// the loop thread or the connection's task gets there first).
    pub fn end_request(&mut self, shared: &Shared) {
        if self.active {
            self.active = false;
            shared.in_flight.fetch_sub(1, Relaxed);
        }
    }

    /// The response ended without waking the connection's task: the request
    /// ends here, and the idle keep-alive time counts from now.
    pub fn end_quietly(&mut self, shared: &Shared) {
        self.end_request(shared);
        self.done_at = Some(tokio::time::Instant::now());
    }
}

/// What the access log needs once the response is complete.
pub struct LogInfo {
    pub method: String,
    pub target: String,
    pub version: Version,
    pub started: Instant,
}

pub struct Conn {
    pub id: u64,
    pub stream: Stream,
    /// Peer and local addresses (None on a Unix domain socket).
    pub peer: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    pub state: Mutex<ConnState>,
    pub wake: Notify,
    /// `(client, server)` scope tuples, built once per connection.
    pub addrs: OnceLock<(Py<PyAny>, Py<PyAny>)>,
    /// The peer is a trusted proxy (`--proxy-headers`).
    pub via_proxy: bool,
}

impl Conn {
    pub fn new(
        id: u64,
        stream: Stream,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
        shared: Arc<Shared>,
    ) -> Self {
        let via_proxy = match peer {
            Some(p) => !shared.cfg.proxies.is_empty() && shared.cfg.proxies.trusts(p.ip()),
            None => shared.cfg.proxies.trusts_unix(),
        };
        Self {
            id,
            stream,
            peer,
            local,
            shared,
            state: Mutex::new(ConnState {
                seq: 0,
                active: false,
                body: BodyReader::Done,
                body_buf: Vec::new(),
                body_done: true,
                body_delivered: false,
                body_error: false,
                body_received: 0,
                body_too_large: false,
                expect_continue: false,
                closed: false,
                enc: None,
                out: Vec::new(),
                write_pending: false,
                deferred: false,
                quiet_pending: false,
                response_done: false,
                abort: false,
                keep_alive_after: true,
                done_at: None,
                has_next: false,
                recv_waiter: None,
                send_waiter: None,
                log: None,
            }),
            wake: Notify::new(),
            addrs: OnceLock::new(),
            via_proxy,
        }
    }

    /// Writes `st.out` now with one non-blocking syscall (called from the
    /// loop thread by `send()`, or by the task). Leaves the remainder in
    /// `st.out`; the caller schedules the task to flush it.
    pub fn write_out(&self, st: &mut ConnState) -> io::Result<()> {
        while !st.out.is_empty() {
            Stats::inc(&self.shared.stats.write_syscalls);
            match self.stream.try_write(&st.out) {
                Ok(n) => {
                    self.shared.stats.bytes_written.fetch_add(n as u64, Relaxed);
                    if n == st.out.len() {
                        st.out.clear();
                        if st.out.capacity() > 256 * 1024 {
                            st.out.shrink_to(READ_CHUNK);
                        }
                    } else {
                        st.out.drain(..n);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    st.write_pending = true;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    st.closed = true;
                    st.out.clear();
                    st.write_pending = false;
                    return Err(e);
                }
            }
        }
        st.write_pending = false;
        Ok(())
    }

    /// From the loop thread: write `out` now unless the task owns a pending
    /// flush; a remainder is handed to the task.
    pub fn write_now(self: &Arc<Self>, st: &mut ConnState) -> io::Result<()> {
        if st.write_pending {
            return Ok(());
        }
        let res = self.write_out(st);
        if st.write_pending {
            self.shared.schedule(self);
        }
        res
    }

    fn quickack(&self) {
        if !self.stream.is_tcp() {
            return;
        }
        let one: libc::c_int = 1;
        // SAFETY: plain setsockopt on our own open socket with a valid int
        // option value; failure only means no quick ACK.
        unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    /// Reads what is available into `buf`. Ok(0) = the peer closed.
    async fn read_some(&self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            self.stream.readable().await?;
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(READ_CHUNK);
            }
            let spare = buf.capacity() - buf.len();
            Stats::inc(&self.shared.stats.read_syscalls);
            match self.stream.try_read_buf(buf) {
                Ok(n) => {
                    if n > 0 && n < spare {
                        // A short read drained the socket: drop tokio's
                        // cached readiness now instead of paying a read
                        // syscall that returns EAGAIN next time. An edge
                        // arriving after the read sets it again.
                        let _ = self.stream.try_io(Interest::READABLE, || {
                            Err::<(), _>(io::ErrorKind::WouldBlock.into())
                        });
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Flushes `out` from the task, waiting for writability.
    async fn flush(&self) -> io::Result<()> {
        loop {
            {
                let mut st = lock(&self.state);
                self.write_out(&mut st)?;
                if st.out.is_empty() {
                    return Ok(());
                }
            }
            self.stream.writable().await?;
        }
    }
}

/// Moves decodable body bytes from `rbuf` into `st.body_buf`, enforcing
/// the body size limit as bytes arrive.
fn pump_body(st: &mut ConnState, rbuf: &mut BytesMut, max_body: Option<u64>) {
    let before = st.body_buf.len();
    decode_body(st, rbuf);
    st.body_received += (st.body_buf.len() - before) as u64;
    if let Some(max) = max_body {
        if st.body_received > max {
            st.body_too_large = true;
            st.body_error = true;
            st.body = BodyReader::Done;
        }
    }
}

fn decode_body(st: &mut ConnState, rbuf: &mut BytesMut) {
    match &mut st.body {
        BodyReader::Done => {}
        BodyReader::Length(rem) => {
            let n = (*rem).min(rbuf.len() as u64) as usize;
            if n > 0 {
                st.body_buf.extend_from_slice(&rbuf[..n]);
                rbuf.advance(n);
                *rem -= n as u64;
            }
            if *rem == 0 {
                st.body = BodyReader::Done;
                st.body_done = true;
            }
        }
        BodyReader::Chunked(dec) => {
            if rbuf.is_empty() {
                return;
            }
            match dec.decode(rbuf, &mut st.body_buf) {
                Ok(d) => {
                    rbuf.advance(d.consumed);
                    if d.done {
                        st.body = BodyReader::Done;
                        st.body_done = true;
                    }
                }
                Err(_) => {
                    st.body_error = true;
                    st.body = BodyReader::Done;
                }
            }
        }
    }
}

/// Drives one connection until it closes.
pub async fn run(conn: Arc<Conn>) {
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let graceful = serve(&conn, &mut rbuf).await.unwrap_or(false);
    close(&conn, graceful).await;
}

/// Returns Ok(true) when the connection should be closed gracefully (flush,
/// FIN, linger), Ok(false)/Err when it is already dead.
async fn serve(conn: &Arc<Conn>, rbuf: &mut BytesMut) -> io::Result<bool> {
    let shared = &conn.shared;
    let cfg = &shared.cfg;
    // Incremental: a head dribbled in byte by byte costs linear, not
    // quadratic, parsing work.
    let mut parser = HeadParser::new();
    let timer = tokio::time::sleep(cfg.keep_alive_timeout);
    tokio::pin!(timer);
    loop {
        // ---- waiting for a request head (or pipelined one already here)
        let mut head_deadline: Option<tokio::time::Instant> = None;
        parser.reset();
        let head = loop {
            match parser.parse(rbuf, &cfg.limits) {
                Ok(Some(h)) => break h,
                Ok(None) => {
                    if !rbuf.is_empty() {
                        // Wire rule 5: a read left the head incomplete: ACK
                        // now so a Nagle-bound client sends the rest at once
                        // instead of waiting for our delayed ACK.
                        conn.quickack();
                    }
                }
                Err(e) => {
                    Stats::inc(&shared.stats.bad_requests);
                    let mut st = lock(&conn.state);
                    let date = shared.date.get();
                    let reason = e.to_string();
                    write_simple_response(
                        &mut st.out,
                        e.status(),
                        reason.as_bytes(),
                        true,
                        &cfg.defaults,
                        &date,
                    );
                    return Ok(true);
                }
            }
            let deadline = if rbuf.is_empty() {
                if shared.is_shutting_down() {
                    return Ok(true);
                }
                let since = lock(&conn.state).done_at.take();
                since.unwrap_or_else(tokio::time::Instant::now) + cfg.keep_alive_timeout
            } else {
                *head_deadline
                    .get_or_insert_with(|| tokio::time::Instant::now() + cfg.header_timeout)
            };
            let idle = rbuf.is_empty();
            // One timer per connection, moved rather than re-created: tokio
            // extends a later deadline without touching its timer wheel.
            timer.as_mut().reset(deadline);
            let n = tokio::select! {
                biased;
                r = conn.read_some(rbuf) => r?,
                _ = &mut timer => return Ok(true), // keep-alive or header timeout
                _ = shared.shutdown.notified(), if idle => return Ok(true),
            };
            if n == 0 {
                return Ok(false);
            }
        };

        // ---- a request is active
        if let Some(status) = refuse_request(conn, &head) {
            reply_and_close(conn, status);
            return Ok(true);
        }
        if let Some(status) = start_request(conn, head, rbuf) {
            reply_and_close(conn, status);
            shared.push_event(Event::Wake(conn.clone()));
            return Ok(true);
        }
        let mut stalled_since: Option<tokio::time::Instant> = None;
        loop {
            let (want_read, want_write, waiting_body, done) = {
                let mut st = lock(&conn.state);
                if st.closed {
                    return Ok(false);
                }
                st.has_next = st.body_done && !rbuf.is_empty();
                let done = st.response_done && st.out.is_empty();
                let room = st.body_buf.len() < cfg.body_buffer;
                let want_read = (!st.body_done && !st.body_error && room)
                        // After the body: keep watching for EOF (disconnect)
                        // and buffer pipelined bytes, up to a head's size.
                        || (st.body_done && rbuf.len() < cfg.limits.max_head_bytes);
                let waiting_body = !st.body_done && !st.body_error && st.recv_waiter.is_some();
                (want_read, !st.out.is_empty(), waiting_body, done)
            };
            if done {
                break;
            }
            // Body idle timeout while the app waits for bytes; send timeout
            // while output does not drain (a client that stopped reading).
            let now = tokio::time::Instant::now();
            let deadline = if want_write {
                Some(*stalled_since.get_or_insert(now) + cfg.send_timeout)
            } else if waiting_body {
                stalled_since = None;
                Some(now + cfg.body_timeout)
            } else {
                stalled_since = None;
                None
            };
            // A response that ends on the loop thread may not wake this task
            // (see asgi::finish_response): look again after a keep-alive
            // period, so an idle connection still times out.
            let recheck = deadline.is_none();
            if recheck {
                timer.as_mut().reset(now + cfg.keep_alive_timeout);
            }
            tokio::select! {
                biased;
                _ = conn.wake.notified() => {}
                r = conn.stream.writable(), if want_write => {
                    let res = r.and_then(|_| {
                        let mut st = lock(&conn.state);
                        let before = st.out.len();
                        conn.write_out(&mut st).map(|_| st.out.len() < before)
                    });
                    match res {
                        Ok(progress) => {
                            if progress {
                                stalled_since = None;
                            }
                        }
                        Err(_) => {
                            mark_closed(conn);
                            return Ok(false);
                        }
                    }
                    notify_if_waiting(conn);
                }
                r = conn.read_some(rbuf), if want_read => {
                    let n = match r { Ok(n) => n, Err(_) => { mark_closed(conn); return Ok(false); } };
                    if n == 0 {
                        // The client closed its side mid-request: like a
                        // reset, the app's receive() gets http.disconnect
                        // and its next send() raises.
                        mark_closed(conn);
                        return Ok(false);
                    }
                    let mut st = lock(&conn.state);
                    pump_body(&mut st, rbuf, cfg.max_body);
                    let broken = body_failure(&st);
                    let wake = st.recv_waiter.is_some();
                    drop(st);
                    if let Some(status) = broken {
                        // The app learns of it as a disconnect (never as a
                        // complete body); the client gets 400/413 if nothing
                        // of the response was sent, and the connection ends
                        // because framing is in doubt.
                        reply_and_close(conn, status);
                        shared.push_event(Event::Wake(conn.clone()));
                        return Ok(true);
                    }
                    if wake {
                        shared.push_event(Event::Wake(conn.clone()));
                    }
                }
                _ = &mut timer, if recheck => {}
                _ = tokio::time::sleep_until(deadline.unwrap_or(now)), if deadline.is_some() => {
                    mark_closed(conn);
                    return Ok(false);
                }
            }
        }

        // ---- the response is complete
        let (keep, body_left) = {
            let mut st = lock(&conn.state);
            st.end_request(shared);
            let keep =
                st.keep_alive_after && !st.abort && !st.body_error && !shared.is_shutting_down();
            let left = match &st.body {
                BodyReader::Done => Some(0),
                BodyReader::Length(n) => Some(*n),
                BodyReader::Chunked(_) => None,
            };
            (keep, left)
        };
        if !keep {
            let abort = lock(&conn.state).abort;
            return Ok(!abort);
        }
        if body_left != Some(0) && !drain_body(conn, rbuf, body_left).await {
            return Ok(true);
        }
    }
}

/// Discards the rest of an unread request body so the connection can be
/// reused. false = too much or broken: close instead.
async fn drain_body(conn: &Arc<Conn>, rbuf: &mut BytesMut, left: Option<u64>) -> bool {
    if let Some(n) = left {
        if n > DRAIN_LIMIT {
            return false;
        }
    }
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut total: u64 = 0;
    loop {
        {
            let mut st = lock(&conn.state);
            let before = rbuf.len();
            pump_body(&mut st, rbuf, None);
            total += (before - rbuf.len()) as u64;
            st.body_buf.clear();
            if st.body_error || total > DRAIN_LIMIT {
                return false;
            }
            if st.body_done {
                return true;
            }
        }
        match timeout_at(deadline, conn.read_some(rbuf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return false,
        }
    }
}

/// A request ferrule answers itself instead of starting the app.
fn refuse_request(conn: &Conn, head: &RequestHead) -> Option<u16> {
    let cfg = &conn.shared.cfg;
    if let (Some(max), BodyFraming::Length(n)) = (cfg.max_body, head.framing) {
        if n > max {
            return Some(413);
        }
    }
    if let Some(limit) = cfg.limit_concurrency {
        if conn.shared.in_flight.load(Relaxed) >= limit {
            return Some(503);
        }
    }
    None
}

/// Queues a plain error response that ends the connection, unless part of a
/// response already went out. Sends from the app fail from now on.
fn reply_and_close(conn: &Conn, status: u16) {
    let shared = &conn.shared;
    let mut st = lock(&conn.state);
    let head_written = st.enc.as_ref().is_some_and(|e| e.head_written());
    if status == 400 {
        Stats::inc(&shared.stats.bad_requests);
    }
    if !head_written && !st.response_done {
        let date = shared.date.get();
        let reason = crate::http1::reason_phrase(status);
        write_simple_response(
            &mut st.out,
            status,
            reason.as_bytes(),
            true,
            &shared.cfg.defaults,
            &date,
        );
    }
    st.closed = true;
}

/// The status to answer when the request body broke its framing or the
/// size limit.
fn body_failure(st: &ConnState) -> Option<u16> {
    if st.body_too_large {
        Some(413)
    } else if st.body_error {
        Some(400)
    } else {
        None
    }
}

/// Sets up the request state and hands the head to Python. Returns the
/// error status if the body bytes already here are broken or too large.
fn start_request(conn: &Arc<Conn>, head: RequestHead, rbuf: &mut BytesMut) -> Option<u16> {
    let shared = &conn.shared;
    Stats::inc(&shared.stats.requests);
    shared.in_flight.fetch_add(1, Relaxed);
    {
        let mut st = lock(&conn.state);
        st.seq += 1;
        st.active = true;
        st.done_at = None;
        st.has_next = false;
        st.body_buf.clear();
        st.body_delivered = false;
        st.body_error = false;
        st.body_received = 0;
        st.body_too_large = false;
        st.response_done = false;
        st.abort = false;
        st.recv_waiter = None;
        st.send_waiter = None;
        let (body, done) = match head.framing {
            BodyFraming::Empty => (BodyReader::Done, true),
            BodyFraming::Length(0) => (BodyReader::Done, true),
            BodyFraming::Length(n) => (BodyReader::Length(n), false),
            BodyFraming::Chunked => (BodyReader::Chunked(ChunkedDecoder::new()), false),
        };
        st.body = body;
        st.body_done = done;
        st.expect_continue = head.expect_continue && !done;
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
        st.keep_alive_after = head.keep_alive;
        st.log = None;
        pump_body(&mut st, rbuf, shared.cfg.max_body);
    }
    let broken = body_failure(&lock(&conn.state));
    shared.push_event(Event::Request(conn.clone(), head));
    broken
}

fn mark_closed(conn: &Arc<Conn>) {
    let mut st = lock(&conn.state);
    st.closed = true;
    let wake = st.recv_waiter.is_some() || st.send_waiter.is_some();
    drop(st);
    if wake {
        conn.shared.push_event(Event::Wake(conn.clone()));
    }
}

/// After a task-side flush: a `send()` waiting on backpressure may go on.
fn notify_if_waiting(conn: &Arc<Conn>) {
    let st = lock(&conn.state);
    let wake = st.send_waiter.is_some() && st.out.len() <= conn.shared.cfg.write_high_water / 2;
    drop(st);
    if wake {
        conn.shared.push_event(Event::Wake(conn.clone()));
    }
}

async fn close(conn: &Arc<Conn>, graceful: bool) {
    let shared = &conn.shared;
    if graceful {
        // Flush what is queued (an error response, a final chunk), then FIN
        // and linger so an unread request in our receive buffer does not
        // turn our close into an RST that destroys the response in flight.
        let _ = timeout_at(tokio::time::Instant::now() + LINGER * 5, conn.flush()).await;
        let _ = socket2::SockRef::from(&conn.stream).shutdown(std::net::Shutdown::Write);
        let deadline = tokio::time::Instant::now() + LINGER;
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
    mark_closed(conn);
    // Read now, not before the linger: the response may have ended meanwhile.
    lock(&conn.state).end_request(shared);
    lock(&shared.conns).remove(&conn.id);
    shared.stats.active_connections.fetch_sub(1, Relaxed);
}
