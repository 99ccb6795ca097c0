"""The rule language beyond plain comparisons: exact arithmetic rounded half up,
percent tables, lists judged item by item by the engine, and policies that use
other policies (tests/fixtures/language)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.decide.evaluator import Evaluator
from rules.engine.decision import DecisionRequest, RequestError
from rules.engine.loader import load_bundle
from rules.language.arith import percent_text, round_half_up

LANGUAGE = Path(__file__).parent / "fixtures" / "language"


@pytest.fixture(scope="module")
def demo():
    import shutil
    import tempfile
    root = Path(tempfile.mkdtemp())
    for name in ("parts", "whole"):
        (root / name).mkdir()
        shutil.copy(LANGUAGE / f"{name}.yaml", root / name / "v1.yaml")
    return Evaluator(load_bundle(root))


def _parts(demo, **facts):
    return demo.decide(DecisionRequest(policy="parts", facts=facts))


@pytest.mark.parametrize("x, whole", [(Fraction(1, 2), 1), (Fraction(3, 2), 2), (Fraction(2499, 1000), 2),
                                      (Fraction(-1, 2), -1), (Fraction(0), 0), (Fraction(841.5), 842)])
def test_round_half_up(x, whole):
    assert round_half_up(x) == whole


@given(st.integers(min_value=-10**9, max_value=10**9), st.integers(min_value=1, max_value=10**6))
def test_round_half_up_is_within_half(n, d):
    x = Fraction(n, d)
    assert abs(x - round_half_up(x)) <= Fraction(1, 2)


def test_percent_text_is_exact_and_short():
    assert percent_text(Fraction(141, 10)) == "14.1"
    assert percent_text(Fraction(17)) == "17"


@pytest.mark.parametrize("price, charge", [(100, 13), (4, 1), (3, 0), (1000, 125)])
def test_money_is_rounded_half_up(demo, price, charge):
    # 12.5% of 4p is 0.5p -> 1p; of 3p is 0.375p -> 0p; of 100p is 12.5p -> 13p
    d = _parts(demo, price=price, row=0, parts=[{"size": 9}])
    assert d.amount_pence == charge
    assert f"12.5% of £{price // 100}.{price % 100:02d}" in d.rationale


def test_items_are_judged_one_by_one(demo):
    d = _parts(demo, price=100, row=0, parts=[{"size": 1}, {"size": 5}, {"size": 9}])
    assert [(v.index, v.outcome) for v in d.items] == [(0, "BAD"), (1, "GOOD"), (2, "GOOD")]
    assert d.items[1].step.rule_id == "part.good" and "Size 5 is at least 5" in d.items[1].step.because


def test_table_lookup_clamps_to_the_last_row_and_column(demo):
    # row 7 -> last row; two parts -> column 2 -> last column
    d = _parts(demo, price=100, row=7, parts=[{"size": 5}, {"size": 6}])
    assert [(o.name, o.value, o.text) for o in d.outputs] == [("share", "40", "40%")]


def test_an_undecided_item_leaves_the_aggregate_unknown_unless_another_settles_it(demo):
    undecided = _parts(demo, price=100, row=0, parts=[{"size": 1}, {}])
    assert undecided.outcome == "UNDETERMINED"
    assert [m.name for m in undecided.missing_facts] == ["parts[1].size"]
    settled = _parts(demo, price=100, row=0, parts=[{"size": 8}, {}])
    assert settled.outcome == "SOME_GOOD"
    assert [v.outcome for v in settled.items] == ["GOOD", "UNDETERMINED"]


def test_an_empty_list_is_known_and_a_missing_list_is_asked_for(demo):
    assert _parts(demo, price=100, row=0, parts=[]).outcome == "NONE_GOOD"
    missing = _parts(demo, price=100, row=0)
    assert missing.outcome == "UNDETERMINED" and [m.name for m in missing.missing_facts] == ["parts"]


def test_bad_items_are_reported_by_field(demo):
    with pytest.raises(RequestError) as caught:
        _parts(demo, price=100, row=0, parts=[{"size": "big"}, 3, {"colour": "red"}])
    assert [v.field for v in caught.value.violations] == ["facts.parts[0].size", "facts.parts[1]", "facts.parts[2].colour"]


def test_a_policy_decides_on_another_policys_decision(demo):
    d = demo.decide(DecisionRequest(policy="whole", facts={"keen": True, "price": 1000, "parts": [{"size": 6}]}))
    assert d.outcome == "ACCEPT" and d.amount_pence == 125
    [sub] = d.sub_decisions
    assert (sub.policy.policy, sub.policy.version, sub.outcome) == ("parts", "v1", "SOME_GOOD")
    assert sub.outputs[0].value == "40"  # `set: {row: 1}` fixed the row; one part -> column 1
    assert "Uses parts/v1 (enacted):" in d.rationale


def test_an_undecided_sub_decision_passes_on_its_missing_facts(demo):
    d = demo.decide(DecisionRequest(policy="whole", facts={"keen": True, "parts": [{"size": 6}]}))
    assert d.outcome == "UNDETERMINED" and [m.name for m in d.missing_facts] == ["price"]


def test_an_undecided_sub_decision_that_is_not_needed_is_left_out(demo):
    d = demo.decide(DecisionRequest(policy="whole", facts={"keen": False}))
    assert d.outcome == "REJECT" and d.sub_decisions == []


def test_facts_of_no_policy_involved_are_refused(demo):
    with pytest.raises(RequestError) as caught:
        demo.decide(DecisionRequest(policy="whole", facts={"keen": True, "colour": "red"}))
    assert [v.field for v in caught.value.violations] == ["facts.colour"]
