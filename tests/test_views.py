"""A parent's view of a decision (`view` in DecideRequest, DecideBatch's requests and GetDecision):
only what that parent may be told, for every policy; the full decision is still recorded. Callers
limited to parents' views by authorisation, GetPolicy's `about`, and the new fields' round trip."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import code_pb2

from cms_policy.v1 import policy_pb2 as pb
from rules.authoring import goldens
from rules.engine.decision import PARENTS, Audience, Counterfactual, DecisionRequest, DisclosureRisk, MissingFact
from service import authz, convert

from .conftest import wire_enums
from .test_batch import Local
from .test_golden import _as_engine_dump

# What a parent's view may hold: the Decision's fields, and its one explanation's.
PARENT_FIELDS = {"decision_id", "decided_at", "policy", "outcome", "outcome_description", "amount_pence", "outputs",
                 "explanations", "counterfactuals", "missing_facts"}
EXPLANATION_FIELDS = {"audience", "text", "withheld", "hold", "counterfactuals", "questions"}
PARENT_VIEWS = {pb.VIEW_RECEIVING_PARENT: pb.AUDIENCE_RECEIVING_PARENT, pb.VIEW_PAYING_PARENT: pb.AUDIENCE_PAYING_PARENT}


def _richest_case(policy: Path) -> Path:
    """A policy's golden case with the largest decision (items, sub-decisions, counterfactuals...)."""
    return max(policy.glob("*/*.yaml"), key=lambda p: (p.stat().st_size, p.name))


CASES = [_richest_case(p) for p in sorted((Path(__file__).resolve().parent / "golden").iterdir()) if p.is_dir()]


def _request(case: Path, view: int = pb.VIEW_UNSPECIFIED) -> pb.DecideRequest:
    req = goldens.read(case)["request"]
    facts = struct_pb2.Struct()
    facts.update(req.get("facts", {}))
    return pb.DecideRequest(policy=req["policy"], version=req.get("version", ""), as_at=str(req.get("as_at", "")),
                            facts=facts, view=view,
                            **wire_enums(req))


def _set(message) -> set[str]:
    return {field.name for field, _ in message.ListFields()}


def _failure(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_every_policy_has_a_case_here():
    assert {c.parent.parent.name for c in CASES} >= {"application_fee", "abuse_evidence", "service_type",
                                                     "maintenance_calculation", "prisoner_liability"}


@pytest.mark.parametrize("view", sorted(PARENT_VIEWS), ids=pb.View.Name)
@pytest.mark.parametrize("case", CASES, ids=[c.parent.parent.name for c in CASES])
def test_a_parents_view_holds_only_what_that_parent_may_be_told(stub, case, view):
    seen = stub.Decide(_request(case, view), timeout=30)
    assert _set(seen) <= PARENT_FIELDS
    [mine] = seen.explanations
    assert mine.audience == PARENT_VIEWS[view] and _set(mine) <= EXPLANATION_FIELDS
    assert list(seen.counterfactuals) == list(mine.counterfactuals)
    assert list(seen.missing_facts) == list(mine.questions)

    # the full decision was recorded, and the view is that parent's part of it
    full = stub.GetDecision(pb.GetDecisionRequest(decision_id=seen.decision_id), timeout=10).decision
    assert _set(full) - PARENT_FIELDS, "the full decision has more than a parent is told"
    assert [e for e in full.explanations if e.audience == mine.audience] == [mine]
    told = ("outcome", "outcome_description", "amount_pence", "outputs")
    for name in ("decision_id", "decided_at", "policy") + (() if mine.hold else told):
        assert getattr(seen, name) == getattr(full, name), name
    if mine.hold:  # nothing yet: not even the outcome
        assert not (_set(seen) & set(told)) and not mine.text

    # GetDecision shows the same view, and not the request (it holds the other parent's facts)
    logged = stub.GetDecision(pb.GetDecisionRequest(decision_id=seen.decision_id, view=view), timeout=10)
    assert _set(logged) == {"decision"} and logged.decision == seen


def test_a_batch_gives_each_request_its_own_view(stub):
    views = [pb.VIEW_UNSPECIFIED, pb.VIEW_RECEIVING_PARENT, pb.VIEW_PAYING_PARENT]
    response = stub.DecideBatch(pb.DecideBatchRequest(requests=[_request(CASES[0], v) for v in views]), timeout=30)
    full, receiving, paying = (r.decision for r in response.results)
    assert "rationale" in _set(full) and len(full.explanations) == 3
    assert [e.audience for e in receiving.explanations] == [pb.AUDIENCE_RECEIVING_PARENT] and _set(receiving) <= PARENT_FIELDS
    assert [e.audience for e in paying.explanations] == [pb.AUDIENCE_PAYING_PARENT] and _set(paying) <= PARENT_FIELDS


def test_an_unknown_view_is_invalid(stub):
    for call in (lambda: stub.Decide(_request(CASES[0], 7), timeout=10),
                 lambda: stub.GetDecision(pb.GetDecisionRequest(decision_id="0" * 32, view=7), timeout=10)):
        error = _failure(call)
        assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "view: unknown view")


