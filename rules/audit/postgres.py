"""The decision log in PostgreSQL, for several replicas of the service sharing one log.

The same table as the SQLite log (`decisions`, the same clear columns — none says anything about a
case's circumstances — `decided_at` as a `timestamptz`), the same sealing (`sealer.Sealer`: AES-256-GCM, every clear
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
the database cannot be reached, `record` raises DecisionLogUnavailable (Decide answers UNAVAILABLE)
and the next call connects again.

Time limits: a database that is reachable but stalled (a table locked, a server frozen, a disk that
does not return) must fail a call, not hang it. Each session gets `statement_timeout`,
`lock_timeout` and `idle_in_transaction_session_timeout` (SESSION_DEFAULTS) unless the server,
role, database or URL (`options=-c statement_timeout=10s`) already sets one. A call with a deadline
nearer than the session's statement_timeout runs in a transaction whose `SET LOCAL
statement_timeout` ends it just before that deadline. The server enforces these; a frozen server
enforces nothing (and its kernel still acknowledges TCP, so keepalives and tcp_user_timeout see
nothing): `_Watchdog` shuts the socket of a call that outlives its time, from the client's side.
Such a call is not retried, and the other connections are kept. Schema work is not limited
(a migration may take minutes).

Schema: created if absent under an advisory lock (replicas may start together), with its version
in `decision_log_schema`; an older schema is migrated (`_MIGRATIONS`, as the table's owner), a
newer one refused. The role the service runs as needs only SELECT and INSERT once the schema exists.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psycopg
from psycopg import conninfo as pg_conninfo

from rules.audit.errors import DecisionLogError, DecisionLogKeyError, DecisionLogUnavailable
from rules.audit.keys import resolve_keys
from rules.audit.log import SCHEMA_VERSION, DecisionLog
from rules.audit.sealer import COLUMNS, SealedRow

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
# Set on each session unless already set (not 0) by the server, role, database or URL: a stalled
# database fails a statement instead of holding a worker thread.
SESSION_DEFAULTS = {"statement_timeout": "5s", "lock_timeout": "2s", "idle_in_transaction_session_timeout": "30s"}
MIN_CONNECT_TIMEOUT = 2  # seconds: libpq's least connect_timeout
WATCHDOG_GRACE = 0.1  # seconds: the server's own timeout fires this much before the watchdog cuts the socket
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
        self.statement_timeout = 5.0  # seconds: the sessions' own, as the last connection found it

    def _connect(self, deadline: float | None, hasty: bool) -> psycopg.Connection:
        # connect_timeout is in whole seconds, 2 at least (libpq's rule): with less time left a server
        # that does not answer would hold the call past its deadline. Taken when the database has
        # been answering (a connection is then a matter of milliseconds), not while it fails (`hasty`).
        left = None if deadline is None else deadline - time.monotonic()
        if hasty and left is not None and left < MIN_CONNECT_TIMEOUT:
            raise DecisionLogUnavailable(f"cannot connect to the decision log {self._where}: it has been failing, "
                                         f"and {left:.1f}s is too little to wait for a new connection")
        limit = {} if left is None else {"connect_timeout": max(MIN_CONNECT_TIMEOUT, int(left))}
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True, **limit)
        except psycopg.Error as exc:
            raise DecisionLogUnavailable(
                f"cannot connect to the decision log {self._where}: {_first_line(exc)}") from None
        try:
            names = ["synchronous_commit", *SESSION_DEFAULTS]
            found = dict(zip(names, conn.execute(
                f"SELECT {', '.join(['current_setting(%s)'] * len(names))}", names).fetchone()))
            if found["synchronous_commit"] == "off":
                conn.execute("SET synchronous_commit TO on")  # a decision is acknowledged only once durable
                if not self._warned_sync:
                    self._warned_sync = True
                    log.warning("%s has synchronous_commit off: turned on for the decision log's sessions", self._where)
            unset = [name for name in SESSION_DEFAULTS if found[name] == "0"]  # 0: no limit
            if unset:
                conn.execute(f"SELECT {', '.join(['set_config(%s, %s, false)'] * len(unset))}",
                             [v for name in unset for v in (name, SESSION_DEFAULTS[name])])
            milliseconds = conn.execute("SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout'"
                                        ).fetchone()[0]
            self.statement_timeout = milliseconds / 1000 if milliseconds > 0 else float("inf")
        except psycopg.Error as exc:
            conn.close()
            raise DecisionLogUnavailable(f"cannot set up a connection to {self._where}: {_first_line(exc)}") from None
        return conn

    @contextlib.contextmanager
    def connection(self, deadline: float | None = None, hasty: bool = False) -> Iterator[psycopg.Connection]:
        conn = self._acquire(deadline, hasty)
        try:
            yield conn
        finally:
            self._release(conn)

    def _acquire(self, until: float | None, hasty: bool) -> psycopg.Connection:
        deadline = time.monotonic() + ACQUIRE_TIMEOUT
        if until is not None:
            deadline = min(deadline, until)
        with self._cond:
            while True:
                if self._closed:
                    raise DecisionLogUnavailable(f"the decision log {self._where} is closed")
                if self._idle:
                    return self._idle.pop()
                if self._count < self._size:
                    self._count += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._cond.wait(remaining):
                    raise DecisionLogUnavailable("no connection to the decision log free in time")
        try:
            return self._connect(until, hasty)
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


class _Watchdog:
    """Shuts the socket of a connection whose call outlives its time (`guard`): the blocked call
    then fails at once (the connection broken), where a frozen server would have held it forever.
    One thread per log, asleep until the next expiry."""

    def __init__(self):
        self._armed: dict[int, tuple[float, psycopg.Connection, list[bool]]] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextlib.contextmanager
    def guard(self, conn: psycopg.Connection, until: float) -> Iterator[list[bool]]:
        """Within the block, `conn` is cut at `until` (time.monotonic()); the list yielded holds
        True once it has been."""
        cut: list[bool] = []
        with self._cond:
            self._armed[id(conn)] = (until, conn, cut)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="decision-log-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
        try:
            yield cut
        finally:
            with self._cond:  # disarmed before the connection can go back to the pool
                self._armed.pop(id(conn), None)

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                for key, (until, conn, cut) in list(self._armed.items()):
                    if until <= now:
                        del self._armed[key]
                        cut.append(True)
                        _shut(conn)
                nearest = min((until for until, _, _ in self._armed.values()), default=None)
                self._cond.wait(None if nearest is None else max(0.0, nearest - now))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()


def _shut(conn: psycopg.Connection) -> None:
    """Shut the connection's socket (a duplicate of its descriptor: libpq still owns and closes its own)."""
    try:
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
    except (OSError, psycopg.Error):
        return  # already closed
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PostgresDecisionLog(DecisionLog):
    def __init__(self, pool: _Pool, where: str, keys: list[bytes]):
        super().__init__(keys, where)
        self._pool = pool
        self._watchdog = _Watchdog()

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

    def _call(self, what: str, work: Callable[[psycopg.Connection, int], T], deadline: float | None,
              transaction: bool = False) -> T:
        """`work(connection, attempt)` on a pooled connection (in a transaction if `transaction`), done by `deadline` or
        within the session's statement_timeout; if that connection turns out broken, once more on a
        new one. DecisionLogUnavailable if the database fails or does not answer in time."""
        for attempt in (1, 2):
            with self._pool.connection(deadline, hasty=not self.ready) as conn:
                cap = self._pool.statement_timeout
                now = time.monotonic()
                tight = deadline is not None and deadline - now < cap
                # The watchdog only for a server that does not answer: its own timeout fires first.
                until = deadline if tight else now + min(cap, 3600) + WATCHDOG_GRACE
                if until - now <= 0:
                    raise DecisionLogUnavailable(f"{what}: no time left before the deadline")
                try:
                    with self._watchdog.guard(conn, until) as cut:
                        if not (tight or transaction):
                            return work(conn, attempt)
                        with conn.transaction():
                            if tight:
                                conn.execute("SELECT set_config('statement_timeout', %s, true)",
                                             (f"{max(1, int((until - time.monotonic() - WATCHDOG_GRACE) * 1000))}ms",))
                            return work(conn, attempt)
                except psycopg.Error as exc:
                    if cut:  # the server did not answer in time: a new connection would not either
                        raise DecisionLogUnavailable(f"{what}: the database did not answer in time") from None
                    if conn.broken and attempt == 1:
                        log.warning("decision log connection lost (%s): reconnecting to %s", _first_line(exc),
                                    self.where)
                        self._pool.discard_idle()
                        continue
                    raise (DecisionLogError if isinstance(exc, psycopg.IntegrityError) else DecisionLogUnavailable)(
                        f"{what}: {_first_line(exc)}") from None
        raise AssertionError("unreachable")

    def _insert(self, rows: list[SealedRow], deadline: float | None) -> None:
        insert = (f"INSERT INTO decisions ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})")
        first = rows[0]

        def work(conn: psycopg.Connection, attempt: int) -> None:
            # A retry after a lost acknowledgement finds the rows its first try committed (all or none).
            if attempt > 1 and conn.execute("SELECT 1 FROM decisions WHERE decision_id = %s AND nonce = %s"
                                                  " AND sealed = %s", (first.decision_id, first.nonce, first.sealed)
                                                  ).fetchone():
                return
            with conn.cursor() as cursor:
                cursor.executemany(insert, [row.values() for row in rows])

        self._call("the decision could not be recorded", work, deadline, transaction=True)

    def _select(self, decision_id: str, deadline: float | None) -> SealedRow | None:
        row = self._call("the decision log could not be read", lambda conn, _: conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM decisions WHERE decision_id = %s", (decision_id,)).fetchone(),
            deadline)
        return None if row is None else SealedRow(*row)  # decided_at a datetime: its instant is what is bound

    def check(self, timeout: float) -> None:
        """A connection, and the lock an insert takes (ROW EXCLUSIVE), within `timeout`: fails on a
        server down, frozen or refusing us, or a table locked against writers."""
        self._call("the decision log could not be checked",
                   lambda conn, _: conn.execute("LOCK TABLE decisions IN ROW EXCLUSIVE MODE"),
                   time.monotonic() + timeout, transaction=True)

    def _newest_key_id(self) -> str | None:
        row = self._call("the decision log could not be read", lambda conn, _: conn.execute(
            "SELECT key_id FROM decisions ORDER BY decided_at DESC LIMIT 1").fetchone(), None)
        return row[0] if row else None

    def decided_under(self, policy: str, version: str) -> list[tuple[str, str]]:
        return self._call("the decision log could not be read", lambda conn, _: [tuple(r) for r in conn.execute(
            "SELECT decision_id, content_hash FROM decisions WHERE policy = %s AND version = %s"
            " ORDER BY decided_at, decision_id", (policy, version)).fetchall()], None)

    def count(self) -> int:
        return self._call("the decision log could not be read",
                          lambda conn, _: conn.execute("SELECT count(*) FROM decisions").fetchone()[0], None)

    def close(self) -> None:
        self._stop_watching()
        self._watchdog.close()
        self._pool.close()


def _prepare_schema(conn: psycopg.Connection, where: str, create: bool) -> None:
    """Make the schema if absent (`create`), migrate an older one, refuse a newer one or a foreign table."""
    with conn.transaction():
        for name in SESSION_DEFAULTS:  # waiting for another replica's migration, or migrating, may take minutes
            conn.execute("SELECT set_config(%s, '0', true)", (name,))
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
