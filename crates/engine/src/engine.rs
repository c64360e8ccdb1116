//! The whole engine as one object: a tokio current-thread runtime, the
//! listener, the server's shared state and the poller behind asyncio's
//! selector. The extension module wraps it; it knows no Python.
//!
//! One loop iteration, as `select()` drives it:
//! 1. [`Engine::wait`] (without the GIL): write what the last iteration
//!    deferred, wake the drivers the loop thread scheduled, then poll the
//!    drivers inside `block_on` until a Python fd is ready, an event is
//!    queued, or the timeout passes;
//! 2. [`Engine::ready_fds`]: the Python fds that are ready;
//! 3. the bridge takes the events ([`Engine::take_events`]) and handles
//!    them between [`Engine::begin_batch`] and [`Engine::end_batch`].

use std::future::Future;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use crate::net::listener::{self, StdListener};
use crate::runtime::executor::TaskId;
use crate::runtime::lock;
use crate::runtime::poller::Poller;
use crate::server::accept::accept_loop;
use crate::server::config::ServerConfig;
use crate::server::exchange::Event;
use crate::server::shared::Shared;
use crate::server::stats::Stats;

/// Where to listen.
pub enum Bind {
    Tcp {
        host: String,
        port: u16,
    },
    Unix(String),
    /// An inherited listening socket (TCP or Unix).
    Fd(i32),
}

/// The eventfd through which the engine thread tells the loop thread that
/// events are queued (embedded mode: the loop watches it with `add_reader`).
pub struct EventFd(std::os::fd::OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscall; the fd is owned from here on.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a new descriptor nobody else owns.
        Ok(Self(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    pub fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }

    /// Makes the fd readable (the counter only grows: never blocks).
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own fd.
        unsafe { libc::write(self.fd(), (&one as *const u64).cast(), 8) };
    }

    /// Resets the counter (non-blocking: fine when already zero).
    pub fn drain(&self) {
        let mut n: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own fd.
        unsafe { libc::read(self.fd(), (&mut n as *mut u64).cast(), 8) };
    }
}

/// How long [`Engine::wait`] may block.
#[derive(Debug, Clone, Copy)]
pub enum Wait {
    /// Python has ready callbacks: let the I/O driver run once, then return.
    Poll,
    Forever,
    For(Duration),
}

impl Wait {
    /// asyncio's selector timeout: None = forever, <= 0 = poll.
    pub fn from_timeout(timeout: Option<f64>) -> Self {
        match timeout {
            None => Wait::Forever,
            Some(t) if t <= 0.0 || t.is_nan() => Wait::Poll,
            Some(t) => {
                Wait::For(Duration::try_from_secs_f64(t).unwrap_or(Duration::from_secs(86400)))
            }
        }
    }
}

pub struct Engine {
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    poller: Poller,
    listeners: Mutex<Vec<StdListener>>,
    accept: Mutex<Vec<TaskId>>,
    /// Per listener: `(host, port)`, or `(path, 0)` on a Unix domain socket.
    addrs: Vec<(String, u16)>,
    scratch: Mutex<Vec<libc::epoll_event>>,
}

impl Engine {
    /// Binds (or adopts) the listening socket; serving starts with
    /// [`Engine::start`].
    pub fn new(cfg: ServerConfig, bind: &Bind, backlog: i32) -> io::Result<Self> {
        Self::with_binds(cfg, std::slice::from_ref(bind), backlog)
    }

