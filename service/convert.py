"""Between the engine's models and the generated protobuf messages."""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import grpc
from google.protobuf import json_format, struct_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from cms_policy.v1 import policy_pb2 as pb
from rules.engine.compiler import CompiledPolicy
from rules.engine.decision import (
    PARENTS,
    Audience,
    Counterfactual,
    Decision,
    DecisionRequest,
    Explanation,
    MissingFact,
    Output,
    PolicyRef,
    RequestError,
    RequestReason,
    Shadow,
    TrailStep,
    Violation,
)
from rules.explain.explainer import describe
from rules.language import arith, values
from rules.language.model import About, Rule, WhoseFact

# The engine's parties and reasons on the wire, where each enum value carries its enum's name as a
# prefix (buf lint): AUDIENCE_CASEWORKER is the engine's CASEWORKER.
AUDIENCES: dict[Audience, int] = {a: pb.Audience.Value(f"AUDIENCE_{a.value}") for a in Audience}
REASONS: dict[RequestReason, int] = {r: pb.RequestReason.Value(f"REQUEST_REASON_{r.value}") for r in RequestReason}
_PARTIES = {number: a for a, number in AUDIENCES.items()}
_REASONS = {number: r for r, number in REASONS.items()}

# Whose view of a decision a request asks for (None: the full decision).
VIEWS: dict[int, Audience | None] = {pb.VIEW_UNSPECIFIED: None, pb.VIEW_RECEIVING_PARENT: Audience.RECEIVING_PARENT,
                                     pb.VIEW_PAYING_PARENT: Audience.PAYING_PARENT}


def view_problems(view: int) -> list[Violation]:
    return [] if view in VIEWS else [Violation(field="view", description="unknown view")]


def viewed(d: Decision, view: int) -> Decision:
    """The decision as `view` shows it (a view `view_problems` has passed): a parent's, or in full."""
    parent = VIEWS[view]
    return d.for_parent(parent) if parent else d


def request_context(message: pb.DecideRequest, problems: list[Violation]) -> dict:
    """Who the request is about and who asked for it, from a DecideRequest; bad values are
    added to `problems` by field."""
    out = {"counterfactuals": message.include_counterfactuals, "shadow_version": message.shadow_version}
    if message.include_counterfactuals and message.omit_counterfactuals:  # deprecated: it contradicts the other
        problems.append(Violation(field="omit_counterfactuals",
                                  description="deprecated, and contradicts include_counterfactuals: leave it unset"))
    if message.subject:
        subject = _PARTIES.get(message.subject)
        if subject in PARENTS:
            out["subject"] = subject
        else:
            problems.append(Violation(field="subject",
                                      description="the subject is AUDIENCE_RECEIVING_PARENT or AUDIENCE_PAYING_PARENT"))
    if message.requested_by:
        if message.requested_by in _PARTIES:
            out["requested_by"] = _PARTIES[message.requested_by]
        else:
            problems.append(Violation(field="requested_by", description="unknown party"))
    if message.reason:
        if message.reason in _REASONS:
            out["reason"] = _REASONS[message.reason]
        else:
            problems.append(Violation(field="reason", description="unknown reason"))
    problems += view_problems(message.view)  # the response's, not the engine's: checked here with the rest
    return out


def facts(struct: struct_pb2.Struct | None) -> dict:
    """A Struct of facts as plain data. A Struct holds every number as a double: whole numbers
    (pence, counts) come back as ints, so a request decides the same over gRPC as in-process.
    RequestError for what no fact can be (never quoting it): a number that is not finite (NaN,
    infinity: JSON has none), lists and objects nested more than values.MAX_DEPTH deep, more
    than values.MAX_FACTS facts."""
    if struct is None:
        return {}
    if len(struct.fields) > values.MAX_FACTS:
        raise RequestError([Violation(field="facts", description=f"more than {values.MAX_FACTS} facts")])
    out, problems = {}, []
    for name, value in struct.fields.items():
        try:
            out[name] = _plain(value, 0)
        except values.FactValueError as exc:
            problems.append(Violation(field=values.field("facts", name), description=str(exc)))
    if problems:
        raise RequestError(sorted(problems, key=lambda v: v.field))
    return out


