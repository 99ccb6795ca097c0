"""The decision log: every decision, durable and encrypted, in an embedded SQLite database (one
service process) or in PostgreSQL (several replicas: `rules/decision_log_pg.py`).

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
decision, and a ciphertext is as long as its plaintext. `Sealer` does that for every backend; a
backend only stores and fetches `SealedRow`s.

`DecisionLog.open(target)` picks the backend: a `postgresql://` (or `postgres://`) URL is
PostgreSQL, anything else a SQLite file path.

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
fails, since no traffic may come to prove it back; every 10 s when idle), so a health check never
waits on the database itself.

SQLite durability: WAL mode with `synchronous=FULL` (the write-ahead log is fsynced at every
commit). One connection per process, guarded by a lock, serves every thread; several processes
(`python -m service --workers N`) share the file, taking turns to write under an exclusive lock on
`<log>.lock` (a blocking file lock: the next writer wakes as soon as it is released, where
SQLite's own busy handler would sleep for milliseconds). Checkpoints (copying the write-ahead log
into the database file) run in a background thread of each process (`_checkpoint`), not in the
commit that happens to fill the log: SQLite's automatic checkpoint took 2–7 ms inside one commit in
every ~250, and every request waiting for that commit paid it (most of Decide's p99).
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from operator import attrgetter
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rules.engine.decision import Decision, DecisionRequest

log = logging.getLogger("cms_policy.decision_log")

DEFAULT_PATH = Path("var/decisions.sqlite3")  # relative to the working directory
LOG_ENV = "CMS_POLICY_DECISION_LOG"  # where the log is, when no --decision-log is given (e.g. a URL from a secret)
KEY_ENV = "CMS_POLICY_LOG_KEY"
KEY_BYTES = 32
NONCE_BYTES = 12
SCHEMA_VERSION = 4  # 2: shadow_version, shadow_outcome; 3: no outcome nor shadow_outcome in the clear; 4: seal_format
SEAL_FORMAT = 2  # what new rows' associated data binds (_associated_data): 1 the decision id, 2 every clear column
PAYLOAD_FORMAT = 1
PAD_FROM = 4096  # bytes: the smallest padded document (see _pad)
CHECKPOINT_PAUSE = 0.2  # seconds between a process's background checkpoints, at least
CHECKPOINT_FRAMES = 1000  # frames in the write-ahead log before it is restarted (SQLite's own default)
TURN_WAIT = 5.0  # seconds a writer waits for another process's turn at the SQLite log, at most
DEADLINE_MARGIN = 0.25  # seconds (at most a tenth of the caller's time) kept to answer before its deadline
CHECK_EVERY = (1.0, 10.0)  # seconds between background checks of the backend: while failing, while idle
CHECK_TIMEOUT = 3.0  # seconds a background check may take (time for a new PostgreSQL connection: 2 s at least)
NO_DEADLINE = 86_400.0  # seconds: a timeout this long is none (gRPC's time_remaining() is ~9e18 without a deadline)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id  TEXT PRIMARY KEY,
    decided_at   TEXT NOT NULL,  -- ISO 8601, UTC
    policy       TEXT NOT NULL,
    version      TEXT NOT NULL,
    content_hash TEXT NOT NULL,  -- sha256 of the policy version file
    bundle_hash  TEXT NOT NULL,  -- sha256 over every policy file loaded at the time
    shadow_version TEXT,         -- the version decided alongside (shadow evaluation), if asked
    key_id       TEXT NOT NULL,  -- which key sealed the row
    nonce        BLOB NOT NULL,
    sealed       BLOB NOT NULL,  -- AES-256-GCM of {"request": ..., "decision": ...}, padded (_pad)
    seal_format  INTEGER NOT NULL DEFAULT 1  -- what the associated data binds (SEAL_FORMAT); 1 for rows made before
);
CREATE INDEX IF NOT EXISTS decisions_by_time ON decisions (decided_at);
"""
# From schema N to N + 1, each in the one transaction that migrates (`_migrate`).
_MIGRATIONS = {
    1: ["ALTER TABLE decisions ADD COLUMN shadow_version TEXT", "ALTER TABLE decisions ADD COLUMN shadow_outcome TEXT"],
    2: ["ALTER TABLE decisions DROP COLUMN outcome", "ALTER TABLE decisions DROP COLUMN shadow_outcome"],
    3: ["ALTER TABLE decisions ADD COLUMN seal_format INTEGER NOT NULL DEFAULT 1"],  # rows so far bound the id alone
}
_URL = re.compile(r"(?i)^postgres(?:ql)?://")