# --- authorisation: callers limited to parents' views --------------------------------------------

PORTAL_TOKEN = "parent-portal-5b1d3f7a9c0e2b4d6f8a1c3e5b7d9f0a"
RECEIVING_TOKEN = "receiving-only-2c4e6a8b0d1f3a5c7e9b2d4f6a8c0e1b"
REVIEWER_TOKEN = "reviewer-8e0a2c4e6b1d3f5a7c9e0b2d4f6a8c1e"


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
def limited(bundle, tmp_path):
    (tmp_path / "authz.yaml").write_text(f"""\
callers:
  parent-portal:
    token_sha256: [{_sha(PORTAL_TOKEN)}]
    views: [receiving_parent, paying_parent]
    allow: {{decide: ["*"], get_decision: true, replay_decision: true}}
  receiving-letters:
    token_sha256: [{_sha(RECEIVING_TOKEN)}]
    views: receiving_parent
    allow: {{decide: ["*"]}}
  reviewers:                             # no views: every view, as before views existed
    token_sha256: [{_sha(REVIEWER_TOKEN)}]
    allow: {{get_decision: true, replay_decision: true}}
""")
    served = Local(bundle, tmp_path, authorisation=authz.load(tmp_path / "authz.yaml", client_certificates=False))
    yield served
    served.close()


