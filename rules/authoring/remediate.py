"""`python -m rules remediate POLICY VERSION`: who a correction decides differently.

Every decision logged under an earlier revision of the version (found by the log's clear content
hash, so nothing is unsealed that need not be) is decided again with its recorded request under
the current revision, and compared on what the person was told: outcome, amount and outputs. The
report counts the decisions by transition ("NIL_RATE -> FLAT_RATE"); `--csv FILE` writes one row a
changed decision (its id, date, revisions and old and new codes and amounts) for the case system:
ids and codes only, never a fact. `--id` looks at the given decisions only.

Many decisions (LOCAL_BELOW or more, see rules/authoring/bulk.py) are decided again on a local
Dask cluster of one process a core (`--workers N`; `--workers 1` stays in this process), or on a
running one (`--scheduler ADDRESS`). This process unseals each logged request and sends it, with
the original's version, date and as-at date, to a worker: the requests are sensitive, so a
scheduler off this machine must be a tls:// address. Workers send back the changed decisions'
codes and amounts only. The changes are the same however they are decided.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rules.audit.errors import DecisionLogError
from rules.audit.factory import open_log
from rules.audit.log import DEFAULT_PATH, LOG_ENV, DecisionLog
from rules.authoring import bulk
from rules.decide.evaluator import Evaluator
from rules.engine.decision import Decision, DecisionRequest, RequestError
from rules.engine.durable_host import EngineError
from rules.engine.loader import DEFAULT_POLICY_DIR, PolicyLoadError, load_bundle

CHUNK = 500  # decisions a bulk task
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
    bulk.add_arguments(cmd)
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


def earlier(log: DecisionLog, evaluator: Evaluator, policy: str, version: str, ids: Sequence[str] = ()) -> list[str]:
    """The ids of the decisions made under an earlier revision of the version (from the clear columns)."""
    current = evaluator.bundle.policies[policy][version]
    found = [i for i, h in log.decided_under(policy, version) if h != current.content_hash]
    return [i for i in found if i in set(ids)] if ids else found


def remediate(log: DecisionLog, evaluator: Evaluator, policy: str, version: str, ids: Sequence[str] = (), *,
              client=None, policy_dir: str | None = None, progress: bulk.Progress | None = None) -> Report:
    """Decide again, under the current revision, the decisions made under earlier ones: in this
    process, or in chunks on the client's cluster, whose workers load `policy_dir`."""
    report = Report()
    found = earlier(log, evaluator, policy, version, ids)
    # Unsealed a chunk at a time, as the workers take them (bulk.run keeps a few in flight).
    chunks = (((chunk,) if client is None else (policy_dir, chunk)) for chunk in _logged(log, found))
    work = (lambda chunk: (evaluator.bundle.bundle_hash, *again(evaluator, chunk))) if client is None else _chunk
    for bundle_hash, looked_at, changes, failed in bulk.run(client, work, chunks, progress, size=lambda r: r[1]):
        bulk.same_bundle(evaluator.bundle.bundle_hash, bundle_hash)
        report.looked_at += looked_at
        report.changes += changes
        report.failed += failed
    return report


def _logged(log: DecisionLog, ids: list[str]) -> Iterator[list[tuple[str, DecisionRequest, Decision]]]:
    """The logged requests, unsealed, in chunks, each with what replaying it under the current
    revision needs of the original decision (its version, date, as-at date, and what it told)."""
    for start in range(0, len(ids), CHUNK):
        chunk = []
        for decision_id in ids[start:start + CHUNK]:
            logged = log.get(decision_id)
            assert logged is not None  # decided_under names logged decisions, and none is ever removed
            chunk.append((decision_id, logged.request, _brief(logged.decision)))
        yield chunk


def again(evaluator: Evaluator, logged: list[tuple[str, DecisionRequest, Decision]]) -> tuple[int, list[Change], list[str]]:
    """The decisions decided again: how many, those the person would now be told differently, and
    those that could not be (id and error type: never a fact)."""
    changes, failed = [], []
    for decision_id, request, before in logged:
        try:
            after = evaluator.replay(request, before, current=True)
        except (RequestError, EngineError) as exc:
            failed.append(f"{decision_id}: {type(exc).__name__}")
            continue
        if _told(before) != _told(after):
            changes.append(Change(decision_id, before.decided_at, before, _brief(after)))
    return len(logged), changes, failed


def _chunk(policy_dir: str, logged: list) -> tuple[str, int, list[Change], list[str]]:
    """One task, on a worker."""
    bundle, evaluator = bulk.loaded(policy_dir)
    return (bundle.bundle_hash, *again(evaluator, logged))


def _brief(d: Decision) -> Decision:
    """A decision without its trail, explanations or anything else that could tell a fact: what
    replaying it needs (version, date, as-at date) and what the person was told."""
    return Decision(decision_id=d.decision_id, decided_at=d.decided_at, bundle_hash=d.bundle_hash, policy=d.policy,
                    as_at=d.as_at, outcome=d.outcome, outcome_description=d.outcome_description,
                    amount_pence=d.amount_pence, outputs=d.outputs, rationale="")


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
    evaluator = Evaluator(bundle)
    try:
        with open_log(args.decision_log, key_file=args.key_file, create=False) as log:
            total = len(earlier(log, evaluator, args.policy, args.version, args.id))
            progress = bulk.Progress(total, "remediation")
            try:
                with bulk.cluster(args.workers, args.scheduler, total, sensitive=True) as client:
                    report = remediate(log, evaluator, args.policy, args.version, args.id, client=client,
                                       policy_dir=str(args.policies.resolve()), progress=progress)
            finally:
                progress.close()
            where = log.where
    except (DecisionLogError, bulk.BulkError) as exc:
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
