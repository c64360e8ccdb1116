//! The byte stream the `h2` crate reads and writes: the connection's
//! socket (plain or TLS), with
//!
//! - reads that first hand out what the HTTP/1 driver had already read
//!   (the preface it sniffed), and, after an `Upgrade: h2c`, a synthetic
//!   HEADERS frame for stream 1 spliced in after the client's preface and
//!   first frame (its SETTINGS);
//! - writes that coalesce: `poll_write` only appends to a buffer, and
//!   `poll_flush` (which `h2` calls once at the end of each poll of the
//!   connection) writes it with one syscall. The frames of every stream
//!   that made progress in one poll leave together, and a small response
//!   (HEADERS + DATA) is one write.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::super::h1::Conn;
use super::super::stats::Stats;

/// The client's connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Buffered output beyond which `poll_write` writes before it takes more.
const WRITE_BUFFER: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;

type Ready = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

pub struct H2Io {
    conn: Arc<Conn>,
    rbuf: BytesMut,
    /// The synthetic HEADERS frame of an upgrade, until it is spliced in.
    splice: Option<Vec<u8>>,
    /// The last read did not drain the socket: try reading before waiting.
    maybe_readable: bool,
    read_wait: Option<Ready>,
    wbuf: Vec<u8>,
    /// Bytes of `wbuf` already written.
    wpos: usize,
    write_wait: Option<Ready>,
    /// `--timeout-send`: a client that stops reading for this long (the
    /// socket stays full) ends the connection.
    send_timeout: std::time::Duration,
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl H2Io {
    /// `rbuf`: bytes already read from the client; `out`: bytes to send
    /// before anything `h2` writes (the 101 of an upgrade); `splice`: the
    /// HEADERS frame to insert after the client's first frame.
    pub fn new(conn: Arc<Conn>, rbuf: BytesMut, out: Vec<u8>, splice: Option<Vec<u8>>) -> Self {
        Self {
            rbuf,
            splice,
            maybe_readable: true,
            read_wait: None,
            wbuf: out,
            wpos: 0,
            write_wait: None,
            send_timeout: conn.shared.cfg.send_timeout,
            stall: None,
            conn,
        }
    }

    /// Inserts the upgrade's HEADERS frame once the preface and the frame
    /// after it (SETTINGS) are all in `rbuf`. True when nothing is held back.
    fn try_splice(&mut self) -> bool {
        if self.splice.is_none() {
            return true;
        }
        let head = PREFACE.len() + 9;
        if self.rbuf.len() < head {
            return false;
        }
        let b = &self.rbuf[PREFACE.len()..head];
        let len = (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
        let at = head + len;
        if self.rbuf.len() < at {
            return false;
        }
        let frame = self.splice.take().unwrap_or_default();
        let rest = self.rbuf.split_off(at);
        self.rbuf.extend_from_slice(&frame);
        self.rbuf.unsplit(rest);
        true
    }

    /// One non-blocking read into `rbuf`.
    fn read_socket(&mut self) -> io::Result<usize> {
        let stats = &self.conn.shared.stats;
        if self.rbuf.capacity() - self.rbuf.len() < 1024 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let spare = self.rbuf.capacity() - self.rbuf.len();
        Stats::inc(&stats.read_syscalls);
        let n = self.conn.stream.try_read_buf(&mut self.rbuf)?;
        stats.bytes_read.fetch_add(n as u64, Relaxed);
        if n > 0 && n < spare {
            // A short read drained the socket: wait for readiness next.
            self.conn.stream.clear_read_ready();
            self.maybe_readable = false;
        }
        Ok(n)
    }

    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let wait = self.read_wait.get_or_insert_with(|| {
            let conn = self.conn.clone();
            Box::pin(async move { conn.stream.readable().await })
        });
        let r = ready!(wait.as_mut().poll(cx));
        self.read_wait = None;
        self.maybe_readable = true;
        Poll::Ready(r)
    }

    fn poll_writable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let wait = self.write_wait.get_or_insert_with(|| {
            let conn = self.conn.clone();
            Box::pin(async move { conn.stream.writable().await })
        });
        let r = ready!(wait.as_mut().poll(cx));
        self.write_wait = None;
        Poll::Ready(r)
    }

    /// Writes the buffer out (one syscall when the socket takes it all).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wpos < self.wbuf.len() {
            let stats = &self.conn.shared.stats;
            Stats::inc(&stats.write_syscalls);
            match self.conn.stream.try_send(&self.wbuf[self.wpos..], false) {
                Ok(n) => {
                    stats.bytes_written.fetch_add(n as u64, Relaxed);
                    self.wpos += n;
                    self.stall = None;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let timeout = self.send_timeout;
                    let stall = self
                        .stall
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    if stall.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                    }
                    ready!(self.poll_writable(cx))?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        if self.wbuf.capacity() > 4 * WRITE_BUFFER {
            self.wbuf.shrink_to(WRITE_BUFFER);
        }
        Poll::Ready(Ok(()))
    }

    /// Output buffered and not yet written.
    pub fn pending_output(&self) -> usize {
        self.wbuf.len() - self.wpos
    }
}

impl AsyncRead for H2Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        loop {
            if me.try_splice() && !me.rbuf.is_empty() {
                let n = me.rbuf.len().min(buf.remaining());
                buf.put_slice(&me.rbuf[..n]);
                me.rbuf.advance(n);
                return Poll::Ready(Ok(()));
            }
            if !me.maybe_readable {
                ready!(me.poll_readable(cx))?;
            }
            match me.read_socket() {
                // EOF (a splice still held back is moot then).
                Ok(0) => return Poll::Ready(Ok(())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    me.maybe_readable = false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.pending_output() >= WRITE_BUFFER {
            ready!(me.poll_drain(cx))?;
        }
        me.wbuf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.pending_output() >= WRITE_BUFFER {
            ready!(me.poll_drain(cx))?;
        }
        let mut n = 0;
        for b in bufs {
            me.wbuf.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The FIN (and TLS's close_notify) is the connection's close path's
        // (`h1::driver`), after its linger rules.
        self.get_mut().poll_drain(cx)
    }
}
