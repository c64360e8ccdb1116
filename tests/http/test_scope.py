"""Every field of the HTTP connection scope, as the app sees it (real server, real clients)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.engine, pytest.mark.timeout(30)]


class ScopeRecorder:
    """An ASGI app that keeps every http scope it is called with and answers 200."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.lifespan_state = state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if self.lifespan_state is not None:
                        scope["state"].update(self.lifespan_state)
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert scope["type"] == "http"
        self.scopes.append(scope)
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    @property
    def last(self) -> dict[str, Any]:
        assert self.scopes, "the app was never called"
        return self.scopes[-1]


@pytest.fixture
def recorder() -> ScopeRecorder:
    return ScopeRecorder()


def test_scope_type_is_http_and_asgi_version_is_3_0(serve, recorder):
    served = serve(recorder, lifespan="off")
    assert httpx.get(served.url + "/").status_code == 200
    scope = recorder.last
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    spec = scope["asgi"]["spec_version"]
    assert isinstance(spec, str)
    major, minor = (int(x) for x in spec.split("."))
    # send() raising OSError after a disconnect is spec 2.4 behaviour.
    assert (major, minor) >= (2, 4)


def test_scope_http_version_is_1_1_for_http_1_1_requests(serve, recorder, raw_client):
    served = serve(recorder, lifespan="off")
    client = raw_client(served)
    assert client.get("/").status == 200
    assert recorder.last["http_version"] == "1.1"


def test_scope_http_version_is_1_0_for_http_1_0_requests(serve, recorder, raw_client):
    served = serve(recorder, lifespan="off")
    client = raw_client(served)
    assert client.get("/", version="HTTP/1.0").status == 200
    assert recorder.last["http_version"] == "1.0"


@pytest.mark.parametrize(
    "method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"]
)
def test_scope_method_is_the_request_method_upper_case(serve, recorder, raw_client, method):
    served = serve(recorder, lifespan="off")
    client = raw_client(served)
    body = b"x" if method in ("POST", "PUT", "PATCH") else b""
    assert client.get("/m", method=method, body=body).status == 200
    assert recorder.last["method"] == method
    assert type(recorder.last["method"]) is str


def test_scope_scheme_is_http(serve, recorder):
    served = serve(recorder, lifespan="off")
    httpx.get(served.url + "/")
    assert recorder.last["scheme"] == "http"


@pytest.mark.parametrize(
    ("target", "path", "raw_path"),
    [
        ("/", "/", b"/"),
        ("/plain/path", "/plain/path", b"/plain/path"),
        ("/price/%E2%82%AC", "/price/\u20ac", b"/price/%E2%82%AC"),
        ("/caf%C3%A9/na%C3%AFve", "/caf\u00e9/na\u00efve", b"/caf%C3%A9/na%C3%AFve"),
        ("/a%20b", "/a b", b"/a%20b"),
        ("/a+b", "/a+b", b"/a+b"),
        ("/a%2Fb", "/a/b", b"/a%2Fb"),
        ("/%e2%82%ac", "/\u20ac", b"/%e2%82%ac"),
    ],
)
def test_scope_path_is_percent_decoded_utf8_and_raw_path_is_the_bytes_received(
    serve, recorder, raw_client, target, path, raw_path
):
    served = serve(recorder, lifespan="off")
    client = raw_client(served)
    assert client.get(target + "?q=1").status == 200
    scope = recorder.last
    assert scope["path"] == path
    assert type(scope["path"]) is str
    assert scope["raw_path"] == raw_path
    assert type(scope["raw_path"]) is bytes


def test_scope_path_with_utf8_via_httpx(serve, recorder):
    served = serve(recorder, lifespan="off")
    httpx.get(served.url + "/euro/\u20ac")  # httpx percent-encodes it
    assert recorder.last["path"] == "/euro/\u20ac"
    assert recorder.last["raw_path"] == b"/euro/%E2%82%AC"


@pytest.mark.parametrize(
    ("target", "query"),
    [
        ("/", b""),
        ("/?", b""),
        ("/?a=1", b"a=1"),
        ("/p?a=1&b=%20x&c=%E2%82%AC&d", b"a=1&b=%20x&c=%E2%82%AC&d"),
        ("/p?x=a+b&x=2", b"x=a+b&x=2"),
        ("/p?next=/a?b", b"next=/a?b"),
    ],
)
def test_scope_query_string_is_the_raw_bytes_after_the_question_mark(
    serve, recorder, raw_client, target, query
):
    served = serve(recorder, lifespan="off")
    client = raw_client(served)
    assert client.get(target).status == 200
    assert recorder.last["query_string"] == query
    assert type(recorder.last["query_string"]) is bytes
    assert b"?" not in recorder.last["raw_path"]


def test_scope_root_path_is_empty_by_default(serve, recorder):
    served = serve(recorder, lifespan="off")
    httpx.get(served.url + "/items")
    assert recorder.last["root_path"] == ""
    assert recorder.last["path"] == "/items"


def test_scope_root_path_is_prepended_to_path_and_raw_path(serve, recorder, raw_client):
    served = serve(recorder, lifespan="off", root_path="/api/v1")
    client = raw_client(served)
    assert client.get("/items/%E2%82%AC?x=1").status == 200
    scope = recorder.last
    assert scope["root_path"] == "/api/v1"
    assert scope["path"] == "/api/v1/items/\u20ac"
    assert scope["raw_path"] == b"/api/v1/items/%E2%82%AC"
    assert scope["query_string"] == b"x=1"


