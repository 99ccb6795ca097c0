"""`python -m rules remediate POLICY VERSION`: who a correction decides differently.

Every decision logged under an earlier revision of the version (found by the log's clear content
hash, so nothing is unsealed that need not be) is decided again with its recorded request under
the current revision, and compared on what the person was told: outcome, amount and outputs. The
report counts the decisions by transition ("NIL_RATE -> FLAT_RATE"); `--csv FILE` writes one row a
changed decision (its id, date, revisions and old and new codes and amounts) for the case system:
ids and codes only, never a fact. `--id` looks at the given decisions only.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rules.audit.errors import DecisionLogError
from rules.audit.factory import open_log
from rules.audit.log import DEFAULT_PATH, LOG_ENV, DecisionLog
from rules.decide.evaluator import Evaluator
from rules.engine.decision import Decision, RequestError
from rules.engine.durable_host import EngineError
from rules.engine.loader import DEFAULT_POLICY_DIR, PolicyLoadError, load_bundle

COLUMNS = ("decision_id", "decided_at", "revision", "current_revision", "outcome", "current_outcome",
           "amount_pence", "current_amount_pence", "outputs_changed")


def add_command(commands) -> None:
    cmd = commands.add_parser("remediate", help="the logged decisions a correction (a new revision) changes",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("policy")
    cmd.add_argument("version")
    cmd.add_argument("--decision-log", default=os.environ.get(LOG_ENV) or str(DEFAULT_PATH), metavar="PATH|URL",
                     help=f"the decision log: a SQLite file or a postgresql:// URL (default: ${LOG_ENV}, else {DEFAULT_PATH})")
    cmd.add_argument("--key-file", type=Path, default=None,
                     help="the log's key file (default: $CMS_POLICY_LOG_KEY, else the key file beside a SQLite log)")
    cmd.add_argument("--policies", type=Path, default=DEFAULT_POLICY_DIR, help="policy directory (default: %(default)s)")
    cmd.add_argument("--csv", type=Path, metavar="FILE", help="write the changed decisions here")
    cmd.add_argument("--id", action="append", default=[], metavar="DECISION_ID", help="only this decision (repeatable)")
    cmd.set_defaults(run=run)


@dataclass(frozen=True)
class Change:
    """One logged decision that the current revision decides differently."""
    decision_id: str
    decided_at: str
    before: Decision
    after: Decision

    def row(self) -> dict:
        changed = sorted({o.name for o in self.before.outputs} ^ {o.name for o in self.after.outputs}
                         | {o.name for o in self.before.outputs for n in self.after.outputs
                            if n.name == o.name and n.value != o.value})
        return {"decision_id": self.decision_id, "decided_at": self.decided_at,
                "revision": self.before.policy.revision, "current_revision": self.after.policy.revision,
                "outcome": self.before.outcome, "current_outcome": self.after.outcome,
                "amount_pence": _amount(self.before), "current_amount_pence": _amount(self.after),
                "outputs_changed": " ".join(changed)}


@dataclass
class Report:
    looked_at: int = 0
    changes: list[Change] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # ids that could not be decided again (and why, without facts)

    def transitions(self) -> Counter:
        return Counter(f"{c.before.outcome} -> {c.after.outcome}" for c in self.changes)


def remediate(log: DecisionLog, evaluator: Evaluator, policy: str, version: str, ids: Sequence[str] = ()) -> Report:
    """Decide again, under the current revision, the decisions made under earlier ones."""
    current = evaluator.bundle.policies[policy][version]
    earlier = [(i, h) for i, h in log.decided_under(policy, version) if h != current.content_hash]
    if ids:
        wanted = set(ids)
        earlier = [(i, h) for i, h in earlier if i in wanted]
    report = Report()
    for decision_id, _ in earlier:
        logged = log.get(decision_id)
        assert logged is not None  # decided_under names logged decisions, and none is ever removed
        report.looked_at += 1
        try:
            after = evaluator.replay(logged.request, logged.decision, current=True)
        except (RequestError, EngineError) as exc:
            report.failed.append(f"{decision_id}: {type(exc).__name__}")
            continue
        if _told(logged.decision) != _told(after):
            report.changes.append(Change(decision_id, logged.decision.decided_at, logged.decision, after))
    return report


def _told(d: Decision) -> tuple:
    """What the person was told: outcome, amount and outputs."""
    return d.outcome, d.amount_pence, tuple((o.name, str(o.value)) for o in d.outputs)


def _amount(d: Decision) -> str:
    return "" if d.amount_pence is None else str(d.amount_pence)


def run(args) -> int:
    try:
        bundle = load_bundle(args.policies)
    except PolicyLoadError as exc:
        print(f"error: the policy files were rejected:\n{exc}", file=sys.stderr)
        return 1
    current = bundle.policies.get(args.policy, {}).get(args.version)
    if current is None:
        print(f"error: no version {args.version} of {args.policy} is loaded", file=sys.stderr)
        return 2
    try:
        with open_log(args.decision_log, key_file=args.key_file, create=False) as log:
            report = remediate(log, Evaluator(bundle), args.policy, args.version, args.id)
            where = log.where
    except DecisionLogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    pv = current.version
    print(f"{args.policy}/{args.version} is at revision {pv.revision}. In {where}: {report.looked_at} decisions "
          f"made under an earlier revision; {len(report.changes)} decided differently now.")
    for transition, count in report.transitions().most_common():
        print(f"  {count:>6}  {transition}")
    if report.failed:
        print(f"{len(report.failed)} could not be decided again:")
        print("\n".join(f"  {line}" for line in report.failed))
    if args.csv:
        with args.csv.open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(c.row() for c in report.changes)
        print(f"Wrote {len(report.changes)} rows to {args.csv}.")
    return 0
