//! The in-loop runtime: `select()` runs tokio until a Python fd is ready or
//! an event waits for the bridge. [`executor`] polls the connection futures
//! inside that `block_on`; [`poller`] is the level-triggered epoll that holds
//! the fds asyncio registers.

pub mod executor;
pub mod poller;

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning: every critical section in the engine
/// leaves its data consistent even if a panic unwinds through it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
