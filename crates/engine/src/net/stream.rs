//! A connection's socket: TCP, or a Unix domain socket (`--uds`), either
//! of them possibly under TLS. All are driven the same way (the drivers see
//! plaintext); only TCP has Nagle and delayed ACKs to manage.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

use super::tls::{TlsInfo, TlsStream};

pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// TLS over one of the others (or, on a port shared with plain HTTP,
    /// possibly plain after all): see `net::tls`.
    Tls(Box<TlsStream>),
}

impl Stream {
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.readable().await,
            Stream::Unix(s) => s.readable().await,
            Stream::Tls(s) => s.readable().await,
        }
    }

    /// The socket's own readiness, for the TLS layer (a TLS stream never
    /// wraps another).
    pub(super) async fn socket_readable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.readable().await,
            Stream::Unix(s) => s.readable().await,
            Stream::Tls(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    pub(super) async fn socket_writable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.writable().await,
            Stream::Unix(s) => s.writable().await,
            Stream::Tls(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    pub async fn writable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.writable().await,
            Stream::Unix(s) => s.writable().await,
            Stream::Tls(s) => s.writable().await,
        }
    }

    pub fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read_buf(buf),
            Stream::Unix(s) => s.try_read_buf(buf),
            Stream::Tls(s) => s.try_read_buf(buf),
        }
    }

    /// The socket's bytes (under TLS: ciphertext; used by the TLS layer).
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read(buf),
            Stream::Unix(s) => s.try_read(buf),
            Stream::Tls(s) => s.inner().try_read(buf),
        }
    }

    /// Raw bytes to the socket (under TLS: ciphertext, for the TLS layer).
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_write(buf),
            Stream::Unix(s) => s.try_write(buf),
            Stream::Tls(s) => s.inner().try_write(buf),
        }
    }

    pub fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_write_vectored(bufs),
            Stream::Unix(s) => s.try_write_vectored(bufs),
            Stream::Tls(s) => s.inner().try_write_vectored(bufs),
        }
    }

    /// A short read drained the socket: drop tokio's cached readiness now
    /// instead of paying a read syscall that returns EAGAIN next time (an
    /// edge arriving after the read sets it again). Under TLS a short
    /// plaintext read says nothing of the socket: the TLS layer does this
    /// itself for its ciphertext reads.
    pub fn clear_read_ready(&self) {
        if let Stream::Tls(s) = self {
            if s.reads_raw() {
                s.inner().clear_read_ready();
            }
            return;
        }
        let _ = self.try_io(Interest::READABLE, || {
            Err::<(), _>(io::ErrorKind::WouldBlock.into())
        });
    }

    /// The `tls` scope extension's values (None: not TLS, or the handshake
    /// is not done).
    pub fn tls_info(&self) -> Option<Arc<TlsInfo>> {
        match self {
            Stream::Tls(s) => s.info(),
            _ => None,
        }
    }

    /// The connection speaks TLS (not plain bytes on a shared port).
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(s) if s.is_tls())
    }

    /// A TLS handshake is due or under way (see `TlsStream::handshake_pending`).
    pub fn handshake_pending(&self) -> bool {
        matches!(self, Stream::Tls(s) if s.handshake_pending())
    }

    /// Why TLS failed on this connection, if it did (for the debug line).
    pub fn tls_error(&self) -> Option<String> {
        match self {
            Stream::Tls(s) => s.error(),
            _ => None,
        }
    }

    /// `--proxy-protocol` under TLS: the PROXY header was read; `buf` holds
    /// what followed it (see `TlsStream::end_raw`).
    pub fn end_raw(&self, buf: &mut BytesMut) -> io::Result<()> {
        match self {
            Stream::Tls(s) => s.end_raw(buf),
            _ => Ok(()),
        }
    }

    /// Half-closes the sending side (FIN), after TLS's close_notify.
    pub fn shutdown_write(&self) {
        if let Stream::Tls(s) = self {
            s.close_notify();
        }
        let _ = socket2::SockRef::from(self).shutdown(std::net::Shutdown::Write);
    }

    /// `send(2)` of `buf`; with `more`, `MSG_MORE` tells the kernel that
    /// more data follows at once (a file's body after its head), so the head
    /// does not leave in a segment of its own.
    pub fn try_send(&self, buf: &[u8], more: bool) -> io::Result<usize> {
        if let Stream::Tls(s) = self {
            return s.try_send(buf, more);
        }
        if !more || !self.is_tcp() {
            return self.try_write(buf);
        }
        let fd = self.as_raw_fd();
        self.try_io(Interest::WRITABLE, || {
            // SAFETY: `buf` is a live slice for the duration of the call and
            // `fd` is our open socket; send(2) reads at most `len` bytes.
            let n = unsafe {
                libc::send(
                    fd,
                    buf.as_ptr() as *const libc::c_void,
                    buf.len(),
                    libc::MSG_MORE | libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        })
    }

    /// `sendfile(2)`: up to `count` bytes of `file` from `offset` (advanced
    /// by what was sent) to the socket, without copying through user space.
    /// Ok(0) means the file ended early.
    pub fn try_sendfile(
        &self,
        file: &std::fs::File,
        offset: &mut u64,
        count: usize,
    ) -> io::Result<usize> {
        if let Stream::Tls(s) = self {
            return s.try_sendfile(file, offset, count);
        }
        let fd = self.as_raw_fd();
        let src = file.as_raw_fd();
        self.try_io(Interest::WRITABLE, || {
            let mut off = *offset as libc::off_t;
            // SAFETY: both descriptors are open and owned by the callers for
            // the duration of the call; `off` is a valid off_t the kernel
            // updates in place.
            let n = unsafe { libc::sendfile(fd, src, &mut off, count) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            *offset = off as u64;
            Ok(n as usize)
        })
    }

    /// Runs `f` under tokio's readiness bookkeeping (a `WouldBlock` from
    /// `f` clears the cached readiness).
    pub fn try_io<R>(
        &self,
        interest: Interest,
        f: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        match self {
            Stream::Tcp(s) => s.try_io(interest, f),
            Stream::Unix(s) => s.try_io(interest, f),
            Stream::Tls(s) => s.inner().try_io(interest, f),
        }
    }

    pub fn is_tcp(&self) -> bool {
        match self {
            Stream::Tcp(_) => true,
            Stream::Unix(_) => false,
            Stream::Tls(s) => s.inner().is_tcp(),
        }
    }

    /// Wire rule 5: ACK now (TCP only), so a client whose request head
    /// arrived in pieces sends the rest at once instead of waiting for our
    /// delayed ACK under Nagle's algorithm.
    pub fn quickack(&self) {
        if !self.is_tcp() {
            return;
        }
        let one: libc::c_int = 1;
        // SAFETY: plain setsockopt on our own open socket with a valid int
        // option value; failure only means no quick ACK.
        unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
            Stream::Tls(s) => s.inner().as_fd(),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.as_fd().as_raw_fd()
    }
}
