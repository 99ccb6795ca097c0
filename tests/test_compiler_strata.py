"""The compact strata (issue 29) reach exactly the verdicts of one stratum per derivation depth.

A rule sits in the stratum above the derived values its condition tests, not above everything it
reads; the values its arithmetic and because-text read are checked when they are resolved. The
reference layout below is the one before issue 29 (every read counted): both compiles of every
loaded version run the sessions the synthetic corpus's decisions make, and must agree on every
verdict, value read, derived value and blocker, and on the order of the true rules (the trail's).
"""
from __future__ import annotations

import pytest

from rules.authoring import corpus
from rules.decide.evaluator import Evaluator
from rules.engine import compiler
from rules.engine.compiler import CompiledPolicy, EngineState
from rules.engine.decision import DecisionRequest, RequestError

CASES = 150


@pytest.fixture(scope="module")
def layered(bundle) -> dict[str, CompiledPolicy]:
    """Every current version compiled with one stratum per derivation depth, by ruleset name."""
    saved = compiler._strata
    compiler._strata = compiler._depths
    try:
        return {c.ruleset: compiler.compile_policy(c.version, "layered" + c.content_hash)
                for versions in bundle.policies.values() for c in versions.values()}
    finally:
        compiler._strata = saved


def _sessions(evaluator: Evaluator, request: DecisionRequest) -> list[tuple[CompiledPolicy, dict, EngineState]]:
    """The policy sessions deciding `request` runs (used policies' too): version, facts, verdicts."""
    seen, run = [], CompiledPolicy.run

    def spy(self, given):
        state = run(self, given)
        seen.append((self, dict(given), state))
        return state
    CompiledPolicy.run = spy
    try:
        evaluator.decide(request)
    except RequestError:  # a corpus case another version refuses
        pass
    finally:
        CompiledPolicy.run = run
    return seen


def _comparable(state: EngineState) -> tuple:
    return (state.complete, state.true, sorted(state.false), dict(state.used), dict(state.derived), dict(state.via),
            dict(state.blocked))


def test_compact_strata_are_fewer(bundle, layered):
    compact = bundle.policies["maintenance_calculation"]["2012"]
    assert (compact.strata, layered[compact.ruleset].strata) == (3, 8)
    assert compact.engine_rules < layered[compact.ruleset].engine_rules
    assert all(c.strata <= layered[c.ruleset].strata for versions in bundle.policies.values() for c in versions.values())


@pytest.mark.parametrize("policy", ["maintenance_calculation", "prisoner_liability", "application_fee",
                                    "service_type", "caseworker_routing", "abuse_evidence"])
def test_compact_strata_reach_the_layered_verdicts(bundle, layered, policy):
    evaluator = Evaluator(bundle)
    compared = 0
    for version in bundle.policies[policy]:
        for case in corpus.generate(policy, CASES):
            request = DecisionRequest(policy=policy, version=version, facts=case["facts"], counterfactuals=False)
            for compiled, given, state in _sessions(evaluator, request):
                assert _comparable(state) == _comparable(layered[compiled.ruleset].run(given)), (compiled.ruleset, given)
                compared += 1
    assert compared >= CASES * len(bundle.policies[policy])
