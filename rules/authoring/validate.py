"""`python -m rules validate [FILE ...]`: check policy files the way the service loads them.

Every error is printed at once as `path:line: message` and the exit status is 1. With no errors,
the lint findings (see rules/authoring/lint.py) follow as `path:line: warning: message` and
`path:line: note: message`, then a summary of what was loaded; the exit status is 0 (with
`--strict`, 1 if there is any warning). Files are checked as part of their directory's bundle
(versions of a policy must agree, used policies must exist), so naming files only narrows which
errors and findings are shown. A directory named instead of files is the bundle to check (the same
as `--policies DIR`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rules.authoring.lint import NOTE, WARNING, lint
from rules.engine.loader import DEFAULT_POLICY_DIR, PolicyLoadError, load_bundle


def add_command(commands) -> None:
    cmd = commands.add_parser("validate", help="check policy files; errors as path:line: message",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("files", nargs="*", type=Path, metavar="FILE_OR_DIR",
                     help="only report errors and findings in these files; or one policy directory to check")
    # None, not the default directory, so that run() can tell a --policies the author gave.
    cmd.add_argument("--policies", type=Path, default=None,
                     help=f"policy directory (default: {DEFAULT_POLICY_DIR})")
    cmd.add_argument("--strict", action="store_true", help="exit 1 if there is any warning")
    cmd.add_argument("--no-notes", action="store_true", help="do not show notes (overlapping rules)")
    cmd.set_defaults(run=run)


def run(args) -> int:
    try:
        args.policies, args.files = _what_to_check(args.policies, args.files)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    wanted = {f.resolve() for f in args.files}
    try:
        bundle = load_bundle(args.policies)
    except PolicyLoadError as exc:
        errors = [e for e in exc.errors if not wanted or Path(e.path).resolve() in wanted]
        for error in errors:
            print(error, file=sys.stderr)
        if not errors:
            print(f"the named files are valid, but other files in {args.policies} are not "
                  f"({len(exc.errors)} errors; run without file names to see them)", file=sys.stderr)
        return 1
    report = lint(bundle, args.policies)
    shown = [f for f in report.findings if (not wanted or Path(f.path).resolve() in wanted)
             and not (args.no_notes and f.level == NOTE)]
    for finding in shown:
        print(finding)
    warnings = sum(f.level == WARNING for f in shown)
    notes = sum(f.level == NOTE for f in shown)
    versions = sum(len(v) for v in bundle.policies.values())
    summary = (f"ok: {versions} versions of {len(bundle.policies)} policies, bundle {bundle.bundle_hash[:12]}; "
               f"{_count(warnings, 'warning')}, {_count(notes, 'note')}")
    if args.no_notes:
        summary = summary.removesuffix(f", {_count(notes, 'note')}") + " (notes not shown)"
    if report.not_analysed:
        summary += f"; {_count(report.not_analysed, 'rule')} too complex to analyse"
    print(summary)
    return 1 if args.strict and warnings else 0


def _what_to_check(policies: Path | None, paths: list[Path]) -> tuple[Path, list[Path]]:
    """The bundle directory and the files to report on. An author who names a copy of the policies
    must get that copy checked, never the default directory's verdict on it: a directory is taken
    as the bundle, and a file outside the bundle is refused."""
    dirs = [p for p in paths if p.is_dir()]
    if dirs:
        if len(paths) > 1:
            raise ValueError(f"{dirs[0]} is a directory: name one policy directory, or files inside "
                             "--policies DIR, not both")
        if policies is not None and policies.resolve() != dirs[0].resolve():
            raise ValueError(f"two policy directories: {dirs[0]} and --policies {policies}")
        return dirs[0], []
    policies = DEFAULT_POLICY_DIR if policies is None else policies
    if not policies.is_dir():
        raise ValueError(f"{policies}: no such policy directory")
    root = policies.resolve()
    for path in paths:
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        if not path.resolve().is_relative_to(root):
            raise ValueError(f"{path} is not in the policy directory {policies}: files are checked as part "
                             "of their bundle, so pass --policies DIR (or the directory alone)")
    return policies, paths


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"
