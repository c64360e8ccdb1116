"""``--workers N``: one supervisor process, N worker processes.

The supervisor binds the listening socket(s), then forks the workers; each
runs a :class:`~ferrule.server.Server` on an inherited copy of a socket. The
supervisor never creates an event loop or an engine, so forking is safe.

Sockets: by default one socket shared by every worker (the kernel hands
each connection to one of the accepting workers). With ``--reuse-port`` the
supervisor binds one SO_REUSEPORT socket per worker *slot* and the kernel
spreads connections over the slots; the supervisor keeps every slot's
socket open, so a worker that exits (reload, health check, crash, request
limit) never closes a queue: its replacement accepts what waited there.

Each worker has a control channel (:mod:`ferrule._control`): it says
``ready`` once it serves, answers health-check pings and ``stats``
requests, and stops when the supervisor is gone. Signals:

* SIGINT/SIGTERM: stop every worker gracefully, then exit;
* SIGHUP: rolling reload: for each worker, start a new one (which imports
  the app again), wait for its ``ready``, then stop the old one gracefully;
* SIGTTIN/SIGTTOU: one worker more / one fewer.

A worker that exits on its own is replaced; one that does not answer a
ping within ``timeout_worker_healthcheck`` seconds is killed and replaced.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import os
import selectors
import signal
import site
import socket
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ._control import (
    PING,
    FINAL,
    PONG,
    READY,
    STATS,
    WorkerLink,
    encode_request,
    parse_reply,
    split_lines,
)
from ._sockets import announce, bind, remove_uds, startup_failure
from .metrics import GAUGES, MetricsThread, parse_bind
from .config import Config, ConfigError
from .importer import ImportFromStringError

logger = logging.getLogger("ferrule.error")

# How often the supervisor pings each ready worker.
HEALTH_INTERVAL = 1.0
# How long a reload waits for a new worker's "ready" before giving up (and
# keeping the old worker): an app may load slowly, but not forever.
READY_TIMEOUT = 60.0

_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)

RunWorker = Callable[[Config, WorkerLink], int]


@dataclass(eq=False)
class _Worker:
    pid: int
    link: socket.socket  # the supervisor's end of the control channel
    slot: int
    started: float
    ready: bool = False
    retiring: bool = False  # told to stop: not replaced when it exits
    killed: bool = False
    ping_id: int | None = None  # the unanswered ping, if any
    ping_sent: float = 0.0
    inbox: bytearray = field(default_factory=bytearray)


class Supervisor:
    def __init__(self, config: Config, run_worker: RunWorker | None = None) -> None:
        self.config = config
        self.workers: dict[int, _Worker] = {}  # pid -> worker
        self.should_exit = False
        self._run_worker = run_worker or _run_worker
        self._count = config.workers  # the number of workers to keep
        self._reuse_port = False
        # slot -> listening socket; without reuse-port, slot 0's socket
        # serves every slot.
        self._sockets: dict[int, socket.socket] = {}
        self._signals: list[int] = []
        # Guards ``workers``' membership, the channels' sends and the stats
        # replies: worker_stats() may run in another thread.
        self._lock = threading.Lock()
        self._replied = threading.Condition(self._lock)
        self._waiting: dict[int, int] = {}  # stats request id -> pid
        self._replies: dict[int, object] = {}
        self._ids = itertools.count(1)
        self._selector: selectors.BaseSelector | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._main_thread: int | None = None
        # Rolling reload: old workers still to replace, the (old, new) pair
        # being replaced, and whether another SIGHUP came meanwhile.
        self._reload: list[int] = []
        self._replacing: tuple[int, int, float] | None = None
        self._reload_again = False
        # After the first SIGHUP, every new worker imports the app anew.
        self._fresh = False
        # The last counters of workers that have stopped (metrics' sum).
        self._retired: dict[str, int] = {}
        # Workers whose final counters are in _retired: a live answer they
        # gave just before is not counted again.
        self._retired_pids: set[int] = set()
        #: Where ``--metrics-bind`` serves, once serving.
        self.metrics_address: tuple[str, int] | None = None
        self._metrics: MetricsThread | None = None
        # Slots whose worker could not be forked again (EAGAIN under a
        # process limit, EMFILE): retried on each pass of the main loop.
        self._unfilled: list[int] = []

    # ----------------------------------------------------------- public API

    def run(self) -> int:
        try:
            self._open_sockets()
        except OSError as exc:
            self._close_sockets()
            return startup_failure(self.config, exc)
        announce(self._sockets[0], "https" if self.config.is_ssl else "http")
        logger.info("Started parent process [%d]", os.getpid())
        selector = self._selector = selectors.DefaultSelector()
        wake_r, wake_w = self._wake = socket.socketpair()
        for sock in (wake_r, wake_w):
            sock.setblocking(False)
        selector.register(wake_r, selectors.EVENT_READ, None)
        self._main_thread = threading.get_ident()
        # A signal's number lands on the wake socket, so the selector
        # returns at once; the handlers only queue it.
        previous_wakeup = signal.set_wakeup_fd(
            wake_w.fileno(), warn_on_full_buffer=False
        )
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _SIGNALS}
        status = 0
        try:
            try:
                self._metrics = self._start_metrics()
            except OSError as exc:
                logger.error(
                    "Could not serve metrics on %s: %s",
                    self.config.metrics_bind,
                    exc.strerror or exc,
                )
                status = 3
            else:
                for slot in range(self._count):
                    self._spawn(slot)
                status = self._supervise()
        except OSError as exc:
            # fork() or socketpair() failed while starting the workers.
            logger.error("Could not start the worker processes: %s", exc)
            status = 1
        finally:
            if self._metrics is not None:
                self._metrics.stop()
                self._metrics = None
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            self._main_thread = None
            selector.close()
            wake_r.close()
            wake_w.close()
            self._close_sockets()
            remove_uds(self.config)
        logger.info("Stopping parent process [%d]", os.getpid())
        return status

    def _start_metrics(self) -> MetricsThread | None:
        """``--metrics-bind``: served here, from every worker's counters."""
        if self.config.metrics_bind is None:
            return None
        self.config.metrics_by_supervisor = True
        host, port = parse_bind(self.config.metrics_bind)
        metrics = MetricsThread(host, port, self.metrics_series)
        metrics.start()
        self.metrics_address = metrics.address
        logger.info("Metrics on http://%s:%d/metrics", *metrics.address)
        return metrics

    def metrics_series(self) -> dict[str, dict[str, int]]:
        """The metrics' series: each worker by pid, and ``all``, their sum
        plus the last counters of the workers that have stopped."""
        live = self.worker_stats(1.0)
        with self._lock:
            total = dict(self._retired)
            live = {p: s for p, s in live.items() if p not in self._retired_pids}
        for stats in live.values():
            for key, value in stats.items():
                total[key] = total.get(key, 0) + value
        return {"all": total, **{str(pid): stats for pid, stats in live.items()}}

    def worker_stats(self, timeout: float = 1.0) -> dict[int, dict[str, int]]:
        """Each ready worker's engine counters (``Server.stats()``), by pid.

        Safe to call from any thread of the supervisor; a worker that does
        not answer within ``timeout`` seconds is left out.
        """
        deadline = time.monotonic() + timeout
        asked: dict[int, int] = {}  # request id -> pid
        with self._lock:
            for worker in self.workers.values():
                if worker.ready and not worker.killed:
                    ident = self._ask(worker, STATS)
                    if ident is not None:
                        asked[ident] = worker.pid
                        self._waiting[ident] = worker.pid
        try:
            if threading.get_ident() == self._main_thread:
                # The thread that reads the channels is asking: read here.
                while not self._answered(asked):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._pump(left)
            else:
                with self._replied:
                    while not self._answered(asked):
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._replied.wait(left)
            with self._lock:
                result: dict[int, dict[str, int]] = {}
                for ident, pid in asked.items():
                    reply = self._replies.get(ident)
                    if isinstance(reply, dict):
                        result[pid] = reply
                return result
        finally:
            with self._lock:
                for ident in asked:
                    self._waiting.pop(ident, None)
                    self._replies.pop(ident, None)

    # ------------------------------------------------------------- the loop

    def _supervise(self) -> int:
        """Runs until told to stop; returns the exit status."""
        while True:
            self._pump(self._next_wakeup())
            self._handle_signals()
            if self.should_exit:
                return 0
            status = self._reap()
            if status is not None:
                return status
            self._refill()
            self._check_health()
            self._advance_reload()

    def _respawn(self, slot: int) -> _Worker | None:
        """A new worker in ``slot``; if the system cannot start one now,
        one line, and the slot is retried about once a second."""
        try:
            return self._spawn(slot)
        except OSError as exc:
            if slot not in self._unfilled:
                logger.error("Cannot start a worker now (%s); retrying.", exc)
                self._unfilled.append(slot)
            return None

    def _refill(self) -> None:
        for slot in list(self._unfilled):
            self._unfilled.remove(slot)
            if self._respawn(slot) is not None:
                logger.info("Started the worker that could not start before.")

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signals.append(signum)

    def _handle_signals(self) -> None:
        while self._signals:
            sig = self._signals.pop(0)
            if sig in (signal.SIGINT, signal.SIGTERM):
                self.should_exit = True
            elif sig == signal.SIGHUP:
                self._start_reload()
            elif sig == signal.SIGTTIN:
                self._add_worker()
            elif sig == signal.SIGTTOU:
                self._remove_worker()
            # SIGCHLD only wakes the loop: _reap() follows.

    def _next_wakeup(self) -> float:
        now = time.monotonic()
        timeout = float(self.config.timeout_worker_healthcheck)
        wakeup = now + 1.0
        for worker in self.workers.values():
            if not worker.ready or worker.killed:
                continue
            if worker.ping_id is None:
                wakeup = min(wakeup, worker.ping_sent + HEALTH_INTERVAL)
            else:
                wakeup = min(wakeup, worker.ping_sent + timeout)
        return max(0.0, wakeup - now)

    def _pump(self, timeout: float) -> None:
        """Reads what the workers said, for up to ``timeout`` seconds."""
        assert self._selector is not None
        for key, _ in self._selector.select(timeout):
            worker = key.data
            if worker is None:  # the wake socket
                try:
                    while key.fileobj.recv(512):  # type: ignore[union-attr]
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
                continue
            try:
                data = worker.link.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                # The worker is gone or going: waitpid() says how.
                self._selector.unregister(worker.link)
                self._no_more_replies(worker)
                continue
            for line in split_lines(worker.inbox, data):
                self._dispatch(worker, line)

    def _dispatch(self, worker: _Worker, line: str) -> None:
        kind, ident, payload = parse_reply(line)
        if kind == READY:
            worker.ready = True
            worker.ping_sent = time.monotonic()  # first ping one interval on
        elif kind == PONG:
            if ident is not None and ident == worker.ping_id:
                worker.ping_id = None
        elif kind == FINAL and isinstance(payload, dict):
            with self._lock:
                self._retired_pids.add(worker.pid)
                for key, value in payload.items():
                    if key not in GAUGES and isinstance(value, int):
                        self._retired[key] = self._retired.get(key, 0) + value
        elif kind == STATS and ident is not None:
            with self._replied:
                if ident in self._waiting:
                    self._replies[ident] = payload
                    self._replied.notify_all()

    def _no_more_replies(self, worker: _Worker) -> None:
        """A worker's channel closed: its pending stats requests are over
        (without an answer), so worker_stats() need not wait for them."""
        with self._replied:
            for ident, pid in self._waiting.items():
                if pid == worker.pid:
                    self._replies.setdefault(ident, None)
            self._replied.notify_all()

    def _answered(self, asked: dict[int, int]) -> bool:
        return all(ident in self._replies for ident in asked)

    def _ask(self, worker: _Worker, kind: str) -> int | None:
        """Sends a request (the lock is held); its id, or None if the
        channel is closed."""
        ident = next(self._ids)
        try:
            # A dozen bytes into a socket the worker reads all the time:
            # never a partial write in practice.
            worker.link.send(encode_request(kind, ident))
        except OSError:
            return None
        return ident

    # ------------------------------------------------------------- workers

    def _spawn(self, slot: int) -> _Worker:
        listener = self._listener(slot)
        ours, theirs = socket.socketpair()
        # Until the new worker has reset its handlers, a signal sent to it
        # (a SIGTERM right after SIGTTIN, say) would run the supervisor's
        # handler there and be lost: keep signals pending across the fork.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            raise
        if pid == 0:  # the worker
            status = 1
            try:
                ours.close()
                self.config.fd = os.dup(listener.fileno())
                self._leave_supervisor()
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                if self._fresh:
                    _forget_app(self.config)
                status = self._run_worker(self.config, WorkerLink(theirs))
            except (ImportFromStringError, ConfigError) as exc:
                # A bad app string or module after a reload: one line, as
                # the command line says it, not a traceback per worker.
                logger.error("Error loading ASGI app. %s", exc)
            except (
                BaseException
            ):  # noqa: BLE001 - a worker must never return into the parent's code
                logger.exception("Worker process failed")
            finally:
                os._exit(status)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        theirs.close()
        ours.setblocking(False)
        worker = _Worker(pid, ours, slot, time.monotonic())
        with self._lock:
            self.workers[pid] = worker
        assert self._selector is not None
        self._selector.register(ours, selectors.EVENT_READ, worker)
        return worker

    def _leave_supervisor(self) -> None:
        """In a new worker: drop what belongs to the supervisor. Its ends of
        the other workers' channels above all: a worker holding one would
        keep that worker from seeing EOF when the supervisor dies."""
        signal.set_wakeup_fd(-1)
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        # Reloading is the supervisor's business: a hangup sent to the whole
        # process group must not kill the workers.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        if self._selector is not None:
            self._selector.close()
        if self._wake is not None:
            for sock in self._wake:
                sock.close()
        for worker in self.workers.values():
            worker.link.close()
        for sock in self._sockets.values():
            sock.close()
        if self._metrics is not None:
            # The endpoint is the supervisor's: a worker must not keep its
            # port (a restarted supervisor could not bind it).
            self._metrics.close_in_child()

    def _reap(self) -> int | None:
        """Handles the workers that exited; an exit status when the
        supervisor must stop (a worker failed to start)."""
        while True:
            try:
                pid, wstatus = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid == 0:
                return None
            worker = self._forget(pid)
            if worker is None:
                continue
            status = self._exited(worker, os.waitstatus_to_exitcode(wstatus))
            if status is not None:
                return status

    def _forget(self, pid: int) -> _Worker | None:
        with self._lock:
            worker = self.workers.pop(pid, None)
            if worker is None:
                return None
            assert self._selector is not None
            try:
                self._selector.unregister(worker.link)
            except KeyError:
                pass
            worker.link.close()
        self._no_more_replies(worker)
        return worker

    def _exited(self, worker: _Worker, code: int) -> int | None:
        pid = worker.pid
        if worker.retiring:
            self._release_slot(worker.slot)
            return None
        if self._replacing is not None and pid == self._replacing[1]:
            old = self._replacing[0]
            if worker.ready:
                # It served, then died before the reload moved on: its own
                # replacement takes its place in the reload.
                logger.info("Worker [%d] exited (%d); starting a new one.", pid, code)
                started = self._respawn(worker.slot)
                if started is None:
                    self._end_reload()
                    return None
                self._replacing = (old, started.pid, time.monotonic())
                return None
            logger.error(
                "New worker [%d] exited (%d) before it was ready; "
                "keeping worker [%d] and stopping the reload.",
                pid,
                code,
                old,
            )
            self._end_reload()
            return None
        if not worker.ready and code > 0:
            # It exited by itself before serving (import error, lifespan
            # startup failed): a new one would fail the same way.
            logger.error("Worker [%d] failed to start (exit %d); stopping.", pid, code)
            return code
        if pid in self._reload:
            self._reload.remove(pid)
        if self._replacing is not None and pid == self._replacing[0]:
            # Its replacement is already starting in that slot.
            return None
        logger.info("Worker [%d] exited (%d); starting a new one.", pid, code)
        self._respawn(worker.slot)
        return None

    def _check_health(self) -> None:
        now = time.monotonic()
        timeout = self.config.timeout_worker_healthcheck
        for worker in list(self.workers.values()):
            if not worker.ready or worker.killed:
                continue
            if worker.ping_id is not None:
                if now - worker.ping_sent >= timeout:
                    logger.error(
                        "Worker [%d] did not answer a health check within %ds; "
                        "killing it.",
                        worker.pid,
                        timeout,
                    )
                    self._kill(worker)
            elif now - worker.ping_sent >= HEALTH_INTERVAL:
                with self._lock:
                    worker.ping_id = self._ask(worker, PING)
                worker.ping_sent = now
        if self._replacing is not None:
            old, new, started = self._replacing
            waited = self.workers.get(new)
            if waited is not None and not waited.ready:
                if now - started >= READY_TIMEOUT:
                    logger.error(
                        "New worker [%d] was not ready within %ds; "
                        "keeping worker [%d] and stopping the reload.",
                        new,
                        READY_TIMEOUT,
                        old,
                    )
                    self._kill(waited)
                    waited.retiring = True  # not replaced: the old one stays
                    self._end_reload()

    def _kill(self, worker: _Worker) -> None:
        # Straight SIGKILL: a worker whose loop does not run would never act
        # on a SIGTERM.
        worker.killed = True
        try:
            os.kill(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _retire(self, worker: _Worker) -> None:
        """Stops a worker gracefully (it finishes its requests)."""
        worker.retiring = True
        try:
            os.kill(worker.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def _stop_all(self) -> None:
        """Stops every worker gracefully and waits for them; a second
        SIGINT/SIGTERM meanwhile is passed on, so they stop at once."""
        for worker in list(self.workers.values()):
            self._retire(worker)
        self._signals.clear()
        forced = False
        while self.workers:
            self._pump(0.5)  # SIGCHLD wakes it
            if not forced and {signal.SIGINT, signal.SIGTERM} & set(self._signals):
                forced = True
                for worker in list(self.workers.values()):
                    try:
                        os.kill(worker.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            self._signals.clear()
            while self.workers:
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    pid = -1
                if pid == 0:
                    break
                if pid == -1:  # no child left (not ours to wait for)
                    for gone in list(self.workers):
                        self._forget(gone)
                    break
                self._forget(pid)

    # ------------------------------------------------------- reload, resize

    def _start_reload(self) -> None:
        logger.info("Received SIGHUP, replacing the workers one by one.")
        if not isinstance(self.config.app, str):
            logger.warning(
                "The app was given as an object, not an import string: "
                "the new workers serve the same code."
            )
        self._fresh = True
        if self._reload or self._replacing is not None:
            # The code may have changed again since the workers started so
            # far were forked: replace them all once more afterwards.
            self._reload_again = True
            return
        self._reload = [w.pid for w in self.workers.values() if not w.retiring]

    def _advance_reload(self) -> None:
        while True:
            if self._replacing is not None:
                old_pid, new_pid, _ = self._replacing
                new = self.workers.get(new_pid)
                if new is None or not new.ready:
                    return
                self._replacing = None
                old = self.workers.get(old_pid)
                if old is not None and not old.retiring:
                    logger.info(
                        "Worker [%d] ready; stopping worker [%d].", new_pid, old_pid
                    )
                    self._retire(old)
            if not self._reload:
                if self._reload_again:
                    self._reload_again = False
                    self._reload = [
                        w.pid for w in self.workers.values() if not w.retiring
                    ]
                    continue
                return
            oldest = self.workers.get(self._reload.pop(0))
            if oldest is None or oldest.retiring:
                continue
            try:
                started = self._spawn(oldest.slot)
            except OSError as exc:
                logger.error(
                    "Cannot start a new worker (%s); stopping the reload.", exc
                )
                self._end_reload()
                return
            self._replacing = (oldest.pid, started.pid, time.monotonic())
            return

    def _end_reload(self) -> None:
        self._reload.clear()
        self._replacing = None
        self._reload_again = False

    def _reloading(self) -> bool:
        return bool(self._reload) or self._replacing is not None

    def _add_worker(self) -> None:
        if self._reloading():
            logger.warning("Received SIGTTIN during a reload; ignored.")
            return
        try:
            self._spawn(self._count)
        except OSError as exc:
            logger.error("Received SIGTTIN, but cannot add a worker: %s", exc)
            return
        self._count += 1
        logger.info("Received SIGTTIN: %d workers.", self._count)

    def _remove_worker(self) -> None:
        if self._reloading():
            logger.warning("Received SIGTTOU during a reload; ignored.")
            return
        active = [w for w in self.workers.values() if not w.retiring]
        if self._count <= 1 or not active:
            logger.info("Received SIGTTOU, but one worker is the minimum.")
            return
        self._count -= 1
        worker = max(active, key=lambda w: (w.slot, w.started))
        logger.info(
            "Received SIGTTOU: stopping worker [%d]; %d workers.",
            worker.pid,
            self._count,
        )
        self._retire(worker)

    # ------------------------------------------------------------- sockets

    def _open_sockets(self) -> None:
        config = self.config
        reuse = config.reuse_port
        if reuse and (config.uds is not None or config.fd is not None):
            logger.warning(
                "--reuse-port does not apply to --uds or --fd: "
                "the workers share one socket."
            )
            reuse = False
        self._reuse_port = reuse
        if not reuse:
            self._sockets[0] = bind(config)
            return
        first = self._sockets[0] = _bind_reuse_port(config, config.port)
        for slot in range(1, self._count):
            self._sockets[slot] = _bind_reuse_port(config, first.getsockname()[1])

    def _listener(self, slot: int) -> socket.socket:
        if not self._reuse_port:
            return self._sockets[0]
        sock = self._sockets.get(slot)
        if sock is None:
            port = self._sockets[0].getsockname()[1]
            sock = self._sockets[slot] = _bind_reuse_port(self.config, port)
        return sock

    def _release_slot(self, slot: int) -> None:
        """Closes a removed slot's socket once no worker uses it. Connections
        still queued in it are reset by the kernel (unless the sysctl
        net.ipv4.tcp_migrate_req moves them to another socket): the one case
        of --reuse-port that can fail a connection, SIGTTOU."""
        if not self._reuse_port or slot < self._count:
            return
        if any(w.slot == slot for w in self.workers.values()):
            return
        sock = self._sockets.pop(slot, None)
        if sock is not None:
            sock.close()

    def _close_sockets(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()


def _bind_reuse_port(config: Config, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((config.host, port))
        sock.listen(config.backlog)
    except BaseException:
        sock.close()
        raise
    return sock


# Where installed code lives (sysconfig's names): never imported again.
_INSTALLED = ("stdlib", "platstdlib", "purelib", "platlib")


def _forget_app(config: Config) -> None:
    """In a worker forked after a SIGHUP: drop the app the supervisor
    imported, and the modules under the app directory, so that the worker
    imports the current code. Installed packages (site-packages, the
    standard library, ferrule) keep the version already imported."""
    config.loaded_app = None
    if not isinstance(config.app, str):
        return
    root = os.path.join(os.path.realpath(config.app_dir or os.getcwd()), "")
    kept = {
        os.path.realpath(path)
        for path in (
            *(sysconfig.get_path(n) for n in _INSTALLED),
            *site.getsitepackages(),
            site.getusersitepackages(),
            os.path.dirname(__file__),
        )
    }
    for name, module in list(sys.modules.items()):
        filename = getattr(module, "__file__", None)
        if not filename:
            continue
        path = os.path.realpath(filename)
        if not path.startswith(root):
            continue
        if any(path.startswith(k + os.sep) for k in kept):
            continue
        if {"site-packages", "dist-packages"} & set(path.split(os.sep)):
            continue
        del sys.modules[name]
    importlib.invalidate_caches()


def serve(config: Config) -> int:
    """Run ``config`` to completion: one in-process server, or a supervisor
    with ``config.workers`` worker processes. Returns the exit status."""
    if config.workers > 1:
        return Supervisor(config).run()
    if config.reuse_port:
        logger.warning("--reuse-port has no effect without --workers 2 or more.")
    return _run_worker(config)


def _run_worker(config: Config, link: WorkerLink | None = None) -> int:
    from .server import Server

    server = Server(config)
    server.link = link
    return server.run()
