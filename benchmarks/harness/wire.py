"""Wire checks: write syscalls per response on the client's connection, all
syscalls per response (strace -f -c), TCP data segments per response
(tcpdump on lo), and the split-request test."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time

from . import client, tls
from .util import CLIENT_CPU, log

WRITE_FAMILY = "write,writev,send,sendto,sendmsg,sendfile"


class _Tracer:
    """A strace or tcpdump child whose stderr is read in a thread, so we can
    wait until it is ready before the client connects."""

    def __init__(self, argv: list[str], ready: str, ready_count: int = 1):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(["taskset", "-c", CLIENT_CPU] + argv,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        end = time.time() + 15
        while time.time() < end:
            if sum(ready in line for line in self.lines) >= ready_count:
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited: {''.join(self.lines)[-500:]}")
            time.sleep(0.02)
        else:
            self.stop()
            raise RuntimeError(f"{argv[0]} not ready: {''.join(self.lines)[-500:]}")
        time.sleep(0.2)

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._t.join(5)


def _strace_args(pids: list[int]) -> list[str]:
    # -f with -p PID attaches every thread of PID (and follows new ones)
    a = ["strace", "-f"]
    for p in pids:
        a += ["-p", str(p)]
    return a


_RET = re.compile(r"\)\s+=\s+(-?\d+)")


def _record_result(rest: str, sizes: list[int]) -> int:
    """Adds a completed call's byte count to `sizes`; returns 1 for EAGAIN."""
    m = _RET.search(rest)
    if not m:
        return 0
    v = int(m.group(1))
    if v > 0:
        sizes.append(v)
        return 0
    return 1 if "EAGAIN" in rest else 0


def parse_write_trace(path: str, client_port: int) -> dict:
    """Counts write-family calls on the server-side socket of the client's
    connection (strace -yy prints `fd<TCP:[srv->127.0.0.1:client_port]>`)."""
    tag = f"->127.0.0.1:{client_port}]>"
    calls, eagain, sizes = 0, 0, []
    pending: dict[str, bool] = {}
    first_bytes: list[str] = []
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.split(None, 1)
            if len(parts) < 2:
                continue
            pid, rest = parts
            if "resumed>" in rest:
                if pending.pop(pid, False):
                    eagain += _record_result(rest, sizes)
                continue
            if tag not in rest:
                continue
            calls += 1
            if "<unfinished" in rest:
                pending[pid] = True
                continue
            eagain += _record_result(rest, sizes)
            if len(first_bytes) < 3:
                first_bytes.append(rest.strip()[:160])
    return {"calls": calls, "eagain": eagain, "sizes": sizes, "sample": first_bytes}


_HEX = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')


def parse_written_bytes(path: str, client_port: int) -> bytes:
    """The bytes the server wrote on the client's connection, in order, from a
    trace taken with `-xx -s 65536` (each call's strings, cut to its result)."""
    tag = f"->127.0.0.1:{client_port}]>"
    out = bytearray()
    pending: dict[str, bytes] = {}

    def take(data: bytes, rest: str) -> None:
        m = _RET.search(rest)
        if m and int(m.group(1)) > 0:
            out.extend(data[: int(m.group(1))])

    with open(path, errors="replace") as f:
        for line in f:
            parts = line.split(None, 1)
            if len(parts) < 2:
                continue
            pid, rest = parts
            if "resumed>" in rest:
                if pid in pending:
                    take(pending.pop(pid), rest)
                continue
            if tag not in rest:
                continue
            data = b"".join(bytes.fromhex(s.replace("\\x", "")) for s in _HEX.findall(rest))
            if "<unfinished" in rest:
                pending[pid] = data
            else:
                take(data, rest)
    return bytes(out)


def count_tls_records(stream: bytes) -> dict[int, int]:
    """TLS records in a byte stream, by content type (23 = application data)."""
    counts: dict[int, int] = {}
    pos = 0
    while pos + 5 <= len(stream):
        kind = stream[pos]
        counts[kind] = counts.get(kind, 0) + 1
        pos += 5 + int.from_bytes(stream[pos + 3:pos + 5], "big")
    return counts


def parse_strace_summary(path: str) -> tuple[int, list[tuple[str, int]]]:
    total, rows = 0, []
    with open(path, errors="replace") as f:
        for line in f:
            t = line.split()
            if not t or not re.match(r"^[\d.]+$", t[0]) or len(t) < 5:
                continue
            # % time, seconds, usecs/call, calls, [errors], syscall
            name = t[-1]
            calls = int(t[3])
            if name == "total":
                total = calls
            else:
                rows.append((name, calls))
    rows.sort(key=lambda r: -r[1])
    return total, rows


