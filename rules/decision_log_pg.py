"""The decision log in PostgreSQL, for several replicas of the service sharing one log.

The same table as the SQLite log (`decisions`, the same clear columns — none says anything about a
case's circumstances — `decided_at` as a `timestamptz`), the same sealing (`decision_log.Sealer`: AES-256-GCM, every clear
column as associated data, key ids, rotation), the same interface (`DecisionLog`). Chosen by giving `--decision-log` a
`postgresql://` or `postgres://` URL (libpq's: `postgresql://user@host:5432/db?sslmode=verify-full`;
the password is best left out of the URL and given by `PGPASSWORD` or a `PGPASSFILE`).

Durability: each group of rows (`DecisionLog._commit`) is one transaction, and `record` returns
once PostgreSQL has acknowledged its commit, which with `synchronous_commit` on (the default; a session that finds
it `off` turns it on) means the commit record is flushed to the server's WAL (and, with
synchronous replication configured, to the standbys the server waits for).

Connections: a small pool (at most `pool_size`, default 8: one per gRPC worker thread), made
lazily. A connection found broken (the server restarted, a proxy dropped it, the backend was
terminated) is thrown away together with every idle one, and the statement is tried once more on
a new connection; an insert whose first commit may already have landed is recognised by its
nonce and sealed bytes, so a retry never records a decision twice nor fails on its own row. If
the database cannot be reached, `record` raises DecisionLogError (Decide answers UNAVAILABLE) and
the next call connects again.

Schema: created if absent under an advisory lock (replicas may start together), with its version
in `decision_log_schema`; an older schema is migrated (`_MIGRATIONS`, as the table's owner), a
newer one refused. The role the service runs as needs only SELECT and INSERT once the schema exists.
"""
from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psycopg
from psycopg import conninfo as pg_conninfo

from .decision_log import (COLUMNS, SCHEMA_VERSION, DecisionLog, DecisionLogError, DecisionLogKeyError, SealedRow,
                           resolve_keys)

log = logging.getLogger("cms_policy.decision_log")

T = TypeVar("T")
DEFAULT_POOL_SIZE = 8
ACQUIRE_TIMEOUT = 10.0  # seconds to wait for a free connection when all are busy
# Connection settings used unless the URL sets them: fail fast rather than hang a Decide.
CONNECT_DEFAULTS = {
    "connect_timeout": "5",
    "application_name": "cms-policy-decisions",
    "keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10", "keepalives_count": "3",
    "tcp_user_timeout": "15000",  # ms: an unacknowledged write to a vanished server fails, not hangs
}
_ADVISORY_LOCK = 0x636D73706F6C6963  # "cmspolic": serialises schema creation between replicas

_COMMENT = ("COMMENT ON TABLE decisions IS 'CMS policy decision log: one row per decision; request and decision "
            "sealed with AES-256-GCM (column sealed, key named by key_id; associated data: every clear column, "
            "or decision_id alone where seal_format = 1)'")
_CREATE = [
    """CREATE TABLE decisions (
        decision_id    text PRIMARY KEY,
        decided_at     timestamptz NOT NULL,
        policy         text NOT NULL,
        version        text NOT NULL,
        content_hash   text NOT NULL,
        bundle_hash    text NOT NULL,
        shadow_version text,
        key_id         text NOT NULL,
        nonce          bytea NOT NULL,
        sealed         bytea NOT NULL,
        seal_format    smallint NOT NULL DEFAULT 1)""",
    "CREATE INDEX decisions_by_time ON decisions (decided_at)",
    _COMMENT,
    "CREATE TABLE decision_log_schema (version integer NOT NULL)",
    "COMMENT ON TABLE decision_log_schema IS 'schema version of the decisions table (one row)'",
]
# From schema N to N + 1. The PostgreSQL log starts at schema 2 (it has had the shadow columns from the first).
_MIGRATIONS: dict[int, list[str]] = {
    2: ["ALTER TABLE decisions DROP COLUMN outcome, DROP COLUMN shadow_outcome",
        # A dropped column's values stay in every row on disk until the table is rewritten: rewrite it
        # (CLUSTER, unlike VACUUM FULL, may run in the migration's transaction; grants are kept).
        "CLUSTER decisions USING decisions_by_time"],
    # Rows so far were sealed with the decision id alone as associated data (no rewrite: a constant default).
    3: ["ALTER TABLE decisions ADD COLUMN seal_format smallint NOT NULL DEFAULT 1", _COMMENT],
}