def _plain(value: struct_pb2.Value, depth: int):
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):
            raise values.FactValueError("expected a finite number")
        return int(number) if number.is_integer() else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind in (None, "null_value"):
        return None
    if depth >= values.MAX_DEPTH:
        raise values.FactValueError(f"lists and objects nested more than {values.MAX_DEPTH} deep")
    if kind == "list_value":
        if len(value.list_value.values) > values.MAX_LIST:
            raise values.FactValueError(f"list longer than {values.MAX_LIST} items")
        return [_plain(v, depth + 1) for v in value.list_value.values]
    if len(value.struct_value.fields) > values.MAX_FACTS:
        raise values.FactValueError(f"more than {values.MAX_FACTS} facts")
    return {k: _plain(v, depth + 1) for k, v in value.struct_value.fields.items()}


def decide_request(r: DecisionRequest) -> pb.DecideRequest:
    """A request as the engine took it, back as the DecideRequest it came from (for GetDecision)."""
    return pb.DecideRequest(policy=r.policy, version=r.version, as_at=_date(r.as_at), facts=_struct(r.facts),
                            subject=AUDIENCES[r.subject] if r.subject else 0,  # type: ignore[arg-type]  # protobuf takes an enum's number
                            requested_by=AUDIENCES[r.requested_by] if r.requested_by else 0,  # type: ignore[arg-type]  # protobuf takes an enum's number
                            reason=REASONS[r.reason] if r.reason else 0, include_counterfactuals=r.counterfactuals,  # type: ignore[arg-type]  # protobuf takes an enum's number
                            shadow_version=r.shadow_version)


def _date(day: dt.date | None) -> str:
    return day.isoformat() if day else ""


def _value(data) -> struct_pb2.Value:
    """A JSON value (a fact's, an output's) as a protobuf Value."""
    value = struct_pb2.Value()
    _set_value(value, data)
    return value


def _set_value(value: struct_pb2.Value, data) -> None:
    """Set `value` to a JSON value in place; scalars set directly (ParseDict costs more than the
    rest of a decision's conversion)."""
    if data is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(data, bool):
        value.bool_value = data
    elif isinstance(data, (int, float)):
        value.number_value = data
    elif isinstance(data, str):
        value.string_value = data
    elif isinstance(data, list) and all(isinstance(v, str) for v in data):
        value.list_value.SetInParent()  # set even when empty
        value.list_value.extend(data)  # a list fact's choices
    else:
        json_format.ParseDict(data, value)


def _citations(cites) -> list[pb.Citation]:
    return [pb.Citation(source=c.source, provision=c.provision, url=c.url) for c in cites]


def policy_ref(compiled: CompiledPolicy) -> pb.PolicyRef:
    pv = compiled.version
    return pb.PolicyRef(policy=pv.policy, version=pv.version, status=pv.status.value, title=pv.title,
                        effective_from=_date(pv.effective_from), effective_to=_date(pv.effective_to),
                        content_hash=compiled.content_hash, revision=pv.revision)


def _set_step(out: pb.TrailStep, s: TrailStep) -> None:
    """Fill `out` in place (a message added to a repeated field: nothing built twice)."""
    out.rule_id, out.concludes, out.because = s.rule_id, s.concludes, s.because
    for c in s.citations:
        out.citations.add(source=c.source, provision=c.provision, url=c.url)
    for f in s.facts_used:
        _set_value(out.facts_used.add(name=f.name).value, f.value)


def _add_missing(into, missing: list[MissingFact]) -> None:
    for m in missing:
        into.add(name=m.name, description=m.description, question=m.question)


