"""Counterfactuals on demand: a default Decide does not work out "what would change it";
`include_counterfactuals` does, and WhatIf gives the same answer later for a recorded decision
(every audience's, or only a parent's own), recording nothing."""
from __future__ import annotations

import hashlib
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

from cms_policy.v1 import policy_pb2 as pb
from rules.authoring import goldens
from service import authz

from .test_batch import Local
from .test_views import CASES, PARENT_VIEWS, _failure, _request

GOLDEN = Path(__file__).resolve().parent / "golden"
# Cases whose decision has counterfactuals for the caseworker and for at least one parent.
WITH_CHANGES = [GOLDEN / "prisoner_liability/2012/09-not-in-custody-reduced.yaml",
                GOLDEN / "application_fee/2017/01-standard-fee.yaml",
                GOLDEN / "maintenance_calculation/2012/07-one-child-income-800-basic.yaml", *CASES]


def _asked(case: Path, view: int = pb.VIEW_UNSPECIFIED, include: bool = False) -> pb.DecideRequest:
    request = _request(case, view)
    request.include_counterfactuals = include
    return request


def _changes(message) -> list[dict]:
    return [json_format.MessageToDict(c) for c in message.counterfactuals]


def _texts(message) -> list[tuple[int, str]]:
    return [(e.audience, e.text) for e in message.explanations]


@pytest.fixture
def local(bundle, tmp_path):
    served = Local(bundle, tmp_path)
    yield served
    served.close()


def test_the_cases_used_here_exist():
    assert all(case.is_file() for case in WITH_CHANGES)


@pytest.mark.parametrize("case", WITH_CHANGES, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.stem}")
def test_counterfactuals_only_when_asked_and_whatif_gives_the_same_later(local, case):
    expected = goldens.read(case)["expected"]
    plain = local.stub.Decide(_asked(case), timeout=30)
    asked = local.stub.Decide(_asked(case, include=True), timeout=30)
    assert not plain.counterfactuals and not any(e.counterfactuals for e in plain.explanations)
    assert "What would change it" not in plain.rationale
    # asked for, they are the golden file's (the in-process default); the decision is otherwise the same
    assert len(asked.counterfactuals) == len(expected.get("counterfactuals", []))
    assert (plain.outcome, plain.amount_pence, list(plain.outputs)) == (asked.outcome, asked.amount_pence,
                                                                         list(asked.outputs))
    rows = local.rows()
    later = local.stub.WhatIf(pb.WhatIfRequest(decision_id=plain.decision_id), timeout=30)
    assert local.rows() == rows  # a what-if records nothing
    assert (later.decision_id, later.outcome) == (plain.decision_id, plain.outcome)
    assert _changes(later) == _changes(asked) and _texts(later) == _texts(asked)
    for view in PARENT_VIEWS:  # a parent's: exactly what their view of Decide with counterfactuals holds
        theirs = local.stub.WhatIf(pb.WhatIfRequest(decision_id=plain.decision_id, view=view), timeout=30)
        seen = local.stub.Decide(_asked(case, view, include=True), timeout=30)
        assert [e.audience for e in theirs.explanations] == [PARENT_VIEWS[view]]
        assert (theirs.outcome, _changes(theirs), _texts(theirs)) == (seen.outcome, _changes(seen), _texts(seen))


def test_a_case_with_changes_has_them_for_the_caseworker_and_a_parent(local):
    case = WITH_CHANGES[0]
    made = local.stub.Decide(_asked(case), timeout=30)
    found = local.stub.WhatIf(pb.WhatIfRequest(decision_id=made.decision_id), timeout=30)
    theirs = [local.stub.WhatIf(pb.WhatIfRequest(decision_id=made.decision_id, view=v), timeout=30) for v in PARENT_VIEWS]
    assert found.counterfactuals and any(t.counterfactuals for t in theirs)  # the test above compares something


def test_include_and_the_deprecated_omit_together_are_a_bad_request(local):
    request = _asked(WITH_CHANGES[0], include=True)
    request.omit_counterfactuals = True
    error = _failure(lambda: local.stub.Decide(request, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("omit_counterfactuals: deprecated")
    alone = _asked(WITH_CHANGES[0])
    alone.omit_counterfactuals = True  # alone it asks for what is now the default
    assert not local.stub.Decide(alone, timeout=10).counterfactuals


def test_whatif_errors(local):
    assert _failure(lambda: local.stub.WhatIf(pb.WhatIfRequest(), timeout=10)).code() == grpc.StatusCode.INVALID_ARGUMENT
    missing = _failure(lambda: local.stub.WhatIf(pb.WhatIfRequest(decision_id="0" * 32), timeout=10))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    made = local.stub.Decide(_asked(WITH_CHANGES[0]), timeout=30)
    bad_view = _failure(lambda: local.stub.WhatIf(pb.WhatIfRequest(decision_id=made.decision_id, view=9), timeout=10))
    assert (bad_view.code(), bad_view.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "view: unknown view")


def test_whatif_needs_its_permission_and_the_view(bundle, tmp_path):
    tokens = {name: f"{name}-token-0f1e2d3c4b5a69788796a5b4c3d2e1f0" for name in ("decider", "reviewer", "portal")}
    sha = {name: hashlib.sha256(token.encode()).hexdigest() for name, token in tokens.items()}
    (tmp_path / "authz.yaml").write_text(f"""\
callers:
  decider:
    token_sha256: [{sha["decider"]}]
    allow: {{decide: ["*"], get_decision: true}}
  reviewer:
    token_sha256: [{sha["reviewer"]}]
    allow: {{what_if: true}}
  portal:
    token_sha256: [{sha["portal"]}]
    views: [paying_parent]
    allow: {{what_if: true}}
""")
    served = Local(bundle, tmp_path, authorisation=authz.load(tmp_path / "authz.yaml", client_certificates=False))
    try:
        def who(name: str) -> list[tuple[str, str]]:
            return [("authorization", f"Bearer {tokens[name]}")]

        made = served.stub.Decide(_asked(WITH_CHANGES[0]), timeout=30, metadata=who("decider"))
        asked = pb.WhatIfRequest(decision_id=made.decision_id)
        refused = _failure(lambda: served.stub.WhatIf(asked, timeout=10, metadata=who("decider")))
        assert (refused.code(), refused.details()) == (grpc.StatusCode.PERMISSION_DENIED,
                                                       "caller 'decider' may not call WhatIf")
        assert served.stub.WhatIf(asked, timeout=30, metadata=who("reviewer")).counterfactuals
        full = _failure(lambda: served.stub.WhatIf(asked, timeout=10, metadata=who("portal")))
        assert full.details() == "caller 'portal' may not call WhatIf with view 'full'"
        own = served.stub.WhatIf(pb.WhatIfRequest(decision_id=made.decision_id, view=pb.VIEW_PAYING_PARENT),
                                 timeout=30, metadata=who("portal"))
        assert [e.audience for e in own.explanations] == [pb.AUDIENCE_PAYING_PARENT]
    finally:
        served.close()
