//! A small executor for the accept loop and the connection futures, polled
//! from inside `select()`'s `block_on` future instead of as tokio tasks.
//!
//! Why: on tokio's current-thread scheduler, a spawned task that wakes the
//! `block_on` future (a request was parsed) makes the scheduler poll the I/O
//! driver once more, `epoll_wait(.., 0)`, before it returns to that future:
//! a fourth syscall per request at one connection. Polled here, a readable
//! connection is read and parsed in the same poll of the `block_on` future
//! the I/O driver woke, and `select()` returns at once: `epoll_wait`,
//! `recvfrom`, then the app's `sendto` (3 syscalls, as nginx).
//!
//! Each future has a waker that queues its slot and wakes the `block_on`
//! future; a poll runs the queued futures. The futures run unconstrained by
//! tokio's cooperative budget (the budget of the one `block_on` poll would
//! otherwise be shared by every connection ready in it).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use super::lock;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Slot {
    /// None while the future is being polled, or once it ended.
    fut: Option<BoxFuture>,
    waker: Arc<TaskWaker>,
    /// Tells the task a `TaskId` names from a later one in the same slot.
    generation: u64,
}

struct ReadyQueue {
    ids: Mutex<Vec<usize>>,
    /// The `block_on` future's waker, from its latest poll.
    main: Mutex<Option<Waker>>,
}

struct TaskWaker {
    id: usize,
    queued: AtomicBool,
    queue: Arc<ReadyQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            lock(&self.queue.ids).push(self.id);
            if let Some(w) = lock(&self.queue.main).as_ref() {
                w.wake_by_ref();
            }
        }
    }
}

/// Identifies a spawned future, to cancel it.
#[derive(Clone, Copy, Debug)]
pub struct TaskId {
    slot: usize,
    generation: u64,
}

pub struct Executor {
    slots: Mutex<Vec<Slot>>,
    generation: AtomicU64,
    free: Mutex<Vec<usize>>,
    queue: Arc<ReadyQueue>,
}

impl Default for Executor {
    fn default() -> Self {
        Self::new()
    }
}

impl Executor {
    pub fn new() -> Self {
        Self {
            slots: Mutex::new(Vec::with_capacity(64)),
            generation: AtomicU64::new(0),
            free: Mutex::new(Vec::new()),
            queue: Arc::new(ReadyQueue {
                ids: Mutex::new(Vec::with_capacity(64)),
                main: Mutex::new(None),
            }),
        }
    }

