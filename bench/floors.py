"""Compute floors for the benchmark: the decision logic of some policy versions hand-written in plain
Python (bench only, never used by the service).

FLOORS maps (policy, version) to a function of a request's raw facts (as in tests/golden: dates as
"YYYY-MM-DD", money in pence, lists as lists) that returns (outcome, amount_pence or None). Each follows
its policy file's rules in first-hit order; figures are the policy files' parameters, named alike. Only
complete requests are handled: a missing fact the decision needs raises KeyError. Outputs and item
verdicts are not returned. `agreement` checks a floor against the golden (reviewed engine) decisions.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import yaml

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden"

# application_fee/2014.yaml and 2017.yaml
APPLICATION_FEE_PENCE = 2000
FEE_WAIVER_AGE_YEARS = 19
APPROPRIATE_PERSONS = frozenset({
    "court", "police", "medical_professional", "social_services", "marac", "specialist_domestic_violence_service",
    "employer", "educational_services", "local_authority", "legal_professional", "specialist_support_organisation"})
TIMELY_DECLARATIONS = frozenset({"at_application", "written_before_payment"})
VICTIM_CHILD_ABUSERS = frozenset({"current_or_former_partner", "applicant_family_member", "partner_family_member"})

# abuse_evidence/2018.yaml (social_services_letter is accepted by its own rule, as a public authority's letter)
ACCEPTED_TYPES = frozenset({
    "conviction", "police_caution", "criminal_proceedings", "protective_injunction", "marac_letter", "finding_of_fact",
    "health_professional_letter", "refuge_letter", "police_bail", "refuge_refusal", "health_referral_letter",
    "dv_protection_notice", "bind_over", "arrest", "expert_report", "idva_letter", "isva_letter", "housing_letter",
    "public_authority_letter", "home_office_leave", "social_services_letter"})
REFER_TYPES = frozenset({"financial_abuse"})
SUPPORT_ORGANISATION_MIN_MONTHS = 6

# maintenance_calculation/2012.yaml; percentages in tenths of a percent, so that the arithmetic stays exact
NIL_RATE_INCOME_BELOW = 700
FLAT_RATE = 700
FLAT_RATE_INCOME_LIMIT = 10000
REDUCED_RATE_INCOME_BELOW = 20000
BASIC_PLUS_THRESHOLD = 80000
INCOME_CAP = 300000
OTHER_CHILDREN_REDUCTIONS = (0, 110, 140, 160)  # relevant other children 0, 1, 2, 3 or more
REDUCED_RATES = ((170, 250, 310), (141, 212, 264), (132, 199, 249), (124, 189, 238))  # [other children][qualifying - 1]
BASIC_RATES = (120, 160, 190)  # qualifying children 1, 2, 3 or more
BASIC_PLUS_RATES = (90, 120, 150)
SHARED_CARE_ONE_SEVENTH_NIGHTS = 52
SHARED_CARE_TWO_SEVENTHS_NIGHTS = 104
SHARED_CARE_THREE_SEVENTHS_NIGHTS = 156
SHARED_CARE_HALF_NIGHTS = 175
EQUAL_CARE_EXTRA_REDUCTION = 700

Floor = Callable[[dict], tuple[str, int | None]]


def _half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator (both >= 0) to the nearest whole number, halves up (rules/language/arith.py)."""
    return (2 * numerator + denominator) // (2 * denominator)


def _not_applicable(f: dict) -> bool:
    """Rules not-applicable.family-based and not-applicable.northern-ireland of every application_fee version."""
    return f["application_route"] == "family_based" or f["applicant_in_northern_ireland"]


def _under_waiver_age(f: dict) -> bool:
    """Rule waived.under-19 (application_fee/2014, 2017): application date before the date of birth plus 19
    years, compared as (year, month, day) like the engine, so 29 February plus a year falls after 28 February."""
    applied = dt.date.fromisoformat(f["application_date"])
    born = dt.date.fromisoformat(f["applicant_date_of_birth"])
    return (applied.year, applied.month, applied.day) < (born.year + FEE_WAIVER_AGE_YEARS, born.month, born.day)


def _victim_2014(f: dict) -> bool:
    """Derived applicant_is_victim (default false) in application_fee/2014.yaml: victim.abuse-of-applicant."""
    return f["abuse_of_applicant"]


def _victim_2017(f: dict) -> bool:
    """Derived applicant_is_victim (default false) in application_fee/2017.yaml: victim.abuse-of-applicant, or
    victim.witnessed-child-abuse (abuse of their child by a partner or a family member, witnessed)."""
    return f["abuse_of_applicant"] or (f["child_abuse_witnessed"] and f["child_abuser"] in VICTIM_CHILD_ABUSERS)


