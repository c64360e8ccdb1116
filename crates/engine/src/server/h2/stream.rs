//! One HTTP/2 stream as the bridge sees it: an [`HttpExchange`] of its
//! own, with its own [`ConnId`] (the bridge keys its waiting calls by it).
//!
//! The loop thread never calls the `h2` crate: `send()` queues the
//! response's parts ([`Out`]) and schedules the stream's task
//! (`driver::run_stream`), which hands them to `h2` inside the engine's
//! poll; `receive()` takes body chunks the task queued and leaves the
//! bytes to release to the task, so the client's window re-opens only as
//! the app reads.

use std::collections::VecDeque;
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::time::Instant;
use tokio::sync::Notify;

use super::super::exchange::{
    AppEnd, Completion, ConnId, Event, Forwarded, HttpExchange, Received, ResponsePart, SendError,
    Sent, Wakeup,
};
use super::super::h1::Conn;
use super::super::shared::Connection;
use super::super::stats::Stats;
use crate::net::tls::TlsInfo;
use crate::proto::h1::{RequestHead, ResponseError};
use crate::runtime::lock;

/// A part of the response, waiting for the stream's task.
pub(super) enum Out {
    /// A 1xx (early hints).
    Info(http::Response<()>),
    Head(http::Response<()>),
    Data(Bytes),
    File {
        file: File,
        path: PathBuf,
        offset: u64,
        remaining: u64,
    },
    Trailers(HeaderMap),
    /// The end of a response without trailers.
    End,
    /// Abort the stream (the app failed mid-response).
    Reset(h2::Reason),
}

#[derive(Default)]
pub(super) struct StreamState {
    // ---- request body
    pub body: VecDeque<Bytes>,
    pub body_buffered: usize,
    pub body_received: u64,
    /// END_STREAM arrived: `body` is all there is.
    pub body_done: bool,
    /// The app got `more_body: false`.
    pub delivered: bool,
    /// Consumed bytes whose window the task has to give back.
    pub to_release: usize,
    pub recv_waiting: bool,
    pub told_disconnect: bool,
    /// `expect: 100-continue`: a `100` goes out when the app first waits
    /// for the body.
    pub expect_continue: bool,
    // ---- response
    pub status: u16,
    /// `http.response.start` arrived (its head waits in `head`).
    pub started: bool,
    pub head: Option<http::Response<()>>,
    pub trailers_expected: bool,
    pub trailers: Option<HeaderMap>,
    /// The final body part was queued.
    pub body_sent: bool,
    /// The response's last message was accepted.
    pub complete: bool,
    pub body_bytes: u64,
    pub out: VecDeque<Out>,
    /// Body bytes in `out` not yet handed to `h2`.
    pub out_bytes: usize,
    pub send_waiting: bool,
    /// Reset by the client, or the connection is gone.
    pub closed: bool,
    pub app_done: bool,
    /// HEAD, or a 204/304 answer: body bytes from the app are dropped.
    pub is_head: bool,
    pub started_at: Option<Instant>,
    /// Queued in `Shared::to_wake` and not yet seen by the task.
    pub scheduled: bool,
}

pub struct H2Stream {
    pub id: ConnId,
    pub conn: Arc<Conn>,
    pub(super) state: Mutex<StreamState>,
    pub(super) wake: Notify,
    me: Weak<H2Stream>,
}

fn bad_header() -> SendError {
    SendError::Start(ResponseError::InvalidHeader)
}

/// Headers that say how an HTTP/1.1 connection behaves: illegal in
/// HTTP/2 (RFC 9113 §8.2.2), dropped from the app's response.
fn connection_specific(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"connection")
        || name.eq_ignore_ascii_case(b"transfer-encoding")
        || name.eq_ignore_ascii_case(b"keep-alive")
        || name.eq_ignore_ascii_case(b"upgrade")
        || name.eq_ignore_ascii_case(b"proxy-connection")
}

/// The app's headers as an `h2` header map.
pub(super) fn header_map<'h>(
    headers: &mut dyn Iterator<Item = (&'h [u8], &'h [u8])>,
    err: fn() -> SendError,
) -> Result<HeaderMap, SendError> {
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        if connection_specific(n) {
            continue;
        }
        let name = HeaderName::from_bytes(n).map_err(|_| err())?;
        let value = HeaderValue::from_bytes(v).map_err(|_| err())?;
        map.append(name, value);
    }
    Ok(map)
}

