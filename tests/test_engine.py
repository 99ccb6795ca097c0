"""The engine in-process: version choice, fact checking, three-valued rules,
first-hit resolution, date arithmetic, determinism and session hygiene."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.engine.decision import DecisionRequest, RequestError
from rules.engine.hitpolicy import Hit, first_hit
from rules.language import values

ADULT = dict(application_route="direct_pay", applicant_in_northern_ireland=False, application_date="2019-03-15",
             applicant_date_of_birth="1985-07-20", abuse_of_applicant=False, child_abuse_disclosed=False,
             child_abuse_witnessed=False, abuse_reported_to=[], declaration="not_made")


def decide(evaluator, version="2017", **facts):
    return evaluator.decide(DecisionRequest(policy="application_fee", version=version, facts={**ADULT, **facts}))


def violations(evaluator, **request) -> dict[str, str]:
    with pytest.raises(RequestError) as caught:
        evaluator.decide(DecisionRequest(**{"policy": "application_fee", **request}))
    return {v.field: v.description for v in caught.value.violations}


# --- dates: the engine's integer encoding keeps calendar meaning ------------------

def _age(born: dt.date, on: dt.date) -> int:
    """Completed years; a 29 February birthday is reached on 1 March in other years."""
    years = on.year - born.year
    birthday_passed = (on.month, on.day) >= (born.month, born.day)
    if born.month == 2 and born.day == 29 and on.month == 2 and on.day == 28:
        birthday_passed = False
    return years if birthday_passed else years - 1


@given(st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31)), st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31)))
def test_under_age_by_date_code_matches_calendar_age(born, on):
    under_19 = values.date_code(on) < values.date_code(born) + values.months_code(years=19)
    assert under_19 == (_age(born, on) < 19)


@given(st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)))
def test_date_code_round_trips(day):
    assert values.date_from_code(values.date_code(day)) == day


def test_leap_day_birthday_is_reached_on_1_march(evaluator):
    on_28_feb = decide(evaluator, applicant_date_of_birth="2000-02-29", application_date="2019-02-28")
    on_1_mar = decide(evaluator, applicant_date_of_birth="2000-02-29", application_date="2019-03-01")
    assert on_28_feb.outcome == "WAIVED" and on_28_feb.trail[0].rule_id == "waived.under-19"
    assert on_1_mar.outcome == "FEE_PAYABLE"


# --- first hit over three-valued verdicts -------------------------------------------

def test_first_true_rule_decides():
    assert first_hit([(0, "A"), (1, "B")], true={1}, false={0}) == Hit(1)


def test_unknown_earlier_rule_with_other_conclusion_blocks():
    assert first_hit([(0, "A"), (1, "B")], true={1}, false=set()) == Hit(None, (0,))


def test_unknown_earlier_rule_with_same_conclusion_does_not_block():
    assert first_hit([(0, "A"), (1, "A")], true={1}, false=set()) == Hit(1)


def test_nothing_true_and_nothing_unknown_is_no_hit():
    assert first_hit([(0, "A")], true=set(), false={0}) == Hit(None)


# --- choosing the version -------------------------------------------------------------

@pytest.mark.parametrize("as_at, version", [
    ("2014-06-30", "2014"), ("2017-07-31", "2014"), ("2017-08-01", "2017"),
    ("2024-02-25", "2017"), ("2024-02-26", "2024"), ("2031-01-01", "2024")])
def test_as_at_picks_the_enacted_version_in_force(evaluator, as_at, version):
    decision = evaluator.decide(DecisionRequest(policy="application_fee", as_at=as_at, facts=ADULT))
    assert decision.policy.version == version
    assert decision.as_at == dt.date.fromisoformat(as_at)


def test_proposed_version_only_when_named(evaluator, bundle):
    assert all(c.version.status.value == "enacted" for c in
               [bundle.in_force("application_fee", dt.date(y, 6, 1)) for y in range(2015, 2030)])
    assert decide(evaluator, version="review-2023").policy.status == "proposed"


def test_application_date_picks_the_version_when_no_date_is_given(evaluator):
    request = DecisionRequest(policy="application_fee", facts={**ADULT, "application_date": "2015-01-10"})
    assert evaluator.decide(request).policy.version == "2014"


def test_today_is_the_default_as_at(bundle):
    from rules.decide.evaluator import Evaluator
    pinned = Evaluator(bundle, today=lambda: dt.date(2016, 1, 1))
    facts = {k: v for k, v in ADULT.items() if k != "application_date"}
    assert pinned.decide(DecisionRequest(policy="application_fee", facts=facts)).policy.version == "2014"


def test_selection_errors_name_the_field(evaluator):
    assert "unknown policy" in violations(evaluator, policy="school_fees")["policy"]
    assert "unknown version '2099'" in violations(evaluator, version="2099")["version"]
    assert "not both" in violations(evaluator, version="2014", as_at="2015-01-01")["version"]
    assert "no enacted version" in violations(evaluator, as_at="2010-01-01")["as_at"]


# --- facts ----------------------------------------------------------------------------

def test_every_bad_fact_is_reported_by_field(evaluator):
    found = violations(evaluator, version="2017", facts={
        "application_date": "15/03/2019", "abuse_of_applicant": "yes", "declaration": "sometime",
        "abuse_reported_to": ["police", "astrologer"], "favourite_colour": "blue",
        "applicant_date_of_birth": "2019-02-30"})
    assert found == {
        "facts.application_date": "expected a date as YYYY-MM-DD",
        "facts.applicant_date_of_birth": "expected a date as YYYY-MM-DD",
        "facts.abuse_of_applicant": "expected true or false",
        "facts.declaration": "expected one of: at_application, written_before_payment, written_after_payment, not_made",
        "facts.abuse_reported_to": found["facts.abuse_reported_to"],
        "facts.favourite_colour": "unknown fact for application_fee",
    }
    assert "list items must be among" in found["facts.abuse_reported_to"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1.5, True, "3"])
def test_non_integral_numbers_are_rejected(bad):
    from rules.language.model import Fact, FactType
    with pytest.raises(values.FactValueError):
        values.parse(Fact(name="income", type=FactType.MONEY, description="x"), bad)


def test_null_fact_means_not_known(evaluator):
    decision = decide(evaluator, abuse_of_applicant=None, abuse_reported_to=["police"], declaration="at_application")
    assert decision.outcome == "UNDETERMINED"
    assert [m.name for m in decision.missing_facts] == ["abuse_of_applicant"]


def test_an_unknown_fact_that_cannot_change_the_outcome_is_not_asked_for(evaluator):
    # Reported to nobody and no declaration: payable whether or not there was abuse.
    decision = decide(evaluator, abuse_of_applicant=None)
    assert decision.outcome == "FEE_PAYABLE" and decision.missing_facts == []


def test_facts_of_other_versions_are_accepted_and_listed_as_ignored(evaluator):
    decision = decide(evaluator, version="2024")
    assert decision.outcome == "NO_FEE"
    assert "abuse_reported_to" in decision.ignored_facts and "application_route" not in decision.ignored_facts


def test_missing_facts_carry_description_and_question(evaluator):
    decision = decide(evaluator, application_route=None)
    assert decision.outcome == "UNDETERMINED"
    route = next(m for m in decision.missing_facts if m.name == "application_route")
    assert route.description and route.question.endswith("?")


# --- the engine's trail ------------------------------------------------------------------

def test_trail_shows_the_derivation_and_the_facts_the_engine_matched(evaluator):
    decision = decide(evaluator, child_abuse_disclosed=True, child_abuse_witnessed=True,
                      child_abuser="partner_family_member", abuse_reported_to=["marac"], declaration="at_application")
    assert [s.rule_id for s in decision.trail] == ["victim.witnessed-child-abuse", "waived.domestic-abuse"]
    assert {f.name: f.value for f in decision.trail[0].facts_used} == {
        "child_abuse_witnessed": True, "child_abuser": "partner_family_member"}
    assert decision.trail[0].concludes == "applicant_is_victim = true"
    assert "marac" in decision.trail[1].because


def test_decisions_are_deterministic(evaluator):
    first = decide(evaluator, abuse_of_applicant=True, abuse_reported_to=["police"], declaration="at_application")
    second = decide(evaluator, abuse_of_applicant=True, abuse_reported_to=["police"], declaration="at_application")
    assert first.golden() == second.golden()
    assert first.decision_id != second.decision_id


def test_sessions_are_deleted_beyond_the_engine_session_cap(evaluator):
    # durable_rules keeps at most 1024 live sessions per ruleset; a leak would fail here.
    for i in range(1100):
        assert decide(evaluator, abuse_of_applicant=bool(i % 2), declaration="at_application",
                      abuse_reported_to=["police"]).outcome in ("WAIVED", "FEE_PAYABLE")


def test_engine_errors_carry_no_fact_values(bundle):
    from rules.engine import durable_host
    ruleset = bundle.policies["application_fee"]["2017"].ruleset
    with pytest.raises(durable_host.EngineError) as caught:  # no rule handles a fact not tagged _t: w
        durable_host.evaluate(ruleset, {"_t": "other", "abuse_of_applicant": "SECRET-VALUE"})
    assert "SECRET-VALUE" not in str(caught.value) and caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def _seen(state: dict, assert_fact) -> None:
    state["seen"] = True


def _tiny_ruleset(name: str) -> tuple[str, dict, dict]:
    return name, {"seen": {"all": [{"m": {"_t": "w"}}], "run": _seen}}, {"_t": "w"}


def test_a_ruleset_the_engine_refuses_is_an_engine_error(monkeypatch):
    from rules.engine import durable_host

    def refuse(name, text):
        raise Exception("Could not create ruleset, error code: 113")
    monkeypatch.setattr(durable_host._core, "create_ruleset", refuse)
    name, rules, fact = _tiny_ruleset("test.refused")
    with pytest.raises(durable_host.EngineError, match=r"cannot take ruleset test\.refused.*113"):
        durable_host.register(name, rules, fact)
    assert name not in durable_host._rulesets


# glibc fills fresh allocations with the complement of MALLOC_PERTURB_'s byte: 246 gives 0x09 and
# 243 gives 0x0C, the two values durable_rules mistakes for an expression where it reads a field
# it never set (the node of an $or directly inside $iany). The tunables keep the engine's growing
# node pool on the perturbed heap (not in fresh zeroed pages): with the compiler's old form for
# any_in, the fee rulesets were refused (error 102) on load or in most of the tries below.
_PERTURBED_LOAD = """
import json
import durable_rules_engine as core
from rules.engine import durable_host
from rules.engine.loader import load_bundle

