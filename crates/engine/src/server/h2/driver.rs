//! The futures that serve an HTTP/2 connection: one for the connection
//! ([`serve`]: the `h2` handshake, accepting streams, GOAWAY at shutdown
//! or after the keep-alive time without streams) and one per stream
//! ([`run_stream`]: the request body into the app's queue, the app's
//! response parts into `h2`, flow control both ways, the stream's
//! timeouts).

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::os::unix::fs::FileExt;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::super::close::CloseReason;
use super::super::exchange::{ConnId, Event, HttpExchange};
use super::super::h1::Conn;
use super::super::stats::Stats;
use super::io::H2Io;
use super::request::{build_head, upgrade_frame};
use super::stream::{H2Stream, Out, StreamState};
use super::tunnel;
use crate::proto::h1::{BodyFraming, RequestHead};
use crate::runtime::lock;

/// File bytes read per DATA frame batch.
const FILE_CHUNK: usize = 64 * 1024;

/// What the connection's future and its streams' tasks share.
struct Hub {
    /// Streams whose task runs.
    active: std::sync::atomic::AtomicUsize,
    /// A stream ended (the idle timer may start).
    ended: Notify,
    streams: Mutex<HashMap<ConnId, Weak<H2Stream>>>,
}

/// Serves `conn` as HTTP/2 from `rbuf` (the bytes already read: the
/// preface, or, after an `Upgrade: h2c`, whatever followed the request).
/// With `upgrade`, the request that asked for it is answered as stream 1.
pub fn serve(
    conn: Arc<Conn>,
    rbuf: BytesMut,
    upgrade: Option<RequestHead>,
) -> Pin<Box<dyn Future<Output = CloseReason> + Send>> {
    Box::pin(run(conn, rbuf, upgrade))
}

fn builder(conn: &Conn) -> h2::server::Builder {
    let cfg = &conn.shared.cfg.h2;
    let mut b = h2::server::Builder::new();
    b.max_concurrent_streams(cfg.max_concurrent_streams)
        .max_header_list_size(cfg.max_header_list_size)
        .max_frame_size(cfg.max_frame_size)
        .initial_window_size(cfg.initial_window_size)
        .initial_connection_window_size(cfg.initial_window_size.saturating_mul(4))
        // Rapid reset (CVE-2023-44487): streams the client resets before
        // the app saw them, and streams we had to reset, are bounded;
        // beyond, GOAWAY ENHANCE_YOUR_CALM. (The `h2` crate's own defaults,
        // which hyper ships: said here so a change of theirs is seen.)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(Some(1024))
        // What one stream may have queued in `h2` beyond the peer's window.
        .max_send_buffer_size(conn.shared.cfg.write_high_water.max(16 * 1024));
    if conn.shared.cfg.ws.is_some() {
        // RFC 8441: WebSockets by extended CONNECT (`tunnel`).
        b.enable_connect_protocol();
    }
    b
}

/// Why an `h2` error ended the connection.
fn reason_of(e: &h2::Error) -> CloseReason {
    if let Some(io) = e.get_io() {
        return if io.kind() == std::io::ErrorKind::TimedOut {
            CloseReason::SendTimeout
        } else if crate::net::tls::is_tls_failure(io) {
            CloseReason::TlsError
        } else {
            CloseReason::Reset
        };
    }
    if e.is_go_away() && e.is_remote() {
        return CloseReason::ClientEof;
    }
    match e.reason() {
        Some(h2::Reason::ENHANCE_YOUR_CALM) => CloseReason::LimitExceeded,
        Some(h2::Reason::NO_ERROR) => CloseReason::ClientEof,
        _ => CloseReason::ProtocolError,
    }
}

