//! `Date` header value, formatted at most once a second.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::proto::h1::http_date;

pub struct DateCache {
    cached: Mutex<(u64, [u8; 29])>,
}

impl DateCache {
    pub fn new() -> Self {
        let now = now_secs();
        Self {
            cached: Mutex::new((now, http_date(now))),
        }
    }

    pub fn get(&self) -> [u8; 29] {
        let now = now_secs();
        let mut c = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if c.0 != now {
            *c = (now, http_date(now));
        }
        c.1
    }
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
