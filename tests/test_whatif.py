"""What would change a decision (counterfactuals, checked against POLICY-SPEC's thresholds) and
the order in which to ask for missing facts."""
from __future__ import annotations

import datetime as dt

from rules.engine.decision import Audience, DecisionRequest

CALCULATION = {"relevant_other_children": 0, "receives_prescribed_benefit": False, "paying_parent_is_prisoner": False,
               "nil_rate_category": "none", "qualifying_children": [{"shared_care_nights": 0}]}
FEE_2017 = {"application_date": "2019-03-15", "applicant_date_of_birth": "1990-03-16",
            "application_route": "collect_and_pay", "applicant_in_northern_ireland": False, "abuse_of_applicant": True,
            "abuse_reported_to": [], "declaration": "at_application", "child_abuse_disclosed": False}


def _decide(evaluator, policy, version, facts, **context):
    return evaluator.decide(DecisionRequest(policy=policy, version=version, facts=facts, **context))


def _by_fact(decision):
    return {(c.fact, c.direction, c.outcome): c for c in decision.counterfactuals}


def test_income_thresholds_are_the_band_edges(evaluator):
    """Reduced rate for £100.01–£199.99 (SI 2012/2677 reg 43); basic from £200 (Schedule 1 para 2)."""
    d = _decide(evaluator, "maintenance_calculation", "2012", {**CALCULATION, "gross_weekly_income": 15000})
    assert d.outcome == "REDUCED_RATE"
    changes = _by_fact(d)
    up = changes[("gross_weekly_income", "at_least", "BASIC_RATE")]
    down = changes[("gross_weekly_income", "at_most", "FLAT_RATE")]
    assert (up.value, down.value) == (20000, 10000)
    assert "£200.00 or more" in up.text and "£100.00 or less" in down.text
    assert changes[("receives_prescribed_benefit", "", "FLAT_RATE")].value is True
    basic = _decide(evaluator, "maintenance_calculation", "2012", {**CALCULATION, "gross_weekly_income": 50000})
    assert _by_fact(basic)[("gross_weekly_income", "at_least", "BASIC_PLUS_RATE")].value == 80001
    assert _by_fact(basic)[("gross_weekly_income", "at_most", "REDUCED_RATE")].value == 19999


def test_reporting_the_abuse_would_waive_the_fee(evaluator):
    d = _decide(evaluator, "application_fee", "2017", FEE_2017, subject=Audience.RECEIVING_PARENT)
    assert d.outcome == "FEE_PAYABLE"
    reported = _by_fact(d)[("abuse_reported_to", "", "WAIVED")]
    assert ["police"] in reported.value and ["medical_professional"] in reported.value
    assert "also included" in reported.text and "police" in reported.text
    # Under 19 on the application date: born on or after 16 March 2000 (reg 4(2)).
    assert _by_fact(d)[("applicant_date_of_birth", "at_least", "WAIVED")].value == "2000-03-16"
    # A parent is never told that another answer about abuse or its reporting would change it (it
    # would coach an answer); their own other facts, going forward, they are told, and only they.
    assert reported.shown_to == [Audience.CASEWORKER]
    born = _by_fact(d)[("applicant_date_of_birth", "at_least", "WAIVED")]
    assert born.shown_to == [Audience.CASEWORKER, Audience.RECEIVING_PARENT]
    receiving = next(e for e in d.explanations if e.audience is Audience.RECEIVING_PARENT)
    paying = next(e.text for e in d.explanations if e.audience is Audience.PAYING_PARENT)
    assert reported.parent_text not in receiving.text and born.parent_text in receiving.text
    theirs = {c.fact for c in receiving.counterfactuals}
    assert "applicant_date_of_birth" in theirs and not theirs & {"abuse_reported_to", "abuse_of_applicant"}
    assert "What would change it" not in paying


def test_the_date_that_chose_the_law_is_not_varied(evaluator):
    d = _decide(evaluator, "application_fee", "2017", FEE_2017)
    assert all(c.fact != "application_date" for c in d.counterfactuals)


def test_counterfactuals_can_be_left_out(evaluator):
    d = evaluator.decide(DecisionRequest(policy="maintenance_calculation", version="2012", counterfactuals=False,
                                         facts={**CALCULATION, "gross_weekly_income": 15000}))
    assert d.counterfactuals == [] and "What would change it" not in d.rationale


def test_every_counterfactual_gives_the_outcome_it_claims(evaluator):
    d = _decide(evaluator, "maintenance_calculation", "2012", {**CALCULATION, "gross_weekly_income": 15000})
    for c in d.counterfactuals:
        for value in (c.value if isinstance(c.value, list) and c.fact != "abuse_reported_to" else [c.value]):
            again = _decide(evaluator, "maintenance_calculation", "2012", {**CALCULATION, "gross_weekly_income": 15000,
                                                                            c.fact: value})
            assert again.outcome == c.outcome, c.text


def test_next_questions_ask_first_what_settles_the_decision(evaluator):
    """A prisoner whose receiving parent has not said whether to enforce: that answer alone can
    settle it (no: NOT_ENFORCED), so it is asked before the income."""
    d = _decide(evaluator, "prisoner_liability", "review-2023", {"custody_status": "serving_sentence"})
    assert d.outcome == "UNDETERMINED"
    names = [m.name for m in d.missing_facts]
    assert names[0] == "receiving_parent_chooses_to_enforce"
    assert set(names) >= {"gross_weekly_income", "receives_prescribed_benefit"}
    assert all(m.question for m in d.missing_facts)
    assert "Needed to decide (ask in this order):\n1. Does the receiving parent want maintenance enforced" in d.rationale


def test_dates_given_as_date_objects_are_varied_like_text(evaluator):
    """The Python API may pass dates as `datetime.date`; the thresholds found are the same."""
    facts = {"application_route": "direct_pay", "applicant_in_northern_ireland": False,
             "application_date": "2019-03-15", "applicant_date_of_birth": "1985-07-20",
             "abuse_of_applicant": False, "abuse_reported_to": [], "declaration": "not_made"}
    as_text = evaluator.decide(DecisionRequest(policy="application_fee", version="2017", facts=facts))
    as_dates = evaluator.decide(DecisionRequest(policy="application_fee", version="2017", facts={
        **facts, "application_date": dt.date(2019, 3, 15), "applicant_date_of_birth": dt.date(1985, 7, 20)}))
    assert [c.text for c in as_dates.counterfactuals] == [c.text for c in as_text.counterfactuals]
