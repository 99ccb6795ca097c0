"""Golden cases: `tests/golden/<policy>/<version>/*.yaml`, each a request, hand-written
expectations and the full `expected` decision; `<version>/r<N>/*.yaml` keep pinning how revision N
of a corrected version decided (each says `revision: N`).

The hand-written expectations (`expect_outcome`, and where they matter `expect_amount_pence`
and `expect_items`, the per-item verdicts in order) come from the policy, never from the
engine, and are never rewritten. `expected` is the engine's whole decision but its id and time;
it may be rewritten from the engine, and a changed `expected` is a behaviour change to review.

One implementation for tests/test_golden.py and `python -m rules test`: reading a case,
deciding it in-process, checking it, saying how it differs and rewriting its `expected` block
in the files' own YAML style.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rules.engine.decision import Decision, DecisionRequest, RequestError

# The repository's cases, found from the working directory: the installed package carries none.
DEFAULT_DIR = Path("tests/golden")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # golden files are large: libyaml when there is one
MAX_DIFF_LINES = 60
HASH = "policy.content_hash"  # changes with every edit of the policy file


class Dumper(yaml.SafeDumper):
    """Multi-line text as `|` blocks, so a golden diff reads like the rationale itself."""


Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def dump(data: Any) -> str:
    """YAML as the golden files are written."""
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)


def read(path: Path) -> dict:
    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_LOADER)


def missing_dir(golden_dir: Path) -> str | None:
    """Why `golden_dir` cannot be used (None if it can): a tool run outside the repository without
    --golden is told so, not shown an empty set of cases."""
    if Path(golden_dir).is_dir():
        return None
    hint = " (run from the repository root, or give --golden DIR)" if Path(golden_dir) == DEFAULT_DIR else ""
    return f"error: no golden cases directory {golden_dir}{hint}"


def paths(golden_dir: Path, policy: str, version: str) -> list[Path]:
    """A version's cases, in file-name order."""
    return sorted((Path(golden_dir) / policy / version).glob("*.yaml"))


@dataclass
class Checked:
    """One case decided by the engine and checked against its file."""
    path: Path
    case: dict
    actual: dict | None  # the engine's golden dump; None when the request was refused
    failures: list[str]  # the hand-written expectations it does not meet, or why it was refused

    @property
    def has_expected(self) -> bool:
        return "expected" in self.case

    @property
    def matches(self) -> bool:
        return self.case.get("expected") == self.actual

    @property
    def ok(self) -> bool:
        return not self.failures and self.has_expected and self.matches


def check(evaluator, path: Path) -> Checked:
    """Decide the case at `path` in-process and check its hand-written expectations."""
    try:
        case = read(path)
    except yaml.YAMLError as exc:  # reported like a refused request, not a traceback
        mark = getattr(exc, "problem_mark", None)
        return Checked(path, {}, None, [f"not YAML{f' (line {mark.line + 1})' if mark else ''}: {exc.problem if hasattr(exc, 'problem') else exc}"])
    try:
        request = DecisionRequest(**case["request"])
        # `revision`: a case pinning how an earlier revision of a corrected version decided
        if "revision" in case:  # with the revisions of used policies it used then
            then = Decision.model_validate(case["expected"]) if case.get("expected") else None
            decided = evaluator.decide_revision(request, case["revision"], then)
        else:
            decided = evaluator.decide(request)
        actual = decided.golden()
    except RequestError as exc:
        return Checked(path, case, None, [f"the request is refused: {v.field}: {v.description}" for v in exc.violations])
    return Checked(path, case, actual, expectation_failures(path, case, actual))


def expectation_failures(path: Path, case: dict, actual: dict) -> list[str]:
    """What the decision gets wrong by the case's own hand-written expectations,
    e.g. `expect_outcome: WAIVED, got FEE_PAYABLE`."""
    failures = []
    folder = path.parent.parent if "revision" in case else path.parent  # <version>/r<N>/ pins a revision
    home = f"{folder.parent.name}/{folder.name}"
    decided = f"{actual['policy']['policy']}/{actual['policy']['version']}"
    if decided != home:
        failures.append(f"decided by {decided}, but a golden case lives under the version that decides it ({home})")
    if actual["outcome"] != case["expect_outcome"]:
        failures.append(f"expect_outcome: {case['expect_outcome']}, got {actual['outcome']}")
    if "expect_amount_pence" in case and actual.get("amount_pence") != case["expect_amount_pence"]:
        failures.append(f"expect_amount_pence: {case['expect_amount_pence']}, got {actual.get('amount_pence')}")
    if "expect_items" in case:
        items = [v["outcome"] for v in actual.get("items", [])]
        if items != case["expect_items"]:
            failures.append(f"expect_items: [{', '.join(case['expect_items'])}], got [{', '.join(items)}]")
    return failures


def changed_fields(expected: Any, actual: Any, where: str = "") -> list[str]:
    """The paths of the values that differ, e.g. `amount_pence`, `trail[1].because`."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        keys = list(expected) + [k for k in actual if k not in expected]
        return [p for k in keys for p in changed_fields(expected.get(k), actual.get(k), f"{where}.{k}" if where else k)]
    if isinstance(expected, list) and isinstance(actual, list) and expected and actual:
        shared = [p for i, (e, a) in enumerate(zip(expected, actual)) for p in changed_fields(e, a, f"{where}[{i}]")]
        extra = range(min(len(expected), len(actual)), max(len(expected), len(actual)))
        return shared + [f"{where}[{i}]" for i in extra]
    return [] if expected == actual else [where]


def yaml_diff(expected: dict, actual: dict) -> list[str]:
    """A unified diff of the two decisions as golden YAML, only the changed parts with a
    few lines of context."""
    lines = list(difflib.unified_diff(dump(expected).splitlines(), dump(actual).splitlines(),
                                      "expected", "actual", n=3, lineterm=""))
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + [f"... ({len(lines) - MAX_DIFF_LINES} more lines of diff)"]
    return lines


def explain(checked: Checked) -> list[str]:
    """Why a case is not ok, for a person: the hand-written expectations it fails first,
    then how the decision differs from `expected` (or the decision, when there is none)."""
    lines = list(checked.failures)
    if checked.actual is None:
        return lines
    if not checked.has_expected:
        return lines + ["no expected decision yet; the engine decides:", *checked.actual["rationale"].splitlines()]
    if not checked.matches:
        fields = changed_fields(checked.case["expected"], checked.actual)
        if fields == [HASH]:
            return lines + [f"only {HASH} differs: the policy file was edited, but this decision is the same"]
        lines.append("differs from expected in: " + ", ".join(fields))
        lines += yaml_diff(checked.case["expected"], checked.actual)
    return lines


def write_expected(checked: Checked) -> bool:
    """Rewrite the case's `expected` block from the engine (nothing else); False if it already matched."""
    if checked.actual is None or checked.matches:
        return False
    checked.case["expected"] = checked.actual
    checked.path.write_text(dump(checked.case), encoding="utf-8")
    return True
