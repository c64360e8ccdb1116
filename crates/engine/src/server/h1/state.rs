//! One HTTP/1.1 connection's state, shared by its driver future and the
//! bridge (on the same thread, under one mutex). Each side of the current
//! request is an explicit state: [`Reading`] the request body, [`Writing`]
//! the response, [`Output`] the bytes not yet written.

use std::sync::atomic::Ordering::Relaxed;

use bytes::{Buf, BytesMut};

use super::super::exchange::Received;
use super::super::shared::Shared;
use crate::proto::h1::{ChunkedDecoder, ResponseEncoder};

/// The request body, as the driver decodes it and the app reads it.
pub enum Reading {
    /// More body is to come from the socket.
    Body(BodyReader),
    /// All of it is decoded (into `body_buf`); the app has not had the
    /// last chunk yet.
    Complete,
    /// The app has had the last chunk (or there is no request yet).
    Delivered,
    /// The body broke its framing or the size limit: the app sees a
    /// disconnect, never a complete body.
    Failed(BodyFailure),
}

pub enum BodyReader {
    Length(u64),
    Chunked(ChunkedDecoder),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    Malformed,
    TooLarge,
}

impl BodyFailure {
    /// Why, for the debug log.
    pub fn why(self) -> &'static str {
        match self {
            BodyFailure::Malformed => "malformed chunked body",
            BodyFailure::TooLarge => "body over --limit-request-body",
        }
    }

    /// The status ferrule answers with, if nothing of the response went out.
    pub fn status(self) -> u16 {
        match self {
            BodyFailure::Malformed => 400,
            BodyFailure::TooLarge => 413,
        }
    }
}

/// The response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writing {
    /// The app may still send.
    Open,
    /// Complete (or given up because the client went away).
    Done,
    /// The app failed after part of it was written: the connection closes
    /// without a clean end, so the client never sees a complete-looking
    /// response.
    Aborted,
}

/// Response bytes not written yet, and who writes them.
#[derive(Default)]
pub struct Output {
    /// Bytes to write first (with a file: its head, which leaves with the
    /// file's first bytes in one segment).
    pub buf: Vec<u8>,
    /// A file to send after `buf`, by `sendfile(2)` (`http.response.pathsend`).
    pub file: Option<FileSend>,
    /// A write hit EAGAIN: the driver owns flushing until it drains.
    pub blocked: bool,
    /// The output waits for the end of this dispatch batch or loop
    /// iteration (the connection is on the server's deferred list).
    pub deferred: bool,
}

/// The part of a file still to send, and what follows it on the wire.
pub struct FileSend {
    pub file: std::fs::File,
    /// For error messages.
    pub path: std::path::PathBuf,
    pub offset: u64,
    pub remaining: u64,
    /// Bytes after the file (the chunked framing's end, trailers).
    pub suffix: Vec<u8>,
}

impl Output {
    /// Nothing is left to write.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.file.is_none()
    }

    /// Bytes left to write, the file's included (for the high-water mark).
    pub fn pending(&self) -> u64 {
        let file = self
            .file
            .as_ref()
            .map_or(0, |f| f.remaining + f.suffix.len() as u64);
        self.buf.len() as u64 + file
    }

    /// Where bytes encoded now go: after a file still being sent, if any.
    pub fn tail(&mut self) -> &mut Vec<u8> {
        match &mut self.file {
            Some(f) => &mut f.suffix,
            None => &mut self.buf,
        }
    }

    /// The socket is gone: drop what was to be written.
    pub fn discard(&mut self) {
        self.buf.clear();
        self.file = None;
        self.blocked = false;
    }
}

pub struct ConnState {
    /// The current request's number on this connection; calls from an
    /// earlier request's callables are refused with it.
    pub seq: u64,
    /// The current request counts in the server's `in_flight`.
    pub in_flight: bool,
    pub reading: Reading,
    pub body_buf: Vec<u8>,
    /// Bytes of request body decoded so far (for the body size limit).
    pub body_received: u64,
    /// `Expect: 100-continue` not answered yet (answered when the app first
    /// waits for the body).
    pub expect_continue: bool,
    pub writing: Writing,
    pub enc: Option<ResponseEncoder>,
    pub out: Output,
    /// The connection may serve another request after this one.
    pub keep_alive: bool,
    /// The response ended the usual way but its bytes wait on the deferred
    /// list: whether it ends quietly is decided when they are written.
    pub quiet_pending: bool,
    /// The response ended on the loop thread without waking the driver;
    /// the idle keep-alive time counts from here.
    pub idle_since: Option<tokio::time::Instant>,
    /// The driver holds bytes beyond the current request (pipelined): it
    /// must be woken when the response ends, as no new readiness will come.
    pub has_next: bool,
    /// The app waits in `receive()` / `send()` (the bridge holds the
    /// futures; the engine only knows that someone waits).
    pub recv_waiting: bool,
    pub send_waiting: bool,
    /// The socket is gone (error, reset, or closed by us): sends fail.
    pub closed: bool,
    /// The app was told `http.disconnect` while its response was open (at
    /// shutdown, or after a failed body): returning without finishing the
    /// response is then what it was asked to do, not an app error.
    pub told_disconnect: bool,
    /// When the current request started, if durations are measured.
    pub started: Option<std::time::Instant>,
}

