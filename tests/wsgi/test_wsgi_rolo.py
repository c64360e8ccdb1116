"""rolo's WsgiGateway (LocalStack's gateway library) served unchanged by
ferrule's WSGI threads, driven by boto3 on reused connections; and the CLI's
--interface wsgi."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.timeout(120), pytest.mark.engine]

rolo = pytest.importorskip("rolo")
boto3 = pytest.importorskip("boto3")

from botocore.config import Config as BotoConfig  # noqa: E402
from rolo.gateway import Gateway, HandlerChain, RequestContext  # noqa: E402
from rolo.gateway.wsgi import WsgiGateway  # noqa: E402
from rolo.response import Response  # noqa: E402


class Store:
    """What the fake services keep: S3 objects and SQS queues."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[tuple[str, str], bytes] = {}
        self.queues: dict[str, list[dict[str, str]]] = {}
        self.threads: set[str] = set()


def build_gateway(store: Store) -> WsgiGateway:
    def tag_service(
        chain: HandlerChain, context: RequestContext, response: Response
    ) -> None:
        target = context.request.headers.get("X-Amz-Target", "")
        context.service = "sqs" if target.startswith("AmazonSQS.") else "s3"
        store.threads.add(threading.current_thread().name)

    def sqs(chain: HandlerChain, context: RequestContext, response: Response) -> None:
        if context.service != "sqs":
            return
        request = context.request
        op = request.headers["X-Amz-Target"].split(".", 1)[1]
        doc = json.loads(request.get_data() or b"{}")
        with store.lock:
            if op == "CreateQueue":
                store.queues.setdefault(doc["QueueName"], [])
                url = f"{request.host_url}000000000000/{doc['QueueName']}"
                result: dict[str, Any] = {"QueueUrl": url}
            elif op == "SendMessage":
                name = doc["QueueUrl"].rsplit("/", 1)[1]
                body = doc["MessageBody"]
                md5 = hashlib.md5(body.encode()).hexdigest()
                message = {
                    "MessageId": str(uuid.uuid4()),
                    "Body": body,
                    "MD5OfBody": md5,
                }
                store.queues[name].append(message)
                result = {"MessageId": message["MessageId"], "MD5OfMessageBody": md5}
            elif op == "ReceiveMessage":
                name = doc["QueueUrl"].rsplit("/", 1)[1]
                count = doc.get("MaxNumberOfMessages", 1)
                taken = store.queues[name][:count]
                del store.queues[name][:count]
                result = {
                    "Messages": [dict(m, ReceiptHandle=m["MessageId"]) for m in taken]
                }
            else:
                response.status_code = 400
                result = {"__type": "UnsupportedOperation"}
        response.set_json(result)
        response.headers["Content-Type"] = "application/x-amz-json-1.0"
        chain.stop()

    def s3(chain: HandlerChain, context: RequestContext, response: Response) -> None:
        request = context.request
        bucket, _, key = request.path.lstrip("/").partition("/")
        with store.lock:
            if request.method == "PUT" and key:
                data = request.get_data()
                store.objects[(bucket, key)] = data
                response.headers["ETag"] = f'"{hashlib.md5(data).hexdigest()}"'
            elif request.method == "PUT":
                pass  # CreateBucket
            elif request.method == "GET" and (bucket, key) in store.objects:
                data = store.objects[(bucket, key)]
                response.set_response(data)
                response.headers["ETag"] = f'"{hashlib.md5(data).hexdigest()}"'
            else:
                response.status_code = 404
                response.set_response(
                    b"<Error><Code>NoSuchKey</Code><Message>missing</Message></Error>"
                )
                response.headers["Content-Type"] = "application/xml"
        chain.stop()

    def request_id(
        chain: HandlerChain, context: RequestContext, response: Response
    ) -> None:
        response.headers["x-amzn-RequestId"] = str(uuid.uuid4())

    gateway = Gateway(
        request_handlers=[tag_service, sqs, s3], response_handlers=[request_id]
    )
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
    store = Store()
    served = serve(build_gateway(store), interface="wsgi", wsgi_threads=4)
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
    assert all(name.startswith("ferrule-wsgi-") for name in store.threads)


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
