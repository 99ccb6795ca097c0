"""Try a case: a version's questions as a form, decided by the service, its decision shown in full
(each parent's view side by side, what would change it, a shadow version's differences), and
saved as a golden case for the policy team.

Facts are sensitive, so they travel only in POST bodies: the decision is the POST's own response
(never a redirect with facts), the "add another item" button posts the form back, and the golden
download carries the answers as hidden fields. Each case tried is a real decision: the service
decides and records it like any other.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from google.protobuf import struct_pb2
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Route

from cms_policy.v1 import policy_pb2 as pb

from .. import factform, goldenfile
from ..client import ServiceError
from ..factform import Answers, Schema
from ..render import render
from ..security import checked_form, token

# Who the decision is about, who asked and why: the golden files' spelling, the wire's with its prefix.
SUBJECTS = [("RECEIVING_PARENT", "The receiving parent"), ("PAYING_PARENT", "The paying parent")]
REQUESTERS = [("CASEWORKER", "A caseworker (the Service itself)"), ("RECEIVING_PARENT", "The receiving parent"),
              ("PAYING_PARENT", "The paying parent")]
REASONS = [(name, name.replace("_", " ").capitalize())
           for name in (v.name.removeprefix("REQUEST_REASON_") for v in pb.RequestReason.DESCRIPTOR.values)
           if name != "UNSPECIFIED"]
REMOVE = re.compile(r"remove-(\w+)-([0-9]{1,3})")  # the "Remove" button of a list's item
META = {"subject": ("AUDIENCE_", SUBJECTS), "requested_by": ("AUDIENCE_", REQUESTERS), "reason": ("REQUEST_REASON_", REASONS)}


@dataclass
class Version:
    """The version being tried: its GetPolicy response, its questions, and its policy's other versions."""
    policy: pb.GetPolicyResponse
    schema: Schema
    others: list[pb.PolicyRef]  # shadow candidates
    unreadable: list[str]  # used policies whose questions this account may not read


def choose(request):
    listing = request.app.state.client.list_policies(token(request))
    return render(request, "try.html", section="try", policies=listing.policies)


def _version(request, policy: str, version: str) -> Version:
    return load_version(request.app.state.client, token(request), policy, version)


def load_version(client, who: str | None, policy: str, version: str) -> Version:
    """The version's questions: its own facts, then those of each policy it uses (a pinned version's,
    or, for "in_force"/"latest_enacted", every enacted version's, since which one decides depends on
    the case's date), less the facts the version fixes for it."""
    own = client.get_policy(who, policy, version)
    listing = client.list_policies(who).policies
    refs = {p.policy: list(p.versions) for p in listing}
    taken: set[str] = set()
    groups = [factform.merged("", "", [own], taken, set())]
    unreadable = []
    for use in own.uses:
        if use.version in ("in_force", "latest_enacted"):
            versions = [r.version for r in refs.get(use.policy, []) if r.status == "enacted"]
            which = "the version in force on the date" if use.version == "in_force" else "its latest enacted version"
        else:
            versions, which = [use.version], f"version {use.version}"
        try:
            used = [client.get_policy(who, use.policy, v) for v in versions]
        except ServiceError as error:
            if error.http_status != 403:
                raise
            unreadable.append(use.policy)  # the service's authorisation: its facts cannot be asked here
            continue
        groups.append(factform.merged(f"{use.policy}, {which}", use.policy, used, taken, set(use.set.fields)))
    others = [r for r in refs.get(policy, []) if r.version != own.ref.version]
    return Version(own, Schema(tuple(g for g in groups if g.facts or g.lists)), others, unreadable)


def _form(request, v: Version, answers: Answers, meta: dict[str, str], shadow: str, status: int = 200, errors=None):
    errors = errors if errors is not None else answers.errors
    summary = [(anchor, message) for anchor, message in errors.items()]
    return render(request, "try_form.html", status_code=status, section="try", v=v, ref=v.policy.ref,
                  answers=answers, meta=meta, shadow=shadow, errors=errors, error_summary=summary,
                  subjects=SUBJECTS, requesters=REQUESTERS, reasons=REASONS)


def form_page(request):
    v = _version(request, request.path_params["policy"], request.path_params["version"])
    return _form(request, v, factform.blank(v.schema), {}, "")