class DecisionLogError(Exception):
    """The decision log cannot be opened, written or read."""


class DecisionLogKeyError(DecisionLogError):
    """The key is missing, malformed or not the one a row was sealed with."""


class DecisionLogUnavailable(DecisionLogError):
    """The backend cannot be reached, failed, or did not answer in time: the log is not ready."""


class DecisionLogIntegrityError(DecisionLogError):
    """A sealed row fails authentication: it was altered or moved from another row."""


def is_postgres_url(target: str | os.PathLike) -> bool:
    """Whether `target` names a PostgreSQL database (`postgresql://...` or `postgres://...`)."""
    return isinstance(target, str) and bool(_URL.match(target))


def key_id(key: bytes) -> str:
    """A short public name for a key (not reversible), stored with each row it seals."""
    return hashlib.sha256(b"cms-policy decision-log key\0" + key).hexdigest()[:16]


def parse_keys(text: str, source: str) -> list[bytes]:
    """Keys as base64 text, one per line (or comma-separated); `#` starts a comment. The first
    key seals new rows; the others are old keys, kept to open older rows."""
    keys = []
    for line in text.splitlines():
        for word in line.split("#", 1)[0].replace(",", " ").split():
            try:
                key = base64.b64decode(word, validate=True)
            except (binascii.Error, ValueError):
                raise DecisionLogKeyError(f"{source}: a key is not valid base64") from None
            if len(key) != KEY_BYTES:
                raise DecisionLogKeyError(f"{source}: a key must be {KEY_BYTES} bytes (base64 of 32 random bytes), "
                                          f"not {len(key)}")
            keys.append(key)
    if not keys:
        raise DecisionLogKeyError(f"{source}: no key found")
    return keys


def new_key_text() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def resolve_keys(target: str | os.PathLike, key_file: Path | None = None, environ=os.environ,
                 generate: bool = True) -> list[bytes]:
    """The keys for the log at `target`: from `key_file` if given, else the environment variable
    CMS_POLICY_LOG_KEY, else (local development only, SQLite only) `<db_path>.key`, generated if
    `generate`. A PostgreSQL log has no development key: it must come from a secret store."""
    if key_file is not None:
        try:
            return parse_keys(Path(key_file).read_text(), str(key_file))
        except OSError as exc:
            raise DecisionLogKeyError(f"cannot read the decision-log key file {key_file}: {exc.strerror}") from None
    if environ.get(KEY_ENV):
        return parse_keys(environ[KEY_ENV], KEY_ENV)
    if is_postgres_url(target):
        raise DecisionLogKeyError(
            f"no key for the PostgreSQL decision log: set {KEY_ENV} or give a key file (--decision-log-key-file; "
            "for `python -m rules explain`, --key-file), from a secret store; a development key file is only "
            "made beside a SQLite log")
    db_path = target
    dev_file = Path(f"{db_path}.key")
    if not dev_file.exists():
        if not generate:
            raise DecisionLogKeyError(f"no key for the decision log {db_path}: set {KEY_ENV} or give a key file "
                                      f"({dev_file} does not exist)")
        dev_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dev_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(new_key_text() + "\n")
        log.warning("generated a new decision-log key in %s for local development", dev_file)
    log.warning("decision-log key read from %s, beside the database: fine for development only; in production "
                "supply it from a secret store (%s or a key file outside the data directory)", dev_file, KEY_ENV)
    return parse_keys(dev_file.read_text(), str(dev_file))


@dataclass(frozen=True)
class LoggedDecision:
    request: DecisionRequest
    decision: Decision
    bundle_hash: str


# --- sealing: the same for every backend ------------------------------------------------

@dataclass(frozen=True)
class SealedRow:
    """One row of the `decisions` table, as every backend stores it (the fields in column order)."""
    decision_id: str
    decided_at: str
    policy: str
    version: str
    content_hash: str
    bundle_hash: str
    shadow_version: str | None
    key_id: str
    nonce: bytes
    sealed: bytes
    seal_format: int  # last: the column a migration added (in every backend the table's last)

    def values(self) -> tuple:
        return _column_values(self)  # not dataclasses.astuple: it deep-copies every field (30 µs a row)


COLUMNS = tuple(f.name for f in fields(SealedRow))
_column_values = attrgetter(*COLUMNS)


