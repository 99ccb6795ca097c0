"""The decision log: every decision recorded (encrypted, durable) before Decide returns it,
fetched by id, replayed identically (also after the service restarts), and printed for a
reviewer by `python -m rules explain`."""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest
import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf import struct_pb2

from cms_policy.v1 import policy_pb2 as pb
from cms_policy.v1 import policy_pb2_grpc
from rules.audit import sealer
from rules.audit import sqlite as sqlite_log
from rules.audit.errors import DecisionLogError, DecisionLogIntegrityError, DecisionLogKeyError, DecisionLogUnavailable
from rules.audit.factory import open_log
from rules.audit.keys import key_id, new_key_text, parse_keys
from rules.audit.sqlite import SQLiteDecisionLog
from rules.decide.replay import differences, replay
from rules.engine.decision import Audience, DecisionRequest, RequestReason
from service import convert
from service.reload import LiveBundle
from service.server import build_server

from .conftest import ROOT

GOLDEN = ROOT / "tests" / "golden"
# Distinctive, sensitive facts: a victim of abuse who reported it to the police.
FEE_FACTS = {"application_route": "direct_pay", "applicant_in_northern_ireland": False,
             "application_date": "2019-03-15", "applicant_date_of_birth": "1985-07-20",
             "abuse_of_applicant": True, "abuse_reported_to": ["police"], "declaration": "at_application"}

# Abuse disclosed but not reported: the 2017 fee is payable, the review would waive it.
UNREPORTED = {**FEE_FACTS, "abuse_reported_to": [], "legal_warning_before_abuse_question": False}
CLEAR_COLUMNS = ["decision_id", "decided_at", "policy", "version", "content_hash", "bundle_hash", "shadow_version",
                 "key_id"]
STORED_COLUMNS = CLEAR_COLUMNS + ["nonce", "sealed", "seal_format"]
# The table as schema 2 made it: outcome and shadow outcome in the clear.
SCHEMA_2_COLUMNS = CLEAR_COLUMNS[:6] + ["outcome", "shadow_version", "shadow_outcome", "key_id", "nonce", "sealed"]


def _schema_2_row(key: bytes, request: DecisionRequest, decision) -> tuple:
    """A row as schema 2 stored it (in SCHEMA_2_COLUMNS' order): outcomes in the clear, the
    document sealed unpadded."""
    payload = json.dumps({"format": 1, "request": request.model_dump(mode="json"),
                          "decision": decision.model_dump(mode="json")}).encode()
    nonce = os.urandom(12)
    return (decision.decision_id, decision.decided_at, decision.policy.policy, decision.policy.version,
            decision.policy.content_hash, decision.bundle_hash, decision.outcome, request.shadow_version or None,
            decision.shadow.outcome if decision.shadow else None, key_id(key), nonce,
            AESGCM(key).encrypt(nonce, payload, decision.decision_id.encode()))


def _fee_request(**kw) -> DecisionRequest:
    return DecisionRequest(policy="application_fee", as_at="2019-03-15", facts=FEE_FACTS, **kw)


def _key() -> bytes:
    return os.urandom(32)


def _pb_request(req: dict, **kw) -> pb.DecideRequest:
    facts = struct_pb2.Struct()
    facts.update(req.get("facts", {}))
    return pb.DecideRequest(policy=req["policy"], version=str(req.get("version", "")), as_at=str(req.get("as_at", "")),
                            facts=facts, **kw)


def _golden_requests() -> list[dict]:
    """The first golden case of every policy version."""
    cases = []
    for version_dir in sorted(p for p in GOLDEN.glob("*/*") if p.is_dir()):
        first = min(version_dir.glob("*.yaml"), default=None)
        if first is not None:
            cases.append(yaml.safe_load(first.read_text())["request"])
    return cases


# --- the log on its own ------------------------------------------------------------------

def test_record_then_get_gives_back_request_decision_and_bundle_hash(tmp_path, evaluator):
    request = _fee_request(subject=Audience.RECEIVING_PARENT, requested_by=Audience.RECEIVING_PARENT,
                           reason=RequestReason.NEW_APPLICATION)
    decision = evaluator.decide(request)
    with open_log(tmp_path / "log.sqlite3", [_key()]) as log:
        log.record(request, decision)
        logged = log.get(decision.decision_id)
        assert log.get(uuid.uuid4().hex) is None
    assert logged.request == request and logged.request.facts == FEE_FACTS
    assert logged.decision == decision
    assert logged.bundle_hash == evaluator.bundle.bundle_hash


