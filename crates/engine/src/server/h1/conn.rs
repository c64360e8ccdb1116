//! One HTTP/1.1 connection: its socket, its [`ConnState`], and the reads
//! and writes both of its sides use.
//!
//! The response is written by the loop thread (the bridge's `send()`),
//! directly, so a small response costs one write syscall and no wake-up of
//! the driver; the driver writes only what a full socket left over.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use bytes::BytesMut;
use tokio::sync::Notify;

use super::super::exchange::{ConnId, Event, HttpExchange};
use super::super::shared::{Connection, Shared};
use super::super::stats::Stats;
use super::state::{ConnState, Output};
use crate::net::stream::Stream;
use crate::proto::h1::{reason_phrase, write_simple_response};
use crate::runtime::lock;

pub(crate) const READ_CHUNK: usize = 16 * 1024;
/// Bytes of a file per `sendfile` call.
const SENDFILE_CHUNK: u64 = 1 << 20;
/// `sendfile` calls per write from the loop thread, and per wake-up of the
/// driver: a big file to a fast reader then leaves in 1 MiB (loop thread)
/// and 4 MiB (driver) steps, with Python and the other connections running
/// between them.
pub(super) const LOOP_FILE_CHUNKS: u32 = 1;
pub(super) const DRIVER_FILE_CHUNKS: u32 = 4;

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// The socket: the client is gone.
    #[error("{0}")]
    Socket(io::Error),
    /// The file being sent could not be read, or ended early (it shrank):
    /// the connection ends, and the app, if it is still sending, hears why.
    #[error("cannot send file {path}: {err}")]
    File { path: String, err: io::Error },
}

impl From<WriteError> for io::Error {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Socket(e) => e,
            e @ WriteError::File { .. } => io::Error::other(e.to_string()),
        }
    }
}

pub struct Conn {
    pub id: ConnId,
    pub stream: Stream,
    /// Peer and local addresses (None on a Unix domain socket).
    pub peer: Option<SocketAddr>,
    /// The client a PROXY protocol header named (`--proxy-protocol`): the
    /// client the app sees, in place of `peer`.
    pub(super) proxied: OnceLock<SocketAddr>,
    pub local: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    pub(super) state: Mutex<ConnState>,
    /// Wakes the driver (from the loop thread, through `Shared::schedule`).
    pub(super) wake: Notify,
    /// The peer is a trusted proxy (`--proxy-headers`).
    pub(super) via_proxy: bool,
    /// A connection standing for an HTTP/2 stream (a WebSocket over
    /// HTTP/2, `server::h2::tunnel`): the TLS session of the connection
    /// that carries it.
    pub(super) carried_tls: OnceLock<Arc<crate::net::tls::TlsInfo>>,
    /// This connection, for the lists that hold it (`Arc::new_cyclic`).
    me: Weak<Conn>,
}

impl Conn {
    pub fn new(
        id: ConnId,
        stream: Stream,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
        shared: Arc<Shared>,
    ) -> Arc<Self> {
        let via_proxy = match peer {
            Some(p) => !shared.cfg.proxies.is_empty() && shared.cfg.proxies.trusts(p.ip()),
            None => shared.cfg.proxies.trusts_unix(),
        };
        Arc::new_cyclic(|me| Self {
            id,
            stream,
            peer,
            proxied: OnceLock::new(),
            local,
            shared,
            state: Mutex::new(ConnState::default()),
            wake: Notify::new(),
            via_proxy,
            carried_tls: OnceLock::new(),
            me: me.clone(),
        })
    }

