"""Replaying a logged decision: decide its request again with the version, revision and as-at
date it used, and say where the two differ (`python -m rules report --replay`, ReplayDecision)."""
from __future__ import annotations

from dataclasses import dataclass, field

from rules.audit.sealer import LoggedDecision
from rules.decide.evaluator import Evaluator
from rules.engine.decision import Decision, RequestError, Violation


@dataclass(frozen=True)
class Replay:
    replayed: Decision
    differences: list[str]
    current: Decision | None = None  # under the version's current revision, when it decided under an earlier one
    current_differences: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences


def replay(evaluator: Evaluator, logged: LoggedDecision) -> Replay:
    """Decide a logged request again with the version it used and compare everything but id,
    time, bundle and shadow (a shadow is not part of the decision). RequestError if that version
    (with the same content) is no longer loaded."""
    replayed = evaluator.replay(logged.request, logged.decision)
    ref = logged.decision.policy
    latest = evaluator.bundle.policies.get(ref.policy, {}).get(ref.version)
    current = None
    if latest is not None and latest.content_hash != ref.content_hash:  # corrected since
        current = evaluator.replay(logged.request, logged.decision, current=True)
    return Replay(replayed=replayed, differences=differences(logged.decision.golden(), replayed.golden()),
                  current=current, current_differences=differences(logged.decision.golden(), current.golden())
                  if current else [])


def what_if(evaluator: Evaluator, logged: LoggedDecision) -> Decision:
    """The logged decision as it would have been with counterfactuals asked for: its request
    decided again under the revisions it used, with "what would change it", keeping its id and
    time. RequestError if those revisions are no longer loaded, or if it no longer comes to the
    decision it recorded (changes from another decision would mislead)."""
    original = logged.decision
    found = evaluator.replay(logged.request.model_copy(update={"counterfactuals": True}), original)
    unlike = differences(_without_changes(original), _without_changes(found))
    if unlike:
        raise RequestError([Violation(field="decision_id", description=(
            f"it no longer decides as recorded ({', '.join(d.split(':', 1)[0] for d in unlike)}): see ReplayDecision"))])
    found.decision_id, found.decided_at, found.bundle_hash = original.decision_id, original.decided_at, original.bundle_hash
    return found


def _without_changes(decision: Decision) -> dict:
    """The decision as golden files pin it, without what asking for counterfactuals adds (the
    changes, and the texts that list them)."""
    data = decision.golden()
    for name in ("counterfactuals", "explanations", "rationale"):
        data.pop(name, None)
    return data


def differences(original: dict, replayed: dict) -> list[str]:
    """Where two decisions (as `Decision.golden()`) differ, one short line per top-level key,
    e.g. "outcome: WAIVED != FEE_PAYABLE"."""
    out = []
    for name in list(original) + [k for k in replayed if k not in original]:
        a, b = original.get(name), replayed.get(name)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{name}.{line}" for line in differences(a, b)]
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                out.append(f"{name}: {len(a)} != {len(b)} entries")
            else:
                first = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
                out.append(f"{name}: entry {first} differs")
        else:
            a, b = _short(a), _short(b)
            out.append(f"{name}: {a} != {b}" if a and b else f"{name}: differs")
    return out


def _short(value) -> str | None:
    """A scalar in a few words; None for a long text or a structure (say only that it differs)."""
    if value is None:
        return "(none)"
    text = str(value) if isinstance(value, (str, int, float, bool)) else ""
    return text if 0 < len(text) <= 40 else None
