"""``--metrics-bind``: a Prometheus text endpoint on its own address, whose
counters match the traffic sent."""

from __future__ import annotations

import re
import signal
import socket
import threading
import urllib.request

import httpx
import pytest
from _rawhttp import fetch, wait_for

from ferrule.metrics import render

pytestmark = pytest.mark.engine


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    status = 404 if scope["path"] == "/missing" else 200
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


def scrape(address: tuple[str, int]) -> dict[str, float]:
    with urllib.request.urlopen(
        f"http://{address[0]}:{address[1]}/metrics", timeout=5
    ) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    return samples


def one(samples: dict[str, float], prefix: str, **labels: str) -> float:
    """The sample of a family whose labels include ``labels``."""
    found = [
        v
        for k, v in samples.items()
        if k.split("{")[0] == prefix
        and all(f'{n}="{lv}"' in k for n, lv in labels.items())
    ]
    assert len(found) == 1, (prefix, labels, found)
    return found[0]


def test_metrics_count_the_requests_sent_under_load(serve):
    served = serve(app, lifespan="off", metrics_bind="127.0.0.1:0")
    address = served.server.metrics_address
    assert address is not None and address[1] != served.port
    per_thread, threads = 200, 4
    failures: list[str] = []
    scrapes: list[dict[str, float]] = []

    def client() -> None:
        with httpx.Client(base_url=served.url) as c:
            for i in range(per_thread):
                r = c.get("/missing" if i % 10 == 0 else "/")
                if r.status_code not in (200, 404):
                    failures.append(str(r.status_code))

    def scraper() -> None:
        for _ in range(5):
            scrapes.append(scrape(address))

    workers = [threading.Thread(target=client) for _ in range(threads)] + [
        threading.Thread(target=scraper)
    ]
    for t in workers:
        t.start()
    for t in workers:
        t.join(30)
    assert not failures
    assert len(scrapes) == 5, "every scrape under load answered"
    samples = scrape(address)
    total = per_thread * threads
    assert one(samples, "ferrule_requests_total") == total
    assert (
        one(samples, "ferrule_responses_total", **{"class": "2xx"}) == total * 9 // 10
    )
    assert one(samples, "ferrule_responses_total", **{"class": "4xx"}) == total // 10
    assert one(samples, "ferrule_request_duration_seconds_count") == total
    assert one(samples, "ferrule_request_duration_seconds_bucket", le="+Inf") == total
    assert one(samples, "ferrule_requests_in_flight") == 0
    assert one(samples, "ferrule_connections_total") == threads
    assert one(samples, "ferrule_writes_per_response") == pytest.approx(1.0)
    assert one(samples, "ferrule_sent_bytes_total") > total * 2
    assert one(samples, "ferrule_received_bytes_total") > total * 10
    # Counters only grow between scrapes.
    seen = [one(s, "ferrule_requests_total") for s in scrapes]
    assert seen == sorted(seen)


def test_metrics_endpoint_answers_404_elsewhere_and_is_not_on_the_app_port(serve):
    served = serve(app, lifespan="off", metrics_bind="127.0.0.1:0")
    host, port = served.server.metrics_address
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 404")
    # The app's port serves the app, /metrics included.
    assert fetch(served, target="/metrics").body == b"ok"


def test_without_metrics_bind_durations_are_not_measured(serve):
    served = serve(app, lifespan="off")
    assert fetch(served).status == 200
    stats = served.stats()
    assert stats["responses_2xx"] == 1
    assert sum(v for k, v in stats.items() if k.startswith("duration_le_")) == 0


def test_metrics_bind_in_use_is_one_line_and_exit_3(run_cli, ferrule_cmd, cli_env):
    import subprocess

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        proc = subprocess.run(
            [
                *ferrule_cmd,
                "examples.hello:app",
                "--port",
                "0",
                "--metrics-bind",
                f"127.0.0.1:{port}",
            ],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=20,
            cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]),
        )
    finally:
        blocker.close()
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(
        rf"Could not serve metrics on 127.0.0.1:{port}", proc.stderr
    ), proc.stderr


def test_render_makes_cumulative_buckets_per_series():
    text = render(
        {
            "11": {"requests": 3, "duration_le_500us": 3, "duration_le_inf": 0},
            "12": {"requests": 4, "duration_le_500us": 1, "duration_le_inf": 3},
        }
    )
    assert 'ferrule_requests_total{worker="11"} 3' in text
    assert 'ferrule_request_duration_seconds_bucket{worker="12",le="0.0005"} 1' in text
    assert 'ferrule_request_duration_seconds_bucket{worker="12",le="+Inf"} 4' in text
    assert 'ferrule_request_duration_seconds_count{worker="12"} 4' in text


def test_workers_metrics_are_per_worker_and_summed_across_a_reload(run_cli):
    """With --workers the supervisor serves the endpoint: a series per
    worker and worker="all", which keeps the counts of replaced workers."""
    metrics_port = _free_port()
    proc = run_cli(
        "examples.hello:app",
        "--workers",
        "2",
        "--metrics-bind",
        f"127.0.0.1:{metrics_port}",
        "--no-access-log",
    )
    address = ("127.0.0.1", metrics_port)
    with httpx.Client(base_url=proc.url) as c:
        for _ in range(100):
            assert c.get("/").status_code == 200
    samples = scrape(address)
    assert one(samples, "ferrule_requests_total", worker="all") == 100
    per_worker = [
        v
        for k, v in samples.items()
        if k.startswith("ferrule_requests_total{") and 'worker="all"' not in k
    ]
    assert len(per_worker) == 2 and sum(per_worker) == 100
    # A rolling reload replaces both workers: the sum keeps their counts.
    old = {k for k in samples if k.startswith("ferrule_requests_total{")}
    proc.proc.send_signal(signal.SIGHUP)

    def replaced() -> bool:
        now = {k for k in scrape(address) if k.startswith("ferrule_requests_total{")}
        return (
            len(now) == 3 and not (now - {'ferrule_requests_total{worker="all"}'}) & old
        )

    wait_for(replaced, timeout=15)
    with httpx.Client(base_url=proc.url) as c:
        for _ in range(10):
            assert c.get("/").status_code == 200
    assert one(scrape(address), "ferrule_requests_total", worker="all") == 110


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_metrics_request_with_an_oversized_header_is_dropped_quietly(serve):
    from _rawhttp import capture_log

    with capture_log("ferrule.error") as records:
        served = serve(app, lifespan="off", metrics_bind="127.0.0.1:0")
        host, port = served.server.metrics_address
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
            sock.settimeout(5)
            try:
                assert sock.recv(100) == b""
            except ConnectionResetError:
                pass
        # The endpoint still answers.
        assert one(scrape((host, port)), "ferrule_requests_total") == 0
    assert not [r for r in records if r.levelno >= 40], [r.getMessage() for r in records]
