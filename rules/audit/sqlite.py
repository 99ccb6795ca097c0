"""The decision log in an embedded SQLite database (one service host).


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

import fcntl
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from rules.audit.errors import DecisionLogError, DecisionLogKeyError, DecisionLogUnavailable
from rules.audit.keys import resolve_keys
from rules.audit.log import SCHEMA_VERSION, DecisionLog
from rules.audit.sealer import COLUMNS, SealedRow

log = logging.getLogger("cms_policy.decision_log")

CHECKPOINT_PAUSE = 0.2  # seconds between a process's background checkpoints, at least
CHECKPOINT_FRAMES = 1000  # frames in the write-ahead log before it is restarted (SQLite's own default)
TURN_WAIT = 5.0  # seconds a writer waits for another process's turn at the SQLite log, at most

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


class SQLiteDecisionLog(DecisionLog):
    def __init__(self, db: sqlite3.Connection, path: Path, keys: list[bytes]):
        super().__init__(keys, str(path))
        self._db = db
        self.path = path
        self._lock = threading.Lock()
        self._writer: int | None = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)  # turns between processes
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
        assert self._writer is not None  # only closed logs have none
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
                                assert self._writer is not None  # took its turn above
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
