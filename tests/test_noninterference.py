"""Noninterference: nothing a parent is shown depends on the other parent's secrets.

For every golden case and each parent as reader, every mutation of the other parent's sensitive
facts (tests/noninterference.py) is decided beside the case: the reader's view (text, `withheld`,
`notify`, their counterfactuals and questions) must be identical while what they are lawfully told
(outcome, amount, outputs) is, and an outcome that changes must carry a disclosure risk for them.
Hypothesis adds requests the goldens do not have (CMS_FUZZ_EXAMPLES=N for a long run). The last
tests break the engine's filter on purpose and show that the check then fails, policy by policy.
"""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.decide.evaluator import Evaluator
from rules.engine.decision import Audience, DecisionRequest
from rules.explain import audiences
from rules.language.model import FactType

from .noninterference import schema, violations

GOLDEN = Path(__file__).parent / "golden"
VERSIONS = sorted(p for p in GOLDEN.glob("*/*") if p.is_dir())
LONG_RUN = int(os.environ.get("CMS_FUZZ_EXAMPLES", "0") or 0)
WITH_SECRETS = ("application_fee", "service_type", "abuse_evidence", "caseworker_routing", "prisoner_liability")


def _requests(policy_dir: Path) -> list[DecisionRequest]:
    return [DecisionRequest(**yaml.safe_load(p.read_text())["request"]) for p in sorted(policy_dir.glob("*.yaml"))]


@pytest.mark.parametrize("version_dir", VERSIONS, ids=[str(p.relative_to(GOLDEN)) for p in VERSIONS])
def test_no_golden_case_lets_a_parent_learn_the_other_parents_secrets(version_dir, evaluator, bundle):
    found = [v for request in _requests(version_dir) for v in violations(evaluator, bundle, request)]
    assert not found, "\n\n".join(found)


def _value(spec, draw):
    if spec.type is FactType.BOOL:
        return draw(st.booleans())
    if spec.type is FactType.ENUM:
        return draw(st.sampled_from(spec.allowed))
    if spec.type is FactType.ENUM_LIST:
        return draw(st.lists(st.sampled_from(spec.allowed), unique=True, max_size=3))
    if spec.type is FactType.DATE:
        return draw(st.dates(dt.date(1980, 1, 1), dt.date(2027, 12, 31))).isoformat()
    if spec.type is FactType.MONEY:
        return draw(st.integers(0, 200_000))
    if spec.type is FactType.INTEGER:
        return draw(st.integers(0, 6))
    return None


@st.composite
def _request(draw, bundle, policy: str) -> DecisionRequest:
    """A request for any version of `policy` with any of its facts (and used policies'), each
    present or absent, about either parent or neither."""
    facts = {}
    for name, declarations in schema(bundle, policy).items():
        spec = declarations[0][0]
        if not draw(st.booleans()):
            continue
        if hasattr(spec, "rules"):  # a list of items
            item_facts = {f.name: f for lst, _ in declarations for f in lst.facts}
            facts[name] = [{k: v for k, f in item_facts.items() if (v := _value(f, draw)) is not None}
                           for _ in range(draw(st.integers(0, 2)))]
        elif (value := _value(spec, draw)) is not None:
            facts[name] = value
    version = draw(st.sampled_from([c.version.version for c in bundle.versions(policy)]))
    subject = draw(st.sampled_from([None, Audience.RECEIVING_PARENT, Audience.PAYING_PARENT]))
    return DecisionRequest(policy=policy, version=version, facts=facts, subject=subject)


