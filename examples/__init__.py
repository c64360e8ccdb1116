"""Example ASGI apps served by ferrule (``ferrule examples.hello:app``)."""
