//! The bridge's side of an HTTP/1.1 request: [`HttpExchange`] for [`Conn`].
//!
//! This is also the one place where a response ends: [`Conn::end_response`]
//! decides keep-alive, whether the driver must be woken, and when the
//! request stops counting as in flight.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use super::super::exchange::{
    AppEnd, Completion, ConnId, Forwarded, HttpExchange, Received, ResponsePart, SendError, Sent,
    Wakeup,
};
use super::super::stats::Stats;
use super::conn::{Conn, WriteError};
use super::state::{ConnState, FileSend, Writing};
use crate::net::proxy;
use crate::net::tls::TlsInfo;
use crate::proto::h1::{write_simple_response, RequestHead, CONTINUE_100};

/// Files up to this size are read into the head's write instead of sent by
/// `sendfile` (measured: docs/decisions.md, "Files by sendfile").
const SMALL_FILE: u64 = 16 * 1024;

/// Opens `path` for `http.response.pathsend`: a regular file, and its size.
/// Non-blocking, so a FIFO put where a file was expected cannot hang the
/// loop in `open`.
fn open_regular(path: &Path) -> Result<(File, u64), SendError> {
    let fail = |why: String| file_error(path, why);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| file_error(path, e))?;
    let meta = file.metadata().map_err(|e| file_error(path, e))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".to_string()));
    }
    Ok((file, meta.len()))
}