async fn run(conn: Arc<Conn>, rbuf: BytesMut, upgrade: Option<RequestHead>) -> CloseReason {
    let shared = conn.shared.clone();
    let (out, splice) = match &upgrade {
        Some(head) => match upgrade_frame(head) {
            Some(frame) => (
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                    .to_vec(),
                Some(frame),
            ),
            None => return CloseReason::ProtocolError,
        },
        None => (Vec::new(), None),
    };
    let io = H2Io::new(conn.clone(), rbuf, out, splice);
    let handshake = builder(&conn).handshake::<_, Bytes>(io);
    let mut h2c = match tokio::time::timeout(shared.cfg.header_timeout, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return reason_of(&e),
        Err(_) => return CloseReason::HeaderTimeout,
    };
    let hub = Arc::new(Hub {
        active: Default::default(),
        ended: Notify::new(),
        streams: Mutex::new(HashMap::new()),
    });
    let mut going_away = false;
    let mut idle_close = false;
    let mut idle: Pin<Box<Sleep>> = Box::pin(tokio::time::sleep(shared.cfg.keep_alive_timeout));
    let mut idle_armed = false;
    let reason = loop {
        let busy = hub.active.load(Relaxed) > 0;
        if busy {
            idle_armed = false;
        } else if !idle_armed {
            idle_armed = true;
            idle.as_mut()
                .reset(Instant::now() + shared.cfg.keep_alive_timeout);
        }
        // Short-lived, one at a time: its size does not matter.
        #[allow(clippy::large_enum_variant)]
        enum Step {
            Stream(http::Request<RecvStream>, SendResponse<Bytes>),
            Failed(h2::Error),
            End,
            Look,
        }
        let step = {
            // Made before the flag is read: a stop in between still
            // completes it.
            let mut stop = pin!(shared.shutdown.notified());
            let mut ended = pin!(hub.ended.notified());
            if shared.is_shutting_down() && !going_away {
                going_away = true;
                h2c.graceful_shutdown();
                wake_waiting(&hub);
            }
            poll_fn(|cx| {
                if let Poll::Ready(r) = h2c.poll_accept(cx) {
                    return Poll::Ready(match r {
                        Some(Ok((req, respond))) => Step::Stream(req, respond),
                        Some(Err(e)) => Step::Failed(e),
                        None => Step::End,
                    });
                }
                if !going_away && stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Step::Look);
                }
                if ended.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Step::Look);
                }
                if idle_armed && idle.as_mut().poll(cx).is_ready() {
                    // Re-armed for one more period on the next turn.
                    idle_armed = false;
                    if going_away {
                        // Still open a keep-alive period after our GOAWAY
                        // without a stream (a client that does not answer
                        // its PING, or just stays): the connection ends.
                        h2c.abrupt_shutdown(h2::Reason::NO_ERROR);
                    } else {
                        idle_close = true;
                        going_away = true;
                        h2c.graceful_shutdown();
                    }
                    return Poll::Ready(Step::Look);
                }
                Poll::Pending
            })
            .await
        };
        match step {
            Step::Stream(req, mut respond) => {
                // A request without `:path` (CONNECT aside) is malformed
                // (RFC 9113 §8.3.1); `h2` refuses only an empty one.
                // (A `Uri` built without a path says so by an empty `path()`.)
                let no_path = req.uri().path().is_empty();
                if req.method() != http::Method::CONNECT && no_path {
                    respond.send_reset(h2::Reason::PROTOCOL_ERROR);
                    continue;
                }
                if shared.cfg.ws.is_some() && tunnel::is_websocket(&req) {
                    start_tunnel(&conn, &hub, req, respond);
                    continue;
                }
                let head = build_head(&req);
                start_stream(&conn, &hub, head, req.into_body(), respond);
            }
            Step::Failed(e) => break reason_of(&e),
            Step::End => {
                break if shared.is_shutting_down() {
                    CloseReason::Shutdown
                } else if idle_close {
                    CloseReason::KeepAliveTimeout
                } else {
                    CloseReason::ClientEof
                };
            }
            Step::Look => {}
        }
    };
    // Streams still running hear that the connection is gone.
    let streams: Vec<_> = lock(&hub.streams)
        .values()
        .filter_map(Weak::upgrade)
        .collect();
    for s in streams {
        close_stream(&s);
        s.wake.notify_one();
    }
    // Whatever h2 queued last (GOAWAY) leaves before the close path.
    let _ = poll_fn(|cx| h2c.poll_closed(cx)).await;
    reason
}

/// At shutdown: a `receive()` that only waits for a disconnect gets it.
fn wake_waiting(hub: &Hub) {
    let streams: Vec<_> = lock(&hub.streams)
        .values()
        .filter_map(Weak::upgrade)
        .collect();
    for s in streams {
        if s.lock().recv_waiting {
            s.push_wake();
        }
    }
}

