"""Shared fixtures: the loaded bundle, an in-process evaluator, and the real
service running as a subprocess (`python -m service`, recording decisions in a
temporary decision log) for end-to-end tests."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cms_policy.v1 import policy_pb2_grpc
from rules.decide.evaluator import Evaluator
from rules.engine.loader import load_bundle

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"

# Golden cases name parties and reasons as the engine does (RECEIVING_PARENT); on the wire each enum
# value carries its enum's name as a prefix (AUDIENCE_RECEIVING_PARENT).
WIRE_PREFIXES = {"subject": "AUDIENCE_", "requested_by": "AUDIENCE_", "reason": "REQUEST_REASON_"}


def wire_enums(req: dict) -> dict:
    """A golden case's subject, requested_by and reason, as DecideRequest's keyword arguments."""
    return {k: prefix + req[k] for k, prefix in WIRE_PREFIXES.items() if k in req}


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the expected decisions in tests/golden from the engine (review the diff!)")


@pytest.fixture(scope="session")
def bundle():
    return load_bundle()


@pytest.fixture(scope="session")
def evaluator(bundle):
    return Evaluator(bundle)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def decision_log_path(tmp_path_factory) -> Path:
    """The decision log of the shared test service (its development key file is beside it)."""
    return tmp_path_factory.mktemp("decision-log") / "decisions.sqlite3"


def start_service(workdir: Path, *args: str, credentials: grpc.ChannelCredentials | None = None,
                  preexec_fn=None) -> tuple[subprocess.Popen, grpc.Channel, Path]:
    """`python -m service` on a free loopback port with its decision log in `workdir`, once it
    reports SERVING: the process, a channel to it, and its log file. `credentials`: connect with
    TLS (for a service started with --tls-cert; its certificate must name 127.0.0.1).
    `preexec_fn`: run in the child before it starts (e.g. to lower its resource limits)."""
    port = _free_port()
    # The service logs every decision: send it to a file (an unread pipe fills up and blocks the server).
    log_path = workdir / "service.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "service", "--port", str(port), "--host", "127.0.0.1",
                                 "--decision-log", str(workdir / "decisions.sqlite3"), *args],
                                cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=preexec_fn)
    target = f"127.0.0.1:{port}"
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 30
    while True:
        try:
            if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                return proc, channel, log_path
        except grpc.RpcError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"service did not start:\n{log_path.read_text()}")
        time.sleep(0.1)


def stop_service(proc: subprocess.Popen, channel: grpc.Channel) -> None:
    channel.close()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def server_process(decision_log_path):
    proc, channel, _ = start_service(decision_log_path.parent)
    yield proc, channel
    stop_service(proc, channel)


@pytest.fixture(scope="session")
def channel(server_process):
    return server_process[1]


@pytest.fixture(scope="session")
def stub(channel):
    return policy_pb2_grpc.PolicyDecisionServiceStub(channel)


@pytest.fixture(scope="session")
def console_service(tmp_path_factory):
    """A service of its own for the console's tests (its decision log apart from the shared one's)."""
    workdir = tmp_path_factory.mktemp("console-service")
    proc, channel, log_path = start_service(workdir)
    yield proc, channel, log_path
    stop_service(proc, channel)


@pytest.fixture(scope="session")
def console_reports(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("impact-reports")


@pytest.fixture
def console(console_service, console_reports):
    """The console (in process) in front of `console_service`, as a loopback browser in development sees it."""
    from tests.consoletools import console_client, grpc_target
    with console_client(grpc_target(console_service[0]), console_reports) as client:
        yield client
