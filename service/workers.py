"""One server process per core: `python -m service --workers N` (or `auto`).

The C core of durable_rules is serialised by one lock per process and Python's GIL serialises
the rest, so a process uses one core; throughput scales with processes. This supervisor starts N
copies of the service (`--worker-index i`), each a whole server on the same port: gRPC sets
SO_REUSEPORT and the kernel spreads incoming connections across them. The first worker binds the
port (so `--port 0` works) and the others join it.

Every worker loads the same policy files and writes the same decision log (SQLite takes turns
under a file lock, PostgreSQL is shared by design), so a decision recorded by one is found by any
other. A reload reaches all of them: each watches the policy directory, SIGHUP to the supervisor
is passed on to every worker, and a worker that accepts `ReloadPolicies` sends SIGHUP to the
supervisor. SIGTERM/SIGINT stop every worker (each drains its requests for `--grace`). A worker
that dies is started again; if workers keep dying (5 in a minute), everything stops (exit 1).

No worker outlives its supervisor, and no two supervisors share a port (issue 27):
- each worker reads its standard input, a pipe from the supervisor, and stops (draining for
  `--grace`) at its end of file, which the kernel delivers when the supervisor dies, even by kill -9;
- the supervisor claims the port with an abstract Unix socket named for it, which is per network
  namespace like the port and freed by the kernel when the supervisor dies: a second supervisor
  on the same port refuses to start (SO_REUSEPORT alone would let it share the port silently);
- the supervisor asks each worker's health every few seconds on a private Unix socket of its own
  (the shared port cannot reach one chosen worker); a worker that has not answered for
  `--worker-timeout` seconds (frozen, deadlocked) is killed and started again.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

log = logging.getLogger("cms_policy.service")
RESTART_LIMIT = 5  # deaths within RESTART_WINDOW seconds before the supervisor gives up
RESTART_WINDOW = 60.0
ANSWERED = {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}  # a full worker is still alive


class PortTaken(OSError):
    """Another supervisor serves the port."""


def claim_port(port: int) -> socket.socket:
    """Hold `port` for this supervisor for as long as the returned socket is open (PortTaken if another
    holds it). Keyed by the port alone: workers on any address of it would share its connections."""
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        claim.bind(f"\0cms-policy-decisions/port/{port}")
    except OSError:
        claim.close()
        raise PortTaken(f"port {port} is already served by another `python -m service --workers`") from None
    return claim


def count(text: str) -> int:
    """The --workers value: a number of processes, or `auto` (one per core this process may use)."""
    if text == "auto":
        return len(os.sched_getaffinity(0))
    number = int(text)
    if number < 1:
        raise ValueError("at least 1")
    return number


class _Worker:
    def __init__(self, index: int, argv: list[str], port: int, sockets: Path, check_every: float):
        self.index = index
        self.private = sockets / f"worker-{index}.sock"
        self.private.unlink(missing_ok=True)  # a killed predecessor's
        # stdin: a pipe the worker watches for its end (the supervisor gone); stdout: its "listening on" line.
        self.process = subprocess.Popen([sys.executable, "-m", "service", *argv, "--port", str(port),
                                         "--worker-index", str(index), "--worker-socket", str(self.private)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.listening = threading.Event()
        self.port: int | None = None
        self.answered = time.monotonic()  # when its health last answered (from the start: time to start)
        self.check_every = check_every
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        """Wait for the worker's "listening on HOST:PORT" line (its logs go to standard error), then
        ask its health on its private socket for as long as it runs."""
        assert self.process.stdout is not None  # started with stdout=PIPE
        for line in self.process.stdout:
            if line.startswith("listening on "):
                self.port = int(line.rsplit(":", 1)[1])
                self.answered = time.monotonic()
                self.listening.set()
                threading.Thread(target=self._check, daemon=True).start()

    def _check(self) -> None:
        with grpc.insecure_channel(f"unix:{self.private}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while self.process.poll() is None:
                asked = time.monotonic()
                try:
                    health.Check(health_pb2.HealthCheckRequest(), timeout=self.check_every)
                    self.answered = asked
                except grpc.RpcError as exc:
                    if exc.code() in ANSWERED:
                        self.answered = asked
                time.sleep(max(0.0, self.check_every - (time.monotonic() - asked)))

    def silent_for(self) -> float:
        return time.monotonic() - self.answered if self.listening.is_set() else 0.0

    def wait_listening(self, stop: threading.Event) -> bool:
        """True once the worker listens; False if it exits first or the supervisor is told to stop."""
        while not self.listening.wait(0.1):
            if self.process.poll() is not None or stop.is_set():
                return self.listening.is_set()
        return True


def supervise(argv: list[str], workers: int, host: str, port: int, grace: float, worker_timeout: float) -> int:
    """Run `workers` copies of the service with `argv` (without --port/--workers) until SIGTERM or
    SIGINT; the exit status is the first worker's if it cannot start, 2 if the port is taken."""
    sockets = Path(tempfile.mkdtemp(prefix="cms-policy-workers-"))  # 0700: the workers' private sockets
    try:
        return _supervise(argv, workers, host, port, grace, worker_timeout, sockets)
    except PortTaken as exc:
        print(f"error: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(sockets, ignore_errors=True)


def _supervise(argv: list[str], workers: int, host: str, port: int, grace: float, worker_timeout: float,
               sockets: Path) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    running: list[_Worker] = []

    def hangup(*_: object) -> None:
        for w in running:
            _signal(w, signal.SIGHUP)
    signal.signal(signal.SIGHUP, hangup)
    claim = claim_port(port) if port else None  # held until this process exits
    check_every = max(0.2, worker_timeout / 3)

    def start(index: int) -> _Worker:
        return _Worker(index, argv, port, sockets, check_every)

    first = start(0)
    running.append(first)
    if not first.wait_listening(stop):
        if stop.is_set():
            _stop(running, grace)
        return first.process.wait()
    assert first.port is not None  # set before it is listening
    if claim is None:  # --port 0: the port the first worker was given is free of other supervisors
        try:
            claim = claim_port(first.port)
        except PortTaken:
            _stop(running, grace)
            raise
    port = first.port
    for index in range(1, workers):
        running.append(start(index))
    if not all(w.wait_listening(stop) for w in running[1:]):
        if not stop.is_set():
            log.error("a worker could not start; stopping", extra={"workers": workers})
        _stop(running, grace)
        return 0 if stop.is_set() else 1
    log.info("serving with %d worker processes on %s:%d", workers, host, port,
             extra={"workers": workers, "pids": [w.process.pid for w in running]})
    print(f"listening on {host}:{port}", flush=True)

    deaths: deque[float] = deque()
    status = 0
    while not stop.wait(0.2):
        for slot, worker in enumerate(running):
            code = worker.process.poll()
            if code is None:
                silent = worker.silent_for()
                if silent > worker_timeout:
                    log.error("worker stopped answering; killing it", extra={
                        "worker": worker.index, "pid": worker.process.pid, "silent_s": round(silent, 1)})
                    worker.process.kill()
                continue
            now = time.monotonic()
            deaths.append(now)
            while deaths and now - deaths[0] > RESTART_WINDOW:
                deaths.popleft()
            log.warning("worker exited; starting it again", extra={
                "worker": worker.index, "pid": worker.process.pid, "exit_code": code})
            if len(deaths) >= RESTART_LIMIT:
                log.error("workers keep exiting; stopping", extra={"deaths": len(deaths), "window_s": RESTART_WINDOW})
                stop.set()
                status = 1
                break
            running[slot] = start(worker.index)
    _stop(running, grace)
    claim.close()
    return status


def _signal(worker: _Worker, sig: int) -> None:
    if worker.process.poll() is None:
        worker.process.send_signal(sig)


def _stop(running: list[_Worker], grace: float) -> None:
    """SIGTERM every worker, wait for them to drain, then kill what is left."""
    for worker in running:
        _signal(worker, signal.SIGTERM)
    deadline = time.monotonic() + grace + 5
    for worker in running:
        try:
            worker.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("worker did not stop in time; killing it", extra={"worker": worker.index})
            worker.process.kill()
            worker.process.wait()
