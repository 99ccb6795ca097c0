"""The policy team's commands (`python -m rules test | decide | new-version | diff`), run in-process
on copies of the shipped policies and golden cases. The acceptance scenario of issue 5: a new
version is created, edited, validated, tested and compared with the command line alone."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import yaml

from rules.__main__ import main
from rules.authoring import goldens
from rules.engine.loader import DEFAULT_POLICY_DIR
from rules.language.yamlsource import read_yaml

from .conftest import GOLDEN

FEE_2017 = GOLDEN / "application_fee" / "2017"
FEE_PARAMETER = "  application_fee_pence:\n    type: money\n    value: 2000\n"


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def work(tmp_path, monkeypatch):
    """Copies of every policy and of application_fee's golden cases; the working directory is tmp_path."""
    shutil.copytree(DEFAULT_POLICY_DIR, tmp_path / "policies")
    shutil.copytree(GOLDEN / "application_fee", tmp_path / "golden" / "application_fee")
    monkeypatch.chdir(tmp_path)
    return tmp_path


DIRS = ("--policies", "policies", "--golden", "golden")


def _raise_fee(path: Path, pence: int) -> None:
    text = path.read_text()
    assert FEE_PARAMETER in text
    path.write_text(text.replace(FEE_PARAMETER, FEE_PARAMETER.replace("2000", str(pence))))


# --- test ---------------------------------------------------------------------

def test_test_passes_on_the_shipped_golden_cases(capsys):
    code, out, _ = run(capsys, "test", "application_fee", "2017")
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == "ok    application_fee/2017/01-standard-fee"
    assert lines[-1] == f"{len(list(FEE_2017.glob('*.yaml')))} cases: {len(lines) - 1} ok, 0 failed"


