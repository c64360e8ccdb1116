//! Engine counters: cheap relaxed atomics, read by `Engine.stats()`.
//! Tests assert the wire rules with them (one write per small response).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::close::CloseReason;

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
    /// Closed connections, by [`CloseReason::index`].
    pub closed: [AtomicU64; CloseReason::ALL.len()],
}

impl Stats {
    #[inline]
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn closed(&self, reason: CloseReason) {
        Self::inc(&self.closed[reason.index()]);
    }

    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = [
            ("connections", &self.connections),
            ("active_connections", &self.active_connections),
            ("requests", &self.requests),
            ("responses", &self.responses),
            ("write_syscalls", &self.write_syscalls),
            ("read_syscalls", &self.read_syscalls),
            ("bytes_written", &self.bytes_written),
            ("bad_requests", &self.bad_requests),
            ("app_errors", &self.app_errors),
            ("selects", &self.selects),
        ]
        .into_iter()
        .map(|(k, c)| (k.to_string(), c.load(Relaxed)))
        .collect();
        for r in CloseReason::ALL {
            v.push((
                format!("closed_{}", r.name()),
                self.closed[r.index()].load(Relaxed),
            ));
        }
        v
    }
}