    /// Adds a future; it is first polled by the next `run_ready`.
    pub fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) -> TaskId {
        let fut: BoxFuture = Box::pin(tokio::task::unconstrained(fut));
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let mut slots = lock(&self.slots);
        let slot = lock(&self.free).pop().unwrap_or(slots.len());
        let waker = self.new_waker(slot);
        let entry = Slot {
            fut: Some(fut),
            waker: waker.clone(),
            generation,
        };
        if slot == slots.len() {
            slots.push(entry);
        } else {
            slots[slot] = entry;
        }
        drop(slots);
        waker.wake_by_ref();
        TaskId { slot, generation }
    }

    fn new_waker(&self, id: usize) -> Arc<TaskWaker> {
        Arc::new(TaskWaker {
            id,
            queued: AtomicBool::new(false),
            queue: self.queue.clone(),
        })
    }

    /// Drops a spawned future (if it is still the one `id` names).
    pub fn cancel(&self, id: TaskId) {
        let fut = {
            let mut slots = lock(&self.slots);
            match slots.get_mut(id.slot) {
                Some(s) if s.generation == id.generation => s.fut.take(),
                _ => None,
            }
        };
        if fut.is_some() {
            lock(&self.free).push(id.slot);
        }
        drop(fut);
    }

    /// Polls the futures whose wakers fired, as long as some keep firing
    /// (a bounded number of rounds); `cx` is the `block_on` future's.
    pub fn run_ready(&self, cx: &mut Context<'_>) {
        {
            let mut main = lock(&self.queue.main);
            if !main.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *main = Some(cx.waker().clone());
            }
        }
        let mut batch = Vec::new();
        for _ in 0..4 {
            std::mem::swap(&mut batch, &mut *lock(&self.queue.ids));
            if batch.is_empty() {
                return;
            }
            for slot in batch.drain(..) {
                self.poll_slot(slot);
            }
        }
    }

    fn poll_slot(&self, slot: usize) {
        let (mut fut, waker) = {
            let mut slots = lock(&self.slots);
            let Some(s) = slots.get_mut(slot) else {
                return;
            };
            s.waker.queued.store(false, Ordering::Release);
            let Some(fut) = s.fut.take() else {
                return;
            };
            (fut, s.waker.clone())
        };
        let task_waker = Waker::from(waker.clone());
        let mut tcx = Context::from_waker(&task_waker);
        // A panic ends that one connection, as it would a tokio task.
        let done = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fut.as_mut().poll(&mut tcx)
        })) {
            Ok(Poll::Pending) => false,
            Ok(Poll::Ready(())) | Err(_) => true,
        };
        if done {
            lock(&self.free).push(slot);
            drop(fut);
            return;
        }
        let mut slots = lock(&self.slots);
        // The slot is still ours: only cancel() or the end of the future
        // frees it, and neither can happen while the future is out here.
        if let Some(s) = slots.get_mut(slot) {
            if Arc::ptr_eq(&s.waker, &waker) {
                s.fut = Some(fut);
            }
        }
    }

    /// Wakes the `block_on` future that polls this executor, from another
    /// thread (the engine runs on a thread of its own when embedded).
    pub fn wake_main(&self) {
        if let Some(w) = lock(&self.queue.main).as_ref() {
            w.wake_by_ref();
        }
    }

    /// Drops every future (the engine is going away).
    pub fn clear(&self) {
        let futs: Vec<BoxFuture> = lock(&self.slots)
            .iter_mut()
            .filter_map(|s| s.fut.take())
            .collect();
        drop(futs);
        lock(&self.queue.main).take();
    }

    /// True when some future's waker fired since the last `run_ready`.
    #[cfg(test)]
    pub fn has_ready(&self) -> bool {
        !lock(&self.queue.ids).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn noop_cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    /// Pending until `gate` is set (and it is woken), counting its polls.
    struct Gate {
        open: Arc<AtomicBool>,
        polls: Arc<AtomicUsize>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Future for Gate {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.open.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *lock(&self.waker) = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    type GateParts = (
        Gate,
        Arc<AtomicBool>,
        Arc<AtomicUsize>,
        Arc<Mutex<Option<Waker>>>,
    );

    fn gate() -> GateParts {
        let g = Gate {
            open: Arc::new(AtomicBool::new(false)),
            polls: Arc::new(AtomicUsize::new(0)),
            waker: Arc::new(Mutex::new(None)),
        };
        let (o, p, w) = (g.open.clone(), g.polls.clone(), g.waker.clone());
        (g, o, p, w)
    }

    #[test]
    fn a_future_is_polled_once_when_spawned_and_again_only_when_woken() {
        let ex = Executor::new();
        let (g, open, polls, waker) = gate();
        ex.spawn(g);
        ex.run_ready(&mut noop_cx());
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        ex.run_ready(&mut noop_cx());
        assert_eq!(polls.load(Ordering::SeqCst), 1, "not woken: not polled");
        open.store(true, Ordering::SeqCst);
        lock(&waker).take().expect("waker").wake();
        assert!(ex.has_ready());
        ex.run_ready(&mut noop_cx());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
        assert!(!ex.has_ready());
        // Finished: its slot is free for the next future.
        assert_eq!(lock(&ex.free).len(), 1);
    }

    #[test]
    fn cancel_drops_the_named_future_but_not_a_later_one_in_its_slot() {
        let ex = Executor::new();
        let (g1, _, polls1, _) = gate();
        let id1 = ex.spawn(g1);
        ex.run_ready(&mut noop_cx());
        ex.cancel(id1);
        assert_eq!(Arc::strong_count(&polls1), 1, "the future was dropped");
        let (g2, _, polls2, waker2) = gate();
        let id2 = ex.spawn(g2);
        assert_eq!(id2.slot, id1.slot, "the slot is reused");
        ex.cancel(id1);
        ex.run_ready(&mut noop_cx());
        assert_eq!(
            polls2.load(Ordering::SeqCst),
            1,
            "the new future still runs"
        );
        lock(&waker2).take().expect("waker").wake();
        ex.run_ready(&mut noop_cx());
        assert_eq!(polls2.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_panicking_future_is_dropped_and_the_others_run_on() {
        let ex = Executor::new();
        ex.spawn(async { panic!("boom") });
        let (g, _, polls, _) = gate();
        ex.spawn(g);
        ex.run_ready(&mut noop_cx());
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        assert_eq!(lock(&ex.free).len(), 1);
    }
}
