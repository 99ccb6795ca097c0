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
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque

log = logging.getLogger("cms_policy.service")
RESTART_LIMIT = 5  # deaths within RESTART_WINDOW seconds before the supervisor gives up
RESTART_WINDOW = 60.0


def count(text: str) -> int:
    """The --workers value: a number of processes, or `auto` (one per core this process may use)."""
    if text == "auto":
        return len(os.sched_getaffinity(0))
    number = int(text)
    if number < 1:
        raise ValueError("at least 1")
    return number


class _Worker:
    def __init__(self, index: int, argv: list[str], port: int):
        self.index = index
        self.process = subprocess.Popen([sys.executable, "-m", "service", *argv, "--port", str(port),
                                         "--worker-index", str(index)], stdout=subprocess.PIPE, text=True)
        self.listening = threading.Event()
        self.port: int | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        """Wait for the worker's "listening on HOST:PORT" line (its logs go to standard error)."""
        for line in self.process.stdout:
            if line.startswith("listening on "):
                self.port = int(line.rsplit(":", 1)[1])
                self.listening.set()

    def wait_listening(self, stop: threading.Event) -> bool:
        """True once the worker listens; False if it exits first or the supervisor is told to stop."""
        while not self.listening.wait(0.1):
            if self.process.poll() is not None or stop.is_set():
                return self.listening.is_set()
        return True


def supervise(argv: list[str], workers: int, host: str, port: int, grace: float) -> int:
    """Run `workers` copies of the service with `argv` (without --port/--workers) until SIGTERM or
    SIGINT; the exit status is the first worker's if it cannot start."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    running: list[_Worker] = []
    signal.signal(signal.SIGHUP, lambda *_: [_signal(w, signal.SIGHUP) for w in running])

    first = _Worker(0, argv, port)
    running.append(first)
    if not first.wait_listening(stop):
        if stop.is_set():
            _stop(running, grace)
        return first.process.wait()
    port = first.port
    for index in range(1, workers):
        running.append(_Worker(index, argv, port))
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
            running[slot] = _Worker(worker.index, argv, port)
    _stop(running, grace)
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