def redact(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "postgresql://(unparsable URL)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hosts = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class _Pool:
    """At most `size` connections, made when needed; a broken one is closed, never handed out again."""

    def __init__(self, conninfo: str, size: int, where: str):
        self._conninfo = conninfo
        self._size = size
        self._where = where
        self._idle: list[psycopg.Connection] = []
        self._count = 0  # connections open: idle + in use
        self._closed = False
        self._cond = threading.Condition()
        self._warned_sync = False

    def _connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise DecisionLogError(f"cannot connect to the decision log {self._where}: {_first_line(exc)}") from None
        try:
            if conn.execute("SHOW synchronous_commit").fetchone()[0] == "off":
                conn.execute("SET synchronous_commit TO on")  # a decision is acknowledged only once durable
                if not self._warned_sync:
                    self._warned_sync = True
                    log.warning("%s has synchronous_commit off: turned on for the decision log's sessions", self._where)
        except psycopg.Error as exc:
            conn.close()
            raise DecisionLogError(f"cannot set up a connection to {self._where}: {_first_line(exc)}") from None
        return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        conn = self._acquire()
        try:
            yield conn
        finally:
            self._release(conn)

    def _acquire(self) -> psycopg.Connection:
        deadline = time.monotonic() + ACQUIRE_TIMEOUT
        with self._cond:
            while True:
                if self._closed:
                    raise DecisionLogError(f"the decision log {self._where} is closed")
                if self._idle:
                    return self._idle.pop()
                if self._count < self._size:
                    self._count += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._cond.wait(remaining):
                    raise DecisionLogError(f"no connection to the decision log free within {ACQUIRE_TIMEOUT:.0f}s")
        try:
            return self._connect()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _release(self, conn: psycopg.Connection) -> None:
        usable = not conn.closed and not conn.broken and \
            conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with self._cond:
            if usable and not self._closed:
                self._idle.append(conn)
                self._cond.notify()
                return
            self._count -= 1
            self._cond.notify()
        conn.close()

    def discard_idle(self) -> None:
        """Close every idle connection: after one broke, the others are likely broken too
        (a restarted server, a failover), and each would otherwise fail one request."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for conn in idle:
            conn.close()

    def close(self) -> None:
        with self._cond:
            self._closed = True
        self.discard_idle()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PostgresDecisionLog(DecisionLog):
    def __init__(self, pool: _Pool, where: str, keys: list[bytes]):
        super().__init__(keys, where)
        self._pool = pool

    @classmethod
    def open(cls, url: str, keys: list[bytes] | None = None, *, key_file: Path | None = None, create: bool = True,
             pool_size: int = DEFAULT_POOL_SIZE) -> PostgresDecisionLog:
        """Connect to the log at `url` (with `create`: make its schema if absent). Without `keys`,
        they come from `key_file` or CMS_POLICY_LOG_KEY (never a generated development key)."""
        where = redact(url)
        if keys is None:
            keys = resolve_keys(url, key_file, generate=False)
        if not keys:
            raise DecisionLogKeyError("no key given")
        try:
            params = pg_conninfo.conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise DecisionLogError(f"not a usable PostgreSQL URL ({where}): {_first_line(exc)}") from None
        conninfo = pg_conninfo.make_conninfo(url, **{k: v for k, v in CONNECT_DEFAULTS.items() if k not in params})
        pool = _Pool(conninfo, pool_size, where)
        decision_log = cls(pool, where, keys)
        try:
            with pool.connection() as conn:
                _prepare_schema(conn, where, create)
                _warn_if_not_durable(conn, where)
            decision_log._check_key()
        except psycopg.Error as exc:
            pool.close()
            raise DecisionLogError(f"{where} is not a usable decision log: {_first_line(exc)}") from None
        except BaseException:
            pool.close()
            raise
        return decision_log

    def _call(self, what: str, work: Callable[[psycopg.Connection], T]) -> T:
        """`work` on a pooled connection; if that connection turns out broken, once more on a new one."""
        for attempt in (1, 2):
            with self._pool.connection() as conn:
                try:
                    return work(conn)
                except psycopg.Error as exc:
                    if conn.broken and attempt == 1:
                        log.warning("decision log connection lost (%s): reconnecting to %s", _first_line(exc),
                                    self.where)
                        self._pool.discard_idle()
                        continue
                    raise DecisionLogError(f"{what}: {_first_line(exc)}") from None
        raise AssertionError("unreachable")

    def _insert(self, rows: list[SealedRow]) -> None:
        insert = (f"INSERT INTO decisions ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})")
        first, attempts = rows[0], []

        def work(conn: psycopg.Connection) -> None:
            attempts.append(1)
            # A retry after a lost acknowledgement finds the rows its first try committed (all or none).
            if len(attempts) > 1 and conn.execute("SELECT 1 FROM decisions WHERE decision_id = %s AND nonce = %s"
                                                  " AND sealed = %s", (first.decision_id, first.nonce, first.sealed)
                                                  ).fetchone():
                return
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(insert, [row.values() for row in rows])

        self._call("the decision could not be recorded", work)

    def _select(self, decision_id: str) -> SealedRow | None:
        row = self._call("the decision log could not be read", lambda conn: conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM decisions WHERE decision_id = %s", (decision_id,)).fetchone())
        return None if row is None else SealedRow(*row)  # decided_at a datetime: its instant is what is bound

    def _newest_key_id(self) -> str | None:
        row = self._call("the decision log could not be read", lambda conn: conn.execute(
            "SELECT key_id FROM decisions ORDER BY decided_at DESC LIMIT 1").fetchone())
        return row[0] if row else None

    def decided_under(self, policy: str, version: str) -> list[tuple[str, str]]:
        return self._call("the decision log could not be read", lambda conn: [tuple(r) for r in conn.execute(
            "SELECT decision_id, content_hash FROM decisions WHERE policy = %s AND version = %s"
            " ORDER BY decided_at, decision_id", (policy, version)).fetchall()])

    def count(self) -> int:
        return self._call("the decision log could not be read",
                          lambda conn: conn.execute("SELECT count(*) FROM decisions").fetchone()[0])

    def close(self) -> None:
        self._pool.close()


def _prepare_schema(conn: psycopg.Connection, where: str, create: bool) -> None:
    """Make the schema if absent (`create`), migrate an older one, refuse a newer one or a foreign table."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK,))
        has_decisions, has_version = conn.execute(
            "SELECT to_regclass('decisions') IS NOT NULL, to_regclass('decision_log_schema') IS NOT NULL").fetchone()
        if not has_decisions and not has_version:
            if not create:
                raise DecisionLogError(f"no decision log in {where}")
            for statement in _CREATE:
                conn.execute(statement)
            conn.execute("INSERT INTO decision_log_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
            log.info("created the decision log schema %d in %s", SCHEMA_VERSION, where)
            return
        if not has_version:
            raise DecisionLogError(f"{where}: a table 'decisions' exists but no 'decision_log_schema': "
                                   "not a decision log this code made; refusing to use it")
        rows = conn.execute("SELECT version FROM decision_log_schema").fetchall()
        if len(rows) != 1:
            raise DecisionLogError(f"{where}: decision_log_schema should have one row, it has {len(rows)}")
        stored = rows[0][0]
        if stored > SCHEMA_VERSION:
            raise DecisionLogError(f"{where}: decision log schema {stored}, this code reads {SCHEMA_VERSION}")
        while stored < SCHEMA_VERSION:
            if stored not in _MIGRATIONS:
                raise DecisionLogError(f"{where}: no migration from decision log schema {stored}")
            for statement in _MIGRATIONS[stored]:
                conn.execute(statement)
            stored += 1
            conn.execute("UPDATE decision_log_schema SET version = %s", (stored,))
            log.info("migrated the decision log in %s to schema %d", where, stored)


def _warn_if_not_durable(conn: psycopg.Connection, where: str) -> None:
    try:
        if conn.execute("SHOW fsync").fetchone()[0] == "off":
            log.warning("%s runs with fsync off: a crash of its host can lose recorded decisions", where)
    except psycopg.Error:
        pass  # not allowed to look: nothing to say
