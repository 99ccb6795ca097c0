"""The impact report (`python -m rules impact`, rules/authoring/impact.py) and the synthetic corpus
(`python -m rules corpus`, rules/authoring/corpus.py).

The handwritten cases in tests/fixtures/impact/ are counted by hand from the spec, for
application_fee/2024 (every statutory application: NO_FEE) against review-2023 (the fee, waived
under 19 or for a victim who declared in time, with no reporting condition):

| case                | 2024           | review-2023                                   |
|---------------------|----------------|-----------------------------------------------|
| requests.jsonl:1    | NO_FEE         | WAIVED (abuse of the applicant, declared)     |
| requests.jsonl:4    | NOT_APPLICABLE | NOT_APPLICABLE + WARNING_ORDER (family-based) |
| requests.jsonl:5    | service_type: skipped                                          |
| requests.jsonl:6    | NO_FEE         | WAIVED (aged 18)                              |
| requests.jsonl:7    | invalid: application_route "by_post"                           |
| requests.jsonl:8    | unreadable: not JSON                                           |
| more.yaml#1         | NO_FEE         | FEE_PAYABLE £20 (no exemption)                |
| more.yaml#2         | NOT_APPLICABLE | NOT_APPLICABLE (Northern Ireland)             |
| golden-case.yaml    | NO_FEE         | FEE_PAYABLE £20 (declared after payment)      |
| cases.json#1        | NO_FEE         | WAIVED (witnessed abuse of the child)         |
| cases.json#2        | NO_FEE         | WAIVED (abuse_reported_to: a 2017 fact, ignored) |
| cases.json#3        | NO_FEE         | UNDETERMINED (no dates, no abuse facts)       |
| cases.json#4        | invalid: unknown fact favourite_colour                         |

Also: notes.txt is not a case file, and .hidden/ is not read.
"""
from __future__ import annotations

import collections
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rules.authoring import corpus, impact
from rules.engine.decision import DecisionRequest

ROOT = Path(__file__).resolve().parents[1]
CASES = Path(__file__).parent / "fixtures" / "impact"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SAMPLE = 300  # generated cases per policy checked against every version


def _rules(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rules", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def fixture_report(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("impact")
    result = _rules("impact", "application_fee/2024", "application_fee/review-2023", "--cases", str(CASES),
                    "--out", str(out))
    assert result.returncode == 0, result.stderr
    return result, out


# --- the report on handwritten cases -------------------------------------------------------------

def test_counts_are_those_worked_out_by_hand(fixture_report):
    result, out = fixture_report
    md = result.stdout
    assert md == (out / "impact.md").read_text(encoding="utf-8")
    for row in [
        "| cases compared | 9 | 100.0% |",
        "| outcome changed | 7 | 77.8% |",
        "| same outcome, amount or outputs changed | 0 | 0.0% |",
        "| same outcome, only flags changed | 1 | 11.1% |",
        "| unchanged | 1 | 11.1% |",
        "| invalid for either version (not compared) | 2 | |",
        "| other policies' cases (skipped) | 1 | |",
        "| unreadable (skipped) | 1 | |",
        # outcomes under each version
        "| NOT_APPLICABLE | 2 | 2 | +0 |",
        "| NO_FEE | 7 | 0 | -7 |",
        "| WAIVED | 0 | 4 | +4 |",
        "| FEE_PAYABLE | 0 | 2 | +2 |",
        "| UNDETERMINED | 0 | 1 | +1 |",
        # transitions
        "| NO_FEE | WAIVED | 4 | 44.4% |",
        "| NO_FEE | FEE_PAYABLE | 2 | 22.2% |",
        "| NO_FEE | UNDETERMINED | 1 | 11.1% |",
        "| NOT_APPLICABLE | NOT_APPLICABLE (unchanged) | 2 | 22.2% |",
        # the rules responsible
        "| no-fee.abolished | waived.domestic-abuse | 3 |",
        "| no-fee.abolished | waived.under-19 | 1 |",
        "| no-fee.abolished | payable.declaration-not-timely | 1 |",
        "| no-fee.abolished | payable.standard | 1 |",
        "| NOT_APPLICABLE | none | WARNING_ORDER | 1 |",
        "| service_type | 1 |",
    ]:
        assert row in md.splitlines(), row
    assert "### NO_FEE → WAIVED: 4 cases (44.4%)" in md
    assert "### NO_FEE → UNDETERMINED: 1 case (11.1%)" in md
    assert "review-2023 £40.00" in md  # two fees of £20


def test_examples_invalid_cases_and_footer(fixture_report, bundle):
    md = fixture_report[0].stdout
    # examples name the case and its key facts (codes and dates only)
    assert "- `golden-case.yaml`: `application_route=direct_pay`" in md
    assert "`declaration=written_after_payment` — amount none → £20.00" in md
    assert "- `cases.json#3`: " in md and "`application_date=?`" in md
    # invalid cases are counted with their first error; unreadable ones with the problem
    assert ("| 2024 and review-2023 | facts.application_route: expected one of: direct_pay, collect_and_pay, "
            "family_based | 1 | `requests.jsonl:7` |") in md
    assert "| 2024 and review-2023 | facts.favourite_colour: unknown fact for application_fee | 1 | `cases.json#4` |" in md
    assert "| `requests.jsonl:8` | not JSON:" in md
    assert "ignored.jsonl" not in md and "notes.txt" not in md
    # the footer: both versions' content hashes, the bundle hash, the corpus and the command
    for version in ("2024", "review-2023"):
        assert f"content sha256 `{bundle.policies['application_fee'][version].content_hash}`" in md
    assert f"policy bundle sha256 `{bundle.bundle_hash}`" in md
    assert f"- cases: `{CASES}` (4 files, 13 cases)" in md
    assert f"- command: `python -m rules impact application_fee/2024 application_fee/review-2023 --cases {CASES}`" in md


def test_chart_is_a_deterministic_png(fixture_report, tmp_path):
    png = fixture_report[1] / "impact.png"
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    assert b"tIME" not in data  # no timestamp chunk
    again = _rules("impact", "application_fee/2024", "application_fee/review-2023", "--cases", str(CASES),
                   "--out", str(tmp_path))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "impact.png").read_bytes() == data
    assert (tmp_path / "impact.md").read_text(encoding="utf-8") == fixture_report[0].stdout


