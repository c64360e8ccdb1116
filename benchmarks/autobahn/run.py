"""Autobahn|Testsuite (fuzzingclient) against one server serving apps/ws_echo.py.

    python3 benchmarks/autobahn/run.py --server ferrule
    python3 benchmarks/autobahn/run.py --server hypercorn --cases 1,2,7 --json out.json

Installs autobahntestsuite 0.8.2 for Python 2.7 (pyenv's) once into a cache
directory, starts the server on a free port, runs `wstest -m fuzzingclient`,
reads reports/index.json and prints the counts per behavior and per close
behavior, then every case that is not OK. Exit status: 0 when no case is
FAILED or UNIMPLEMENTED, 1 when some are, 2 when the run itself failed
(install, server start, wstest crash). See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from typing import Any

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS_DIR = os.path.join(BENCH_DIR, "apps")
DEFAULT_CACHE = os.path.join(BENCH_DIR, "work", "autobahn")
DEFAULT_VENV = os.path.join(BENCH_DIR, ".venv")
APP = "ws_echo:app"

SUITE = "autobahntestsuite==0.8.2"
# The set pip 19 (pyenv 2.7.18) resolves for the suite, pinned so that a
# later release of a dependency that drops Python 2 without saying so in its
# metadata cannot break the install. Twisted 20.3 is the last for Python 2.
PINS = [
    "autobahn==0.10.9", "Twisted==20.3.0", "zope.interface==5.5.2", "txaio==2.1.0",
    "pyopenssl==21.0.0", "cryptography==3.3.2", "cffi==1.15.1", "pycparser==2.21",
    "service-identity==21.1.0", "pyasn1==0.5.1", "pyasn1-modules==0.3.0", "attrs==21.4.0",
    "Automat==22.10.0", "constantly==15.1.0", "incremental==22.10.0", "hyperlink==21.0.0",
    "idna==2.10", "PyHamcrest==1.10.1", "klein==20.6.0", "Werkzeug==1.0.1", "Tubes==0.2.1",
    "jinja2==2.11.3", "markupsafe==1.1.1", "wsaccel==0.6.6", "ujson==2.0.3",
    "unittest2==1.1.0", "traceback2==1.4.0", "linecache2==1.0.0", "argparse==1.4.0",
    "six==1.17.0", "enum34==1.1.10", "ipaddress==1.0.23", "typing==3.10.0.0",
    "setuptools==44.1.1",
]

# Cases left out of every run: only cases broken in the suite itself, each
# with the reason. None so far.
EXCLUDE_CASES: list[str] = []

BEHAVIORS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
SERVERS = ["ferrule", "uvicorn-websockets", "uvicorn-wsproto", "hypercorn", "granian"]


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


def find_python2() -> str:
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        root = os.path.expanduser("~/.pyenv")
    candidate = os.path.join(root, "versions", "2.7.18", "bin", "python")
    if os.path.exists(candidate):
        return candidate
    return shutil.which("python2") or shutil.which("python2.7") or candidate


def install(cache: str, python2: str) -> str:
    """The suite's site directory, installed on first use (and again when
    the pins change)."""
    site = os.path.join(cache, "site")
    stamp = os.path.join(cache, "installed")
    want = hashlib.sha256("\n".join([SUITE] + PINS).encode()).hexdigest()
    if os.path.exists(stamp) and open(stamp).read().strip() == want:
        return site
    if not os.path.exists(python2):
        raise SystemExit(f"autobahn: Python 2.7 not found at {python2} (pyenv install 2.7.18, "
                         "or --python2 PATH)")
    shutil.rmtree(site, ignore_errors=True)
    os.makedirs(cache, exist_ok=True)
    constraints = os.path.join(cache, "constraints.txt")
    with open(constraints, "w") as f:
        f.write("\n".join(PINS) + "\n")
    log(f"installing {SUITE} for Python 2.7 into {site} (once)")
    logpath = os.path.join(cache, "pip.log")
    with open(logpath, "w") as logf:
        r = subprocess.run(
            [python2, "-m", "pip", "install", "--disable-pip-version-check", "--no-warn-script-location",
             "--target", site, "-c", constraints, SUITE],
            stdout=logf, stderr=subprocess.STDOUT,
            env=dict(os.environ, PYENV_VERSION="2.7.18"))
    if r.returncode != 0:
        tail = open(logpath).read().splitlines()[-10:]
        raise SystemExit("autobahn: pip install failed (log: %s):\n  %s"
                         % (logpath, "\n  ".join(tail)))
    with open(stamp, "w") as f:
        f.write(want + "\n")
    return site


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_argv(name: str, port: int, venv_bin: str) -> list[str]:
    host = ["--host", "127.0.0.1", "--port", str(port)]
    if name == "ferrule":
        # whichever ferrule this Python imports (PYTHONPATH=<tree>/python for a work tree)
        return [sys.executable, "-m", "ferrule", APP, *host, "--log-level", "warning",
                "--no-access-log"]
    if name.startswith("uvicorn-"):
        return [os.path.join(venv_bin, "uvicorn"), APP, *host, "--ws", name.split("-", 1)[1],
                "--log-level", "warning", "--no-access-log"]
    if name == "hypercorn":
        return [os.path.join(venv_bin, "hypercorn"), APP, "--bind", f"127.0.0.1:{port}",
                "--log-level", "warning"]
    if name == "granian":
        return [os.path.join(venv_bin, "granian"), "--interface", "asgi", *host,
                "--workers", "1", "--log-level", "warning", "--no-access-log", APP]
    raise ValueError(name)


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 60.0) -> bool:
    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(req)
                if s.recv(16).startswith(b"HTTP/1.1 200"):
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)  # the server's whole session (workers included)
            proc.wait(wait)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def case_patterns(spec: str) -> list[str]:
    """`1,2,12.1` -> ["1.*", "2.*", "12.1.*"]; a pattern with a `*` or a full
    case id (three parts, or two in sections 2, 3 and 5) is kept as given."""
    out = []
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        if item == "*" or item.endswith("*"):
            out.append(item)
        elif item.count(".") >= 2 or (item.count(".") == 1 and item.split(".")[0] in
                                      {"2", "3", "5"}):
            out.append(item)
        else:
            out.append(item + ".*")
    return out


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in case_id.split("."))


def summarize(index: dict[str, Any], reports: str) -> dict[str, Any]:
    (agent, cases), = index.items()
    behaviors: Counter[str] = Counter()
    closes: Counter[str] = Counter()
    non_ok = []
    for cid in sorted(cases, key=case_key):
        c = cases[cid]
        behaviors[c["behavior"]] += 1
        closes[c["behaviorClose"]] += 1
        if c["behavior"] != "OK" or c["behaviorClose"] != "OK":
            entry = {"case": cid, "behavior": c["behavior"], "behaviorClose": c["behaviorClose"],
                     "remoteCloseCode": c.get("remoteCloseCode")}
            try:
                with open(os.path.join(reports, c["reportfile"])) as f:
                    detail = json.load(f)
                text = re.sub(r"<[^>]*>", "", detail.get("description", ""))
                entry["description"] = " ".join(text.split())
                entry["result"] = detail.get("result")
                entry["resultClose"] = detail.get("resultClose")
                status = (detail.get("httpResponse") or "").split("\r\n", 1)[0]
                if not status.startswith("HTTP/1.1 101"):
                    entry["handshake"] = status or "no response"
            except (OSError, ValueError, KeyError):
                pass
            non_ok.append(entry)
    return {"agent": agent, "total": len(cases),
            "behavior": {b: behaviors[b] for b in BEHAVIORS if behaviors[b]}
            | {b: n for b, n in behaviors.items() if b not in BEHAVIORS},
            "behaviorClose": dict(sorted(closes.items())),
            "non_ok": non_ok}


def print_summary(s: dict[str, Any]) -> None:
    print(f"\n{s['server']}: {s['total']} cases in {s['seconds']:.0f} s (cases {s['cases']})")
    print("  behavior:       " + ", ".join(f"{b} {n}" for b, n in s["behavior"].items()))
    print("  close behavior: " + ", ".join(f"{b} {n}" for b, n in s["behaviorClose"].items()))
    if s["non_ok"]:
        print(f"  not OK ({len(s['non_ok'])}):")
        for e in s["non_ok"]:
            desc = e.get("description", "")
            if len(desc) > 70:
                desc = desc[:67] + "..."
            print(f"    {e['case']:8s} {e['behavior']:13s} close {e['behaviorClose']:13s} "
                  f"code {e['remoteCloseCode']}  {desc}")
    refused = Counter(e["handshake"] for e in s["non_ok"] if "handshake" in e)
    for status, n in refused.items():
        print(f"  {n} case(s) got no WebSocket upgrade, the handshake answered: {status}")
    print(f"  reports: {s['reports']}/index.html")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", required=True, choices=SERVERS)
    p.add_argument("--cases", default="1,2,3,4,5,6,7,8,9,10,11,12,13",
                   help="comma-separated sections or case ids, e.g. `1,2,12.1` or `9.1.1` "
                   "(default: 1-13, every fuzzingclient case)")
    p.add_argument("--json", metavar="OUT", help="write the summary as JSON to OUT")
    p.add_argument("--cache", default=DEFAULT_CACHE,
                   help="where the suite is installed and reports go (default %(default)s)")
    p.add_argument("--venv", default=DEFAULT_VENV,
                   help="venv holding uvicorn, hypercorn and granian (default %(default)s)")
    p.add_argument("--python2", default=None, help="Python 2.7 (default: pyenv's 2.7.18)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds for the whole wstest run")
    a = p.parse_args(argv)

    python2 = a.python2 or find_python2()
    site = install(os.path.abspath(a.cache), python2)

    work = os.path.join(os.path.abspath(a.cache), "runs", a.server)
    reports = os.path.join(work, "reports")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(reports)
    port = free_port()
    argv_srv = server_argv(a.server, port, os.path.join(a.venv, "bin"))
    if not os.path.exists(argv_srv[0]):
        raise SystemExit(f"autobahn: {argv_srv[0]} not found (--venv)")
    patterns = case_patterns(a.cases)
    spec = {
        "outdir": reports,
        "servers": [{"agent": a.server, "url": f"ws://127.0.0.1:{port}"}],
        "cases": patterns,
        "exclude-cases": EXCLUDE_CASES,
        "exclude-agent-cases": {},
    }
    spec_path = os.path.join(work, "fuzzingclient.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f, indent=2)

    server_log = os.path.join(work, "server.log")
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(x for x in (APPS_DIR, os.environ.get("PYTHONPATH"))
                                          if x))
    with open(server_log, "wb") as slog:
        proc = subprocess.Popen(argv_srv, cwd=APPS_DIR, stdout=slog, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        if not wait_ready(proc, port):
            tail = open(server_log, errors="replace").read().splitlines()[-10:]
            print(f"autobahn: {a.server} did not start ({' '.join(argv_srv)}):\n  "
                  + "\n  ".join(tail), file=sys.stderr)
            return 2
        log(f"{a.server} on port {port}; wstest fuzzingclient, cases {','.join(patterns)}")
        # site.addsitedir, not PYTHONPATH: zope's namespace package needs its .pth file.
        boot = ("import site, sys; site.addsitedir(sys.argv[1]); "
                "sys.argv = ['wstest', '-m', 'fuzzingclient', '-s', sys.argv[2]]; "
                "from autobahntestsuite.wstest import run; run()")
        t0 = time.time()
        with open(os.path.join(work, "wstest.log"), "wb") as wlog:
            try:
                r = subprocess.run([python2, "-W", "ignore", "-c", boot, site, spec_path],
                                   cwd=work, stdout=wlog, stderr=subprocess.STDOUT,
                                   timeout=a.timeout)
            except subprocess.TimeoutExpired:
                print(f"autobahn: wstest did not finish in {a.timeout:.0f} s", file=sys.stderr)
                return 2
        seconds = time.time() - t0
    finally:
        stop(proc)

    index_path = os.path.join(reports, "index.json")
    if r.returncode != 0 or not os.path.exists(index_path):
        tail = open(os.path.join(work, "wstest.log"), errors="replace").read().splitlines()[-10:]
        print(f"autobahn: wstest failed (exit {r.returncode}):\n  " + "\n  ".join(tail),
              file=sys.stderr)
        return 2
    with open(index_path) as f:
        summary = summarize(json.load(f), reports)
    summary = {"server": a.server, "cases": ",".join(patterns), "seconds": round(seconds, 1),
               "server_cmd": " ".join(argv_srv), "excluded": EXCLUDE_CASES,
               "reports": reports, **summary}
    print_summary(summary)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    bad = summary["behavior"].get("FAILED", 0) + summary["behavior"].get("UNIMPLEMENTED", 0)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
