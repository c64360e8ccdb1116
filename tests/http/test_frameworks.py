"""The Starlette and Quart examples end to end: httpx against the in-thread
server, and curl against the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import httpx
import pytest

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]

starlette = pytest.importorskip("starlette")


@pytest.fixture
def starlette_server(serve):
    from examples.starlette_app import app

    return serve(app, lifespan="on")


@pytest.fixture
def quart_server(serve):
    pytest.importorskip("quart")
    from examples.quart_app import app

    return serve(app, lifespan="on")


# ---------------------------------------------------------------- Starlette


def test_starlette_homepage_returns_plain_text(starlette_server):
    response = httpx.get(starlette_server.url + "/")
    assert response.status_code == 200
    assert response.text == "Hello, world!"
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["content-length"] == "13"
    assert response.headers["server"] == "ferrule"


def test_starlette_json_reflects_method_path_and_query(starlette_server):
    response = httpx.get(starlette_server.url + "/json", params={"a": "1", "b": "\u20ac"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "hello": "world",
        "method": "GET",
        "path": "/json",
        "query": {"a": "1", "b": "\u20ac"},
    }


def test_starlette_stream_is_chunked_and_complete(starlette_server, raw_client):
    client = raw_client(starlette_server)
    response = client.get("/stream")
    assert response.status == 200
    assert response.framing == "chunked"
    assert response.body == b"".join(f"chunk {i}\n".encode() for i in range(5))
    # and over httpx, streamed
    with httpx.stream("GET", starlette_server.url + "/stream") as streamed:
        assert streamed.headers["transfer-encoding"] == "chunked"
        assert b"".join(streamed.iter_bytes()) == response.body


def test_starlette_echo_returns_the_posted_body_and_content_type(starlette_server):
    payload = json.dumps({"x": list(range(1000))}).encode()
    response = httpx.post(
        starlette_server.url + "/echo",
        content=payload,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200
    assert response.content == payload
    assert response.headers["content-type"] == "application/json"


def test_starlette_echo_of_a_chunked_upload(starlette_server):
    def body():
        for i in range(10):
            yield f"piece {i};".encode()

    response = httpx.post(starlette_server.url + "/echo", content=body())
    assert response.status_code == 200
    assert response.text == "".join(f"piece {i};" for i in range(10))


def test_starlette_state_comes_from_the_lifespan(starlette_server):
    response = httpx.get(starlette_server.url + "/state")
    assert response.status_code == 200
    data = response.json()
    assert data["greeting"] == "hello from lifespan"
    assert abs(time.time() - data["started_at"]) < 60


def test_starlette_unknown_route_is_404_and_wrong_method_is_405(starlette_server):
    with httpx.Client(base_url=starlette_server.url) as client:
        assert client.get("/nope").status_code == 404
        assert client.get("/echo").status_code == 405
        assert client.get("/").status_code == 200  # connection still fine


def test_starlette_many_mixed_requests_on_one_connection(starlette_server):
    before = starlette_server.stats()
    with httpx.Client(base_url=starlette_server.url) as client:
        for i in range(50):
            assert client.get("/").text == "Hello, world!"
            assert client.get("/json", params={"i": i}).json()["query"] == {"i": str(i)}
            assert client.post("/echo", content=b"e%d" % i).content == b"e%d" % i
            assert client.get("/stream").text.count("chunk") == 5
    after = starlette_server.stats()
    assert after["connections"] - before["connections"] == 1
    assert after["responses"] - before["responses"] == 200


# -------------------------------------------------------------------- Quart


def test_quart_homepage(quart_server):
    response = httpx.get(quart_server.url + "/")
    assert response.status_code == 200
    assert response.text == "Hello, world!"


def test_quart_json_shows_before_serving_ran(quart_server):
    response = httpx.get(quart_server.url + "/json", params={"q": "v"})
    assert response.status_code == 200
    assert response.json() == {"hello": "world", "started": True, "args": {"q": "v"}}


def test_quart_echo(quart_server):
    response = httpx.post(
        quart_server.url + "/echo", content=b"quart body", headers={"content-type": "text/x-test"}
    )
    assert response.status_code == 200
    assert response.content == b"quart body"
    assert response.headers["content-type"].startswith("text/x-test")


def test_quart_keep_alive_and_404(quart_server):
    before = quart_server.stats()
    with httpx.Client(base_url=quart_server.url) as client:
        for _ in range(20):
            assert client.get("/").status_code == 200
        assert client.get("/missing").status_code == 404
    assert quart_server.stats()["connections"] - before["connections"] == 1


# --------------------------------------------------------------------- curl

curl = shutil.which("curl")
needs_curl = pytest.mark.skipif(curl is None, reason="curl is not installed")


def run_curl(*args: str) -> subprocess.CompletedProcess[str]:
    assert curl is not None
    return subprocess.run(
        [curl, "-sS", "--max-time", "10", *args],
        capture_output=True,
        text=True,
        timeout=20,
    )


@pytest.fixture
def starlette_cli(run_cli):
    return run_cli("examples.starlette_app:app", "--no-access-log")


@needs_curl
def test_curl_v_against_the_cli_started_starlette_example(starlette_cli):
    result = run_curl("-v", starlette_cli.url + "/")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello, world!"
    assert "< HTTP/1.1 200 OK" in result.stderr
    lower = result.stderr.lower()
    assert "< server: ferrule" in lower
    assert "< content-length: 13" in lower
    assert "< date: " in lower


@needs_curl
def test_curl_reuses_the_connection_for_two_urls(starlette_cli):
    result = run_curl("-v", starlette_cli.url + "/", starlette_cli.url + "/json")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Hello, world!")
    assert json.loads(result.stdout[len("Hello, world!"):])["path"] == "/json"
    assert "Re-using existing connection" in result.stderr or "Reusing existing" in result.stderr
    assert result.stderr.count("Connected to") == 1


@needs_curl
def test_curl_post_echo_stream_and_http_1_0(starlette_cli):
    posted = run_curl("--data-binary", "curl payload", "-H", "Content-Type: text/x-curl",
                      starlette_cli.url + "/echo")
    assert posted.returncode == 0, posted.stderr
    assert posted.stdout == "curl payload"

    streamed = run_curl("-v", starlette_cli.url + "/stream")
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == "".join(f"chunk {i}\n" for i in range(5))
    assert "< transfer-encoding: chunked" in streamed.stderr.lower()

    old = run_curl("-v", "--http1.0", starlette_cli.url + "/stream")
    assert old.returncode == 0, old.stderr
    assert old.stdout == streamed.stdout
    assert "transfer-encoding" not in old.stderr.lower()


@needs_curl
def test_curl_expect_100_continue_upload(starlette_cli):
    payload = "x" * 2_000_000  # large enough that curl sends Expect: 100-continue
    result = subprocess.run(
        [curl, "-sS", "-v", "--max-time", "10", "--data-binary", "@-", starlette_cli.url + "/echo"],
        input=payload, capture_output=True, text=True, timeout=20,
    )
    assert result.returncode == 0, result.stderr
    assert "> Expect: 100-continue" in result.stderr
    assert "< HTTP/1.1 100 Continue" in result.stderr
    assert "< HTTP/1.1 200 OK" in result.stderr
    assert len(result.stdout) == len(payload)
    assert result.stdout == payload