def test_a_process_that_holds_the_file_lock_and_stops_makes_writers_unavailable_not_hang(tmp_path, evaluator):
    """A frozen --workers worker holding `<log>.lock` (issue 27 item 3): the others give up within the
    call's deadline, readiness says so, and writing resumes once the lock is free."""
    import fcntl
    import threading
    import time
    request = _fee_request()
    decision = evaluator.decide(request)
    with open_log(tmp_path / "log.sqlite3", [_key()]) as log:
        frozen = os.open(tmp_path / "log.sqlite3.lock", os.O_RDWR)  # another open file: another holder
        fcntl.flock(frozen, fcntl.LOCK_EX)
        outcome: list = []

        def record():
            try:
                log.record(request, decision, timeout=1.0)
                outcome.append("recorded")
            except DecisionLogError as exc:
                outcome.append(exc)
        writer = threading.Thread(target=record, daemon=True)
        started = time.monotonic()
        writer.start()
        writer.join(10)  # without a bound on the wait it would never return
        assert not writer.is_alive() and time.monotonic() - started < 1.0
        assert isinstance(outcome[0], DecisionLogUnavailable) and "file lock" in str(outcome[0])
        with pytest.raises(DecisionLogUnavailable):
            log.check(0.2)
        os.close(frozen)  # the frozen worker is killed: the kernel frees its lock
        log.check(0.2)
        log.record(request, decision, timeout=1.0)
        assert log.get(decision.decision_id).decision == decision


def test_the_log_is_wal_and_only_what_describes_no_case_is_in_the_clear(tmp_path, evaluator):
    path = tmp_path / "log.sqlite3"
    request = _fee_request(shadow_version="review-2023")
    decision = evaluator.decide(request)
    with open_log(path, [key := _key()]) as log:
        log.record(request, decision)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [c[1] for c in db.execute("PRAGMA table_info(decisions)")] == STORED_COLUMNS
    row = db.execute(f"SELECT {', '.join(CLEAR_COLUMNS)} FROM decisions").fetchone()
    db.close()
    assert row == (decision.decision_id, decision.decided_at, "application_fee", "2017", decision.policy.content_hash,
                   evaluator.bundle.bundle_hash, "review-2023", key_id(key))


def test_no_sensitive_fact_or_text_is_stored_in_clear(tmp_path, evaluator):
    path = tmp_path / "log.sqlite3"
    log = open_log(path, [_key()])
    for _ in range(3):
        request = _fee_request()
        log.record(request, evaluator.decide(request))

    def stored() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("log.sqlite3"))

    assert Path(f"{path}-wal").exists()  # still open: the rows are in the write-ahead log
    for raw in (stored(), (log.close(), stored())[1]):  # and after the checkpoint on close
        for secret in (b"police", b"abuse", b"victim", b"1985-07-20", b"reported"):
            assert secret not in raw, secret
        assert b"application_fee" in raw  # the clear columns are there, so we did read the data
        assert b"WAIVED" not in raw  # an outcome joined to a case by its id tells its circumstances


def test_a_sealed_document_is_padded_so_its_length_does_not_tell_abuse_from_none(tmp_path, evaluator):
    """An abuse disclosure adds its own texts to a decision: sealed as they were, the lengths of
    these two told them apart. Padded to the same size bucket they do not."""
    facts = {"decision_date": "2019-05-01", "receiving_parent_requests": "direct_pay",
             "paying_parent_requests": "direct_pay", "abuse_disclosed_by": "receiving_parent"}
    requests = [DecisionRequest(policy="service_type", version="2012", facts={**facts, "abuse_disclosed": abuse})
                for abuse in (True, False)]
    decisions = [evaluator.decide(r) for r in requests]
    unpadded = [len(r.model_dump_json()) + len(d.model_dump_json()) for r, d in zip(requests, decisions)]
    assert unpadded[0] - unpadded[1] > 500  # the scan has teeth
    path = tmp_path / "log.sqlite3"
    with open_log(path, [_key()]) as log:
        log.record_batch(list(zip(requests, decisions)))
        assert [log.get(d.decision_id).decision for d in decisions] == decisions
    db = sqlite3.connect(path)
    assert db.execute("SELECT length(sealed) FROM decisions").fetchall() == [(8192 + 16,)] * 2  # + the GCM tag
    db.close()