    /// Binds (or adopts) every listening socket in `binds` (at least one);
    /// serving starts with [`Engine::start`].
    pub fn with_binds(cfg: ServerConfig, binds: &[Bind], backlog: i32) -> io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let mut listeners = Vec::with_capacity(binds.len());
        let mut addrs = Vec::with_capacity(binds.len());
        for bind in binds {
            let std_listener = match bind {
                Bind::Fd(fd) => listener::from_fd(*fd)?,
                Bind::Unix(path) => listener::bind_unix(path, backlog)?,
                Bind::Tcp { host, port } => listener::bind(host, *port, backlog)?,
            };
            addrs.push(std_listener.describe()?);
            listeners.push(std_listener);
        }
        let poller = {
            let _guard = rt.enter();
            Poller::new()?
        };
        Ok(Self {
            rt,
            shared: Arc::new(Shared::new(cfg)),
            poller,
            listeners: Mutex::new(listeners),
            accept: Mutex::new(Vec::new()),
            addrs,
            scratch: Mutex::new(Vec::with_capacity(64)),
        })
    }

    /// The first listener's address.
    pub fn bound_address(&self) -> (String, u16) {
        self.addrs[0].clone()
    }

    /// Every listener's address, in the order of the binds.
    pub fn bound_addresses(&self) -> &[(String, u16)] {
        &self.addrs
    }

    /// The level-triggered epoll for the fds asyncio registers.
    pub fn poller(&self) -> &Poller {
        &self.poller
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Starts accepting connections.
    pub fn start(&self) -> io::Result<()> {
        let listeners = std::mem::take(&mut *lock(&self.listeners));
        if listeners.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "listener already closed",
            ));
        }
        let _guard = self.rt.enter();
        for std_listener in listeners {
            let l = std_listener.into_tokio()?;
            let id = self.shared.exec.spawn(accept_loop(l, self.shared.clone()));
            lock(&self.accept).push(id);
        }
        Ok(())
    }

    /// Runs the engine until a Python fd is ready, an event is queued for
    /// the bridge, or `wait` passes. Touches no Python: call it with the
    /// GIL released.
    pub fn wait(&self, wait: Wait) {
        let shared = &*self.shared;
        Stats::inc(&shared.stats.selects);
        // The loop iteration that called us has ended: write what it
        // deferred before waiting.
        shared.flush_deferred();
        let poller = &self.poller;
        let exec = &shared.exec;
        self.rt.block_on(async {
            shared.wake_scheduled();
            let mut sleep = match wait {
                Wait::For(d) => Some(Box::pin(tokio::time::sleep(d))),
                _ => None,
            };
            let mut first = true;
            let app_threads = shared.cfg.app_threads;
            std::future::poll_fn(|cx| {
                if app_threads {
                    shared.poll_remote(cx.waker());
                }
                // Connections read and parse right here, so a parsed
                // request returns at once (see runtime::executor).
                exec.run_ready(cx);
                if shared.has_events() || poller.poll_readable(cx) {
                    return Poll::Ready(());
                }
                match wait {
                    // Python is busy: let the I/O driver run once (a
                    // non-blocking epoll_wait), so accepts and reads
                    // progress, then return.
                    Wait::Poll if first => {
                        first = false;
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    Wait::Poll => Poll::Ready(()),
                    Wait::Forever => Poll::Pending,
                    Wait::For(_) => match sleep.as_mut() {
                        Some(s) => s.as_mut().poll(cx),
                        None => Poll::Ready(()),
                    },
                }
            })
            .await
        });
    }

    /// Embedded mode: runs the engine on the calling thread (one of its
    /// own) until [`Engine::stop_thread`], calling `notify` once whenever
    /// events wait for the loop thread (it writes the eventfd the loop
    /// watches). The loop thread's wake-ups (`to_wake`) and deferred writes
    /// reach this thread through [`Shared::kick`].
    pub fn run_threaded(&self, notify: &dyn Fn()) {
        let shared = &*self.shared;
        shared.set_threaded();
        let exec = &shared.exec;
        self.rt.block_on(std::future::poll_fn(|cx| {
            shared.clear_kick();
            if shared.stop_requested() {
                return Poll::Ready(());
            }
            shared.wake_scheduled();
            if !shared.in_dispatch() {
                // Written by the loop thread at its batch's end otherwise.
                shared.flush_deferred();
            }
            exec.run_ready(cx);
            if shared.should_notify() {
                notify();
            }
            Poll::Pending
        }));
    }

    /// Ends [`Engine::run_threaded`] (from any thread).
    pub fn stop_thread(&self) {
        self.shared.request_stop();
    }

    /// The loop thread takes the events the engine thread notified.
    pub fn take_notified(&self, batch: &mut Vec<Event>) {
        self.shared.clear_notified();
        self.shared.take_events(batch);
    }

    /// The Python fds that are ready, as `(fd, selectors events)`.
    pub fn ready_fds(&self, out: &mut Vec<(i32, u32)>) {
        let mut scratch = lock(&self.scratch);
        self.poller.poll_now(&mut scratch, out);
    }

    /// Moves the queued events into `batch` (which should be empty).
    pub fn take_events(&self, batch: &mut Vec<Event>) {
        self.shared.take_events(batch);
    }

    /// The bridge starts handling a batch: responses that end now are
    /// written when it ends.
    pub fn begin_batch(&self) {
        self.shared.set_in_dispatch(true);
    }

    pub fn end_batch(&self) {
        self.shared.set_in_dispatch(false);
        self.shared.flush_deferred();
        if self.shared.is_threaded() {
            // One wake of the engine thread for the whole batch.
            self.shared.kick_if_queued();
        }
    }

    /// Stops accepting; idle keep-alive connections close, busy ones close
    /// after their current response (which carries `Connection: close`).
    pub fn shutdown(&self) {
        let ids = std::mem::take(&mut *lock(&self.accept));
        if !ids.is_empty() {
            let _guard = self.rt.enter();
            for id in ids {
                self.shared.exec.cancel(id);
            }
        }
        lock(&self.listeners).clear();
        self.shared.begin_shutdown();
    }

    /// Requests whose response is not complete yet.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> Vec<(String, u64)> {
        self.shared.stats.snapshot()
    }
}

impl Engine {
    /// Drops every connection and listener future (their sockets close),
    /// inside the runtime their sockets and timers belong to. Call once no
    /// thread runs the engine.
    pub fn close(&self) {
        let _guard = self.rt.enter();
        self.shared.exec.clear();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // The connection futures hold the engine's shared state (a cycle).
        self.close();
    }
}