def _session(port: int, method: str, path: str):
    """A connection for one step: (client port, run(n) -> statuses, close).
    Over TLS the handshake and a first request are done before the step's
    trace starts; in the clear the connection is made inside run()."""
    if tls.FILES:
        conn = client.TLSKeepalive(port, method, path, tls.client_context())
        return conn.cport, conn.run, conn.close
    sock, cport = client.bound_socket()
    return cport, (lambda n: client.keepalive_run(sock, port, method, path, n)), sock.close


def check(running, case, n: int = 100) -> dict:
    """All wire checks for one server on one app case (server already warm).
    Over TLS also the TLS records per response, and no split-request test
    (it is about Nagle on the client's plain writes)."""
    port, method, path = running.port, case.method, case.path
    over_tls = bool(tls.FILES)
    out: dict = {"n": n, "tls": over_tls}
    pids = running.pids()
    workdir = running.server.workdir
    tag = f"{running.server.name}-{case.name}"

    # 1. write-family syscalls on the client's connection (over TLS with the
    # bytes, to count records)
    cport, run, close = _session(port, method, path)
    trace_file = os.path.join(workdir, f"strace-writes-{tag}.txt")
    data_args = ["-xx", "-s", "65536"] if over_tls else ["-s", "32"]
    tr = _Tracer(_strace_args(pids) + ["-yy", *data_args, "-e", f"trace={WRITE_FAMILY}",
                                       "-o", trace_file], "attached", len(pids))
    try:
        statuses = run(n)
    finally:
        time.sleep(0.2)
        tr.stop()
        close()
    w = parse_write_trace(trace_file, cport)
    out["status_ok"] = all(s == 200 for s in statuses)
    out["write_calls"] = w["calls"]
    out["writes_per_resp"] = w["calls"] / n
    out["eagain"] = w["eagain"]
    out["min_write_bytes"] = min(w["sizes"]) if w["sizes"] else None
    out["max_write_bytes"] = max(w["sizes"]) if w["sizes"] else None
    out["write_sample"] = [] if over_tls else w["sample"]
    if over_tls:
        records = count_tls_records(parse_written_bytes(trace_file, cport))
        out["tls_records"] = {str(k): v for k, v in records.items()}
        out["records_per_resp"] = sum(records.values()) / n

    # 2. every syscall of every server thread, per response
    cport, run, close = _session(port, method, path)
    summary_file = os.path.join(workdir, f"strace-c-{tag}.txt")
    tr = _Tracer(_strace_args(pids) + ["-c", "-o", summary_file], "attached", len(pids))
    try:
        run(n)
    finally:
        tr.stop()
        close()
    total, rows = parse_strace_summary(summary_file)
    out["syscalls_total"] = total
    out["syscalls_per_resp"] = total / n
    out["top_syscalls"] = [(name, round(c / n, 2)) for name, c in rows[:6]]

    # 3. TCP segments carrying response data (no strace attached)
    cport, run, close = _session(port, method, path)
    pcap = os.path.join(workdir, f"tcpdump-{tag}.pcap")
    bpf = (f"tcp and src port {port} and dst port {cport} and "
           "(((ip[2:2] - ((ip[0]&0xf)<<2)) - ((tcp[12]&0xf0)>>2)) != 0)")
    tr = _Tracer(["tcpdump", "-i", "lo", "-nn", "-U", "--immediate-mode", "-B", "16384", "-w", pcap, bpf],
                 "listening on")
    try:
        run(n)
    finally:
        time.sleep(0.3)
        tr.stop()
        close()
    r = subprocess.run(["tcpdump", "-r", pcap, "-nn"], capture_output=True, text=True)
    seg = [ln for ln in r.stdout.splitlines() if re.search(r"length [1-9]\d*$", ln)]
    dropped = re.search(r"(\d+) packets dropped by kernel", "".join(tr.lines))
    out["segments"] = len(seg)
    out["segments_per_resp"] = len(seg) / n
    out["tcpdump_dropped"] = int(dropped.group(1)) if dropped else 0

    # 4. split request, Nagle on in the client
    if over_tls:
        out["split"] = None
        extra = f"records/resp={out['records_per_resp']:.2f}"
    else:
        out["split"] = client.split_request_test(port, method, path, n)
        extra = (f"split>30ms={out['split']['over30']}/{n} "
                 f"(max {out['split']['max_ms']:.1f} ms)")
    log(f"  wire {running.server.name:9s} {case.name:16s} writes/resp={out['writes_per_resp']:.2f} "
        f"segs/resp={out['segments_per_resp']:.2f} syscalls/resp={out['syscalls_per_resp']:.2f} "
        + extra)
    return out
