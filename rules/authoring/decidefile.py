"""`python -m rules decide FILE`: decide one request in-process and print its explanation.

FILE is JSON (`.json`) or YAML (any other name; `-` reads YAML or JSON from standard input):
either a request — `policy`, `version` or `as_at`, `facts`, and optionally `subject`,
`requested_by`, `reason` — or a golden case, whose `request:` is decided. YAML is read as
policy files are: only `true`/`false` are booleans. The explanation printed is the chosen
audience's (for the caseworker, the rationale); `--json` prints the whole decision instead.
A request that cannot be decided prints each problem as `field: message` and exits 2.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rules.decide.evaluator import Evaluator
from rules.engine.decision import Audience, DecisionRequest, RequestError
from rules.engine.loader import DEFAULT_POLICY_DIR, PolicyLoadError, load_bundle
from rules.language.yamlsource import YamlSourceError, read_yaml

AUDIENCES = {a.value.lower(): a for a in Audience}
WITHHELD = "(reasons withheld from this parent: they would reveal the other parent's sensitive information)"
HELD = "(nothing is sent to this parent yet: the decision is pending on information that is not theirs)"


def add_command(commands) -> None:
    cmd = commands.add_parser("decide", help="decide a request (or a golden case) from a YAML or JSON file",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("file", help="the request: a .json or YAML file, or - for standard input")
    cmd.add_argument("--policies", type=Path, default=DEFAULT_POLICY_DIR, help="policy directory (default: %(default)s)")
    cmd.add_argument("--audience", choices=sorted(AUDIENCES), default="caseworker",
                     help="whose explanation to print (default: %(default)s)")
    cmd.add_argument("--json", action="store_true", help="print the whole decision as JSON")
    cmd.add_argument("--no-counterfactuals", dest="counterfactuals", action="store_false",
                     help="do not work out what would change the outcome")
    cmd.set_defaults(run=run)


def run(args) -> int:
    try:
        request = _request(_read(args.file), args.counterfactuals)
    except _Refused as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    try:
        bundle = load_bundle(args.policies)
    except PolicyLoadError as exc:
        print(f"{exc}\nthe policy files do not load: fix them first (python -m rules validate)", file=sys.stderr)
        return 1
    try:
        decision = Evaluator(bundle).decide(request)
    except RequestError as exc:
        print("\n".join(f"{v.field}: {v.description}" for v in exc.violations), file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(decision.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return 0
    explanation = next(e for e in decision.explanations if e.audience is AUDIENCES[args.audience])
    if not explanation.notify:
        print(HELD)
        return 0
    print(explanation.text)
    if explanation.withheld:
        print(f"\n{WITHHELD}")
    return 0


def _iso(value: Any) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"{value!r} is not JSON")


class _Refused(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def _read(name: str) -> Any:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _Refused([f"{name}: cannot read: {exc}"]) from None
    if name.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise _Refused([f"{name}:{exc.lineno}: not JSON: {exc.msg}"]) from None
    try:
        return read_yaml(text).data
    except YamlSourceError as exc:
        raise _Refused([f"{name}:{exc.line}: {exc.message}"]) from None


def _request(data: Any, counterfactuals: bool) -> DecisionRequest:
    """The request in a request file or a golden case file, as JSON would carry it (a date
    written bare in YAML becomes "YYYY-MM-DD", as the service receives it)."""
    request = data.get("request", data) if isinstance(data, dict) else data
    if not isinstance(request, dict):
        raise _Refused(["request: a request is a mapping: policy, version or as_at, facts"])
    request = json.loads(json.dumps(request, default=_iso))
    if not counterfactuals:
        request = {**request, "counterfactuals": False}
    try:
        return DecisionRequest.model_validate(request)
    except ValidationError as exc:
        raise _Refused([f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors()]) from None
