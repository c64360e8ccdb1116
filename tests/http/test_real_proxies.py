"""Real proxies in front of ferrule: nginx (HTTP/1.1 upstream keep-alive) and
HAProxy (PROXY protocol v2, HTTP health checks, connection reuse), started on
ephemeral ports with their configs in tmp_path. These prove the README's
"Behind a proxy" snippets. .ci/run installs both; a machine without them skips."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from _rawhttp import read_response, request

pytestmark = pytest.mark.engine

REQUESTS = 10_000
CLIENTS = 8


def binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}") if os.access(p, os.X_OK)), None
    )


NGINX = binary("nginx")
HAPROXY = binary("haproxy")


class EchoApp:
    """Answers each request with its scope's client and path; counts health checks."""

    def __init__(self) -> None:
        self.health: list[Any] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/health":
            self.health.append(scope["client"])
        body = json.dumps({"client": scope["client"], "path": scope["path"], "scheme": scope["scheme"]})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body.encode()})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def start_proxy() -> Iterator[Callable[[list[str], int, Path], subprocess.Popen[bytes]]]:
    """Starts a proxy process in the foreground and waits until it accepts on
    its port; stops it after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
        out = open(log, "wb")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        procs.append(proc)
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{argv[0]} exited with {proc.returncode}: {log.read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return proc
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{argv[0]} did not listen on {port}: {log.read_text(errors='replace')}")
                time.sleep(0.02)

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load(port: int, check: Callable[[dict[str, Any], socket.socket], None]) -> tuple[int, int]:
    """REQUESTS requests from CLIENTS threads, each on a kept-alive
    connection to the proxy (a new one when the proxy closes it); ``check``
    sees every answer. Returns the requests that succeeded and the client
    connections they took."""
    per_client = REQUESTS // CLIENTS
    done = [0] * CLIENTS
    connections = [0] * CLIENTS
    failures: list[BaseException] = []

    def client(i: int) -> None:
        sock: socket.socket | None = None
        try:
            for n in range(per_client):
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    buf = bytearray()
                    connections[i] += 1
                path = f"/c{i}/r{n}"
                sock.sendall(request("GET", path))
                reply = read_response(sock, buf)
                assert reply.status == 200, reply.raw[:200]
                got = json.loads(reply.body)
                assert got["path"] == path
                check(got, sock)
                done[i] += 1
                if "close" in reply.connection_tokens():
                    # The proxy's own limit of requests per client connection
                    # (nginx: keepalive_requests): open the next one.
                    sock.close()
                    sock = None
        except BaseException as exc:  # reported by the test
            failures.append(exc)
        finally:
            if sock is not None:
                sock.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if failures:
        raise failures[0]
    return sum(done), sum(connections)


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run installs it)")
def test_nginx_in_front_reuses_its_upstream_connections(serve: Any, start_proxy: Any, tmp_path: Path) -> None:
    app = EchoApp()
    srv = serve(app, lifespan="off", access_log=False)
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""
{user}
worker_processes 1;
daemon off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/client_body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    upstream ferrule {{
        server 127.0.0.1:{srv.port};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://ferrule;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
""")
    assert NGINX is not None
    argv = [NGINX, "-p", str(tmp_path), "-e", str(tmp_path / "nginx-error.log"), "-c", str(conf)]
    start_proxy(argv, port, tmp_path / "nginx.out")

    def check(got: dict[str, Any], sock: socket.socket) -> None:
        # X-Forwarded-For from nginx (a trusted peer): the client's address,
        # with no port (uvicorn's semantics).
        assert got["client"] == ["127.0.0.1", 0]
        assert got["scheme"] == "http"

    started = time.monotonic()
    ok, client_connections = load(port, check)
    assert ok == REQUESTS
    elapsed = time.monotonic() - started
    stats = srv.stats()
    assert stats["requests"] == REQUESTS
    # nginx keeps its upstream connections (keepalive 16) and closes one after
    # 1000 requests (its keepalive_requests): a few dozen at most carried them all.
    assert stats["connections"] <= REQUESTS // 100, stats["connections"]
    assert stats["closed_protocol_error"] == 0
    print(
        f"nginx: {REQUESTS} requests in {elapsed:.1f}s from {client_connections} client connections "
        f"over {stats['connections']} upstream connections"
    )


