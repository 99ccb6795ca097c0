"""What would change it, cheaply (issue 29): the outcome-only re-decision path gives what deciding
the changed request afresh gives, an answer implied by the comparisons is the one the engine gives,
and the caseworker's and a parent's searches share their engine runs."""
from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

import pytest

from rules.authoring import goldens
from rules.decide import counterfactuals
from rules.decide import facts as request_facts
from rules.decide.evaluator import Evaluator
from rules.engine import durable_host
from rules.engine.decision import UNDETERMINED, DecisionRequest, RequestError
from rules.explain import whatif
from rules.language import values
from rules.language.model import FactType

from .test_readme import EXAMPLES

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = sorted(GOLDEN.glob("*/*/*.yaml"))
DECIDED = [p for p in CASES if goldens.read(p)["expected"]["outcome"] != UNDETERMINED]  # the ones with changes


def _request(path: Path) -> DecisionRequest:
    return DecisionRequest(**goldens.read(path)["request"])


def _brief(worked) -> tuple:
    d = worked.decision
    return d.outcome, d.amount_pence, [m.name for m in d.missing_facts]


@pytest.mark.parametrize("path", CASES, ids=[str(p.relative_to(GOLDEN)) for p in CASES])
def test_a_re_decision_against_the_case_is_the_fresh_decision(evaluator, path, monkeypatch):
    """Every request the search tries, decided by the cheap path (one fact re-parsed, used
    decisions and list verdicts reused, runs shared), is decided exactly as from scratch."""
    request = _request(path)
    compiled, as_at = evaluator.select(request)
    tried = []
    real = Evaluator._redecide

    def checking(self, compiled, as_at, for_parent=False, base=None):
        cheap, fresh = real(self, compiled, as_at, for_parent, base), real(self, compiled, as_at, for_parent)

        def redecide(request):
            try:
                expected = _brief(fresh(request))
            except RequestError:
                expected = RequestError
            try:
                got = _brief(cheap(request))
            except RequestError:
                got = RequestError
            tried.append((request.facts, got, expected))
            return cheap(request)
        return redecide
    monkeypatch.setattr(Evaluator, "_redecide", checking)
    try:
        evaluator.decide_at(compiled, as_at, request)
    except RequestError:
        pytest.skip("a refused request")
    assert [t for t in tried if t[1] != t[2]] == []


@pytest.mark.parametrize("path", DECIDED, ids=[str(p.relative_to(GOLDEN)) for p in DECIDED])
def test_an_implied_answer_is_the_engines(evaluator, bundle, path):
    """For every fact whose comparisons the outcome rests on are told (read by comparisons only, or
    through derived values that are the fact itself), each other value the search could try (marks,
    neighbours and points between them) is answered alike by those verdicts and by deciding again."""
    request = _request(path)
    try:
        compiled, as_at = evaluator.select(request)
        worked = evaluator._decide(compiled, as_at, request)
    except RequestError:
        pytest.skip("a refused request")
    assert worked.root is not None
    specs = request_facts.specs(bundle, compiled)
    facts = {k: v for k, v in request.facts.items() if v is not None and k in specs}
    verdicts = counterfactuals.comparisons_only(bundle, compiled, facts, specs, list(facts), worked)
    decide = counterfactuals.retry(request, evaluator._redecide(compiled, as_at))
    marks = counterfactuals.marks(bundle, compiled, facts)
    by_verdicts: dict[tuple, str] = {}
    for name, verdict in verdicts.items():
        if verdict is None:
            continue
        by_verdicts[(name, verdict(values.parse(specs[name], facts[name])))] = worked.decision.outcome
        spec = specs[name]
        if spec.type in (FactType.INTEGER, FactType.MONEY):
            points = sorted(marks.get(name, set()) | {facts[name] + 1, max(facts[name] - 1, 0)})
            tries = sorted({*points, *((a + b) // 2 for a, b in itertools.pairwise(points))})
        elif spec.type is FactType.DATE:
            tries = [dt.date.fromordinal(p).isoformat() for p in sorted(marks.get(name, set()))]
        else:
            tries = whatif._alternatives(spec, facts[name])
        for value in tries:
            result = decide({**facts, name: value})
            if result.outcome == UNDETERMINED:
                continue
            key = (name, verdict(values.parse(spec, value)))
            assert by_verdicts.setdefault(key, result.outcome) == result.outcome, (name, value)


def _runs(evaluator, request, monkeypatch) -> int:
    count = [0]
    real = durable_host.evaluate

    def counting(ruleset, fact):
        count[0] += 1
        return real(ruleset, fact)
    monkeypatch.setattr(durable_host, "evaluate", counting)
    evaluator.decide(request)
    monkeypatch.setattr(durable_host, "evaluate", real)
    return count[0]


@pytest.mark.parametrize("policy, key, value, facts", [e[:4] for e in EXAMPLES], ids=[e[0] for e in EXAMPLES])
def test_the_readme_examples_search_in_few_engine_runs(evaluator, monkeypatch, policy, key, value, facts):
    """The counterfactual searches of the README's examples, in engine runs (policy and list-item
    sessions): the caseworker's and the paying parent's searches of the calculation are one."""
    request = DecisionRequest(policy=policy, facts=json.loads(facts), **({key: value} if key else {}))
    extra = (_runs(evaluator, request, monkeypatch)
             - _runs(evaluator, request.model_copy(update={"counterfactuals": False}), monkeypatch))
    assert extra <= {"application_fee": 6, "service_type": 9, "abuse_evidence": 0, "caseworker_routing": 6,
                     "maintenance_calculation": 6, "prisoner_liability": 16}[policy]
