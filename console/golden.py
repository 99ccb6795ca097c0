"""A version's golden cases as worked examples: the facts in words, the outcome expected, and the
caseworker's rationale expected (config.golden/<policy>/<version>/*.yaml, a dev checkout's tests/golden;
an earlier revision's in <version>/r<N>/).

The cases are made-up test cases, not anyone's facts, so a GET page may show them. They are shown
as the files have them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from cms_policy.v1 import policy_pb2 as pb

from .formatting import long_date, pounds, shown

# yaml.safe_load's loader, in C when PyYAML has it: a version's cases are 1.4 MB of YAML at most, 1.8 s
# in Python, 0.14 s in C.
SAFE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Answer:
    name: str
    label: str  # the fact's question, or its name when the version does not ask it
    text: str
    items: list[list[tuple[str, str]]] = field(default_factory=list)  # a list fact: each item's facts in words


@dataclass(frozen=True)
class Example:
    name: str  # the file's name without .yaml
    description: str
    answers: list[Answer]
    outcome: str
    outcome_description: str
    amount: str  # in pounds, or ""
    item_outcomes: list[str]
    rationale: str


def _answer(spec: pb.FactSpec | None, value) -> str:
    kind = spec.type if spec else ""
    if value is None:
        return "not known"
    if kind == "money" and isinstance(value, int | float) and not isinstance(value, bool):
        return pounds(int(value))
    if kind == "date" and isinstance(value, str):
        return long_date(value)
    if isinstance(value, list) and not value:
        return "none"
    return shown(value)


def answers(detail: pb.GetPolicyResponse, facts: dict) -> list[Answer]:
    """A case's facts in words, in the order the version declares them (any others after)."""
    specs = {f.name: f for f in detail.facts}
    lists = {lst.name: lst for lst in detail.lists}
    order = [*specs, *lists]
    found: list[Answer] = []
    for name in sorted(facts, key=lambda n: (order.index(n) if n in order else len(order), n)):
        value = facts[name]
        if name in lists and isinstance(value, list):
            item_specs = {f.name: f for f in lists[name].facts}
            items = [[(key, _answer(item_specs.get(key), v)) for key, v in item.items()] if isinstance(item, dict)
                     else [("value", shown(item))] for item in value]
            found.append(Answer(name, lists[name].question or name, f"{len(items)} item{'s' if len(items) != 1 else ''}"
                                if items else "none", items))
        else:
            spec = specs.get(name)
            found.append(Answer(name, (spec.question if spec else "") or name, _answer(spec, value)))
    return found


@lru_cache(maxsize=2048)
def _case(path: Path, mtime_ns: int, size: int) -> dict:
    """A golden file, parsed once while it is unchanged (the key holds its mtime and size): parsing a
    version's cases was most of its page's 43 ms (bench/console.py)."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE) or {}


def examples(root: Path | None, detail: pb.GetPolicyResponse, earlier: bool = False) -> list[Example] | None:
    """The worked examples of the version `detail` is, or None if there are none to read. An
    `earlier` revision's are those it was tested with, in <version>/r<revision>/."""
    if root is None:
        return None
    folder = root / detail.ref.policy / detail.ref.version
    folder = (folder / f"r{detail.ref.revision}" if earlier else folder).resolve()
    if not folder.is_relative_to(root.resolve()) or not folder.is_dir():
        return None
    found = []
    for path in sorted(folder.glob("*.yaml")):
        stat = path.stat()
        case = _case(path, stat.st_mtime_ns, stat.st_size)
        expected = case.get("expected") or {}
        amount = expected.get("amount_pence", case.get("expect_amount_pence"))
        found.append(Example(
            name=path.stem, description=str(case.get("description", "")).strip(),
            answers=answers(detail, (case.get("request") or {}).get("facts") or {}),
            outcome=str(expected.get("outcome") or case.get("expect_outcome", "")),
            outcome_description=str(expected.get("outcome_description", "")),
            amount=pounds(amount) if isinstance(amount, int) else "",
            item_outcomes=[str(item.get("outcome", "")) for item in expected.get("items") or []],
            rationale=str(expected.get("rationale", ""))))
    return found
