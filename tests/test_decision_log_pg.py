"""The decision log in PostgreSQL (`--decision-log postgresql://...`): the SQLite log's behaviours
against a real server — sealed rows, clear columns, keys and rotation, integrity, replay, the
service end to end across a restart — and what only a server has: several replicas on one log,
a connection or the whole server lost and back.

The server: $CMS_POLICY_TEST_PG_DSN if set (`.ci/run` starts a throwaway cluster and sets it, with
$CMS_POLICY_TEST_PG_DATA so the tests may stop and start it), else a throwaway cluster started
here if PostgreSQL is installed (`initdb`), else the tests are skipped — except under CI, where
they fail: CI must test the PostgreSQL log. Each test gets its own schema (`search_path` in the URL).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cms_policy.v1 import policy_pb2 as pb
from cms_policy.v1 import policy_pb2_grpc
from rules.audit import log as audit_log
from rules.audit.errors import DecisionLogError, DecisionLogIntegrityError, DecisionLogKeyError
from rules.audit.factory import open_log
from rules.audit.keys import key_id, new_key_text
from rules.audit.postgres import PostgresDecisionLog, redact
from rules.decide.replay import replay
from rules.engine.decision import DecisionRequest

from . import pgcluster
from .conftest import ROOT, start_service, stop_service
from .test_decision_log import (
    ALTERABLE,
    CLEAR_COLUMNS,
    FEE_FACTS,
    SCHEMA_2_COLUMNS,
    STORED_COLUMNS,
    UNREPORTED,
    _altered_clear_values,
    _fee_request,
    _format_1_row,
    _golden_requests,
    _pb_request,
    _schema_2_row,
)

# Calls under each chaos (a locked table, a frozen server): from more client threads than the
# service's 8 workers. CMS_CHAOS_CALLS=N for a longer run.
CHAOS_CALLS = int(os.environ.get("CMS_CHAOS_CALLS", "0") or 0) or 16
CHAOS_DEADLINE = 3.0  # seconds each call allows: over libpq's 2 s least connect timeout
SECRETS = (b"police", b"abuse", b"victim", b"1985-07-20", b"reported", b"applicant_date_of_birth")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@dataclass
class Server:
    dsn: str
    cluster: pgcluster.Cluster | None  # set when the tests may stop and start the server

    def stoppable(self) -> pgcluster.Cluster:
        if self.cluster is None:
            pytest.skip(f"the PostgreSQL server of ${pgcluster.DSN_ENV} cannot be stopped from here "
                        f"(set ${pgcluster.DATA_ENV} to its data directory)")
        return self.cluster


@pytest.fixture(scope="session")
def pg_server():
    dsn = os.environ.get(pgcluster.DSN_ENV)
    if dsn:
        data = os.environ.get(pgcluster.DATA_ENV)
        yield Server(dsn, pgcluster.Cluster.attach(data) if data else None)
        return
    why = None
    if pgcluster.bindir() is None:
        why = f"PostgreSQL is not installed (no initdb) and ${pgcluster.DSN_ENV} is not set"
    else:
        try:
            cluster, dsn = pgcluster.create()
        except pgcluster.ClusterError as exc:
            why = f"a throwaway PostgreSQL cluster could not be started: {exc}"
    if why:
        if _in_ci():
            pytest.fail(f"CI must test the PostgreSQL decision log: {why}", pytrace=False)
        pytest.skip(f"{why}: the PostgreSQL decision log is not tested")
    try:
        yield Server(dsn, cluster)
    finally:
        cluster.destroy()


def _with_options(dsn: str, options: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    query = urllib.parse.parse_qsl(parts.query)
    query = [(k, v) for k, v in query if k != "options"] + [("options", options)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote)))


@pytest.fixture
def pg_url(pg_server):
    """A URL whose search_path is a new, empty schema (dropped afterwards)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    yield _with_options(pg_server.dsn, f"-csearch_path={schema}")
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def sql(pg_url):
    """A separate connection into the test's schema: what anyone with database access sees."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


def _key() -> bytes:
    return os.urandom(32)


def _columns(sql: psycopg.Connection) -> list[str]:
    return [name for name, in sql.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'decisions'::regclass"
                                          " AND attnum > 0 AND NOT attisdropped ORDER BY attnum")]


# --- the log on its own ------------------------------------------------------------------

def test_the_backend_is_chosen_by_the_target(pg_url, tmp_path):
    with open_log(pg_url, [_key()]) as log:
        assert isinstance(log, PostgresDecisionLog)
    with pytest.raises(DecisionLogError, match="as a string"):  # Path() collapses "//": not a file name
        open_log(Path(pg_url), [_key()])
    with open_log(pg_url.replace("postgresql://", "postgres://", 1), [_key()]) as log:
        assert isinstance(log, PostgresDecisionLog)
    with open_log(str(tmp_path / "log.sqlite3"), [_key()]) as log:
        assert not isinstance(log, PostgresDecisionLog) and log.path == tmp_path / "log.sqlite3"


def test_record_then_get_gives_back_request_decision_and_bundle_hash(pg_url, sql, evaluator):
    request = _fee_request()
    decision = evaluator.decide(request)
    with open_log(pg_url, [_key()]) as log:
        log.record(request, decision)
        # Committed before record returned: another connection sees it at once.
        assert sql.execute("SELECT count(*) FROM decisions").fetchone()[0] == 1
        logged = log.get(decision.decision_id)
        assert log.get(uuid.uuid4().hex) is None
        assert log.count() == 1
    assert logged.request == request and logged.request.facts == FEE_FACTS
    assert logged.decision == decision
    assert logged.bundle_hash == evaluator.bundle.bundle_hash


def test_the_clear_columns_and_the_schema_version(pg_url, sql, evaluator):
    request = _fee_request(shadow_version="review-2023")
    decision = evaluator.decide(request)
    with open_log(pg_url, [key := _key()]) as log:
        log.record(request, decision)
    assert _columns(sql) == STORED_COLUMNS
    row = sql.execute(f"SELECT {', '.join(CLEAR_COLUMNS)} FROM decisions").fetchone()
    assert row == (decision.decision_id, dt.datetime.fromisoformat(decision.decided_at), "application_fee", "2017",
                   decision.policy.content_hash, evaluator.bundle.bundle_hash, "review-2023", key_id(key))
    assert sql.execute("SELECT version FROM decision_log_schema").fetchall() == [(4,)]
    assert "sealed with AES-256-GCM" in sql.execute("SELECT obj_description('decisions'::regclass)").fetchone()[0]


def test_no_sensitive_fact_or_text_is_stored_in_clear(pg_url, sql, pg_server, evaluator):
    with open_log(pg_url, [_key()]) as log:
        for _ in range(3):
            request = _fee_request(shadow_version="review-2023")
            log.record(request, evaluator.decide(request))
    rows = [r[0].encode() for r in sql.execute("SELECT d::text FROM decisions d")]  # every column, as text
    assert len(rows) == 3
    for raw in rows:
        assert b"application_fee" in raw and b"WAIVED" not in raw  # the policy is in the clear, the outcome not
        for secret in SECRETS:
            assert secret not in raw, secret
    if pg_server.cluster is None or not os.access(pg_server.cluster.data, os.R_OK):
        return
    # On disk too: the table's file (after a checkpoint) and the write-ahead log.
    table = sql.execute("SELECT pg_relation_filepath('decisions')").fetchone()[0]
    sql.execute("CHECKPOINT")
    data = pg_server.cluster.data
    raw = (data / table).read_bytes()
    assert b"application_fee" in raw and b"WAIVED" not in raw
    wal = b"".join(p.read_bytes() for p in (data / "pg_wal").iterdir() if p.is_file())
    assert b"application_fee" in wal
    for secret in (b"1985-07-20", b"applicant_date_of_birth", b"abuse_reported_to", b"at_application"):
        assert secret not in raw and secret not in wal, secret


def test_the_wrong_key_is_refused_with_a_clear_error(pg_url, evaluator):
    with open_log(pg_url, [_key()]) as log:
        log.record(_fee_request(), evaluator.decide(_fee_request()))
    with pytest.raises(DecisionLogKeyError, match="wrong key"):
        open_log(pg_url, [_key()])


def test_keys_rotate_and_a_row_without_its_key_says_so(pg_url, evaluator):
    old, new = _key(), _key()
    first = evaluator.decide(_fee_request())
    with open_log(pg_url, [old]) as log:
        log.record(_fee_request(), first)
    with open_log(pg_url, [new, old]) as log:
        second = evaluator.decide(_fee_request())
        log.record(_fee_request(), second)
        assert log.get(first.decision_id).decision == first
    with open_log(pg_url, [new]) as log:
        assert log.get(second.decision_id).decision == second
        with pytest.raises(DecisionLogKeyError, match="not given"):
            log.get(first.decision_id)


def test_an_altered_or_moved_sealed_row_fails_its_integrity_check(pg_url, sql, evaluator):
    a, b, c = (evaluator.decide(_fee_request()) for _ in range(3))
    with open_log(pg_url, [key := _key()]) as log:
        for decision in (a, b, c):
            log.record(_fee_request(), decision)
    sql.execute("UPDATE decisions SET nonce = (SELECT nonce FROM decisions WHERE decision_id = %s),"
                " sealed = (SELECT sealed FROM decisions WHERE decision_id = %s) WHERE decision_id = %s",
                (a.decision_id, a.decision_id, b.decision_id))
    # Change one byte (to another value: setting it to a fixed one left it as it was 1 time in 256).
    sql.execute("UPDATE decisions SET sealed = set_byte(sealed, 19, (get_byte(sealed, 19) + 1) %% 256)"
                " WHERE decision_id = %s", (c.decision_id,))
    with open_log(pg_url, [key]) as log:
        assert log.get(a.decision_id).decision == a
        for altered in (b, c):
            with pytest.raises(DecisionLogIntegrityError):
                log.get(altered.decision_id)


def test_every_golden_case_replays_identically_from_the_log(pg_url, evaluator):
    from rules.engine.decision import DecisionRequest
    with open_log(pg_url, [key := _key()]) as log:
        ids = []
        for req in _golden_requests():
            request = DecisionRequest.model_validate(req)
            decision = evaluator.decide(request)
            log.record(request, decision)
            ids.append(decision.decision_id)
    with open_log(pg_url, [key]) as log:
        for decision_id in ids:
            result = replay(evaluator, log.get(decision_id))
            assert result.identical, (decision_id, result.differences)


def test_keys_come_from_a_secret_never_from_a_file_beside_the_url(pg_url, tmp_path, evaluator, monkeypatch):
    monkeypatch.delenv("CMS_POLICY_LOG_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DecisionLogKeyError, match="CMS_POLICY_LOG_KEY") as caught:
        open_log(pg_url)
    assert "--decision-log-key-file" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # no development key made anywhere
    text = new_key_text()
    monkeypatch.setenv("CMS_POLICY_LOG_KEY", text)
    decision = evaluator.decide(_fee_request())
    with open_log(pg_url) as log:
        log.record(_fee_request(), decision)
    monkeypatch.delenv("CMS_POLICY_LOG_KEY")
    (tmp_path / "secret").write_text(f"# current key\n{text}\n")
    with open_log(pg_url, key_file=tmp_path / "secret") as log:
        assert log.get(decision.decision_id).decision == decision


def test_the_schema_is_made_only_when_asked_and_a_strange_one_is_refused(pg_url, sql):
    with pytest.raises(DecisionLogError, match="no decision log in"):
        open_log(pg_url, [_key()], create=False)
    assert sql.execute("SELECT to_regclass('decisions')").fetchone()[0] is None
    with open_log(pg_url, [_key()]):
        pass
    sql.execute("UPDATE decision_log_schema SET version = 99")
    with pytest.raises(DecisionLogError, match="schema 99, this code reads 4"):
        open_log(pg_url, [_key()])
    sql.execute("DROP TABLE decision_log_schema")
    with pytest.raises(DecisionLogError, match="not a decision log"):
        open_log(pg_url, [_key()])


def test_a_schema_2_log_is_migrated_in_place_and_its_clear_outcomes_leave_the_table(pg_url, sql, pg_server,
                                                                                       evaluator):
    key = _key()
    requests = [_fee_request(), DecisionRequest(policy="application_fee", as_at="2019-03-15", facts=UNREPORTED,
                                                shadow_version="review-2023")]
    decisions = [evaluator.decide(r) for r in requests]
    for statement in [  # the schema as the PostgreSQL log first made it
            """CREATE TABLE decisions (decision_id text PRIMARY KEY, decided_at timestamptz NOT NULL,
               policy text NOT NULL, version text NOT NULL, content_hash text NOT NULL, bundle_hash text NOT NULL,
               outcome text NOT NULL, shadow_version text, shadow_outcome text, key_id text NOT NULL,
               nonce bytea NOT NULL, sealed bytea NOT NULL)""",
            "CREATE INDEX decisions_by_time ON decisions (decided_at)",
            "CREATE TABLE decision_log_schema (version integer NOT NULL)",
            "INSERT INTO decision_log_schema VALUES (2)"]:
        sql.execute(statement)
    with sql.cursor() as cursor:
        cursor.executemany(f"INSERT INTO decisions ({', '.join(SCHEMA_2_COLUMNS)}) VALUES "
                           f"({', '.join(['%s'] * len(SCHEMA_2_COLUMNS))})",
                           [_schema_2_row(key, r, d) for r, d in zip(requests, decisions)])
    old_lengths = sql.execute("SELECT decision_id, length(sealed) FROM decisions ORDER BY decided_at").fetchall()
    with open_log(pg_url, [key]) as log:
        for decision in decisions:
            logged = log.get(decision.decision_id)
            assert logged.decision == decision and replay(evaluator, logged).identical
        log.record(_fee_request(), evaluator.decide(_fee_request()))
        assert log.count() == 3
    assert sql.execute("SELECT version FROM decision_log_schema").fetchall() == [(4,)]
    assert _columns(sql) == STORED_COLUMNS
    assert sql.execute("SELECT decision_id, length(sealed) FROM decisions ORDER BY decided_at LIMIT 2").fetchall() == \
        old_lengths
    if pg_server.cluster is None or not os.access(pg_server.cluster.data, os.R_OK):
        return
    # A dropped column stays in the rows on disk until they are rewritten: the migration rewrote them.
    table = sql.execute("SELECT pg_relation_filepath('decisions')").fetchone()[0]
    sql.execute("CHECKPOINT")
    raw = (pg_server.cluster.data / table).read_bytes()
    assert b"application_fee" in raw
    for outcome in (b"WAIVED", b"FEE_PAYABLE"):
        assert outcome not in raw, outcome


def test_the_password_is_never_in_messages(pg_server):
    parts = urllib.parse.urlsplit(pg_server.dsn)
    secret = "s3cret-Pa55"
    url = urllib.parse.urlunsplit(parts._replace(netloc=f"someone:{secret}@127.0.0.1:1", path="/nowhere"))
    assert redact(url) == "postgresql://someone:***@127.0.0.1:1/nowhere"
    assert redact("postgresql://h/db?password=x&sslmode=require") == "postgresql://h/db?password=***&sslmode=require"
    assert redact("postgres://u@h/db?options=-csearch_path%3Da+b") == "postgres://u@h/db?options=-csearch_path%3Da+b"
    with pytest.raises(DecisionLogError) as caught:  # port 1: nothing listens
        open_log(url, [_key()])
    assert secret not in str(caught.value) and "someone:***@127.0.0.1:1" in str(caught.value)


def test_synchronous_commit_off_is_turned_on(pg_url, evaluator):
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(pg_url).query))
    url = _with_options(pg_url, query["options"] + " -csynchronous_commit=off")
    with open_log(url, [_key()]) as log:
        log.record(_fee_request(), evaluator.decide(_fee_request()))
        with log._pool.connection() as conn:
            assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"


# --- several replicas on one log -------------------------------------------------------------

def test_replicas_start_together_and_record_concurrently(pg_url, evaluator):
    key = _key()
    logs, errors = [], []

    def start():
        try:
            logs.append(open_log(pg_url, [key]))
        except Exception as exc:
            errors.append(exc)

    starters = [threading.Thread(target=start) for _ in range(4)]  # racing to make the schema
    for t in starters:
        t.start()
    for t in starters:
        t.join()
    assert not errors and len(logs) == 4
    decisions = [evaluator.decide(_fee_request()) for _ in range(40)]

    def write(i):
        try:
            for decision in decisions[i::8]:
                logs[i % 4].record(_fee_request(), decision)
        except Exception as exc:
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    assert not errors
    assert all(log.count() == 40 for log in logs)
    for decision in decisions[:5]:
        assert logs[3].get(decision.decision_id).decision == decision
    for log in logs:
        log.close()


# --- a connection or the server lost, and back ------------------------------------------------

def _terminate_log_connections(sql) -> int:
    return sql.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                       " WHERE application_name = 'cms-policy-decisions' AND pid <> pg_backend_pid()"
                       " AND datname = current_database()").fetchone()[0]


def test_a_terminated_connection_is_replaced_without_losing_a_decision(pg_url, sql, evaluator, caplog):
    with open_log(pg_url, [_key()]) as log:
        log.record(_fee_request(), evaluator.decide(_fee_request()))
        assert _terminate_log_connections(sql) >= 1
        decision = evaluator.decide(_fee_request())
        log.record(_fee_request(), decision)  # the pooled connection is dead: a new one records it
        assert "decision log connection lost" in caplog.text
        assert log.get(decision.decision_id).decision == decision
        assert log.count() == 2


def test_a_retry_after_a_lost_acknowledgement_finds_its_own_row(pg_url, sql, evaluator):
    """The first try's commit landed but its answer was lost: the retry meets its own row (same
    nonce and sealed bytes) and succeeds; a different row under the same id is an error."""
    from rules.audit.sealer import COLUMNS
    with open_log(pg_url, [_key()]) as log:
        log.count()  # a pooled connection, to be terminated
        decision = evaluator.decide(_fee_request())
        row = log._sealer.seal(_fee_request(), decision)
        sql.execute(f"INSERT INTO decisions ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})",
                    row.values())  # as if the lost first try had committed
        assert _terminate_log_connections(sql) == 1
        log._insert([row], None)  # first try: the connection is dead; the retry finds the row it would have written
        assert log.count() == 1 and log.get(decision.decision_id).decision == decision
        with pytest.raises(DecisionLogError, match="could not be recorded: duplicate key"):
            log.record(_fee_request(), decision)  # sealed again: another nonce, so not our row


def test_a_closed_log_refuses_to_record(pg_url, evaluator):
    log = open_log(pg_url, [_key()])
    log.close()
    with pytest.raises(DecisionLogError, match="closed"):
        log.record(_fee_request(), evaluator.decide(_fee_request()))


def test_with_the_server_down_record_fails_and_recovers_when_it_is_back(pg_url, pg_server, evaluator):
    cluster = pg_server.stoppable()
    with open_log(pg_url, [_key()]) as log:
        before = evaluator.decide(_fee_request())
        log.record(_fee_request(), before)
        cluster.stop()
        try:
            with pytest.raises(DecisionLogError, match=r"could not be recorded|cannot connect"):
                log.record(_fee_request(), evaluator.decide(_fee_request()))
            with pytest.raises(DecisionLogError):
                log.get(before.decision_id)
        finally:
            cluster.start()
        after = evaluator.decide(_fee_request())
        log.record(_fee_request(), after)
        assert log.get(before.decision_id).decision == before
        assert log.count() == 2


# --- the service, end to end -------------------------------------------------------------------

def _decide_fee(stub) -> pb.DecideResponse:
    return stub.Decide(_pb_request({"policy": "application_fee", "as_at": "2019-03-15", "facts": FEE_FACTS},
                                   subject=pb.AUDIENCE_RECEIVING_PARENT, requested_by=pb.AUDIENCE_CASEWORKER))


def test_the_service_records_in_postgresql_and_replays_after_a_restart(pg_url, pg_server, tmp_path, monkeypatch):
    monkeypatch.setenv("CMS_POLICY_LOG_KEY", new_key_text())
    proc, channel, service_log = start_service(tmp_path, "--decision-log", pg_url)
    try:
        decided = _decide_fee(policy_pb2_grpc.PolicyDecisionServiceStub(channel))
    finally:
        proc.kill()  # no clean shutdown: the row must already be committed
        proc.wait()
        channel.close()
    assert not (tmp_path / "decisions.sqlite3").exists()
    password = urllib.parse.urlsplit(pg_server.dsn).password
    assert password and password not in service_log.read_text()
    assert redact(pg_url) in service_log.read_text()
    proc, channel, _ = start_service(tmp_path, "--decision-log", pg_url)
    try:
        stub = policy_pb2_grpc.PolicyDecisionServiceStub(channel)
        logged = stub.GetDecision(pb.GetDecisionRequest(decision_id=decided.decision_id))
        replayed = stub.ReplayDecision(pb.ReplayDecisionRequest(decision_id=decided.decision_id))
    finally:
        stop_service(proc, channel)
    assert logged.decision == decided and logged.request.facts["abuse_reported_to"] == FEE_FACTS["abuse_reported_to"]
    assert replayed.identical and not replayed.differences and replayed.original == decided

    explain = subprocess.run([sys.executable, "-m", "rules", "explain", decided.decision_id, "--decision-log", pg_url,
                              "--replay"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert explain.returncode == 0, explain.stderr
    assert f"Decision {decided.decision_id}" in explain.stdout and "Replay: identical" in explain.stdout
    assert "abuse_reported_to: police" in explain.stdout
    missing = subprocess.run([sys.executable, "-m", "rules", "explain", "0" * 32, "--decision-log", pg_url],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "no decision with id" in missing.stderr
    assert password not in missing.stderr


def test_the_service_takes_the_log_url_from_the_environment_and_needs_a_key(pg_url, tmp_path, monkeypatch):
    monkeypatch.delenv("CMS_POLICY_LOG_KEY", raising=False)
    result = subprocess.run([sys.executable, "-m", "service", "--port", "0", "--host", "127.0.0.1"], cwd=tmp_path,
                            env={**os.environ, "CMS_POLICY_DECISION_LOG": pg_url,
                                 "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "decision log unusable" in result.stderr and "CMS_POLICY_LOG_KEY" in result.stderr
    assert not (tmp_path / "var").exists()


def test_the_service_answers_unavailable_while_the_database_is_down_and_recovers(pg_url, pg_server, tmp_path,
                                                                                 monkeypatch):
    cluster = pg_server.stoppable()
    monkeypatch.setenv("CMS_POLICY_LOG_KEY", new_key_text())
    proc, channel, _ = start_service(tmp_path, "--decision-log", pg_url)
    try:
        stub = policy_pb2_grpc.PolicyDecisionServiceStub(channel)
        before = _decide_fee(stub)
        cluster.stop()
        try:
            with pytest.raises(grpc.RpcError) as caught:
                _decide_fee(stub)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "could not be recorded" in caught.value.details()
            with pytest.raises(grpc.RpcError) as caught:
                stub.GetDecision(pb.GetDecisionRequest(decision_id=before.decision_id))
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            cluster.start()
        after = _decide_fee(stub)  # the same process, new connections
        assert stub.GetDecision(pb.GetDecisionRequest(decision_id=before.decision_id)).decision == before
        assert stub.GetDecision(pb.GetDecisionRequest(decision_id=after.decision_id)).decision == after
    finally:
        stop_service(proc, channel)


def test_decisions_of_a_version_are_listed_from_the_clear_columns_for_remediation(pg_url, evaluator):
    from rules.authoring.remediate import remediate
    decided = [evaluator.decide(_fee_request()) for _ in range(3)]
    with open_log(pg_url, [_key()]) as log:
        for decision in decided:
            log.record(_fee_request(), decision)
        listed = log.decided_under("application_fee", decided[0].policy.version)
        assert sorted(listed) == sorted((d.decision_id, d.policy.content_hash) for d in decided)
        assert log.decided_under("application_fee", "1999") == []
        report = remediate(log, evaluator, "application_fee", decided[0].policy.version)
    assert report.looked_at == 0 and not report.changes  # all made under the current revision


# --- every clear column is bound to the seal (issue 27 item 6) -----------------------------------

@pytest.mark.parametrize("column", ALTERABLE)
def test_a_changed_clear_column_fails_the_integrity_check(pg_url, sql, evaluator, column):
    decision, untouched = evaluator.decide(_fee_request()), evaluator.decide(_fee_request())
    with open_log(pg_url, [key := _key(), other := _key()]) as log:
        log.record_batch([(_fee_request(), decision), (_fee_request(), untouched)])
        sql.execute(f"UPDATE decisions SET {column} = %s WHERE decision_id = %s",
                    (_altered_clear_values(decision, other)[column], decision.decision_id))
        with pytest.raises(DecisionLogIntegrityError, match=decision.decision_id):
            log.get(decision.decision_id)
        assert log.get(untouched.decision_id).decision == untouched
    # The time is bound as its instant: the session's time zone does not change it.
    with open_log(_with_options(pg_url, _options(pg_url) + " -ctimezone=Asia/Kolkata"), [key, other]) as log:
        assert log.get(untouched.decision_id).decision == untouched


def _options(url: str) -> str:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["options"]


def test_a_schema_3_log_is_migrated_and_its_rows_still_open(pg_url, sql, evaluator):
    key = _key()
    old = [evaluator.decide(_fee_request()) for _ in range(2)]
    for statement in [  # the schema as schema 3 made it
            """CREATE TABLE decisions (decision_id text PRIMARY KEY, decided_at timestamptz NOT NULL,
               policy text NOT NULL, version text NOT NULL, content_hash text NOT NULL, bundle_hash text NOT NULL,
               shadow_version text, key_id text NOT NULL, nonce bytea NOT NULL, sealed bytea NOT NULL)""",
            "CREATE INDEX decisions_by_time ON decisions (decided_at)",
            "CREATE TABLE decision_log_schema (version integer NOT NULL)",
            "INSERT INTO decision_log_schema VALUES (3)"]:
        sql.execute(statement)
    with sql.cursor() as cursor:
        cursor.executemany(f"INSERT INTO decisions ({', '.join(CLEAR_COLUMNS)}, nonce, sealed) VALUES "
                           f"({', '.join(['%s'] * (len(CLEAR_COLUMNS) + 2))})",
                           [_format_1_row(key, _fee_request(), d) for d in old])
    new = evaluator.decide(_fee_request())
    with open_log(pg_url, [key]) as log:
        assert [log.get(d.decision_id).decision for d in old] == old
        log.record(_fee_request(), new)
        assert sql.execute("SELECT version FROM decision_log_schema").fetchall() == [(4,)]
        assert _columns(sql) == STORED_COLUMNS
        assert sorted(sql.execute("SELECT decision_id, seal_format FROM decisions").fetchall()) == \
            sorted([(old[0].decision_id, 1), (old[1].decision_id, 1), (new.decision_id, 2)])
        sql.execute("UPDATE decisions SET bundle_hash = %s", ("0" * 64,))
        assert log.get(old[0].decision_id).bundle_hash == "0" * 64  # format 1: only the id is bound
        with pytest.raises(DecisionLogIntegrityError):
            log.get(new.decision_id)


def test_get_decision_of_a_row_with_a_changed_clear_column_is_data_loss(pg_url, sql, bundle):
    from service.reload import LiveBundle
    from service.server import build_server
    with open_log(pg_url, [_key()]) as log:
        server, port = build_server(LiveBundle(bundle), "127.0.0.1:0", decision_log=log)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = policy_pb2_grpc.PolicyDecisionServiceStub(channel)
                decided = _decide_fee(stub)
                sql.execute("UPDATE decisions SET decided_at = decided_at + interval '1 hour'")
                with pytest.raises(grpc.RpcError) as caught:
                    stub.GetDecision(pb.GetDecisionRequest(decision_id=decided.decision_id))
        finally:
            server.stop(None).wait()
    assert caught.value.code() == grpc.StatusCode.DATA_LOSS


# --- a database stalled, not down (issue 27 item 5) ---------------------------------------------

@pytest.fixture
def served(pg_url, bundle, monkeypatch):
    """An in-process server on a PostgreSQL log: (decision stub, health stub, log)."""
    from service.reload import LiveBundle
    from service.server import build_server
    monkeypatch.setattr(audit_log, "CHECK_EVERY", (0.2, 10.0), raising=False)  # back within the test's patience
    log = open_log(pg_url, [_key()])
    server, port = build_server(LiveBundle(bundle), "127.0.0.1:0", decision_log=log)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield policy_pb2_grpc.PolicyDecisionServiceStub(channel), health_pb2_grpc.HealthStub(channel), log
    channel.close()
    server.stop(None).wait()
    log.close()


SERVICE = "cms.policy.v1.PolicyDecisionService"


def _health(health, service: str) -> str:
    """The status, as the probe asks it: answered within 1 s however the database is."""
    status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0).status
    return health_pb2.HealthCheckResponse.ServingStatus.Name(status)


def _eventually(what, expected: str, within: float) -> None:
    end = time.monotonic() + within
    while (found := what()) != expected:
        assert time.monotonic() < end, f"still {found}, not {expected}, after {within}s"
        time.sleep(0.05)


def _decide_many(stub, calls: int, timeout: float) -> list[tuple[grpc.StatusCode, float]]:
    """`calls` Decides at once, from as many threads: each one's status and seconds."""
    results = []

    def one():
        started = time.monotonic()
        try:
            stub.Decide(_pb_request({"policy": "application_fee", "as_at": "2019-03-15", "facts": FEE_FACTS}),
                        timeout=timeout)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
        results.append((code, time.monotonic() - started))

    threads = [threading.Thread(target=one) for _ in range(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _get(stub, decision_id: str, timeout: float | None = None):
    return stub.GetDecision(pb.GetDecisionRequest(decision_id=decision_id), timeout=timeout).decision


def _unavailable_within_the_deadline(results) -> None:
    """UNAVAILABLE from the service, never the client's own DEADLINE_EXCEEDED (the call hung to it)."""
    assert sorted(code.name for code, _ in results) == ["UNAVAILABLE"] * len(results), results
    assert max(seconds for _, seconds in results) < CHAOS_DEADLINE


def test_a_locked_table_gives_unavailable_within_the_deadline_and_readiness_follows(served, pg_url):
    """Issue 27 item 5: with the table locked, calls hung until the client's deadline (no statement
    or lock timeout) and health stayed SERVING."""
    stub, health, log = served
    before = _decide_fee(stub)
    assert _health(health, SERVICE) == "SERVING"
    with psycopg.connect(pg_url) as locker:  # a transaction holding the lock until it ends
        locker.execute("LOCK TABLE decisions IN ACCESS EXCLUSIVE MODE")
        _unavailable_within_the_deadline(_decide_many(stub, CHAOS_CALLS, CHAOS_DEADLINE))
        with pytest.raises(grpc.RpcError) as caught:  # reading waits on the lock too
            _get(stub, before.decision_id, timeout=CHAOS_DEADLINE)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert _health(health, SERVICE) == "NOT_SERVING"  # not ready: keep traffic away
        assert _health(health, "") == "SERVING"  # but alive: a restart would mend nothing
        locker.rollback()
    _eventually(lambda: _health(health, SERVICE), "SERVING", within=audit_log.CHECK_TIMEOUT + 2)
    after = [_decide_fee(stub) for _ in range(3)]
    assert [_get(stub, d.decision_id) for d in [before, *after]] == [before, *after]
    assert log.count() == 4


def _cluster_pids(cluster: pgcluster.Cluster) -> list[int]:
    """The postmaster and every process it started."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    children = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(proc.name))
        except (OSError, IndexError, ValueError):
            pass  # gone meanwhile
    return [postmaster, *children]


@contextlib.contextmanager
def _frozen(cluster: pgcluster.Cluster):
    """The whole server stopped (SIGSTOP), not down: its kernel still accepts connections and
    acknowledges what is sent, so nothing on the client's side notices."""
    pids = _cluster_pids(cluster)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def test_a_frozen_server_gives_unavailable_within_the_deadline_and_nothing_hangs(served, pg_server):
    """Issue 27 item 5: with the server frozen, calls hung until the client's deadline and filled the
    8 worker threads. Now each fails in time, health answers throughout, and afterwards decisions
    record and read back."""
    cluster = pg_server.stoppable()
    stub, health, log = served
    before = _decide_fee(stub)
    with _frozen(cluster):
        _unavailable_within_the_deadline(_decide_many(stub, CHAOS_CALLS, CHAOS_DEADLINE))
        with pytest.raises(grpc.RpcError) as caught:
            _get(stub, before.decision_id, timeout=CHAOS_DEADLINE)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        _eventually(lambda: _health(health, SERVICE), "NOT_SERVING", within=audit_log.CHECK_TIMEOUT + 1)
        assert _health(health, "") == "SERVING"
        _unavailable_within_the_deadline(_decide_many(stub, CHAOS_CALLS, CHAOS_DEADLINE))  # known failing: at once
    _eventually(lambda: _health(health, SERVICE), "SERVING", within=audit_log.CHECK_TIMEOUT + 5)
    after = [_decide_fee(stub) for _ in range(CHAOS_CALLS)]
    assert [_get(stub, d.decision_id) for d in [before, *after]] == [before, *after]
    assert log.count() == 1 + CHAOS_CALLS