impl Default for ConnState {
    fn default() -> Self {
        Self {
            seq: 0,
            in_flight: false,
            reading: Reading::Delivered,
            body_buf: Vec::new(),
            body_received: 0,
            expect_continue: false,
            writing: Writing::Done,
            enc: None,
            out: Output::default(),
            keep_alive: true,
            quiet_pending: false,
            idle_since: None,
            has_next: false,
            recv_waiting: false,
            send_waiting: false,
            closed: false,
            told_disconnect: false,
            started: None,
        }
    }
}

impl ConnState {
    pub fn body_done(&self) -> bool {
        matches!(self.reading, Reading::Complete | Reading::Delivered)
    }

    pub fn body_failure(&self) -> Option<BodyFailure> {
        match self.reading {
            Reading::Failed(f) => Some(f),
            _ => None,
        }
    }

    pub fn response_done(&self) -> bool {
        self.writing != Writing::Open
    }

    pub fn head_written(&self) -> bool {
        self.enc.as_ref().is_some_and(|e| e.head_written())
    }

    /// Body bytes still on the wire: `Some(n)` for a known length, `None`
    /// for chunked.
    pub fn body_left(&self) -> Option<u64> {
        match &self.reading {
            Reading::Body(BodyReader::Length(n)) => Some(*n),
            Reading::Body(BodyReader::Chunked(_)) => None,
            _ => Some(0),
        }
    }

    /// The current request stops counting as in flight (once, whichever of
    /// the loop thread or the driver gets there first).
    pub fn end_request(&mut self, shared: &Shared) {
        if self.in_flight {
            self.in_flight = false;
            shared.in_flight.fetch_sub(1, Relaxed);
        }
    }

    /// The response ended without waking the driver: the request ends
    /// here, and the idle keep-alive time counts from now.
    pub fn end_quietly(&mut self, shared: &Shared) {
        self.end_request(shared);
        self.idle_since = Some(tokio::time::Instant::now());
    }

    /// Moves decodable body bytes from `rbuf` into `body_buf`, enforcing
    /// the body size limit as bytes arrive.
    pub fn pump_body(&mut self, rbuf: &mut BytesMut, max_body: Option<u64>) {
        let before = self.body_buf.len();
        self.decode_body(rbuf);
        self.body_received += (self.body_buf.len() - before) as u64;
        if let Some(max) = max_body {
            if self.body_received > max {
                self.reading = Reading::Failed(BodyFailure::TooLarge);
            }
        }
    }

    fn decode_body(&mut self, rbuf: &mut BytesMut) {
        let Reading::Body(reader) = &mut self.reading else {
            return;
        };
        match reader {
            BodyReader::Length(rem) => {
                let n = (*rem).min(rbuf.len() as u64) as usize;
                if n > 0 {
                    self.body_buf.extend_from_slice(&rbuf[..n]);
                    rbuf.advance(n);
                    *rem -= n as u64;
                }
                if *rem == 0 {
                    self.reading = Reading::Complete;
                }
            }
            BodyReader::Chunked(dec) => {
                if rbuf.is_empty() {
                    return;
                }
                match dec.decode(rbuf, &mut self.body_buf) {
                    Ok(d) => {
                        rbuf.advance(d.consumed);
                        if d.done {
                            self.reading = Reading::Complete;
                        }
                    }
                    Err(_) => self.reading = Reading::Failed(BodyFailure::Malformed),
                }
            }
        }
    }

