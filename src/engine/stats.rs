//! Engine counters: cheap relaxed atomics, read by `Engine.stats()`.
//! Tests assert the wire rules with them (one write per small response).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub active_connections: AtomicU64,
    pub requests: AtomicU64,
    pub responses: AtomicU64,
    pub write_syscalls: AtomicU64,
    pub read_syscalls: AtomicU64,
    pub bytes_written: AtomicU64,
    pub bad_requests: AtomicU64,
    pub app_errors: AtomicU64,
    pub selects: AtomicU64,
}

impl Stats {
    #[inline]
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("connections", self.connections.load(Relaxed)),
            ("active_connections", self.active_connections.load(Relaxed)),
            ("requests", self.requests.load(Relaxed)),
            ("responses", self.responses.load(Relaxed)),
            ("write_syscalls", self.write_syscalls.load(Relaxed)),
            ("read_syscalls", self.read_syscalls.load(Relaxed)),
            ("bytes_written", self.bytes_written.load(Relaxed)),
            ("bad_requests", self.bad_requests.load(Relaxed)),
            ("app_errors", self.app_errors.load(Relaxed)),
            ("selects", self.selects.load(Relaxed)),
        ]
    }
}
