"""A case tried in the console as a golden-case file (tests/golden/<policy>/<version>/*.yaml).

The file has the golden cases' keys: `description`, the hand-written expectations
(`expect_outcome`, and `expect_amount_pence` / `expect_items` when the decision has them) and
`request` (policy, version, facts; subject, requested_by and reason spelt as the golden files
spell them: RECEIVING_PARENT, NEW_APPLICATION). It has no `expected:` block: that is the engine's
whole decision, written by the project's own tools. The expectations here are only what the
service decided, so the file starts by saying they must be checked against the law first.
"""
from __future__ import annotations

from typing import Any

import yaml

HEADER = """\
# A golden case saved from the policy console's "Try a case" ({policy} {version}).
#
# CHECK BEFORE COMMITTING: expect_outcome{amount_items} below are what the decision
# service decided for these facts, not what the law says.
# A golden expectation is written from the law, never copied from the engine: work the case out
# by hand from the policy's POLICY-SPEC section and its legal sources, correct the expectations if
# they differ, and rewrite the description to say why the law gives that answer. Then save this
# file as tests/golden/{policy}/{version}/NN-short-name.yaml.
#
# The `expected:` block (the engine's whole decision) is then filled in by the project's tools:
#   python -m rules test {policy} {version} --update
# (or: pytest tests/test_golden.py --update-golden), and reviewed in the diff like any change.
"""

# The wire's enum prefixes, which the golden files leave off (AUDIENCE_RECEIVING_PARENT -> RECEIVING_PARENT).
PREFIXES = {"subject": "AUDIENCE_", "requested_by": "AUDIENCE_", "reason": "REQUEST_REASON_"}


class _Dumper(yaml.SafeDumper):
    """Multi-line text as `|` blocks, as the golden files are written."""


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def golden_yaml(*, policy: str, version: str, description: str, facts: dict[str, Any], meta: dict[str, str],
                expect_outcome: str, expect_amount_pence: int | None = None, expect_items: list[str] | None = None) -> str:
    """The golden file's text. `meta`: subject, requested_by and reason as their wire names (or empty)."""
    case: dict[str, Any] = {"description": description, "expect_outcome": expect_outcome}
    if expect_amount_pence is not None:
        case["expect_amount_pence"] = expect_amount_pence
    if expect_items:
        case["expect_items"] = list(expect_items)
    request: dict[str, Any] = {"policy": policy, "version": version, "facts": facts}
    for key, prefix in PREFIXES.items():
        if meta.get(key):
            request[key] = meta[key].removeprefix(prefix)
    case["request"] = request
    amount_items = ("".join([", expect_amount_pence" if expect_amount_pence is not None else "",
                             ", expect_items" if expect_items else ""]))
    body = yaml.dump(case, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return HEADER.format(policy=policy, version=version, amount_items=amount_items) + body


def filename(policy: str, version: str) -> str:
    """The download's name: public names only, never a fact."""
    return f"{policy}-{version}-case.yaml"
