"""Process-tree accounting (/proc), logging and small helpers."""
from __future__ import annotations

import os
import socket
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SERVER_CPU = "0"
CLIENT_CPU = "1"

_log_file = None


def set_log_file(path: str) -> None:
    global _log_file
    _log_file = open(path, "a", buffering=1)


def exit_on_sigterm(signum, frame) -> None:
    """SIGTERM handler: exiting runs the finally blocks, which stop the
    servers (they run in sessions of their own, so a kill would miss them)."""
    raise SystemExit(f"stopped by signal {signum}")


def log(msg: str) -> None:
    line = time.strftime("%H:%M:%S ") + msg
    print(line, flush=True)
    if _log_file:
        _log_file.write(line + "\n")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'
    return data[data.rindex(")") + 2:].split()


def descendants(root: int) -> list[int]:
    """root and every live descendant process (not threads)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.append(pid)
        todo.extend(children.get(pid, []))
    return [p for p in out if os.path.exists(f"/proc/{p}")]


def tree_cpu_seconds(root: int) -> float:
    """utime+stime (all threads) of root and its descendants, plus the
    cutime+cstime they collected from children that already exited."""
    ticks = 0
    for pid in descendants(root):
        f = _stat_fields(pid)
        if f:
            # fields after ')' start at field 3: utime=14, stime=15, cutime=16, cstime=17
            ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / CLK_TCK


def tree_rss_bytes(root: int) -> int:
    """Sum of VmRSS over the process tree (a multi-process server counts its
    supervisor too; growth and per-connection numbers use differences)."""
    total = 0
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except FileNotFoundError:
            pass
    return total


def tree_threads(root: int) -> int:
    n = 0
    for pid in descendants(root):
        try:
            n += len(os.listdir(f"/proc/{pid}/task"))
        except FileNotFoundError:
            pass
    return n


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port_closed(port: int, timeout: float = 10.0) -> None:
    end = time.time() + timeout
    while time.time() < end and port_open(port):
        time.sleep(0.1)


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "—"
    if abs(n) >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if abs(n) >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n:.0f} B"


def die(msg: str) -> None:
    log("ERROR: " + msg)
    sys.exit(1)


def cpu_busy_seconds(cpu: str) -> float:
    """Non-idle time of one CPU from /proc/stat (all processes)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                # user nice system idle iowait irq softirq steal guest guest_nice
                return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK
    return 0.0