def _meta(form) -> dict[str, str]:
    """subject, requested_by and reason, as the golden files spell them (only known values)."""
    meta = {}
    for key, (_, choices) in META.items():
        value = str(form.get(key, ""))
        if value in {code for code, _ in choices}:
            meta[key] = value
    return meta


def _request(v: Version, answers: Answers, meta: dict[str, str], shadow: str) -> pb.DecideRequest:
    facts = struct_pb2.Struct()
    facts.update(answers.facts)
    request = pb.DecideRequest(policy=v.policy.ref.policy, version=v.policy.ref.version, facts=facts,
                               include_counterfactuals=True, shadow_version=shadow)
    for key, value in meta.items():
        setattr(request, key, META[key][0] + value)  # an enum field takes its value's name
    return request


async def decide(request):
    form = await checked_form(request)
    v = await run_in_threadpool(_version, request, request.path_params["policy"], request.path_params["version"])
    action = str(form.get("action", "decide"))
    adding = action.removeprefix("add-") if action.startswith("add-") else ""
    answers = factform.read(form, v.schema, extra_item=adding)
    meta = _meta(form)
    shadow = str(form.get("shadow_version", ""))
    if shadow not in {r.version for r in v.others}:
        shadow = ""
    removing = REMOVE.fullmatch(action)
    if removing and v.schema.item_list(removing.group(1)):
        answers = factform.without_item(answers, removing.group(1), int(removing.group(2)))
    if adding or removing or action == "edit":  # drawn again; nothing is checked or decided yet
        return _form(request, v, answers, meta, shadow, errors={})
    if answers.errors:
        return _form(request, v, answers, meta, shadow, status=400)
    try:
        decision = await run_in_threadpool(request.app.state.client.decide, token(request), _request(v, answers, meta, shadow))
    except ServiceError as error:
        if error.http_status != 400:
            raise
        errors = factform.service_errors(error.fields, v.schema) or {"case-form": error.message}
        return _form(request, v, answers, meta, shadow, status=400, errors=errors)
    return render(request, "try_result.html", section="try", v=v, ref=v.policy.ref, d=decision,
                  answers=answers, meta=meta, shadow=shadow, explanations={e.audience: e for e in decision.explanations},
                  differs=shadow_differences(decision) if decision.HasField("shadow") else {})


async def golden(request):
    """The case as a golden-case YAML download, from the answers the result page carries."""
    form = await checked_form(request)
    v = await run_in_threadpool(_version, request, request.path_params["policy"], request.path_params["version"])
    answers = factform.read(form, v.schema)
    outcome = str(form.get("expect_outcome", "")).strip()
    if answers.errors or not outcome:
        raise HTTPException(400, "The case's answers did not come back whole: try the case again, then save it.")
    amount = str(form.get("expect_amount_pence", ""))
    items = [i for i in str(form.get("expect_items", "")).split(",") if i]
    ref = v.policy.ref
    text = goldenfile.golden_yaml(
        policy=ref.policy, version=ref.version, facts=answers.facts, meta=_meta(form), expect_outcome=outcome,
        description=str(form.get("description", "")).strip() or "(Say what this case shows, and why the law gives this outcome.)",
        expect_amount_pence=int(amount) if re.fullmatch(r"-?[0-9]+", amount) else None, expect_items=items)
    name = goldenfile.filename(ref.policy, ref.version)
    return Response(text, media_type="application/yaml; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def shadow_differences(decision: pb.DecideResponse) -> dict[str, bool]:
    """Which parts of the shadow's result differ from the decision's."""
    shadow = decision.shadow
    amount = decision.amount_pence if decision.HasField("amount_pence") else None
    shadow_amount = shadow.amount_pence if shadow.HasField("amount_pence") else None
    return {
        "outcome": shadow.outcome != decision.outcome,
        "amount": shadow_amount != amount,
        "outputs": {o.name: o.text for o in shadow.outputs} != {o.name: o.text for o in decision.outputs},
        "rules": list(shadow.rule_ids) != [step.rule_id for step in decision.trail],
        "missing": list(shadow.missing_facts) != [m.name for m in decision.missing_facts],
    }


filters = {"humanise": factform.humanise}

routes = [
    Route("/try", choose),
    Route("/try/{policy}/{version}", form_page, methods=["GET"]),
    Route("/try/{policy}/{version}", decide, methods=["POST"]),
    Route("/try/{policy}/{version}/golden", golden, methods=["POST"]),
]
