"""Policy versions as Markdown documents (rules/explain/markdown.py): every version renders with its
parameters, rules, citations and worked examples, tables stay tables, and `python -m rules doc`."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rules.authoring.doc import DEFAULT_EXAMPLES_DIR
from rules.engine.loader import load_bundle
from rules.explain.markdown import NO_EXAMPLES, document

ROOT = Path(__file__).resolve().parents[1]
LANGUAGE = Path(__file__).parent / "fixtures" / "language"
VERSIONS = sorted((p.parent.name, p.stem) for p in (ROOT / "rules" / "policies").glob("*/*.yaml"))


def _words(text: str) -> str:
    return " ".join(text.split())


def _cells(row: str) -> list[str]:
    """A GFM table row's cells (a `\\|` stays inside its cell)."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def _tables(doc: str) -> list[list[str]]:
    """Every table: runs of lines starting with `|` (outside fenced blocks)."""
    tables, current, fenced = [], [], False
    for line in doc.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if line.startswith("|") and not fenced:
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables + [current] * bool(current)


def _assert_tables_well_formed(doc: str) -> None:
    tables = _tables(doc)
    assert tables
    for table in tables:
        assert re.fullmatch(r"\|(---\|)+", table[1]), table[:2]
        widths = {len(_cells(row)) for row in table[:1] + table[2:]}
        assert widths == {table[1].count("---")}, table


@pytest.mark.parametrize("policy, version", VERSIONS, ids=[f"{p}/{v}" for p, v in VERSIONS])
def test_every_version_renders_completely(bundle, policy, version):
    compiled = bundle.policies[policy][version]
    pv = compiled.version
    doc = document(compiled, DEFAULT_EXAMPLES_DIR)

    assert doc.startswith(f"# {_words(pv.title)}\n")
    assert compiled.content_hash in doc
    for name in pv.parameters:
        assert f"| `{name}` |" in doc
    rules = list(pv.rules) + [r for lst in pv.lists for r in lst.rules]
    for rule in rules:
        assert re.search(rf"^#+ \d+\. `{re.escape(rule.id)}`$", doc, re.M), rule.id
    cites = list(pv.cites) + [c for p in pv.parameters.values() for c in p.cites] + [c for r in rules for c in r.cites]
    for cite in cites:
        assert _words(cite.source) in doc
    for code in pv.outcomes:
        assert f"| `{code}` |" in doc

    cases = sorted((DEFAULT_EXAMPLES_DIR / policy / version).glob("*.yaml"))
    headings = re.findall(r"^### Example (.+)$", doc, re.M)
    assert headings == [p.stem for p in cases]
    for path in cases:
        rationale = yaml.safe_load(path.read_text())["expected"]["rationale"]
        assert f"```text\n{rationale}\n```" in doc
    _assert_tables_well_formed(doc)


def test_money_and_dates_read_as_words(bundle):
    doc = document(bundle.policies["application_fee"]["2017"], DEFAULT_EXAMPLES_DIR)
    assert "| `application_fee_pence` | £20.00 | The application fee. |" in doc
    assert "in force from 1 August 2017 to 25 February 2024" in doc
    assert "[Child Support Fees Regulations 2014 (SI 2014/612), regs 3 and 4](https://www.legislation.gov.uk/uksi/2014/612)" in doc
    example = doc.split("### Example 01-standard-fee\n", 1)[1].split("### Example", 1)[0]
    assert "- `application_date`: 15 March 2019" in example
    assert "- `applicant_in_northern_ireland`: no" in example
    assert "**Decision:** `FEE_PAYABLE` (the application fee is payable), £20.00." in example
    assert document(bundle.policies["application_fee"]["2017"], DEFAULT_EXAMPLES_DIR) == doc  # nothing depends on the time


def test_rules_read_in_order_with_conditions_and_amounts(bundle):
    compiled = bundle.policies["application_fee"]["2017"]
    doc = document(compiled, DEFAULT_EXAMPLES_DIR)
    ids = re.findall(r"^### \d+\. `(.+)`$", doc, re.M)
    assert ids == [r.id for r in compiled.version.rules]
    under_19 = doc.split("### 3. `waived.under-19`\n", 1)[1].split("\n### ", 1)[0]
    assert "- **Concludes:** `WAIVED` (the application fee is waived)" in under_19
    assert "- **When:** application_date < applicant_date_of_birth + fee_waiver_age_years (19) years" in under_19
    standard = doc.split("`payable.standard`\n", 1)[1].split("\n## ", 1)[0]
    assert "- **When:** always" in standard and "- **Amount:** application_fee_pence" in standard
    assert "first outcome rule whose condition holds decides" in doc


