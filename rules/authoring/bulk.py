"""Bulk runs (impact, remediation, annual review) in chunks, through Dask or in this process.

durable_rules has one lock a process and registers a ruleset once a process, so the work is spread
over worker PROCESSES (one thread each), and each loads the policy bundle itself from the policy
directory it is given: compiled policies and Evaluators never cross the wire, only a chunk's
description and its compact result. Results come back in chunk order, so a merged result is the
same whatever the number of workers, and at most a few chunks a worker are in flight, so memory
stays flat however many cases there are.

`--workers N` (default: the number of cores) runs a local cluster of N processes; `--workers 1`,
and runs of fewer than LOCAL_BELOW cases unless --workers is given, stay in this process.
`--scheduler ADDRESS` uses a running cluster. Sensitive work (logged requests, real cases) may go
to a non-loopback scheduler only over TLS (`tls://`, certificates from Dask's configuration).
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

LOCAL_BELOW = 20_000  # cases: below this a local cluster's start-up (seconds) is not worth it
IN_FLIGHT = 3  # chunks a worker, queued or running: enough to keep it busy, few enough to stay flat


class BulkError(Exception):
    """The cluster cannot be used as asked (refused address, missing Dask, a failed worker...)."""


def add_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--workers", type=int, default=None, metavar="N",
                     help=f"worker processes of a local Dask cluster (default: the number of cores, "
                          f"{os.cpu_count()}; 1, or a run of under {LOCAL_BELOW} cases, stays in this process)")
    cmd.add_argument("--scheduler", default=None, metavar="ADDRESS",
                     help="a running Dask scheduler (tcp://host:8786, or tls:// for sensitive work off this machine)")


# --- the policy bundle, loaded once a process --------------------------------------------------

_LOADED: dict[str, tuple[Any, Any]] = {}


def loaded(policy_dir: str | Path) -> tuple[Any, Any]:
    """(bundle, Evaluator) of a policy directory, loaded once in this process (client or worker)."""
    from rules.decide.evaluator import Evaluator
    from rules.engine.loader import load_bundle
    key = str(Path(policy_dir).resolve())
    if key not in _LOADED:
        bundle = load_bundle(Path(key))
        _LOADED[key] = (bundle, Evaluator(bundle))
    return _LOADED[key]


def same_bundle(expected: str, got: str) -> None:
    """Refuse results a worker decided on other policy files (another checkout on a remote worker)."""
    if got != expected:
        raise BulkError(f"a worker loaded other policy files (bundle sha256 {got[:12]}, here {expected[:12]}): "
                        f"give every worker the same policy directory")


# --- where the chunks run ------------------------------------------------------------------------

def _loopback(address: str) -> bool:
    host = urlsplit(address if "://" in address else f"tcp://{address}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_scheduler(address: str, sensitive: bool) -> None:
    """Sensitive data crosses the wire to the workers: off this machine only encrypted."""
    if sensitive and not address.startswith("tls://") and not _loopback(address):
        raise BulkError(f"--scheduler {address}: this run sends sensitive data (requests, facts) to the workers; "
                        f"a scheduler off this machine must be a tls:// address, with the certificates in Dask's "
                        f"configuration (distributed.comm.tls)")


@contextmanager
def cluster(workers: int | None, scheduler: str | None, cases: int, sensitive: bool) -> Iterator[Any]:
    """A Dask client for the run, or None to run in this process."""
    if workers is not None and workers < 1:
        raise BulkError("--workers must be 1 or more")
    if scheduler is None and (workers == 1 or (workers is None and cases < LOCAL_BELOW)):
        yield None
        return
    try:
        from distributed import Client, LocalCluster, Security
    except ImportError:
        raise BulkError("bulk runs need Dask: pip install -e '.[authoring]' (or give --workers 1)") from None
    if scheduler is not None:
        check_scheduler(scheduler, sensitive)
        security = Security(require_encryption=True) if scheduler.startswith("tls://") else None
        try:
            client = Client(scheduler, security=security, timeout="20s")
        except (OSError, ValueError, TimeoutError) as exc:
            raise BulkError(f"cannot reach the scheduler at {scheduler}: {exc}") from None
        with client:
            yield client
        return
    # Loopback only (its HTTP server too, on any free port), one thread a process (durable_rules'
    # lock), quiet logs, and no profiler: it keeps a snapshot a second for the last 1,000 s, and a
    # worker grew by ~40 MB in ten minutes.
    import dask
    with dask.config.set({"distributed.worker.profile.enabled": False}), \
            LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                         host="127.0.0.1", dashboard_address=":0", silence_logs=logging.ERROR) as local, \
            Client(local) as client:
        yield client


def run(client: Any, fn: Callable, tasks: Iterable[tuple], progress: Progress | None = None,
        size: Callable[[tuple], int] = lambda _: 1) -> Iterator[Any]:
    """fn(*task) for each task, in task order: in this process without a client, else on the
    cluster with at most IN_FLIGHT tasks a worker outstanding. `size(result)` advances the progress."""
    def done(result: Any) -> Any:
        if progress is not None:
            progress.advance(size(result))
        return result

    if client is None:
        for task in tasks:
            yield done(fn(*task))
        return
    window = IN_FLIGHT * max(1, len(client.scheduler_info().get("workers", {})))
    pending: deque = deque()
    for task in tasks:
        pending.append(client.submit(fn, *task, pure=False))
        if len(pending) >= window:
            yield done(_result(pending.popleft()))
    while pending:
        yield done(_result(pending.popleft()))


def _result(future: Any) -> Any:
    try:
        return future.result()
    except BulkError:
        raise
    except Exception as exc:  # a worker's failure ends the run, said plainly
        raise BulkError(f"a worker failed: {type(exc).__name__}: {str(exc)[:300]}") from None


# --- progress ------------------------------------------------------------------------------------

class Progress:
    """Cases done on stderr: a bar redrawn on a terminal; otherwise (CI, a log) a line every tenth."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None):
        self.total, self.label, self.done = total, label, 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._tenth = 0

    def advance(self, n: int) -> None:
        self.done += n
        if self.tty:
            filled = 24 * self.done // self.total if self.total else 24
            self.stream.write(f"\r[{'#' * filled}{' ' * (24 - filled)}] {self._line():<72}")  # padded: no stale tail
            self.stream.flush()
            return
        tenth = 10 * self.done // self.total if self.total else 10
        if tenth > self._tenth:
            self._tenth = tenth
            print(self._line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _line(self) -> str:
        took = time.monotonic() - self.started
        pct = 100 * self.done / self.total if self.total else 100.0
        left = took * (self.total - self.done) / self.done if self.done else 0.0
        return (f"{self.label}: {self.done}/{self.total} cases ({pct:.0f}%), {took:.0f} s"
                + (f", about {left:.0f} s left" if self.done < self.total else ""))
