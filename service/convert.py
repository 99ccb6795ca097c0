"""Between the engine's models and the generated protobuf messages."""
from __future__ import annotations

import datetime as dt

from google.protobuf import json_format, struct_pb2

from cms_policy.v1 import policy_pb2 as pb
from rules.compiler import CompiledPolicy
from rules.decision import Decision
from rules.explainer import describe


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


def decision(d: Decision) -> pb.Decision:
    out = pb.Decision(
        decision_id=d.decision_id,
        policy=pb.PolicyRef(**{k: _date(v) if isinstance(v, dt.date) else (v or "")
                               for k, v in d.policy.model_dump().items()}),
        as_at=_date(d.as_at), outcome=d.outcome, outcome_description=d.outcome_description,
        flags=[pb.Flag(code=f.code, description=f.description) for f in d.flags],
        actions=d.actions, rationale=d.rationale,
        trail=[pb.TrailStep(rule_id=s.rule_id, concludes=s.concludes, because=s.because,
                            citations=_citations(s.citations),
                            facts_used=[pb.FactUsed(name=f.name, value=_value(f.value)) for f in s.facts_used])
               for s in d.trail],
        missing_facts=[pb.MissingFact(name=m.name, description=m.description, question=m.question)
                       for m in d.missing_facts],
        ignored_facts=d.ignored_facts)
    out.decided_at.FromJsonString(d.decided_at.replace("+00:00", "Z"))
    if d.amount_pence is not None:
        out.amount_pence = d.amount_pence
    return out


def policy_detail(compiled: CompiledPolicy) -> pb.PolicyVersionDetail:
    pv = compiled.version
    return pb.PolicyVersionDetail(
        ref=policy_ref(compiled), description=pv.description, citations=_citations(pv.cites),
        outcomes=[pb.Code(code=k, description=v) for k, v in pv.outcomes.items()],
        flags=[pb.Code(code=k, description=v) for k, v in pv.flags.items()],
        parameters=[pb.Parameter(name=name, type=p.type.value,
                                 value=_value(list(p.value) if isinstance(p.value, tuple) else p.value),
                                 description=p.description, citations=_citations(p.cites))
                    for name, p in pv.parameters.items()],
        facts=[pb.FactSpec(name=f.name, type=f.type.value, description=f.description, question=f.question,
                           allowed=list(f.allowed), sensitive=f.sensitive) for f in pv.facts],
        derived=[pb.DerivedSpec(name=d.name, type=d.type.value, description=d.description,
                                default=_value(d.default)) for d in pv.derived],
        rules=[pb.RuleSpec(id=r.id, concludes=r.concludes, when=describe(pv, r.when) if r.when else "", because=r.because,
                           citations=_citations(r.cites), actions=list(r.actions)) for r in pv.rules],
        as_at_fact=pv.as_at_fact or "")
