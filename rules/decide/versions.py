"""Choosing the version a request is decided under: named, in force on its as-at date (given, or
read from the facts), its shadow version, and the revisions a logged decision's used policies used."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from rules.engine.compiler import CompiledPolicy
from rules.engine.decision import Decision, DecisionRequest, RequestError, Violation
from rules.engine.loader import Bundle
from rules.language import values


def check_names(*named: tuple[str, str]) -> None:
    """Policy and version names are short: a longer one is refused without being quoted."""
    problems = [Violation(field=field, description=f"longer than {values.MAX_NAME} characters")
                for field, name in named if len(name) > values.MAX_NAME]
    if problems:
        raise RequestError(problems)


def select(bundle: Bundle, request: DecisionRequest, today: Callable[[], dt.date]
           ) -> tuple[CompiledPolicy, dt.date | None]:
    """The version the request names, or the one in force on its as-at date (given, from its
    facts, or `today()`), and that date (None for a named version)."""
    check_names(("policy", request.policy), ("version", request.version))
    versions = bundle.policies.get(request.policy)
    if versions is None:
        known = ", ".join(sorted(bundle.policies))
        raise RequestError([Violation(field="policy", description=f"unknown policy '{request.policy}'; known: {known}")])
    if request.version and request.as_at:
        raise RequestError([Violation(field="version", description="give a version or an as_at date, not both")])
    if request.version:
        if request.version not in versions:
            known = ", ".join(c.version.version for c in bundle.versions(request.policy))
            raise RequestError([Violation(field="version", description=(
                f"unknown version '{request.version}' of {request.policy}; known: {known}"))])
        return versions[request.version], None
    from_facts = None if request.as_at else as_at_from_facts(bundle, request)
    as_at = request.as_at or from_facts or today()
    compiled = bundle.in_force(request.policy, as_at)
    if compiled is None:
        # A date from the facts is a fact: never quoted in an error.
        day = f"its {bundle.as_at_fact(request.policy)}" if from_facts else as_at.isoformat()
        raise RequestError([Violation(field="as_at", description=(
            f"no enacted version of {request.policy} is in force on {day}"))])
    return compiled, as_at


def as_at_from_facts(bundle: Bundle, request: DecisionRequest) -> dt.date | None:
    """The date the policy's as-at fact gives, if the request gives it."""
    name = bundle.as_at_fact(request.policy)
    if name is None or request.facts.get(name) is None:
        return None
    try:
        return values.parse(bundle.fact_schema(request.policy)[name], request.facts[name])
    except values.FactValueError as exc:
        raise RequestError([Violation(field=f"facts.{name}", description=str(exc))]) from None


def shadow_request(bundle: Bundle, request: DecisionRequest) -> DecisionRequest | None:
    """The same request pinned to the shadow version (checked before anything is decided)."""
    if not request.shadow_version:
        return None
    check_names(("shadow_version", request.shadow_version))
    if request.shadow_version not in bundle.policies.get(request.policy, {}):
        known = ", ".join(c.version.version for c in bundle.versions(request.policy))
        raise RequestError([Violation(field="shadow_version", description=(
            f"unknown version '{request.shadow_version}' of {request.policy}; known: {known}"))])
    return request.model_copy(update={"version": request.shadow_version, "as_at": None,
                                      "shadow_version": "", "counterfactuals": False})


def pins(bundle: Bundle, original: Decision) -> dict[tuple[str, str], CompiledPolicy] | None:
    """The revisions the original's used policies were decided under (None if one is gone)."""
    found: dict[tuple[str, str], CompiledPolicy] = {}
    for sub in original.sub_decisions:
        ref = sub.policy
        compiled = bundle.revision(ref.policy, ref.version, ref.content_hash)
        deeper = pins(bundle, sub)
        if compiled is None or deeper is None:
            return None
        found |= deeper | {(ref.policy, ref.version): compiled}
    return found


def revision_of(bundle: Bundle, compiled: CompiledPolicy, revision: int) -> CompiledPolicy:
    """An earlier (or the current) revision of the chosen version; RequestError if not loaded."""
    pv = compiled.version
    older = next((c for c in bundle.earlier_revisions(pv.policy, pv.version) if c.version.revision == revision),
                 compiled if pv.revision == revision else None)
    if older is None:
        raise RequestError([Violation(field="revision", description=(
            f"{pv.policy}/{pv.version} has no revision {revision} loaded"))])
    return older
