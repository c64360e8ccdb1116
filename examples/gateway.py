"""A small LocalStack-like gateway served by ferrule from a background thread.

A rolo ``Gateway`` whose handler chain answers two AWS-style APIs:

* S3-style REST calls: ``PUT /<bucket>/<key>`` stores the body, ``GET``
  returns it (path-style addressing);
* SQS-style JSON calls (``X-Amz-Target: AmazonSQS.<Action>``):
  ``CreateQueue``, ``SendMessage``, ``ReceiveMessage``.

rolo's ``AsgiGateway`` runs unchanged, on the loop ferrule serves on
(``await server.serve()``), with the two options rolo needs: the empty final
body event (``request_body_end_event``) and header names as sent
(``raw_header_names``, for SDKs that sign them)::

    gw = GatewayThread(port=0)
    gw.start()                  # returns once the port is bound
    print(gw.url)
    ...                         # boto3 clients with endpoint_url=gw.url
    gw.stop()                   # returns once every connection and thread is gone

Run it: ``python examples/gateway.py`` (serves on 127.0.0.1:4566 until Ctrl+C).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import uuid
from typing import Any

from rolo import Response
from rolo.gateway import Gateway, HandlerChain, RequestContext
from rolo.gateway.asgi import AsgiGateway

from ferrule import Config, Server

# ------------------------------------------------------------- the services


class Store:
    """The services' state, shared by the gateway's worker threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[tuple[str, str], bytes] = {}
        self.queues: dict[str, list[dict[str, str]]] = {}


def _sqs(store: Store, context: RequestContext, response: Response) -> None:
    request = context.request
    action = request.headers["X-Amz-Target"].rpartition(".")[2]
    params: dict[str, Any] = json.loads(request.get_data() or b"{}")
    host = request.host_url.rstrip("/")
    result: dict[str, Any]
    with store.lock:
        if action == "CreateQueue":
            name = params["QueueName"]
            store.queues.setdefault(name, [])
            result = {"QueueUrl": f"{host}/000000000000/{name}"}
        elif action == "SendMessage":
            name = params["QueueUrl"].rpartition("/")[2]
            body = params["MessageBody"]
            message = {
                "MessageId": str(uuid.uuid4()),
                "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "Body": body,
                "ReceiptHandle": uuid.uuid4().hex,
            }
            store.queues.setdefault(name, []).append(message)
            result = {
                "MessageId": message["MessageId"],
                "MD5OfMessageBody": message["MD5OfBody"],
            }
        elif action == "ReceiveMessage":
            name = params["QueueUrl"].rpartition("/")[2]
            queue = store.queues.setdefault(name, [])
            count = int(params.get("MaxNumberOfMessages", 1))
            taken, queue[:count] = queue[:count], []
            result = {"Messages": taken}
        else:
            response.status_code = 400
            response.set_json(
                {"__type": "InvalidAction", "message": f"unknown action {action}"}
            )
            return
    response.status_code = 200
    response.data = json.dumps(result)
    response.headers["Content-Type"] = "application/x-amz-json-1.0"


def _s3(store: Store, context: RequestContext, response: Response) -> None:
    request = context.request
    bucket, _, key = request.path.lstrip("/").partition("/")
    if request.method == "PUT":
        data = request.get_data()
        with store.lock:
            store.objects[(bucket, key)] = data
        response.status_code = 200
        response.headers["ETag"] = '"%s"' % hashlib.md5(data).hexdigest()
        return
    with store.lock:
        data_or_none = store.objects.get((bucket, key))
    if data_or_none is None:
        response.status_code = 404
        response.data = (
            "<Error><Code>NoSuchKey</Code><Message>no such key</Message></Error>"
        )
        response.headers["Content-Type"] = "application/xml"
        return
    response.status_code = 200
    response.data = data_or_none
    response.headers["ETag"] = '"%s"' % hashlib.md5(data_or_none).hexdigest()


def make_gateway(store: Store | None = None) -> Gateway:
    """The gateway: one request handler that routes by protocol, as
    LocalStack's service-name parser does (much simplified)."""
    store = store or Store()

    def route(chain: HandlerChain, context: RequestContext, response: Response) -> None:
        if "X-Amz-Target" in context.request.headers:
            _sqs(store, context, response)
        else:
            _s3(store, context, response)
        chain.stop()

    return Gateway(request_handlers=[route])


# ---------------------------------------------------- ferrule in a thread


class GatewayThread:
    """Serves the gateway with ferrule on a loop of this thread's own."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 4566,
        loop_name: str = "asyncio",
        **config: Any,
    ) -> None:
        self.host = host
        self.port = port
        self.loop_name = loop_name  # "asyncio" or "uvloop"
        self.config = config
        self.server: Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        assert self.server is not None and self.server.bound_address is not None
        host, port = self.server.bound_address
        return f"http://{host}:{port}"

    def start(self, timeout: float = 10) -> None:
        self._thread = threading.Thread(target=self._main, name="gateway", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the gateway did not start in time")
        if self._error is not None:
            raise RuntimeError("the gateway could not start") from self._error

    def stop(self, timeout: float = 10) -> None:
        if self.server is not None:
            self.server.should_exit = True  # thread-safe
        if self._thread is not None:
            self._thread.join(timeout)

    def _main(self) -> None:
        try:
            if self.loop_name == "uvloop":
                import uvloop

                uvloop.run(self._serve())
            else:
                asyncio.run(self._serve())
        except BaseException as exc:  # SystemExit on a bind failure
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        # rolo binds the loop it is built on: the one ferrule serves on.
        app = AsgiGateway(make_gateway(), event_loop=asyncio.get_running_loop())
        options: dict[str, Any] = {
            "lifespan": "off",
            "log_level": "warning",
            "request_body_end_event": True,
            "raw_header_names": True,
        }
        options.update(self.config)
        self.server = Server(Config(app, host=self.host, port=self.port, **options))
        serving = asyncio.ensure_future(self.server.serve())
        try:
            started = asyncio.ensure_future(self.server.wait_started())
            await asyncio.wait([serving, started], return_when=asyncio.FIRST_COMPLETED)
            if serving.done():
                started.cancel()
                serving.result()  # raises what ended it
            self._ready.set()
            await serving
        finally:
            app.close()


if __name__ == "__main__":  # pragma: no cover
    import time

    gateway = GatewayThread()
    gateway.start()
    print(f"gateway on {gateway.url} (Ctrl+C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        gateway.stop()