impl H2Stream {
    pub(super) fn new(id: ConnId, conn: Arc<Conn>, st: StreamState) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            id,
            conn,
            state: Mutex::new(st),
            wake: Notify::new(),
            me: me.clone(),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, StreamState> {
        lock(&self.state)
    }

    /// From the loop thread: the task looks at the state in the next poll.
    pub(super) fn schedule(&self, st: &mut StreamState) {
        if st.scheduled {
            return;
        }
        if let Some(me) = self.me.upgrade() {
            st.scheduled = true;
            self.conn.shared.schedule(me);
        }
    }

    /// Tells the bridge what a waiting call gets may have changed.
    pub(super) fn push_wake(&self) {
        if let Some(me) = self.me.upgrade() {
            self.conn
                .shared
                .push_event(Event::Wake(me as Arc<dyn HttpExchange>));
        }
    }

    fn sendable(st: &StreamState) -> Result<(), SendError> {
        if st.complete || (st.app_done && !st.closed) {
            return Err(SendError::Unexpected("after response already completed"));
        }
        if st.closed {
            return Err(SendError::Disconnected);
        }
        Ok(())
    }

    /// The head, built from `http.response.start` and the defaults.
    fn response_head<'h>(
        &self,
        status: u16,
        headers: &mut dyn Iterator<Item = (&'h [u8], &'h [u8])>,
    ) -> Result<http::Response<()>, SendError> {
        let cfg = &self.conn.shared.cfg;
        if !(100..1000).contains(&status) || (100..200).contains(&status) {
            return Err(SendError::Start(ResponseError::InvalidStatus));
        }
        let mut map = header_map(headers, bad_header)?;
        let defaults = &cfg.defaults;
        if defaults.server_header
            && !map.contains_key(http::header::SERVER)
            && !defaults
                .extra
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(b"server"))
        {
            map.insert(http::header::SERVER, HeaderValue::from_static("ferrule"));
        }
        if defaults.date_header && !map.contains_key(http::header::DATE) {
            let date = self.conn.shared.date.get();
            if let Ok(v) = HeaderValue::from_bytes(&date) {
                map.insert(http::header::DATE, v);
            }
        }
        for (k, v) in &defaults.extra {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k), HeaderValue::from_bytes(v)) {
                if !map.contains_key(&k) {
                    map.append(k, v);
                }
            }
        }
        let mut resp = http::Response::new(());
        *resp.status_mut() = http::StatusCode::from_u16(status)
            .map_err(|_| SendError::Start(ResponseError::InvalidStatus))?;
        *resp.headers_mut() = map;
        Ok(resp)
    }

    /// Moves the head into the output (with the first body part).
    fn queue_head(st: &mut StreamState) {
        if let Some(h) = st.head.take() {
            st.out.push_back(Out::Head(h));
        }
    }

    /// The response's last message was queued.
    fn finish(&self, st: &mut StreamState) -> Sent {
        let shared = &self.conn.shared;
        st.complete = true;
        Stats::inc(&shared.stats.responses);
        shared.stats.response_ended(st.status, st.started_at.take());
        let waiting_receive = std::mem::take(&mut st.recv_waiting);
        self.schedule(st);
        Sent::Complete(Completion {
            status: st.status,
            body_bytes: st.body_bytes,
            waiting_receive,
        })
    }

    /// After a body part: go on, or wait for the client to take some.
    fn after_body(&self, st: &mut StreamState) -> Sent {
        self.schedule(st);
        if st.out_bytes > self.conn.shared.cfg.write_high_water {
            st.send_waiting = true;
            return Sent::Wait;
        }
        Sent::Done
    }

    pub(super) fn receive_now(
        &self,
        st: &mut StreamState,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Received {
        if st.complete || st.closed {
            return Received::Disconnect;
        }
        if !st.body.is_empty() {
            let n = st.body_buffered;
            if st.body.len() == 1 {
                let chunk = st.body.pop_front().unwrap_or_default();
                sink(&chunk);
            } else {
                let mut all = Vec::with_capacity(n);
                for c in st.body.drain(..) {
                    all.extend_from_slice(&c);
                }
                sink(&all);
            }
            st.body_buffered = 0;
            st.to_release += n;
            let more = !st.body_done;
            st.delivered = !more;
            self.schedule(st);
            return Received::Body { more };
        }
        if st.body_done && !st.delivered {
            st.delivered = true;
            sink(b"");
            return Received::Body { more: false };
        }
        if st.delivered && self.conn.shared.is_shutting_down() {
            st.told_disconnect = true;
            return Received::Disconnect;
        }
        Received::Wait
    }
}

