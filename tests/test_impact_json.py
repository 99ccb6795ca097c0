"""impact.json, the impact report as data (`python -m rules impact --out DIR`): the same numbers as
the Markdown beside it, byte for byte the same for the same command, and right for a change of law.

application_fee/2017 → 2024: the fee was abolished from 26 February 2024 (2024.yaml: family-based
arrangements and Northern Ireland stay NOT_APPLICABLE, every other application is NO_FEE), so every
fee or waiver of 2017 becomes NO_FEE by `no-fee.abolished`, and nothing becomes FEE_PAYABLE or WAIVED.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = Path(__file__).parent / "fixtures" / "impact"
PAIR = ("application_fee/2017", "application_fee/2024")
COUNT = "300"


def _impact(out: Path, *args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "rules", "impact", *args, "--out", str(out), "--no-chart",
                             "--workers", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out / 'impact.json'}" in result.stderr


@pytest.fixture(scope="module")
def fee_report(tmp_path_factory) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("impact-json")
    _impact(out, *PAIR, "--count", COUNT)
    return out, json.loads((out / "impact.json").read_text(encoding="utf-8")), (out / "impact.md").read_text("utf-8")


def _rows(md: str, heading: str) -> list[list[str]]:
    """The body rows of the first table under `heading`, as cells."""
    section = md.split(f"\n{heading}\n", 1)[1]
    table = section.lstrip("\n").split("\n\n")[0].splitlines()
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in table[2:]]


def test_the_json_has_the_markdowns_numbers(fee_report):
    _, data, md = fee_report
    summary = {row[0]: int(row[1]) for row in _rows(md, "## Summary")}
    assert data["summary"]["compared"] == summary["cases compared"] == int(COUNT)
    assert data["summary"]["outcome_changed"] == summary["outcome changed"]
    assert data["summary"]["amount_changed"] == summary["same outcome, amount or outputs changed"]
    assert data["summary"]["flags_changed"] == summary["same outcome, only flags changed"]
    assert data["summary"]["unchanged"] == summary["unchanged"]
    assert data["summary"]["invalid"] == summary["invalid for either version (not compared)"]
    assert [[o["outcome"], str(o["old"]), str(o["new"])] for o in data["outcomes"]] == \
        [row[:3] for row in _rows(md, "## Outcomes")]
    assert [[t["old"], t["new"], str(t["cases"])] for t in data["transitions"]] == \
        [[a, b.removesuffix(" (unchanged)"), n] for a, b, n, _ in _rows(md, "## Transitions")]
    for change in data["outcome_changed"]:
        heading = f"### {change['old']} → {change['new']}: {change['cases']} case"
        assert heading in md
        for example in change["examples"]:
            shown = ", ".join(f"`{f['name']}={f['value']}`" for f in example["facts"])
            assert f"- `{example['id']}`: {shown}" in md
    amounts = data["amounts"]
    assert amounts["new_pence"] == 0 and amounts["difference_pence"] == -amounts["old_pence"]
    assert f"2017 {_money(amounts['old_pence'])}, 2024 £0.00, difference -{_money(amounts['old_pence'])}." in md
    assert data["corpus"] == {"kind": "synthetic", "seed": 2023, "count": int(COUNT)}
    assert data["command"] in md


def _money(pence: int) -> str:
    return f"£{pence // 100:,}.{pence % 100:02d}"


def test_the_transitions_are_those_of_the_abolished_fee(fee_report):
    _, data, _ = fee_report
    assert (data["old"]["version"], data["new"]["version"]) == ("2017", "2024")
    assert data["new"]["status"] == "enacted" and data["new"]["effective_from"] == "2024-02-26"
    assert re.fullmatch(r"[0-9a-f]{64}", data["old"]["content_hash"]) and data["old"]["revision"] >= 1
    moves = {(t["old"], t["new"]): t["cases"] for t in data["transitions"]}
    assert moves[("FEE_PAYABLE", "NO_FEE")] > 0 and moves[("WAIVED", "NO_FEE")] > 0
    for (old, new), _ in moves.items():
        assert new == "NO_FEE" or new == old, (old, new)  # nothing newly payable, waived or out of scope
    new_counts = {o["outcome"]: o["new"] for o in data["outcomes"]}
    assert new_counts.get("FEE_PAYABLE", 0) == new_counts.get("WAIVED", 0) == 0
    assert sum(moves.values()) == data["summary"]["compared"]
    for change in data["outcome_changed"]:
        assert {r["new"] for r in change["rules"]} == {"no-fee.abolished"}
        assert sum(r["cases"] for r in change["rules"]) == change["cases"] == moves[(change["old"], change["new"])]
        if change["old"] == "FEE_PAYABLE":
            assert all(r["old"].startswith("payable.") for r in change["rules"])
            for example in change["examples"]:
                assert (example["old"]["amount_pence"], example["new"]["amount_pence"]) == (2000, None)
                assert example["changes"] == ["amount £20.00 → none"]
        if change["old"] == "WAIVED":
            assert all(r["old"].startswith("waived.") for r in change["rules"])
    assert data["amount_changed"] == [] and data["flags_changed"] == [] and data["invalid"] == []


def test_the_json_is_the_same_byte_for_byte(fee_report, tmp_path):
    out, _, md = fee_report
    _impact(tmp_path, *PAIR, "--count", COUNT)
    assert (tmp_path / "impact.json").read_bytes() == (out / "impact.json").read_bytes()
    assert (tmp_path / "impact.md").read_text("utf-8") == md
    text = (out / "impact.json").read_text("utf-8")
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_a_folder_of_cases_with_its_errors(tmp_path):
    """The handwritten cases of test_impact.py (2024 → review-2023), counted there by hand."""
    _impact(tmp_path, "application_fee/2024", "application_fee/review-2023", "--cases", str(CASES))
    data = json.loads((tmp_path / "impact.json").read_text("utf-8"))
    assert data["corpus"] == {"kind": "cases", "directory": str(CASES), "files": 4, "cases": 13}
    assert data["summary"] | {"distinct_fact_sets": 0} == {
        "read": 11, "compared": 9, "outcome_changed": 7, "amount_changed": 0, "flags_changed": 1, "unchanged": 1,
        "invalid": 2, "other_policies": 1, "unreadable": 1, "distinct_fact_sets": 0}
    assert data["flags_changed"] == [{"outcome": "NOT_APPLICABLE", "old_flags": [], "new_flags": ["WARNING_ORDER"],
                                      "cases": 1}]
    assert {(i["error"], tuple(i["examples"])) for i in data["invalid"]} == {
        ("facts.application_route: expected one of: direct_pay, collect_and_pay, family_based", ("requests.jsonl:7",)),
        ("facts.favourite_colour: unknown fact for application_fee", ("cases.json#4",))}
    assert data["other_policies"] == [{"policy": "service_type", "cases": 1}]
    assert [u["id"] for u in data["unreadable"]] == ["requests.jsonl:8"]
    assert data["amounts"] == {"old_pence": 0, "new_pence": 4000, "difference_pence": 4000}
