//! Engine counters: cheap relaxed atomics, read by `Engine.stats()` (and
//! from there by the metrics endpoint). Tests assert the wire rules with
//! them (one write per small response).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use super::close::CloseReason;

/// Upper bounds of the request duration histogram's buckets, in
/// microseconds (Prometheus' usual latency buckets, from 0.5 ms to 10 s);
/// one more bucket counts the rest.
pub const DURATION_BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

#[derive(Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub active_connections: AtomicU64,
    pub requests: AtomicU64,
    pub responses: AtomicU64,
    pub write_syscalls: AtomicU64,
    pub read_syscalls: AtomicU64,
    pub bytes_written: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bad_requests: AtomicU64,
    pub app_errors: AtomicU64,
    pub selects: AtomicU64,
    /// Responses by status class: 1xx (final ones only) to 5xx.
    pub by_class: [AtomicU64; 5],
    /// Request durations are measured (the metrics endpoint is on): the
    /// clock is read only then.
    pub timing: AtomicBool,
    /// Request durations, by [`DURATION_BOUNDS_US`] bucket (not cumulative).
    pub durations: [AtomicU64; DURATION_BOUNDS_US.len() + 1],
    pub duration_us_sum: AtomicU64,
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

    /// When a request starts: its start time, if durations are measured.
    #[inline]
    pub fn request_started(&self) -> Option<Instant> {
        self.timing.load(Relaxed).then(Instant::now)
    }

    /// A response ended with `status` (0: none was sent).
    #[inline]
    pub fn response_ended(&self, status: u16, started: Option<Instant>) {
        if (100..600).contains(&status) {
            Self::inc(&self.by_class[usize::from(status / 100) - 1]);
        }
        if let Some(t) = started {
            let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
            let bucket = DURATION_BOUNDS_US.partition_point(|&b| b < us);
            Self::inc(&self.durations[bucket]);
            self.duration_us_sum.fetch_add(us, Relaxed);
        }
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
            ("bytes_read", &self.bytes_read),
            ("bad_requests", &self.bad_requests),
            ("app_errors", &self.app_errors),
            ("selects", &self.selects),
        ]
        .into_iter()
        .map(|(k, c)| (k.to_string(), c.load(Relaxed)))
        .collect();
        for (i, c) in self.by_class.iter().enumerate() {
            v.push((format!("responses_{}xx", i + 1), c.load(Relaxed)));
        }
        for (i, c) in self.durations.iter().enumerate() {
            let key = match DURATION_BOUNDS_US.get(i) {
                Some(b) => format!("duration_le_{b}us"),
                None => "duration_le_inf".to_string(),
            };
            v.push((key, c.load(Relaxed)));
        }
        v.push(("duration_us_sum".into(), self.duration_us_sum.load(Relaxed)));
        for r in CloseReason::ALL {
            v.push((
                format!("closed_{}", r.name()),
                self.closed[r.index()].load(Relaxed),
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_count_by_class_and_bucket() {
        let s = Stats::default();
        s.response_ended(204, None);
        s.response_ended(503, None);
        s.response_ended(0, None);
        s.response_ended(101, Some(Instant::now()));
        let snap: std::collections::HashMap<_, _> = s.snapshot().into_iter().collect();
        assert_eq!(snap["responses_2xx"], 1);
        assert_eq!(snap["responses_5xx"], 1);
        assert_eq!(snap["responses_1xx"], 1);
        assert_eq!(
            snap["duration_le_500us"], 1,
            "an immediate end is in the first bucket"
        );
        let all: u64 = snap
            .iter()
            .filter(|(k, _)| k.starts_with("duration_le_"))
            .map(|(_, v)| *v)
            .sum();
        assert_eq!(all, 1, "only timed responses are in the histogram");
    }
}
