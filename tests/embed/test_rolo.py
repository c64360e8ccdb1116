"""rolo's AsgiGateway, unchanged, served by ferrule on the caller's loop, with
boto3 as the client (the example gateway, examples/gateway.py)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from typing import Any

import pytest

pytest.importorskip("rolo")
boto3 = pytest.importorskip("boto3")
import botocore.config  # noqa: E402

pytestmark = pytest.mark.engine

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The program that embeds the gateway: a GatewayThread (the caller's loop in
# a background thread) started, its URL printed, stopped when stdin closes.
EMBEDDER = """
import sys
from examples.gateway import GatewayThread
gateway = GatewayThread(port=0, loop_name=sys.argv[1])
gateway.start()
print(gateway.url, flush=True)
sys.stdin.read()
gateway.stop()
assert not gateway._thread.is_alive()
print("stopped", flush=True)
"""


def clients(url: str) -> tuple[Any, Any]:
    cfg = botocore.config.Config(
        s3={"addressing_style": "path"}, retries={"max_attempts": 0}
    )
    kw = dict(
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=cfg,
    )
    return boto3.client("s3", **kw), boto3.client("sqs", **kw)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_rolo_gateway_serves_2000_boto3_calls_none_over_30_ms(loop: str) -> None:
    # The gateway runs in a program of its own, as an embedder's would: the
    # SDK's Python here does not compete with the server for one GIL.
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "python")])
    )
    program = subprocess.Popen(
        [sys.executable, "-c", EMBEDDER, loop],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert program.stdin is not None and program.stdout is not None
    try:
        url = program.stdout.readline().strip()
        assert url.startswith("http://"), url
        s3, sqs = clients(url)
        queue = sqs.create_queue(QueueName="q")["QueueUrl"]
        # The SDK's long-lived objects (models, clients) out of the
        # collector's way: a full collection over them is the client's pause,
        # not the server's.
        gc.collect()
        gc.freeze()
        # Each operation's first call loads its part of the SDK's model.
        s3.put_object(Bucket="b", Key="warm", Body=b"w")
        s3.get_object(Bucket="b", Key="warm")["Body"].read()
        sqs.send_message(QueueUrl=queue, MessageBody="warm")
        sqs.receive_message(QueueUrl=queue)
        slowest = 0.0
        # 1,000 puts, 1,000 gets and 500 sends: 2,500 calls.
        for i in range(1000):
            body = b"object %d" % i
            t = time.perf_counter()
            s3.put_object(Bucket="b", Key="k%d" % i, Body=body)
            t1 = time.perf_counter()
            got = s3.get_object(Bucket="b", Key="k%d" % i)["Body"].read()
            slowest = max(slowest, t1 - t, time.perf_counter() - t1)
            assert got == body
            if i % 2:
                t = time.perf_counter()
                sent = sqs.send_message(QueueUrl=queue, MessageBody="m%d" % i)
                slowest = max(slowest, time.perf_counter() - t)
                assert sent["MessageId"]
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=3)
        assert [m["Body"] for m in messages["Messages"]] == ["m1", "m3", "m5"]
    finally:
        gc.unfreeze()
        program.stdin.close()
        stopped = program.stdout.read()
        code = program.wait(20)
    assert code == 0 and stopped.strip() == "stopped", (code, stopped)
    print(f"slowest call {slowest * 1000:.1f} ms")
    assert slowest < 0.030, f"slowest call {slowest * 1000:.1f} ms"
