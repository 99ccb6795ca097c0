"""Corrections as revisions: the earlier revision's file stays loaded, so what it decided replays
exactly; new decisions use the current revision; `remediate` finds the logged decisions a
correction changes (and no others)."""
from __future__ import annotations

import csv
import os
import re
import shutil
from pathlib import Path

import pytest

from rules.__main__ import main
from rules.audit.factory import open_log
from rules.authoring import goldens
from rules.authoring.remediate import remediate
from rules.decide.evaluator import Evaluator
from rules.decide.replay import replay
from rules.engine.decision import DecisionRequest
from rules.engine.loader import DEFAULT_POLICY_DIR, PolicyLoadError, load_bundle

from .conftest import GOLDEN

FEE = "application_fee"
FEE_PARAMETER = "    value: 2000\n"  # application_fee_pence in 2017.yaml


@pytest.fixture
def work(tmp_path, monkeypatch):
    shutil.copytree(DEFAULT_POLICY_DIR, tmp_path / "policies")
    shutil.copytree(GOLDEN / FEE, tmp_path / "golden" / FEE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _fee_request(born: str, abuse: bool = False) -> DecisionRequest:
    return DecisionRequest(policy=FEE, version="2017", facts={
        "application_route": "direct_pay", "applicant_in_northern_ireland": False, "application_date": "2019-03-15",
        "applicant_date_of_birth": born, "abuse_of_applicant": abuse, "abuse_reported_to": [],
        "declaration": "at_application"})


def _revision(work: Path) -> int:
    return load_bundle(work / "policies").policies[FEE]["2017"].version.revision


def _revise(work: Path, *extra: str) -> int:
    return main(["revise", FEE, "2017", "--change", "The fee is £25 (a test correction).", "--source", "SI 2014/612",
                 "--provision", "reg 3", "--date", "2026-12-06", "--policies", "policies", "--golden", "golden", *extra])


def test_revise_keeps_the_earlier_file_byte_for_byte_and_pins_its_golden_cases(work, capsys):
    n = _revision(work)
    before = (work / "policies" / FEE / "2017.yaml").read_bytes()
    assert _revise(work) == 0
    kept = work / "policies" / FEE / "revisions" / f"2017.r{n}.yaml"
    assert kept.read_bytes() == before
    text = (work / "policies" / FEE / "2017.yaml").read_text()
    assert f"revision: {n + 1}\n" in text and f"  - revision: {n + 1}\n    date: 2026-12-06\n" in text
    pinned = sorted((work / "golden" / FEE / "2017" / f"r{n}").glob("*.yaml"))
    assert pinned and all(goldens.read(p)["revision"] == n for p in pinned)
    bundle = load_bundle(work / "policies")
    current = bundle.policies[FEE]["2017"]
    assert current.version.revision == n + 1 and current.version.corrections[-1].cites[0].provision == "reg 3"
    assert [c.version.revision for c in bundle.earlier_revisions(FEE, "2017")] == list(range(1, n + 1))
    # The earlier revision's golden cases still decide as they did, under that revision.
    evaluator = Evaluator(bundle)
    checked = goldens.check(evaluator, pinned[0])
    assert checked.ok and checked.actual["policy"]["content_hash"] == goldens.read(pinned[0])["expected"]["policy"]["content_hash"]
    capsys.readouterr()
    assert main(["diff", FEE, f"2017@r{n}", "2017", "--policies", "policies"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"application_fee: 2017 revision {n} → 2017 revision {n + 1}")
    assert f"revision: {n} → {n + 1}" in out
    assert main(["doc", FEE, "2017", "--policies", "policies"]) == 0
    assert f"## Corrections (this is revision {n + 1})" in capsys.readouterr().out
    assert _revise(work) == 0  # and the next correction keeps that revision too
    assert (work / "policies" / FEE / "revisions" / f"2017.r{n + 1}.yaml").is_file()
    corrections = load_bundle(work / "policies").policies[FEE]["2017"].version.corrections
    assert [c.revision for c in corrections][-2:] == [n + 1, n + 2]


def test_a_logged_decision_replays_under_its_revision_and_remediation_finds_what_the_correction_changes(work, capsys):
    bundle, n = load_bundle(work / "policies"), _revision(work)
    key = os.urandom(32)
    adult, young, waived = _fee_request("1985-07-20"), _fee_request("2001-01-01"), _fee_request("1985-07-20", True)
    with open_log(work / "log.sqlite3", [key]) as log:
        decided = [Evaluator(bundle).decide(r) for r in (adult, young)]
        for request, decision in zip((adult, young), decided):
            log.record(request, decision)
    assert [d.outcome for d in decided] == ["FEE_PAYABLE", "WAIVED"]

    assert _revise(work) == 0
    path = work / "policies" / FEE / "2017.yaml"
    path.write_text(path.read_text().replace(FEE_PARAMETER, "    value: 2500\n"))
    corrected = Evaluator(load_bundle(work / "policies"))
    assert corrected.decide(adult).amount_pence == 2500  # new decisions use the current revision

    with open_log(work / "log.sqlite3", [key]) as log:
        after = corrected.decide(adult)
        log.record(adult, after)  # already under revision 2: not for remediation
        logged = log.get(decided[0].decision_id)
        result = replay(corrected, logged)
        assert result.identical and result.replayed.policy.revision == n
        assert result.current.amount_pence == 2500 and result.current.policy.revision == n + 1
        assert "amount_pence: 2000 != 2500" in result.current_differences
        report = remediate(log, corrected, FEE, "2017")
    assert report.looked_at == 2  # the two decisions of the earlier revision
    assert [(c.decision_id, c.before.amount_pence, c.after.amount_pence) for c in report.changes] == [
        (decided[0].decision_id, 2000, 2500)]  # the waived one is unchanged
    assert dict(report.transitions()) == {"FEE_PAYABLE -> FEE_PAYABLE": 1}

    out = work / "changed.csv"
    assert main(["remediate", FEE, "2017", "--decision-log", str(work / "log.sqlite3"), "--key-file",
                 str(_key_file(work, key)), "--policies", "policies", "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert rows == [{"decision_id": decided[0].decision_id, "decided_at": decided[0].decided_at, "revision": str(n),
                     "current_revision": str(n + 1), "outcome": "FEE_PAYABLE", "current_outcome": "FEE_PAYABLE",
                     "amount_pence": "2000", "current_amount_pence": "2500", "outputs_changed": ""}]
    assert "2 decisions made under an earlier revision; 1 decided differently now" in capsys.readouterr().out
    assert waived  # (a case that never reaches the log: only logged decisions are looked at)


def _key_file(work: Path, key: bytes) -> Path:
    import base64
    path = work / "log.key"
    path.write_text(base64.b64encode(key).decode() + "\n")
    return path


def test_an_earlier_revision_must_belong_to_a_loaded_version_and_be_earlier(work):
    folder, n = work / "policies" / FEE / "revisions", _revision(work)
    shutil.copy(work / "policies" / FEE / "2017.yaml", folder / "2017.r9.yaml")
    with pytest.raises(PolicyLoadError, match=f"declares application_fee/2017 revision {n} but lives at"):
        load_bundle(work / "policies")
    (folder / "2017.r9.yaml").rename(folder / f"2017.r{n}.yaml")  # the current one again, as if earlier
    with pytest.raises(PolicyLoadError, match=f"revision {n} is not earlier than the current revision"):
        load_bundle(work / "policies")


def test_a_revision_lists_its_corrections(work):
    path = work / "policies" / FEE / "2014.yaml"
    text = path.read_text()
    path.write_text(re.sub(r"^revision: \d+$", "revision: 7", text, count=1, flags=re.M))
    with pytest.raises(PolicyLoadError, match="needs at least one correction for each revision from 2 to 7"):
        load_bundle(work / "policies")


def test_remediation_of_the_spent_conviction_correction_finds_exactly_the_decisions_it_changes(tmp_path):
    """abuse_evidence/2016 revision 2 (SI 2016/516 reg 2(2): only an unspent conviction counts): a log
    made before the correction, by revision 1, is remediated under the shipped policies."""
    before = tmp_path / "before"
    shutil.copytree(DEFAULT_POLICY_DIR, before)
    folder = before / "abuse_evidence"
    (folder / "revisions" / "2016.r1.yaml").replace(folder / "2016.yaml")  # as it was before the correction
    old = Evaluator(load_bundle(before))

    def evidence(spent: bool | None, about_them: bool = True) -> DecisionRequest:
        item = {"type": "conviction", "document_date": "2011-01-01", "concerns_other_party": about_them}
        if spent is not None:
            item["conviction_spent"] = spent
        return DecisionRequest(policy="abuse_evidence", facts={"decision_date": "2017-06-01", "evidence_items": [item]})

    requests = [evidence(True), evidence(False), evidence(True, about_them=False), evidence(None)]
    key = os.urandom(32)
    with open_log(tmp_path / "log.sqlite3", [key]) as log:
        logged = [old.decide(r) for r in requests]
        for request, decision in zip(requests, logged):
            log.record(request, decision)
    assert [d.outcome for d in logged] == ["VERIFIED", "VERIFIED", "NOT_VERIFIED", "VERIFIED"]

    now = Evaluator(load_bundle())
    with open_log(tmp_path / "log.sqlite3", [key]) as log:
        assert all(replay(now, log.get(d.decision_id)).identical for d in logged)  # still the evidence they were
        report = remediate(log, now, "abuse_evidence", "2016")
    assert report.looked_at == 4 and not report.failed
    # The spent conviction is no longer evidence; one whose spent status was never asked cannot be judged.
    assert {c.decision_id: c.after.outcome for c in report.changes} == {
        logged[0].decision_id: "NOT_VERIFIED", logged[3].decision_id: "UNDETERMINED"}
    assert dict(report.transitions()) == {"VERIFIED -> NOT_VERIFIED": 1, "VERIFIED -> UNDETERMINED": 1}