def _pad(document: bytes) -> bytes:
    """The JSON `document` followed by spaces up to the next power of two, PAD_FROM bytes at least,
    so that a sealed row's length tells only its size class (4, 8, 16 KiB…), not whether its texts
    name abuse. JSON ignores whitespace after the value, so reading needs no change and rows sealed
    before padding open as they always did."""
    size = max(PAD_FROM, 1 << (len(document) - 1).bit_length())
    return document + b" " * (size - len(document))


def _instant(value: str | dt.datetime) -> str:
    """`decided_at` as associated data: the UTC instant to the microsecond, the same whether it
    is read back as SQLite's text or as PostgreSQL's timestamptz (in the session's time zone).
    ValueError for a time without an offset or not a time at all."""
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("a decision time needs its UTC offset")
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")


def _associated_data(row: SealedRow) -> bytes:
    """What a row's seal authenticates besides its document. Format 1 (rows sealed before format
    2): the decision id alone. Format 2: the format and every clear column, in column order, as a
    JSON array (unambiguous: each value quoted or null), `decided_at` as its instant (`_instant`).
    ValueError for another format or a malformed time."""
    if row.seal_format == 1:
        return row.decision_id.encode()
    if row.seal_format == 2:
        return json.dumps([2, row.decision_id, _instant(row.decided_at), row.policy, row.version, row.content_hash,
                           row.bundle_hash, row.shadow_version, row.key_id], separators=(",", ":")).encode()
    raise ValueError(f"unknown seal format {row.seal_format!r}")


class Sealer:
    """AES-256-GCM over the request and decision, with every clear column as associated data
    (`_associated_data`); the first key seals, any key given opens the rows it sealed."""

    def __init__(self, keys: list[bytes]):
        if not keys:
            raise DecisionLogKeyError("no key given")
        self._aeads = {key_id(k): AESGCM(k) for k in keys}
        self.sealing_id = key_id(keys[0])

    def seal(self, request: DecisionRequest, decision: Decision) -> SealedRow:
        if not decision.decision_id:
            raise ValueError("a decision needs its id to be recorded")
        # {"format":…,"request":…,"decision":…}, each model serialised by pydantic's own (fast) encoder
        payload = _pad(b"".join((b'{"format":%d,"request":' % PAYLOAD_FORMAT, request.model_dump_json().encode(),
                                 b',"decision":', decision.model_dump_json().encode(), b"}")))
        clear = SealedRow(decision_id=decision.decision_id, decided_at=decision.decided_at,
                          policy=decision.policy.policy, version=decision.policy.version,
                          content_hash=decision.policy.content_hash, bundle_hash=decision.bundle_hash,
                          shadow_version=request.shadow_version or None, key_id=self.sealing_id, nonce=b"",
                          sealed=b"", seal_format=SEAL_FORMAT)
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aeads[self.sealing_id].encrypt(nonce, payload, _associated_data(clear))
        return replace(clear, nonce=nonce, sealed=sealed)

    def unseal(self, row: SealedRow) -> LoggedDecision:
        """The request and decision of a stored row. DecisionLogKeyError if its key was not given;
        DecisionLogIntegrityError if its sealed document or any clear column was changed."""
        aead = self._aeads.get(row.key_id)
        if aead is None:
            raise DecisionLogKeyError(f"decision {row.decision_id} was sealed with key {row.key_id}, which was not given")
        try:
            payload = json.loads(aead.decrypt(bytes(row.nonce), bytes(row.sealed), _associated_data(row)))
        # altered (a clear column too), or stored values of the wrong shape (a short nonce, text, an unknown format)
        except (InvalidTag, ValueError, TypeError):
            raise DecisionLogIntegrityError(f"decision {row.decision_id} fails its integrity check: the row was "
                                            "altered or belongs to another decision") from None
        return LoggedDecision(request=DecisionRequest.model_validate(payload["request"]),
                              decision=Decision.model_validate(payload["decision"]), bundle_hash=row.bundle_hash)

    def check_newest(self, kid: str | None, where: str) -> None:
        """Fail at once, not on the first read, if the newest row was sealed with a key we do not have."""
        if kid is not None and kid not in self._aeads:
            raise DecisionLogKeyError(
                f"{where}: the newest decision was sealed with key {kid}, but the key(s) given are "
                f"{', '.join(self._aeads)}: wrong key (add the old key after the new one to rotate)")


