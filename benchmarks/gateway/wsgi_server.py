"""A LocalStack-like rolo gateway served through rolo's WsgiGateway on
ferrule's WSGI threads (``--interface wsgi``), for the gateway side-by-side
run (rolo's AsgiGateway on ferrule, hypercorn and twisted are the others).

The handler chain answers S3-style calls (path-style ``PUT``/``GET`` of
``/<bucket>/<key>``) and SQS-style calls (AWS JSON 1.0, ``X-Amz-Target:
AmazonSQS.<Operation>``: CreateQueue, SendMessage, ReceiveMessage,
GetQueueUrl), enough for boto3 clients and for wrk on a raw POST::

    python benchmarks/gateway/wsgi_server.py --port 8000 [--threads N]
    python benchmarks/gateway/wsgi_server.py --smoke 2   # serve, call, stop

``--smoke SECONDS`` starts the server on a free port, makes boto3 SQS and
S3 calls against it for that long, prints the count, and stops.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from rolo.gateway import Gateway, HandlerChain, RequestContext
from rolo.gateway.wsgi import WsgiGateway
from rolo.response import Response

ACCOUNT = "000000000000"


class Backend:
    """The fake services' state: S3 objects, SQS queues."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[tuple[str, str], bytes] = {}
        self.queues: dict[str, list[dict[str, str]]] = {}


def sqs_operation(
    backend: Backend, request: Any, op: str, doc: dict[str, Any]
) -> dict[str, Any]:
    def queue_name() -> str:
        return str(doc["QueueUrl"]).rsplit("/", 1)[1]

    with backend.lock:
        if op in ("CreateQueue", "GetQueueUrl"):
            backend.queues.setdefault(doc["QueueName"], [])
            return {"QueueUrl": f"{request.host_url}{ACCOUNT}/{doc['QueueName']}"}
        if op == "SendMessage":
            body = doc["MessageBody"]
            md5 = hashlib.md5(body.encode()).hexdigest()
            message = {"MessageId": str(uuid.uuid4()), "Body": body, "MD5OfBody": md5}
            backend.queues.setdefault(queue_name(), []).append(message)
            return {"MessageId": message["MessageId"], "MD5OfMessageBody": md5}
        if op == "ReceiveMessage":
            queue = backend.queues.setdefault(queue_name(), [])
            taken = queue[: doc.get("MaxNumberOfMessages", 1)]
            del queue[: len(taken)]
            return {"Messages": [dict(m, ReceiptHandle=m["MessageId"]) for m in taken]}
    raise KeyError(op)


def build_app() -> WsgiGateway:
    backend = Backend()

    def parse(chain: HandlerChain, context: RequestContext, response: Response) -> None:
        target = context.request.headers.get("X-Amz-Target", "")
        if target.startswith("AmazonSQS."):
            context.service, context.operation = "sqs", target.split(".", 1)[1]
        else:
            context.service, context.operation = "s3", context.request.method

    def sqs(chain: HandlerChain, context: RequestContext, response: Response) -> None:
        if context.service != "sqs":
            return
        doc = json.loads(context.request.get_data() or b"{}")
        try:
            result = sqs_operation(backend, context.request, context.operation, doc)
        except KeyError as exc:
            response.status_code = 400
            result = {"__type": "InvalidAction", "message": f"unknown: {exc}"}
        response.set_json(result)
        response.headers["Content-Type"] = "application/x-amz-json-1.0"
        chain.stop()

    def s3(chain: HandlerChain, context: RequestContext, response: Response) -> None:
        request = context.request
        bucket, _, key = request.path.lstrip("/").partition("/")
        with backend.lock:
            if request.method == "PUT" and key:
                data = request.get_data()
                backend.objects[(bucket, key)] = data
                response.headers["ETag"] = f'"{hashlib.md5(data).hexdigest()}"'
            elif request.method == "PUT":
                pass  # CreateBucket
            elif request.method in ("GET", "HEAD") and (bucket, key) in backend.objects:
                data = backend.objects[(bucket, key)]
                response.set_response(data)
                response.headers["ETag"] = f'"{hashlib.md5(data).hexdigest()}"'
            else:
                response.status_code = 404
                response.set_response(b"<Error><Code>NoSuchKey</Code></Error>")
                response.headers["Content-Type"] = "application/xml"
        chain.stop()

    def request_id(
        chain: HandlerChain, context: RequestContext, response: Response
    ) -> None:
        response.headers["x-amzn-RequestId"] = str(uuid.uuid4())

    return WsgiGateway(
        Gateway(request_handlers=[parse, sqs, s3], response_handlers=[request_id])
    )


app = build_app()


def smoke(seconds: float, threads: int | None) -> int:
    """Serves on a free port, makes boto3 calls for ``seconds``, stops."""
    import boto3
    from botocore.config import Config as BotoConfig

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
    from ferrule import Config
    from ferrule.server import Server

    server = Server(
        Config(app, port=0, interface="wsgi", wsgi_threads=threads, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    url = "http://127.0.0.1:%d" % server.bound_address[1]
    kw: dict[str, Any] = dict(
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=BotoConfig(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
    sqs, s3 = boto3.client("sqs", **kw), boto3.client("s3", **kw)
    queue = sqs.create_queue(QueueName="smoke")["QueueUrl"]
    s3.create_bucket(Bucket="smoke")
    calls, end = 2, time.monotonic() + seconds
    while time.monotonic() < end:
        sqs.send_message(QueueUrl=queue, MessageBody="hello")
        sqs.receive_message(QueueUrl=queue)
        s3.put_object(Bucket="smoke", Key="k", Body=b"data")
        assert s3.get_object(Bucket="smoke", Key="k")["Body"].read() == b"data"
        calls += 4
    server.should_exit = True
    thread.join(10)
    print(
        f"{calls} boto3 calls in {seconds:g}s; server stopped: {not thread.is_alive()}"
    )
    return 0 if not thread.is_alive() else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--threads", type=int, default=None, help="--wsgi-threads (default: ferrule's)"
    )
    p.add_argument("--smoke", type=float, metavar="SECONDS", help="serve, call, stop")
    a = p.parse_args()
    if a.smoke is not None:
        return smoke(a.smoke, a.threads)
    import ferrule

    ferrule.run(
        app,
        host=a.host,
        port=a.port,
        interface="wsgi",
        wsgi_threads=a.threads,
        access_log=False,
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
