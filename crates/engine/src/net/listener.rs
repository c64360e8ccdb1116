//! Listening sockets (TCP, Unix domain, or inherited) and accepting from them.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::{TcpListener, UnixListener};

use super::stream::Stream;

/// A bound, listening socket not yet handed to tokio.
pub enum StdListener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl StdListener {
    /// `(host, port)`, or `(path, 0)` for a Unix domain socket.
    pub fn describe(&self) -> io::Result<(String, u16)> {
        match self {
            StdListener::Tcp(l) => {
                let a = l.local_addr()?;
                Ok((a.ip().to_string(), a.port()))
            }
            StdListener::Unix(l) => {
                let a = l.local_addr()?;
                let path = a
                    .as_pathname()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                Ok((path, 0))
            }
        }
    }

    /// Must be called inside the tokio runtime's context.
    pub fn into_tokio(self) -> io::Result<Listener> {
        Ok(match self {
            StdListener::Tcp(l) => Listener::Tcp(TcpListener::from_std(l)?),
            StdListener::Unix(l) => Listener::Unix(UnixListener::from_std(l)?),
        })
    }
}

pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Binds `host:port` (port 0 = any free port) with SO_REUSEADDR.
pub fn bind(host: &str, port: u16, backlog: i32) -> io::Result<StdListener> {
    let addr: SocketAddr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "host resolved to nothing"))?;
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(false).ok();
    }
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    sock.set_nonblocking(true)?;
    Ok(StdListener::Tcp(sock.into()))
}

/// Binds a Unix domain socket at `path` (a stale socket file left by an
/// earlier run is replaced; any other file is an error), mode 0666 like
/// uvicorn.
pub fn bind_unix(path: &str, backlog: i32) -> io::Result<StdListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{path} exists and is not a socket"),
            ));
        }
    }
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    sock.bind(&SockAddr::unix(path)?)?;
    sock.listen(backlog)?;
    sock.set_nonblocking(true)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(StdListener::Unix(sock.into()))
}

/// Adopts a listening socket inherited from a parent process (`--fd`,
/// `--workers`), TCP or Unix.
pub fn from_fd(fd: RawFd) -> io::Result<StdListener> {
    // SAFETY: the caller hands over a descriptor it duplicated for us; it is
    // open and owned by nothing else in this process.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let sock = Socket::from(owned);
    sock.set_nonblocking(true)?;
    if sock.local_addr()?.domain() == Domain::UNIX {
        Ok(StdListener::Unix(sock.into()))
    } else {
        Ok(StdListener::Tcp(sock.into()))
    }
}

/// The next connection, set up: `TCP_NODELAY` on TCP sockets.
pub async fn accept(
    listener: &Listener,
) -> io::Result<(Stream, Option<SocketAddr>, Option<SocketAddr>)> {
    match listener {
        Listener::Tcp(l) => {
            let (stream, peer) = l.accept().await?;
            // Wire rule 1: never let Nagle hold a response's last segment.
            stream.set_nodelay(true)?;
            let local = stream.local_addr()?;
            Ok((Stream::Tcp(stream), Some(peer), Some(local)))
        }
        Listener::Unix(l) => {
            let (stream, _) = l.accept().await?;
            Ok((Stream::Unix(stream), None, None))
        }
    }
}
