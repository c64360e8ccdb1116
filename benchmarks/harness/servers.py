"""The servers under test: how to start each one on an app, pinned to CPU 0."""
from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

from . import tls
from .util import SERVER_CPU, descendants, log

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS_DIR = os.path.join(BENCH_DIR, "apps")
VENV_BIN = os.path.join(sys.prefix, "bin")
KEEPALIVE_S = 300  # idle keep-alive timeout passed to every server that has a flag for it

SERVER_ORDER = ["ferrule", "granian", "uvicorn", "hypercorn", "nginx"]


class Server:
    name = "?"
    hello_only = False  # nginx serves only the hello response (and static files)

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.notes: list[str] = []

    def serves(self, case) -> bool:
        return not self.hello_only or case.name == "hello" or case.module.startswith("files")

    def available(self) -> str | None:
        """None when usable, else the reason it is skipped."""
        return None

    def argv(self, module: str, port: int) -> list[str]:
        raise NotImplementedError

    def version(self) -> str:
        try:
            from importlib.metadata import version
            return version(self.name)
        except Exception:
            return "?"

    def describe(self) -> str:
        """Markdown: the command line with the venv path shortened."""
        argv = [x.replace(VENV_BIN + "/", ".venv/bin/") for x in self.argv("APP", 0)]
        cmd = " ".join(argv).replace(" 0 ", " PORT ").replace(":0 ", ":PORT ")
        return f"`{cmd}`"


class Uvicorn(Server):
    name = "uvicorn"

    def argv(self, module, port):
        return [os.path.join(VENV_BIN, "uvicorn"), f"{module}:app",
                "--host", "127.0.0.1", "--port", str(port),
                "--loop", "uvloop", "--http", "httptools", "--workers", "1",
                "--no-access-log", "--log-level", "warning",
                "--timeout-keep-alive", str(KEEPALIVE_S)] + tls.server_args("uvicorn")


class Hypercorn(Server):
    name = "hypercorn"

    def argv(self, module, port):
        return [os.path.join(VENV_BIN, "hypercorn"), f"{module}:app",
                "--bind", f"127.0.0.1:{port}", "--workers", "1",
                "--worker-class", "uvloop",  # same loop as uvicorn and granian
                "--log-level", "warning", "--keep-alive", str(KEEPALIVE_S)] + tls.server_args("hypercorn")


class Granian(Server):
    name = "granian"

    def argv(self, module, port):
        # granian (hyper) has no idle keep-alive timeout flag for HTTP/1; its
        # header read timeout also runs while a keep-alive connection is idle,
        # so it is set to its maximum (60 s).
        return [os.path.join(VENV_BIN, "granian"), "--interface", "asgi",
                "--host", "127.0.0.1", "--port", str(port),
                "--workers", "1", "--http", "1", "--no-ws", "--loop", "uvloop",
                "--log-level", "warning", "--no-access-log",
                "--http1-header-read-timeout", "60000",
                *tls.server_args("granian"),
                f"{module}:app"]


