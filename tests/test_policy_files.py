"""Policy files: every authoring error is reported as path:line: reason, all at
once, and a bundle with any broken file is rejected whole."""
from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rules.engine.loader import DEFAULT_POLICY_DIR, PolicyLoadError, load_bundle

FIXTURES = Path(__file__).parent / "fixtures"
BROKEN = sorted((FIXTURES / "broken").glob("*.yaml"))


def _place(tmp_path: Path, source: Path, policy: str = "demo", version: str = "v1") -> Path:
    target = tmp_path / policy / f"{version}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    return target


def test_valid_fixture_loads(tmp_path):
    _place(tmp_path, FIXTURES / "valid_demo.yaml")
    bundle = load_bundle(tmp_path)
    assert list(bundle.policies["demo"]) == ["v1"]


@pytest.mark.parametrize("fixture", BROKEN, ids=[p.stem for p in BROKEN])
def test_broken_file_is_rejected_with_line_and_reason(tmp_path, fixture):
    text = fixture.read_text()
    message = re.search(r"^# expect: (.+)$", text, re.M).group(1)
    line = re.search(r"^# expect-line: (\d+)$", text, re.M)
    target = _place(tmp_path, fixture)
    with pytest.raises(PolicyLoadError) as caught:
        load_bundle(tmp_path)
    errors = caught.value.errors
    assert any(message in e.message for e in errors), [str(e) for e in errors]
    assert all(e.path.endswith(str(Path("demo") / "v1.yaml")) for e in errors)
    if line:
        assert any(e.line == int(line.group(1)) and message in e.message for e in errors), [str(e) for e in errors]
    assert re.match(rf".*{re.escape(target.name)}:\d+: ", str(errors[0]))


def test_all_errors_are_reported_at_once(tmp_path):
    text = (FIXTURES / "valid_demo.yaml").read_text()
    text = text.replace("{fact: count, lt:", "{fact: cuont, lt:").replace('outcome: "NO"', 'outcome: "MAYBE"')
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "v1.yaml").write_text(text)
    with pytest.raises(PolicyLoadError) as caught:
        load_bundle(tmp_path)
    messages = [e.message for e in caught.value.errors]
    assert any("unknown fact 'cuont'" in m for m in messages)
    assert any("outcome 'MAYBE'" in m for m in messages)


def test_one_broken_file_rejects_the_whole_bundle(tmp_path):
    _place(tmp_path, FIXTURES / "valid_demo.yaml", "demo", "v1")
    _place(tmp_path, FIXTURES / "broken" / "unknown_parameter.yaml", "other", "v1")
    (tmp_path / "other" / "v1.yaml").write_text(
        (tmp_path / "other" / "v1.yaml").read_text().replace("policy: demo", "policy: other"))
    with pytest.raises(PolicyLoadError) as caught:
        load_bundle(tmp_path)
    assert {Path(e.path).parent.name for e in caught.value.errors} == {"other"}


def _second_demo(tmp_path: Path, effective_from: str) -> Path:
    second = _place(tmp_path, FIXTURES / "valid_demo.yaml", "demo", "v2")
    second.write_text(second.read_text().replace("version: v1", "version: v2").replace("2020-01-01", effective_from))
    return second


def test_overlapping_enacted_versions_are_rejected(tmp_path):
    first = _place(tmp_path, FIXTURES / "valid_demo.yaml", "demo", "v1")
    first.write_text(first.read_text().replace("effective_from: 2020-01-01", "effective_from: 2020-01-01\neffective_to: 2021-12-31"))
    _second_demo(tmp_path, "2021-06-01")
    with pytest.raises(PolicyLoadError, match="enacted versions v1 and v2 are both in force on 2021-06-01"):
        load_bundle(tmp_path)


def test_enacted_versions_may_not_start_on_the_same_day(tmp_path):
    _place(tmp_path, FIXTURES / "valid_demo.yaml", "demo", "v1")
    _second_demo(tmp_path, "2020-01-01")
    with pytest.raises(PolicyLoadError, match="enacted versions v1 and v2 both start on 2020-01-01"):
        load_bundle(tmp_path)


def test_an_enacted_version_without_an_end_is_in_force_until_the_next_starts(tmp_path):
    first = _place(tmp_path, FIXTURES / "valid_demo.yaml", "demo", "v1")
    before = first.read_bytes()
    _second_demo(tmp_path, "2021-06-01")
    bundle = load_bundle(tmp_path)
    assert first.read_bytes() == before and bundle.policies["demo"]["v1"].version.effective_to is None
    assert [bundle.in_force("demo", dt.date.fromisoformat(day)).version.version
            for day in ("2020-01-01", "2021-05-31", "2021-06-01", "2030-01-01")] == ["v1", "v1", "v2", "v2"]
    assert bundle.in_force("demo", dt.date(2019, 12, 31)) is None


