"""DecideBatch: many Decide requests in one call, answered in order, each exactly as a unary
Decide would answer it (its decision, or its own error); every decision recorded in one
transaction, or the call fails and none is.

Against the real service (`python -m service`, the session fixtures) for what a client sees; in
this process (`build_server`) where the test needs the server's logs, metrics, decision log or
authorisation in hand."""
from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status

from cms_policy.v1 import policy_pb2 as pb
from cms_policy.v1 import policy_pb2_grpc
from rules.audit.errors import DecisionLogError
from rules.audit.factory import open_log
from rules.audit.log import DecisionLog
from rules.decide.evaluator import Evaluator
from service import authz
from service import server as server_module
from service.observability import JsonFormatter, Metrics
from service.reload import LiveBundle
from service.server import MAX_BATCH_REQUESTS, build_server

from .eventually import eventually

FEE_FACTS = {"application_route": "direct_pay", "applicant_in_northern_ireland": False,
             "application_date": "2019-03-15", "applicant_date_of_birth": "1985-07-20",
             "abuse_of_applicant": True, "abuse_reported_to": ["police"], "declaration": "at_application"}
SERVICE_TYPE_FACTS = {"decision_date": "2024-05-01", "receiving_parent_requests": "collect_and_pay",
                      "paying_parent_requests": "direct_pay", "paying_parent_agrees_to_collect_and_pay": False,
                      "earlier_cms_non_compliance": False, "direct_pay_payment_missed_or_late": False,
                      "abuse_disclosed": True, "abuse_disclosed_by": "receiving_parent",
                      "evidence_items": [{"type": "arrest", "document_date": "2023-11-02", "concerns_other_party": True}]}
CALCULATION_FACTS = {"gross_weekly_income": 14950, "relevant_other_children": 0, "receives_prescribed_benefit": False,
                     "paying_parent_is_prisoner": False, "nil_rate_category": "none",
                     "qualifying_children": [{"shared_care_nights": 0}]}
ROUTING_FACTS = {"abuse_disclosed": True, "feels_safe_now": True, "caseworker_has_concerns": False,
                 "abuse_ongoing": False, "service_type": "collect_and_pay", "police_involved": True}
# Counterfactuals for four children re-decide the case many times: a slow decision (a few hundred ms).
SLOW_FACTS = {"gross_weekly_income": 45000, "relevant_other_children": 2, "receives_prescribed_benefit": False,
              "paying_parent_is_prisoner": False, "nil_rate_category": "none",
              "qualifying_children": [{"shared_care_nights": n} for n in (0, 52, 104, 156)]}
FEE_TOKEN = "fee-portal-batch-5e1d7c9a3b2f4e6d8c0a1b3d5f7e9a2c"
REVIEWER_TOKEN = "reviewers-batch-0a2c4e6f8b1d3f5a7c9e0b2d4f6a8c1e"


def _request(policy: str, facts: dict | None = None, **kw) -> pb.DecideRequest:
    struct = struct_pb2.Struct()
    struct.update(facts or {})
    return pb.DecideRequest(policy=policy, facts=struct, **kw)


# (request, what it comes to: an outcome, or the field an INVALID_ARGUMENT names), in batch order
MIXED = [
    (_request("application_fee", FEE_FACTS, as_at="2019-03-15"), "WAIVED"),
    (_request("service_type", SERVICE_TYPE_FACTS, version="review-2023", include_counterfactuals=True),
     "COLLECT_AND_PAY"),
    (_request("application_fee", {"application_date": 20160101}, version="2014"), "facts.application_date"),
    (_request("nope", {"application_route": "direct_pay"}), "policy"),
    (_request("maintenance_calculation", CALCULATION_FACTS), "REDUCED_RATE"),
    (_request("caseworker_routing", ROUTING_FACTS, as_at="2025-01-10"),
     "SPECIALIST_CASE_TEAM"),
    (_request("application_fee", {"application_route": "direct_pay", "applicant_in_northern_ireland": False},
              version="2024"), "NO_FEE"),
]


def _batch(*requests: pb.DecideRequest) -> pb.DecideBatchRequest:
    return pb.DecideBatchRequest(requests=requests)


def _without_id(decision: pb.DecideResponse) -> pb.DecideResponse:
    out = pb.DecideResponse()
    out.CopyFrom(decision)
    out.ClearField("decision_id")
    out.ClearField("decided_at")
    return out


