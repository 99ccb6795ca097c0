"""`python -m rules test POLICY [VERSION ...]`: decide a version's golden cases and compare.

Runs each case of `<golden>/<policy>/<version>/` in-process, as the test suite does: the
engine's decision must meet the case's hand-written expectations (`expect_outcome`,
`expect_amount_pence`, `expect_items`) and equal its `expected` block. One line per case;
a failing case shows the expectations it fails, then a diff of `expected` against the
engine's decision. Exit status 1 if any case fails or has no `expected` yet, else 0.

`--update` rewrites the `expected` blocks of the named versions from the engine (never the
hand-written expectations, and never a case that fails them). A changed `expected` is a
behaviour change: review it before committing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rules.authoring import goldens
from rules.decide.evaluator import Evaluator
from rules.engine.loader import DEFAULT_POLICY_DIR, PolicyLoadError, load_bundle

WARNING = ("Warning: {n} expected decision(s) changed. For a version already in use this is a behaviour "
           "change: review the diff before committing (new law is a new version, and a correction a new "
           "revision: python -m rules revise; never an edit).")


def add_command(commands) -> None:
    cmd = commands.add_parser("test", help="run a policy version's golden cases (--update rewrites their expected decisions)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("policy")
    cmd.add_argument("versions", nargs="*", metavar="VERSION", help="versions to test (default: every version)")
    cmd.add_argument("--golden", type=Path, default=goldens.DEFAULT_DIR, help="golden cases directory (default: %(default)s)")
    cmd.add_argument("--policies", type=Path, default=DEFAULT_POLICY_DIR, help="policy directory (default: %(default)s)")
    cmd.add_argument("--update", action="store_true",
                     help="rewrite the named versions' expected decisions from the engine (review the changes!)")
    cmd.set_defaults(run=run)


def run(args) -> int:
    problem = goldens.missing_dir(args.golden)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    try:
        bundle = load_bundle(args.policies)
    except PolicyLoadError as exc:
        print(f"{exc}\nthe policy files do not load: fix them first (python -m rules validate)", file=sys.stderr)
        return 1
    known = bundle.policies.get(args.policy)
    if known is None:
        print(f"unknown policy '{args.policy}' (policies: {', '.join(sorted(bundle.policies))})", file=sys.stderr)
        return 2
    unknown = [v for v in args.versions if v not in known]
    if unknown:
        print(f"{args.policy} has no version {', '.join(unknown)} (versions: {', '.join(sorted(known))})", file=sys.stderr)
        return 2
    if args.update and not args.versions:
        print("--update rewrites golden files: name the version(s) to update", file=sys.stderr)
        return 2

    evaluator = Evaluator(bundle)
    counts = {"ok": 0, "FAIL": 0, "NEW": 0, "updated": 0}
    changed, empty = 0, []
    for version in args.versions or [c.version.version for c in bundle.versions(args.policy)]:
        cases = goldens.paths(args.golden, args.policy, version)
        if not cases:
            print(f"FAIL  {args.policy}/{version}: no golden cases in {shown(args.golden / args.policy / version)}")
            empty.append(version)
        for path in cases:
            checked = goldens.check(evaluator, path)
            status = _status(checked, args.update)
            counts[status] += 1
            name = f"{args.policy}/{version}/{path.stem}"
            if status == "updated":
                changed += checked.has_expected
                fields = (" (changed: " + ", ".join(goldens.changed_fields(checked.case["expected"], checked.actual)) + ")"
                          if checked.has_expected else " (first expected decision)")
                goldens.write_expected(checked)
                print(f"updated {shown(path)}{fields}")
            else:
                print(f"{status:<5} {name}")
                if status != "ok":
                    print("\n".join("        " + line for line in goldens.explain(checked)))

    print(_summary(counts) + (f"; no cases for {', '.join(empty)}" if empty else ""))
    if counts["NEW"]:
        versions = " ".join(args.versions) or "VERSION"
        print(f"cases marked NEW have no expected decision yet: check the decisions shown, then run "
              f"python -m rules test {args.policy} {versions} --update{dir_options(args.policies, args.golden)}")
    if changed:
        print(WARNING.format(n=changed))
    return 1 if counts["FAIL"] or counts["NEW"] or empty else 0


def shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when it is under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def dir_options(policies: Path, golden: Path | None = None) -> str:
    """The directory options a suggested command needs ("" for the default directories)."""
    options = f" --policies {shown(policies)}" if Path(policies).resolve() != DEFAULT_POLICY_DIR.resolve() else ""
    if golden is not None and Path(golden).resolve() != goldens.DEFAULT_DIR.resolve():
        options += f" --golden {shown(golden)}"
    return options


def _status(checked: goldens.Checked, update: bool) -> str:
    if checked.failures:
        return "FAIL"  # the hand-written expectations are never overruled, not even by --update
    if checked.ok:
        return "ok"
    if update:
        return "updated"
    return "FAIL" if checked.has_expected else "NEW"


def _summary(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    parts = [f"{counts['ok']} ok", f"{counts['FAIL']} failed"]
    parts += [f"{counts['NEW']} with no expected decision"] * bool(counts["NEW"])
    parts += [f"{counts['updated']} updated"] * bool(counts["updated"])
    return f"{total} cases: " + ", ".join(parts)
