"""The word-list scan, a second line behind the pairwise proof (test_noninterference.py): every
golden case, decided for every audience, as if each parent were the one it is about and the one
who asked for it. A parent's text must never carry the other parent's
sensitive values, nor any word of a sensitive topic when the other parent has sensitive facts in
the case (their disclosure, evidence, requests). The engine decides what to show by tracing facts;
this test does not trust that: it reads the fact schema itself and scans the words.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import yaml

from rules.engine.decision import PARENTS, Audience, DecisionRequest, RequestReason
from rules.explain.explainer import format_value
from rules.language.model import FactType, WhoseFact

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(GOLDEN.glob("*/*/*.yaml"))
PARTY = {Audience.RECEIVING_PARENT: "receiving_parent", Audience.PAYING_PARENT: "paying_parent"}
OTHER = {Audience.RECEIVING_PARENT: Audience.PAYING_PARENT, Audience.PAYING_PARENT: Audience.RECEIVING_PARENT}
# Words that give away domestic abuse, evidence of it, safety measures, or that someone asked for something.
TOPICS = re.compile(r"abus|violen|domestic|evidence|marac|refuge|injunction|police|convict|disclos|victim|"
                    r"\brisk|harm|\bsafe|address|contact details|request|asked for|applied for|\bchose|choice|"
                    r"enforce|reconsideration|undertaking|protection order|idva|isva", re.I)


def _schema(bundle, policy: str):
    """Every fact and list a request for `policy` may carry, with whose it is, across versions and
    the policies they use (the used policy's subject as the using version names it)."""
    facts, lists, todo, seen = {}, {}, [(policy, None)], set()
    while todo:
        name, subject_fact = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for compiled in bundle.versions(name):
            pv = compiled.version
            for f in pv.facts:
                facts.setdefault(f.name, (f, subject_fact))
            for lst in pv.lists:
                lists.setdefault(lst.name, (lst, subject_fact))
            todo += [(u.policy, u.subject or subject_fact) for u in pv.uses]
    return facts, lists


def _owner(about, subject_fact, request: DecisionRequest) -> set[str]:
    both = {"receiving_parent", "paying_parent"}
    if about == "subject":
        if subject_fact is not None:
            value = request.facts.get(subject_fact)
            return {value} if value in both else both
        return {PARTY[request.subject]} if request.subject else both
    if isinstance(about, WhoseFact):
        value = request.facts.get(about.fact)
        return {value} if value in both else both
    return {about} if about else set()


def _secrets(bundle, request: DecisionRequest, reader: Audience) -> tuple[list[str], bool, bool]:
    """The other parent's sensitive values (as text could show them), whether the other parent has
    any sensitive fact in the case, and whether the reader has one of their own."""
    facts, lists = _schema(bundle, request.policy)
    me, values, theirs, mine = PARTY[reader], [], False, False
    for name, raw in request.facts.items():
        if raw is None:
            continue
        if name in facts and facts[name][0].sensitive:
            spec, subject_fact = facts[name]
            owners = _owner(spec.about, subject_fact, request)
            if owners == {me}:
                mine = True
                continue
            theirs = True
            if spec.type in (FactType.STRING, FactType.DATE):
                values.append(str(raw))
        elif name in lists and raw and (lists[name][0].sensitive or any(f.sensitive for f in lists[name][0].facts)):
            spec, subject_fact = lists[name]
            if _owner(spec.about, subject_fact, request) == {me}:
                mine = True
                continue
            theirs = True
            item_facts = {f.name: f for f in spec.facts}
            for item in raw:
                for key, v in item.items():
                    f = item_facts.get(key)
                    if f is None or v is None:
                        continue
                    if f.type is FactType.DATE:
                        day = dt.date.fromisoformat(v)
                        values += [v, format_value(FactType.DATE, day)]
                    elif f.type is FactType.ENUM and v in f.labels:
                        values.append(f.labels[v])
    if request.requested_by in PARENTS and request.requested_by != reader:
        theirs = True
    return values, theirs, mine


def _variants(case: dict):
    """The case about each parent (and about nobody in particular), asked for by that parent."""
    req = {k: v for k, v in case["request"].items() if k not in ("subject", "requested_by", "reason")}
    yield DecisionRequest(**req, requested_by=Audience.CASEWORKER)
    for subject in PARENTS:
        yield DecisionRequest(**req, subject=subject, requested_by=subject,
                              reason=RequestReason.MANDATORY_RECONSIDERATION)


@pytest.mark.parametrize("path", CASES, ids=[str(p.relative_to(GOLDEN)) for p in CASES])
def test_no_parent_text_leaks_the_other_parents_sensitive_information(path, evaluator, bundle):
    case = yaml.safe_load(path.read_text())
    rule_ids = {r.id for c in bundle.versions(case["request"]["policy"]) for r in c.version.rules
                if re.search(r"[.-]", r.id)}
    for request in _variants(case):
        decision = evaluator.decide(request)
        texts = {e.audience: e for e in decision.explanations}
        assert list(texts) == [Audience.CASEWORKER, *PARENTS]
        assert texts[Audience.CASEWORKER].text == decision.rationale
        for step in decision.trail:
            assert step.rule_id in decision.rationale
        for reader in PARENTS:
            explanation = texts[reader]
            text = explanation.text
            values, theirs, mine = _secrets(bundle, request, reader)
            where = f"{reader.value} text for {request.subject} asked by {request.requested_by}:\n{text}"
            for value in values:
                assert value.lower() not in text.lower(), f"{value!r} leaked in the {where}"
            if theirs and not mine:
                # The reader's own questions may name their own sensitive topic.
                own = {f"- {f.question}" for f, subject_fact in _schema(bundle, request.policy)[0].values()
                       if _owner(f.about, subject_fact, request) == {PARTY[reader]}}
                found = TOPICS.search("\n".join(line for line in text.splitlines() if line not in own))
                assert found is None, f"'{found.group(0)}' leaked in the {where}"
            assert not [i for i in rule_ids if i in text], f"rule ids in the {where}"
            if explanation.withheld:
                assert "What would change it:" not in text, where
            assert "receiving parent (" not in text and "Asked for by" not in text, where


def test_who_asked_is_told_to_the_caseworker_only(evaluator):
    """Seed 000: a letter told a father that the mother had asked for a mandatory reconsideration."""
    request = DecisionRequest(
        policy="maintenance_calculation", version="2012", subject=Audience.RECEIVING_PARENT,
        requested_by=Audience.RECEIVING_PARENT, reason=RequestReason.MANDATORY_RECONSIDERATION,
        facts={"gross_weekly_income": 45000, "relevant_other_children": 2, "receives_prescribed_benefit": False,
               "paying_parent_is_prisoner": False, "nil_rate_category": "none",
               "qualifying_children": [{"shared_care_nights": 0}]})
    decision = evaluator.decide(request)
    texts = {e.audience: e.text for e in decision.explanations}
    assert "Asked for by the receiving parent (mandatory reconsideration)" in texts[Audience.CASEWORKER]
    paying = texts[Audience.PAYING_PARENT]
    assert TOPICS.search(paying) is None, paying
    assert "£" in paying  # the paying parent is still told the amount


def test_direct_pay_refused_on_evidence_tells_the_paying_parent_only_what_to_do(evaluator):
    facts = {"decision_date": "2024-03-01", "receiving_parent_requests": "collect_and_pay",
             "paying_parent_requests": "direct_pay", "paying_parent_agrees_to_collect_and_pay": False,
             "earlier_cms_non_compliance": False, "direct_pay_payment_missed_or_late": False,
             "warning_notice_in_previous_12_months": False, "abuse_disclosed": True,
             "abuse_disclosed_by": "receiving_parent",
             "evidence_items": [{"type": "marac_letter", "document_date": "2023-09-01", "concerns_other_party": True,
                                 "cross_undertaking_given": False}]}
    decision = evaluator.decide(DecisionRequest(policy="service_type", version="review-2023", facts=facts))
    assert decision.outcome == "COLLECT_AND_PAY"
    paying = next(e for e in decision.explanations if e.audience is Audience.PAYING_PARENT)
    receiving = next(e for e in decision.explanations if e.audience is Audience.RECEIVING_PARENT)
    assert paying.withheld and "Why:" not in paying.text
    assert "Collect & Pay" in paying.text and "20%" in paying.text and "look at it again" in paying.text
    assert TOPICS.search(paying.text) is None
    assert "evidence of domestic abuse you gave us has been accepted" in receiving.text
    assert all(Audience.PAYING_PARENT not in c.shown_to for c in decision.counterfactuals)


def test_the_other_parents_text_is_the_same_whether_or_not_evidence_is_accepted(evaluator):
    """The words may not tell the other parent how the evidence went; the outcome itself would, so
    the decision that rests on the evidence warns the caseworker before anything is sent."""
    def decided(items):
        decision = evaluator.decide(DecisionRequest(policy="abuse_evidence", version="2018", subject=Audience.RECEIVING_PARENT,
                                                    facts={"decision_date": "2024-03-01", "evidence_items": items}))
        paying = next(e for e in decision.explanations if e.audience is Audience.PAYING_PARENT)
        return decision, paying
    accepted, told = decided([{"type": "marac_letter", "concerns_other_party": True, "cross_undertaking_given": False}])
    rejected, told_too = decided([{"type": "marac_letter", "concerns_other_party": False, "cross_undertaking_given": False}])
    assert (accepted.outcome, rejected.outcome) == ("VERIFIED", "NOT_VERIFIED")
    assert told.text == told_too.text and TOPICS.search(told.text) is None
    risk = next(r for r in accepted.disclosure_risks if r.parent is Audience.PAYING_PARENT)
    assert risk.whose is Audience.RECEIVING_PARENT and risk.facts == ["evidence_items"]
