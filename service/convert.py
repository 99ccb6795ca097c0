"""Between the engine's models and the generated protobuf messages."""
from __future__ import annotations

import datetime as dt

from google.protobuf import json_format, struct_pb2

from cms_policy.v1 import policy_pb2 as pb
from rules import arith
from rules.compiler import CompiledPolicy
from rules.decision import (PARENTS, Audience, Decision, DecisionRequest, MissingFact, Output, PolicyRef, RequestReason,
                            Shadow, TrailStep, Violation)
from rules.explainer import describe
from rules.model import Rule


def request_context(message: pb.DecideRequest, problems: list[Violation]) -> dict:
    """Who the request is about and who asked for it, from a DecideRequest; bad values are
    added to `problems` by field."""
    out = {"counterfactuals": not message.omit_counterfactuals, "shadow_version": message.shadow_version}
    if message.subject:
        subject = Audience(pb.Audience.Name(message.subject)) if message.subject in pb.Audience.values() else None
        if subject in PARENTS:
            out["subject"] = subject
        else:
            problems.append(Violation(field="subject", description="the subject is RECEIVING_PARENT or PAYING_PARENT"))
    if message.requested_by:
        if message.requested_by in pb.Audience.values():
            out["requested_by"] = Audience(pb.Audience.Name(message.requested_by))
        else:
            problems.append(Violation(field="requested_by", description="unknown party"))
    if message.reason:
        if message.reason in pb.RequestReason.values():
            out["reason"] = RequestReason(pb.RequestReason.Name(message.reason))
        else:
            problems.append(Violation(field="reason", description="unknown reason"))
    return out


def facts(struct: struct_pb2.Struct | None) -> dict:
    """A Struct of facts as plain data. A Struct holds every number as a double: whole numbers
    (pence, counts) come back as ints, so a request decides the same over gRPC as in-process."""
    return _whole(json_format.MessageToDict(struct)) if struct is not None else {}


