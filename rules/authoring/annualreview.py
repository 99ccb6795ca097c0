"""`python -m rules annual-review POLICY (--cases DIR | --count N) [--as-at DATE]`: a review batch.

Decides every case as an annual review (reason ANNUAL_REVIEW, requested by the caseworker) under
the version of POLICY in force on the review date (`--as-at`, default today; give it for a run
that can be repeated), and prints a summary: the cases by version and outcome with their amounts,
and the cases that could not be decided, by the fact (or field) at fault. `--csv FILE` writes one
row a case: its id, version, outcome and amount in pence, and the field at fault if invalid: ids
and codes only, never a fact.

Cases are read as `python -m rules impact` reads them (`--cases DIR`; ids `file:line` or
`file#n`), or are its synthetic corpus (`--count N`, `--seed`; ids `<policy>.jsonl:n`). Cases of
other policies are skipped and counted. Bulk runs go through Dask as impact's do (`--workers`,
`--scheduler`; real cases are sensitive, so a scheduler off this machine must be tls://); the
summary and the CSV are the same however they run.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rules.authoring import bulk, corpus, impact
from rules.engine.decision import Audience, DecisionRequest, RequestError, RequestReason

CHUNK = 2_000  # cases a task
COLUMNS = ("case_id", "version", "outcome", "amount_pence", "invalid")


@dataclass
class Summary:
    cases: int = 0
    outcomes: Counter = field(default_factory=Counter)  # (version, outcome) -> cases
    amounts: Counter = field(default_factory=Counter)  # (version, outcome) -> pence
    invalid: Counter = field(default_factory=Counter)  # field at fault -> cases
    other_policies: Counter = field(default_factory=Counter)
    unreadable: int = 0

    def add(self, part: Summary) -> None:
        self.cases += part.cases
        for mine, theirs in ((self.outcomes, part.outcomes), (self.amounts, part.amounts),
                             (self.invalid, part.invalid), (self.other_policies, part.other_policies)):
            mine.update(theirs)
        self.unreadable += part.unreadable


def review(evaluator: Any, policy: str, as_at: dt.date, cases: list[impact.Case]) -> tuple[Summary, list[tuple]]:
    """The summary of a run of cases and one row a case of the policy (COLUMNS), in case order."""
    summary, rows = Summary(), []
    for case in cases:
        if case.error:
            summary.unreadable += 1
            continue
        if case.policy not in (None, policy):
            summary.other_policies[case.policy] += 1
            continue
        summary.cases += 1
        try:
            request = DecisionRequest(policy=policy, as_at=as_at, facts=case.facts or {}, counterfactuals=False,
                                      reason=RequestReason.ANNUAL_REVIEW, requested_by=Audience.CASEWORKER)
            decision = evaluator.decide_unexplained(request)
        except RequestError as exc:
            at_fault = exc.violations[0].field  # the field only: a description may quote a value
            summary.invalid[at_fault] += 1
            rows.append((case.id, "", "", "", at_fault))
            continue
        except ValueError as exc:  # the request itself is malformed (pydantic)
            summary.invalid[f"request ({type(exc).__name__})"] += 1
            rows.append((case.id, "", "", "", "request"))
            continue
        key = (decision.policy.version, decision.outcome)
        summary.outcomes[key] += 1
        summary.amounts[key] += decision.amount_pence or 0
        rows.append((case.id, decision.policy.version, decision.outcome,
                     "" if decision.amount_pence is None else decision.amount_pence, ""))
    return summary, rows


def _chunk(policy_dir: str, policy: str, as_at: dt.date, cases: list[impact.Case] | None,
           synthetic: tuple | None) -> tuple[str, int, Summary, list[tuple]]:
    """One task, on a worker: its cases (or the synthetic ones it makes), reviewed."""
    bundle, evaluator = bulk.loaded(policy_dir)
    if cases is None:
        assert synthetic is not None
        cases = impact.synthetic_chunk(policy, *synthetic)
    summary, rows = review(evaluator, policy, as_at, cases)
    return bundle.bundle_hash, len(cases), summary, rows


def render(policy: str, as_at: dt.date, summary: Summary, corpus_text: str) -> str:
    lines = [f"Annual review of {policy} as at {as_at.isoformat()}: {summary.cases} cases ({corpus_text}).", "",
             "| version | outcome | cases | amounts (pence) |", "|---|---|---:|---:|"]
    lines += [f"| {v} | {o} | {n} | {summary.amounts[(v, o)]} |"
              for (v, o), n in sorted(summary.outcomes.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1]))]
    decided = sum(summary.outcomes.values())
    lines += ["", f"Decided {decided}; total of the amounts {sum(summary.amounts.values())} pence."]
    if summary.invalid:
        lines += ["", "Not decided (invalid), by the field at fault:"]
        lines += [f"  {n:>8}  {name}" for name, n in sorted(summary.invalid.items(), key=lambda kv: (-kv[1], kv[0]))]
    if summary.other_policies:
        lines += ["", "Other policies' cases (skipped): " + ", ".join(
            f"{name} {n}" for name, n in sorted(summary.other_policies.items()))]
    if summary.unreadable:
        lines += ["", f"Unreadable cases (skipped): {summary.unreadable}"]
    return "\n".join(lines) + "\n"


def add_command(commands) -> None:
    cmd = commands.add_parser("annual-review", help="decide a caseload as annual reviews and summarise the outcomes",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("policy", metavar="POLICY")
    source = cmd.add_mutually_exclusive_group(required=True)
    source.add_argument("--cases", type=Path, metavar="DIR", help="directory of cases (as impact reads them)")
    source.add_argument("--count", type=int, metavar="N", help="N cases of the synthetic corpus")
    cmd.add_argument("--seed", type=int, default=corpus.DEFAULT_SEED, metavar="N",
                     help="seed of the synthetic corpus (default: %(default)s)")
    cmd.add_argument("--as-at", type=dt.date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                     help="the review date, which chooses the version in force (default: today)")
    cmd.add_argument("--csv", type=Path, metavar="FILE", help="write one row a case (ids and codes only) here")
    cmd.add_argument("--policies", type=Path, default=None, metavar="DIR",
                     help="policy directory (default: rules/policies)")
    bulk.add_arguments(cmd)
    cmd.set_defaults(run=run)


def run(args) -> int:
    from rules.engine.loader import DEFAULT_POLICY_DIR, PolicyLoadError
    as_at = args.as_at or dt.datetime.now(dt.UTC).date()
    policy_dir = str((args.policies or DEFAULT_POLICY_DIR).resolve())
    try:
        bundle, _ = bulk.loaded(policy_dir)
    except PolicyLoadError as exc:
        print(f"error: the policy files were rejected:\n{exc}", file=sys.stderr)
        return 1
    if args.policy not in bundle.policies:
        print(f"error: unknown policy '{args.policy}'; known: {', '.join(sorted(bundle.policies))}", file=sys.stderr)
        return 2
    if bundle.in_force(args.policy, as_at) is None:
        print(f"error: no enacted version of {args.policy} is in force on {as_at.isoformat()}", file=sys.stderr)
        return 2
    tasks: Iterable[tuple]
    if args.cases is not None:
        try:
            cases = impact.read_cases(args.cases)
        except impact.ImpactError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        total, corpus_text = len(cases), f"`{args.cases}`"
        tasks = ((policy_dir, args.policy, as_at, cases[i:i + CHUNK], None) for i in range(0, len(cases), CHUNK))
    else:
        if args.count < 0 or args.policy not in corpus.GENERATORS:
            print(f"error: --count must be 0 or more, and {args.policy} needs a synthetic corpus "
                  f"({', '.join(corpus.GENERATORS)}); else give --cases DIR", file=sys.stderr)
            return 2
        total, corpus_text = args.count, f"synthetic corpus, seed {args.seed}"
        tasks = ((policy_dir, args.policy, as_at, None, chunk)
                 for chunk in corpus.chunks(args.policy, args.count, args.seed, CHUNK))
    summary = Summary()
    progress = bulk.Progress(total, "annual review")
    out = None
    try:
        out = args.csv.open("w", newline="", encoding="utf-8") if args.csv else None
        writer = csv.writer(out) if out else None
        if writer:
            writer.writerow(COLUMNS)
        with bulk.cluster(args.workers, args.scheduler, total, sensitive=args.cases is not None) as client:
            for bundle_hash, _, part, rows in bulk.run(client, _chunk, tasks, progress, size=lambda r: r[1]):
                bulk.same_bundle(bundle.bundle_hash, bundle_hash)
                summary.add(part)
                if writer:
                    writer.writerows(rows)
    except (bulk.BulkError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        progress.close()
        if out:
            out.close()
    sys.stdout.write(render(args.policy, as_at, summary, corpus_text))
    if args.csv:
        print(f"Wrote {summary.cases} rows to {args.csv}.")
    return 0
