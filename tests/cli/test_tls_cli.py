"""TLS from the command line: `ferrule app --ssl-keyfile k --ssl-certfile c`
serves HTTPS; a file or flag that cannot be served is one line naming the
flag and the file, exit status 2, never a traceback."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

pytestmark = pytest.mark.timeout(60)

APP = "examples.hello:app"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tls-cli")
    ca = trustme.CA()
    issued = ca.issue_cert("localhost", "127.0.0.1")
    other = trustme.CA().issue_cert("localhost")
    paths = {
        "cert": d / "cert.pem",
        "key": d / "key.pem",
        "ca": d / "ca.pem",
        "other_key": d / "other-key.pem",
        "enc_key": d / "enc-key.pem",
        "garbage": d / "garbage.pem",
    }
    issued.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    issued.private_key_pem.write_to_path(str(paths["key"]))
    ca.cert_pem.write_to_path(str(paths["ca"]))
    other.private_key_pem.write_to_path(str(paths["other_key"]))
    key = serialization.load_pem_private_key(paths["key"].read_bytes(), None)
    paths["enc_key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"right"),
        )
    )
    paths["garbage"].write_text("not a certificate\n")
    return paths


@pytest.mark.engine
def test_cli_serves_https(run_cli: Any, files: dict[str, Path]) -> None:
    server = run_cli(
        APP, "--ssl-keyfile", str(files["key"]), "--ssl-certfile", str(files["cert"])
    )
    assert server.url.startswith("https://")
    response = httpx.get(server.url + "/", verify=ssl.create_default_context(cafile=str(files["ca"])))
    assert response.status_code == 200


CASES = [
    # (flags, the one line's expected start, words it must contain)
    (["--ssl-certfile", "{missing}", "--ssl-keyfile", "{key}"],
     "--ssl-certfile {missing}: no such file", []),
    (["--ssl-certfile", "{cert}", "--ssl-keyfile", "{missing}"],
     "--ssl-keyfile {missing}: no such file", []),
    (["--ssl-certfile", "{garbage}", "--ssl-keyfile", "{key}"],
     "--ssl-certfile {garbage}: no PEM certificate", []),
    (["--ssl-certfile", "{cert}", "--ssl-keyfile", "{other_key}"],
     "--ssl-keyfile {other_key}: the key does not match the certificate", ["{cert}"]),
    (["--ssl-certfile", "{cert}", "--ssl-keyfile", "{enc_key}",
      "--ssl-keyfile-password", "wrong"],
     "--ssl-keyfile-password {enc_key}: wrong password", []),
    (["--ssl-certfile", "{cert}", "--ssl-keyfile", "{enc_key}"],
     "--ssl-keyfile {enc_key}: the key is encrypted", ["--ssl-keyfile-password"]),
    (["--ssl-certfile", "{cert}", "--ssl-keyfile", "{key}", "--ssl-version", "3"],
     "--ssl-version: 3 (TLS 1.0) cannot be served", []),
    (["--ssl-certfile", "{cert}", "--ssl-keyfile", "{key}", "--ssl-ciphers", "RC4-SHA"],
     "--ssl-ciphers: 'RC4-SHA' is not a cipher rustls offers", []),
    (["--ssl-certfile", "{cert}", "--ssl-keyfile", "{key}", "--ssl-cert-reqs", "2"],
     "--ssl-cert-reqs: client certificates need --ssl-ca-certs", []),
    (["--ssl-certfile", "{cert}", "--ssl-keyfile", "{key}", "--ssl-cert-reqs", "2",
      "--ssl-ca-certs", "{missing}"],
     "--ssl-ca-certs {missing}: no such file", []),
    (["--ssl-keyfile", "{key}"], "--ssl-keyfile needs --ssl-certfile", []),
]


@pytest.mark.parametrize("flags, start, words", CASES)
@pytest.mark.parametrize("extra", [[], ["--workers", "2"]])
def test_bad_tls_files_and_flags_are_one_line_exit_2(
    ferrule_cmd: list[str], cli_env: dict[str, str], files: dict[str, Path],
    flags: list[str], start: str, words: list[str], extra: list[str],
) -> None:
    names = {k: str(v) for k, v in files.items()}
    names["missing"] = str(files["cert"].parent / "missing.pem")
    argv = [f.format(**names) for f in flags]
    r = subprocess.run(
        [*ferrule_cmd, *argv, *extra, "--port", "0", APP],
        env=cli_env, capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("ferrule: error: " + start.format(**names)), r.stderr
    for word in words:
        assert word.format(**names) in r.stderr


@pytest.mark.engine
def test_embedded_server_with_a_bad_certificate_does_not_serve(
    files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    from ferrule import Config
    from ferrule.server import Server

    config = Config(APP, port=0, ssl_certfile=str(files["garbage"]))
    assert Server(config).run() == 1
    assert any("no PEM certificate" in r.getMessage() for r in caplog.records)


@pytest.mark.engine
def test_sighup_reloads_the_certificate_under_load(run_cli: Any, tmp_path: Path) -> None:
    import signal
    import threading
    import time

    old_ca, new_ca = trustme.CA(), trustme.CA()
    old, new = old_ca.issue_cert("localhost"), new_ca.issue_cert("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    old.cert_chain_pems[0].write_to_path(str(cert))
    old.private_key_pem.write_to_path(str(key))
    server = run_cli(APP, "--ssl-keyfile", str(key), "--ssl-certfile", str(cert))
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cadata=old_ca.cert_pem.bytes().decode())
    ctx.load_verify_locations(cadata=new_ca.cert_pem.bytes().decode())
    url = f"https://localhost:{server.port}/"
    failures: list[BaseException] = []
    done = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal done
        keep = httpx.Client(verify=ctx)  # one keep-alive connection all along
        while not stop.is_set():
            try:
                assert httpx.get(url, verify=ctx).status_code == 200  # new handshake
                assert keep.get(url).status_code == 200
                done += 2
            except BaseException as exc:  # any failure fails the test
                failures.append(exc)
                return
        keep.close()

    def served_cert() -> str:
        return ssl.get_server_certificate(("127.0.0.1", server.port))

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        assert served_cert() == old.cert_chain_pems[0].bytes().decode()
        new.cert_chain_pems[0].write_to_path(str(cert))
        new.private_key_pem.write_to_path(str(key))
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while served_cert() != new.cert_chain_pems[0].bytes().decode():
            assert time.monotonic() < deadline, server.output
            time.sleep(0.05)
        # A bad file: one line logged, the current certificate stays.
        cert.write_text("garbage\n")
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "not reloaded" not in server.output:
            assert time.monotonic() < deadline, server.output
            time.sleep(0.05)
        time.sleep(0.3)
        assert served_cert() == new.cert_chain_pems[0].bytes().decode()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert failures == []
    assert done > 20
    errors = [line for line in server.stderr_lines if "not reloaded" in line]
    assert len(errors) == 1 and "--ssl-certfile" in errors[0], errors
    assert sum("Reloaded the TLS certificate" in line for line in server.stderr_lines) == 1


@pytest.mark.engine
def test_sighup_with_workers_replaces_them_with_the_new_certificate(
    run_cli: Any, tmp_path: Path
) -> None:
    import signal
    import time

    first, second = trustme.CA().issue_cert("localhost"), trustme.CA().issue_cert("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    first.cert_chain_pems[0].write_to_path(str(cert))
    first.private_key_pem.write_to_path(str(key))
    server = run_cli(
        APP, "--workers", "2", "--ssl-keyfile", str(key), "--ssl-certfile", str(cert)
    )

    def served() -> str:
        return ssl.get_server_certificate(("127.0.0.1", server.port))

    assert served() == first.cert_chain_pems[0].bytes().decode()
    second.cert_chain_pems[0].write_to_path(str(cert))
    second.private_key_pem.write_to_path(str(key))
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 8
    seen: set[str] = set()
    while time.monotonic() < deadline:
        # Both workers replaced: only the new certificate is served.
        seen = {served() for _ in range(6)}
        if seen == {second.cert_chain_pems[0].bytes().decode()}:
            break
        time.sleep(0.1)
    assert seen == {second.cert_chain_pems[0].bytes().decode()}, server.output


def test_tls_flags_that_cannot_apply_are_one_notice() -> None:
    from ferrule import Config

    assert Config("m:a").notices() == []
    lines = Config("m:a", ssl_ciphers="ECDHE", ssl_cert_reqs=2).notices()
    assert lines == [
        "--ssl-cert-reqs, --ssl-ciphers ignored: no --ssl-certfile (serving plain HTTP)"
    ]
    lines = Config(
        "m:a", ssl_certfile="c.pem", ssl_and_plain=True, ssl_refuse_plain=True
    ).notices()
    assert lines == ["--ssl-refuse-plain ignored: --ssl-and-plain serves plain HTTP"]


@pytest.mark.engine
def test_cli_ssl_flags_without_a_certificate_serve_plain_with_a_notice(
    run_cli: Any,
) -> None:
    server = run_cli(APP, "--ssl-ciphers", "ECDHE+AESGCM", "--ssl-cert-reqs", "2")
    assert server.url.startswith("http://")
    assert httpx.get(server.url + "/").status_code == 200
    notices = [line for line in server.stderr_lines if "no --ssl-certfile" in line]
    assert len(notices) == 1, server.output
