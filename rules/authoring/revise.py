"""`python -m rules revise POLICY VERSION --change TEXT --source SOURCE`: start a correction.

A version's file is never silently edited: that would change its content hash, and the decisions
it made could no longer be replayed. A correction is a new revision instead. This command keeps
the current file, byte for byte, as `<policies>/POLICY/revisions/VERSION.r<N>.yaml` (still loaded,
for replay), and gives the current file `revision: N+1` and a `corrections:` entry saying what
changes and the legal source. It keeps the version's golden cases as `<golden>/POLICY/VERSION/r<N>/`,
each with `revision: N`, so that the earlier revision's behaviour stays pinned. Then edit the rules,
`python -m rules test POLICY VERSION`, and `python -m rules remediate POLICY VERSION` to find the
logged decisions the correction changes. Refuses to overwrite anything.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from rules.authoring import goldens
from rules.authoring.goldentest import dir_options, shown
from rules.authoring.newversion import _date, _top_level, _validate
from rules.engine.loader import DEFAULT_POLICY_DIR
from rules.language.yamlsource import YamlSourceError, read_yaml


def add_command(commands) -> None:
    cmd = commands.add_parser("revise", help="start a correction of a policy version as a new revision",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("policy")
    cmd.add_argument("version")
    cmd.add_argument("--change", required=True, help="what the correction changes, in words")
    cmd.add_argument("--source", required=True, help="the law that says so, e.g. 'SI 2016/516'")
    cmd.add_argument("--provision", default="", help="e.g. 'reg 2(2)'")
    cmd.add_argument("--url", default="")
    cmd.add_argument("--date", type=_date, default=dt.date.today(), metavar="YYYY-MM-DD",
                     help="when the correction is made (default: today)")
    cmd.add_argument("--policies", type=Path, default=DEFAULT_POLICY_DIR, help="policy directory (default: %(default)s)")
    cmd.add_argument("--golden", type=Path, default=goldens.DEFAULT_DIR, help="golden cases directory (default: %(default)s)")
    cmd.set_defaults(run=run)


def run(args) -> int:
    problem = goldens.missing_dir(args.golden)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    current = args.policies / args.policy / f"{args.version}.yaml"
    if not current.is_file():
        print(f"error: no version {args.version} of {args.policy}: {shown(current)} does not exist", file=sys.stderr)
        return 2
    raw = current.read_bytes()
    try:
        data = read_yaml(raw.decode("utf-8")).data
        revision = int(data.get("revision", 1))
        text = corrected(raw.decode("utf-8"), revision + 1, args)
    except (UnicodeDecodeError, YamlSourceError, ValueError, TypeError) as exc:
        print(f"error: cannot revise {shown(current)}: {exc}", file=sys.stderr)
        return 2
    kept = args.policies / args.policy / "revisions" / f"{args.version}.r{revision}.yaml"
    cases_to = args.golden / args.policy / args.version / f"r{revision}"
    if kept.exists() or cases_to.exists():
        print(f"error: {shown(kept if kept.exists() else cases_to)} already exists", file=sys.stderr)
        return 2
    kept.parent.mkdir(exist_ok=True)
    kept.write_bytes(raw)
    current.write_text(text, encoding="utf-8")
    pinned = pin_cases(args.golden / args.policy / args.version, cases_to, revision)
    print(f"Kept revision {revision} as {shown(kept)} (unchanged: its decisions still replay).")
    print(f"{shown(current)} is now revision {revision + 1}, with the correction listed.")
    print(f"Pinned {pinned} golden cases of revision {revision} in {shown(cases_to)}/.")
    where, golden = dir_options(args.policies), dir_options(args.policies, args.golden)
    status = _validate(args.policies, current)
    print("\n".join([
        "", "Next steps:",
        f"  1. Edit {shown(current)}: make the correction (rules, parameters, citations).",
        f"  2. python -m rules test {args.policy} {args.version}{golden}   (check every changed decision against the law)",
        "  3. Add golden cases for the corrected behaviour, with hand-written expect_outcome.",
        f"  4. python -m rules remediate {args.policy} {args.version} --decision-log LOG{where}   "
        f"(the logged decisions the correction changes)"]))
    return status


def corrected(text: str, revision: int, args) -> str:
    """The file's text with `revision:` set and a correction appended; every other line as it was."""
    lines = text.splitlines(keepends=True)
    spans = _top_level(lines)
    if "version" not in spans:
        raise ValueError("it has no top-level 'version:' line")
    cite = {"source": args.source} | ({"provision": args.provision} if args.provision else {}) | (
        {"url": args.url} if args.url else {})
    entry = [f"  - revision: {revision}\n", f"    date: {args.date.isoformat()}\n",
             f"    change: {json.dumps(args.change, ensure_ascii=False)}\n", "    cites:\n",
             *(f"      {'-' if i == 0 else ' '} {k}: {json.dumps(v, ensure_ascii=False)}\n"
               for i, (k, v) in enumerate(cite.items()))]
    if "revision" in spans:
        start, end = spans["revision"]
        lines[start:end] = [f"revision: {revision}\n"]
        spans = _top_level(lines)
        _, end = spans["corrections"]
        lines[end:end] = entry
    else:
        _, end = spans["version"]
        lines[end:end] = [f"revision: {revision}\n", "corrections:\n", *entry]
    result = "".join(lines)
    before, after = read_yaml(text).data, read_yaml(result).data
    listed = after.get("corrections", [])
    if after.get("revision") != revision or not listed or listed[-1].get("change") != args.change or \
            {k: v for k, v in after.items() if k not in ("revision", "corrections")} != \
            {k: v for k, v in before.items() if k not in ("revision", "corrections")}:
        raise ValueError("its top-level lines are laid out in a way this tool cannot edit safely; revise it by hand")
    return result


def pin_cases(source: Path, target: Path, revision: int) -> int:
    """Copy the version's cases as they are, each pinned to `revision` (its expected decision kept)."""
    paths = sorted(source.glob("*.yaml"))
    if paths:
        target.mkdir(parents=True)
    for path in paths:
        case = goldens.read(path)
        (target / path.name).write_text(goldens.dump({"revision": revision, **case}), encoding="utf-8")
    return len(paths)
