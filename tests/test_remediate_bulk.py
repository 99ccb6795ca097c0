"""Remediation through Dask (rules/authoring/remediate.py): the logged decisions decided again on
worker processes give exactly the changes one process finds; a scheduler off this machine that
would receive the logged requests in clear is refused."""
from __future__ import annotations

import base64
import csv
import logging
import os
import shutil

import pytest

from rules.__main__ import main
from rules.audit.factory import open_log
from rules.authoring.remediate import remediate
from rules.decide.evaluator import Evaluator
from rules.engine.decision import DecisionRequest
from rules.engine.loader import DEFAULT_POLICY_DIR, load_bundle

from .conftest import GOLDEN

FEE = "application_fee"


def _request(n: int) -> DecisionRequest:
    born = f"{1980 + n % 25}-0{1 + n % 9}-1{n % 10}"  # some under 19 on the day: waived, unchanged by the fee
    return DecisionRequest(policy=FEE, version="2017", facts={
        "application_route": ("direct_pay", "collect_and_pay", "family_based")[n % 3],
        "applicant_in_northern_ireland": False, "application_date": "2019-03-15", "applicant_date_of_birth": born,
        "abuse_of_applicant": n % 4 == 0, "abuse_reported_to": ["police"] if n % 8 == 0 else [],
        "declaration": "at_application"})


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A log of 60 decisions under application_fee/2017, then the fee corrected to £25 (a revision)."""
    work = tmp_path_factory.mktemp("remediate")
    shutil.copytree(DEFAULT_POLICY_DIR, work / "policies")
    shutil.copytree(GOLDEN / FEE, work / "golden" / FEE)
    key = os.urandom(32)
    (work / "log.key").write_text(base64.b64encode(key).decode() + "\n")
    evaluator = Evaluator(load_bundle(work / "policies"))
    with open_log(work / "log.sqlite3", [key]) as log:
        for n in range(60):
            request = _request(n)
            log.record(request, evaluator.decide(request))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        assert main(["revise", FEE, "2017", "--change", "The fee is £25 (a test correction).", "--source",
                     "SI 2014/612", "--provision", "reg 3", "--date", "2026-12-06", "--policies", "policies",
                     "--golden", "golden"]) == 0
    finally:
        os.chdir(cwd)
    path = work / "policies" / FEE / "2017.yaml"
    path.write_text(path.read_text().replace("    value: 2000\n", "    value: 2500\n"))
    return work, key


def test_the_changes_are_the_same_through_dask(work):
    from distributed import Client, LocalCluster
    work, key = work
    evaluator = Evaluator(load_bundle(work / "policies"))
    with open_log(work / "log.sqlite3", [key]) as log:
        one = remediate(log, evaluator, FEE, "2017")
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
            dask = remediate(log, evaluator, FEE, "2017", client=client, policy_dir=str(work / "policies"))
    assert one.looked_at == dask.looked_at == 60
    assert [c.row() for c in one.changes] == [c.row() for c in dask.changes]
    assert one.transitions() == dask.transitions() and one.failed == dask.failed == []
    assert one.changes and all(c.after.amount_pence == 2500 for c in one.changes)
    # what crosses the wire back: codes and amounts, never the explanations or the trail
    assert all(not c.after.trail and not c.after.explanations and not c.after.rationale for c in dask.changes)


def test_the_command_writes_the_same_csv_with_workers(work, tmp_path, capsys):
    work, _ = work
    args = ["remediate", FEE, "2017", "--decision-log", str(work / "log.sqlite3"), "--key-file",
            str(work / "log.key"), "--policies", str(work / "policies")]
    assert main([*args, "--workers", "1", "--csv", str(tmp_path / "one.csv")]) == 0
    assert main([*args, "--workers", "2", "--csv", str(tmp_path / "two.csv")]) == 0
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()
    assert list(csv.DictReader((tmp_path / "one.csv").open()))
    capsys.readouterr()
    assert main([*args, "--scheduler", "tcp://10.20.30.40:8786"]) == 1
    assert "must be a tls:// address" in capsys.readouterr().err