class Ferrule(Server):
    name = "ferrule"

    def __init__(self, workdir):
        super().__init__(workdir)
        self._help: str | None = None

    def _exe(self):
        return os.path.join(VENV_BIN, "ferrule")

    def available(self):
        if not os.path.exists(self._exe()):
            return "ferrule is not installed in the venv (build failed or skipped)"
        probe = subprocess.run([sys.executable, "-c", "import ferrule._ferrule"],
                               capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            tail = (probe.stderr.strip().splitlines() or ["?"])[-1]
            return f"`import ferrule._ferrule` fails: {tail}"
        try:
            h = subprocess.run([self._exe(), "--help"], capture_output=True, text=True, timeout=60)
            self._help = h.stdout + h.stderr
        except Exception as e:  # noqa: BLE001
            return f"`ferrule --help` fails: {e}"
        return None

    def _has(self, flag: str) -> bool:
        return bool(self._help and re.search(re.escape(flag) + r"\b", self._help))

    def argv(self, module, port):
        a = [self._exe(), f"{module}:app", "--host", "127.0.0.1", "--port", str(port)]
        if self._help is None or self._has("--no-access-log"):
            a.append("--no-access-log")
        if self._has("--log-level"):
            a += ["--log-level", "warning"]
        if self._has("--workers"):
            a += ["--workers", "1"]
        flag = self.keepalive_flag()
        if flag:
            a += [flag, str(KEEPALIVE_S)]
        return a + tls.server_args("ferrule")

    def keepalive_flag(self) -> str | None:
        for flag in ("--timeout-keep-alive", "--keep-alive-timeout", "--keep-alive"):
            if self._has(flag):
                return flag
        return None


# nginx's temporary files in the run's work dir (a fragment of NGINX_CONF
# and of harness/h2.py's H2_NGINX_CONF, formatted with them)
NGINX_TEMP_PATHS = """\
    client_body_temp_path {workdir}/nginx-tmp/body;
    proxy_temp_path {workdir}/nginx-tmp/proxy;
    fastcgi_temp_path {workdir}/nginx-tmp/fastcgi;
    uwsgi_temp_path {workdir}/nginx-tmp/uwsgi;
    scgi_temp_path {workdir}/nginx-tmp/scgi;
"""

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {nofile};
user root;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{
    worker_connections {conns};
    multi_accept off;
}}
http {{
    access_log off;
    default_type text/plain;
    keepalive_timeout {ka}s;
    keepalive_requests 100000000;
""" + NGINX_TEMP_PATHS + """    server {{
        listen 127.0.0.1:{port}{ssl} backlog=4096;{ssl_files}
        location / {{
            return 200 "Hello, world!";
        }}
        # The file cases: the same files the Starlette app serves.
        location /f/ {{
            alias {files}/;
            sendfile on;
            tcp_nopush on;
            etag on;
        }}
    }}
}}
"""


class Nginx(Server):
    name = "nginx"
    hello_only = True

    def available(self):
        if not shutil.which("nginx"):
            return "nginx is not installed"
        return None

    def version(self):
        r = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
        return (r.stderr or r.stdout).strip().split("/")[-1]

    def argv(self, module, port):
        os.makedirs(os.path.join(self.workdir, "nginx-tmp"), exist_ok=True)
        conf = os.path.join(self.workdir, f"nginx-{port}.conf")
        with open(conf, "w") as f:
            nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            f.write(NGINX_CONF.format(workdir=self.workdir, port=port, ka=KEEPALIVE_S,
                                      nofile=nofile, conns=max(1024, nofile - 100),
                                      files=os.path.join(BENCH_DIR, "work", "files"),
                                      **tls.nginx_format()))
        return [shutil.which("nginx") or "nginx", "-c", conf, "-p", self.workdir]

    def describe(self):
        return ("`nginx -c CONF` with 1 worker process, `return 200 \"Hello, world!\"` "
                "(default_type text/plain), the file cases as static files (sendfile, "
                "tcp_nopush), access_log off, "
                f"keepalive_timeout {KEEPALIVE_S}s, keepalive_requests 1e8, "
                "worker_connections = fd limit − 100 (config: `harness/servers.py`)")


SERVER_CLASSES = {c.name: c for c in (Ferrule, Granian, Uvicorn, Hypercorn, Nginx)}


class Running:
    """A started server process (its process group is ours to stop)."""

    def __init__(self, server: Server, module: str, port: int, path: str):
        self.server, self.module, self.port = server, module, port
        self.log_path = os.path.join(server.workdir, f"{server.name}-{module}-{port}.log")
        self.logf = open(self.log_path, "ab")
        argv = server.argv(module, port)
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU] + argv, cwd=APPS_DIR,
            stdout=self.logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=dict(os.environ, PYTHONPATH=APPS_DIR, PYTHONUNBUFFERED="1"))
        self.pid = self.proc.pid
        self.ready_path = path

    def wait_ready(self, timeout: float = 60.0) -> bool:
        end = time.time() + timeout
        req = (f"GET {self.ready_path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Connection: close\r\n\r\n").encode()
        while time.time() < end:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as raw:
                    s = (tls.client_context().wrap_socket(raw, server_hostname="localhost")
                         if tls.FILES else raw)
                    s.sendall(req)
                    data = s.recv(64)
                    if data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200"):
                        time.sleep(0.3)  # let worker processes/threads settle
                        return True
            except OSError:
                pass
            time.sleep(0.2)
        return False

    def pids(self) -> list[int]:
        return descendants(self.pid)

    def log_tail(self, n: int = 15) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                log(f"{self.server.name} did not stop on SIGTERM; SIGKILL")
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self.logf.close()
