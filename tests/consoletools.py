"""Test support for the web console: a console in front of a real service, in process
(Starlette's TestClient) or served on a port for a real browser, and the CSRF token of a page."""
from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import uvicorn
from starlette.testclient import TestClient

from console.app import create_app
from console.config import Config

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def grpc_target(proc) -> str:
    """The host:port a service started by conftest.start_service listens on."""
    return f"127.0.0.1:{proc.args[proc.args.index('--port') + 1]}"


def console_client(target: str, reports: Path, **config) -> TestClient:
    """A console for the service at `target`, called in process, as from a loopback browser."""
    app = create_app(Config(service=target, golden=GOLDEN, reports=reports, session_secret=b"test-secret", **config))
    return TestClient(app, base_url="http://127.0.0.1:8080", follow_redirects=False)


def csrf(page_html: str) -> str:
    """The CSRF token a page's forms carry."""
    match = _CSRF.search(page_html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedConsole:
    """The console served by uvicorn on a free loopback port, in a thread, for a browser."""

    def __init__(self, target: str, reports: Path, **config):
        self.port = _free_port()
        app = create_app(Config(service=target, golden=GOLDEN, reports=reports, port=self.port,
                                session_secret=b"test-secret", **config))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, access_log=False,
                                                    log_config=None, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the console did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