# --- the interface ---------------------------------------------------------------------------

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
    manager. `open` picks the backend from the target; subclasses store `SealedRow`s."""

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

    @classmethod
    def open(cls, target: str | os.PathLike, keys: list[bytes] | None = None, *, key_file: Path | None = None,
             create: bool = True) -> DecisionLog:
        """Open the log at `target`: a PostgreSQL URL, or a SQLite file path (with `create`: made,
        with its parent directories). Without `keys`, they are found by `resolve_keys`."""
        if is_postgres_url(target):
            from rules.decision_log_pg import PostgresDecisionLog  # psycopg is only needed for PostgreSQL
            return PostgresDecisionLog.open(target, keys, key_file=key_file, create=create)
        if re.match(r"(?i)postgres(ql)?:", os.fspath(target)):  # a URL made a Path loses its "//"
            raise DecisionLogError(f"{target}: give a PostgreSQL URL as a string (postgresql://...), not a path")
        return SQLiteDecisionLog.open(target, keys, key_file=key_file, create=create)

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


# --- SQLite ------------------------------------------------------------------------------------

class SQLiteDecisionLog(DecisionLog):
    def __init__(self, db: sqlite3.Connection, path: Path, keys: list[bytes]):
        super().__init__(keys, str(path))
        self._db = db
        self.path = path
        self._lock = threading.Lock()
        self._writer = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)  # turns between processes
        self._written = threading.Event()  # set by each commit: there is something to checkpoint
        self._closing = threading.Event()
        self._checkpointer: threading.Thread | None = None  # started by the first commit

    @classmethod
    def open(cls, path: str | os.PathLike, keys: list[bytes] | None = None, *, key_file: Path | None = None,
             create: bool = True) -> SQLiteDecisionLog:
        """Open (with `create`: make, with its parent directories) the log at `path`. Without
        `keys`, they are found by `resolve_keys`."""
        path = Path(path)
        new = not path.exists() or (path.is_file() and path.stat().st_size == 0)
        try:
            if not path.exists():
                if not create:
                    raise DecisionLogError(f"no decision log at {path}")
                path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite gives -wal/-shm the same mode
            if keys is None:
                keys = resolve_keys(path, key_file, generate=create and new)  # never a new key for old rows
        except OSError as exc:
            raise DecisionLogError(f"cannot create the decision log {path}: {exc}") from None
        if not keys:
            raise DecisionLogKeyError("no key given")
        try:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)  # autocommit
        except sqlite3.Error as exc:
            raise DecisionLogError(f"cannot open the decision log {path}: {exc}") from None
        try:
            db.execute("PRAGMA busy_timeout = 5000")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise DecisionLogError(f"{path}: the decision log needs WAL mode, got {mode}")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA wal_autocheckpoint = 0")  # the background thread checkpoints
            db.executescript(_SCHEMA)
            stored = db.execute("PRAGMA user_version").fetchone()[0]
            if stored == 0:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif stored > SCHEMA_VERSION:
                raise DecisionLogError(f"{path}: decision log schema {stored}, this code reads {SCHEMA_VERSION}")
            elif stored < SCHEMA_VERSION:
                _migrate(db, path)
            decision_log = cls(db, path, keys)
            decision_log._check_key()
        except sqlite3.DatabaseError as exc:
            db.close()
            raise DecisionLogError(f"{path} is not a usable decision log: {exc}") from None
        except DecisionLogError:
            db.close()
            raise
        return decision_log

    def _newest_key_id(self) -> str | None:
        row = self._db.execute("SELECT key_id FROM decisions ORDER BY rowid DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self._stop_watching()
        self._closing.set()
        self._written.set()  # wakes the checkpointer to stop
        if self._checkpointer is not None:
            self._checkpointer.join()
        with self._lock:
            self._db.close()  # the last connection to close checkpoints what is left
            if self._writer is not None:
                os.close(self._writer)
                self._writer = None

    def _take_turn(self, deadline: float | None) -> None:
        """The file lock that orders writers across processes, waited for until `deadline` (at most
        TURN_WAIT seconds): a process that holds it and stops (a frozen worker) makes the others'
        calls UNAVAILABLE, not hang (issue 27 item 3). Polled, with waits from 0.5 ms up to 5 ms,
        because a blocking flock cannot be given a timeout from a thread."""
        give_up = min(deadline if deadline is not None else float("inf"), time.monotonic() + TURN_WAIT)
        pause = 0.0005
        while True:
            try:
                fcntl.flock(self._writer, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() + pause > give_up:
                    raise DecisionLogUnavailable("the decision could not be recorded: another process has held "
                                                 "the decision log's file lock for too long") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.005)

    # The deadline bounds the wait for the file lock; SQLite's own waits its busy timeout bounds.
    def _insert(self, rows: list[SealedRow], deadline: float | None) -> None:
        insert = f"INSERT INTO decisions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        with self._lock:
            if self._writer is None:
                raise DecisionLogUnavailable("the decision could not be recorded: the decision log is closed")
            self._take_turn(deadline)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(insert, [row.values() for row in rows])
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise (DecisionLogError if isinstance(exc, sqlite3.IntegrityError) else DecisionLogUnavailable)(
                    f"the decision could not be recorded: {exc}") from None
            finally:
                fcntl.flock(self._writer, fcntl.LOCK_UN)
            self._written.set()
            if self._checkpointer is None:
                self._checkpointer = threading.Thread(target=self._checkpoint, name="decision-log-checkpoint",
                                                      daemon=True)
                self._checkpointer.start()

    def _checkpoint(self) -> None:
        """Until the log is closed, after commits (at most every CHECKPOINT_PAUSE seconds): a PASSIVE
        checkpoint beside the writers, which copies the bulk; then, once the write-ahead log holds
        CHECKPOINT_FRAMES frames, a RESTART with the writers held off (the few frames committed
        meanwhile to copy), so that the next commit writes the log from its start, as SQLite's
        automatic checkpoint would have (overwriting: a cheaper fsync than appending). No busy
        timeout: if a reader holds the log, the restart waits for a later turn, not the writers."""
        db = sqlite3.connect(self.path, timeout=0, check_same_thread=False, isolation_level=None)
        try:
            while self._written.wait() and not self._closing.is_set():
                self._written.clear()
                try:
                    _, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames >= CHECKPOINT_FRAMES:
                        with self._lock:
                            self._take_turn(None)
                            try:
                                db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                            finally:
                                fcntl.flock(self._writer, fcntl.LOCK_UN)
                except (sqlite3.Error, DecisionLogUnavailable) as exc:  # the next commit tries again
                    log.warning("decision log checkpoint failed", extra={"error": str(exc)})
                self._closing.wait(CHECKPOINT_PAUSE)
        finally:
            db.close()

    def _select(self, decision_id: str, deadline: float | None) -> SealedRow | None:
        try:
            with self._lock:
                row = self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM decisions WHERE decision_id = ?",
                                       (decision_id,)).fetchone()
            return None if row is None else SealedRow(*row)
        except sqlite3.Error as exc:
            raise DecisionLogUnavailable(f"the decision log could not be read: {exc}") from None

    def check(self, timeout: float) -> None:
        try:
            with self._lock:
                if self._writer is None:
                    raise DecisionLogUnavailable("the decision log is closed")
                self._db.execute("SELECT 1 FROM decisions LIMIT 1").fetchall()
                self._take_turn(time.monotonic() + timeout)  # a writer could take its turn now
                fcntl.flock(self._writer, fcntl.LOCK_UN)
        except sqlite3.Error as exc:
            raise DecisionLogUnavailable(f"the decision log could not be read: {exc}") from None

    def decided_under(self, policy: str, version: str) -> list[tuple[str, str]]:
        try:
            with self._lock:
                return self._db.execute("SELECT decision_id, content_hash FROM decisions WHERE policy = ? AND version = ?"
                                        " ORDER BY decided_at, decision_id", (policy, version)).fetchall()
        except sqlite3.Error as exc:
            raise DecisionLogError(f"the decision log could not be read: {exc}") from None

    def count(self) -> int:
        try:
            with self._lock:
                return self._db.execute("SELECT count(*) FROM decisions").fetchone()[0]
        except sqlite3.Error as exc:
            raise DecisionLogError(f"the decision log could not be read: {exc}") from None


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring an older log to SCHEMA_VERSION in one transaction, one process at a time (workers
    may open the file together). A dropped column's values must leave the file, not only the
    table: the space they free is zeroed (secure_delete), and the pages that held them, still in
    the database file until a checkpoint copies the new ones over, are overwritten at once."""
    writer = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(writer, fcntl.LOCK_EX)  # released by closing
        db.execute("PRAGMA secure_delete = ON")
        db.execute("BEGIN IMMEDIATE")
        try:
            stored = db.execute("PRAGMA user_version").fetchone()[0]  # another process may have migrated
            for version in range(stored, SCHEMA_VERSION):
                for statement in _MIGRATIONS[version]:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            db.execute("PRAGMA secure_delete = OFF")  # the log deletes nothing else
        if stored < SCHEMA_VERSION:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            log.info("migrated the decision log %s from schema %d to %d", path, stored, SCHEMA_VERSION)
    finally:
        os.close(writer)