def decision(d: Decision, out: pb.DecideResponse | None = None) -> pb.DecideResponse:
    """`d` as a protobuf Decision: filled into `out` in place if given (e.g. a batch result's,
    where building one and setting it would copy it), else into a new one."""
    out = pb.DecideResponse() if out is None else out
    out.decision_id, out.as_at, out.outcome = d.decision_id, _date(d.as_at), d.outcome
    out.outcome_description, out.rationale, out.bundle_hash = d.outcome_description, d.rationale, d.bundle_hash
    for f in d.flags:
        out.flags.add(code=f.code, description=f.description)
    out.actions.extend(d.actions)
    _add_missing(out.missing_facts, d.missing_facts)
    out.ignored_facts.extend(d.ignored_facts)
    for sub in d.sub_decisions:
        decision(sub, out.sub_decisions.add())
    for e in d.explanations:
        _set_explanation(out.explanations.add(), e)
    for r in d.disclosure_risks:
        out.disclosure_risks.add(parent=AUDIENCES[r.parent], whose=AUDIENCES[r.whose] if r.whose else 0, facts=r.facts,
                                 rule_id=r.rule_id, infers=r.infers, advice=r.advice)
    if d.shadow:
        _set_shadow(out.shadow, d.shadow)
    out.policy.CopyFrom(_policy_ref(d.policy))
    _add_outputs(out.outputs, d.outputs)
    for v in d.items:
        item = out.items.add(list=v.list, index=v.index, outcome=v.outcome, outcome_description=v.outcome_description)
        _add_missing(item.missing_facts, v.missing_facts)
        if v.step:
            _set_step(item.step, v.step)
    for s in d.trail:
        _set_step(out.trail.add(), s)
    _add_counterfactuals(out.counterfactuals, d.counterfactuals)
    if d.decided_at:  # set directly: Timestamp.FromDatetime is slow Python
        since = dt.datetime.fromisoformat(d.decided_at) - _EPOCH
        out.decided_at.seconds, out.decided_at.nanos = since.days * 86400 + since.seconds, since.microseconds * 1000
    if d.amount_pence is not None:
        out.amount_pence = d.amount_pence
    return out


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _set_explanation(out: pb.Explanation, e: Explanation) -> None:
    # `hold`, not `notify`: proto3's default (false) must mean what a message from before the field meant
    out.audience, out.text, out.withheld, out.hold = AUDIENCES[e.audience], e.text, e.withheld, not e.notify  # type: ignore[assignment]  # an enum's number
    _add_counterfactuals(out.counterfactuals, e.counterfactuals)
    _add_missing(out.questions, e.questions)


def _add_counterfactuals(into, counterfactuals: list[Counterfactual]) -> None:
    for c in counterfactuals:
        _set_value(into.add(fact=c.fact, direction=c.direction, outcome=c.outcome, text=c.text,
                            shown_to=[AUDIENCES[a] for a in c.shown_to], parent_text=c.parent_text).value, c.value)


def _policy_ref(ref: PolicyRef) -> pb.PolicyRef:
    key = (ref.policy, ref.version, ref.content_hash)
    made = _POLICY_REFS.get(key)
    if made is None:
        made = pb.PolicyRef(**{k: _date(v) if isinstance(v, dt.date) else (v or "") for k, v in ref.model_dump().items()})  # type: ignore[arg-type]  # the fields by name
        if len(_POLICY_REFS) < 10_000:  # versions ever loaded: a few hundred at most
            _POLICY_REFS[key] = made
    return made  # copied by whoever sets it in a message


_POLICY_REFS: dict[tuple[str, str, str], pb.PolicyRef] = {}  # the same version's reference, made once


def _add_outputs(into, outputs: list[Output]) -> None:
    for o in outputs:
        _set_value(into.add(name=o.name, text=o.text, description=o.description).value, o.value)


def _set_shadow(out: pb.Shadow, s: Shadow) -> None:
    out.SetInParent()
    if s.policy:
        out.policy.CopyFrom(_policy_ref(s.policy))
    out.outcome, out.rationale, out.agrees, out.error = s.outcome, s.rationale, s.agrees, s.error
    out.rule_ids.extend(s.rule_ids)
    out.missing_facts.extend(s.missing_facts)
    _add_outputs(out.outputs, s.outputs)
    if s.amount_pence is not None:
        out.amount_pence = s.amount_pence


def _fact_spec(f, lst=None) -> pb.FactSpec:
    """A fact, or an item's fact of list `lst`: an item's value is the list's information (the engine
    traces it to the list), as whose and as sensitive as the list."""
    return pb.FactSpec(name=f.name, type=f.type.value, description=f.description, question=f.question,
                       allowed=list(f.allowed), sensitive=_sensitive(lst) if lst else f.sensitive,
                       about=_about(lst.about if lst else f.about))


def _sensitive(lst) -> bool:
    """As the engine counts a list (rules/engine/compiler.py)."""
    return lst.sensitive or any(f.sensitive for f in lst.facts)


def _about(about: About) -> str:
    if isinstance(about, WhoseFact):
        return f"fact:{about.fact}"
    return about or ""