/// A WebSocket over HTTP/2: counted as an open stream while it lasts.
fn start_tunnel(
    conn: &Arc<Conn>,
    hub: &Arc<Hub>,
    req: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
) {
    hub.active.fetch_add(1, Relaxed);
    let hub = hub.clone();
    let conn = conn.clone();
    conn.clone().shared.exec.spawn(async move {
        tunnel::serve(conn, req, respond).await;
        hub.active.fetch_sub(1, Relaxed);
        hub.ended.notify_one();
    });
}

/// A request ferrule answers itself (413, 503) instead of starting the app.
fn refuse(conn: &Conn, head: &RequestHead) -> Option<u16> {
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

fn plain_response(status: u16) -> http::Response<()> {
    let mut resp = http::Response::new(());
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn start_stream(
    conn: &Arc<Conn>,
    hub: &Arc<Hub>,
    head: RequestHead,
    body: RecvStream,
    mut respond: SendResponse<Bytes>,
) {
    let shared = &conn.shared;
    // As over HTTP/1.1, a refused request is not counted as one.
    if let Some(status) = refuse(conn, &head) {
        let id = conn.id;
        shared.debug(|| format!("Connection {id}: HTTP/2 request refused with {status}"));
        shared.stats.response_ended(status, None);
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        if let Ok(mut send) = respond.send_response(plain_response(status), false) {
            let _ = send.send_data(Bytes::copy_from_slice(reason.as_bytes()), true);
        }
        return;
    }
    Stats::inc(&shared.stats.requests);
    shared.in_flight.fetch_add(1, Relaxed);
    // Counted on the connection too, for its close line.
    conn.lock().seq += 1;
    let id = shared.next_id();
    let body_done = body.is_end_stream();
    let expect_continue = !body_done
        && head
            .header(b"expect")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
    let st = StreamState {
        body_done,
        expect_continue,
        is_head: head.is_head(),
        started_at: shared.stats.request_started(),
        ..StreamState::default()
    };
    let stream = H2Stream::new(id, conn.clone(), st);
    hub.active.fetch_add(1, Relaxed);
    lock(&hub.streams).insert(id, Arc::downgrade(&stream));
    shared.push_event(Event::Request(
        stream.clone() as Arc<dyn HttpExchange>,
        head,
    ));
    let hub = hub.clone();
    shared.exec.spawn(async move {
        let recv = if body_done { None } else { Some(body) };
        run_stream(&stream, recv, respond).await;
        let shared = &stream.conn.shared;
        shared.in_flight.fetch_sub(1, Relaxed);
        lock(&hub.streams).remove(&stream.id);
        hub.active.fetch_sub(1, Relaxed);
        hub.ended.notify_one();
        shared.push_event(Event::Closed(stream.id));
    });
}

/// How a pass over the stream's state ended.
enum Pass {
    /// The stream is over (response sent, or reset).
    Done,
    /// Waiting for the peer's window (capacity) or the app.
    Wait { want_capacity: bool },
}

/// Hands the app's response parts to `h2` as far as the peer's window
/// allows, and gives back the window of body bytes the app consumed.
fn pass(
    s: &H2Stream,
    respond: &mut SendResponse<Bytes>,
    send: &mut Option<SendStream<Bytes>>,
    recv: Option<&mut RecvStream>,
) -> Pass {
    let mut st = s.lock();
    st.scheduled = false;
    if st.to_release > 0 {
        let n = std::mem::take(&mut st.to_release);
        if let Some(r) = recv {
            let _ = r.flow_control().release_capacity(n);
        }
    }
    if st.closed {
        // Gone before the app heard of it: a waiting call hears now.
        let waiting = st.recv_waiting || st.send_waiting;
        drop(st);
        if waiting {
            s.push_wake();
        }
        return Pass::Done;
    }
    let before = st.out_bytes;
    let mut want_capacity = false;
    let mut done = false;
    let mut failed = false;
    while let Some(front) = st.out.pop_front() {
        match front {
            Out::Info(resp) => {
                let _ = respond.send_informational(resp);
            }
            Out::Head(resp) => {
                let end = matches!(st.out.front(), Some(Out::End));
                match respond.send_response(resp, end) {
                    Ok(ss) => *send = Some(ss),
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
                if end {
                    st.out.pop_front();
                    done = true;
                    break;
                }
            }
            Out::Data(mut data) => {
                let Some(ss) = send.as_mut() else {
                    failed = true;
                    break;
                };
                let end_next = matches!(st.out.front(), Some(Out::End));
                ss.reserve_capacity(data.len());
                let cap = ss.capacity();
                if cap == 0 {
                    st.out.push_front(Out::Data(data));
                    want_capacity = true;
                    break;
                }
                let chunk = if cap >= data.len() {
                    std::mem::take(&mut data)
                } else {
                    data.split_to(cap)
                };
                st.out_bytes -= chunk.len();
                let last = data.is_empty() && end_next;
                if ss.send_data(chunk, last).is_err() {
                    failed = true;
                    break;
                }
                if last {
                    st.out.pop_front();
                    done = true;
                    break;
                }
                if !data.is_empty() {
                    st.out.push_front(Out::Data(data));
                    want_capacity = true;
                    break;
                }
            }
            Out::File {
                file,
                path,
                mut offset,
                mut remaining,
            } => {
                let Some(ss) = send.as_mut() else {
                    failed = true;
                    break;
                };
                ss.reserve_capacity(remaining.min(FILE_CHUNK as u64 * 4) as usize);
                let cap = ss.capacity().min(FILE_CHUNK);
                if cap == 0 {
                    st.out.push_front(Out::File {
                        file,
                        path,
                        offset,
                        remaining,
                    });
                    want_capacity = true;
                    break;
                }
                let take = (remaining as usize).min(cap);
                let mut chunk = vec![0u8; take];
                let n = match file.read_at(&mut chunk, offset) {
                    Ok(n) if n > 0 => n,
                    // Missing bytes: never end the stream as if complete.
                    _ => {
                        ss.send_reset(h2::Reason::INTERNAL_ERROR);
                        failed = true;
                        break;
                    }
                };
                chunk.truncate(n);
                offset += n as u64;
                remaining -= n as u64;
                let last = remaining == 0 && matches!(st.out.front(), Some(Out::End));
                if ss.send_data(Bytes::from(chunk), last).is_err() {
                    failed = true;
                    break;
                }
                if last {
                    st.out.pop_front();
                    done = true;
                    break;
                }
                if remaining > 0 {
                    st.out.push_front(Out::File {
                        file,
                        path,
                        offset,
                        remaining,
                    });
                    // Let the connection write before reading more.
                    want_capacity = true;
                    break;
                }
            }
            Out::Trailers(map) => {
                let r = match send.as_mut() {
                    Some(ss) => ss.send_trailers(map),
                    None => {
                        failed = true;
                        break;
                    }
                };
                failed = r.is_err();
                done = true;
                break;
            }
            Out::End => {
                if let Some(ss) = send.as_mut() {
                    let _ = ss.send_data(Bytes::new(), true);
                }
                done = true;
                break;
            }
            Out::Reset(reason) => {
                match send.as_mut() {
                    Some(ss) => ss.send_reset(reason),
                    None => respond.send_reset(reason),
                }
                done = true;
                break;
            }
        }
    }
    if failed {
        st.closed = true;
    }
    let low_water = s.conn.shared.cfg.write_high_water / 2;
    let wake =
        (st.send_waiting && (st.closed || st.out_bytes <= low_water) && st.out_bytes < before)
            || ((st.recv_waiting || st.send_waiting) && st.closed);
    drop(st);
    if wake {
        s.push_wake();
    }
    if done || failed {
        Pass::Done
    } else {
        Pass::Wait { want_capacity }
    }
}

/// What woke a stream's task.
enum Woken {
    Look,
    Data(Option<Result<Bytes, h2::Error>>),
    Capacity(Option<Result<usize, h2::Error>>),
    Reset,
    Timeout,
}

/// Serves one stream until its response is sent or it is reset.
async fn run_stream(
    s: &Arc<H2Stream>,
    mut recv: Option<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let shared = s.conn.shared.clone();
    let cfg = &shared.cfg;
    let mut send: Option<SendStream<Bytes>> = None;
    let mut timer: Pin<Box<Sleep>> = Box::pin(tokio::time::sleep(Duration::from_secs(3600)));
    let mut stalled_since: Option<Instant> = None;
    loop {
        let want_capacity = match pass(s, &mut respond, &mut send, recv.as_mut()) {
            Pass::Done => break,
            Pass::Wait { want_capacity } => want_capacity,
        };
        let (read_more, waiting_body) = {
            let st = s.lock();
            (
                recv.is_some() && st.body_buffered < cfg.body_buffer,
                st.recv_waiting && !st.body_done,
            )
        };
        // Send timeout while the peer's window stays shut; body timeout
        // while the app waits for bytes that do not come.
        let now = Instant::now();
        let deadline = if want_capacity {
            Some(*stalled_since.get_or_insert(now) + cfg.send_timeout)
        } else {
            stalled_since = None;
            waiting_body.then(|| now + cfg.body_timeout)
        };
        if let Some(d) = deadline {
            timer.as_mut().reset(d);
        }
        let woken = {
            let mut notified = pin!(s.wake.notified());
            poll_fn(|cx| {
                if notified.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woken::Look);
                }
                if want_capacity {
                    if let Some(ss) = send.as_mut() {
                        if let Poll::Ready(c) = ss.poll_capacity(cx) {
                            return Poll::Ready(Woken::Capacity(c));
                        }
                    }
                }
                if read_more {
                    if let Some(r) = recv.as_mut() {
                        if let Poll::Ready(d) = r.poll_data(cx) {
                            return Poll::Ready(Woken::Data(d));
                        }
                    }
                }
                let reset = match send.as_mut() {
                    Some(ss) => ss.poll_reset(cx),
                    None => respond.poll_reset(cx),
                };
                if reset.is_ready() {
                    return Poll::Ready(Woken::Reset);
                }
                if deadline.is_some() && timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woken::Timeout);
                }
                Poll::Pending
            })
            .await
        };
        match woken {
            Woken::Look => {}
            Woken::Capacity(Some(Ok(_))) => stalled_since = None,
            Woken::Capacity(_) | Woken::Reset => {
                close_stream(s);
                break;
            }
            Woken::Data(Some(Ok(data))) => {
                let mut st = s.lock();
                st.body_received += data.len() as u64;
                let over = cfg.max_body.is_some_and(|m| st.body_received > m);
                if over {
                    drop(st);
                    // Over --limit-request-body: 413 if nothing was sent.
                    refuse_body(s, &mut respond, &mut send);
                    break;
                }
                let n = data.len();
                if n > 0 {
                    st.body.push_back(data);
                    st.body_buffered += n;
                } else if recv.as_ref().is_some_and(|r| r.is_end_stream()) {
                    st.body_done = true;
                }
                if recv.as_ref().is_some_and(|r| r.is_end_stream()) {
                    st.body_done = true;
                }
                let wake = st.recv_waiting;
                drop(st);
                if wake {
                    s.push_wake();
                }
                if s.lock().body_done {
                    recv = None;
                }
            }
            Woken::Data(None) => {
                let mut st = s.lock();
                st.body_done = true;
                let wake = st.recv_waiting;
                drop(st);
                recv = None;
                if wake {
                    s.push_wake();
                }
            }
            Woken::Data(Some(Err(_))) => {
                close_stream(s);
                break;
            }
            Woken::Timeout => {
                // The stream goes; the connection and its other streams stay.
                let reason = h2::Reason::CANCEL;
                match send.as_mut() {
                    Some(ss) => ss.send_reset(reason),
                    None => respond.send_reset(reason),
                }
                close_stream(s);
                break;
            }
        }
    }
    // The rest of an unread body is not wanted: h2 resets the stream
    // (NO_ERROR after a complete response) as `recv` drops.
    drop(recv);
}

/// The client reset the stream or the connection went: waiting app calls
/// hear of it.
fn close_stream(s: &H2Stream) {
    let mut st = s.lock();
    st.closed = true;
    let waiting = st.recv_waiting || st.send_waiting;
    drop(st);
    if waiting {
        s.push_wake();
    }
}

/// The body went over `--limit-request-body`: 413 if no response head left,
/// else a reset; the app hears a disconnect.
fn refuse_body(
    s: &H2Stream,
    respond: &mut SendResponse<Bytes>,
    send: &mut Option<SendStream<Bytes>>,
) {
    let shared = &s.conn.shared;
    match send.as_mut() {
        Some(ss) => ss.send_reset(h2::Reason::CANCEL),
        None => {
            shared.stats.response_ended(413, None);
            if let Ok(mut ss) = respond.send_response(plain_response(413), false) {
                let _ = ss.send_data(Bytes::from_static(b"Payload Too Large"), true);
            }
        }
    }
    close_stream(s);
}
