"""`python -m rules new-version POLICY FROM NEW --effective-from DATE`: start a new version.

Copies `<policies>/POLICY/FROM.yaml` to `NEW.yaml`, changing only the top-level `version`,
`status`, `effective_from` and (with `--title`) `title` lines and removing `effective_to` (and the
source's `revision` and `corrections`: a new version starts at revision 1);
every comment and every other line is kept as it was. Copies FROM's golden cases to
`<golden>/POLICY/NEW/`, each naming NEW as its version and without its `expected` decision,
so that `python -m rules test POLICY NEW` lists them for review; their hand-written
expectations are kept for the author to check. Refuses to overwrite anything. Then runs
`python -m rules validate` on the new file and exits with its status.

An existing version's file is never edited here: that would change its content hash.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path

from rules.authoring import goldens, validate
from rules.authoring.goldentest import dir_options, shown
from rules.engine.loader import DEFAULT_POLICY_DIR
from rules.explain.explainer import format_value
from rules.language.model import ParamType, Status
from rules.language.yamlsource import YamlSourceError, read_yaml

VERSION_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")  # as model.PolicyVersion.version
_TOP_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:")
_DROPPED = ("effective_to", "revision", "corrections")  # top-level keys a new version does not inherit


def add_command(commands) -> None:
    cmd = commands.add_parser("new-version", help="copy a policy version and its golden cases to start a new version",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("policy")
    cmd.add_argument("source", metavar="FROM", help="the version to start from")
    cmd.add_argument("new", metavar="NEW", help="the new version's id, e.g. 2025 or review-2025")
    cmd.add_argument("--effective-from", required=True, type=_date, metavar="YYYY-MM-DD",
                     help="the first day the new version applies (planned, unless it is enacted)")
    cmd.add_argument("--status", choices=[s.value for s in Status], default=Status.PROPOSED.value,
                     help="the new version's status (default: %(default)s)")
    cmd.add_argument("--title", help="the new version's title (default: FROM's)")
    cmd.add_argument("--policies", type=Path, default=DEFAULT_POLICY_DIR, help="policy directory (default: %(default)s)")
    cmd.add_argument("--golden", type=Path, default=goldens.DEFAULT_DIR, help="golden cases directory (default: %(default)s)")
    cmd.set_defaults(run=run)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date as YYYY-MM-DD") from None


def run(args) -> int:
    problem = goldens.missing_dir(args.golden)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    source = args.policies / args.policy / f"{args.source}.yaml"
    target = source.with_name(f"{args.new}.yaml")
    cases_from = args.golden / args.policy / args.source
    cases_to = args.golden / args.policy / args.new
    problem = _refusal(args, source, target, cases_to)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        text = retarget(source.read_text(encoding="utf-8"), args.new, args.status, args.effective_from, args.title)
    except ValueError as exc:
        print(f"error: cannot copy {source}: {exc}", file=sys.stderr)
        return 2
    target.write_text(text, encoding="utf-8")
    copied, by_date = copy_cases(cases_from, cases_to, args.new)

    when = f"effective from {format_value(ParamType.DATE, args.effective_from)}"
    print(f"Created {shown(target)} from {args.source}: version {args.new}, {args.status}, {when}, no effective_to"
          + (f", titled {json.dumps(args.title, ensure_ascii=False)}" if args.title else "") + ".")
    if copied:
        print(f"Copied {copied} golden cases to {shown(cases_to)}/ without their expected decisions; "
              f"their expect_outcome (and expect_amount_pence, expect_items) are {args.source}'s: re-check each.")
    else:
        print(f"{args.source} has no golden cases to copy: write at least 10 in {shown(cases_to)}/.")
    if by_date:
        print(f"{by_date} of them chose the version by date (as_at or the policy's date fact); "
              f"they now name {args.new}: check their descriptions.")
    if args.status == Status.ENACTED.value:
        for line in overlaps(args.policies / args.policy, args.new, args.effective_from):
            print(line)
    print(f"\nChecking it: python -m rules validate{dir_options(args.policies)} {shown(target)}")
    status = _validate(args.policies, target)
    print("\n" + next_steps(args))
    return status


def _refusal(args, source: Path, target: Path, cases_to: Path) -> str:
    """Why the copy cannot be made ("" if it can): nothing is ever overwritten."""
    if not source.is_file():
        return f"no version {args.source} of {args.policy}: {shown(source)} does not exist"
    if not VERSION_ID.match(args.new):
        return f"'{args.new}' is not a version id (lower-case letters, digits and '-', at most 40)"
    if target.exists():
        return f"{shown(target)} already exists: choose another version id"
    if goldens.paths(args.golden, args.policy, args.new):
        return f"{shown(cases_to)} already has golden cases"
    return ""


def retarget(text: str, new: str, status: str, effective_from: dt.date, title: str | None) -> str:
    """The policy file's text with only the top-level version, status, dates and title changed."""
    lines = text.splitlines(keepends=True)
    spans = _top_level(lines)
    for key in ("version", "status"):
        if key not in spans:
            raise ValueError(f"it has no top-level '{key}:' line")
    intended = {"version": new, "status": status, "effective_from": effective_from} | ({"title": title} if title else {})
    # A new version starts at revision 1: its source's corrections are part of the source's history.
    wanted = {key: f"{key}: {_scalar(value)}\n" for key, value in intended.items()} | dict.fromkeys(_DROPPED, "")
    starts = {start: key for key, (start, _) in spans.items() if key in wanted}
    out, skip_to = [], 0
    for i, line in enumerate(lines):
        if i < skip_to:
            continue
        started = starts.get(i)
        if started is None:
            out.append(line)
            continue
        out.append(wanted[started])
        skip_to = spans[started][1]
        if started == "status" and "effective_from" not in spans:
            out.append(wanted["effective_from"])
    result = "".join(out)
    _check_retargeted(text, result, intended)
    return result


