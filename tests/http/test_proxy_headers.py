"""--proxy-headers: X-Forwarded-For/-Proto from a trusted peer set the scope's
client and scheme; from an untrusted peer, or with the option off, they don't."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest


async def scope_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = json.dumps({"client": list(scope["client"]), "scheme": scope["scheme"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


FORWARDED = {"X-Forwarded-For": "203.0.113.7, 127.0.0.1", "X-Forwarded-Proto": "https"}


def fetch(url: str, headers: dict[str, str]) -> dict[str, Any]:
    r = httpx.get(url + "/", headers=headers)
    assert r.status_code == 200
    return r.json()


def test_trusted_local_proxy_sets_client_and_scheme(serve: Any) -> None:
    srv = serve(scope_echo, lifespan="off")
    got = fetch(srv.url, FORWARDED)
    assert got == {"client": ["203.0.113.7", 0], "scheme": "https"}


def test_without_forwarded_headers_the_peer_is_the_client(serve: Any) -> None:
    srv = serve(scope_echo, lifespan="off")
    got = fetch(srv.url, {})
    assert got["client"][0] == "127.0.0.1" and got["client"][1] > 0
    assert got["scheme"] == "http"


@pytest.mark.parametrize(
    "options",
    [{"proxy_headers": False}, {"forwarded_allow_ips": "10.0.0.1"}],
    ids=["proxy-headers-off", "peer-not-trusted"],
)
def test_forwarded_headers_are_ignored_unless_trusted(serve: Any, options: dict[str, Any]) -> None:
    srv = serve(scope_echo, lifespan="off", **options)
    got = fetch(srv.url, FORWARDED)
    assert got["client"][0] == "127.0.0.1"
    assert got["scheme"] == "http"


def test_star_trusts_every_peer_and_skips_trusted_hops(serve: Any) -> None:
    srv = serve(scope_echo, lifespan="off", forwarded_allow_ips="*")
    got = fetch(srv.url, {"X-Forwarded-For": "198.51.100.1, 203.0.113.9"})
    # With every hop trusted, the leftmost address is the client.
    assert got["client"] == ["198.51.100.1", 0]