fn file_error(path: &Path, why: impl ToString) -> SendError {
    SendError::PathSend {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

/// Reads all `len` bytes of `file` (a small one).
fn read_all(file: &File, len: u64) -> std::io::Result<Vec<u8>> {
    let mut data = vec![0; len as usize];
    let mut done = 0;
    while done < data.len() {
        match file.read_at(&mut data[done..], done as u64) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(data)
}

impl Conn {
    fn sendable(st: &ConnState, seq: u64) -> Result<(), SendError> {
        if st.seq != seq || (st.response_done() && !st.closed) {
            return Err(SendError::Unexpected("after response already completed"));
        }
        if st.closed {
            return Err(SendError::Disconnected);
        }
        Ok(())
    }

    /// From `send()`: writes now; if that fails the response is over, and
    /// the app hears why (the bridge releases a waiting `receive()`).
    fn write_or_fail(&self, st: &mut ConnState) -> Result<(), SendError> {
        let Err(e) = self.write_now(st) else {
            return Ok(());
        };
        st.recv_waiting = false;
        self.schedule();
        Err(match e {
            WriteError::Socket(_) => SendError::Disconnected,
            WriteError::File { path, err } => SendError::PathSend {
                path,
                why: err.to_string(),
            },
        })
    }

    /// Writes or defers what a body or trailers message encoded, and ends
    /// the response when it is complete.
    fn flush_and_finish(&self, st: &mut ConnState, complete: bool) -> Result<Sent, SendError> {
        let shared = &self.shared;
        // Wire rule 2: the last message of a response is written at once; a
        // non-final one waits for the end of this loop iteration, so chunks
        // sent without an await in between leave in one write. "At once"
        // inside a dispatch batch means at the end of that batch: the
        // batch's responses then leave in one burst of writes after the
        // batch's Python work, which keeps each side's code and data in
        // the caches (docs/decisions.md, "Writes at the end of a batch").
        let high_water = shared.cfg.write_high_water as u64;
        // An app thread has no batch or loop iteration to wait for: it
        // writes each message at once.
        let at_once = st.out.pending() >= high_water
            || (complete && !shared.in_dispatch())
            || shared.cfg.app_threads;
        if at_once {
            self.write_or_fail(st)?;
        } else if !st.out.deferred && !st.out.blocked {
            st.out.deferred = true;
            self.defer();
        }
        if complete {
            let (done, wake) = self.end_response(st);
            if wake {
                self.schedule();
            }
            return Ok(Sent::Complete(done));
        }
        if st.out.blocked && st.out.pending() > high_water {
            // Backpressure: the app waits until the driver has drained the
            // output below the low-water mark.
            st.send_waiting = true;
            return Ok(Sent::Wait);
        }
        Ok(Sent::Done)
    }

    /// The end of a response, once its last byte is encoded. Returns what
    /// the access log needs, and whether the driver must be woken.
    fn end_response(&self, st: &mut ConnState) -> (Completion, bool) {
        let shared = &self.shared;
        st.writing = Writing::Done;
        let waiting_receive = std::mem::take(&mut st.recv_waiting);
        Stats::inc(&shared.stats.responses);
        let enc_keep = st.enc.as_ref().is_none_or(|e| e.keep_alive());
        // A client still waiting for `100 Continue` may send its body or
        // not: framing is in doubt, so the connection ends with this
        // response.
        let unanswered_continue = st.expect_continue && !st.body_done();
        st.keep_alive = st.keep_alive && enc_keep && !unanswered_continue;
        let done = st
            .enc
            .as_ref()
            .map_or((0, 0), |e| (e.status(), e.body_bytes()));
        let done = Completion {
            status: done.0,
            body_bytes: done.1,
            waiting_receive,
        };
        shared.stats.response_ended(done.status, st.started.take());
        // The usual end (keep-alive, body read, response written, nothing
        // pipelined) needs nothing from the driver until the client sends
        // again: its pending read sees the next request. Not waking it
        // saves a poll per request; the request stops counting as in flight
        // here instead, and the keep-alive time counts from now.
        let settled = st.keep_alive
            && st.in_flight
            && st.body_done()
            && !st.has_next
            && !st.out.blocked
            && !shared.is_shutting_down();
        let quiet = settled && st.out.is_empty() && !st.out.deferred;
        if quiet {
            st.end_quietly(shared);
        }
        // Bytes left for the end of the dispatch batch: the request ends
        // quietly only once they are all written (`flush_deferred`).
        st.quiet_pending = settled && st.out.deferred && !st.out.is_empty();
        (done, !quiet && !st.quiet_pending)
    }
}

impl HttpExchange for Conn {
    fn id(&self) -> ConnId {
        self.id
    }

    fn peer(&self) -> Option<SocketAddr> {
        self.proxied.get().copied().or(self.peer)
    }

    fn local(&self) -> Option<SocketAddr> {
        self.local
    }

    fn forwarded<'h>(&self, head: &'h RequestHead) -> Forwarded<'h> {
        let mut fwd = Forwarded::default();
        let proxies = &self.shared.cfg.proxies;
        // Once a PROXY header named the client, that client is the peer
        // whose headers are believed or not: behind a TCP load balancer the
        // headers are the client's own, and believing them because the
        // balancer is trusted would let any client choose its address.
        let trusted = match self.proxied.get() {
            Some(client) => !proxies.is_empty() && proxies.trusts(client.ip()),
            None => self.via_proxy,
        };
        if !trusted {
            return fwd;
        }
        for (n, v) in &head.headers {
            let (name, value) = (head.bytes(*n), head.bytes(*v));
            let Ok(value) = std::str::from_utf8(value) else {
                continue;
            };
            if name == b"x-forwarded-proto" {
                if let Some(s) = proxy::forwarded_scheme(value) {
                    fwd.scheme = Some(s);
                }
            } else if name == b"x-forwarded-for" {
                if let Some(host) = proxy::forwarded_client(value, proxies) {
                    fwd.client = Some(host);
                }
            }
        }
        fwd
    }

    fn tls(&self) -> Option<Arc<TlsInfo>> {
        self.stream
            .tls_info()
            .or_else(|| self.carried_tls.get().cloned())
    }

    fn seq(&self) -> u64 {
        self.lock().seq
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }

    fn check_send(&self, seq: u64) -> Result<(), SendError> {
        Self::sendable(&self.lock(), seq)
    }

    fn send(&self, seq: u64, part: ResponsePart<'_, '_>) -> Result<Sent, SendError> {
        let shared = &self.shared;
        let mut guard = self.lock();
        let st = &mut *guard;
        Self::sendable(st, seq)?;
        let enc = st
            .enc
            .as_mut()
            .ok_or(SendError::Unexpected("with no request"))?;
        match part {
            ResponsePart::Start {
                status,
                headers,
                trailers,
            } => {
                if enc.is_started() {
                    return Err(SendError::Unexpected("after response already started"));
                }
                enc.start(status, headers, trailers)
                    .map_err(SendError::Start)?;
                Ok(Sent::Done)
            }
            ResponsePart::Body { data, more } => {
                if !enc.is_started() {
                    return Err(SendError::Unexpected("before 'http.response.start'"));
                }
                if shared.is_shutting_down() && !enc.head_written() {
                    enc.force_close();
                }
                let date = shared.date.get();
                enc.body(data, more, &shared.cfg.defaults, &date, &mut st.out.buf)
                    .map_err(SendError::Body)?;
                let complete = enc.is_complete();
                self.flush_and_finish(st, complete)
            }
            ResponsePart::Trailers { headers, more } => {
                // After a file still being sent, if one is.
                enc.trailers(headers, more, st.out.tail())
                    .map_err(SendError::Trailers)?;
                let complete = enc.is_complete();
                self.flush_and_finish(st, complete)
            }
            ResponsePart::PathSend { path } => {
                if !enc.is_started() {
                    return Err(SendError::Unexpected("before 'http.response.start'"));
                }
                if shared.is_shutting_down() && !enc.head_written() {
                    enc.force_close();
                }
                let (file, len) = open_regular(path)?;
                // A small file is read before anything is encoded, so a
                // failed read leaves the response untouched (a 500 follows).
                let small = if len <= SMALL_FILE {
                    Some(read_all(&file, len).map_err(|e| file_error(path, e))?)
                } else {
                    None
                };
                let date = shared.date.get();
                let framing = enc
                    .file_body(len, &shared.cfg.defaults, &date, &mut st.out.buf)
                    .map_err(|e| file_error(path, e))?;
                match small {
                    // Read into the head's write: cheaper than a sendfile
                    // call for a file this small.
                    Some(data) => {
                        st.out.buf.extend_from_slice(&data[..framing.len as usize]);
                        st.out.buf.extend_from_slice(framing.suffix);
                    }
                    None => {
                        st.out.file = Some(FileSend {
                            file,
                            path: path.to_path_buf(),
                            offset: 0,
                            remaining: framing.len,
                            suffix: framing.suffix.to_vec(),
                        })
                    }
                }
                let complete = enc.is_complete();
                self.flush_and_finish(st, complete)
            }
            ResponsePart::EarlyHint { links } => {
                let wrote = enc
                    .early_hints(links, &mut st.out.buf)
                    .map_err(SendError::EarlyHint)?;
                // Worth sending only at once: it is meant to arrive before
                // the response.
                if wrote {
                    self.write_or_fail(st)?;
                }
                Ok(Sent::Done)
            }
        }
    }

    fn receive(&self, seq: u64, sink: &mut dyn FnMut(&[u8])) -> Received {
        let shared = &self.shared;
        let mut st = self.lock();
        let was_full = st.body_buf.len() >= shared.cfg.body_buffer;
        let got = st.receive_now(seq, shared.is_shutting_down(), sink);
        if got != Received::Wait {
            // The app made room: the driver reads the socket again.
            let resume = was_full && !st.body_done();
            drop(st);
            if resume {
                self.schedule();
            }
            return got;
        }
        // Expect: 100-continue is answered only now, when the app first
        // waits for the body.
        if st.expect_continue {
            st.expect_continue = false;
            if !st.head_written() {
                st.out.buf.extend_from_slice(CONTINUE_100);
                let _ = self.write_now(&mut st);
            }
        }
        st.recv_waiting = true;
        drop(st);
        self.schedule();
        Received::Wait
    }

    fn app_done(&self, seq: u64, failed: bool) -> AppEnd {
        let shared = &self.shared;
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.seq != seq || st.response_done() {
            return AppEnd::Complete;
        }
        if failed {
            Stats::inc(&shared.stats.app_errors);
        }
        // The encoder is reused across requests: only a written head is
        // this response's.
        let sent = match st.enc.as_ref() {
            Some(e) if e.head_written() => Completion {
                status: e.status(),
                body_bytes: e.body_bytes(),
                waiting_receive: false,
            },
            _ => Completion {
                status: 0,
                body_bytes: 0,
                waiting_receive: false,
            },
        };
        if st.closed {
            // The client went away: nothing more can be sent, and that is
            // not the app's fault.
            st.writing = Writing::Done;
            drop(guard);
            self.schedule();
            return AppEnd::ClientGone(sent);
        }
        if st.head_written() {
            st.writing = Writing::Aborted;
            st.recv_waiting = false;
            let told = st.told_disconnect && !failed;
            drop(guard);
            self.schedule();
            return if told {
                AppEnd::Abandoned(sent)
            } else {
                AppEnd::Aborted(sent)
            };
        }
        // Nothing of the response reached the wire: answer 500 instead.
        let date = shared.date.get();
        let keep = st.keep_alive && !shared.is_shutting_down();
        write_simple_response(
            &mut st.out.buf,
            500,
            b"Internal Server Error",
            !keep,
            &shared.cfg.defaults,
            &date,
        );
        let _ = self.write_now(st);
        // The bridge releases a waiting receive() for every `Answered`.
        self.end_response(st);
        st.keep_alive = keep && st.keep_alive;
        drop(guard);
        self.schedule();
        AppEnd::Answered(Completion {
            status: 500,
            body_bytes: 21,
            waiting_receive: false,
        })
    }

    fn wakeup(&self, sink: &mut dyn FnMut(&[u8])) -> Wakeup {
        let shared = &self.shared;
        let mut st = self.lock();
        let mut up = Wakeup::default();
        if st.recv_waiting {
            let seq = st.seq;
            let got = st.receive_now(seq, shared.is_shutting_down(), sink);
            if got != Received::Wait {
                st.recv_waiting = false;
                up.receive = Some(got);
            }
        }
        if st.send_waiting {
            if st.closed {
                up.send = Some(Err(()));
            } else if st.out.pending() <= (shared.cfg.write_high_water / 2) as u64 {
                up.send = Some(Ok(()));
            }
            if up.send.is_some() {
                st.send_waiting = false;
            }
        }
        up
    }
}