def refusals(definition, tries=20):
    text, refused = json.dumps(definition), 0
    for _ in range(tries):
        try:
            core.create_ruleset(f"again-{next(durable_host._session_ids)}", text)
        except Exception:
            refused += 1
    return refused

inner_or = {"r": {"all": [{"m": {"$and": [{"_t": "req"}, {"$iany": {"xs": {"$or": [{"$i": "a"}, {"$i": "b"}]}}}]}}]}}
load_bundle()
shipped = {name: refusals(durable_host.registered(name)[0]) for name in sorted(durable_host._rulesets)}
print(json.dumps({"inner_or": refusals(inner_or), "shipped": shipped}))
"""


@pytest.mark.parametrize("perturb", ["246", "243"])
def test_every_shipped_ruleset_is_taken_whatever_the_heap_holds(perturb):
    env = {**os.environ, "MALLOC_PERTURB_": perturb,
           "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1000000000:glibc.malloc.top_pad=0"}
    run = subprocess.run([sys.executable, "-c", _PERTURBED_LOAD], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["inner_or"] > 0  # the heap is perturbed enough to catch the engine's bug
    assert len(seen["shipped"]) >= 18 and not any(seen["shipped"].values()), seen["shipped"]


def test_any_in_compiles_to_one_iany_per_value(bundle):
    """The form durable_rules can always take (see the test above): no $or inside an $iany."""
    from rules.engine import durable_host

    fee = next(p for p in bundle.versions("application_fee") if p.version.version == "2017")
    definition, _ = durable_host.registered(fee.ruleset)

    def walk(expr, inside_iany=False):
        if isinstance(expr, dict):
            for key, value in expr.items():
                assert not (inside_iany and key == "$or"), expr
                yield from [key] if key == "$iany" else []
                yield from walk(value, inside_iany or key in ("$iany", "$iall"))
        elif isinstance(expr, list):
            for item in expr:
                yield from walk(item, inside_iany)
    assert sum(1 for spec in definition.values() for p in spec["all"] for _ in walk(p["m"])) >= 11


@pytest.mark.parametrize("version", ["2014", "2017"])
def test_a_report_to_every_appropriate_person_decides_as_a_report_to_one(evaluator, bundle, version):
    """Each value of the list is its own engine node: a fact that matches all of them at once
    (the most the engine walks for one fact) decides as a fact that matches one does."""
    fee = next(p for p in bundle.versions("application_fee") if p.version.version == version)
    everyone = list(fee.version.parameters["appropriate_persons"].value)
    asked = dict(abuse_of_applicant=True, declaration="at_application")
    one, every = decide(evaluator, version, abuse_reported_to=["police"], **asked), \
        decide(evaluator, version, abuse_reported_to=everyone, **asked)
    assert one.outcome == every.outcome == "WAIVED"
    assert [s.rule_id for s in every.trail] == [s.rule_id for s in one.trail]


def test_a_rule_whose_condition_holds_two_ways_is_in_the_trail_once(evaluator):
    """Both branches of collect-and-pay.agreed's `any` hold: the engine fires the rule for each."""
    decision = evaluator.decide(DecisionRequest(policy="service_type", version="2012", facts=dict(
        decision_date="2019-05-01", receiving_parent_requests="collect_and_pay",
        paying_parent_requests="collect_and_pay", paying_parent_agrees_to_collect_and_pay=True,
        abuse_disclosed=False)))
    assert decision.outcome == "COLLECT_AND_PAY"
    assert [s.rule_id for s in decision.trail] == [
        "charges.in-force", "charges.in-force-receiving", "collect-and-pay.agreed"]