def test_padding_fills_a_power_of_two_from_4_kib_with_json_whitespace():
    for size, bucket in ((2, 4096), (4096, 4096), (4097, 8192), (70_000, 131_072)):
        document = b'{"x":"' + b"a" * (size - 8) + b'"}'
        padded = sealer._pad(document)
        assert len(padded) == bucket and padded.startswith(document) and json.loads(padded) == json.loads(document)


def test_a_schema_2_log_is_migrated_in_place_and_its_clear_outcomes_leave_the_file(tmp_path, evaluator):
    path, key = tmp_path / "old.sqlite3", _key()
    requests = [_fee_request(), DecisionRequest(policy="application_fee", as_at="2019-03-15", facts=UNREPORTED,
                                                shadow_version="review-2023")]
    decisions = [evaluator.decide(r) for r in requests]
    outcomes = [b"WAIVED", b"FEE_PAYABLE"]
    assert [decisions[0].outcome, decisions[1].outcome, decisions[1].shadow.outcome] == ["WAIVED", "FEE_PAYABLE",
                                                                                        "WAIVED"]
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = WAL")
    db.executescript("""
        CREATE TABLE decisions (decision_id TEXT PRIMARY KEY, decided_at TEXT NOT NULL, policy TEXT NOT NULL,
            version TEXT NOT NULL, content_hash TEXT NOT NULL, bundle_hash TEXT NOT NULL, outcome TEXT NOT NULL,
            shadow_version TEXT, shadow_outcome TEXT, key_id TEXT NOT NULL, nonce BLOB NOT NULL, sealed BLOB NOT NULL);
        CREATE INDEX decisions_by_time ON decisions (decided_at);
        PRAGMA user_version = 2;""")
    db.executemany("INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [_schema_2_row(key, r, d) for r, d in zip(requests, decisions)])
    db.commit()
    old_lengths = db.execute("SELECT decision_id, length(sealed) FROM decisions").fetchall()
    db.close()

    def stored() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("old.sqlite3"))

    assert all(outcome in stored() for outcome in outcomes)  # the scan has teeth
    with open_log(path, [key]) as log:
        for outcome in outcomes:  # not in the table, nor left in the file's free space or its write-ahead log
            assert outcome not in stored(), outcome
        for decision in decisions:
            logged = log.get(decision.decision_id)
            assert logged.decision == decision and replay(evaluator, logged).identical
        log.record(_fee_request(), evaluator.decide(_fee_request()))
        assert log.count() == 3
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 4
    assert [c[1] for c in db.execute("PRAGMA table_info(decisions)")] == STORED_COLUMNS
    assert db.execute("SELECT seal_format FROM decisions ORDER BY rowid").fetchall() == [(1,), (1,), (2,)]
    assert db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").fetchall() == \
        [("decisions_by_time",)]
    assert db.execute("SELECT decision_id, length(sealed) FROM decisions LIMIT 2").fetchall() == old_lengths
    db.close()


def test_the_wrong_key_is_refused_with_a_clear_error(tmp_path, evaluator):
    path = tmp_path / "log.sqlite3"
    with open_log(path, [_key()]) as log:
        log.record(_fee_request(), evaluator.decide(_fee_request()))
    with pytest.raises(DecisionLogKeyError, match="wrong key"):
        open_log(path, [_key()])


def test_keys_rotate_and_a_row_without_its_key_says_so(tmp_path, evaluator):
    path, old, new = tmp_path / "log.sqlite3", _key(), _key()
    first = evaluator.decide(_fee_request())
    with open_log(path, [old]) as log:
        log.record(_fee_request(), first)
    with open_log(path, [new, old]) as log:  # the new key seals, the old one still opens
        second = evaluator.decide(_fee_request())
        log.record(_fee_request(), second)
        assert log.get(first.decision_id).decision == first
    with open_log(path, [new]) as log:  # the newest row is sealed with `new`: the log opens
        assert log.get(second.decision_id).decision == second
        with pytest.raises(DecisionLogKeyError, match="not given"):
            log.get(first.decision_id)


