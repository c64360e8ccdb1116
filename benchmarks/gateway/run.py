"""The example gateway (examples/gateway.py) served several ways, side by side.

For each server in SERVERS (pinned to CPU 0; the clients to CPU 1), one run:

* boto3, one client, one call at a time (c=1): SQS SendMessage calls/s and
  calls per server CPU-second; the SDK's own CPU per call (the client
  process's CPU time over the calls) is reported beside them, since it
  bounds calls/s whatever the server;
* wrk on a raw SQS-style POST (sqs_post.lua): requests/s and requests per
  server CPU-second.

    python benchmarks/gateway/run.py                         # every server, 20 s each
    python benchmarks/gateway/run.py --repeat 3 --seconds 8  # medians of 3 rounds
    python benchmarks/gateway/run.py --seconds 2 --servers ferrule-serve,twisted

With --repeat N the servers take turns within each round, and every figure
is the median of its N runs. Writes a markdown table to stdout (and --json,
if given). Run it on a quiet machine; smoke runs use --seconds 2.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)

from harness.util import CLIENT_CPU, SERVER_CPU, tree_cpu_seconds  # noqa: E402

SERVE = os.path.join(HERE, "serve.py")

# name -> argv (before the port). None: a slot another branch fills.
SERVERS: dict[str, list[str] | None] = {
    "ferrule serve() (rolo AsgiGateway)": [sys.executable, SERVE, "ferrule-serve"],
    "ferrule run() (rolo AsgiGateway)": [sys.executable, SERVE, "ferrule-run"],
    # --interface wsgi: the WSGI branch's gateway (same services and calls).
    "ferrule WSGI (rolo WsgiGateway)": [
        sys.executable,
        os.path.join(HERE, "wsgi_server.py"),
        "--port",
    ],
    "hypercorn (rolo AsgiGateway)": [sys.executable, SERVE, "hypercorn"],
    "twisted (rolo TwistedGateway)": [sys.executable, SERVE, "twisted"],
}
SHORT = {
    "ferrule-serve": "ferrule serve() (rolo AsgiGateway)",
    "ferrule-run": "ferrule run() (rolo AsgiGateway)",
    "ferrule-wsgi": "ferrule WSGI (rolo WsgiGateway)",
    "hypercorn": "hypercorn (rolo AsgiGateway)",
    "twisted": "twisted (rolo TwistedGateway)",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def boto3_calls(port: int, seconds: float, server_pid: int) -> dict[str, float]:
    """SendMessage calls for `seconds` from this process (pinned to the
    client CPU by the caller): calls/s, server CPU and client CPU per call."""
    import boto3
    import botocore.config

    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    cfg = botocore.config.Config(retries={"max_attempts": 0})
    sqs = boto3.client(
        "sqs",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=cfg,
    )
    queue = sqs.create_queue(QueueName="bench")["QueueUrl"]
    for _ in range(50):  # warm-up: connection, caches
        sqs.send_message(QueueUrl=queue, MessageBody="warm")
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, t0 = tree_cpu_seconds(server_pid), time.monotonic()
    calls = 0
    while time.monotonic() - t0 < seconds:
        sqs.send_message(QueueUrl=queue, MessageBody="hello")
        calls += 1
    wall = time.monotonic() - t0
    cpu1 = tree_cpu_seconds(server_pid)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return {
        "calls_per_s": calls / wall,
        "calls_per_server_cpu_s": calls / max(cpu1 - cpu0, 1e-9),
        "sdk_cpu_us_per_call": client_cpu / calls * 1e6,
    }


def wrk_post(port: int, seconds: int, server_pid: int, conns: int) -> dict[str, float]:
    argv = [
        "taskset",
        "-c",
        CLIENT_CPU,
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{seconds}s",
        "-s",
        os.path.join(HERE, "sqs_post.lua"),
        f"http://127.0.0.1:{port}/",
    ]
    cpu0 = tree_cpu_seconds(server_pid)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    cpu1 = tree_cpu_seconds(server_pid)
    requests = 0
    for line in out.stdout.splitlines():
        if "requests in" in line:
            requests = int(line.split()[0])
    errors = "Non-2xx" in out.stdout or "Socket errors" in out.stdout
    return {
        "post_per_s": requests / seconds,
        "post_per_server_cpu_s": requests / max(cpu1 - cpu0, 1e-9),
        "post_errors": float(errors),
    }


def run_one(name: str, argv: list[str], args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "python"), ROOT])
    )
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, *argv, str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_port(port)
        result = boto3_calls(port, args.seconds, proc.pid)
        result.update(wrk_post(port, int(args.seconds), proc.pid, args.conns))
        return result
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--conns", type=int, default=16, help="wrk's connections")
    p.add_argument(
        "--servers",
        default=",".join(SHORT),
        help="comma-separated: " + ", ".join(SHORT),
    )
    p.add_argument("--json", help="append the figures to this JSON-lines file")
    p.add_argument("--repeat", type=int, default=1, help="rounds; figures are medians")
    args = p.parse_args()
    runs: dict[str, list[dict[str, float]]] = {}
    for round_no in range(args.repeat):
        for short in args.servers.split(","):
            name = SHORT[short]
            argv = SERVERS[name]
            if argv is None:
                print(f"# {name}: not available on this branch", file=sys.stderr)
                continue
            r = run_one(name, argv, args)
            runs.setdefault(name, []).append(r)
            print(f"# round {round_no + 1} {name}: {r}", file=sys.stderr)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(
                        json.dumps({"server": name, "round": round_no + 1, **r}) + "\n"
                    )
    rows = [
        (name, {k: statistics.median(r[k] for r in rs) for k in rs[0]})
        for name, rs in runs.items()
    ]
    print(
        "| server | boto3 calls/s (c=1) | calls per server CPU-s | SDK CPU per call | "
        f"raw POST req/s (wrk c={args.conns}) | req per server CPU-s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows:
        flag = " (errors)" if r["post_errors"] else ""
        print(
            f"| {name} | {r['calls_per_s']:,.0f} | {r['calls_per_server_cpu_s']:,.0f} | "
            f"{r['sdk_cpu_us_per_call']:,.0f} µs | {r['post_per_s']:,.0f}{flag} | "
            f"{r['post_per_server_cpu_s']:,.0f} |"
        )


if __name__ == "__main__":
    main()
