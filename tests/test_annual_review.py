"""`python -m rules annual-review` (rules/authoring/annualreview.py): a caseload decided as annual
reviews under the version in force on the review date; the summary and the CSV are the same in
one process and through Dask, and name no fact."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = Path(__file__).parent / "fixtures" / "impact"


def _rules(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rules", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_the_summary_and_csv_are_the_same_through_dask(tmp_path):
    args = ["annual-review", "prisoner_liability", "--count", "2500", "--as-at", "2025-04-06"]
    one = _rules(*args, "--workers", "1", "--csv", str(tmp_path / "one.csv"))
    dask = _rules(*args, "--workers", "2", "--csv", str(tmp_path / "dask.csv"))
    assert one.returncode == dask.returncode == 0, one.stderr + dask.stderr
    assert one.stdout.replace("one.csv", "x") == dask.stdout.replace("dask.csv", "x")
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "dask.csv").read_bytes()
    assert one.stdout.startswith("Annual review of prisoner_liability as at 2025-04-06: 2500 cases")
    assert "| 2012 | LIABLE |" in one.stdout  # the enacted version in force, not review-2023
    rows = list(csv.DictReader((tmp_path / "one.csv").open()))
    assert len(rows) == 2500 and rows[0]["case_id"] == "prisoner_liability.jsonl:1"
    assert set(rows[0]) == {"case_id", "version", "outcome", "amount_pence", "invalid"}


def test_the_version_is_the_one_in_force_on_the_review_date_and_no_fact_is_shown(tmp_path):
    out = tmp_path / "review.csv"
    result = _rules("annual-review", "application_fee", "--cases", str(CASES), "--as-at", "2019-04-06",
                    "--csv", str(out), "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "| 2017 | FEE_PAYABLE | 2 | 4000 |" in result.stdout
    assert "facts.application_route" in result.stdout and "Other policies' cases (skipped): service_type 1" in result.stdout
    written = out.read_text()
    assert "requests.jsonl:7,,,,facts.application_route" in written
    for fact in ("by_post", "1985", "police", "direct_pay"):  # values of the cases' facts
        assert fact not in result.stdout + result.stderr + written


def test_bad_requests_are_clear_errors():
    unknown = _rules("annual-review", "parking_fines", "--count", "10")
    assert unknown.returncode == 2 and "unknown policy 'parking_fines'" in unknown.stderr
    early = _rules("annual-review", "application_fee", "--count", "10", "--as-at", "2010-01-01")
    assert early.returncode == 2 and "no enacted version of application_fee is in force on 2010-01-01" in early.stderr
    neither = _rules("annual-review", "application_fee")
    assert neither.returncode == 2 and "--cases" in neither.stderr