    /// This connection stands for a stream of `outer`: the app sees
    /// `outer`'s TLS session and PROXY-protocol client.
    pub(crate) fn inherit(&self, outer: &Conn) {
        if let Some(tls) = outer.stream.tls_info() {
            let _ = self.carried_tls.set(tls);
        }
        if let Some(client) = outer.proxied.get() {
            let _ = self.proxied.set(*client);
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ConnState> {
        lock(&self.state)
    }

    fn arc(&self) -> Option<Arc<Conn>> {
        self.me.upgrade()
    }

    /// From the loop thread: ask the driver to look at the state.
    pub(super) fn schedule(&self) {
        if let Some(me) = self.arc() {
            self.shared.schedule(me);
        }
    }

    /// From the loop thread: write `out` at the end of the batch.
    pub(super) fn defer(&self) {
        if let Some(me) = self.arc() {
            self.shared.defer(me);
        }
    }

    /// Tell the bridge that what a waiting call gets may have changed.
    pub(super) fn push_wake(&self) {
        if let Some(me) = self.arc() {
            self.shared
                .push_event(Event::Wake(me as Arc<dyn HttpExchange>));
        }
    }

    /// Writes `st.out` now with one non-blocking syscall per chunk the
    /// kernel takes: its bytes, then up to `file_chunks` `sendfile` calls of
    /// a file, then what follows the file. Leaves the remainder and marks it
    /// blocked (the driver owns it from then on).
    pub(super) fn write_out(&self, st: &mut ConnState, file_chunks: u32) -> Result<(), WriteError> {
        let res = self.write_all(&mut st.out, file_chunks);
        if res.is_err() {
            st.closed = true;
            st.out.discard();
        }
        res
    }

    pub(crate) fn write_all(&self, out: &mut Output, file_chunks: u32) -> Result<(), WriteError> {
        let stats = &self.shared.stats;
        let mut chunks = 0;
        loop {
            while !out.buf.is_empty() {
                Stats::inc(&stats.write_syscalls);
                // A file's head shares the first segment with its body.
                let more = out.file.as_ref().is_some_and(|f| f.remaining > 0);
                match self.stream.try_send(&out.buf, more) {
                    Ok(n) => {
                        stats.bytes_written.fetch_add(n as u64, Relaxed);
                        if n == out.buf.len() {
                            out.buf.clear();
                            if out.buf.capacity() > 256 * 1024 {
                                out.buf.shrink_to(READ_CHUNK);
                            }
                        } else {
                            out.buf.drain(..n);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        out.blocked = true;
                        return Ok(());
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(WriteError::Socket(e)),
                }
            }
            let Some(f) = out.file.as_mut() else {
                out.blocked = false;
                return Ok(());
            };
            if f.remaining == 0 {
                // The file is out: what follows it goes like any bytes.
                if let Some(f) = out.file.take() {
                    out.buf.extend_from_slice(&f.suffix);
                }
                continue;
            }
            if chunks == file_chunks {
                // Enough for now: the driver sends the rest.
                out.blocked = true;
                return Ok(());
            }
            chunks += 1;
            Stats::inc(&stats.write_syscalls);
            let count = f.remaining.min(SENDFILE_CHUNK) as usize;
            let offset = f.offset;
            match self.stream.try_sendfile(&f.file, &mut f.offset, count) {
                Ok(n) if n > 0 => {
                    stats.bytes_written.fetch_add(n as u64, Relaxed);
                    f.remaining -= n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    out.blocked = true;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EPIPE/ECONNRESET are the client's; anything else
                    // (EIO, EINVAL) is the file's.
                    let socket = matches!(
                        e.raw_os_error(),
                        Some(libc::EPIPE) | Some(libc::ECONNRESET) | Some(libc::ENOTCONN)
                    );
                    if socket {
                        return Err(WriteError::Socket(e));
                    }
                    return Err(WriteError::File {
                        path: f.path.display().to_string(),
                        err: e,
                    });
                }
                // The file shrank under the response: never end it with a
                // short body that looks complete.
                Ok(_) => {
                    return Err(WriteError::File {
                        path: f.path.display().to_string(),
                        err: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("it ended at {offset} bytes, {} short", f.remaining),
                        ),
                    })
                }
            }
        }
    }

    /// From the loop thread: write `out` now unless the driver owns a
    /// pending flush; a remainder is handed to the driver.
    pub(super) fn write_now(&self, st: &mut ConnState) -> Result<(), WriteError> {
        if st.out.blocked {
            return Ok(());
        }
        let res = self.write_out(st, LOOP_FILE_CHUNKS);
        if st.out.blocked {
            self.schedule();
        }
        res
    }

    /// Reads what is available into `buf`. Ok(0) = the peer closed.
    pub(crate) async fn read_some(&self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            self.stream.readable().await?;
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(READ_CHUNK);
            }
            let spare = buf.capacity() - buf.len();
            Stats::inc(&self.shared.stats.read_syscalls);
            match self.stream.try_read_buf(buf) {
                Ok(n) => {
                    self.shared.stats.bytes_read.fetch_add(n as u64, Relaxed);
                    if n > 0 && n < spare {
                        // A short read drained the socket (see
                        // `Stream::clear_read_ready`).
                        self.stream.clear_read_ready();
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Flushes `out` from the driver, waiting for writability.
    pub(super) async fn flush(&self) -> io::Result<()> {
        loop {
            {
                let mut st = self.lock();
                self.write_out(&mut st, DRIVER_FILE_CHUNKS)?;
                if st.out.is_empty() {
                    return Ok(());
                }
            }
            self.stream.writable().await?;
        }
    }

    /// Debug line for a request body ferrule refuses (400/413).
    pub(super) fn debug_body_failure(&self, failure: super::state::BodyFailure) {
        let id = self.id;
        self.shared.debug(|| {
            format!(
                "Connection {id}: request body refused with {}: {}",
                failure.status(),
                failure.why()
            )
        });
    }

    /// Queues a plain error response that ends the connection, unless part
    /// of the current request's response already went out (`refused`: the
    /// request was answered before its app started, so nothing of its own
    /// was). Sends from the app fail from now on.
    pub(super) fn reply_and_close(&self, status: u16, refused: bool) {
        let shared = &self.shared;
        let mut st = self.lock();
        if status == 400 {
            Stats::inc(&shared.stats.bad_requests);
        }
        if refused || (!st.head_written() && !st.response_done()) {
            shared.stats.response_ended(status, st.started.take());
            let date = shared.date.get();
            write_simple_response(
                &mut st.out.buf,
                status,
                reason_phrase(status).as_bytes(),
                true,
                &shared.cfg.defaults,
                &date,
            );
        }
        st.closed = true;
    }

    /// The socket is gone: a waiting app call hears of it.
    pub(super) fn mark_closed(&self) {
        let mut st = self.lock();
        st.closed = true;
        let waiting = st.recv_waiting || st.send_waiting;
        drop(st);
        if waiting {
            self.push_wake();
        }
    }

    /// After the driver flushed: a `send()` waiting on backpressure may go on.
    pub(super) fn notify_if_waiting(&self) {
        let st = self.lock();
        let low_water = (self.shared.cfg.write_high_water / 2) as u64;
        let wake = st.send_waiting && st.out.pending() <= low_water;
        drop(st);
        if wake {
            self.push_wake();
        }
    }
}

impl Connection for Conn {
    fn wake_driver(&self) {
        self.wake.notify_one();
    }

    fn flush_deferred(&self) {
        let shared = &self.shared;
        let mut st = self.lock();
        st.out.deferred = false;
        let failed = self.write_now(&mut st).is_err();
        // A response that ended the usual way during the batch ends quietly
        // now if all its bytes left; otherwise (partial write, error) its
        // driver takes over, as for any other end.
        let mut wake_driver = false;
        if std::mem::take(&mut st.quiet_pending) {
            if !failed && st.out.is_empty() && !st.out.blocked && !shared.is_shutting_down() {
                st.end_quietly(shared);
            } else {
                wake_driver = true;
            }
        }
        let waiting = st.recv_waiting || st.send_waiting;
        drop(st);
        if wake_driver {
            self.schedule();
        }
        if failed && waiting {
            self.push_wake();
        }
    }

    fn on_shutdown(&self) {
        // A pending receive() that only waits for a disconnect now gets one.
        if self.lock().recv_waiting {
            self.push_wake();
        }
        // Connections whose response ended without waking their driver
        // look like busy ones: wake them so they close.
        self.schedule();
    }
}