def _fee_rules(f: dict, victim: Callable[[dict], bool]) -> tuple[str, int | None]:
    """The rules of application_fee/2014.yaml and 2017.yaml, which differ only in who is a victim. The four
    FEE_PAYABLE rules share one conclusion (outcome and amount), so they are one return."""
    if _not_applicable(f):
        return "NOT_APPLICABLE", None
    if _under_waiver_age(f):
        return "WAIVED", None
    if (victim(f) and any(person in APPROPRIATE_PERSONS for person in f["abuse_reported_to"])
            and f["declaration"] in TIMELY_DECLARATIONS):
        return "WAIVED", None
    return "FEE_PAYABLE", APPLICATION_FEE_PENCE


def application_fee_2014(f: dict) -> tuple[str, int | None]:
    """application_fee/2014.yaml."""
    return _fee_rules(f, _victim_2014)


def application_fee_2017(f: dict) -> tuple[str, int | None]:
    """application_fee/2017.yaml."""
    return _fee_rules(f, _victim_2017)


def application_fee_2024(f: dict) -> tuple[str, int | None]:
    """application_fee/2024.yaml: the fee is abolished."""
    return ("NOT_APPLICABLE", None) if _not_applicable(f) else ("NO_FEE", None)


def service_type_2012(f: dict) -> tuple[str, int | None]:
    """service_type/2012.yaml (the collection charges are outputs, not worked out here)."""
    receiving_asks = f["receiving_parent_requests"] == "collect_and_pay"
    if f["paying_parent_requests"] == "collect_and_pay" or (receiving_asks and f["paying_parent_agrees_to_collect_and_pay"]):
        return "COLLECT_AND_PAY", None
    # derived unlikely_to_pay (default false): unlikely-to-pay.earlier-non-compliance, .late-after-warning
    if receiving_asks and (f["earlier_cms_non_compliance"] or (
            f["direct_pay_payment_missed_or_late"] and f["warning_notice_in_previous_12_months"])):
        return "COLLECT_AND_PAY", None
    if f["abuse_disclosed"] and f["abuse_disclosed_by"] == "receiving_parent" and receiving_asks:
        return "REFER_TO_DECISION_MAKER", None
    return "DIRECT_PAY", None  # direct-pay.abuse-disclosed or direct-pay: they differ in actions only


def _evidence_item_2018(item: dict) -> str:
    """The item rules of evidence_items in abuse_evidence/2018.yaml."""
    if not item["concerns_other_party"]:
        return "REJECTED"
    kind = item["type"]
    if kind in REFER_TYPES:
        return "REFER_TO_DECISION_MAKER"
    if kind in ACCEPTED_TYPES:
        return "ACCEPTED"
    if kind == "undertaking":
        return "REJECTED" if item["cross_undertaking_given"] else "ACCEPTED"
    if kind == "support_organisation_letter":
        complete = (item["organisation_months_operating"] >= SUPPORT_ORGANISATION_MIN_MONTHS and item["letter_gives_judgement"]
                    and item["letter_states_matters_relied_on"] and item["letter_states_support_given"])
        return "ACCEPTED" if complete else "REJECTED"
    return "REJECTED"


def abuse_evidence_2018(f: dict) -> tuple[str, int | None]:
    """abuse_evidence/2018.yaml: every item judged, then verified / refer / not-verified."""
    verdicts = {_evidence_item_2018(item) for item in f["evidence_items"]}
    if "ACCEPTED" in verdicts:
        return "VERIFIED", None
    if "REFER_TO_DECISION_MAKER" in verdicts:
        return "REFER_TO_DECISION_MAKER", None
    return "NOT_VERIFIED", None


def caseworker_routing_2024(f: dict) -> tuple[str, int | None]:
    """caseworker_routing/2024.yaml, revision 2: the safety steps come first, disclosure or not (the
    flags are not outcomes; the specialist rules differ in their actions only)."""
    if not f["feels_safe_now"]:
        return "EMERGENCY_ESCALATION", None
    # derived meets_specialist_criteria (default false): the three specialist.criterion-* rules
    specialist = f["abuse_disclosed"] and f["service_type"] == "collect_and_pay" and (
        f["with_advanced_customer_support_for_abuse"] or f["police_involved"] or (
            f["violence_or_control_mentioned"] and not f["concerns_resolved_by_conversation"]
            and f["caseworker_sees_significant_risk"]))
    if f["caseworker_has_concerns"]:
        return ("SPECIALIST_CASE_TEAM" if specialist else "SAFETY_REVIEW"), None
    if not f["abuse_disclosed"]:
        return "STANDARD_QUEUE", None
    return ("SPECIALIST_CASE_TEAM" if specialist else "STANDARD_QUEUE"), None