def _rule_spec(pv, r: Rule) -> pb.RuleSpec:
    computed = r.derive is not None and not isinstance(r.derive.value, (bool, str))
    return pb.RuleSpec(id=r.id, concludes=r.concludes, when=describe(pv, r.when) if r.when else "", because=r.because,
                       citations=_citations(r.cites), actions=list(r.actions),
                       amount=arith.describe(r.amount) if r.amount is not None else "",
                       outputs={k: arith.describe(e) for k, e in r.outputs.items()},
                       computes=arith.describe(r.derive.value) if computed else "")  # type: ignore[union-attr, arg-type]  # computed: derives a number


def _param_value(value):
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_param_value(v) for v in value]
    return value


def policy_detail(compiled: CompiledPolicy, earlier: Sequence[CompiledPolicy] = ()) -> pb.GetPolicyResponse:
    pv = compiled.version
    return pb.GetPolicyResponse(
        corrections=[pb.Correction(revision=c.revision, date=c.date.isoformat(), change=c.change,
                                   citations=_citations(c.cites)) for c in pv.corrections],
        earlier_revisions=[policy_ref(e) for e in earlier],
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
                               sensitive=_sensitive(lst), about=_about(lst.about),
                               facts=[_fact_spec(f, lst) for f in lst.facts],
                               outcomes=[pb.Code(code=k, description=v) for k, v in lst.outcomes.items()],
                               rules=[_rule_spec(pv, r) for r in lst.rules]) for lst in pv.lists],
        uses=[pb.UsesSpec(policy=u.policy, version=u.version, set=_struct(u.set), **{"as": u.as_}) for u in pv.uses],
        outputs=[pb.Code(code=k, description=o.description) for k, o in pv.outputs.items()])


def _struct(data: dict) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(data)
    return out


# --- errors as statuses ------------------------------------------------------------------
# A status travels in the trailers, which gRPC clients refuse beyond 8-16 KiB (the message once,
# percent-encoded; the details as base64). However many problems a request has, what is sent
# stays well inside that: the first problems, then how many more there are.

MAX_DETAILS_BYTES = 3_000
MAX_STATUS_MESSAGE = 400


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _fitted(entries: list, size) -> tuple[list, int]:
    """The leading entries whose sizes fit the budget, and how many are left out."""
    kept, used = [], 0
    for entry in entries:
        used += size(entry) + 4
        if used > MAX_DETAILS_BYTES:
            break
        kept.append(entry)
    return kept, len(entries) - len(kept)


def _message(lines: list[str], more: int, prefix: str = "") -> str:
    text = prefix + "; ".join(lines)
    if more:
        text += f" (and {more} more)"
    return _cut(text, MAX_STATUS_MESSAGE)


def invalid_argument(violations: list[Violation]) -> grpc.Status:
    """INVALID_ARGUMENT with a google.rpc.BadRequest naming each bad field (as many as fit)."""
    return rpc_status.to_status(bad_request(violations))


def bad_request(violations: list[Violation]) -> status_pb2.Status:
    """`invalid_argument` as a google.rpc.Status message (e.g. one result of DecideBatch)."""
    field_violations = [error_details_pb2.BadRequest.FieldViolation(field=_cut(v.field, 200),
                                                                    description=_cut(v.description, 300))
                        for v in violations]
    kept, more = _fitted(field_violations, lambda fv: fv.ByteSize())
    if more:
        kept.append(error_details_pb2.BadRequest.FieldViolation(
            field="", description=f"{more} more problems are not shown: correct these and ask again"))
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT,
                               message=_message([f"{fv.field}: {fv.description}" for fv in kept[:len(kept) - bool(more)]],
                                                more))
    status.details.add().Pack(error_details_pb2.BadRequest(field_violations=kept))
    return status


def precondition_failure(errors, message: str) -> grpc.Status:
    """FAILED_PRECONDITION with a google.rpc.PreconditionFailure: one violation per policy file
    error (`subject` "path:line"), as many as fit."""
    violations = [error_details_pb2.PreconditionFailure.Violation(type="POLICY_FILE", subject=_cut(f"{e.path}:{e.line}", 300),
                                                                  description=_cut(e.message, 300)) for e in errors]
    kept, more = _fitted(violations, lambda v: v.ByteSize())
    if more:
        kept.append(error_details_pb2.PreconditionFailure.Violation(
            type="POLICY_FILE", subject="", description=f"{more} more errors are not shown (the service's log has them all)"))
    status = status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=_cut(message, MAX_STATUS_MESSAGE))
    status.details.add().Pack(error_details_pb2.PreconditionFailure(violations=kept))
    return rpc_status.to_status(status)


