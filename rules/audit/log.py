"""The decision log: every decision, durable and encrypted, in an embedded SQLite database (one
service process, rules/audit/sqlite.py) or in PostgreSQL (several replicas: rules/audit/postgres.py).

One row per decision. In the clear only what says nothing about a case's circumstances: id,
time, policy, version, content hash, bundle hash, and the shadow version the caller asked for. Not
the outcome nor the shadow's: joined to the case system by the decision id, an outcome such as
`EMERGENCY_ESCALATION` or any `abuse_evidence` one is itself a domestic-abuse flag (counts by
outcome come from the metrics, which carry no ids). The request (every fact, sensitive ones
included) and the whole decision (outcome, rationale, trail, explanations and counterfactuals,
which quote the facts) are one JSON document sealed with AES-256-GCM: a random 12-byte nonce per
row, every clear column as associated data (`_associated_data`: a sealed document cannot be moved
to another row, and a changed time, hash, version or key id fails the row's integrity check; rows
of `seal_format` 1, sealed before, bound the decision id alone), and the id of the key that sealed
it, so keys can rotate (the first key seals, every key given can open). The document is padded to a power of two (`_pad`) first: a disclosure's texts lengthen a
decision, and a ciphertext is as long as its plaintext. `Sealer` (rules/audit/sealer.py) does that for every backend; a
backend only stores and fetches `SealedRow`s.

`open_log(target)` (rules/audit/factory.py) picks the backend: a `postgresql://` (or `postgres://`)
URL is PostgreSQL, anything else a SQLite file path. This module is the interface; the sealing is
rules/audit/sealer.py, the keys rules/audit/keys.py.

Group commit: `record` returns only once its row is committed and on disk, but rows that arrive
while another commit is under way are committed together in the next transaction (one fsync for
all of them), so concurrent requests share the cost of durability. `record_batch` commits many in
one transaction. A failed commit fails every record in it; none of them is reported stored.

Time: `record`, `record_batch` and `get` take the caller's `timeout` (a gRPC call's remaining
deadline) and give up with DecisionLogUnavailable a little before it passes (`_deadline`), so that
the caller can still answer UNAVAILABLE; the PostgreSQL backend also bounds every statement
without one. A record waiting behind another's commit waits no longer than its own deadline, and
while the log is failing it does not wait at all: one attempt at a time goes to the backend, the
others fail at once, so a stalled database does not hold every worker thread.

Health: the log knows whether it can record (`ready`): a failed record or read that was the
backend's fault (not a duplicate id) makes it not ready, a success ready again. `watch(listener)`
reports each change and checks the backend in the background (`check`: every second while it
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rules.audit.errors import DecisionLogError, DecisionLogUnavailable
from rules.audit.sealer import LoggedDecision, SealedRow, Sealer
from rules.engine.decision import Decision, DecisionRequest

log = logging.getLogger("cms_policy.decision_log")

DEFAULT_PATH = Path("var/decisions.sqlite3")  # relative to the working directory
LOG_ENV = "CMS_POLICY_DECISION_LOG"  # where the log is, when no --decision-log is given (e.g. a URL from a secret)
SCHEMA_VERSION = 4  # 2: shadow_version, shadow_outcome; 3: no outcome nor shadow_outcome in the clear; 4: seal_format
DEADLINE_MARGIN = 0.25  # seconds (at most a tenth of the caller's time) kept to answer before its deadline
CHECK_EVERY = (1.0, 10.0)  # seconds between background checks of the backend: while failing, while idle
CHECK_TIMEOUT = 3.0  # seconds a background check may take (time for a new PostgreSQL connection: 2 s at least)
NO_DEADLINE = 86_400.0  # seconds: a timeout this long is none (gRPC's time_remaining() is ~9e18 without a deadline)


def _deadline(timeout: float | None) -> float | None:
    """The time.monotonic() by which a call given `timeout` seconds must have its answer from the
    backend: its deadline less a margin to answer in (a tenth of its time, DEADLINE_MARGIN at most)."""
    if timeout is None or not timeout < NO_DEADLINE:
        return None
    return time.monotonic() + timeout - min(DEADLINE_MARGIN, max(timeout, 0) / 10)


@dataclass
class _Pending:
    rows: list[SealedRow]
    deadline: float | None
    taken: bool = False  # in a commit under way: it can no longer be withdrawn
    done: bool = False
    error: DecisionLogError | None = None


class DecisionLog:
    """The decision log, whatever stores it: `record`, `get`, `count`, `close`, and a context
    manager. A backend (SQLite, PostgreSQL) subclasses it to store `SealedRow`s; `open_log`
    (rules/audit/factory.py) picks one from the target."""

    where: str  # the log's location for messages (a URL without its password)

    def __init__(self, keys: list[bytes], where: str):
        self._sealer = Sealer(keys)
        self.where = where
        self._queue: list[_Pending] = []  # rows waiting for the next commit
        self._queue_lock = threading.Lock()
        self._committing = threading.Lock()  # held by the thread committing for everyone
        self._ready = True
        self._last_ok = time.monotonic()
        self._listeners: list[Callable[[bool], None]] = []
        self._watching: threading.Thread | None = None
        self._stopped = threading.Event()  # set by close: the background check ends
        self._poke = threading.Event()  # wakes the background check: the log has failed, or is closing

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def record(self, request: DecisionRequest, decision: Decision, *, timeout: float | None = None) -> None:
        """Store the decision; returns only once the row is durable (committed and on disk).
        DecisionLogError if it could not be stored (DecisionLogUnavailable if not within
        `timeout` seconds, less a margin to answer in)."""
        self._commit([self._sealer.seal(request, decision)], _deadline(timeout))

    def record_batch(self, pairs: list[tuple[DecisionRequest, Decision]], *, timeout: float | None = None) -> None:
        """Store many decisions in one transaction: all durable when it returns, or none
        (DecisionLogError)."""
        if pairs:
            self._commit([self._sealer.seal(request, decision) for request, decision in pairs], _deadline(timeout))

    def _commit(self, rows: list[SealedRow], deadline: float | None) -> None:
        """Group commit: queue the rows; the first thread to find no commit under way commits
        everything queued so far, bounded by the earliest deadline among them; the others wait
        and find theirs done. A waiter whose deadline comes first (or, while the log is failing,
        any waiter) withdraws its rows if no commit has taken them yet, and fails."""
        mine = _Pending(rows, deadline)
        with self._queue_lock:
            self._queue.append(mine)
        wait = -1 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._committing.acquire(timeout=wait if self._ready else 0):
            with self._queue_lock:
                if not mine.taken:
                    self._queue.remove(mine)
                    raise DecisionLogUnavailable("the decision could not be recorded: " + (
                        "the decision log is failing and another record is trying it" if not self._ready
                        else "timed out waiting for the decision log"))
            self._committing.acquire()  # taken by the commit under way, which ends by our deadline
        try:
            if not mine.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                    for pending in batch:
                        pending.taken = True
                error = None
                deadlines = [p.deadline for p in batch if p.deadline is not None]
                try:
                    self._insert([row for pending in batch for row in pending.rows],
                                 min(deadlines) if deadlines else None)
                except Exception as exc:  # reported to every caller in the batch
                    error = exc if isinstance(exc, DecisionLogError) else DecisionLogError(
                        f"the decision could not be recorded: {type(exc).__name__}")
                self._outcome(error)
                for pending in batch:
                    pending.done, pending.error = True, error
        finally:
            self._committing.release()
        if mine.error is not None:
            raise type(mine.error)(str(mine.error))

    def get(self, decision_id: str, *, timeout: float | None = None) -> LoggedDecision | None:
        """The recorded request, decision and bundle hash, or None for an unknown id."""
        try:
            row = self._select(decision_id, _deadline(timeout))
        except DecisionLogError as exc:
            self._outcome(exc)
            raise
        self._outcome(None)
        return None if row is None else self._sealer.unseal(row)

    # --- health -----------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether the log's last record, read or check reached its backend."""
        return self._ready

    def _outcome(self, error: Exception | None) -> None:
        if error is None:
            self._last_ok = time.monotonic()
            self._set_ready(True, None)
        elif isinstance(error, DecisionLogUnavailable):  # not a caller's duplicate id
            self._set_ready(False, error)

    def _set_ready(self, ready: bool, error: Exception | None) -> None:
        if ready == self._ready:
            return
        self._ready = ready
        if not ready:
            self._poke.set()  # from a check every CHECK_EVERY[1] to one every CHECK_EVERY[0]
        if ready:
            log.warning("decision log %s can record again", self.where)
        else:
            log.error("decision log %s cannot record: not ready until it can", self.where,
                      extra={"error": str(error)})
        for listener in list(self._listeners):
            listener(ready)

    def watch(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(ready)` whenever the log turns unable or able to record, and from now on
        check its backend in the background (`check`): every CHECK_EVERY[0] seconds while it
        fails, every CHECK_EVERY[1] seconds when no record or read has succeeded for that long."""
        self._listeners.append(listener)
        if self._watching is None:
            self._watching = threading.Thread(target=self._watch, name="decision-log-health", daemon=True)
            self._watching.start()

    def _watch(self) -> None:
        while True:
            self._poke.wait(CHECK_EVERY[0] if not self._ready else CHECK_EVERY[1])
            self._poke.clear()
            if self._stopped.is_set():
                return
            if self._ready and time.monotonic() - self._last_ok < CHECK_EVERY[1]:
                continue  # records or reads succeed: no need to ask
            try:
                self.check(CHECK_TIMEOUT)
            except DecisionLogError as exc:
                self._set_ready(False, exc)
            else:
                self._last_ok = time.monotonic()
                self._set_ready(True, None)

    def _stop_watching(self) -> None:
        self._stopped.set()
        self._poke.set()
        if self._watching is not None and self._watching is not threading.current_thread():
            self._watching.join()

    def _check_key(self) -> None:
        self._sealer.check_newest(self._newest_key_id(), self.where)

    # What a backend provides (a `deadline` is a time.monotonic(), or None: the backend's own bounds):
    def _insert(self, rows: list[SealedRow], deadline: float | None) -> None:
        """Store the rows in one transaction, durable when it returns."""
        raise NotImplementedError

    def _select(self, decision_id: str, deadline: float | None) -> SealedRow | None:
        """The decision's row as stored (`decided_at` as the backend gives it), or None."""
        raise NotImplementedError

    def check(self, timeout: float) -> None:
        """Return if the log could record now (within `timeout` seconds), else DecisionLogError."""
        raise NotImplementedError

    def _newest_key_id(self) -> str | None:
        raise NotImplementedError

    def decided_under(self, policy: str, version: str) -> list[tuple[str, str]]:
        """(decision_id, content_hash) of every decision of a version, oldest first: read from the
        clear columns, which say which file decided it and nothing of the case."""
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
