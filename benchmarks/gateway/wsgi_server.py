"""A LocalStack-like rolo gateway served through rolo's WsgiGateway on
ferrule's WSGI threads (``--interface wsgi``), for the gateway side-by-side
run (rolo's AsgiGateway on ferrule, hypercorn and twisted are the others).

The gateway is ``examples/gateway.py``'s (S3-style and SQS-style calls),
the one the other servers of the run serve, enough for boto3 clients and for
wrk on a raw POST::

    python benchmarks/gateway/wsgi_server.py --port 8000 [--threads N]
    python benchmarks/gateway/wsgi_server.py --smoke 2   # serve, call, stop

``--smoke SECONDS`` starts the server on a free port, makes boto3 SQS and
S3 calls against it for that long, prints the count, and stops.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rolo.gateway.wsgi import WsgiGateway

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from examples.gateway import make_gateway  # noqa: E402

# The same gateway (services and handler chain) as the ASGI servers of the
# side-by-side run serve, through rolo's WSGI adapter.
app = WsgiGateway(make_gateway())


def smoke(seconds: float, threads: int | None) -> int:
    """Serves on a free port, makes boto3 calls for ``seconds``, stops."""
    import boto3
    from botocore.config import Config as BotoConfig

    sys.path.insert(0, str(ROOT / "python"))
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