def test_scope_headers_are_lower_cased_bytes_in_arrival_order_with_repeats(
    serve, recorder, raw_client
):
    served = serve(recorder, lifespan="off")
    client = raw_client(served)
    client.send(
        b"GET /h HTTP/1.1\r\n"
        b"Host: example.test:8080\r\n"
        b"X-Custom-Header: Mixed Case Value\r\n"
        b"X-Repeat: one\r\n"
        b"Accept: */*\r\n"
        b"x-repeat: two\r\n"
        b"X-REPEAT: three\r\n"
        b"X-Empty:\r\n"
        b"X-Spaces:   padded value   \r\n"
        b"\r\n"
    )
    assert client.read_response().status == 200
    headers = recorder.last["headers"]
    assert all(type(n) is bytes and type(v) is bytes for n, v in headers)
    assert [tuple(h) for h in headers] == [
        (b"host", b"example.test:8080"),
        (b"x-custom-header", b"Mixed Case Value"),
        (b"x-repeat", b"one"),
        (b"accept", b"*/*"),
        (b"x-repeat", b"two"),
        (b"x-repeat", b"three"),
        (b"x-empty", b""),
        (b"x-spaces", b"padded value"),
    ]


def test_scope_headers_keep_latin1_bytes_of_header_values(serve, recorder, raw_client):
    served = serve(recorder, lifespan="off")
    client = raw_client(served)
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Latin: caf\xe9\r\n\r\n")
    assert client.read_response().status == 200
    assert (b"x-latin", b"caf\xe9") in [tuple(h) for h in recorder.last["headers"]]


def test_scope_client_is_the_peer_address_and_port(serve, recorder, raw_client):
    served = serve(recorder, lifespan="off")
    client = raw_client(served)
    assert client.get("/").status == 200
    host, port = client.sock.getsockname()[:2]
    assert tuple(recorder.last["client"]) == (host, port)
    assert type(recorder.last["client"][0]) is str
    assert type(recorder.last["client"][1]) is int


def test_scope_server_is_the_listening_address_and_port(serve, recorder):
    served = serve(recorder, lifespan="off")
    httpx.get(served.url + "/")
    assert tuple(recorder.last["server"]) == ("127.0.0.1", served.port)
    assert type(recorder.last["server"][1]) is int


def test_scope_state_is_a_shallow_copy_of_the_lifespan_state(serve, raw_client):
    shared_list: list[str] = []
    recorder = ScopeRecorder(state={"greeting": "hi", "shared": shared_list})
    served = serve(recorder, lifespan="on")
    client = raw_client(served)
    assert client.get("/one").status == 200
    first = recorder.last
    assert first["state"] == {"greeting": "hi", "shared": shared_list}
    # Shallow: the values are the very same objects...
    assert first["state"]["shared"] is shared_list
    # ...but the dict is a copy: a request that writes to it does not leak.
    first["state"]["greeting"] = "changed"
    first["state"]["added"] = 1
    assert client.get("/two").status == 200
    second = recorder.last
    assert second["state"] is not first["state"]
    assert second["state"] == {"greeting": "hi", "shared": shared_list}


def test_scope_state_is_a_fresh_dict_per_request_without_lifespan_state(serve, recorder, raw_client):
    served = serve(recorder, lifespan="off")
    client = raw_client(served)
    client.get("/a")
    client.get("/b")
    first, second = recorder.scopes
    assert first.get("state", {}) == {}
    if "state" in first:
        first["state"]["leak"] = True
        assert "leak" not in second["state"]


def test_scope_extensions_is_a_dict(serve, recorder):
    served = serve(recorder, lifespan="off")
    httpx.get(served.url + "/")
    extensions = recorder.last["extensions"]
    assert isinstance(extensions, dict)
    for name, value in extensions.items():
        assert isinstance(name, str) and isinstance(value, dict)


def test_scope_has_every_required_key_with_the_asgi_types(serve, recorder):
    served = serve(recorder, lifespan="off")
    httpx.post(served.url + "/x?y=1", content=b"body")
    scope = recorder.last
    expected_types = {
        "type": str,
        "asgi": dict,
        "http_version": str,
        "method": str,
        "scheme": str,
        "path": str,
        "raw_path": bytes,
        "query_string": bytes,
        "root_path": str,
        "headers": (list, tuple),
        "client": (list, tuple),
        "server": (list, tuple),
        "state": dict,
        "extensions": dict,
    }
    for key, kind in expected_types.items():
        assert key in scope, f"scope lacks {key!r}"
        assert isinstance(scope[key], kind), f"scope[{key!r}] = {scope[key]!r}"


def test_each_request_gets_its_own_scope_dict(serve, recorder, raw_client):
    served = serve(recorder, lifespan="off")
    client = raw_client(served)
    client.get("/first?a=1")
    client.get("/second")
    first, second = recorder.scopes
    assert first is not second
    assert first["path"] == "/first" and first["query_string"] == b"a=1"
    assert second["path"] == "/second" and second["query_string"] == b""
