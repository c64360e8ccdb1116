//! Listening socket and the accept loop.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

use super::conn::{self, Conn};
use super::stats::Stats;
use super::Shared;

/// Binds `host:port` (port 0 = any free port) with SO_REUSEADDR.
pub fn bind(host: &str, port: u16, backlog: i32) -> io::Result<std::net::TcpListener> {
    let addr = (host, port)
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
    Ok(sock.into())
}

/// Adopts a listening socket inherited from a parent process (`--fd`).
pub fn from_fd(fd: RawFd) -> io::Result<std::net::TcpListener> {
    // SAFETY: the caller hands over a descriptor it duplicated for us; it is
    // open and owned by nothing else in this process.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let sock = Socket::from(owned);
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

pub fn local_addr(l: &std::net::TcpListener) -> io::Result<SocketAddr> {
    l.local_addr()
}

/// Accepts until aborted. Each socket gets TCP_NODELAY and its own task.
pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Wire rule 1: never let Nagle hold a response's last segment.
                if stream.set_nodelay(true).is_err() {
                    continue;
                }
                let local = match stream.local_addr() {
                    Ok(a) => a,
                    Err(_) => continue,
                };
                Stats::inc(&shared.stats.connections);
                shared.stats.active_connections.fetch_add(1, Relaxed);
                let id = shared.next_id.fetch_add(1, Relaxed);
                let c = Arc::new(Conn::new(id, stream, peer, local, shared.clone()));
                super::lock(&shared.conns).insert(id, c.clone());
                tokio::spawn(conn::run(c));
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: back off instead of spinning; the
                // pending connection stays in the backlog.
                if is_transient(&e) {
                    continue;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED) | Some(libc::EINTR) | Some(libc::EPROTO)
    )
}
