"""Shadow evaluation: a request may name a version to decide alongside the chosen one; the
response carries both results and the decision itself is exactly what it would have been."""
from __future__ import annotations

import sqlite3

import grpc
import pytest
from google.protobuf import struct_pb2

from cms_policy.v1 import policy_pb2 as pb
from rules.audit.factory import open_log
from rules.authoring.report import render
from rules.decide.evaluator import Evaluator
from rules.decide.replay import replay
from rules.engine.decision import DecisionRequest, RequestError
from rules.engine.durable_host import EngineError

# Domestic abuse disclosed but not reported: the 2017 fee is payable; the review's proposal
# waives it on the applicant's word alone.
FEE_FACTS = {"application_route": "direct_pay", "applicant_in_northern_ireland": False,
             "application_date": "2019-03-15", "applicant_date_of_birth": "1985-07-20",
             "abuse_of_applicant": True, "abuse_reported_to": [], "declaration": "at_application",
             "legal_warning_before_abuse_question": False}


def _request(**extra) -> DecisionRequest:
    return DecisionRequest(policy="application_fee", as_at="2019-03-15", facts=FEE_FACTS, **extra)


def test_the_shadow_decides_alongside_and_changes_nothing(evaluator):
    plain = evaluator.decide(_request())
    shadowed = evaluator.decide(_request(shadow_version="review-2023"))
    assert shadowed.golden() == plain.golden(), "golden() leaves the shadow out: everything else is identical"
    assert shadowed.model_copy(update={"shadow": None, "decision_id": "", "decided_at": ""}) == \
        plain.model_copy(update={"decision_id": "", "decided_at": ""})
    assert plain.shadow is None
    shadow = shadowed.shadow
    pinned = evaluator.decide(DecisionRequest(policy="application_fee", version="review-2023", facts=FEE_FACTS,
                                              counterfactuals=False))
    assert (plain.outcome, plain.amount_pence) == ("FEE_PAYABLE", 2000)
    assert (shadow.outcome, shadow.amount_pence, shadow.agrees) == (pinned.outcome, pinned.amount_pence, False)
    assert shadow.outcome == "WAIVED"
    assert shadow.policy == pinned.policy and shadow.policy.version == "review-2023"
    assert shadow.rule_ids == [step.rule_id for step in pinned.trail] and shadow.rationale == pinned.rationale
    assert not shadow.error


def test_a_shadow_that_agrees_says_so(evaluator):
    facts = {**FEE_FACTS, "abuse_of_applicant": False}
    decision = evaluator.decide(DecisionRequest(policy="application_fee", version="2017", facts=facts,
                                                shadow_version="2014"))
    assert decision.shadow.agrees and decision.shadow.outcome == decision.outcome == "FEE_PAYABLE"


def test_a_shadow_that_fails_reports_why_and_the_decision_stands(bundle, monkeypatch):
    evaluator = Evaluator(bundle)
    real = evaluator.decide_at

    def failing(compiled, as_at, request):
        if compiled.version.version == "review-2023":
            raise EngineError("durable_rules failed in application_fee: RuntimeError")
        return real(compiled, as_at, request)

    monkeypatch.setattr(evaluator, "decide_at", failing)
    decision = evaluator.decide(_request(shadow_version="review-2023"))
    assert (decision.outcome, decision.amount_pence) == ("FEE_PAYABLE", 2000)
    assert decision.shadow.policy is None and not decision.shadow.agrees
    assert decision.shadow.error == ("application_fee/review-2023 could not decide: "
                                     "durable_rules failed in application_fee: RuntimeError")


def test_parents_never_read_the_shadow(evaluator):
    plain = evaluator.decide(_request())
    shadowed = evaluator.decide(_request(shadow_version="review-2023"))
    assert shadowed.explanations == plain.explanations
    assert "review-2023" not in " ".join(e.text for e in shadowed.explanations)


def test_an_unknown_shadow_version_is_a_bad_request(evaluator):
    with pytest.raises(RequestError) as caught:
        evaluator.decide(_request(shadow_version="2099"))
    assert [v.field for v in caught.value.violations] == ["shadow_version"]
    assert "known: 2014, 2017" in caught.value.violations[0].description


def test_the_log_keeps_the_shadow_sealed_and_only_its_version_in_the_clear(tmp_path, evaluator):
    request = _request(shadow_version="review-2023")
    decision = evaluator.decide(request)
    path = tmp_path / "log.sqlite3"
    with open_log(path, [b"k" * 32]) as log:
        log.record(request, decision)
        logged = log.get(decision.decision_id)
        assert logged.decision.shadow == decision.shadow
        result = replay(evaluator, logged)  # the shadow is not part of the decision replayed
        assert result.identical and result.replayed.shadow is None
    db = sqlite3.connect(path)
    assert db.execute("SELECT shadow_version FROM decisions").fetchall() == [("review-2023",)]
    assert not {"outcome", "shadow_outcome"} & {c[1] for c in db.execute("PRAGMA table_info(decisions)")}
    db.close()
    report = render(logged)
    assert "Shadow (review-2023, not acted on)\n" in report and "Differs from the decision.\nWAIVED" in report


def test_a_log_from_before_shadows_is_upgraded_in_place(tmp_path, evaluator):
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE decisions (decision_id TEXT PRIMARY KEY, decided_at TEXT NOT NULL, policy TEXT NOT NULL,
            version TEXT NOT NULL, content_hash TEXT NOT NULL, bundle_hash TEXT NOT NULL, outcome TEXT NOT NULL,
            key_id TEXT NOT NULL, nonce BLOB NOT NULL, sealed BLOB NOT NULL);
        PRAGMA user_version = 1;""")
    db.close()
    with open_log(path, [b"k" * 32]) as log:
        decision = evaluator.decide(_request())
        log.record(_request(), decision)
        assert log.get(decision.decision_id).decision == decision
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 4
    assert db.execute("SELECT shadow_version FROM decisions").fetchall() == [(None,)]
    assert not {"outcome", "shadow_outcome"} & {c[1] for c in db.execute("PRAGMA table_info(decisions)")}
    db.close()


def _pb(**extra) -> pb.DecideRequest:
    facts = struct_pb2.Struct()
    facts.update(FEE_FACTS)
    return pb.DecideRequest(policy="application_fee", as_at="2019-03-15", facts=facts, **extra)


def test_over_grpc(stub):
    plain = stub.Decide(_pb())
    shadowed = stub.Decide(_pb(shadow_version="review-2023"))
    assert not plain.HasField("shadow")
    assert (shadowed.outcome, shadowed.amount_pence, shadowed.rationale) == (plain.outcome, plain.amount_pence,
                                                                             plain.rationale)
    assert (shadowed.shadow.outcome, shadowed.shadow.agrees, shadowed.shadow.policy.version) == \
        ("WAIVED", False, "review-2023")
    assert not shadowed.shadow.HasField("amount_pence")
    assert shadowed.bundle_hash == plain.bundle_hash == stub.ListPolicies(pb.ListPoliciesRequest()).bundle_hash
    logged = stub.GetDecision(pb.GetDecisionRequest(decision_id=shadowed.decision_id))
    assert logged.request.shadow_version == "review-2023" and logged.decision.shadow == shadowed.shadow
    with pytest.raises(grpc.RpcError) as caught:
        stub.Decide(_pb(shadow_version="2099"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("shadow_version: unknown version '2099'")
