"""The README's example requests, one per domain, decide as the README says."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rules.engine.decision import DecisionRequest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
ROW = re.compile(r"^\| `(\w+)` \| (?:`(version|as_at)` ([\w-]+); )?`(\{.*\})` \| `(\w+)`(?:, (\d+) pence)?", re.M)
EXAMPLES = ROW.findall(README)


def test_the_readme_has_an_example_for_every_domain(bundle):
    assert sorted(e[0] for e in EXAMPLES) == sorted(bundle.policies)


@pytest.mark.parametrize("policy, key, value, facts, outcome, amount", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_readme_example(evaluator, policy, key, value, facts, outcome, amount):
    decision = evaluator.decide(DecisionRequest(policy=policy, facts=json.loads(facts), **({key: value} if key else {})))
    assert decision.outcome == outcome, decision.rationale
    if amount:
        assert decision.amount_pence == int(amount)
