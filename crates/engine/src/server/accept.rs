//! The accept loop: a connection driver per accepted socket.

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::h1;
use super::h2;
use super::shared::Shared;
use super::stats::Stats;
use super::ws;
use crate::net::listener::{accept, Listener};

/// Accepts until cancelled; each connection gets its own driver future.
pub async fn accept_loop(listener: Listener, shared: Arc<Shared>) {
    loop {
        match accept(&listener).await {
            Ok((stream, peer, local)) => {
                Stats::inc(&shared.stats.connections);
                shared.stats.active_connections.fetch_add(1, Relaxed);
                let id = shared.next_id();
                shared.debug(|| match peer {
                    Some(p) => format!("Connection {id} opened from {p}"),
                    None => format!("Connection {id} opened (unix socket)"),
                });
                // TLS is a transport: the driver sees plaintext either way.
                let stream = match &shared.cfg.tls {
                    Some(tls) => tls.wrap(stream, shared.cfg.proxy_protocol.is_some()),
                    None => stream,
                };
                let conn = h1::Conn::new(id, stream, peer, local, shared.clone());
                shared.register(conn.id, conn.clone());
                shared.exec.spawn(async move {
                    h1::driver::run_with_h2(conn, ws::driver::upgrade, Some(h2::driver::serve))
                        .await;
                });
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: back off instead of spinning; the
                // pending connection stays in the backlog.
                if !is_transient(&e) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
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