def test_a_sealed_row_cannot_be_moved_to_another_decision(tmp_path, evaluator):
    path = tmp_path / "log.sqlite3"
    a, b = evaluator.decide(_fee_request()), evaluator.decide(_fee_request())
    with open_log(path, [key := _key()]) as log:
        log.record(_fee_request(), a)
        log.record(_fee_request(), b)
    db = sqlite3.connect(path)
    db.execute("UPDATE decisions SET nonce = (SELECT nonce FROM decisions WHERE decision_id = ?), "
               "sealed = (SELECT sealed FROM decisions WHERE decision_id = ?) WHERE decision_id = ?",
               (a.decision_id, a.decision_id, b.decision_id))
    db.commit()
    db.close()
    with open_log(path, [key]) as log, pytest.raises(DecisionLogIntegrityError):
        log.get(b.decision_id)


def test_development_key_is_generated_once_beside_the_log(tmp_path, evaluator, monkeypatch):
    monkeypatch.delenv("CMS_POLICY_LOG_KEY", raising=False)
    path = tmp_path / "var" / "decisions.sqlite3"
    decision = evaluator.decide(_fee_request())
    with open_log(path) as log:  # makes var/ and var/decisions.sqlite3.key
        log.record(_fee_request(), decision)
    key_file = Path(f"{path}.key")
    assert key_file.stat().st_mode & 0o777 == 0o600
    with open_log(path) as log:
        assert log.get(decision.decision_id).decision == decision
    key_file.unlink()  # a lost key is an error, never a new key for a log that has rows
    with pytest.raises(DecisionLogKeyError, match="no key"):
        open_log(path)
    assert not key_file.exists()


def test_keys_come_from_the_environment_or_a_key_file(tmp_path, evaluator, monkeypatch):
    text = new_key_text()
    monkeypatch.setenv("CMS_POLICY_LOG_KEY", text)
    decision = evaluator.decide(_fee_request())
    with open_log(tmp_path / "log.sqlite3") as log:
        log.record(_fee_request(), decision)
    assert not (tmp_path / "log.sqlite3.key").exists()
    monkeypatch.delenv("CMS_POLICY_LOG_KEY")
    (tmp_path / "secret").write_text(f"# current key\n{text}\n")
    with open_log(tmp_path / "log.sqlite3", key_file=tmp_path / "secret") as log:
        assert log.get(decision.decision_id).decision == decision
    with pytest.raises(DecisionLogKeyError, match="32 bytes"):
        parse_keys(base64.b64encode(b"short").decode(), "test")
    with pytest.raises(DecisionLogKeyError, match="base64"):
        parse_keys("not base64!", "test")


def test_a_path_is_sqlite_and_a_url_made_a_path_is_refused(tmp_path):
    with open_log(str(tmp_path / "log.sqlite3"), [_key()]) as log:
        assert isinstance(log, SQLiteDecisionLog) and log.where == str(tmp_path / "log.sqlite3")
    with pytest.raises(DecisionLogError, match="as a string"):  # Path("postgresql://h/db") is "postgresql:/h/db"
        open_log(Path("postgresql://db.example/cms"), [_key()])
    assert not Path("postgresql:").exists()


def test_differences_are_short_and_readable():
    a = {"outcome": "WAIVED", "amount_pence": None, "rationale": "x" * 100, "trail": [1, 2], "items": [1],
         "policy": {"version": "2017", "content_hash": "a"}}
    b = {"outcome": "FEE_PAYABLE", "amount_pence": 2000, "rationale": "y" * 100, "trail": [1, 3], "items": [],
         "policy": {"version": "2017", "content_hash": "b"}}
    assert differences(a, a) == []
    assert differences(a, b) == ["outcome: WAIVED != FEE_PAYABLE", "amount_pence: (none) != 2000", "rationale: differs",
                                 "trail: entry 1 differs", "items: 1 != 0 entries", "policy.content_hash: a != b"]


# --- through the service -------------------------------------------------------------------