    /// The next body chunk for the app, if one can be given now: the bytes
    /// go to `sink`, and the result is ASGI's `more_body`.
    fn take_body(&mut self, sink: &mut dyn FnMut(&[u8])) -> Option<bool> {
        match self.reading {
            Reading::Delivered | Reading::Failed(_) => return None,
            Reading::Body(_) if self.body_buf.is_empty() => return None,
            _ => {}
        }
        sink(&self.body_buf);
        self.body_buf.clear();
        let more = !self.body_done();
        if !more {
            self.reading = Reading::Delivered;
        }
        Some(more)
    }

    /// What a `receive()` of request `seq` gets now (a body chunk goes to
    /// `sink`); [`Received::Wait`] when nothing can be given yet.
    pub fn receive_now(
        &mut self,
        seq: u64,
        shutting_down: bool,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Received {
        // At shutdown an app that only listens for disconnect (server-sent
        // events, long polls) is told the client is gone, so it ends.
        let finished = matches!(self.reading, Reading::Delivered) && shutting_down;
        if self.seq != seq || self.response_done() || self.closed {
            return Received::Disconnect;
        }
        if finished {
            self.told_disconnect = true;
            return Received::Disconnect;
        }
        if let Some(more) = self.take_body(sink) {
            return Received::Body { more };
        }
        if self.body_failure().is_some() {
            self.told_disconnect = true;
            return Received::Disconnect;
        }
        Received::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading_length(n: u64) -> ConnState {
        ConnState {
            seq: 1,
            writing: Writing::Open,
            reading: Reading::Body(BodyReader::Length(n)),
            ..ConnState::default()
        }
    }

    fn take(st: &mut ConnState) -> (Received, Vec<u8>) {
        let mut got = Vec::new();
        let r = st.receive_now(1, false, &mut |b| got.extend_from_slice(b));
        (r, got)
    }

    #[test]
    fn a_length_body_moves_from_body_to_complete_to_delivered() {
        let mut st = reading_length(5);
        let mut rbuf = BytesMut::from(&b"hel"[..]);
        st.pump_body(&mut rbuf, None);
        assert!(matches!(st.reading, Reading::Body(_)));
        assert_eq!(
            take(&mut st),
            (Received::Body { more: true }, b"hel".to_vec())
        );
        assert_eq!(take(&mut st), (Received::Wait, vec![]), "nothing new yet");
        let mut rbuf = BytesMut::from(&b"loGET"[..]);
        st.pump_body(&mut rbuf, None);
        assert!(matches!(st.reading, Reading::Complete));
        assert_eq!(&rbuf[..], b"GET", "the next request's bytes stay");
        assert_eq!(
            take(&mut st),
            (Received::Body { more: false }, b"lo".to_vec())
        );
        assert!(matches!(st.reading, Reading::Delivered));
        assert_eq!(take(&mut st).0, Received::Wait, "delivered: nothing more");
    }

    #[test]
    fn a_body_over_the_limit_fails_and_reads_as_a_disconnect() {
        let mut st = reading_length(10);
        let mut rbuf = BytesMut::from(&b"0123456789"[..]);
        st.pump_body(&mut rbuf, Some(4));
        assert_eq!(st.body_failure(), Some(BodyFailure::TooLarge));
        assert_eq!(take(&mut st).0, Received::Disconnect);
    }

    #[test]
    fn broken_chunked_framing_fails_as_malformed() {
        let mut st = ConnState {
            seq: 1,
            writing: Writing::Open,
            reading: Reading::Body(BodyReader::Chunked(ChunkedDecoder::new())),
            ..ConnState::default()
        };
        let mut rbuf = BytesMut::from(&b"zz\r\n"[..]);
        st.pump_body(&mut rbuf, None);
        assert_eq!(st.body_failure(), Some(BodyFailure::Malformed));
        assert_eq!(BodyFailure::Malformed.status(), 400);
    }

    #[test]
    fn receive_after_the_response_or_from_an_old_request_is_a_disconnect() {
        let mut st = reading_length(3);
        assert_eq!(
            st.receive_now(0, false, &mut |_| {}),
            Received::Disconnect,
            "stale seq"
        );
        st.writing = Writing::Done;
        assert_eq!(take(&mut st).0, Received::Disconnect, "response complete");
    }

    #[test]
    fn at_shutdown_a_fully_read_request_hears_disconnect() {
        let mut st = ConnState {
            seq: 1,
            writing: Writing::Open,
            ..ConnState::default()
        };
        assert_eq!(st.receive_now(1, false, &mut |_| {}), Received::Wait);
        assert_eq!(st.receive_now(1, true, &mut |_| {}), Received::Disconnect);
    }
}
