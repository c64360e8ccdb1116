"""`--tls`: every server serves HTTPS with the same certificate (ECDSA
P-256, PKCS#8 key, made here with the openssl command), and wrk connects
over https. Not set: plain HTTP, as before."""
from __future__ import annotations

import os
import ssl
import subprocess

# (certfile, keyfile) once `setup()` ran.
FILES: tuple[str, str] | None = None


def setup(workdir: str) -> tuple[str, str]:
    global FILES
    cert, key = os.path.join(workdir, "tls-cert.pem"), os.path.join(workdir, "tls-key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "7", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    FILES = (cert, key)
    return FILES


def scheme() -> str:
    return "https" if FILES else "http"


def nginx_format() -> dict[str, str]:
    """The `{ssl}` and `{ssl_files}` of the nginx configs' `listen` line:
    empty without TLS."""
    return {"ssl": " ssl" if FILES else "",
            "ssl_files": (f"\n        ssl_certificate {FILES[0]};"
                          f"\n        ssl_certificate_key {FILES[1]};" if FILES else "")}


def client_context() -> ssl.SSLContext:
    """The readiness probe's: the certificate is our own, not checked."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def server_args(server: str) -> list[str]:
    """The TLS flags of each server (nginx's are in its config)."""
    if not FILES:
        return []
    cert, key = FILES
    return {
        "ferrule": ["--ssl-certfile", cert, "--ssl-keyfile", key],
        "uvicorn": ["--ssl-certfile", cert, "--ssl-keyfile", key],
        "hypercorn": ["--certfile", cert, "--keyfile", key],
        "granian": ["--ssl-certificate", cert, "--ssl-keyfile", key],
    }.get(server, [])
