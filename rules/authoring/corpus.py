"""`python -m rules corpus --out DIR`: a synthetic, seeded corpus of requests, one file per policy.

Writes `DIR/<policy>.jsonl`, one request a line: `{"facts": {...}, "policy": "..."}` (no version
and no as-at date: the impact report pins each version itself). The cases are made up, never
copied from real ones, but their shape follows the figures the 2023 Independent Review of the
CMS response to domestic abuse gives ("the review", `../shared/seeds/002_*.txt`; paragraph numbers
are its own). Where it gives none the share is **assumed**, and each generator's docstring says
which is which.

Every request is valid for **every** version of its policy: a fact only some versions declare is
sent to all of them (the others accept and ignore it), and values are within every version's
allowed values. Dates are spread over the years the versions cover, so the date that picks a
version falls in each version's period. About 2% of the cases of each domain lack one fact
(absent, or `null`), so that UNDETERMINED decisions appear too.

Deterministic: each policy has its own `random.Random(f"{policy}:{seed}")`, cases are drawn one
after the other, and the JSON is written with sorted keys — the same seed gives byte-identical
files, and the first N cases of a larger corpus are the corpus of N cases.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

DEFAULT_CASES = 10_000
DEFAULT_SEED = 2023
MISSING_SHARE = 0.02  # share of cases that lack one fact (assumed)

Generator = Callable[[random.Random], dict]


# --- drawing helpers -----------------------------------------------------------------------------

def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    """One key, with probability proportional to its weight (insertion order is the draw order)."""
    total = sum(weights.values())
    x = rng.random() * total
    for key, weight in weights.items():
        x -= weight
        if x < 0:
            return key
    return key


def _yes(rng: random.Random, share: float) -> bool:
    return rng.random() < share


def _day(rng: random.Random, first: dt.date, last: dt.date) -> dt.date:
    return first + dt.timedelta(days=rng.randrange((last - first).days + 1))


def _months_before(day: dt.date, months: int) -> dt.date:
    """The same day of the month `months` calendar months earlier (the last day if it has none)."""
    index = day.year * 12 + day.month - 1 - months
    year, month0 = divmod(index, 12)
    for d in range(day.day, 0, -1):
        try:
            return dt.date(year, month0 + 1, d)
        except ValueError:
            continue
    raise AssertionError(day)


def _pounds(rng: random.Random, low: float, high: float) -> int:
    """Whole pence, uniform between two amounts in pounds."""
    return rng.randint(round(low * 100), round(high * 100))


def _drop_one(rng: random.Random, facts: dict) -> dict:
    """With probability MISSING_SHARE, make one fact unknown: absent (half) or null (half)."""
    if not facts or not _yes(rng, MISSING_SHARE):
        return facts
    name = rng.choice(sorted(facts))
    if _yes(rng, 0.5):
        del facts[name]
    else:
        facts[name] = None
    return facts


# --- application_fee -----------------------------------------------------------------------------

APPROPRIATE_PERSONS = {  # weights, assumed (police most often, as in the review's testimony)
    "police": 50, "medical_professional": 22, "specialist_domestic_violence_service": 18,
    "social_services": 12, "court": 10, "specialist_support_organisation": 9, "legal_professional": 8,
    "marac": 5, "local_authority": 5, "employer": 3, "educational_services": 3,
}


def application_fee(rng: random.Random) -> dict:
    """An application to the CMS and what the applicant said about domestic abuse.

    - `application_date`: uniform over 2014-06-30 (the fee begins) to 2025-12-31, so each of the
      2014, 2017 and 2024 versions has cases in its own period (about 27%, 57% and 16%).
    - `application_route`: Direct Pay 60%, Collect & Pay 32%, family-based arrangement 8% (assumed).
    - `applicant_in_northern_ireland`: 2% (assumed).
    - Applicant's age on the application date: 3% are 16 to 20 (uniform in days, so about 2% are
      under 19 and some are days from their 19th birthday); the rest 19 to 60, mean 34 (assumed).
    - Domestic abuse disclosed (of the applicant or their child): 38% of applications before
      May 2018, when the CMS relied on self-reporting (the review, para 111: 38% had an exemption in
      the quarter to December 2017), and 60% from May 2018, when it began asking (para 28: 60% of new
      applicants in the quarter to December 2021 disclosed abuse of themselves or their child).
      Of disclosures: abuse of the applicant 85%; abuse of the child 35% (always when the applicant
      was not abused), witnessed by the applicant in 65% of those, by a current or former partner
      75%, the applicant's family 7%, the partner's family 8%, someone else 10% (assumed).
    - Reported to (disclosures; assumed): one to three appropriate persons 75% (police, medical
      professional, specialist service... weighted as APPROPRIATE_PERSONS), to someone else only
      10%, to nobody 15%.
    - Declaration (disclosures; assumed): at application 85%, written before payment 7%, written
      after payment 5%, not made 3%. Without a disclosure: not made, reported to nobody.
    - `legal_warning_before_abuse_question`: false for 25% (assumed; the review, paras 280-281,
      found the warning read after the abuse question).
    """
    day = _day(rng, dt.date(2014, 6, 30), dt.date(2025, 12, 31))
    if _yes(rng, 0.03):
        age_days = rng.randint(16 * 365 + 4, 20 * 365 + 5)
    else:
        age_days = round(365.25 * min(60.0, max(19.05, rng.gauss(34, 8))))
    facts: dict[str, Any] = {
        "application_date": day.isoformat(),
        "application_route": _pick(rng, {"direct_pay": 60, "collect_and_pay": 32, "family_based": 8}),
        "applicant_in_northern_ireland": _yes(rng, 0.02),
        "applicant_date_of_birth": (day - dt.timedelta(days=age_days)).isoformat(),
    }
    disclosed = _yes(rng, 0.38 if day < dt.date(2018, 5, 1) else 0.60)
    if disclosed:
        applicant = _yes(rng, 0.85)
        child = not applicant or _yes(rng, 0.35)
        facts["abuse_of_applicant"] = applicant
        facts["child_abuse_disclosed"] = child
        facts["child_abuse_witnessed"] = child and _yes(rng, 0.65)
        if child:
            facts["child_abuser"] = _pick(rng, {"current_or_former_partner": 75, "applicant_family_member": 7,
                                                "partner_family_member": 8, "someone_else": 10})
        reported = _pick(rng, {"appropriate": 75, "someone_else": 10, "nobody": 15})
        if reported == "appropriate":
            persons = _pick_some(rng, APPROPRIATE_PERSONS, rng.choice((1, 1, 1, 2, 2, 3)))
            if _yes(rng, 0.05):
                persons.append("someone_else")
        else:
            persons = ["someone_else"] if reported == "someone_else" else []
        facts["abuse_reported_to"] = persons
        facts["declaration"] = _pick(rng, {"at_application": 85, "written_before_payment": 7,
                                          "written_after_payment": 5, "not_made": 3})
    else:
        facts.update(abuse_of_applicant=False, child_abuse_disclosed=False, child_abuse_witnessed=False,
                     abuse_reported_to=[], declaration="not_made")
    facts["legal_warning_before_abuse_question"] = not _yes(rng, 0.25)
    return facts


def _pick_some(rng: random.Random, weights: Mapping[str, float], n: int) -> list[str]:
    """n different keys, drawn by weight without replacement, in the order drawn."""
    left, out = dict(weights), []
    for _ in range(min(n, len(left))):
        key = _pick(rng, left)
        out.append(key)
        del left[key]
    return out


# --- abuse evidence (its own domain, and inside service_type) -------------------------------------

EVIDENCE_TYPES = {  # weights, assumed: injunctions, health letters, convictions and arrests most common
    "protective_injunction": 12, "health_professional_letter": 10, "conviction": 8, "arrest": 8,
    "social_services_letter": 7, "police_caution": 6, "financial_abuse": 6, "idva_letter": 6,
    "support_organisation_letter": 6, "criminal_proceedings": 5, "marac_letter": 5, "refuge_letter": 4,
    "police_bail": 4, "health_referral_letter": 4, "dv_protection_notice": 4, "undertaking": 3,
    "finding_of_fact": 3, "housing_letter": 3, "bind_over": 2, "public_authority_letter": 2,
    "refuge_refusal": 1, "expert_report": 1, "isva_letter": 1, "home_office_leave": 1,
}


def evidence_item(rng: random.Random, decision_date: dt.date) -> dict:
    """One evidence document (assumed throughout; the review gives no shares).

    - `type`: weighted as EVIDENCE_TYPES (every type of the 2018 list, some not on earlier lists).
    - `document_date`: 40% within 24 months of the decision date, 30% 24 to 60 months, 30% 60 to 180
      months; 4% exactly 24 or 60 months before, or one day more (the time limits' edges).
    - `concerns_other_party`: 92% true.
    - The type's own facts: a conviction is spent 25%; an injunction in force 50%; a
      cross-undertaking given 20%; a MARAC letter from the chair 50% and naming a high-risk referral
      70%; a support organisation operating 1 to 5 months 5% (else 6 to 240), its letter giving its
      judgement 90%, the matters relied on 85%, the support given 85%.
    - 2% of items lack one of these facts.
    """
    kind = _pick(rng, EVIDENCE_TYPES)
    if _yes(rng, 0.04):
        document = _months_before(decision_date, rng.choice((24, 60))) - dt.timedelta(days=rng.choice((0, 1)))
    else:
        band = _pick(rng, {"24": 40, "60": 30, "180": 30})
        low, high = {"24": (0, 24), "60": (24, 60), "180": (60, 180)}[band]
        document = decision_date - dt.timedelta(days=rng.randint(round(low * 30.44), round(high * 30.44) - 1))
    item: dict[str, Any] = {"type": kind, "document_date": document.isoformat(),
                            "concerns_other_party": _yes(rng, 0.92)}
    if kind == "conviction":
        item["conviction_spent"] = _yes(rng, 0.25)
    elif kind == "protective_injunction":
        item["injunction_in_force"] = _yes(rng, 0.5)
    elif kind == "undertaking":
        item["cross_undertaking_given"] = _yes(rng, 0.2)
    elif kind == "marac_letter":
        item["from_marac_chair"] = _yes(rng, 0.5)
        item["referred_as_high_risk_victim"] = _yes(rng, 0.7)
    elif kind == "support_organisation_letter":
        item["organisation_months_operating"] = rng.randint(1, 5) if _yes(rng, 0.05) else rng.randint(6, 240)
        item["letter_gives_judgement"] = _yes(rng, 0.9)
        item["letter_states_matters_relied_on"] = _yes(rng, 0.85)
        item["letter_states_support_given"] = _yes(rng, 0.85)
    if _yes(rng, 0.02):
        del item[rng.choice(sorted(item))]
    return item


def abuse_evidence(rng: random.Random) -> dict:
    """A bundle of evidence of domestic abuse to be judged against the Regulation 33 list.

    - `decision_date`: uniform over 2013-04-01 (the first list) to 2025-12-31, so each of the
      2013, 2014, 2016 and 2018 versions has cases in its own period.
    - Number of items: none 3%, one 50%, two 30%, three 12%, four 5% (assumed); each item as
      `evidence_item`.
    """
    day = _day(rng, dt.date(2013, 4, 1), dt.date(2025, 12, 31))
    count = int(_pick(rng, {"0": 3, "1": 50, "2": 30, "3": 12, "4": 5}))
    return {"decision_date": day.isoformat(), "evidence_items": [evidence_item(rng, day) for _ in range(count)]}


# --- service_type --------------------------------------------------------------------------------

def service_type(rng: random.Random) -> dict:
    """Which service type each parent asks for, compliance history, abuse disclosed, evidence.

    - `decision_date`: uniform over 2013-04-01 to 2025-12-31 (charges begin 2014-08-11; some cases
      fall before, when Collect & Pay had no charges; a version of abuse_evidence is in force on
      every date).
    - Receiving parent asks for Collect & Pay 40%, paying parent 5%; the paying parent agrees to
      Collect & Pay 20% (assumed).
    - Non-compliance on an earlier CMS arrangement 15% (assumed); a Direct Pay payment missed or
      more than 5 working days late 30% (assumed, after the review para 131: about half of new
      Direct Pay arrangements are not sustained or not effective); a warning notice in the previous
      12 months 40% of those with a missed payment, 3% of the others (assumed).
    - Domestic abuse disclosed 55% (the review, para 111: 54% of receiving parents said they had
      experienced abuse from the paying parent), by the receiving parent 85%, the paying parent 15%
      (assumed; para 257 reports abuse alleged of both fathers and mothers).
    - Evidence (`evidence_items`, judged by abuse_evidence): none without a disclosure; with one by
      the receiving parent, none 45%, one 35%, two 15%, three 5%; by the paying parent, none 70%,
      one 30% (assumed); each item as `evidence_item`.
    """
    day = _day(rng, dt.date(2013, 4, 1), dt.date(2025, 12, 31))
    missed = _yes(rng, 0.30)
    facts: dict[str, Any] = {
        "decision_date": day.isoformat(),
        "receiving_parent_requests": "collect_and_pay" if _yes(rng, 0.40) else "direct_pay",
        "paying_parent_requests": "collect_and_pay" if _yes(rng, 0.05) else "direct_pay",
        "paying_parent_agrees_to_collect_and_pay": _yes(rng, 0.20),
        "earlier_cms_non_compliance": _yes(rng, 0.15),
        "direct_pay_payment_missed_or_late": missed,
        "warning_notice_in_previous_12_months": _yes(rng, 0.40 if missed else 0.03),
        "abuse_disclosed": _yes(rng, 0.55),
    }
    count = 0
    if facts["abuse_disclosed"]:
        by = "receiving_parent" if _yes(rng, 0.85) else "paying_parent"
        facts["abuse_disclosed_by"] = by
        weights = {"0": 45, "1": 35, "2": 15, "3": 5} if by == "receiving_parent" else {"0": 70, "1": 30}
        count = int(_pick(rng, weights))
    facts["evidence_items"] = [evidence_item(rng, day) for _ in range(count)]
    return facts


# --- caseworker_routing --------------------------------------------------------------------------

def caseworker_routing(rng: random.Random) -> dict:
    """A call with a customer: safety, the case's service type, and the markers of a complex case.

    - `abuse_disclosed`: 60% (the review, para 28: 60% of new applicants disclosed abuse).
    Of disclosures (assumed unless cited):
    - feels safe now 92%; the caseworker has concerns 15%; the abuse is ongoing 30%.
    - `service_type`: Collect & Pay 35%, Direct Pay 65%.
    - With Advanced Customer Support because of abuse 5%; police involved 45%; violence or control
      mentioned 40%, concerns resolved by conversation 70%, a significant risk seen 20%; a named
      caseworker asked for 10%.
    - `site`: one of ten sites, two of them the pilot sites (`pilot_site_1`, `pilot_site_2`): 20%.
    - Caseworkers told: 1 (35%), 2 (30%), 3 (18%), 4 to 6 (17%); MARAC involved 10%; multiple
      complex needs 15%; concern about the other parent's reaction 30%; abuse alleged both ways 7%
      (after para 257: 11 of 166 individuals in the Cafcass and Women's Aid study were recorded as
      both victim and perpetrator); a child at risk 12%.
    Without a disclosure the customer feels safe, nobody has concerns, and the markers are false.
    """
    disclosed = _yes(rng, 0.60)
    site = rng.randint(1, 10)
    facts: dict[str, Any] = {
        "abuse_disclosed": disclosed,
        "service_type": "collect_and_pay" if _yes(rng, 0.35) else "direct_pay",
        "site": f"pilot_site_{site}" if site <= 2 else f"site_{site:02d}",
    }
    if disclosed:
        facts.update(
            feels_safe_now=_yes(rng, 0.92), caseworker_has_concerns=_yes(rng, 0.15), abuse_ongoing=_yes(rng, 0.30),
            with_advanced_customer_support_for_abuse=_yes(rng, 0.05), police_involved=_yes(rng, 0.45),
            violence_or_control_mentioned=_yes(rng, 0.40), concerns_resolved_by_conversation=_yes(rng, 0.70),
            caseworker_sees_significant_risk=_yes(rng, 0.20), named_caseworker_requested=_yes(rng, 0.10),
            caseworkers_told=int(_pick(rng, {"1": 35, "2": 30, "3": 18, "4": 9, "5": 5, "6": 3})),
            marac_involved=_yes(rng, 0.10), multiple_complex_needs=_yes(rng, 0.15),
            concern_about_other_parent_reaction=_yes(rng, 0.30), abuse_alleged_both_ways=_yes(rng, 0.07),
            child_at_risk=_yes(rng, 0.12))
    else:
        facts.update(
            feels_safe_now=True, caseworker_has_concerns=False, abuse_ongoing=False,
            with_advanced_customer_support_for_abuse=False, police_involved=False,
            violence_or_control_mentioned=False, concerns_resolved_by_conversation=True,
            caseworker_sees_significant_risk=False, named_caseworker_requested=_yes(rng, 0.03),
            caseworkers_told=int(_pick(rng, {"1": 60, "2": 30, "3": 10})), marac_involved=False,
            multiple_complex_needs=_yes(rng, 0.05), concern_about_other_parent_reaction=False,
            abuse_alleged_both_ways=False, child_at_risk=False)
    return facts


# --- maintenance_calculation and prisoner_liability ----------------------------------------------

def _income(rng: random.Random) -> tuple[int, bool]:
    """A paying parent's gross weekly income in pence, and whether they receive a prescribed
    benefit (assumed): a prescribed benefit 20% (income £0 to £100); otherwise £0 to £6.99 4%,
    £7 to £100 8%, £100.01 to £199.99 12%, £200 to £800 51% (a bell around £450), £800.01 to
    £3,000 4%, over £3,000 (ignored above the cap) 1%."""
    if _yes(rng, 0.20):
        return _pounds(rng, 0, 100), True
    band = _pick(rng, {"nil": 4, "flat": 8, "reduced": 12, "basic": 51, "plus": 4, "cap": 1})
    if band == "nil":
        return _pounds(rng, 0, 6.99), False
    if band == "flat":
        return _pounds(rng, 7, 100), False
    if band == "reduced":
        return _pounds(rng, 100.01, 199.99), False
    if band == "basic":
        return min(80_000, max(20_000, round(rng.gauss(450, 150) * 100))), False
    if band == "plus":
        return _pounds(rng, 800.01, 3000), False
    return _pounds(rng, 3000.01, 6000), False


def _children(rng: random.Random) -> list[dict]:
    """Qualifying children with their shared-care nights a year (assumed): none 0.5%, one 60%,
    two 28%, three 9%, four 2.5%; per child no overnight stays 60%, 1 to 51 nights 12%, 52 to 103
    14%, 104 to 155 8%, 156 to 174 3%, 175 to 182 3%."""
    count = int(_pick(rng, {"0": 0.5, "1": 60, "2": 28, "3": 9, "4": 2.5}))
    out = []
    for _ in range(count):
        band = _pick(rng, {"0": 60, "1": 12, "52": 14, "104": 8, "156": 3, "175": 3})
        low, high = {"0": (0, 0), "1": (1, 51), "52": (52, 103), "104": (104, 155), "156": (156, 174),
                     "175": (175, 182)}[band]
        out.append({"shared_care_nights": rng.randint(low, high)})
    return out


def _other_children(rng: random.Random) -> int:
    """Relevant other children (assumed): none 75%, one 15%, two 7%, three or more 3%."""
    return int(_pick(rng, {"0": 75, "1": 15, "2": 7, "3": 2, "4": 1}))


def maintenance_calculation(rng: random.Random) -> dict:
    """A paying parent's income and circumstances for the weekly calculation (all assumed):

    - income and prescribed benefit as `_income`; relevant other children as `_other_children`;
      qualifying children and shared care as `_children`.
    - `paying_parent_is_prisoner`: 1%.
    - `nil_rate_category`: none 97%, in a care home or hospital on a prescribed benefit 1.5%, aged 16
      or 17 on a prescribed benefit 0.7%, on a youth training allowance 0.5%, a child 0.3%.
    """
    income, benefit = _income(rng)
    return {
        "gross_weekly_income": income,
        "receives_prescribed_benefit": benefit,
        "relevant_other_children": _other_children(rng),
        "paying_parent_is_prisoner": _yes(rng, 0.01),
        "nil_rate_category": _pick(rng, {"none": 97, "care_home_on_prescribed_benefit": 1.5,
                                         "aged_16_17_on_prescribed_benefit": 0.7,
                                         "youth_training_allowance": 0.5, "child": 0.3}),
        "qualifying_children": _children(rng),
    }


def prisoner_liability(rng: random.Random) -> dict:
    """A paying parent whose custody is in question (the cases this policy decides).

    - `custody_status` (assumed): not in custody 30%, remanded awaiting trial 12%, awaiting
      sentence 5%, serving a sentence 50%, a sentenced person detained in hospital 3%.
    - On temporary licence: 8% of those serving a sentence (assumed).
    - Income in custody (the review, paras 294 and 296: the average working prisoner earned about
      £10 a week, the minimum employed rate is £4, some jobs pay well over £20): no income 15%, £4
      to £15 50%, £15 to £30 25%, enhanced earnings (e.g. work on temporary licence) £50 to £350
      10% (shares assumed). In custody: no prescribed benefit, nil-rate category none.
    - The receiving parent chooses to enforce: 55% of custody cases (assumed; asked only then).
    - Not in custody: income, benefit and categories as `maintenance_calculation`.
    - Relevant other children and qualifying children as `maintenance_calculation`.
    """
    custody = _pick(rng, {"not_in_custody": 30, "remanded_awaiting_trial": 12, "awaiting_sentence": 5,
                          "serving_sentence": 50, "sentenced_detained_in_hospital": 3})
    facts: dict[str, Any] = {"custody_status": custody}
    if custody == "not_in_custody":
        income, benefit = _income(rng)
        category = _pick(rng, {"none": 98, "care_home_on_prescribed_benefit": 1, "youth_training_allowance": 1})
    else:
        facts["on_temporary_licence"] = custody == "serving_sentence" and _yes(rng, 0.08)
        facts["receiving_parent_chooses_to_enforce"] = _yes(rng, 0.55)
        band = _pick(rng, {"none": 15, "low": 50, "mid": 25, "enhanced": 10})
        income = {"none": 0, "low": _pounds(rng, 4, 15), "mid": _pounds(rng, 15, 30),
                  "enhanced": _pounds(rng, 50, 350)}[band]
        benefit, category = False, "none"
    facts.update(gross_weekly_income=income, receives_prescribed_benefit=benefit,
                 relevant_other_children=_other_children(rng), nil_rate_category=category,
                 qualifying_children=_children(rng))
    return facts


GENERATORS: dict[str, Generator] = {
    "application_fee": application_fee,
    "service_type": service_type,
    "abuse_evidence": abuse_evidence,
    "caseworker_routing": caseworker_routing,
    "maintenance_calculation": maintenance_calculation,
    "prisoner_liability": prisoner_liability,
}


def generate(policy: str, count: int = DEFAULT_CASES, seed: int = DEFAULT_SEED) -> list[dict]:
    """`count` requests for `policy` (`{"policy": ..., "facts": {...}}`), the same for the same seed."""
    return generate_chunk(policy, _rng(policy, seed).getstate(), count)


def chunks(policy: str, count: int, seed: int, size: int) -> Iterator[tuple[int, int, tuple]]:
    """(start, n, state) for each run of `size` cases of the corpus: `generate_chunk(policy, state, n)`
    makes cases start+1 to start+n alone, as `generate` would. Cases are drawn one after the other
    from one generator and take a varying number of draws, so the states are found by drawing the
    cases here (about 20 µs a case), lazily, a chunk ahead of the workers."""
    rng, make = _rng(policy, seed), GENERATORS[policy]
    for start in range(0, count, size):
        n = min(size, count - start)
        yield start, n, rng.getstate()
        for _ in range(n):
            _drop_one(rng, make(rng))


def generate_chunk(policy: str, state: tuple, count: int) -> list[dict]:
    """`count` requests drawn from a generator in `state` (from `chunks`)."""
    rng = random.Random()
    rng.setstate(state)
    return [{"policy": policy, "facts": _drop_one(rng, GENERATORS[policy](rng))} for _ in range(count)]


def _rng(policy: str, seed: int) -> random.Random:
    if policy not in GENERATORS:
        raise KeyError(f"no corpus generator for '{policy}'; known: {', '.join(sorted(GENERATORS))}")
    return random.Random(f"{policy}:{seed}")


def dumps(request: dict) -> str:
    """One request as a line of the corpus file."""
    return json.dumps(request, sort_keys=True, ensure_ascii=False)


def write(directory: Path, policies: list[str], count: int = DEFAULT_CASES, seed: int = DEFAULT_SEED) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for policy in policies:
        path = directory / f"{policy}.jsonl"
        path.write_text("".join(dumps(r) + "\n" for r in generate(policy, count, seed)), encoding="utf-8")
        written.append(path)
    return written


# --- command line --------------------------------------------------------------------------------

def add_command(commands) -> None:
    cmd = commands.add_parser("corpus", help="write a synthetic, seeded corpus of requests (DIR/<policy>.jsonl)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write <policy>.jsonl files into")
    cmd.add_argument("--cases", type=int, default=DEFAULT_CASES, metavar="N", help="cases per policy (default: %(default)s)")
    cmd.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="N", help="random seed (default: %(default)s)")
    cmd.add_argument("--policy", action="append", choices=sorted(GENERATORS), metavar="POLICY",
                     help=f"only this policy (repeatable; default: all of {', '.join(GENERATORS)})")
    cmd.set_defaults(run=run)


def run(args) -> int:
    if args.cases < 0:
        print("error: --cases must be 0 or more", file=sys.stderr)
        return 2
    policies = list(dict.fromkeys(args.policy)) if args.policy else list(GENERATORS)
    for path in write(args.out, policies, args.cases, args.seed):
        print(f"wrote {path} ({args.cases} cases, seed {args.seed})")
    return 0
