"""Replay every golden case through the running gRPC service and through the
in-process engine; both must give exactly the decision the file pins.

Each file also carries `expect_outcome` (and, where they matter, `expect_amount_pence`
and `expect_items`, the per-item verdicts in order), written by hand from POLICY-SPEC
and never rewritten, so `--update-golden` cannot quietly bless a wrong answer.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import json_format, struct_pb2

from cms_policy.v1 import policy_pb2 as pb
from rules.authoring import goldens
from rules.engine.decision import Decision
from rules.language.model import Citation

from .conftest import wire_enums

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = sorted(GOLDEN.glob("*/*/*.yaml"))
EARLIER = sorted(GOLDEN.glob("*/*/r*/*.yaml"))  # how an earlier revision of a corrected version decided


def _grpc(stub, req: dict) -> dict:
    facts = struct_pb2.Struct()
    facts.update(req.get("facts", {}))
    message = pb.DecideRequest(policy=req["policy"], version=req.get("version", ""),
                               as_at=str(req.get("as_at", "")), facts=facts,
                               include_counterfactuals=req.get("counterfactuals", True),  # a golden case pins them
                               **wire_enums(req))
    return _as_engine_dump(stub.Decide(message))


def _as_engine_dump(message: pb.DecideResponse) -> dict:
    """A Decision message in the shape of the engine model's golden dump."""
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    data["decided_at"] = message.decided_at.ToJsonString()
    return Decision.model_validate(_normalise(data)).golden()


def _normalise(data: dict) -> dict:
    """Proto3 leaves out empty fields; put back what the engine model spells as None. Audiences lose
    the wire's enum prefix (AUDIENCE_CASEWORKER is the engine's CASEWORKER)."""
    data["policy"] = {k: (v or None) if k.startswith("effective") else v for k, v in data["policy"].items()}
    data["as_at"] = data.get("as_at") or None
    data.setdefault("rationale", "")  # empty in a parent's view
    for name in ("outcome", "outcome_description"):  # empty in a view of a parent sent nothing yet
        data.setdefault(name, "")
    steps = data.get("trail", []) + [v["step"] for v in data.get("items", []) if "step" in v]
    for step in steps:
        step["citations"] = [Citation(**c).model_dump() for c in step.get("citations", [])]
    for v in data.get("items", []):
        v.setdefault("index", 0)
    for e in data.get("explanations", []):
        e["audience"] = _engine_audience(e["audience"])
        for c in e.get("counterfactuals", []):
            c["shown_to"] = [_engine_audience(a) for a in c.get("shown_to", [])]
        e["notify"] = not e.pop("hold", False)  # the model's `notify` is the message's `hold` negated
        e.setdefault("text", "")  # nothing to send yet
    for c in data.get("counterfactuals", []):
        c["shown_to"] = [_engine_audience(a) for a in c.get("shown_to", [])]
    for r in data.get("disclosure_risks", []):
        r.update({k: _engine_audience(r[k]) for k in ("parent", "whose") if k in r})
    data["sub_decisions"] = [_normalise(sub) for sub in data.get("sub_decisions", [])]
    return data


def _engine_audience(name: str) -> str:
    return name.removeprefix("AUDIENCE_")


@pytest.mark.parametrize("path", CASES, ids=[str(p.relative_to(GOLDEN)) for p in CASES])
def test_golden(path: Path, evaluator, stub, request):
    checked = goldens.check(evaluator, path)
    assert not checked.failures, "\n".join(goldens.explain(checked))
    assert _grpc(stub, checked.case["request"]) == checked.actual, "the gRPC service and the in-process engine disagree"

    if request.config.getoption("--update-golden"):
        goldens.write_expected(checked)
        return
    assert checked.has_expected, f"{path} has no expected decision yet: run pytest --update-golden and review it"
    assert checked.matches, "\n".join(goldens.explain(checked))


@pytest.mark.parametrize("path", EARLIER, ids=[str(p.relative_to(GOLDEN)) for p in EARLIER])
def test_an_earlier_revision_still_decides_as_it_did(path: Path, evaluator, request):
    """In-process only: the service decides under current revisions (an earlier one only replays)."""
    checked = goldens.check(evaluator, path)
    assert not checked.failures, "\n".join(goldens.explain(checked))
    if request.config.getoption("--update-golden"):  # the engine's own wording changed: review the diff
        goldens.write_expected(checked)
        return
    assert checked.matches, "\n".join(goldens.explain(checked))


def test_every_version_has_golden_cases(bundle):
    for policy, versions in bundle.policies.items():
        for version in versions:
            count = len(list((GOLDEN / policy / version).glob("*.yaml")))
            assert count >= 10, f"{policy}/{version} has {count} golden cases; at least 10 are required"


def test_every_rule_fires_in_some_golden_case(bundle):
    fired: dict[tuple[str, str], set[str]] = {}
    for path in CASES:
        expected = goldens.read(path).get("expected") or {}
        key = (path.parent.parent.name, path.parent.name)
        fired.setdefault(key, set()).update(step["rule_id"] for step in expected.get("trail", []))
        fired[key].update(item["step"]["rule_id"] for item in expected.get("items", []) if item.get("step"))
    for policy, versions in bundle.policies.items():
        for version, compiled in versions.items():
            pv = compiled.version
            # An item list's final catch-all is a required safety net; where earlier rules cover every
            # allowed value (abuse_evidence/2018) it cannot fire, so it is not demanded here.
            rules = {r.id for r in pv.rules} | {r.id for lst in pv.lists for r in lst.rules[:-1]}
            never = rules - fired.get((policy, version), set())
            assert not never, f"{policy}/{version}: no golden case shows rule(s) {sorted(never)}"
