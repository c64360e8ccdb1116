//! The server's stop signal: a flag that every driver can read, and a
//! notification that wakes the idle ones.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How long an idle connection may still bring a request once the server
/// stops. A keep-alive client under load sends its next request as soon as
/// it has a response, and a new connection sends its first right after the
/// handshake: closing such a connection at once loses a request the client
/// had every reason to send (most clients do not retry it). A request that
/// arrives within the window is served with `Connection: close`.
pub const DRAIN: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct Shutdown {
    flag: AtomicBool,
    notify: Notify,
    at: OnceLock<Instant>,
}

impl Shutdown {
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Sets the flag and wakes every driver waiting in [`Self::notified`].
    pub fn trigger(&self) {
        let _ = self.at.set(Instant::now());
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Completes at the next [`Self::trigger`].
    pub async fn notified(&self) {
        self.notify.notified().await
    }

    /// When idle connections close: the end of the [`DRAIN`] window (None
    /// before the stop).
    pub fn drain_deadline(&self) -> Option<Instant> {
        self.at.get().map(|t| *t + DRAIN)
    }
}
