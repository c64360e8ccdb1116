//! What the drivers of one server share with each other and with the loop
//! thread that runs the bridge.
//!
//! Hand-off rules:
//! - drivers never wake the bridge directly: they queue [`Event`]s, and
//!   `select()` returns once some are queued (its poll runs the drivers);
//! - the loop thread never wakes a driver's future directly (that would be
//!   a remote wake through the I/O driver's eventfd): it queues the
//!   connection in `to_wake`, which the next `select()` drains inside its
//!   `block_on`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use super::config::ServerConfig;
use super::date::DateCache;
use super::exchange::{ConnId, Event};
use super::shutdown::Shutdown;
use super::stats::Stats;
use crate::runtime::executor::Executor;
use crate::runtime::lock;

/// What the server asks of every connection, whatever its protocol.
pub trait Connection: Send + Sync {
    /// Wake the connection's driver future (from the loop thread, through
    /// `to_wake`).
    fn wake_driver(&self);
    /// Write what was deferred to the end of the dispatch batch or loop
    /// iteration.
    fn flush_deferred(&self);
    /// The server is stopping: let waiting app calls and idle states see it.
    fn on_shutdown(&self);
}

pub struct Shared {
    pub cfg: ServerConfig,
    pub stats: Stats,
    pub date: DateCache,
    pub shutdown: Shutdown,
    /// Runs the accept loop and the connection futures.
    pub exec: Executor,
    /// Requests whose response is not complete yet.
    pub in_flight: AtomicUsize,
    events: Mutex<Vec<Event>>,
    to_wake: Mutex<Vec<Arc<dyn Connection>>>,
    /// Connections with response bytes to write at the end of the current
    /// dispatch batch or loop iteration (coalesces several body messages
    /// sent without an await in between into one write).
    deferred: Mutex<Vec<Arc<dyn Connection>>>,
    /// True while the bridge dispatches a batch of events: a response that
    /// ends then is written at the end of the batch.
    in_dispatch: AtomicBool,
    next_id: AtomicU64,
    /// Open connections, so shutdown can reach the busy ones.
    conns: Mutex<HashMap<ConnId, Arc<dyn Connection>>>,
    /// The engine runs on a thread of its own (embedded on a loop ferrule
    /// did not create): the loop thread wakes it once per batch, or per
    /// call outside a batch, instead of the next `select()` draining
    /// `to_wake` and `deferred`.
    threaded: AtomicBool,
    /// A remote wake is on its way to the engine thread (cleared when its
    /// poll starts), so a batch costs one wake, not one per connection.
    kick_pending: AtomicBool,
    /// The engine thread told the loop thread events are queued (its
    /// eventfd); cleared by the loop thread before it takes them.
    notified: AtomicBool,
    /// The engine thread must return.
    stop: AtomicBool,
    /// With `cfg.app_threads`: the waker of the `select()` in progress (an
    /// app thread's schedule wakes it), and whether `to_wake` got entries
    /// since it was last drained.
    loop_waker: Mutex<Option<Waker>>,
    remote: AtomicBool,
    /// Debug lines are wanted (the Python side logs at debug level); off,
    /// they cost one relaxed load and are never formatted.
    debug: AtomicBool,
}

impl Shared {
    pub fn new(cfg: ServerConfig) -> Self {
        Self {
            cfg,
            stats: Stats::default(),
            date: DateCache::new(),
            shutdown: Shutdown::default(),
            exec: Executor::new(),
            in_flight: AtomicUsize::new(0),
            events: Mutex::new(Vec::with_capacity(64)),
            to_wake: Mutex::new(Vec::with_capacity(64)),
            deferred: Mutex::new(Vec::with_capacity(64)),
            in_dispatch: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            loop_waker: Mutex::new(None),
            remote: AtomicBool::new(false),
            debug: AtomicBool::new(false),
            threaded: AtomicBool::new(false),
            kick_pending: AtomicBool::new(false),
            notified: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        }
    }