impl HttpExchange for H2Stream {
    fn id(&self) -> ConnId {
        self.id
    }

    fn peer(&self) -> Option<SocketAddr> {
        HttpExchange::peer(&*self.conn)
    }

    fn local(&self) -> Option<SocketAddr> {
        self.conn.local
    }

    fn forwarded<'h>(&self, head: &'h RequestHead) -> Forwarded<'h> {
        self.conn.forwarded(head)
    }

    fn tls(&self) -> Option<Arc<TlsInfo>> {
        self.conn.stream.tls_info()
    }

    fn seq(&self) -> u64 {
        1
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }

    fn check_send(&self, _seq: u64) -> Result<(), SendError> {
        Self::sendable(&self.lock())
    }

    fn send(&self, _seq: u64, part: ResponsePart<'_, '_>) -> Result<Sent, SendError> {
        let mut guard = self.lock();
        let st = &mut *guard;
        Self::sendable(st)?;
        match part {
            ResponsePart::Start {
                status,
                headers,
                trailers,
            } => {
                if st.started {
                    return Err(SendError::Unexpected("after response already started"));
                }
                let head = self.response_head(status, headers)?;
                st.started = true;
                st.status = status;
                // 204 and 304 have no body (RFC 9110 §6.4.1): as for HEAD,
                // the app's body bytes are not sent.
                if status == 204 || status == 304 {
                    st.is_head = true;
                }
                st.trailers_expected = trailers;
                st.head = Some(head);
                Ok(Sent::Done)
            }
            ResponsePart::Body { data, more } => {
                if !st.started {
                    return Err(SendError::Unexpected("before 'http.response.start'"));
                }
                if st.trailers.is_some() || st.body_done_sending() {
                    return Err(SendError::Body(ResponseError::AlreadyComplete));
                }
                Self::queue_head(st);
                if !data.is_empty() && !st.is_head {
                    st.out.push_back(Out::Data(Bytes::copy_from_slice(data)));
                    st.out_bytes += data.len();
                    st.body_bytes += data.len() as u64;
                }
                if !more {
                    st.mark_body_sent();
                    if !st.trailers_expected {
                        st.out.push_back(Out::End);
                        return Ok(self.finish(st));
                    }
                }
                Ok(self.after_body(st))
            }
            ResponsePart::Trailers { headers, more } => {
                if !st.trailers_expected {
                    return Err(SendError::Trailers(ResponseError::UnexpectedTrailers));
                }
                let map = header_map(headers, || {
                    SendError::Trailers(ResponseError::InvalidHeader)
                })?;
                st.trailers.get_or_insert_with(HeaderMap::new).extend(map);
                if more {
                    return Ok(Sent::Done);
                }
                if !st.body_done_sending() {
                    return Err(SendError::Trailers(ResponseError::UnexpectedTrailers));
                }
                Self::queue_head(st);
                let map = st.trailers.take().unwrap_or_default();
                st.out.push_back(Out::Trailers(map));
                Ok(self.finish(st))
            }
            ResponsePart::PathSend { path } => {
                if !st.started {
                    return Err(SendError::Unexpected("before 'http.response.start'"));
                }
                let fail = |why: String| SendError::PathSend {
                    path: path.display().to_string(),
                    why,
                };
                let file = File::open(path).map_err(|e| fail(e.to_string()))?;
                let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
                if !meta.is_file() {
                    return Err(fail("not a regular file".into()));
                }
                let len = meta.len();
                Self::queue_head(st);
                if !st.is_head && len > 0 {
                    st.out.push_back(Out::File {
                        file,
                        path: path.to_path_buf(),
                        offset: 0,
                        remaining: len,
                    });
                    st.body_bytes += len;
                }
                st.mark_body_sent();
                if st.trailers_expected {
                    return Ok(self.after_body(st));
                }
                st.out.push_back(Out::End);
                Ok(self.finish(st))
            }
            ResponsePart::EarlyHint { links } => {
                // Only before the response's head leaves.
                if st.started {
                    return Ok(Sent::Done);
                }
                let mut resp = http::Response::new(());
                *resp.status_mut() = http::StatusCode::EARLY_HINTS;
                for l in links {
                    let v = HeaderValue::from_bytes(l)
                        .map_err(|_| SendError::EarlyHint(ResponseError::InvalidHeader))?;
                    resp.headers_mut().append(http::header::LINK, v);
                }
                st.out.push_back(Out::Info(resp));
                self.schedule(st);
                Ok(Sent::Done)
            }
        }
    }

    fn receive(&self, _seq: u64, sink: &mut dyn FnMut(&[u8])) -> Received {
        let mut st = self.lock();
        let got = self.receive_now(&mut st, sink);
        if got == Received::Wait {
            if std::mem::take(&mut st.expect_continue) && !st.started {
                let mut resp = http::Response::new(());
                *resp.status_mut() = http::StatusCode::CONTINUE;
                st.out.push_front(Out::Info(resp));
            }
            st.recv_waiting = true;
            // The task applies the body timeout while the app waits.
            self.schedule(&mut st);
        }
        got
    }

    fn app_done(&self, _seq: u64, failed: bool) -> AppEnd {
        let shared = &self.conn.shared;
        let mut guard = self.lock();
        let st = &mut *guard;
        let already = st.app_done;
        st.app_done = true;
        st.recv_waiting = false;
        if st.complete || already {
            self.schedule(st);
            return AppEnd::Complete;
        }
        if failed {
            Stats::inc(&shared.stats.app_errors);
        }
        let head_sent = st.started && st.head.is_none();
        let sent = Completion {
            status: if head_sent { st.status } else { 0 },
            body_bytes: st.body_bytes,
            waiting_receive: false,
        };
        if st.closed {
            self.schedule(st);
            return AppEnd::ClientGone(sent);
        }
        if head_sent {
            // Part of the response left: a reset, so the client never
            // sees a complete-looking response.
            st.out.push_back(Out::Reset(h2::Reason::INTERNAL_ERROR));
            st.complete = true;
            let told = st.told_disconnect && !failed;
            self.schedule(st);
            return if told {
                AppEnd::Abandoned(sent)
            } else {
                AppEnd::Aborted(sent)
            };
        }
        // Nothing of the response left: answer 500 instead.
        st.head = None;
        let mut resp = http::Response::new(());
        *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        st.out.retain(|o| matches!(o, Out::Info(_)));
        st.out_bytes = 0;
        st.out.push_back(Out::Head(resp));
        st.out
            .push_back(Out::Data(Bytes::from_static(b"Internal Server Error")));
        st.out.push_back(Out::End);
        st.status = 500;
        st.body_bytes = 21;
        st.started = true;
        let _ = self.finish(st);
        AppEnd::Answered(Completion {
            status: 500,
            body_bytes: 21,
            waiting_receive: false,
        })
    }

    fn wakeup(&self, sink: &mut dyn FnMut(&[u8])) -> Wakeup {
        let mut st = self.lock();
        let mut up = Wakeup::default();
        if st.recv_waiting {
            let got = self.receive_now(&mut st, sink);
            if got != Received::Wait {
                st.recv_waiting = false;
                up.receive = Some(got);
            }
        }
        if st.send_waiting {
            if st.closed {
                up.send = Some(Err(()));
            } else if st.out_bytes <= self.conn.shared.cfg.write_high_water / 2 {
                up.send = Some(Ok(()));
            }
            if up.send.is_some() {
                st.send_waiting = false;
            }
        }
        up
    }
}

impl StreamState {
    /// The final body part was queued (trailers may follow).
    fn body_done_sending(&self) -> bool {
        self.trailers_expected && self.body_sent
    }

    fn mark_body_sent(&mut self) {
        self.body_sent = true;
    }
}

impl Connection for H2Stream {
    fn wake_driver(&self) {
        self.wake.notify_one();
    }

    fn flush_deferred(&self) {}

    fn on_shutdown(&self) {
        if self.lock().recv_waiting {
            self.push_wake();
        }
    }
}