def _as(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def _denied(call) -> str:
    error = _failure(call)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
    return error.details()


def test_a_caller_limited_to_parents_views_is_refused_the_full_decision(limited, caplog):
    stub, portal = limited.stub, _as(PORTAL_TOKEN)
    seen = stub.Decide(_request(CASES[0], pb.VIEW_PAYING_PARENT), timeout=30, metadata=portal)
    assert [e.audience for e in seen.explanations] == [pb.AUDIENCE_PAYING_PARENT]
    logged = stub.GetDecision(pb.GetDecisionRequest(decision_id=seen.decision_id, view=pb.VIEW_PAYING_PARENT),
                              timeout=10, metadata=portal)
    assert not logged.HasField("request")
    with caplog.at_level(logging.WARNING, logger="cms_policy.authz"):
        assert _denied(lambda: stub.Decide(_request(CASES[0]), timeout=10, metadata=portal)) == \
            "caller 'parent-portal' may not call Decide with view 'full'"
        assert _denied(lambda: stub.GetDecision(pb.GetDecisionRequest(decision_id=seen.decision_id), timeout=10,
                                                metadata=portal)) == \
            "caller 'parent-portal' may not call GetDecision with view 'full'"
        # a replay returns full decisions: its permission is not enough without the full view
        assert _denied(lambda: stub.ReplayDecision(pb.ReplayDecisionRequest(decision_id=seen.decision_id),
                                                   timeout=10, metadata=portal)) == \
            "caller 'parent-portal' may not call ReplayDecision with view 'full'"
        assert _denied(lambda: stub.Decide(_request(CASES[0], pb.VIEW_PAYING_PARENT), timeout=10,
                                           metadata=_as(RECEIVING_TOKEN))) == \
            "caller 'receiving-letters' may not call Decide with view 'paying_parent'"
    refusals = [(r.getMessage(), r.caller, r.rpc, r.policy, r.reason) for r in caplog.records
                if r.name == "cms_policy.authz"]
    assert refusals == [
        ("call refused", "parent-portal", "Decide", CASES[0].parent.parent.name, "not allowed view full"),
        ("call refused", "parent-portal", "GetDecision", "-", "not allowed view full"),
        ("call refused", "parent-portal", "ReplayDecision", "-", "not allowed view full"),
        ("call refused", "receiving-letters", "Decide", CASES[0].parent.parent.name, "not allowed view paying_parent")]
    assert "facts" not in repr(refusals) and PORTAL_TOKEN not in caplog.text
    # a caller without `views` sees everything
    reviewer = _as(REVIEWER_TOKEN)
    assert stub.GetDecision(pb.GetDecisionRequest(decision_id=seen.decision_id), timeout=10,
                            metadata=reviewer).HasField("request")
    assert stub.ReplayDecision(pb.ReplayDecisionRequest(decision_id=seen.decision_id), timeout=30,
                               metadata=reviewer).identical


def test_a_batch_refuses_the_full_view_in_that_requests_result(limited, caplog):
    requests = [_request(CASES[0], pb.VIEW_RECEIVING_PARENT), _request(CASES[0]), _request(CASES[0], 9)]
    with caplog.at_level(logging.WARNING, logger="cms_policy.authz"):
        response = limited.stub.DecideBatch(pb.DecideBatchRequest(requests=requests), timeout=30,
                                            metadata=_as(PORTAL_TOKEN))
    parent, full, unknown = response.results
    assert [e.audience for e in parent.decision.explanations] == [pb.AUDIENCE_RECEIVING_PARENT]
    assert (full.error.code, full.error.message) == (code_pb2.PERMISSION_DENIED,
                                                     "caller 'parent-portal' may not call Decide with view 'full'")
    assert (unknown.error.code, unknown.error.message) == (code_pb2.PERMISSION_DENIED,
                                                           "caller 'parent-portal' may not call Decide with view '9'")
    assert limited.rows() == 1
    refused = [(r.getMessage(), r.index, r.reason) for r in caplog.records if r.name == "cms_policy.authz"]
    assert refused == [("request refused", 1, "not allowed view full"), ("request refused", 2, "not allowed view 9")]


def test_views_in_the_authorisation_file_are_checked(tmp_path):
    (tmp_path / "authz.yaml").write_text(f"callers:\n  a:\n    token_sha256: [{_sha('a')}]\n    views: [everything]\n"
                                         f"  b:\n    token_sha256: [{_sha('b')}]\n    views: []\n")
    with pytest.raises(authz.AuthzConfigError) as caught:
        authz.load(tmp_path / "authz.yaml", client_certificates=False)
    assert [e.replace(str(tmp_path / "authz.yaml"), "authz.yaml") for e in caught.value.errors] == [
        "authz.yaml:4: callers.a.views.0: Input should be 'full', 'receiving_parent' or 'paying_parent'",
        "authz.yaml:7: callers.b.views: Value should have at least 1 item after validation, not 0"]


# --- GetPolicy: whose each fact is --------------------------------------------------------------

def test_get_policy_says_whose_each_fact_is_and_whether_it_is_sensitive(stub):
    detail = stub.GetPolicy(pb.GetPolicyRequest(policy="service_type", version="review-2023"), timeout=10)
    facts = {f.name: (f.about, f.sensitive) for f in detail.facts}
    assert facts["receiving_parent_requests"] == ("receiving_parent", True)
    assert facts["earlier_cms_non_compliance"] == ("paying_parent", False)
    assert facts["abuse_disclosed"] == ("fact:abuse_disclosed_by", True)
    assert facts["decision_date"] == ("", False)
    evidence = stub.GetPolicy(pb.GetPolicyRequest(policy="abuse_evidence", version="2013"), timeout=10)
    [items] = evidence.lists
    assert (items.about, items.sensitive) == ("subject", True)
    # an item's fact is its list's information, however it is marked itself
    assert {(f.about, f.sensitive) for f in items.facts} == {("subject", True)}


# --- the new fields survive the trip to the message and back --------------------------------------

def test_parent_views_and_disclosure_risks_round_trip(evaluator):
    decision = evaluator.decide(DecisionRequest(**goldens.read(CASES[0])["request"]))
    told = Counterfactual(fact="income", value=20000, direction="at_least", outcome="PAYABLE",
                          shown_to=[Audience.PAYING_PARENT], parent_text="If your income were £200.00 or more")
    asked = MissingFact(name="income", description="Weekly income", question="What is your weekly income?")
    explanations = [e.model_copy(update={"notify": False, "counterfactuals": [told], "questions": [asked]})
                    if e.audience in PARENTS else e for e in decision.explanations]
    risks = [DisclosureRisk(parent=Audience.PAYING_PARENT, whose=Audience.RECEIVING_PARENT, facts=["abuse_disclosed"],
                            rule_id="r.1", infers="that abuse was disclosed", advice="tell them after the review"),
             DisclosureRisk(parent=Audience.RECEIVING_PARENT, rule_id="r.2", infers="x", advice="y")]
    full = decision.model_copy(update={"explanations": explanations, "disclosure_risks": risks})
    message = convert.decision(full)
    assert [e.hold for e in message.explanations] == [e.audience in PARENTS for e in explanations]
    assert _as_engine_dump(message) == full.golden()
    parent = full.for_parent(Audience.PAYING_PARENT)
    assert _as_engine_dump(convert.decision(parent)) == parent.golden()


def test_a_parent_sent_nothing_yet_is_not_told_the_outcome_either(stub):
    """Issue 25: REFER_TO_DECISION_MAKER on the receiving parent's disclosure has one route, so its
    code alone would tell the paying parent she asked for Collect & Pay and disclosed abuse."""
    facts = struct_pb2.Struct()
    facts.update({"decision_date": "2024-05-01", "receiving_parent_requests": "collect_and_pay",
                  "paying_parent_requests": "direct_pay", "paying_parent_agrees_to_collect_and_pay": False,
                  "earlier_cms_non_compliance": False, "direct_pay_payment_missed_or_late": False,
                  "abuse_disclosed": True, "abuse_disclosed_by": "receiving_parent"})
    request = pb.DecideRequest(policy="service_type", version="2012", facts=facts, view=pb.VIEW_PAYING_PARENT)
    seen = stub.Decide(request, timeout=30)
    [mine] = seen.explanations
    assert mine.hold and not mine.text and seen.outcome == "" and _set(seen) <= {"decision_id", "decided_at", "policy", "explanations"}
    full = stub.GetDecision(pb.GetDecisionRequest(decision_id=seen.decision_id), timeout=10).decision
    assert full.outcome == "REFER_TO_DECISION_MAKER"