def test_get_decision_returns_the_decision_decide_returned(stub):
    request = _pb_request({"policy": "application_fee", "as_at": "2019-03-15", "facts": FEE_FACTS},
                          subject=pb.AUDIENCE_RECEIVING_PARENT, requested_by=pb.AUDIENCE_CASEWORKER, reason=pb.REQUEST_REASON_NEW_APPLICATION)
    decided = stub.Decide(request)
    logged = stub.GetDecision(pb.GetDecisionRequest(decision_id=decided.decision_id))
    assert logged.decision == decided
    assert logged.request == request
    assert logged.bundle_hash == stub.ListPolicies(pb.ListPoliciesRequest()).bundle_hash


@pytest.mark.parametrize("req", _golden_requests(), ids=lambda r: f"{r['policy']}/{r.get('version', '')}")
def test_replay_of_golden_cases_is_identical(stub, req):
    decided = stub.Decide(_pb_request(req))
    replay = stub.ReplayDecision(pb.ReplayDecisionRequest(decision_id=decided.decision_id))
    assert replay.identical, list(replay.differences)
    assert not replay.differences
    assert replay.original == decided
    assert replay.replayed.outcome == decided.outcome and replay.replayed.rationale == decided.rationale


@pytest.mark.parametrize("call", ["GetDecision", "ReplayDecision"])
def test_unknown_and_missing_ids(stub, call):
    method, message = getattr(stub, call), getattr(pb, f"{call}Request")
    with pytest.raises(grpc.RpcError) as caught:
        method(message(decision_id=uuid.uuid4().hex))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        method(message(decision_id=""))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "decision_id: required" in caught.value.details()


@pytest.fixture
def in_process(bundle, tmp_path):
    """A server in this process on its own decision log: (stub, log)."""
    log = open_log(tmp_path / "log.sqlite3", [_key()])
    server, port = build_server(LiveBundle(bundle), "127.0.0.1:0", decision_log=log)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield policy_pb2_grpc.PolicyDecisionServiceStub(channel), log
    channel.close()
    server.stop(None).wait()
    log.close()


def test_a_decision_that_cannot_be_recorded_is_not_returned(in_process):
    stub, log = in_process
    log.close()  # every write now fails
    with pytest.raises(grpc.RpcError) as caught:
        stub.Decide(_pb_request({"policy": "application_fee", "as_at": "2019-03-15", "facts": FEE_FACTS}))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "could not be recorded" in caught.value.details()


