"""Policies: every policy with a timeline of its versions, each version in full (parameters with the
legislation they come from, facts with their questions, rules in words, golden cases as worked
examples), and what changed between two versions or two revisions of one.

Everything here is public policy (no case's facts), so versions and revisions are chosen by GET.
"""
from __future__ import annotations

import re
from datetime import date

import grpc
from starlette.exceptions import HTTPException
from starlette.routing import Route

from cms_policy.v1 import policy_pb2 as pb

from .. import diff, golden
from ..client import ServiceError
from ..render import render
from ..security import token
from ..timeline import COMPACT, LARGE, timeline

# A version reference in a diff query: a version id, and optionally @ a revision number (1, 2, ...).
REF = re.compile(r"^(?P<version>[A-Za-z0-9][A-Za-z0-9._-]{0,99})(?:@(?P<revision>[1-9][0-9]{0,5}))?$")
STATUS_TAGS = {"enacted": "govuk-tag--green", "prospective": "govuk-tag--blue", "proposed": "govuk-tag--yellow"}
OWNERS = {"receiving_parent": "Receiving parent", "paying_parent": "Paying parent",
         "subject": "The parent the decision is about", "": "The case's (no parent's)"}


def status_tag(status: str) -> str:
    return STATUS_TAGS.get(status, "govuk-tag--grey")


def fact_owner(about: str) -> str:
    """FactSpec.about in words."""
    if about.startswith("fact:"):
        return f"The parent {about[5:]} names"
    return OWNERS.get(about, about)


def _summary(request, policy: str) -> pb.PolicySummary:
    listed = request.app.state.client.list_policies(token(request))
    found = next((p for p in listed.policies if p.policy == policy), None)
    if found is None:
        raise HTTPException(404, f"There is no policy called '{policy}'.")
    return found


def _get(request, policy: str, version: str, revision: int = 0, query: bool = False) -> pb.GetPolicyResponse:
    """GetPolicy; an unknown policy is a 404, and an unknown version or revision a 404 on the version's
    own page or a 400 when it came from a query (the diff's)."""
    try:
        return request.app.state.client.get_policy(token(request), policy, version, revision=revision)
    except ServiceError as error:
        if error.code == grpc.StatusCode.INVALID_ARGUMENT and "policy" in error.fields:
            raise HTTPException(404, error.fields["policy"]) from None
        unknown = error.fields.get("version") if error.code == grpc.StatusCode.INVALID_ARGUMENT else (
            error.message if error.code == grpc.StatusCode.NOT_FOUND else None)
        if unknown is not None:
            raise HTTPException(400 if query else 404, unknown) from None
        raise


def _choices(request, summary: pb.PolicySummary) -> list[tuple[str, str]]:
    """Every version and loaded earlier revision of the policy, as (diff query value, words)."""
    found = []
    for ref in summary.versions:
        try:
            earlier = _get(request, summary.policy, ref.version).earlier_revisions if ref.revision > 1 else []
        except ServiceError as error:  # a user who may list the policy but not read it still sees its versions
            if error.code != grpc.StatusCode.PERMISSION_DENIED:
                raise
            earlier = []
        found += [(f"{e.version}@{e.revision}", f"{e.version}, revision {e.revision} (corrected since)") for e in earlier]
        found.append((ref.version, f"{ref.version} ({ref.status}, revision {ref.revision})"))
    return found


def _title(summary: pb.PolicySummary) -> str:
    """The policy's title: its latest enacted version's (a proposal's may describe a change)."""
    enacted = [ref for ref in summary.versions if ref.status == "enacted"]
    return (enacted or list(summary.versions) or [pb.PolicyRef()])[-1].title


def index(request):
    listed = request.app.state.client.list_policies(token(request))
    today = date.today()
    return render(request, "policies.html", section="policies", bundle_hash=listed.bundle_hash,
                  policies=[(p, _title(p), timeline(p.policy, p.policy, p.versions, today, COMPACT))
                            for p in listed.policies])


def policy_page(request):
    summary = _summary(request, request.path_params["policy"])
    choices = _choices(request, summary)
    versions = [ref.version for ref in summary.versions]
    return render(request, "policies_policy.html", section="policies", summary=summary, choices=choices,
                  title=_title(summary),
                  picture=timeline("policy", summary.policy, summary.versions, date.today(), LARGE),
                  chosen=(versions[-2] if len(versions) > 1 else versions[0], versions[-1]) if versions else ("", ""))


def _revision(request) -> int:
    text = request.query_params.get("revision", "")
    if not text:
        return 0
    if not re.fullmatch(r"[0-9]{1,6}", text):
        raise HTTPException(400, "revision is a revision number: 1, 2 and so on (or leave it out for the current one).")
    return int(text)


def version_page(request):
    policy, version = request.path_params["policy"], request.path_params["version"]
    revision = _revision(request)
    detail = _get(request, policy, version, revision)
    current = detail if not revision else _get(request, policy, version)
    examples = golden.examples(request.app.state.config.golden, detail, earlier=detail.ref.revision != current.ref.revision)
    return render(request, "policies_version.html", section="policies", detail=detail, ref=detail.ref,
                  current=current.ref, examples=examples)


def _ref(request, name: str) -> tuple[str, int]:
    text = request.query_params.get(name, "")
    if not text:
        raise HTTPException(400, f"Choose two versions to compare: '{name}' is missing (for example ?a=2017&b=2024, "
                                 "or 2017@1 for revision 1 of 2017).")
    match = REF.match(text)
    if not match:
        raise HTTPException(400, f"'{name}' should be a version, or a version @ a revision number (for example "
                                 "2017 or 2017@1); it is not.")
    return match["version"], int(match["revision"] or 0)


def diff_page(request):
    policy = request.path_params["policy"]
    (a_version, a_revision), (b_version, b_revision) = _ref(request, "a"), _ref(request, "b")
    summary = _summary(request, policy)
    old = _get(request, policy, a_version, a_revision, query=True)
    new = _get(request, policy, b_version, b_revision, query=True)
    return render(request, "policies_diff.html", section="policies", summary=summary, old=old.ref, new=new.ref,
                  sections=diff.compare(old, new), choices=_choices(request, summary),
                  chosen=(request.query_params["a"], request.query_params["b"]))


# Named policy_* so that no other page's filter of the same name replaces them (app.py merges them all).
filters = {"policy_status_tag": status_tag, "policy_fact_owner": fact_owner,
           "policy_parameter_value": diff.parameter_value}
routes = [Route("/policies", index), Route("/policies/{policy}", policy_page),
          Route("/policies/{policy}/diff", diff_page),  # before a version's page: no version is called "diff"
          Route("/policies/{policy}/{version}", version_page)]