def haproxy_command(sock_path: Path, command: str) -> str:
    """One command on HAProxy's stats socket; its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(sock_path))
        s.sendall(command.encode() + b"\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode()


def haproxy_servers(sock_path: Path) -> dict[str, dict[str, str]]:
    """``show stat``: the rows by server name."""
    text = haproxy_command(sock_path, "show stat").lstrip("# ")
    return {row["svname"]: row for row in csv.DictReader(io.StringIO(text))}


def check_status(row: dict[str, str]) -> str:
    """The last check's result; HAProxy marks it ``* `` while the next
    check is running."""
    return row["check_status"].removeprefix("* ")


def haproxy_config(port: int, stats_sock: Path, backend: str) -> str:
    """An HAProxy config: an HTTP frontend on ``port`` to the ``ferrule``
    backend (health checks by ``GET /health``, then ``backend``'s lines),
    with an admin stats socket."""
    return f"""
global
    maxconn 1000
    stats socket {stats_sock} mode 600 level admin

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend web
    bind 127.0.0.1:{port}
    default_backend ferrule

backend ferrule
    option httpchk GET /health
    {backend}
"""


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (.ci/run installs it)")
def test_haproxy_with_proxy_protocol_checks_and_reuse(serve: Any, start_proxy: Any, tmp_path: Path) -> None:
    app = EchoApp()
    srv = serve(app, lifespan="off", access_log=False, proxy_protocol=True, forwarded_allow_ips="127.0.0.1")
    port = free_port()
    stats_sock = tmp_path / "haproxy.sock"
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(
        haproxy_config(
            port,
            stats_sock,
            "http-reuse always\n    "
            f"server app1 127.0.0.1:{srv.port} check inter 100 send-proxy-v2 check-send-proxy",
        )
    )
    assert HAPROXY is not None
    start_proxy([HAPROXY, "-db", "-f", str(conf)], port, tmp_path / "haproxy.out")
    # The first check has passed once the server is UP (the stats socket may
    # appear a moment after the frontend listens).
    deadline = time.monotonic() + 5
    status = None
    while status != "UP":
        assert time.monotonic() < deadline, f"server app1 is {status}"
        time.sleep(0.05)
        try:
            status = haproxy_servers(stats_sock)["app1"]["status"]
        except OSError:
            pass

    def check(got: dict[str, Any], sock: socket.socket) -> None:
        # The PROXY header names HAProxy's client: this test's socket.
        assert got["client"] == ["127.0.0.1", sock.getsockname()[1]]

    started = time.monotonic()
    ok, client_connections = load(port, check)
    assert ok == REQUESTS
    elapsed = time.monotonic() - started
    time.sleep(0.3)  # a few more checks after the load

    row = haproxy_servers(stats_sock)["app1"]
    assert row["status"] == "UP", row
    assert check_status(row) == "L7OK", row
    assert row["chkfail"] == "0" and row["chkdown"] == "0", row
    # Stop the checks, so that none is in flight while ferrule's counters
    # are read.
    assert haproxy_command(stats_sock, "disable health ferrule/app1").strip() == ""
    time.sleep(0.3)
    checks = len(app.health)
    assert checks >= 3, "ferrule saw HAProxy's health checks"
    # The checks carry a PROXY header too (check-send-proxy), a LOCAL one:
    # the client is HAProxy's own socket.
    assert all(c is not None and c[0] == "127.0.0.1" for c in app.health)

    stats = srv.stats()
    assert stats["requests"] == REQUESTS + checks
    assert stats["closed_proxy_header"] == 0 and stats["closed_proxy_untrusted"] == 0
    # A connection that carries a PROXY header is reused only for requests
    # with the same header, i.e. from the same client connection; each check
    # opens one of its own. Now and then HAProxy resets a client's upstream
    # connection after some requests and goes on over a new one (a few per
    # run): still, nearly every request went over a reused connection.
    load_connections = stats["connections"] - checks
    assert load_connections <= REQUESTS // 100, (stats["connections"], checks)
    assert int(row["reuse"]) >= REQUESTS * 99 // 100, row["reuse"]
    assert int(row["connect"]) <= REQUESTS // 100, row["connect"]
    print(
        f"haproxy: {REQUESTS} requests in {elapsed:.1f}s from {client_connections} client connections "
        f"over {load_connections} upstream "
        f"connections; {checks} health checks"
    )


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (.ci/run installs it)")
@pytest.mark.parametrize("check_send_proxy", [True, False], ids=["check-send-proxy", "without"])
def test_haproxy_checks_on_their_own_port_need_check_send_proxy(
    serve: Any, start_proxy: Any, tmp_path: Path, check_send_proxy: bool
) -> None:
    # A check with its own `port` loses the PROXY header unless
    # check-send-proxy is set: ferrule then closes the checks, and HAProxy
    # marks the server down. (README: "Health checks need the header too".)
    app = EchoApp()
    srv = serve(app, lifespan="off", access_log=False, proxy_protocol=True)
    port = free_port()
    stats_sock = tmp_path / "haproxy.sock"
    conf = tmp_path / "haproxy.cfg"
    extra = "check-send-proxy" if check_send_proxy else ""
    conf.write_text(
        haproxy_config(
            port,
            stats_sock,
            f"server app1 127.0.0.1:{srv.port} check inter 100 port {srv.port} "
            f"send-proxy-v2 {extra}",
        )
    )
    assert HAPROXY is not None
    start_proxy([HAPROXY, "-db", "-f", str(conf)], port, tmp_path / "haproxy.out")
    deadline = time.monotonic() + 5
    while True:
        time.sleep(0.05)
        try:
            row = haproxy_servers(stats_sock)["app1"]
        except OSError:
            continue
        if check_status(row) not in ("", "INI") or time.monotonic() > deadline:
            break
    if check_send_proxy:
        assert row["status"] == "UP" and check_status(row) == "L7OK", row
        assert app.health and srv.stats()["closed_proxy_header"] == 0
    else:
        assert row["status"] == "DOWN", row
        assert not app.health
        assert srv.stats()["closed_proxy_header"] >= 1