def _whole(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def decide_request(r: DecisionRequest) -> pb.DecideRequest:
    """A request as the engine took it, back as the DecideRequest it came from (for GetDecision)."""
    return pb.DecideRequest(policy=r.policy, version=r.version, as_at=_date(r.as_at), facts=_struct(r.facts),
                            subject=r.subject.value if r.subject else 0,
                            requested_by=r.requested_by.value if r.requested_by else 0,
                            reason=r.reason.value if r.reason else 0, omit_counterfactuals=not r.counterfactuals,
                            shadow_version=r.shadow_version)


def _date(day: dt.date | None) -> str:
    return day.isoformat() if day else ""


def _value(data) -> struct_pb2.Value:
    value = struct_pb2.Value()
    json_format.ParseDict(data, value)
    return value


def _citations(cites) -> list[pb.Citation]:
    return [pb.Citation(source=c.source, provision=c.provision, url=c.url) for c in cites]


def policy_ref(compiled: CompiledPolicy) -> pb.PolicyRef:
    pv = compiled.version
    return pb.PolicyRef(policy=pv.policy, version=pv.version, status=pv.status.value, title=pv.title,
                        effective_from=_date(pv.effective_from), effective_to=_date(pv.effective_to),
                        content_hash=compiled.content_hash)


def _step(s: TrailStep) -> pb.TrailStep:
    return pb.TrailStep(rule_id=s.rule_id, concludes=s.concludes, because=s.because, citations=_citations(s.citations),
                        facts_used=[pb.FactUsed(name=f.name, value=_value(f.value)) for f in s.facts_used])


def _missing(missing: list[MissingFact]) -> list[pb.MissingFact]:
    return [pb.MissingFact(name=m.name, description=m.description, question=m.question) for m in missing]


def decision(d: Decision) -> pb.Decision:
    out = pb.Decision(
        decision_id=d.decision_id,
        policy=_policy_ref(d.policy),
        as_at=_date(d.as_at), outcome=d.outcome, outcome_description=d.outcome_description,
        outputs=_outputs(d.outputs),
        items=[pb.ItemVerdict(list=v.list, index=v.index, outcome=v.outcome, outcome_description=v.outcome_description,
                              step=_step(v.step) if v.step else None, missing_facts=_missing(v.missing_facts))
               for v in d.items],
        flags=[pb.Flag(code=f.code, description=f.description) for f in d.flags],
        actions=d.actions, rationale=d.rationale, trail=[_step(s) for s in d.trail],
        missing_facts=_missing(d.missing_facts), ignored_facts=d.ignored_facts,
        sub_decisions=[decision(sub) for sub in d.sub_decisions],
        explanations=[pb.Explanation(audience=e.audience.value, text=e.text, withheld=e.withheld)
                      for e in d.explanations],
        counterfactuals=[pb.Counterfactual(fact=c.fact, value=_value(c.value), direction=c.direction, outcome=c.outcome,
                                           text=c.text, shown_to=[a.value for a in c.shown_to],
                                           parent_text=c.parent_text)
                         for c in d.counterfactuals],
        bundle_hash=d.bundle_hash, shadow=_shadow(d.shadow) if d.shadow else None)
    if d.decided_at:
        out.decided_at.FromJsonString(d.decided_at.replace("+00:00", "Z"))
    if d.amount_pence is not None:
        out.amount_pence = d.amount_pence
    return out


def _policy_ref(ref: PolicyRef) -> pb.PolicyRef:
    return pb.PolicyRef(**{k: _date(v) if isinstance(v, dt.date) else (v or "") for k, v in ref.model_dump().items()})


def _outputs(outputs: list[Output]) -> list[pb.Output]:
    return [pb.Output(name=o.name, value=_value(o.value), text=o.text, description=o.description) for o in outputs]


def _shadow(s: Shadow) -> pb.Shadow:
    out = pb.Shadow(policy=_policy_ref(s.policy) if s.policy else None, outcome=s.outcome, outputs=_outputs(s.outputs),
                    rule_ids=s.rule_ids, missing_facts=s.missing_facts, rationale=s.rationale, agrees=s.agrees,
                    error=s.error)
    if s.amount_pence is not None:
        out.amount_pence = s.amount_pence
    return out


def _fact_spec(f) -> pb.FactSpec:
    return pb.FactSpec(name=f.name, type=f.type.value, description=f.description, question=f.question,
                       allowed=list(f.allowed), sensitive=f.sensitive)


def _rule_spec(pv, r: Rule) -> pb.RuleSpec:
    computed = r.derive is not None and not isinstance(r.derive.value, (bool, str))
    return pb.RuleSpec(id=r.id, concludes=r.concludes, when=describe(pv, r.when) if r.when else "", because=r.because,
                       citations=_citations(r.cites), actions=list(r.actions),
                       amount=arith.describe(r.amount) if r.amount is not None else "",
                       outputs={k: arith.describe(e) for k, e in r.outputs.items()},
                       computes=arith.describe(r.derive.value) if computed else "")


def _param_value(value):
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_param_value(v) for v in value]
    return value


def policy_detail(compiled: CompiledPolicy) -> pb.PolicyVersionDetail:
    pv = compiled.version
    return pb.PolicyVersionDetail(
        ref=policy_ref(compiled), description=pv.description, citations=_citations(pv.cites),
        outcomes=[pb.Code(code=k, description=v) for k, v in pv.outcomes.items()],
        flags=[pb.Code(code=k, description=v) for k, v in pv.flags.items()],
        parameters=[pb.Parameter(name=name, type=p.type.value, value=_value(_param_value(p.value)),
                                 description=p.description, citations=_citations(p.cites))
                    for name, p in pv.parameters.items()],
        facts=[_fact_spec(f) for f in pv.facts],
        derived=[pb.DerivedSpec(name=d.name, type=d.type.value, description=d.description,
                                default=_value(d.default)) for d in pv.derived],
        rules=[_rule_spec(pv, r) for r in pv.rules],
        as_at_fact=pv.as_at_fact or "",
        lists=[pb.ItemListSpec(name=lst.name, description=lst.description, question=lst.question,
                               sensitive=lst.sensitive, facts=[_fact_spec(f) for f in lst.facts],
                               outcomes=[pb.Code(code=k, description=v) for k, v in lst.outcomes.items()],
                               rules=[_rule_spec(pv, r) for r in lst.rules]) for lst in pv.lists],
        uses=[pb.UsesSpec(policy=u.policy, version=u.version, set=_struct(u.set), **{"as": u.as_}) for u in pv.uses],
        outputs=[pb.Code(code=k, description=o.description) for k, o in pv.outputs.items()])


def _struct(data: dict) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(data)
    return out