    pub fn next_id(&self) -> ConnId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_set()
    }

    /// From a driver: hand an event to the bridge.
    pub fn push_event(&self, ev: Event) {
        lock(&self.events).push(ev);
    }

    pub fn set_debug(&self, on: bool) {
        self.debug.store(on, Ordering::Relaxed);
    }

    /// Queues a debug line for the bridge; `line` runs only when wanted.
    #[inline]
    pub fn debug(&self, line: impl FnOnce() -> String) {
        if self.debug.load(Ordering::Relaxed) {
            self.push_event(Event::Log(line()));
        }
    }

    pub fn has_events(&self) -> bool {
        !lock(&self.events).is_empty()
    }

    /// Moves the queued events into `batch` (which should be empty).
    pub fn take_events(&self, batch: &mut Vec<Event>) {
        std::mem::swap(batch, &mut *lock(&self.events));
    }

    /// From the loop thread (or an app thread): ask a connection's driver
    /// to look at its state.
    pub fn schedule(&self, conn: Arc<dyn Connection>) {
        lock(&self.to_wake).push(conn);
        self.kick_outside_batch();
        if self.cfg.app_threads {
            // The loop may be blocked in select() with nothing else to
            // wake it: one wake per schedule (a write that left bytes for
            // the driver, a body read that needs more), never per chunk.
            self.remote.store(true, Ordering::Release);
            let waker = lock(&self.loop_waker).clone();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    /// Inside `select()`'s poll (app threads only): keep its waker for the
    /// app threads, and wake the drivers they scheduled meanwhile.
    pub fn poll_remote(&self, waker: &Waker) {
        {
            let mut slot = lock(&self.loop_waker);
            if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
                *slot = Some(waker.clone());
            }
        }
        if self.remote.swap(false, Ordering::Acquire) {
            self.wake_scheduled();
        }
    }

    /// Inside `select()`'s `block_on`: wake the drivers the loop thread
    /// asked for.
    pub fn wake_scheduled(&self) {
        let woken = std::mem::take(&mut *lock(&self.to_wake));
        for c in woken {
            c.wake_driver();
        }
    }

    pub fn defer(&self, conn: Arc<dyn Connection>) {
        lock(&self.deferred).push(conn);
        self.kick_outside_batch();
    }

    /// Threaded mode: a call outside a dispatch batch (an app step the
    /// loop ran) has no batch end to ride on, so it wakes the engine now.
    #[inline]
    fn kick_outside_batch(&self) {
        if self.threaded.load(Ordering::Relaxed) && !self.in_dispatch() {
            self.kick();
        }
    }

    pub fn set_threaded(&self) {
        self.threaded.store(true, Ordering::SeqCst);
    }

    pub fn is_threaded(&self) -> bool {
        self.threaded.load(Ordering::Relaxed)
    }

    /// Wakes the engine thread, unless a wake is already on its way.
    pub fn kick(&self) {
        if !self.kick_pending.swap(true, Ordering::SeqCst) {
            self.exec.wake_main();
        }
    }

    /// The engine thread starts a poll: later kicks must wake it again.
    pub fn clear_kick(&self) {
        self.kick_pending.store(false, Ordering::SeqCst);
    }

    /// True when the engine thread must notify the loop thread (the first
    /// time events are seen since the loop thread last took them).
    pub fn should_notify(&self) -> bool {
        self.has_events() && !self.notified.swap(true, Ordering::SeqCst)
    }

    /// The loop thread is about to take the events: the next ones notify.
    pub fn clear_notified(&self) {
        self.notified.store(false, Ordering::SeqCst);
    }

    /// Threaded mode, end of a batch: one wake for what it queued.
    pub fn kick_if_queued(&self) {
        if !lock(&self.to_wake).is_empty() || !lock(&self.deferred).is_empty() {
            self.kick();
        }
    }

    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.kick_pending.store(false, Ordering::SeqCst);
        self.kick();
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn in_dispatch(&self) -> bool {
        self.in_dispatch.load(Ordering::Relaxed)
    }

    pub fn set_in_dispatch(&self, on: bool) {
        self.in_dispatch.store(on, Ordering::Relaxed);
    }

    /// Writes what was deferred: at the end of a dispatch batch and of each
    /// loop iteration.
    pub fn flush_deferred(&self) {
        let list = std::mem::take(&mut *lock(&self.deferred));
        for conn in list {
            conn.flush_deferred();
        }
    }

    pub fn register(&self, id: ConnId, conn: Arc<dyn Connection>) {
        lock(&self.conns).insert(id, conn);
    }

    pub fn unregister(&self, id: ConnId) {
        lock(&self.conns).remove(&id);
    }

    /// Stops new requests: idle connections close, busy ones close after
    /// their current response.
    pub fn begin_shutdown(&self) {
        self.shutdown.trigger();
        let conns: Vec<_> = lock(&self.conns).values().cloned().collect();
        for c in conns {
            c.on_shutdown();
        }
    }
}