@pytest.mark.parametrize("policy", WITH_SECRETS)
def test_no_generated_request_lets_a_parent_learn_the_other_parents_secrets(policy, evaluator, bundle):
    @settings(max_examples=LONG_RUN or 15, deadline=None, derandomize=not LONG_RUN, database=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(st.data())
    def check(data):
        request = data.draw(_request(bundle, policy))
        try:
            evaluator.decide(request)
        except ValueError:  # a request the service refuses (e.g. a fact another version types otherwise)
            return
        found = violations(evaluator, bundle, request, limit=1)
        assert not found, found[0]
    check()


# --- the check fails when the filter is broken --------------------------------------------------

def _never_withhold(monkeypatch):
    """Every parent reads the whole request: the other parent's secrets shape their text."""
    monkeypatch.setattr(audiences, "reader_facts", lambda declared, request, reader: dict(request.facts))


def _deciding_rule_only(monkeypatch):
    """The old taint: a parent reads the whole request unless the deciding rule itself reads the
    other parent's secrets (ignoring the rules tried before it that did not apply), and is
    otherwise told the outcome alone."""
    real = Evaluator._reading
    monkeypatch.setattr(Evaluator, "_told_rule", staticmethod(lambda *args: None))

    def reading(self, compiled, as_at, request, worked, declared, reader, *earlier):
        if worked.root is not None:
            hidden = set(request.facts) - set(audiences.reader_facts(declared, request, reader))
            if not compiled.sources_of(compiled.rules[worked.root].reads) & hidden:
                declared = {}  # nothing counts as sensitive
        return real(self, compiled, as_at, request, worked, declared, reader, *earlier)
    monkeypatch.setattr(Evaluator, "_reading", reading)


# The deciding-rule taint leaks only where an outcome can rest on secrets read by rules that did not
# apply; in abuse_evidence and prisoner_liability every outcome rule reads the secret it rests on.
BROKEN = [(_never_withhold, policy) for policy in WITH_SECRETS] + [
    (_deciding_rule_only, policy) for policy in ("application_fee", "service_type", "caseworker_routing")]


@pytest.mark.parametrize("broken, policy", BROKEN, ids=[f"{b.__name__[1:]}-{p}" for b, p in BROKEN])
def test_the_check_fails_when_the_filter_is_broken(broken, policy, bundle, monkeypatch):
    broken(monkeypatch)
    evaluator = Evaluator(bundle)
    for version_dir in sorted((GOLDEN / policy).iterdir()):
        for request in _requests(version_dir):
            if violations(evaluator, bundle, request, limit=1):
                return
    pytest.fail(f"a broken filter went unnoticed in every {policy} golden case")


def test_the_two_reported_leaks_are_closed(evaluator):
    """Issue 25's repros on service_type/2012: the paying parent's view is the same whether or not
    the receiving parent disclosed abuse, and a referral on her disclosure sends him nothing yet."""
    facts = {"decision_date": "2024-05-01", "receiving_parent_requests": "direct_pay",
             "paying_parent_requests": "direct_pay", "paying_parent_agrees_to_collect_and_pay": False,
             "earlier_cms_non_compliance": False, "direct_pay_payment_missed_or_late": False}
    disclosed = {"abuse_disclosed": True, "abuse_disclosed_by": "receiving_parent"}

    def paying(extra: dict):
        d = evaluator.decide(DecisionRequest(policy="service_type", version="2012", facts={**facts, **extra}))
        e = next(e for e in d.explanations if e.audience is Audience.PAYING_PARENT)
        return d, e
    (plain, seen), (abuse, seen_abuse) = paying({"abuse_disclosed": False}), paying(disclosed)
    assert plain.outcome == abuse.outcome == "DIRECT_PAY"
    assert (seen.text, seen.withheld, seen.notify) == (seen_abuse.text, seen_abuse.withheld, seen_abuse.notify)
    refer, told = paying({**disclosed, "receiving_parent_requests": "collect_and_pay"})
    assert refer.outcome == "REFER_TO_DECISION_MAKER"
    assert told.notify is False and told.text == ""
    risk = next(r for r in refer.disclosure_risks if r.parent is Audience.PAYING_PARENT)
    assert risk.whose is Audience.RECEIVING_PARENT and risk.rule_id == "refer.abuse-exceptional"
    assert set(risk.facts) == {"abuse_disclosed", "abuse_disclosed_by", "receiving_parent_requests"}
    assert "Send the paying parent nothing" in refer.rationale
