//! The server's stop signal: a flag that every driver can read, and a
//! notification that wakes the idle ones.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

#[derive(Default)]
pub struct Shutdown {
    flag: AtomicBool,
    notify: Notify,
}

impl Shutdown {
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Sets the flag and wakes every driver waiting in [`Self::notified`].
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Completes at the next [`Self::trigger`].
    pub async fn notified(&self) {
        self.notify.notified().await
    }
}
