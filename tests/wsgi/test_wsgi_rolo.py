"""rolo's WsgiGateway (LocalStack's gateway library) served unchanged by
ferrule's WSGI threads, driven by boto3 on reused connections; and the CLI's
--interface wsgi."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.timeout(120), pytest.mark.engine]

rolo = pytest.importorskip("rolo")
boto3 = pytest.importorskip("boto3")

from botocore.config import Config as BotoConfig  # noqa: E402
from rolo.gateway import HandlerChain, RequestContext  # noqa: E402
from rolo.gateway.wsgi import WsgiGateway  # noqa: E402
from rolo.response import Response  # noqa: E402

from examples.gateway import make_gateway  # noqa: E402


def build_gateway(threads: set[str]) -> WsgiGateway:
    """The example gateway through rolo's WSGI adapter, noting the name of
    each thread that runs a request."""
    gateway = make_gateway()

    def note_thread(
        chain: HandlerChain, context: RequestContext, response: Response
    ) -> None:
        threads.add(threading.current_thread().name)

    gateway.request_handlers.insert(0, note_thread)
    return WsgiGateway(gateway)


def clients(url: str) -> tuple[Any, Any]:
    config = BotoConfig(
        retries={"max_attempts": 1},
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    kw: dict[str, Any] = dict(
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=config,
    )
    return boto3.client("sqs", **kw), boto3.client("s3", **kw)


def test_rolo_wsgi_gateway_with_boto3_on_reused_connections(serve: Any) -> None:
    threads: set[str] = set()
    served = serve(build_gateway(threads), interface="wsgi", wsgi_threads=4)
    sqs, s3 = clients(served.url)

    calls = 0
    queue_url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    calls += 1
    assert queue_url.endswith("/000000000000/jobs")
    for i in range(300):
        sent = sqs.send_message(QueueUrl=queue_url, MessageBody=f"message {i}")
        calls += 1
        assert (
            sent["MD5OfMessageBody"] == hashlib.md5(f"message {i}".encode()).hexdigest()
        )
    received: list[str] = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
        calls += 1
        if not got.get("Messages"):
            break
        received.extend(m["Body"] for m in got["Messages"])
    assert received == [f"message {i}" for i in range(300)]

    s3.create_bucket(Bucket="bucket")
    calls += 1
    for i in range(100):
        data = f"object {i} ".encode() * (i * 100 + 1)
        put = s3.put_object(Bucket="bucket", Key=f"dir/key-{i}", Body=data)
        assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        got = s3.get_object(Bucket="bucket", Key=f"dir/key-{i}")
        assert got["Body"].read() == data
        calls += 2
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="bucket", Key="missing")
    calls += 1

    stats = served.stats()
    # Every call answered, on the two clients' kept connections.
    assert calls > 500
    assert stats["requests"] == calls
    assert stats["responses"] == calls
    assert stats["connections"] <= 4
    assert threads and all(name.startswith("ferrule-wsgi-") for name in threads)


def test_cli_interface_wsgi(run_cli: Any, tmp_path: Any) -> None:
    module = tmp_path / "wsgi_cli_app.py"
    module.write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [environ['SCRIPT_NAME'].encode(), b'|', environ['PATH_INFO'].encode()]\n"
    )
    proc = run_cli(
        "wsgi_cli_app:app",
        "--app-dir",
        str(tmp_path),
        "--interface",
        "wsgi",
        "--wsgi-threads",
        "2",
        "--root-path",
        "/root",
        "--lifespan",
        "on",
    )
    r = httpx.get(proc.url + "/hello")
    assert r.text == "/root|/hello"
    assert proc.stop() == 0
    # The access log line, as for ASGI requests.
    assert '"GET /hello HTTP/1.1" 200' in proc.output
    # --lifespan on cannot apply: one notice line, no lifespan attempted.
    assert "A WSGI app has no lifespan; --lifespan on ignored" in proc.output
    assert "Traceback" not in proc.output


def test_cli_interface_wsgi_with_workers(run_cli: Any, tmp_path: Any) -> None:
    module = tmp_path / "wsgi_workers_app.py"
    module.write_text(
        "import os\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [repr((environ['wsgi.multiprocess'], os.getpid())).encode()]\n"
    )
    proc = run_cli(
        "wsgi_workers_app:app",
        "--app-dir",
        str(tmp_path),
        "--interface",
        "wsgi",
        "--workers",
        "2",
    )
    seen = set()
    for _ in range(20):
        with httpx.Client() as client:
            multiprocess, pid = eval(client.get(proc.url).text)
        assert multiprocess is True
        seen.add(pid)
    assert proc.proc.pid not in seen
    assert proc.stop() == 0
