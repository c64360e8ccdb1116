//! The accept loop: a connection driver per accepted socket.

use std::future::Future;
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
/// Also ends at shutdown: when the engine runs on a thread of its own, the
/// loop thread's cancel may miss a future that thread is polling.
pub async fn accept_loop(listener: Listener, shared: Arc<Shared>) {
    loop {
        // Created before the check: it sees any later trigger.
        let stopping = shared.shutdown.notified();
        if shared.is_shutting_down() {
            return;
        }
        let mut stopping = std::pin::pin!(stopping);
        let mut accepting = std::pin::pin!(accept(&listener));
        let got = std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(r) = accepting.as_mut().poll(cx) {
                return std::task::Poll::Ready(Some(r));
            }
            stopping.as_mut().poll(cx).map(|()| None)
        })
        .await;
        let Some(got) = got else {
            return;
        };
        match got {
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
