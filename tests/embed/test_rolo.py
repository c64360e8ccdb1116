"""rolo's AsgiGateway, unchanged, served by ferrule on the caller's loop, with
boto3 as the client (the example gateway, examples/gateway.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest

pytest.importorskip("rolo")
boto3 = pytest.importorskip("boto3")
import botocore.config  # noqa: E402

from examples.gateway import GatewayThread  # noqa: E402

pytestmark = pytest.mark.engine


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
    gateway = GatewayThread(port=0, loop_name=loop)
    gateway.start()
    try:
        s3, sqs = clients(gateway.url)
        queue = sqs.create_queue(QueueName="q")["QueueUrl"]
        slowest = 0.0
        for i in range(1000):
            body = b"object %d" % i
            t = time.perf_counter()
            s3.put_object(Bucket="b", Key="k%d" % i, Body=body)
            got = s3.get_object(Bucket="b", Key="k%d" % i)["Body"].read()
            slowest = max(slowest, (time.perf_counter() - t) / 2)
            assert got == body
            if i % 2:
                t = time.perf_counter()
                sent = sqs.send_message(QueueUrl=queue, MessageBody="m%d" % i)
                slowest = max(slowest, time.perf_counter() - t)
                assert sent["MessageId"]
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=3)
        assert [m["Body"] for m in messages["Messages"]] == ["m1", "m3", "m5"]
    finally:
        gateway.stop()
    assert not gateway._thread.is_alive()  # type: ignore[union-attr]
    assert slowest < 0.030, f"slowest call {slowest * 1000:.1f} ms"