def _rates_2012(f: dict, children: list[dict]) -> tuple[str, int]:
    """maintenance_calculation/2012.yaml from rule nil.category on, for at least one qualifying child;
    derived money values rounded half up where the file derives them."""
    if f["nil_rate_category"] != "none":
        return "NIL_RATE", 0
    if f["receives_prescribed_benefit"]:  # before the income test: reg 45(2) (revision 2)
        shared = any(child["shared_care_nights"] >= SHARED_CARE_ONE_SEVENTH_NIGHTS for child in children)
        return "FLAT_RATE", 0 if shared else FLAT_RATE
    income = f["gross_weekly_income"]
    if income < NIL_RATE_INCOME_BELOW:
        return "NIL_RATE", 0
    if income <= FLAT_RATE_INCOME_LIMIT:
        return "FLAT_RATE", FLAT_RATE
    capped = min(income, INCOME_CAP)
    others = min(f["relevant_other_children"], 3)
    column = min(len(children), 3) - 1
    if capped < REDUCED_RATE_INCOME_BELOW:
        outcome = "REDUCED_RATE"
        base = _half_up(FLAT_RATE * 1000 + REDUCED_RATES[others][column] * (capped - FLAT_RATE_INCOME_LIMIT), 1000)
    else:
        adjusted = _half_up(capped * (1000 - OTHER_CHILDREN_REDUCTIONS[others]), 1000)
        if adjusted <= BASIC_PLUS_THRESHOLD:
            outcome, base = "BASIC_RATE", _half_up(BASIC_RATES[column] * adjusted, 1000)
        else:
            outcome = "BASIC_PLUS_RATE"
            base = _half_up(BASIC_RATES[column] * BASIC_PLUS_THRESHOLD
                            + BASIC_PLUS_RATES[column] * (adjusted - BASIC_PLUS_THRESHOLD), 1000)
    # shared-care.reduction: each child's share (base / children) less 1/7, 2/7, 3/7, or 1/2 and £7
    sevenths = halves = 0
    for child in children:
        nights = child["shared_care_nights"]
        if nights >= SHARED_CARE_HALF_NIGHTS:
            halves += 1
        elif nights >= SHARED_CARE_THREE_SEVENTHS_NIGHTS:
            sevenths += 3
        elif nights >= SHARED_CARE_TWO_SEVENTHS_NIGHTS:
            sevenths += 2
        elif nights >= SHARED_CARE_ONE_SEVENTH_NIGHTS:
            sevenths += 1
    reduction = _half_up(base * (2 * sevenths + 7 * halves), 14 * len(children)) + EQUAL_CARE_EXTRA_REDUCTION * halves
    return outcome, max(base - reduction, FLAT_RATE)  # amount.minimum / amount.weekly


def maintenance_calculation_2012(f: dict) -> tuple[str, int | None]:
    """maintenance_calculation/2012.yaml."""
    children = f["qualifying_children"]
    if not children:
        return "NO_QUALIFYING_CHILD", None
    if f["paying_parent_is_prisoner"]:
        return "NIL_RATE", 0
    return _rates_2012(f, children)


def prisoner_liability_2012(f: dict) -> tuple[str, int | None]:
    """prisoner_liability/2012.yaml, with maintenance_calculation/2012 worked out inline (it is used
    with paying_parent_is_prisoner set to false)."""
    if f["custody_status"] != "not_in_custody":
        return "NIL_RATE", 0
    children = f["qualifying_children"]
    if not children:
        return "NO_QUALIFYING_CHILD", None  # no calculation, so no amount (revision 2)
    return "LIABLE", _rates_2012(f, children)[1]


FLOORS: dict[tuple[str, str], Floor] = {
    ("application_fee", "2014"): application_fee_2014,
    ("application_fee", "2017"): application_fee_2017,
    ("application_fee", "2024"): application_fee_2024,
    ("service_type", "2012"): service_type_2012,
    ("abuse_evidence", "2018"): abuse_evidence_2018,
    ("caseworker_routing", "2024"): caseworker_routing_2024,
    ("prisoner_liability", "2012"): prisoner_liability_2012,
    ("maintenance_calculation", "2012"): maintenance_calculation_2012,
}


def agreement(policy: str, version: str) -> tuple[int, int, list[str]]:
    """(agreeing, compared, names of disagreeing case files) of the floor against the golden cases
    tests/golden/<policy>/<version>/*.yaml that are not UNDETERMINED; a KeyError is a disagreement."""
    floor, agreeing, compared, disagreeing = FLOORS[policy, version], 0, 0, []
    for path in sorted((GOLDEN / policy / version).glob("*.yaml")):
        case = yaml.safe_load(path.read_text())
        expected = case.get("expected") or {}
        outcome = expected.get("outcome", case.get("expect_outcome"))
        if outcome == "UNDETERMINED":
            continue
        amount = expected["amount_pence"] if "amount_pence" in expected else case.get("expect_amount_pence")
        compared += 1
        try:
            got = floor(case["request"]["facts"])
        except KeyError:
            got = None
        if got == (outcome, amount):
            agreeing += 1
        else:
            disagreeing.append(path.name)
    return agreeing, compared, disagreeing