def _failure(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def _field_violations(status) -> dict[str, str]:
    detail = error_details_pb2.BadRequest()
    assert len(status.details) == 1 and status.details[0].Unpack(detail)
    return {v.field: v.description for v in detail.field_violations}


# --- against the running service -------------------------------------------------------------

def test_a_mixed_batch_is_answered_in_order_each_as_decide_would(stub):
    response = stub.DecideBatch(_batch(*(r for r, _ in MIXED)), timeout=60)
    assert len(response.results) == len(MIXED)
    assert [r.WhichOneof("result") for r in response.results] == [
        "decision", "decision", "error", "error", "decision", "decision", "decision"]
    for (request, expected), result in zip(MIXED, response.results):
        if result.HasField("decision"):
            assert result.decision.outcome == expected and result.decision.policy.policy == request.policy
        else:
            assert result.error.code == code_pb2.INVALID_ARGUMENT
            assert expected in _field_violations(result.error)  # the request's own field name
            # exactly the status (code, message, BadRequest) the unary Decide fails with
            assert result.error == rpc_status.from_call(_failure(lambda: stub.Decide(request, timeout=30)))
    assert response.results[4].decision.amount_pence == 1542
    assert "unknown policy" in _field_violations(response.results[3].error)["policy"]
    ids = [r.decision.decision_id for r in response.results if r.HasField("decision")]
    assert len(set(ids)) == len(ids) == 5 and all(len(i) == 32 for i in ids)


def test_each_decision_is_the_unary_decision_and_is_recorded_and_replays(stub):
    decided = [(request, result.decision) for (request, _), result
               in zip(MIXED, stub.DecideBatch(_batch(*(r for r, _ in MIXED)), timeout=60).results)
               if result.HasField("decision")]
    assert len(decided) == 5
    for request, decision in decided:
        unary = stub.Decide(request, timeout=30)
        assert unary.decision_id != decision.decision_id
        assert _without_id(decision) == _without_id(unary)
        logged = stub.GetDecision(pb.GetDecisionRequest(decision_id=decision.decision_id), timeout=30)
        assert logged.decision == decision  # recorded as returned, id and time included
        assert logged.request.policy == request.policy and logged.request.facts == request.facts
        replay = stub.ReplayDecision(pb.ReplayDecisionRequest(decision_id=decision.decision_id), timeout=30)
        assert replay.identical and not replay.differences
        replayed, original = _without_id(replay.replayed), _without_id(decision)
        original.ClearField("bundle_hash")  # a replay compares all but id, time and bundle
        assert replayed == original


def test_more_than_the_limit_is_invalid_argument_and_the_limit_itself_is_decided(stub):
    cheap = _request("application_fee", {"application_route": "family_based"}, version="2024")
    error = _failure(lambda: stub.DecideBatch(_batch(*[cheap] * (MAX_BATCH_REQUESTS + 1)), timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 1000 requests" in _field_violations(rpc_status.from_call(error))["requests"]
    full = stub.DecideBatch(_batch(*[cheap] * MAX_BATCH_REQUESTS), timeout=60)
    assert len(full.results) == 1000 and {r.decision.outcome for r in full.results} == {"NOT_APPLICABLE"}
    assert len({r.decision.decision_id for r in full.results}) == 1000


def test_an_empty_batch_gets_an_empty_response(stub):
    response = stub.DecideBatch(pb.DecideBatchRequest(), timeout=10)
    assert response == pb.DecideBatchResponse() and len(response.results) == 0


# --- in this process: logs, metrics, the decision log, authorisation ---------------------------

class Local:
    """A server in this process recording in a SQLite decision log of its own."""

    def __init__(self, bundle, workdir: Path, *, authorisation=None, wrap_log=None):
        self.path = workdir / "decisions.sqlite3"
        self.log = open_log(self.path, [b"k" * 32])
        self.metrics = Metrics()
        self.server, port = build_server(
            LiveBundle(bundle), "127.0.0.1:0", decision_log=wrap_log(self.log) if wrap_log else self.log,
            metrics=self.metrics, interceptors=[authz.AuthzInterceptor(authorisation)] if authorisation else ())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = policy_pb2_grpc.PolicyDecisionServiceStub(self.channel)

    def rows(self) -> int:
        with sqlite3.connect(self.path) as db:
            return db.execute("SELECT count(*) FROM decisions").fetchone()[0]

    def close(self) -> None:
        self.channel.close()
        self.server.stop(None).wait()
        self.log.close()


@pytest.fixture
def local(bundle, tmp_path):
    served = Local(bundle, tmp_path)
    yield served
    served.close()


@pytest.fixture
def service_lines():
    """The service's log records as JSON lines, formatted as they are emitted (with the fields
    bound to the call, such as `rpc`)."""
    lines: list[dict] = []
    handler = logging.Handler()
    handler.setFormatter(JsonFormatter())
    handler.emit = lambda record: lines.append(json.loads(handler.format(record)))
    loggers = [logging.getLogger(name) for name in ("cms_policy.service", "cms_policy.authz")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield lines
    for logger, level in zip(loggers, levels):
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_a_batch_logs_each_decision_and_a_summary_and_counts_each_decision(local, service_lines):
    requests = [MIXED[0][0], MIXED[2][0], MIXED[6][0]]
    response = local.stub.DecideBatch(_batch(*requests), timeout=60)
    assert [r.WhichOneof("result") for r in response.results] == ["decision", "error", "decision"]
    assert local.rows() == 2
    eventually(lambda: [line for line in service_lines if line["message"] == "batch decided"])
    batch_lines = [line for line in service_lines if line.get("rpc") == "DecideBatch"]
    decisions = [line for line in batch_lines if line["message"] == "decision"]
    assert [(d["index"], d["decision_id"], d["policy"], d["version"]) for d in decisions] == [
        (0, response.results[0].decision.decision_id, "application_fee", "2017"),
        (2, response.results[2].decision.decision_id, "application_fee", "2024")]
    assert not any("outcome" in d for d in decisions)
    assert all(d["latency_ms"] >= d["record_ms"] > 0 for d in decisions)
    [rejected] = [line for line in batch_lines if line["message"] == "decision rejected"]
    assert rejected["index"] == 1 and rejected["fields"] == ["facts.application_date"]
    [summary] = [line for line in batch_lines if line["message"] == "batch decided"]
    assert (summary["items"], summary["decided"], summary["failed"]) == (3, 2, 1)
    assert summary["latency_ms"] >= summary["record_ms"] > 0
    logged = json.dumps(service_lines)
    assert "1985-07-20" not in logged and "police" not in logged and "20160101" not in logged
    sample = local.metrics.registry.get_sample_value
    assert sample("cms_policy_decisions_total", {"policy": "application_fee", "version": "2017", "outcome": "WAIVED"}) == 1
    assert sample("cms_policy_decisions_total", {"policy": "application_fee", "version": "2024", "outcome": "NO_FEE"}) == 1
    assert sample("cms_policy_decision_log_record_seconds_count", {}) == 2


def test_if_recording_fails_the_batch_is_unavailable_and_nothing_is_recorded(bundle, tmp_path, service_lines):
    class Failing:
        def __init__(self, log: DecisionLog):
            self.log = log

        def record_batch(self, pairs, **_):
            raise DecisionLogError("the disk is full")

        def __getattr__(self, name):
            return getattr(self.log, name)

    served = Local(bundle, tmp_path, wrap_log=Failing)
    try:
        error = _failure(lambda: served.stub.DecideBatch(_batch(MIXED[0][0], MIXED[6][0]), timeout=30))
        assert error.code() == grpc.StatusCode.UNAVAILABLE and "none of them was" in error.details()
        assert served.rows() == 0
        # a unary Decide still records one at a time: the failure was the batch's recording only
        assert served.stub.Decide(MIXED[6][0], timeout=30).outcome == "NO_FEE" and served.rows() == 1
    finally:
        served.close()
    [failed] = [line for line in service_lines if line["message"] == "batch not recorded"]
    assert (failed["items"], failed["decided"], failed["rpc"]) == (2, 2, "DecideBatch")
    assert failed["error"] == "DecisionLogError: the disk is full"
    assert not [line for line in service_lines if line["message"] in ("decision", "batch decided")
                and line.get("rpc") == "DecideBatch"]


def test_a_deadline_passing_mid_batch_abandons_it_and_records_nothing(local, service_lines, monkeypatch):
    # Each decision is made slow on purpose: a real one got fast enough (18 ms) to race the deadline.
    decide = Evaluator.decide
    monkeypatch.setattr(Evaluator, "decide", lambda self, asked: time.sleep(0.1) or decide(self, asked))
    slow = _request("maintenance_calculation", SLOW_FACTS, version="2012", include_counterfactuals=True)
    started = time.monotonic()
    local.stub.DecideBatch(_batch(slow), timeout=60)
    took = time.monotonic() - started
    recorded = local.rows()
    assert recorded == 1 and took > 0.1, f"the slow decision took only {took:.3f}s"
    error = _failure(lambda: local.stub.DecideBatch(_batch(*[slow] * 8), timeout=1.5 * took))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # the server notices at its next check, after the item under way
    [abandoned] = eventually(lambda: [line for line in service_lines if line["message"] == "decision abandoned"])
    assert (abandoned["stage"], abandoned["code"], abandoned["items"]) == ("between_items", "DEADLINE_EXCEEDED", 8)
    assert 1 <= abandoned["index"] < 8
    assert local.rows() == recorded
    assert local.metrics.registry.get_sample_value("cms_policy_deadline_exceeded_total", {"stage": "between_items"}) == 1


def test_a_response_over_the_message_limit_is_refused_before_recording(local, monkeypatch):
    monkeypatch.setattr(server_module, "MAX_MESSAGE_BYTES", 10_000)  # three fee decisions are ~17 KB
    error = _failure(lambda: local.stub.DecideBatch(_batch(*[MIXED[0][0]] * 3), timeout=30))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "nothing was recorded" in error.details()
    assert local.rows() == 0
    assert len(local.stub.DecideBatch(_batch(MIXED[0][0]), timeout=30).results) == 1 and local.rows() == 1


def test_a_batch_too_large_for_a_reply_is_refused_early_not_after_deciding_every_request(local, monkeypatch):
    """Issue 27 item 9: 1,000 requests with counterfactuals were all decided (6–7 s) before the
    6.1 MB reply was refused. Now deciding stops once the results made pass the limit, and a
    batch the smallest decisions made so far already say cannot fit is refused before any."""
    decided = []
    decide = Evaluator.decide
    monkeypatch.setattr(Evaluator, "decide", lambda self, asked: decided.append(asked) or decide(self, asked))
    monkeypatch.setattr(server_module, "MAX_MESSAGE_BYTES", 50_000)  # a fee decision is ~5.8 KB
    batch = _batch(*[MIXED[0][0]] * 100)
    error = _failure(lambda: local.stub.DecideBatch(batch, timeout=60))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "nothing was recorded" in error.details()
    assert "send fewer requests per batch" in error.details()
    assert 1 <= len(decided) <= 12, len(decided)  # until the results passed 50,000 bytes: not all 100
    decided.clear()
    error = _failure(lambda: local.stub.DecideBatch(batch, timeout=60))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "at least" in error.details()
    assert decided == []  # the sizes now known: refused before deciding any
    assert local.rows() == 0
    # a batch that fits is decided in full
    assert [r.decision.outcome for r in local.stub.DecideBatch(_batch(*[MIXED[0][0]] * 5), timeout=60).results] == [
        "WAIVED"] * 5
    assert len(decided) == 5 and local.rows() == 5


def test_a_caller_gets_permission_denied_for_each_policy_it_may_not_decide(bundle, tmp_path, service_lines):
    (tmp_path / "authz.yaml").write_text(f"""\
callers:
  fee-portal:
    token_sha256: [{hashlib.sha256(FEE_TOKEN.encode()).hexdigest()}]
    allow:
      decide: [application_fee]
  reviewers:
    token_sha256: [{hashlib.sha256(REVIEWER_TOKEN.encode()).hexdigest()}]
    allow: {{get_decision: true}}
""")
    served = Local(bundle, tmp_path, authorisation=authz.load(tmp_path / "authz.yaml", client_certificates=False))
    fee_portal = [("authorization", f"Bearer {FEE_TOKEN}")]
    try:
        response = served.stub.DecideBatch(_batch(MIXED[0][0], MIXED[1][0], MIXED[6][0]), timeout=30,
                                           metadata=fee_portal)
        fee, service_type, no_fee = response.results
        assert fee.decision.outcome == "WAIVED" and no_fee.decision.outcome == "NO_FEE"
        assert service_type.error.code == code_pb2.PERMISSION_DENIED and not service_type.error.details
        # the message a unary Decide of that request is refused with
        unary = _failure(lambda: served.stub.Decide(MIXED[1][0], timeout=30, metadata=fee_portal))
        assert unary.code() == grpc.StatusCode.PERMISSION_DENIED
        assert service_type.error.message == unary.details() == \
            "caller 'fee-portal' may not call Decide for policy 'service_type'"
        assert served.rows() == 2
        # the RPC itself needs the decide permission (for some policy), and a known caller
        reviewer = _failure(lambda: served.stub.DecideBatch(_batch(MIXED[0][0]), timeout=30,
                                                            metadata=[("authorization", f"Bearer {REVIEWER_TOKEN}")]))
        assert (reviewer.code(), reviewer.details()) == (grpc.StatusCode.PERMISSION_DENIED,
                                                         "caller 'reviewers' may not call DecideBatch")
        assert _failure(lambda: served.stub.DecideBatch(_batch(MIXED[0][0]), timeout=30)).code() == \
            grpc.StatusCode.UNAUTHENTICATED
        assert served.rows() == 2
    finally:
        served.close()
    [item] = [line for line in service_lines if line["message"] == "request refused"]
    assert (item["caller"], item["rpc"], item["policy"], item["index"], item["code"], item["reason"]) == (
        "fee-portal", "DecideBatch", "service_type", 1, "PERMISSION_DENIED", "not allowed decide")
    [summary] = [line for line in service_lines if line["message"] == "batch decided"]
    assert (summary["items"], summary["decided"], summary["failed"], summary["caller"]) == (3, 2, 1, "fee-portal")
