"""The console off development settings: HTTPS with its own certificate, users who must sign in,
the session cookie only over TLS, HSTS, and the service called over TLS verified by a CA."""
from __future__ import annotations

import http.client
import re
import ssl
import subprocess
import sys
import time
import urllib.parse

import grpc

from tests.conftest import start_service, stop_service
from tests.consoletools import ROOT, _free_port, grpc_target
from tests.test_security import _issue


def _get(conn: http.client.HTTPSConnection, path: str, cookie: str = "", body: dict | None = None):
    headers = {"Cookie": cookie} if cookie else {}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request("POST" if body is not None else "GET", path,
                 body=urllib.parse.urlencode(body) if body is not None else None, headers=headers)
    reply = conn.getresponse()
    return reply, reply.read().decode()


def test_over_https_users_sign_in_and_the_service_is_called_over_tls(tmp_path):
    ca = _issue("console test CA")
    server = _issue("127.0.0.1", ca, ips=("127.0.0.1",), server=True)
    files = {name: tmp_path / name for name in ("ca.pem", "cert.pem", "key.pem")}
    for name, data in zip(files, (ca.cert, server.cert, server.key)):
        files[name].write_bytes(data)
    proc, channel, _ = start_service(tmp_path, "--tls-cert", str(files["cert.pem"]), "--tls-key", str(files["key.pem"]),
                                     credentials=grpc.ssl_channel_credentials(ca.cert))
    port = _free_port()
    console = subprocess.Popen(
        [sys.executable, "-m", "console", "--service", grpc_target(proc), "--service-ca", str(files["ca.pem"]),
         "--port", str(port), "--tls-cert", str(files["cert.pem"]), "--tls-key", str(files["key.pem"]),
         "--sign-in", "--reports", str(tmp_path / "reports")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    context = ssl.create_default_context(cafile=str(files["ca.pem"]))
    conn = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
                reply, _ = _get(conn, "/")
                break
            except OSError:
                assert console.poll() is None and time.monotonic() < deadline, "the console did not start"
                time.sleep(0.2)
        assert reply.status == 303 and reply.getheader("location") == "/sign-in"  # no page before signing in
        assert reply.getheader("strict-transport-security") == "max-age=31536000"
        reply, page = _get(conn, "/sign-in")
        cookie_header = reply.getheader("set-cookie")
        assert cookie_header.startswith("__Host-console=")
        assert {"secure", "httponly", "samesite=strict", "path=/"} <= {p.strip().lower() for p in cookie_header.split(";")}
        cookie = cookie_header.split(";", 1)[0]
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
        reply, _ = _get(conn, "/sign-in", cookie, {"csrf_token": token, "token": "any-token: the service has no authz"})
        assert reply.status == 303 and reply.getheader("location") == "/"
        cookie = reply.getheader("set-cookie").split(";", 1)[0]  # the new session of the signed-in user
        reply, page = _get(conn, "/", cookie)
        assert reply.status == 200 and "6 policies served" in page  # from the service, over TLS
    finally:
        console.terminate()  # with the connection still open, as a browser leaves it
        console.wait(timeout=20)
        if conn:
            conn.close()
        stop_service(proc, channel)