# --- requests that are not messages ------------------------------------------------------
# gRPC answers a request it cannot deserialize with INTERNAL and no details. These are the
# client's errors: invalid UTF-8 in a string field, nesting deeper than protobuf allows,
# corrupt bytes. `WireErrors` turns them into INVALID_ARGUMENT with a BadRequest naming the field.

class _Undecodable:
    """What a request's bytes decoded to when they are not a message of the method's type."""

    def __init__(self, violations: list[Violation]):
        self.violations = violations


def _lenient(deserializer):
    def deserialize(data: bytes):
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError (the exception types differ between implementations)
            return _Undecodable(undecodable(getattr(deserializer, "__self__", None), data, exc))
    return deserialize


def undecodable(message_type, data: bytes, error: Exception) -> list[Violation]:
    """Which top-level fields (and which fact of a Struct) of `data` do not decode as
    `message_type`, and why; the whole request if the bytes are not even a message."""
    descriptor = getattr(message_type, "DESCRIPTOR", None)
    try:
        chunks = _wire_fields(data)
    except ValueError:
        chunks = None
    found = []
    if descriptor is not None and chunks is not None:
        for number, chunk, payload in chunks:
            reason = _decode_problem(message_type, chunk)
            if reason is None:
                continue
            field = descriptor.fields_by_number.get(number)
            name = field.name if field is not None else f"field {number}"
            if field is not None and field.message_type is not None and field.message_type.full_name == "google.protobuf.Struct":
                found += _struct_problems(name, payload) or [Violation(field=name, description=reason)]
            else:
                found.append(Violation(field=name, description=reason))
    if not found:
        kind = descriptor.full_name if descriptor is not None else "request"
        found = [Violation(field="", description=f"the request is not a valid {kind} message ({_why(error)})")]
    return found


def _struct_problems(name: str, payload: bytes) -> list[Violation]:
    """The entries of a serialized Struct that do not decode, as `name.key`."""
    try:
        entries = _wire_fields(payload)
    except ValueError:
        return []
    out = []
    for _, chunk, entry in entries:
        reason = _decode_problem(struct_pb2.Struct, chunk)
        if reason is None:
            continue
        try:
            key = next((p for n, _, p in _wire_fields(entry) if n == 1), b"").decode("utf-8")
            out.append(Violation(field=values.field(name, key), description=reason))
        except (ValueError, UnicodeDecodeError):
            out.append(Violation(field=name, description=f"a fact's name: {reason}"))
    return out


def _decode_problem(message_type, chunk: bytes) -> str | None:
    try:
        message_type.FromString(chunk)
    except Exception as exc:
        return _why(exc)
    return None


def _why(error: Exception) -> str:
    text = str(error)
    if "UTF-8" in text:
        return "text is not valid UTF-8"
    if "depth" in text.lower() or "recursion" in text.lower():
        return "nested too deeply"
    return "malformed protocol buffer"


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _wire_fields(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """The fields of a serialized message as (number, the field's bytes with its tag, its
    payload); ValueError if the framing is broken."""
    pos, out = 0, []
    while pos < len(data):
        start = pos
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        body = pos
        if wire_type == 0:
            _, pos = _varint(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 2:
            length, body = _varint(data, pos)
            pos = body + length
        elif wire_type == 5:
            pos += 4
        else:
            raise ValueError("groups are not supported")
        if number == 0 or pos > len(data):
            raise ValueError("truncated field")
        out.append((number, data[start:pos], data[body:pos]))
    return out


class WireErrors(grpc.ServerInterceptor):
    """Requests whose bytes do not decode get INVALID_ARGUMENT with a BadRequest (see above)
    instead of gRPC's INTERNAL. Unary methods only (streams pass through)."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        behaviour = handler.unary_unary

        def checked(request, context):
            if isinstance(request, _Undecodable):
                context.abort_with_status(invalid_argument(request.violations))
            return behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(checked, request_deserializer=_lenient(handler.request_deserializer),
                                                   response_serializer=handler.response_serializer)
