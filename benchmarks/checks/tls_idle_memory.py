"""Memory per idle keep-alive connection, TLS against plain HTTP.

Starts ferrule (examples/hello.py) on a TLS-and-plain port, opens N
connections of each kind that each serve one request and then stay idle,
and reports the server's RSS growth per connection (VmRSS from /proc).
Not a timed benchmark: it may run on a busy machine.

    python benchmarks/checks/tls_idle_memory.py            # 1,000 of each
    python benchmarks/checks/tls_idle_memory.py -n 2000
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import trustme

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        match = re.search(r"VmRSS:\s+(\d+) kB", f.read())
    assert match
    return int(match.group(1))


def one_request(sock: socket.socket) -> None:
    sock.sendall(REQUEST)
    data = b""
    while not data.endswith(b"Hello, world!"):
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("connection closed early")
        data += chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    ca = trustme.CA()
    issued = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    issued.cert_chain_pems[0].write_to_path(cert)
    issued.private_key_pem.write_to_path(key)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferrule", "examples.hello:app", "--port", "0",
         "--ssl-certfile", cert, "--ssl-keyfile", key, "--ssl-and-plain",
         "--timeout-keep-alive", "300", "--no-access-log"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )
    port = 0
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"running on https://\S+:(\d+)", line)
        if found:
            port = int(found.group(1))
            break
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    held: list[socket.socket] = []
    try:
        time.sleep(0.5)
        results = {}
        for kind in ("plain", "tls"):
            before = rss_kib(proc.pid)
            for _ in range(args.n):
                sock = socket.create_connection(("127.0.0.1", port))
                if kind == "tls":
                    sock = ctx.wrap_socket(sock, server_hostname="localhost")
                one_request(sock)
                held.append(sock)
            time.sleep(0.5)
            after = rss_kib(proc.pid)
            results[kind] = (after - before) / args.n
            print(f"{kind}: {after - before} KiB for {args.n} idle connections, "
                  f"{results[kind]:.1f} KiB each (RSS {before} -> {after} KiB)")
        print(f"TLS costs {results['tls'] - results['plain']:.1f} KiB more per idle "
              "connection than plain HTTP")
    finally:
        for sock in held:
            sock.close()
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