def test_reading_cases_in_every_format():
    cases = impact.read_cases(CASES)
    ids = [c.id for c in cases]
    assert ids == ["cases.json#1", "cases.json#2", "cases.json#3", "cases.json#4", "golden-case.yaml",
                   "more.yaml#1", "more.yaml#2", "requests.jsonl:1", "requests.jsonl:4", "requests.jsonl:5",
                   "requests.jsonl:6", "requests.jsonl:7", "requests.jsonl:8"]
    by_id = {c.id: c for c in cases}
    assert by_id["more.yaml#1"].facts["application_date"] == "2024-03-01"  # an unquoted YAML date, as text
    assert by_id["more.yaml#1"].policy is None  # bare facts: the policy compared
    assert by_id["golden-case.yaml"].policy == "application_fee"
    assert by_id["requests.jsonl:5"].policy == "service_type"
    assert by_id["requests.jsonl:8"].error.startswith("not JSON")


def test_compare_in_process_matches_the_hand_count(bundle, evaluator):
    result = impact.compare(evaluator, bundle, "application_fee", "2024", "review-2023", impact.read_cases(CASES))
    assert (result.compared, result.outcome_changed, result.flags_changed, result.amount_changed) == (9, 7, 1, 0)
    assert result.transitions == {("NO_FEE", "WAIVED"): 4, ("NO_FEE", "FEE_PAYABLE"): 2,
                                  ("NO_FEE", "UNDETERMINED"): 1, ("NOT_APPLICABLE", "NOT_APPLICABLE"): 2}
    # A case is counted as often as it occurs, though identical facts are decided once.
    twice = impact.read_cases(CASES) + impact.read_cases(CASES)
    doubled = impact.compare(evaluator, bundle, "application_fee", "2024", "review-2023", twice)
    assert doubled.compared == 18 and doubled.distinct == result.distinct
    assert doubled.transitions == {k: 2 * n for k, n in result.transitions.items()}


