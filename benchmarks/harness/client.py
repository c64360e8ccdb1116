"""A small blocking HTTP/1.1 client for the wire checks, the split-request
test and the idle-connection test."""
from __future__ import annotations

import asyncio
import socket
import ssl
import time

POST_BODY = b"x" * 4096


def request_parts(method: str, path: str, port: int) -> tuple[bytes, bytes]:
    """(header lines without the blank line, blank line + body)."""
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "User-Agent: ferrule-bench\r\nAccept: */*\r\n")
    body = b""
    if method == "POST":
        head += f"Content-Type: application/octet-stream\r\nContent-Length: {len(POST_BODY)}\r\n"
        body = POST_BODY
    return head.encode(), b"\r\n" + body


class HTTPConn:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise EOFError("server closed the connection")
        self.buf += data

    def _line(self) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return line

    def read_response(self) -> tuple[int, dict, int]:
        """Reads one whole response; returns (status, headers, body length)."""
        while (i := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        head = bytes(self.buf[:i])
        del self.buf[:i + 4]
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip()
        if b"content-length" in headers:
            n = int(headers[b"content-length"])
            while len(self.buf) < n:
                self._fill()
            del self.buf[:n]
            return status, headers, n
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            total = 0
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():  # trailers, then the empty line
                        pass
                    return status, headers, total
                while len(self.buf) < size + 2:
                    self._fill()
                del self.buf[:size + 2]
                total += size
        # no framing: body runs to EOF
        total = len(self.buf)
        self.buf.clear()
        try:
            while True:
                data = self.sock.recv(262144)
                if not data:
                    break
                total += len(data)
        except OSError:
            pass
        return status, headers, total


def bound_socket(nodelay: bool = True) -> tuple[socket.socket, int]:
    """A TCP socket already bound to an ephemeral port, so the port is known
    (for strace/tcpdump filters) before it connects."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if nodelay:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def keepalive_run(sock: socket.socket, port: int, method: str, path: str, n: int) -> list[int]:
    """n requests, one at a time, on one connection (whole request in one send)."""
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    a, b = request_parts(method, path, port)
    req = a + b
    conn = HTTPConn(sock)
    statuses = []
    for _ in range(n):
        sock.sendall(req)
        statuses.append(conn.read_response()[0])
    sock.close()
    return statuses


class TLSKeepalive:
    """One TLS keep-alive connection, handshake and a first request done
    before `run()`, so a trace attached in between sees only responses."""

    def __init__(self, port: int, method: str, path: str, ctx: ssl.SSLContext):
        raw, self.cport = bound_socket()
        raw.settimeout(30)
        raw.connect(("127.0.0.1", port))
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        a, b = request_parts(method, path, port)
        self.req = a + b
        self.conn = HTTPConn(self.sock)
        self.run(1)
        # TLS 1.3 tickets may follow the handshake: let them arrive now.
        time.sleep(0.1)

    def run(self, n: int) -> list[int]:
        statuses = []
        for _ in range(n):
            self.sock.sendall(self.req)
            statuses.append(self.conn.read_response()[0])
        return statuses

    def close(self) -> None:
        self.sock.close()


def split_request_test(port: int, method: str, path: str, n: int = 100) -> dict:
    """Client WITHOUT TCP_NODELAY that writes each request in two send() calls:
    the header lines, then the blank line (and the body, for POST)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # Nagle stays on
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    a, b = request_parts(method, path, port)
    conn = HTTPConn(s)
    times = []
    bad = 0
    for _ in range(n):
        t0 = time.perf_counter()
        s.send(a)
        s.sendall(b)
        status, _, _ = conn.read_response()
        times.append(time.perf_counter() - t0)
        bad += status != 200
    s.close()
    ms = [t * 1e3 for t in times]
    return {"n": n, "mean_ms": sum(ms) / n, "max_ms": max(ms),
            "over30": sum(t > 30 for t in ms), "non200": bad}


async def _open_idle(port: int, n: int, path: str, concurrency: int, deadline: float):
    loop = asyncio.get_running_loop()
    a, b = request_parts("GET", path, port)
    req = a + b
    sem = asyncio.Semaphore(concurrency)
    socks: list[socket.socket] = []
    failures = [0]

    async def one():
        async with sem:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", port)), 20)
                await loop.sock_sendall(s, req)
                buf = b""
                while True:  # the hello response: head + Content-Length body
                    data = await asyncio.wait_for(loop.sock_recv(s, 4096), 20)
                    if not data:
                        raise EOFError
                    buf += data
                    i = buf.find(b"\r\n\r\n")
                    if i >= 0:
                        head = buf[:i].lower()
                        j = head.find(b"content-length:")
                        cl = int(head[j + 15:].split(b"\r\n")[0]) if j >= 0 else 0
                        if len(buf) >= i + 4 + cl:
                            break
                socks.append(s)
            except (OSError, EOFError, asyncio.TimeoutError, ValueError):
                failures[0] += 1
                s.close()

    tasks = [asyncio.ensure_future(one()) for _ in range(n)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), max(1.0, deadline - time.time()))
    except asyncio.TimeoutError:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return socks, failures[0]


def open_idle_connections(port: int, n: int, path: str = "/", concurrency: int = 100,
                          timeout: float = 180.0):
    """Opens n keep-alive connections, one request on each, and leaves them
    idle. Returns (sockets, failures, seconds taken)."""
    t0 = time.time()
    socks, failures = asyncio.run(_open_idle(port, n, path, concurrency, t0 + timeout))
    return socks, failures, time.time() - t0


def count_alive(socks: list[socket.socket]) -> int:
    alive = 0
    for s in socks:
        try:
            data = s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            alive += bool(data)  # unexpected data, but the connection is open
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive
