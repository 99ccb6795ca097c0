"""Inspect a decision (for reviewers): a recorded decision by its id, in full, with its replay.

GetDecision decides who may see it: the service refuses a caller without its permission, and the
page is then the 403 error page with nothing of the decision. The id is the only thing in a URL
(an id is not a fact); the request's facts appear only in the page's body, never in its title.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC

import grpc
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from cms_policy.v1 import policy_pb2 as pb

from .. import audiences, trail
from ..client import ServiceClient, ServiceError
from ..formatting import plain, pounds, shown
from ..render import render
from ..security import checked_form, token

# Decision ids are the 32 hex digits of a random UUID (the service's Evaluator makes them so).
DECISION_ID = re.compile(r"[0-9a-f]{32}")
FIELD = "decision_id"
# A replay or what-if the service refuses for this decision (it no longer replays to the same outcome,
# or the account may read the decision but not do this): said in its panel, the decision still shown.
PANEL_ERRORS = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED)


def _problem(value: str) -> str | None:
    if not value:
        return "Enter a decision id"
    if not DECISION_ID.fullmatch(value):
        return "A decision id is 32 characters, each a digit from 0 to 9 or a letter from a to f"
    return None


def _lookup(request: Request, value: str, problem: str | None):
    return render(request, "decision_lookup.html", status_code=400 if problem else 200, section="decisions",
                  value=value, problem=problem, error_summary=[(FIELD, problem)] if problem else None)


def lookup(request: Request):
    """The form (GET, since an id is not a fact): a valid id goes to its page."""
    if FIELD not in request.query_params:
        return _lookup(request, "", None)
    value = request.query_params[FIELD].strip().lower()
    problem = _problem(value)
    if problem:
        return _lookup(request, value, problem)
    return RedirectResponse(f"/decisions/{value}", status_code=303)


@dataclass
class Inspected:
    """A recorded decision and what the page shows of it."""
    found: pb.GetDecisionResponse
    policies: dict[tuple[str, str, int], pb.GetPolicyResponse | None]
    notes: list[str] = field(default_factory=list)  # where a version's schema is not its own revision's

    @property
    def decision(self) -> pb.DecideResponse:
        return self.found.decision

    @property
    def request(self) -> pb.DecideRequest:
        return self.found.request


def _policy(client: ServiceClient, who: str | None, ref: pb.PolicyRef) -> tuple[pb.GetPolicyResponse | None, str]:
    """The version the decision used, at its revision if still loaded, else the current one (said so)."""
    try:
        return client.get_policy(who, ref.policy, ref.version, revision=ref.revision), ""
    except ServiceError as error:
        if error.code == grpc.StatusCode.PERMISSION_DENIED:
            return None, (f"Your account may not read {ref.policy} {ref.version}, so which facts are sensitive is "
                          "not shown: treat every fact as sensitive.")
        if error.code != grpc.StatusCode.NOT_FOUND:
            raise
    current = client.get_policy(who, ref.policy, ref.version)
    return current, (f"Revision {ref.revision} of {ref.policy} {ref.version} is no longer loaded: its facts are shown "
                     f"as the current revision ({current.ref.revision}) declares them.")


def inspect(request: Request, decision_id: str) -> Inspected:
    """GetDecision (the service refuses it without the permission), then the schema of every version used."""
    client: ServiceClient = request.app.state.client
    who = token(request)
    found = client.get_decision(who, decision_id)
    policies: dict[tuple[str, str, int], pb.GetPolicyResponse | None] = {}
    notes: list[str] = []
    todo = [found.decision]
    while todo:
        decision = todo.pop(0)
        ref = decision.policy
        key = (ref.policy, ref.version, ref.revision)
        if key not in policies:
            policies[key], note = _policy(client, who, ref)
            if note:
                notes.append(note)
        todo += decision.sub_decisions
    return Inspected(found, policies, notes)


def _page(request: Request, inspected: Inspected, status_code: int = 200, **panels):
    decision, asked = inspected.decision, inspected.request
    known = audiences.specs(p for p in inspected.policies.values() if p is not None)
    what_if = panels.get("what_if")
    parents = audiences.parent_views(
        asked, decision, known,
        counterfactuals=what_if.counterfactuals if isinstance(what_if, pb.WhatIfResponse) else None,
        explanations=what_if.explanations if isinstance(what_if, pb.WhatIfResponse) else None)
    texts = what_if.explanations if isinstance(what_if, pb.WhatIfResponse) else decision.explanations
    caseworker = next((e for e in texts if e.audience == pb.AUDIENCE_CASEWORKER), None)
    drawn = trail.group(decision, inspected.policies)
    return render(request, "decision.html", status_code=status_code, section="decisions", d=decision, asked=asked,
                  bundle_hash=inspected.found.bundle_hash, known=known, notes=inspected.notes,
                  facts=_facts(asked, known), read=audiences.read_facts(decision, asked),
                  drawn=drawn, picture=trail.picture(drawn), meanings=trail.MEANINGS, citations=_citations(decision),
                  caseworker=caseworker, parents=parents, **panels)


@dataclass
class FactRow:
    name: str
    spec: audiences.Spec | None
    value: str  # in words
    items: list[str] | None = None  # a list of items: each in words


def _facts(asked: pb.DecideRequest, known: dict[str, audiences.Spec]) -> list[FactRow]:
    rows = []
    for name in sorted(asked.facts.fields):
        spec, value = known.get(name), plain(asked.facts.fields[name])
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            rows.append(FactRow(name, spec, f"{len(value)} item{'s' if len(value) != 1 else ''}", [shown(v) for v in value]))
        elif spec is not None and spec.type == "money" and isinstance(value, int | float):
            rows.append(FactRow(name, spec, f"{pounds(int(value))} ({int(value)} pence)"))
        else:
            rows.append(FactRow(name, spec, shown(value)))
    return rows


def _citations(decision: pb.DecideResponse) -> list[tuple[str, pb.Citation]]:
    """Every citation the decision gives, once, with the rule (or item rule) that gave it."""
    out: list[tuple[str, pb.Citation]] = []
    seen: set[tuple[str, str, str]] = set()

    def add(rule: str, citations) -> None:
        for c in citations:
            if (c.source, c.provision, c.url) not in seen:
                seen.add((c.source, c.provision, c.url))
                out.append((rule, c))

    def walk(d: pb.DecideResponse, prefix: str) -> None:
        for step in d.trail:
            add(prefix + step.rule_id, step.citations)
        for item in d.items:
            add(f"{prefix}{item.step.rule_id} ({item.list}[{item.index}])", item.step.citations)
        for sub in d.sub_decisions:
            walk(sub, f"{sub.policy.policy} {sub.policy.version}: ")
    walk(decision, "")
    return out


def _checked_id(request: Request) -> tuple[str, str | None]:
    value = request.path_params[FIELD]
    return value, _problem(value)


def show(request: Request):
    decision_id, problem = _checked_id(request)
    if problem and not _problem(decision_id.lower()):
        return RedirectResponse(f"/decisions/{decision_id.lower()}", status_code=303)
    if problem:
        return _lookup(request, decision_id, problem)
    return _page(request, inspect(request, decision_id))


async def replay(request: Request):
    await checked_form(request)
    decision_id, problem = _checked_id(request)
    if problem:
        return _lookup(request, decision_id, problem)
    inspected = await run_in_threadpool(inspect, request, decision_id)
    try:
        result = await run_in_threadpool(request.app.state.client.replay, token(request), decision_id)
    except ServiceError as error:
        if error.code not in PANEL_ERRORS:
            raise
        return _page(request, inspected, status_code=error.http_status, replay_problem=error.message)
    return _page(request, inspected, replay=result)


async def what_if(request: Request):
    await checked_form(request)
    decision_id, problem = _checked_id(request)
    if problem:
        return _lookup(request, decision_id, problem)
    inspected = await run_in_threadpool(inspect, request, decision_id)
    try:
        result = await run_in_threadpool(request.app.state.client.what_if, token(request), decision_id)
    except ServiceError as error:
        if error.code not in PANEL_ERRORS:
            raise
        return _page(request, inspected, status_code=error.http_status, what_if_problem=error.message)
    return _page(request, inspected, what_if=result)


def decided(timestamp) -> str:
    """A decision's time: 6 December 2026, 13:55:11 UTC."""
    when = timestamp.ToDatetime(tzinfo=UTC)
    return f"{when.day} {when:%B %Y, %H:%M:%S} UTC"


def reason(value: int) -> str:
    if not value:
        return "Not stated"
    return pb.RequestReason.Name(value).removeprefix("REQUEST_REASON_").replace("_", " ").capitalize()


def whose(spec: audiences.Spec | None, asked: pb.DecideRequest) -> str:
    """Whose a fact is, in words."""
    if spec is None:
        return "Not a fact of this version"
    owned = audiences.owners(spec, asked)
    if not owned:
        return "The case's"
    if len(owned) == 2:
        return "Not known (no parent is named as the one it is about)"
    return audiences.WORDS[next(iter(owned))].capitalize() + "'s"


filters = {"decided": decided, "reason": reason, "whose": whose}
routes = [Route("/decisions", lookup), Route("/decisions/{decision_id}", show),
          Route("/decisions/{decision_id}/replay", replay, methods=["POST"]),
          Route("/decisions/{decision_id}/what-if", what_if, methods=["POST"])]
