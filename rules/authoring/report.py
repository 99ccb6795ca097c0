"""`python -m rules explain <decision_id>`: a recorded decision as a report a reviewer can read.

Reads the decision log directly (no service needed). The report shows every fact given,
sensitive ones included: it is for caseworkers and reviewers, not for either parent.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rules.audit.errors import DecisionLogError
from rules.audit.factory import open_log
from rules.audit.log import DEFAULT_PATH, LOG_ENV
from rules.audit.sealer import LoggedDecision
from rules.engine.decision import UNDETERMINED, Audience, Decision, DecisionRequest, RequestError, Shadow

PARTIES = {Audience.CASEWORKER: "the Service (a caseworker)", Audience.RECEIVING_PARENT: "the receiving parent",
           Audience.PAYING_PARENT: "the paying parent"}
HEADINGS = {Audience.CASEWORKER: "For the caseworker", Audience.RECEIVING_PARENT: "For the receiving parent",
            Audience.PAYING_PARENT: "For the paying parent"}
AUDIENCE_ORDER = [Audience.CASEWORKER, Audience.RECEIVING_PARENT, Audience.PAYING_PARENT]


def add_command(commands) -> None:
    cmd = commands.add_parser("explain", help="print a recorded decision as a readable report",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("decision_id")
    cmd.add_argument("--decision-log", default=os.environ.get(LOG_ENV) or str(DEFAULT_PATH), metavar="PATH|URL",
                     help=f"the decision log: a SQLite file or a postgresql:// URL (default: ${LOG_ENV}, "
                          f"else {DEFAULT_PATH})")
    cmd.add_argument("--key-file", type=Path, default=None,
                     help="the log's key file (default: $CMS_POLICY_LOG_KEY, else the key file beside a SQLite log)")
    cmd.add_argument("--replay", action="store_true",
                     help="also decide it again with the version it used and say whether the result is identical")
    cmd.add_argument("--policies", type=Path, default=None, help="policy directory for --replay (default: rules/policies)")
    cmd.set_defaults(run=run)


def run(args) -> int:
    try:
        with open_log(args.decision_log, key_file=args.key_file, create=False) as log:
            logged = log.get(args.decision_id)
            where = log.where  # a URL without its password
    except DecisionLogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if logged is None:
        print(f"error: no decision with id '{args.decision_id}' in {where}", file=sys.stderr)
        return 1
    print(render(logged))
    if not args.replay:
        return 0
    from rules.decide.evaluator import Evaluator  # the engine is only needed to replay
    from rules.decide.replay import replay
    from rules.engine.loader import DEFAULT_POLICY_DIR, PolicyLoadError, load_bundle
    try:
        bundle = load_bundle(args.policies or DEFAULT_POLICY_DIR)
        result = replay(Evaluator(bundle), logged)
    except PolicyLoadError as exc:
        print(f"\nReplay: the policy files were rejected:\n{exc}", file=sys.stderr)
        return 1
    except RequestError as exc:
        print(f"\nReplay: cannot replay: {exc}")
        return 1
    if result.identical:
        print("\nReplay: identical (decided again with the same version: the same decision)")
        return 0
    print("\nReplay: DIFFERENT")
    print("\n".join(f"  - {d}" for d in result.differences))
    return 1


def render(logged: LoggedDecision) -> str:
    request, d = logged.request, logged.decision
    out = [f"Decision {d.decision_id}", "=" * (9 + len(d.decision_id))]
    ref = d.policy
    header = [("Decided at", d.decided_at),
              ("Policy", f"{ref.policy}/{ref.version} ({ref.status}): {ref.title}"),
              ("Version chosen", f"as at {d.as_at.isoformat()}" if d.as_at else "named in the request"),
              ("Content hash", ref.content_hash),
              ("Bundle hash", logged.bundle_hash)]
    if request.subject:
        header.append(("About", PARTIES[request.subject]))
    if request.requested_by:
        header.append(("Asked by", PARTIES[request.requested_by]))
    if request.reason:
        header.append(("Reason", request.reason.value.replace("_", " ").lower()))
    width = max(len(k) for k, _ in header) + 2
    out += [f"{k + ':':<{width}}{v}" for k, v in header]

    out += _section("Facts given", _facts(request))
    out += _section("Outcome", _outcome(d))
    explanations = sorted(d.explanations, key=lambda e: AUDIENCE_ORDER.index(e.audience))
    if explanations:
        for e in explanations:
            note = " (reasons withheld: they would reveal the other parent's sensitive information)" if e.withheld else ""
            out += _section(HEADINGS[e.audience] + note, e.text.splitlines())
    else:
        out += _section(HEADINGS[Audience.CASEWORKER], d.rationale.splitlines())
    if d.counterfactuals:
        out += _section("What would change it", [f"- {c.text}" for c in d.counterfactuals])
    if d.outcome == UNDETERMINED and d.missing_facts:
        out += _section("Facts needed", [f"- {m.name}: {m.question or m.description}" for m in d.missing_facts])
    if d.shadow:
        out += _section(f"Shadow ({request.shadow_version}, not acted on)", _shadow(d.shadow))
    return "\n".join(out)


def _shadow(s: Shadow) -> list[str]:
    if s.error:
        return [s.error]
    return [("Agrees with the decision." if s.agrees else "Differs from the decision."), *s.rationale.splitlines()]


def _section(title: str, lines: list[str]) -> list[str]:
    return ["", title, "-" * len(title), *lines]


def _facts(request: DecisionRequest) -> list[str]:
    if not request.facts:
        return ["(none)"]
    lines = []
    for name, value in request.facts.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{name}:")
            lines += [f"  [{i}] " + ", ".join(f"{k}: {_value(v)}" for k, v in item.items()) for i, item in enumerate(value)]
        else:
            lines.append(f"{name}: {_value(value)}")
    return lines


def _value(value) -> str:
    if value is None:
        return "not known"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a number that came through JSON as a double
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value) if value else "(none)"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _outcome(d: Decision) -> list[str]:
    lines = [f"{d.outcome}: {d.outcome_description}"]
    if d.amount_pence is not None:
        lines.append(f"Amount: {pounds(d.amount_pence)}")
    lines += [f"{o.name}: {o.text} ({o.description})" for o in d.outputs]
    lines += [f"Flag {f.code}: {f.description}" for f in d.flags]
    for item in d.items:
        reason = f": {item.step.because}" if item.step else ""
        lines.append(f"{item.list}[{item.index}] {item.outcome}{reason}")
    for sub in d.sub_decisions:
        amount = f", {pounds(sub.amount_pence)}" if sub.amount_pence is not None else ""
        lines.append(f"Used {sub.policy.policy}/{sub.policy.version}: {sub.outcome}{amount}")
    if d.actions:
        lines.append("Actions for the caseworker:")
        lines += [f"  {i}. {a}" for i, a in enumerate(d.actions, 1)]
    return lines


def pounds(pence: int) -> str:
    sign = "-" if pence < 0 else ""
    return f"{sign}£{abs(pence) // 100:,}.{abs(pence) % 100:02d}"