def test_percent_tables_are_small_tables(bundle):
    doc = document(bundle.policies["maintenance_calculation"]["2012"], DEFAULT_EXAMPLES_DIR)
    assert "| `reduced_rates` | the table below |" in doc
    assert "| relevant other children 0 | 17% | 25% | 31% |" in doc
    assert "| 3 or more | 12.4% | 18.9% | 23.8% |" in doc


@pytest.fixture(scope="module")
def piped(tmp_path_factory):
    """The language fixtures, with `|` in texts that land in table cells, and one worked example."""
    root = tmp_path_factory.mktemp("piped")
    text = (LANGUAGE / "parts.yaml").read_text()
    for old, new in [("description: A table.", "description: A table | with a pipe."),
                     ("SOME_GOOD: at least one part is good", "SOME_GOOD: at least one part | is good"),
                     ("description: The price in pence.", "description: The price | in pence.")]:
        assert old in text
        text = text.replace(old, new)
    for name, body in [("parts", text), ("whole", (LANGUAGE / "whole.yaml").read_text())]:
        (root / "policies" / name).mkdir(parents=True)
        (root / "policies" / name / "v1.yaml").write_text(body)
    case = {"description": "Two parts, one good.", "expect_outcome": "SOME_GOOD",
            "request": {"policy": "parts", "version": "v1",
                        "facts": {"price": 1000, "row": 1, "colour": "red", "parts": [{"size": 9}, {"size": 2}]}},
            "expected": {"outcome": "SOME_GOOD", "outcome_description": "at least one part | is good",
                         "amount_pence": 125, "rationale": "SOME_GOOD.\n```\nnot the end of the block\n```"}}
    (root / "examples" / "parts" / "v1").mkdir(parents=True)
    (root / "examples" / "parts" / "v1" / "01-two-parts.yaml").write_text(yaml.safe_dump(case))
    return load_bundle(root / "policies"), root / "examples"


def test_a_pipe_in_a_text_stays_in_its_cell(piped):
    bundle, examples = piped
    doc = document(bundle.policies["parts"]["v1"], examples)
    _assert_tables_well_formed(doc)
    assert r"| `table` | the table below | A table \| with a pipe. | Demo Act 2020 |" in doc
    assert r"| `SOME_GOOD` | at least one part \| is good |" in doc
    assert "| `price` | money |  | The price \\| in pence. |" in doc


def test_lists_uses_and_examples_of_the_language_fixtures(piped):
    bundle, examples = piped
    doc = document(bundle.policies["parts"]["v1"], examples)
    assert "**`table`** (rows: first, then more; columns: first, then more):" in doc
    assert "| first | 10% | 20% |" in doc
    assert "#### 1. `part.good`" in doc and "- **Concludes:** `GOOD` (a good part)" in doc
    assert "- **`share`:** cell" in doc
    assert "- `price`: £10.00" in doc
    assert "- `parts`: 2 items\n  - item 0: `size`: 9\n  - item 1: `size`: 2" in doc
    assert "- `colour`: `red`" in doc  # not a fact of this version: shown as given
    assert "**Decision:** `SOME_GOOD` (at least one part | is good), £1.25." in doc
    assert "````text\nSOME_GOOD.\n```\nnot the end of the block\n```\n````" in doc
    whole = document(bundle.policies["whole"]["v1"], examples)
    assert ("- `parts`, the version in force on the same date: its outcome and amount are the facts "
            "`parts_result_outcome` and `parts_result_amount`; it is decided with `row` = 1.") in whole


def test_missing_examples_are_said_not_fatal(bundle, tmp_path):
    compiled = bundle.policies["application_fee"]["2017"]
    for examples in (tmp_path / "not-installed", None):
        doc = document(compiled, examples)
        assert doc.rstrip().endswith(f"## Worked examples\n\n{NO_EXAMPLES}")
        assert "### Example" not in doc


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rules", "doc", *args], cwd=ROOT, capture_output=True,
                          text=True, encoding="utf-8", timeout=120)


def test_cli_prints_and_writes_the_document(bundle, tmp_path):
    title = bundle.policies["application_fee"]["2017"].version.title
    done = _cli("application_fee", "2017")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"# {title}\n")
    assert "### Example 01-standard-fee" in done.stdout

    out = tmp_path / "fee.md"
    done = _cli("application_fee", "2017", "--examples", str(tmp_path / "none"), "--output", str(out))
    assert done.returncode == 0 and done.stdout == "", done.stderr
    assert out.read_text(encoding="utf-8").rstrip().endswith(NO_EXAMPLES)

    done = _cli("application_fee", "1999")
    assert done.returncode == 1 and done.stdout == ""
    assert "application_fee has no version '1999' (versions: 2014, 2017, 2024, review-2023)" in done.stderr