def _scalar(value) -> str:
    """A value as the policy files write it: bare where it reads back as itself (`status: proposed`,
    `version: review-2026`), else quoted (`version: "2026"`)."""
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        if read_yaml(f"v: {value}\n").data == {"v": value}:
            return value
    except YamlSourceError:
        pass
    return json.dumps(value, ensure_ascii=False)


def _top_level(lines: list[str]) -> dict[str, tuple[int, int]]:
    """Each top-level key's lines: from its `key:` line to its last indented continuation line."""
    spans: dict[str, tuple[int, int]] = {}
    key, start, end = None, 0, 0
    for i, line in enumerate(lines):
        match = _TOP_KEY.match(line)
        if match or (line.strip() and not line[0].isspace()):  # a new key, a comment or a list at column 0
            if key is not None:
                spans[key] = (start, end)
            key, start, end = (match.group(1), i, i + 1) if match else (None, i, i + 1)
        elif line.strip():
            end = i + 1
    if key is not None:
        spans[key] = (start, end)
    return spans


def _check_retargeted(before: str, after: str, intended: dict) -> None:
    """The copy reads as intended: the edited values are the new ones and nothing else changed."""
    try:
        old, new = read_yaml(before).data, read_yaml(after).data
    except YamlSourceError as exc:
        raise ValueError(f"line {exc.line}: {exc.message}") from None
    kept = {k: v for k, v in old.items() if k not in intended and k not in _DROPPED}
    if new != kept | intended:
        raise ValueError("its top-level lines are laid out in a way this tool cannot edit safely; copy it by hand")


def copy_cases(source: Path, target: Path, new: str) -> tuple[int, int]:
    """Copy every golden case to the new version, naming it and without `expected`; returns how many
    were copied and how many of them had chosen their version by date."""
    paths = sorted(source.glob("*.yaml"))
    if paths:
        target.mkdir(parents=True, exist_ok=True)
    by_date = 0
    for path in paths:
        case = goldens.read(path)
        request = case["request"]
        by_date += "version" not in request or "as_at" in request
        request = {"policy": request["policy"], "version": new,
                   **{k: v for k, v in request.items() if k not in ("policy", "version", "as_at")}}
        copy = {k: request if k == "request" else v for k, v in case.items() if k != "expected"}
        (target / path.name).write_text(goldens.dump(copy), encoding="utf-8")
    return len(paths), by_date


def overlaps(folder: Path, new: str, effective_from: dt.date) -> list[str]:
    """How the new enacted version fits among the enacted ones: an enacted version with no
    effective_to is in force until the next one starts, so no existing file needs editing."""
    lines = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            data = read_yaml(path.read_text(encoding="utf-8")).data
        except (OSError, UnicodeDecodeError, YamlSourceError):
            continue  # validate reports it
        if path.stem == new or not isinstance(data, dict) or data.get("status") != Status.ENACTED.value:
            continue
        start, end = data.get("effective_from"), data.get("effective_to")
        if not isinstance(start, dt.date) or (isinstance(end, dt.date) and end < effective_from):
            continue
        if start == effective_from:
            lines.append(f"Clash: {path.stem} is enacted from {start.isoformat()} too; choose another --effective-from.")
        elif start > effective_from:
            lines.append(f"{new} is in force until {(start - dt.timedelta(days=1)).isoformat()}: "
                         f"{path.stem} takes over on {start.isoformat()}.")
        elif end is None:
            lines.append(f"{path.stem} stays in force until {(effective_from - dt.timedelta(days=1)).isoformat()}; "
                         f"{new} takes over on {effective_from.isoformat()}. {shown(path)} is not edited, so its "
                         f"logged decisions still replay.")
        else:
            lines.append(
                f"Overlap: {path.stem} is in force until {end.isoformat()} by its own effective_to. Choose "
                f"--effective-from {(end + dt.timedelta(days=1)).isoformat()} or later; do not edit {shown(path)}: "
                f"changing an existing version's file changes its content hash, so its logged decisions could "
                f"no longer be replayed.")
    return lines


def _validate(policies: Path, path: Path) -> int:
    """`python -m rules validate --policies DIR FILE`, exactly as that command runs."""
    parser = argparse.ArgumentParser(prog="python -m rules")
    validate.add_command(parser.add_subparsers())
    args = parser.parse_args(["validate", "--policies", str(policies), str(path)])
    return args.run(args)


def next_steps(args) -> str:
    where, golden = dir_options(args.policies), dir_options(args.policies, args.golden)
    target = args.policies / args.policy / f"{args.new}.yaml"
    return "\n".join([
        "Next steps:",
        f"  1. Edit {shown(target)}: the parameters, facts and rules that change (keep its comments up to date).",
        f"  2. python -m rules validate{where}",
        f"  3. python -m rules test {args.policy} {args.new}{golden}   (decides each copied case; check every decision)",
        f"  4. Correct any expect_outcome that is wrong for {args.new}, then: "
        f"python -m rules test {args.policy} {args.new} --update{golden}",
        f"  5. Review the golden files written, and what changed: python -m rules diff {args.policy} {args.source} {args.new}{where}",
    ])