def test_replay_of_a_version_no_longer_loaded_fails_precondition(in_process, evaluator):
    stub, log = in_process
    decision = evaluator.decide(_fee_request())
    changed = decision.policy.model_copy(update={"content_hash": "0" * 64})  # as if the file had since been edited
    log.record(_fee_request(), decision.model_copy(update={"policy": changed}))
    with pytest.raises(grpc.RpcError) as caught:
        stub.ReplayDecision(pb.ReplayDecisionRequest(decision_id=decision.decision_id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no longer loaded" in caught.value.details()


def test_get_decision_round_trips_the_request_fields(evaluator):
    request = _fee_request(subject=Audience.PAYING_PARENT, requested_by=Audience.RECEIVING_PARENT,
                           reason=RequestReason.ANNUAL_REVIEW, counterfactuals=True)
    message = convert.decide_request(request)
    assert message.subject == pb.AUDIENCE_PAYING_PARENT and message.requested_by == pb.AUDIENCE_RECEIVING_PARENT
    assert message.reason == pb.REQUEST_REASON_ANNUAL_REVIEW and message.as_at == "2019-03-15"
    assert message.include_counterfactuals and not message.omit_counterfactuals
    assert not convert.decide_request(request.model_copy(update={"counterfactuals": False})).include_counterfactuals


# --- across a restart, and for a reviewer ------------------------------------------------

def _start(log_path: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "service", "--port", "0", "--host", "127.0.0.1",
                             "--decision-log", str(log_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"service did not start: {line!r}")
    return proc, line.split()[-1]


def _stop(proc: subprocess.Popen, sig) -> None:
    proc.send_signal(sig)
    proc.wait(timeout=30)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_a_decision_is_fetched_and_replayed_identically_after_a_restart(tmp_path, sig):
    log_path = tmp_path / "var" / "decisions.sqlite3"
    proc, address = _start(log_path)
    try:
        with grpc.insecure_channel(address) as channel:
            request = _pb_request({"policy": "service_type", "version": "review-2023", "facts": {
                "decision_date": "2024-05-01", "receiving_parent_requests": "collect_and_pay",
                "paying_parent_requests": "direct_pay", "paying_parent_agrees_to_collect_and_pay": False,
                "earlier_cms_non_compliance": False, "direct_pay_payment_missed_or_late": False,
                "abuse_disclosed": True, "abuse_disclosed_by": "receiving_parent",
                "evidence_items": [{"type": "arrest", "document_date": "2023-11-02", "concerns_other_party": True}]}})
            decided = policy_pb2_grpc.PolicyDecisionServiceStub(channel).Decide(request)
    finally:
        _stop(proc, sig)  # SIGKILL: no clean shutdown, so the row must already have been durable
    proc, address = _start(log_path)
    try:
        with grpc.insecure_channel(address) as channel:
            stub = policy_pb2_grpc.PolicyDecisionServiceStub(channel)
            logged = stub.GetDecision(pb.GetDecisionRequest(decision_id=decided.decision_id))
            replay = stub.ReplayDecision(pb.ReplayDecisionRequest(decision_id=decided.decision_id))
    finally:
        _stop(proc, signal.SIGTERM)
    assert logged.decision == decided and logged.request == request
    assert replay.identical and not replay.differences and replay.original == decided


def _explain(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rules", "explain", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_explain_prints_a_readable_report(stub, decision_log_path):
    decided = stub.Decide(_pb_request({"policy": "application_fee", "as_at": "2019-03-15", "facts": FEE_FACTS},
                                      subject=pb.AUDIENCE_RECEIVING_PARENT, requested_by=pb.AUDIENCE_RECEIVING_PARENT))
    result = _explain(decided.decision_id, "--decision-log", str(decision_log_path), "--replay")
    assert result.returncode == 0, result.stderr
    report = result.stdout
    assert f"Decision {decided.decision_id}" in report
    assert "application_fee/2017 (enacted)" in report and decided.policy.content_hash in report
    assert "About:" in report and "the receiving parent" in report
    assert "abuse_reported_to: police" in report and "abuse_of_applicant: yes" in report
    assert "WAIVED: the application fee is waived" in report
    assert "For the caseworker" in report
    assert "Replay: identical" in report


def test_explain_an_unknown_id_fails(server_process, decision_log_path):
    result = _explain("0" * 32, "--decision-log", str(decision_log_path))
    assert result.returncode == 1 and "no decision with id" in result.stderr
    result = _explain("0" * 32, "--decision-log", str(decision_log_path.parent / "absent.sqlite3"))
    assert result.returncode == 1 and "no decision log at" in result.stderr


def test_concurrent_records_share_commits_and_all_are_stored(tmp_path, evaluator):
    import threading
    log = open_log(tmp_path / "log.sqlite3", [_key()])
    commits, insert = [], log._insert
    log._insert = lambda rows, deadline: commits.append(len(rows)) or insert(rows, deadline)
    decisions = [evaluator.decide(_fee_request()) for _ in range(200)]
    threads = [threading.Thread(target=lambda part: [log.record(_fee_request(), d) for d in part],
                                args=(decisions[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.count() == 200 and sum(commits) == 200
    assert len(commits) < 200  # some commits carried several rows (group commit)
    assert all(log.get(d.decision_id).decision == d for d in decisions[::20])
    log.close()


def test_checkpoints_run_beside_the_commits_and_keep_the_write_ahead_log_small(tmp_path, evaluator, monkeypatch):
    """No commit checkpoints (SQLite's automatic checkpoint took milliseconds inside one commit in
    every few hundred): a thread does, after commits, and under writes that never pause it restarts
    the write-ahead log once it holds CHECKPOINT_FRAMES frames (without that, it grew without end)."""
    import threading
    monkeypatch.setattr(sqlite_log, "CHECKPOINT_PAUSE", 0.05)
    monkeypatch.setattr(sqlite_log, "CHECKPOINT_FRAMES", 200)
    path = tmp_path / "log.sqlite3"
    request = _fee_request(counterfactuals=False)
    decision = evaluator.decide(request)
    log = open_log(path, [_key()])
    assert log._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    ids = iter(range(1_000_000))  # next() on one iterator is atomic in CPython

    def write() -> None:  # back to back until 6,000 rows (about 140 MB of log, had it never restarted)
        while (n := next(ids)) < 6000:
            log.record(request, decision.model_copy(update={"decision_id": f"{n:032x}"}))

    writers = [threading.Thread(target=write) for _ in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    assert log.count() == 6000
    # Restarted, it stays a few MB (8.6 on a quiet 2-core machine, more when the checkpointer gets
    # less time); a fifth of the unrestarted size tells the two apart without timing.
    assert os.path.getsize(f"{path}-wal") < 28_000_000
    assert log.get(f"{5999:032x}").decision == decision.model_copy(update={"decision_id": f"{5999:032x}"})
    log.close()
    assert not log._checkpointer.is_alive()


def test_a_batch_is_recorded_whole_or_not_at_all(tmp_path, evaluator):
    with open_log(tmp_path / "log.sqlite3", [_key()]) as log:
        first, second = evaluator.decide(_fee_request()), evaluator.decide(_fee_request())
        log.record_batch([(_fee_request(), first), (_fee_request(), second)])
        assert log.count() == 2
        third = evaluator.decide(_fee_request())
        with pytest.raises(DecisionLogError, match="could not be recorded"):
            log.record_batch([(_fee_request(), third), (_fee_request(), first)])  # first's id is taken
        assert log.count() == 2 and log.get(third.decision_id) is None


@pytest.mark.parametrize("change", ["nonce = x'0102'", "sealed = 'not bytes'"])
def test_stored_bytes_of_the_wrong_shape_fail_the_integrity_check(tmp_path, evaluator, change):
    """Issue 27 item 7: a short nonce or a sealed value that is not bytes gave INTERNAL, not DATA_LOSS."""
    path, decision = tmp_path / "log.sqlite3", evaluator.decide(_fee_request())
    with open_log(path, [key := _key()]) as log:
        log.record(_fee_request(), decision)
    db = sqlite3.connect(path)
    db.execute(f"UPDATE decisions SET {change} WHERE decision_id = ?", (decision.decision_id,))
    db.commit()
    db.close()
    with open_log(path, [key]) as log, pytest.raises(DecisionLogIntegrityError):
        log.get(decision.decision_id)


# --- every clear column is bound to the seal (issue 27 item 6) -----------------------------------

def _altered_clear_values(decision, other_key: bytes) -> dict:
    """For each clear column of a row recorded without a shadow: another value it could be changed to."""
    later = dt.datetime.fromisoformat(decision.decided_at) + dt.timedelta(seconds=1)
    return {"decided_at": later.isoformat(timespec="milliseconds"), "policy": "service_type",
            "version": "review-2023", "content_hash": "0" * 64, "bundle_hash": "0" * 64,
            "shadow_version": "review-2023", "key_id": key_id(other_key), "seal_format": 1}


ALTERABLE = ["decided_at", "policy", "version", "content_hash", "bundle_hash", "shadow_version", "key_id",
             "seal_format"]


@pytest.mark.parametrize("column", ALTERABLE)
def test_a_changed_clear_column_fails_the_integrity_check(tmp_path, evaluator, column):
    """Only the decision id was bound to the seal: a changed decided_at or bundle_hash went unnoticed,
    and GetDecision returned the changed bundle hash. (key_id failed before too: another key opens
    nothing.)"""
    path, key, other = tmp_path / "log.sqlite3", _key(), _key()
    decision, untouched = evaluator.decide(_fee_request()), evaluator.decide(_fee_request())
    with open_log(path, [key, other]) as log:
        log.record_batch([(_fee_request(), decision), (_fee_request(), untouched)])
    db = sqlite3.connect(path)
    db.execute(f"UPDATE decisions SET {column} = ? WHERE decision_id = ?",
               (_altered_clear_values(decision, other)[column], decision.decision_id))
    db.commit()
    db.close()
    with open_log(path, [key, other]) as log:
        with pytest.raises(DecisionLogIntegrityError, match=decision.decision_id):
            log.get(decision.decision_id)
        assert log.get(untouched.decision_id).decision == untouched


def test_the_same_instant_written_another_way_is_not_a_change(tmp_path, evaluator):
    """decided_at is bound as its UTC instant (PostgreSQL keeps a timestamptz, not the text)."""
    path, decision = tmp_path / "log.sqlite3", evaluator.decide(_fee_request())
    with open_log(path, [key := _key()]) as log:
        log.record(_fee_request(), decision)
    same = dt.datetime.fromisoformat(decision.decided_at).astimezone(dt.timezone(dt.timedelta(hours=1)))
    db = sqlite3.connect(path)
    db.execute("UPDATE decisions SET decided_at = ?", (same.isoformat(timespec="microseconds"),))
    db.commit()
    db.close()
    with open_log(path, [key]) as log:
        assert log.get(decision.decision_id).decision == decision


def _format_1_row(key: bytes, request: DecisionRequest, decision) -> tuple:
    """A row as schema 3 stored it (CLEAR_COLUMNS, nonce, sealed): the decision id alone as associated data."""
    payload = sealer._pad(json.dumps({"format": 1, "request": request.model_dump(mode="json"),
                                            "decision": decision.model_dump(mode="json")}).encode())
    nonce = os.urandom(12)
    return (decision.decision_id, decision.decided_at, decision.policy.policy, decision.policy.version,
            decision.policy.content_hash, decision.bundle_hash, request.shadow_version or None, key_id(key), nonce,
            AESGCM(key).encrypt(nonce, payload, decision.decision_id.encode()))


def test_a_schema_3_log_is_migrated_and_its_rows_still_open(tmp_path, evaluator):
    """Rows sealed before seal_format 2 bind the decision id alone: they open as they did (and a
    change to their other clear columns cannot be detected); new rows bind every clear column."""
    path, key = tmp_path / "old.sqlite3", _key()
    old = [evaluator.decide(_fee_request()) for _ in range(2)]
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = WAL")
    db.executescript("""
        CREATE TABLE decisions (decision_id TEXT PRIMARY KEY, decided_at TEXT NOT NULL, policy TEXT NOT NULL,
            version TEXT NOT NULL, content_hash TEXT NOT NULL, bundle_hash TEXT NOT NULL, shadow_version TEXT,
            key_id TEXT NOT NULL, nonce BLOB NOT NULL, sealed BLOB NOT NULL);
        CREATE INDEX decisions_by_time ON decisions (decided_at);
        PRAGMA user_version = 3;""")
    db.executemany("INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [_format_1_row(key, _fee_request(), d) for d in old])
    db.commit()
    db.close()
    new = evaluator.decide(_fee_request())
    with open_log(path, [key]) as log:
        assert [log.get(d.decision_id).decision for d in old] == old
        log.record(_fee_request(), new)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 4
    assert [c[1] for c in db.execute("PRAGMA table_info(decisions)")] == STORED_COLUMNS
    assert db.execute("SELECT decision_id, seal_format FROM decisions ORDER BY rowid").fetchall() == \
        [(old[0].decision_id, 1), (old[1].decision_id, 1), (new.decision_id, 2)]
    db.execute("UPDATE decisions SET bundle_hash = ?", ("0" * 64,))
    db.commit()
    db.close()
    with open_log(path, [key]) as log:
        assert log.get(old[0].decision_id).bundle_hash == "0" * 64  # format 1: not bound
        with pytest.raises(DecisionLogIntegrityError):
            log.get(new.decision_id)


def test_get_decision_of_a_row_with_a_changed_clear_column_is_data_loss(in_process):
    stub, log = in_process
    decided = stub.Decide(_pb_request({"policy": "application_fee", "as_at": "2019-03-15", "facts": FEE_FACTS}))
    assert stub.GetDecision(pb.GetDecisionRequest(decision_id=decided.decision_id)).decision == decided
    db = sqlite3.connect(log.path)
    db.execute("UPDATE decisions SET bundle_hash = ? WHERE decision_id = ?", ("0" * 64, decided.decision_id))
    db.commit()
    db.close()
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetDecision(pb.GetDecisionRequest(decision_id=decided.decision_id))
    assert caught.value.code() == grpc.StatusCode.DATA_LOSS
    assert "integrity check" in caught.value.details()
