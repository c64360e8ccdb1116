"""h2load (nghttp2-client) against the real server: 2000 requests over 4
connections of 16 concurrent streams each, over h2c (prior knowledge) and
over TLS (ALPN h2). Every request must succeed; no timing is asserted."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from _h2raw import H2Server, make_cert_files

pytestmark = [
    pytest.mark.engine,
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load not installed"),
]

APP = "tests.http2.h2apps:hello"
REQUESTS = 2000


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_cert_files(tmp_path_factory.mktemp("h2load-certs"))


@pytest.fixture
def h2c_server() -> Iterator[H2Server]:
    server = H2Server(APP)
    yield server
    server.stop()


@pytest.fixture
def tls_server(cert_files: tuple[str, str]) -> Iterator[H2Server]:
    server = H2Server(APP, certfile=cert_files[0], keyfile=cert_files[1])
    yield server
    server.stop()


def h2load(url: str) -> str:
    result = subprocess.run(
        ["h2load", "-c4", "-m16", f"-n{REQUESTS}", url],
        capture_output=True,
        text=True,
        timeout=45,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def assert_all_succeeded(output: str, protocol: str) -> None:
    assert f"Application protocol: {protocol}" in output, output
    requests = re.search(
        r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", output
    )
    assert requests, output
    total, done, succeeded = map(int, requests.groups())
    assert (total, done, succeeded) == (REQUESTS, REQUESTS, REQUESTS), output
    codes = re.search(r"status codes: (\d+) 2xx", output)
    assert codes and int(codes.group(1)) == REQUESTS, output


def test_h2load_h2c_prior_knowledge_all_succeed(h2c_server: H2Server) -> None:
    output = h2load(f"http://127.0.0.1:{h2c_server.port}/")
    assert_all_succeeded(output, "h2c")


def test_h2load_tls_alpn_h2_all_succeed(tls_server: H2Server) -> None:
    output = h2load(f"https://127.0.0.1:{tls_server.port}/")
    assert_all_succeeded(output, "h2")
