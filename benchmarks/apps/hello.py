"""hello: a 13-byte text/plain body, one start message and one body message."""
from _fixed import fixed_body_app

app = fixed_body_app(b"Hello, world!", b"text/plain")
