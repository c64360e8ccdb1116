//! A level-triggered epoll of ferrule's own for the fds asyncio registers.
//!
//! asyncio expects level-triggered readiness; tokio's is edge-triggered. The
//! fds Python registers go into this inner epoll (level-triggered), and only
//! the inner epoll's own fd is registered with tokio. Its tokio readiness is
//! kept after a wake-up and cleared only when `epoll_wait(inner, 0)` finds
//! nothing, so a partly drained fd is never lost.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// `selectors.EVENT_READ` / `selectors.EVENT_WRITE`.
pub const EVENT_READ: u32 = 1;
pub const EVENT_WRITE: u32 = 2;

pub struct Poller {
    fd: AsyncFd<OwnedFd>,
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn to_epoll(events: u32) -> u32 {
    let mut ev = 0;
    if events & EVENT_READ != 0 {
        ev |= libc::EPOLLIN as u32;
    }
    if events & EVENT_WRITE != 0 {
        ev |= libc::EPOLLOUT as u32;
    }
    ev
}

/// Same mapping as `selectors.EpollSelector`: errors and hang-ups wake both
/// directions so the callback sees the failure on its next I/O call.
fn from_epoll(ev: u32) -> u32 {
    let mut out = 0;
    if ev & !(libc::EPOLLIN as u32) != 0 {
        out |= EVENT_WRITE;
    }
    if ev & !(libc::EPOLLOUT as u32) != 0 {
        out |= EVENT_READ;
    }
    out
}

impl Poller {
    /// Must be called inside the tokio runtime's context (registration).
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 has no memory-safety preconditions; the
        // returned descriptor is fresh and owned by nobody else.
        let raw = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `raw` was just created above and is not owned elsewhere.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an OwnedFd returns the same open descriptor from every
        // `as_raw_fd()` call and keeps it open until the AsyncFd drops it.
        let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: to_epoll(events),
            u64: fd as u64,
        };
        // SAFETY: `ev` is a valid, initialised epoll_event living across the
        // call; the kernel validates both descriptors.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    pub fn register(&self, fd: RawFd, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events)
    }

    pub fn modify(&self, fd: RawFd, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events)
    }

    pub fn unregister(&self, fd: RawFd) -> io::Result<()> {
        match self.ctl(libc::EPOLL_CTL_DEL, fd, 0) {
            // Python may close an fd before unregistering it; the kernel
            // already dropped it from the set.
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
    }

    /// True when tokio says the inner epoll may be ready (does not clear
    /// it); otherwise `cx` is woken when it may be.
    pub fn poll_readable(&self, cx: &mut std::task::Context<'_>) -> bool {
        match self.fd.poll_read_ready(cx) {
            std::task::Poll::Ready(Ok(mut guard)) => {
                guard.retain_ready();
                true
            }
            std::task::Poll::Ready(Err(_)) => true,
            std::task::Poll::Pending => false,
        }
    }

    /// Non-blocking `epoll_wait(inner, 0)` when tokio says the inner epoll
    /// may be ready. Clears tokio's readiness only when nothing is ready.
    pub fn poll_now(&self, scratch: &mut Vec<libc::epoll_event>, out: &mut Vec<(i32, u32)>) {
        out.clear();
        if scratch.capacity() < 64 {
            scratch.reserve(64);
        }
        let res = self.fd.try_io(Interest::READABLE, |inner| {
            let cap = scratch.capacity().min(i32::MAX as usize) as libc::c_int;
            // SAFETY: the buffer has room for `cap` events; the kernel writes
            // at most that many and returns how many it wrote.
            let n =
                cvt(unsafe { libc::epoll_wait(inner.as_raw_fd(), scratch.as_mut_ptr(), cap, 0) })?;
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            // SAFETY: the kernel initialised the first `n` (<= cap) entries.
            unsafe { scratch.set_len(n as usize) };
            Ok(())
        });
        if res.is_ok() {
            out.extend(
                scratch
                    .iter()
                    .map(|ev| (ev.u64 as i32, from_epoll(ev.events))),
            );
            scratch.clear();
        }
    }
}