def test_test_outside_the_repository_needs_the_golden_directory_named(tmp_path, monkeypatch, capsys):
    """The installed package carries no golden cases: the default is tests/golden of the working
    directory, and its absence is an error, not an empty run."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "test", "application_fee", "2017", "--policies", DEFAULT_POLICY_DIR)
    assert code == 2 and out == ""
    assert err.strip() == "error: no golden cases directory tests/golden (run from the repository root, or give --golden DIR)"


def test_test_shows_a_readable_diff_when_the_policy_changes(work, capsys):
    _raise_fee(work / "policies" / "application_fee" / "2017.yaml", 2500)
    case = work / "golden" / "application_fee" / "2017" / "01-standard-fee.yaml"
    case.write_text(case.read_text().replace("expect_outcome: FEE_PAYABLE", "expect_outcome: WAIVED"))

    code, out, _ = run(capsys, "test", "application_fee", "2017", *DIRS)
    assert code == 1
    block = out.split("FAIL  application_fee/2017/01-standard-fee\n")[1].split("\nFAIL ")[0]
    # the hand-written expectation first, then which fields differ, then the YAML diff
    assert block.index("expect_outcome: WAIVED, got FEE_PAYABLE") < block.index("differs from expected in: "
                                                                                "policy.content_hash, amount_pence")
    assert "-amount_pence: 2000\n" in block and "+amount_pence: 2500\n" in block
    assert "-  FEE_PAYABLE: the application fee is payable (£20.00)." in block  # a `|` block, line by line
    assert "+  FEE_PAYABLE: the application fee is payable (£25.00)." in block
    # a decision the fee does not touch differs only in the file's hash, and says so
    assert ("FAIL  application_fee/2017/02-family-based\n        only policy.content_hash differs" in out)
    assert out.splitlines()[-1].endswith("0 ok, 36 failed")


def test_update_rewrites_expected_but_never_expect_outcome(work, capsys):
    _raise_fee(work / "policies" / "application_fee" / "2017.yaml", 2500)
    folder = work / "golden" / "application_fee" / "2017"
    wrong = folder / "07-abuse-reported-to-police.yaml"
    wrong.write_text(wrong.read_text().replace("expect_outcome: WAIVED", "expect_outcome: FEE_PAYABLE"))
    before = wrong.read_text()

    assert run(capsys, "test", "application_fee", "--update", *DIRS)[0] == 2  # the version must be named
    code, out, _ = run(capsys, "test", "application_fee", "2017", "--update", *DIRS)
    assert code == 1  # the case with a wrong expect_outcome still fails and is not rewritten
    assert "FAIL  application_fee/2017/07-abuse-reported-to-police\n        expect_outcome: FEE_PAYABLE, got WAIVED" in out
    assert wrong.read_text() == before
    assert "updated golden/application_fee/2017/01-standard-fee.yaml (changed: policy.content_hash, amount_pence" in out
    assert "Warning: 35 expected decision(s) changed" in out and "behaviour change" in out

    standard = goldens.read(folder / "01-standard-fee.yaml")
    assert standard["expect_outcome"] == "FEE_PAYABLE" and standard["expected"]["amount_pence"] == 2500
    assert (folder / "01-standard-fee.yaml").read_text() == goldens.dump(standard)
    code, out, _ = run(capsys, "test", "application_fee", "2017", *DIRS)
    assert code == 1 and out.splitlines()[-1] == "36 cases: 35 ok, 1 failed"


def test_test_refuses_unknown_policies_and_versions(capsys):
    assert run(capsys, "test", "no_such_policy")[0] == 2
    code, _, err = run(capsys, "test", "application_fee", "1999")
    assert code == 2 and "application_fee has no version 1999" in err


# --- decide -------------------------------------------------------------------

FACTS = {"application_route": "direct_pay", "applicant_in_northern_ireland": False,
         "application_date": "2019-03-15", "applicant_date_of_birth": "1985-07-20",
         "abuse_of_applicant": True, "abuse_reported_to": [], "declaration": "at_application"}


def test_decide_a_yaml_request(tmp_path, capsys):
    request = tmp_path / "request.yaml"
    # written by hand: dates bare (YAML reads them as dates), a comment
    request.write_text("policy: application_fee\nas_at: 2019-03-15  # picks the 2017 version\nfacts:\n"
                       + "".join(f"  {k}: {v if isinstance(v, str) else json.dumps(v)}\n" for k, v in FACTS.items()))
    assert "  application_date: 2019-03-15\n" in request.read_text()
    code, out, _ = run(capsys, "decide", request)
    assert code == 0
    assert out.startswith("FEE_PAYABLE: the application fee is payable (£20.00).\n"
                          "Policy: CMS application fee and its exemptions (2017 guidance on who is a victim)")
    assert "What would change it:" in out
    assert "What would change it:" not in run(capsys, "decide", request, "--no-counterfactuals")[1]


def test_decide_a_json_request_and_print_the_decision_as_json(tmp_path, capsys):
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"policy": "application_fee", "version": "2014", "facts": FACTS}))
    code, out, _ = run(capsys, "decide", request, "--json")
    decision = json.loads(out)
    assert code == 0 and decision["outcome"] == "FEE_PAYABLE" and decision["policy"]["version"] == "2014"
    assert decision["decision_id"] and decision["explanations"]


def test_decide_a_golden_case_gives_its_expected_explanations(capsys):
    path = FEE_2017 / "60-audience-applicant-is-receiving-parent.yaml"
    expected = goldens.read(path)["expected"]
    code, out, _ = run(capsys, "decide", path)
    assert code == 0 and out == expected["rationale"] + "\n"
    texts = {e["audience"]: e for e in expected["explanations"]}
    code, out, _ = run(capsys, "decide", path, "--audience", "receiving_parent")
    assert code == 0 and out == texts["RECEIVING_PARENT"]["text"] + "\n"
    code, out, _ = run(capsys, "decide", path, "--audience", "paying_parent")
    assert code == 0 and out == texts["PAYING_PARENT"]["text"] + "\n"
    assert "abuse" not in out


def test_decide_says_when_a_parent_is_sent_nothing_yet(capsys):
    path = GOLDEN / "service_type" / "2012" / "06-abuse-disclosed-refer.yaml"
    code, out, _ = run(capsys, "decide", path, "--audience", "paying_parent")
    assert code == 0 and out.startswith("(nothing is sent to this parent yet")


def test_decide_reads_standard_input(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"policy": "application_fee", "version": "2017", "facts": FACTS})))
    code, out, _ = run(capsys, "decide", "-")
    assert code == 0 and out.startswith("FEE_PAYABLE")


@pytest.mark.parametrize("request_, problems", [
    ({"policy": "application_fee", "version": "2017", "facts": {**FACTS, "application_date": "15/03/2019"}},
     ["facts.application_date: expected a date as YYYY-MM-DD"]),
    ({"policy": "application_fee", "version": "2017", "facts": {**FACTS, "shoe_size": 9}}, ["facts.shoe_size: "]),
    ({"policy": "no_such_policy", "facts": {}}, ["policy: unknown policy 'no_such_policy'"]),
    ({"policy": "application_fee", "version": "1999", "facts": {}}, ["version: unknown version '1999'"]),
    ({"policy": "application_fee", "fact": {}}, ["fact: Extra inputs are not permitted"]),
    (["application_fee"], ["request: a request is a mapping"]),
])
def test_decide_a_bad_request_lists_its_problems_and_exits_2(tmp_path, capsys, request_, problems):
    path = tmp_path / "request.yaml"
    path.write_text(yaml.safe_dump(request_))
    code, out, err = run(capsys, "decide", path)
    assert code == 2 and out == ""
    for problem in problems:
        assert any(line.startswith(problem) for line in err.splitlines()), err


def test_decide_a_file_that_is_not_yaml(tmp_path, capsys):
    path = tmp_path / "request.yaml"
    path.write_text("policy: application_fee\nfacts: [unclosed\n")
    code, _, err = run(capsys, "decide", path)
    assert code == 2 and err.startswith(f"{path}:")


# --- new-version ----------------------------------------------------------------

def test_new_version_copies_the_file_and_its_cases(work, capsys):
    source = work / "policies" / "application_fee" / "2017.yaml"
    text = source.read_text().replace("policy: application_fee\n", "# Written by the policy team.\npolicy: application_fee  # the fee\n", 1)
    text = text.replace("\nparameters:\n", "\n# Figures, each with its law:\nparameters:\n", 1)
    source.write_text(text)

    code, out, _ = run(capsys, "new-version", "application_fee", "2017", "2026", "--effective-from", "2026-04-01",
                       "--title", "Fee review (2026)", *DIRS)
    assert code == 0
    new = (work / "policies" / "application_fee" / "2026.yaml").read_text()
    lines = text.splitlines()  # its revision and corrections (between version and status) stay behind
    lines = lines[:lines.index("revision: 2")] + lines[lines.index("status: enacted"):]
    kept = [line for line in lines if not line.startswith(("version:", "status:", "effective_", "title:"))]
    assert [line for line in new.splitlines() if not line.startswith(("version:", "status:", "effective_", "title:"))] == kept
    assert new.splitlines()[1:6] == ['policy: application_fee  # the fee', 'version: "2026"', "status: proposed",
                                     "effective_from: 2026-04-01", "title: Fee review (2026)"]
    assert "effective_to" not in new and "revision:" not in new and "corrections:" not in new

    copies = sorted((work / "golden" / "application_fee" / "2026").glob("*.yaml"))
    assert [p.name for p in copies] == [p.name for p in sorted(FEE_2017.glob("*.yaml"))]
    for path in copies:
        case, original = goldens.read(path), goldens.read(FEE_2017 / path.name)
        assert "expected" not in case and case["expect_outcome"] == original["expect_outcome"]
        assert case["request"]["version"] == "2026" and "as_at" not in case["request"]
        assert case["request"]["facts"] == original["request"]["facts"]
        assert path.read_text() == goldens.dump(case)  # written as `test --update` writes
    assert "ok: " in out  # validated
    assert "python -m rules test application_fee 2026 --update --policies policies --golden golden" in out
    assert "python -m rules diff application_fee 2017 2026 --policies policies" in out

    code, _, err = run(capsys, "new-version", "application_fee", "2017", "2026", "--effective-from", "2026-04-01", *DIRS)
    assert code == 2 and "policies/application_fee/2026.yaml already exists" in err
    code, _, err = run(capsys, "new-version", "application_fee", "1999", "2027", "--effective-from", "2026-04-01", *DIRS)
    assert code == 2 and "no version 1999 of application_fee" in err


def test_a_new_enacted_version_takes_over_without_editing_the_one_before(work, capsys):
    earlier = work / "policies" / "application_fee" / "2024.yaml"
    before = earlier.read_bytes()
    code, out, _ = run(capsys, "new-version", "application_fee", "2024", "2026", "--effective-from", "2026-04-01",
                       "--status", "enacted", *DIRS)
    assert code == 0
    assert "2024 stays in force until 2026-03-31; 2026 takes over on 2026-04-01" in out
    assert earlier.read_bytes() == before


def test_a_new_enacted_version_inside_a_closed_one_says_what_to_do(work, capsys):
    code, out, err = run(capsys, "new-version", "application_fee", "2017", "2020", "--effective-from", "2020-01-01",
                         "--status", "enacted", *DIRS)
    assert code == 1  # validate refuses the overlap
    assert "Overlap: 2017 is in force until 2024-02-25 by its own effective_to" in out
    assert "--effective-from 2024-02-26 or later" in out
    assert "enacted versions 2017 and 2020 are both in force on 2020-01-01" in err


def test_a_new_version_is_created_edited_validated_tested_and_compared_with_the_cli_alone(work, capsys):
    code, out, _ = run(capsys, "new-version", "application_fee", "2017", "fee-2026", "--effective-from", "2026-04-01", *DIRS)
    assert code == 0
    _raise_fee(work / "policies" / "application_fee" / "fee-2026.yaml", 2500)

    assert run(capsys, "validate", "--policies", "policies")[0] == 0
    code, out, _ = run(capsys, "test", "application_fee", "fee-2026", *DIRS)
    assert code == 1 and out.splitlines()[0] == "NEW   application_fee/fee-2026/01-standard-fee"
    assert "FEE_PAYABLE: the application fee is payable (£25.00)." in out  # the decision to review
    assert "0 ok, 0 failed, 36 with no expected decision" in out
    code, out, _ = run(capsys, "test", "application_fee", "fee-2026", "--update", *DIRS)
    assert code == 0 and "36 updated" in out and "Warning" not in out
    code, out, _ = run(capsys, "test", "application_fee", "fee-2026", *DIRS)
    assert code == 0 and out.splitlines()[-1] == "36 cases: 36 ok, 0 failed"

    code, out, _ = run(capsys, "diff", "application_fee", "2017", "fee-2026", "--policies", "policies")
    assert code == 0
    assert "  - changed application_fee_pence (the application fee): £20.00 → £25.00" in out.splitlines()
    assert "  - status: enacted → proposed" in out.splitlines()


# --- diff ---------------------------------------------------------------------

def _variant(policies: Path, version: str, edit) -> None:
    """A proposed copy of application_fee/2017 as `version`, changed by `edit(data)`."""
    data = read_yaml((policies / "application_fee" / "2017.yaml").read_text()).data
    data.update(version=version, status="proposed")
    data.pop("effective_to")
    edit(data)
    (policies / "application_fee" / f"{version}.yaml").write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def _rule(data: dict, rule_id: str) -> dict:
    return next(r for r in data["rules"] if r["id"] == rule_id)


def test_diff_names_each_kind_of_change(work, capsys):
    def edit(data):
        data["parameters"]["application_fee_pence"]["value"] = 2500
        rules = data["rules"]
        rules.remove(_rule(data, "payable.child-abuse-not-applicant"))
        rules.insert(0, rules.pop(rules.index(_rule(data, "waived.under-19"))))
        _rule(data, "not-applicable.northern-ireland")["when"] = {"fact": "applicant_in_northern_ireland", "ne": False}
        rules.insert(len(rules) - 1, {"id": "payable.no-declaration", "outcome": "FEE_PAYABLE",
                                      "when": {"fact": "declaration", "eq": "not_made"},
                                      "because": "No declaration was made.", "cites": [{"source": "A test"}]})
    _variant(work / "policies", "changed", edit)

    code, out, _ = run(capsys, "diff", "application_fee", "2017", "changed", "--policies", "policies")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "application_fee: 2017 → changed"
    parameters, rules = out.split("\nParameters\n")[1], out.split("\nRules\n")[1]
    assert parameters.startswith("  - changed application_fee_pence (the application fee): £20.00 → £25.00\n")
    assert ("  - added payable.no-declaration, tried before payable.standard\n"
            "      when: declaration is not_made\n"
            "      concludes: FEE_PAYABLE (the application fee is payable)\n") in rules
    assert "  - removed payable.child-abuse-not-applicant\n      when: applicant_is_victim is false and" in rules
    assert ("  - changed not-applicable.northern-ireland\n"
            "      condition: applicant_in_northern_ireland is true → applicant_in_northern_ireland is not false\n") in rules
    assert ("  - moved waived.under-19: now tried before not-applicable.family-based "
            "(was tried before victim.abuse-of-applicant)") in rules
    assert "moved not-applicable" not in rules  # only the rule that moved is named

    code, md, _ = run(capsys, "diff", "application_fee", "2017", "changed", "--policies", "policies", "--format", "markdown")
    assert code == 0 and md.startswith("# `application_fee`: 2017 → changed\n")
    assert "\n## Parameters\n\n- changed `application_fee_pence` (the application fee): £20.00 → £25.00\n" in md
    assert "- moved `waived.under-19`: now tried before `not-applicable.family-based`" in md


def test_diff_of_identical_versions(work, capsys):
    _variant(work / "policies", "copy-a", lambda data: None)
    _variant(work / "policies", "copy-b", lambda data: None)
    code, out, _ = run(capsys, "diff", "application_fee", "copy-a", "copy-b", "--policies", "policies")
    assert code == 0 and out.endswith("\n\nNo differences.\n")
    assert run(capsys, "diff", "application_fee", "2017", "2017")[1].endswith("\n\nNo differences.\n")


def test_test_reports_a_golden_file_that_is_not_yaml(work, capsys):
    (work / "golden" / "application_fee" / "2017" / "99-broken.yaml").write_text("description: a: b\nrequest: [\n")
    code, out, _ = run(capsys, "test", "application_fee", "2017", *DIRS)
    assert code == 1 and "FAIL  application_fee/2017/99-broken" in out and "not YAML (line 1)" in out