def test_versions_must_agree_on_fact_types(tmp_path):
    first = _place(tmp_path, FIXTURES / "valid_demo.yaml", "demo", "v1")
    first.write_text(first.read_text().replace("effective_from: 2020-01-01", "effective_from: 2020-01-01\neffective_to: 2020-12-31"))
    second = _place(tmp_path, FIXTURES / "valid_demo.yaml", "demo", "v2")
    second.write_text(second.read_text().replace("version: v1", "version: v2").replace("2020-01-01", "2021-01-01")
                      .replace("  - name: flagged\n    type: bool", "  - name: flagged\n    type: integer"))
    with pytest.raises(PolicyLoadError, match="fact 'flagged' is a integer here but a bool"):
        load_bundle(tmp_path)


def test_empty_directory_is_an_error(tmp_path):
    with pytest.raises(PolicyLoadError, match="no policy files"):
        load_bundle(tmp_path)


def test_shipped_policies_load(bundle):
    assert set(bundle.policies["application_fee"]) == {"2014", "2017", "review-2023", "2024"}


def _validate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rules", "validate", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(Path(__file__).parent.parent)})


def test_validate_cli_reports_every_error_with_file_and_line(tmp_path):
    _place(tmp_path, FIXTURES / "valid_demo.yaml")
    _place(tmp_path, FIXTURES / "broken" / "duplicate_rule_id.yaml", policy="other", version="v1")
    _place(tmp_path, FIXTURES / "broken" / "enacted_without_date.yaml", policy="third", version="v1")
    result = _validate("--policies", ".", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any(re.match(r"^other/v1\.yaml:\d+: .*duplicate rule id", line) for line in lines), lines
    assert any(re.match(r"^third/v1\.yaml:\d+: ", line) for line in lines), lines
    # Naming a file narrows the report to it.
    only = _validate("--policies", ".", "third/v1.yaml", cwd=tmp_path)
    assert only.returncode == 1 and only.stderr and all(line.startswith("third/v1.yaml:") for line in only.stderr.splitlines())


def test_validate_cli_checks_a_directory_named_as_the_bundle(tmp_path):
    # A policy author checking a broken copy must not be told "ok" about the shipped policies.
    copy = tmp_path / "copy"
    _place(copy, FIXTURES / "valid_demo.yaml")
    _place(copy, FIXTURES / "broken" / "duplicate_rule_id.yaml", policy="other", version="v1")
    result = _validate("copy", cwd=tmp_path)
    assert result.returncode == 1 and "ok:" not in result.stdout, result.stdout
    assert any(re.match(r"^copy/other/v1\.yaml:\d+: .*duplicate rule id", line)
               for line in result.stderr.splitlines()), result.stderr
    (copy / "other" / "v1.yaml").unlink()
    fixed = _validate("copy", cwd=tmp_path)
    assert fixed.returncode == 0 and "ok: 1 versions of 1 policies" in fixed.stdout, fixed.stderr


def test_validate_cli_refuses_what_it_would_not_check(tmp_path):
    copy = tmp_path / "copy"
    _place(copy, FIXTURES / "valid_demo.yaml")
    other = tmp_path / "other"
    _place(other, FIXTURES / "valid_demo.yaml")
    for args, says in [(["copy", "other"], "name one policy directory"),
                       (["--policies", "other", "copy"], "two policy directories"),
                       (["copy/demo/v1.yaml"], "is not in the policy directory"),  # default dir: not this copy
                       (["--policies", "copy", "other/demo/v1.yaml"], "is not in the policy directory copy"),
                       (["--policies", "copy", "copy/demo/v9.yaml"], "copy/demo/v9.yaml: no such file"),
                       (["--policies", "nowhere"], "nowhere: no such policy directory")]:
        result = _validate(*args, cwd=tmp_path)
        assert result.returncode == 2 and says in result.stderr and "ok:" not in result.stdout, (args, result)
    assert _validate("--policies", "copy", "copy", cwd=tmp_path).returncode == 0  # the same directory twice


def test_validate_cli_accepts_the_shipped_policies(tmp_path):
    result = _validate(cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("ok: ") and "6 policies" in result.stdout


def test_the_bundle_hash_does_not_depend_on_where_the_files_are(tmp_path, bundle):
    copy = tmp_path / "mounted" / "elsewhere"
    shutil.copytree(DEFAULT_POLICY_DIR, copy)
    assert load_bundle(copy).bundle_hash == bundle.bundle_hash
