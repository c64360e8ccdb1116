"""Smoke test of the prototype: pipelining, POST body, big (EAGAIN) responses,
streaming (chunked), Connection: close. Run: python smoke_test.py"""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BIG = b"x" * (8 * 1024 * 1024)

APP = '''
BIG = b"x" * (8 * 1024 * 1024)
async def app(scope, receive, send):
    if scope["path"] == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": BIG})
    elif scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"part%d" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        msg = await receive()
        body = b"echo:" + msg["body"] + b":" + scope["path"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
'''


def main():
    with open(os.path.join("/tmp", "smoke_app.py"), "w") as f:
        f.write(APP)
    port = 8019
    env = dict(os.environ, PYTHONPATH="/tmp")
    for drain in ("py", "rust"):
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "serve.py"), "--port", str(port),
                              "--app", "smoke_app:app", "--drain", drain], env=env)
        try:
            time.sleep(0.8)
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 3\r\n\r\nabcGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
            assert data.count(b"HTTP/1.1 200") == 3, data
            assert data.index(b"echo::/a") < data.index(b"echo:abc:/b") < data.index(b"echo::/c"), data
            assert b"connection: close" in data
            big = urllib.request.urlopen(f"http://127.0.0.1:{port}/big").read()
            assert big == BIG, len(big)
            st = urllib.request.urlopen(f"http://127.0.0.1:{port}/stream").read()
            assert st == b"part0part1part2", st
            print(f"drain={drain}: ok")
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait()
    print("2 passed, 0 failed")


if __name__ == "__main__":
    main()
