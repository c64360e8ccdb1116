"""Instructions per request under callgrind, for the hot-path budget.

Seconds are noisy on a shared VM; instruction counts are not. This runs the
server under `valgrind --tool=callgrind` twice per app: once serving N
requests from wrk (16 keep-alive connections, stopped after exactly N
responses by `lua/stop_after.lua`), once serving none. The difference of the
two totals, divided by N, is the user-space cost of one request (start-up and
shutdown cancel out; the kernel's share is not counted).

    python benchmarks/checks/callgrind.py                  # hello and starlette-plain
    python benchmarks/checks/callgrind.py --apps hello --requests 20000
    python benchmarks/checks/callgrind.py --python /path/to/python --label base
    python benchmarks/checks/callgrind.py --https           # over TLS (wrk on https)
    python benchmarks/checks/callgrind.py --https --close   # a TLS handshake per request
    python benchmarks/checks/callgrind.py --apps wsgi-hello # a WSGI app (--interface wsgi)
    python benchmarks/checks/callgrind.py --embedded        # await Server.serve() on a stock loop

`--python` picks the interpreter (and so the installed ferrule build) to
measure, so two builds can be compared in one sitting.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
APPS = {
    "hello": ("hello", "/"),
    "starlette-plain": ("starlette_app", "/plain"),
    "wsgi-hello": ("wsgi_hello", "/"),
}
# Server arguments an app needs (beyond --server-arg).
APP_ARGS = {"wsgi-hello": ["--interface", "wsgi"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"server did not listen on {port} within {limit}s")


def total_instructions(path: str) -> int:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.match(r"(summary|totals):\s+(\d+)", line)
            if m:
                return int(m.group(2))
    raise SystemExit(f"no totals in {path}")


def run_once(
    python: str,
    extra_path: list[str],
    app: str,
    path: str,
    requests: int,
    conns: int,
    seconds: int,
    out: str,
    server_args: list[str],
    scheme: str = "http",
    close: bool = False,
    embedded: bool = False,
) -> int:
    port = free_port()
    module, _ = APPS[app]
    paths = [*extra_path, os.path.join(BENCH, "apps")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    argv = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        python,
        "-m",
        "ferrule",
        f"{module}:app",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        *APP_ARGS.get(app, []),
        *server_args,
    ]
    if embedded:
        # The engine on its own thread, the app on a stock asyncio loop.
        argv[3:] = [
            python,
            os.path.join(HERE, "serve_embedded.py"),
            f"{module}:app",
            str(port),
        ]
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port, proc, 180)
        if requests:
            wrk_env = dict(os.environ, WRK_STOP_AFTER=str(requests))
            subprocess.run(
                # Debian's wrk does not end the run when the script stops
                # its thread: the duration only has to cover the N requests.
                [
                    "wrk",
                    "-t1",
                    f"-c{conns}",
                    f"-d{seconds}s",
                    "-s",
                    os.path.join(BENCH, "lua", "stop_after.lua"),
                    *(["-H", "Connection: close"] if close else []),
                    f"{scheme}://127.0.0.1:{port}{path}",
                ],
                env=wrk_env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(300)
    return total_instructions(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--apps", default="hello,starlette-plain")
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--conns", type=int, default=16)
    p.add_argument(
        "--seconds", type=int, default=40, help="wrk's duration (covers the N requests)"
    )
    p.add_argument("--label", default="")
    p.add_argument(
        "--pythonpath",
        action="append",
        default=[],
        help="a directory put first on the server's PYTHONPATH (another build of ferrule)",
    )
    p.add_argument("--json", help="append the figures to this JSON-lines file")
    p.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="one more argument for ferrule (repeat: --server-arg=--metrics-bind "
        "--server-arg=127.0.0.1:9100)",
    )
    p.add_argument(
        "--https",
        action="store_true",
        help="serve HTTPS (a certificate made here) and run wrk over https",
    )
    p.add_argument(
        "--close",
        action="store_true",
        help="a new connection per request (with --https: a handshake each)",
    )
    p.add_argument(
        "--embedded",
        action="store_true",
        help="serve with await Server.serve() on a stock asyncio loop",
    )
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server_args, scheme = list(a.server_arg), "http"
        if a.https:
            cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
            subprocess.run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-keyout",
                    key,
                    "-out",
                    cert,
                    "-days",
                    "2",
                    "-subj",
                    "/CN=localhost",
                ],
                check=True,
                capture_output=True,
            )
            server_args += ["--ssl-certfile", cert, "--ssl-keyfile", key]
            scheme = "https"
        for app in a.apps.split(","):
            base = run_once(
                a.python,
                a.pythonpath,
                app,
                APPS[app][1],
                0,
                a.conns,
                a.seconds,
                os.path.join(tmp, "idle.out"),
                server_args,
                scheme,
                a.close,
                a.embedded,
            )
            full = run_once(
                a.python,
                a.pythonpath,
                app,
                APPS[app][1],
                a.requests,
                a.conns,
                a.seconds,
                os.path.join(tmp, "load.out"),
                server_args,
                scheme,
                a.close,
                a.embedded,
            )
            per = (full - base) / a.requests
            row = {
                "label": a.label,
                "app": app,
                "requests": a.requests,
                "scheme": scheme,
                "close": a.close,
                "instructions_per_request": round(per),
            }
            print(json.dumps(row), flush=True)
            if a.json:
                with open(a.json, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
