"""big: a 10,000-byte body with Content-Length."""
from _fixed import fixed_body_app

BODY = (b"0123456789abcdef" * 625)[:10_000]
app = fixed_body_app(BODY, b"application/octet-stream")
