"""wsgi-hello: hello's 13-byte text/plain body from a WSGI app (served with
--interface wsgi)."""

HEADERS = [("Content-Type", "text/plain"), ("Content-Length", "13")]
BODY = [b"Hello, world!"]


def app(environ, start_response):  # type: ignore[no-untyped-def]
    start_response("200 OK", HEADERS)
    return BODY