def test_without_out_nothing_is_written(tmp_path):
    result = _rules("impact", "application_fee/2014", "application_fee/2017", "--cases", str(CASES), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "| cases compared | 9 | 100.0% |" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_missing_matplotlib_is_a_clear_error(monkeypatch, bundle, evaluator, tmp_path):
    result = impact.compare(evaluator, bundle, "application_fee", "2024", "review-2023", impact.read_cases(CASES))
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(impact.ImpactError, match=r"needs matplotlib: pip install -e '\.\[authoring\]'"):
        impact.chart(result, bundle, tmp_path / "impact.png")


def test_bad_arguments_are_refused():
    different = _rules("impact", "application_fee/2024", "service_type/review-2023", "--no-chart")
    assert different.returncode == 2 and "same policy" in different.stderr
    unknown = _rules("impact", "application_fee/2024", "application_fee/1999", "--no-chart")
    assert unknown.returncode == 2 and "unknown version '1999'" in unknown.stderr
    malformed = _rules("impact", "application_fee", "application_fee/2024", "--no-chart")
    assert malformed.returncode == 2 and "policy/version" in malformed.stderr


# --- out of the box: the synthetic corpus in memory ----------------------------------------------

def test_runs_out_of_the_box_without_cases(tmp_path):
    result = _rules("impact", "service_type/2012", "service_type/reform-2025", "--count", "120", "--workers", "1",
                    "--out", "report", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "| cases compared | 120 | 100.0% |" in result.stdout
    assert "synthetic corpus, seed 2023, 120 cases" in result.stdout
    assert "- `service_type.jsonl:" in result.stdout  # examples are lines of the corpus file
    assert "paying_parent_charge_percent" in result.stdout  # reform-2025 changes the charges
    assert (tmp_path / "report" / "impact.png").read_bytes().startswith(PNG_MAGIC)
    assert (tmp_path / "report" / "impact.md").read_text(encoding="utf-8") == result.stdout


def test_dask_workers_give_the_same_report(tmp_path):
    args = ["impact", "caseworker_routing/2024", "caseworker_routing/review-2023-pilot", "--count", "400", "--no-chart"]
    one, two = _rules(*args, "--workers", "1"), _rules(*args, "--workers", "2")
    assert one.returncode == two.returncode == 0, one.stderr + two.stderr
    assert one.stdout == two.stdout
    assert "### SPECIALIST_CASE_TEAM → " in one.stdout and "NAMED_CASEWORKER" in one.stdout


# --- the corpus ----------------------------------------------------------------------------------

def test_corpus_is_deterministic_for_a_seed(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, "7"), (b, "7"), (c, "8")):
        result = _rules("corpus", "--out", str(out), "--cases", "60", "--seed", seed)
        assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(f"{p}.jsonl" for p in corpus.GENERATORS)
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes()
        assert (a / name).read_bytes() != (c / name).read_bytes()
        lines = (a / name).read_text(encoding="utf-8").splitlines()
        assert len(lines) == 60
        assert all(set(json.loads(line)) == {"policy", "facts"} for line in lines)
    # the first N cases of a larger corpus are the corpus of N cases
    policy = "application_fee"
    assert corpus.generate(policy, 60, 7) == corpus.generate(policy, 200, 7)[:60]
    assert [corpus.dumps(r) for r in corpus.generate(policy, 60, 7)] == (a / f"{policy}.jsonl").read_text().splitlines()
    only = _rules("corpus", "--out", str(tmp_path / "one"), "--cases", "5", "--policy", "service_type")
    assert only.returncode == 0 and [p.name for p in (tmp_path / "one").iterdir()] == ["service_type.jsonl"]


@pytest.mark.parametrize("policy", sorted(corpus.GENERATORS))
def test_generated_cases_are_valid_for_every_version(policy, bundle, evaluator):
    cases = corpus.generate(policy, SAMPLE, corpus.DEFAULT_SEED)
    distinct = {json.dumps(c["facts"], sort_keys=True): c["facts"] for c in cases}
    unknown = sum(any(v is None for v in c["facts"].values()) for c in cases)
    assert 0 < unknown < SAMPLE // 10  # a few cases have a null fact (as many again lack one)
    for compiled in bundle.versions(policy):
        version = compiled.version.version
        outcomes = collections.Counter()
        for facts in distinct.values():
            # RequestError (INVALID_ARGUMENT) would fail the test
            decision = evaluator.decide(DecisionRequest(policy=policy, version=version, facts=facts,
                                                        counterfactuals=False))
            outcomes[decision.outcome] += 1
        decided = [o for o in outcomes if o != "UNDETERMINED"]
        if len(compiled.version.outcomes) > 1:  # reform-2025 has one outcome: Collect & Pay for every case
            assert len(decided) > 1, (version, outcomes)
        else:
            assert decided == list(compiled.version.outcomes), (version, outcomes)


@pytest.mark.parametrize("policy", ["application_fee", "service_type", "abuse_evidence"])
def test_generated_dates_fall_in_every_enacted_period(policy, bundle):
    """The date that chooses the law is spread over the versions: each enacted one has cases."""
    name = bundle.as_at_fact(policy)
    chosen = collections.Counter()
    for case in corpus.generate(policy, SAMPLE, corpus.DEFAULT_SEED):
        if case["facts"].get(name):
            compiled = bundle.in_force(policy, dt.date.fromisoformat(case["facts"][name]))
            chosen[compiled.version.version if compiled else None] += 1
    enacted = {c.version.version for c in bundle.versions(policy) if c.version.status.value == "enacted"}
    assert enacted <= set(chosen), chosen
    assert None not in chosen


def test_generator_docstrings_state_their_distributions():
    for generator in corpus.GENERATORS.values():
        doc = generator.__doc__ or ""
        assert "%" in doc and ("assumed" in doc or "review" in doc), generator.__name__
