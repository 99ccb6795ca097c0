"""The console's Impact pages (console/pages/impact.py): a report made through the console by
`python -m rules impact` in a process of its own, its progress, its tables against its own
impact.json and impact.md, reports read from folders, and what is refused (a second run, a bad
run id, another file, a caller the service refuses).

application_fee/2017 → 2024: the fee was abolished from 26 February 2024, so every FEE_PAYABLE or
WAIVED case of 2017 becomes NO_FEE (see tests/test_impact_json.py).
"""
from __future__ import annotations

import hashlib
import html
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from starlette.testclient import TestClient

from console.app import create_app
from console.client import ServiceClient, ServiceError
from console.config import Config
from console.impactruns import runs
from tests.consoletools import GOLDEN, console_client, csrf, grpc_target

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "fixtures" / "impact"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TOKEN = "impact-test-token-0123456789"  # every call carries it (a service without --authz ignores it)
FORM = {"old": "application_fee/2017", "new": "application_fee/2024", "count": "300", "seed": "2023"}


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("impact-console")


@pytest.fixture
def impact_console(console_service, reports):
    with console_client(grpc_target(console_service[0]), reports, dev_token=TOKEN) as client:
        yield client


def _post(client, data: dict):
    token = csrf(client.get("/impact").text)
    return client.post("/impact/run", data={**data, "csrf_token": token})


def _wait(client, url: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while True:
        page = client.get(url)
        assert page.status_code == 200, page.text
        if 'id="check-progress"' not in page.text:
            return page.text
        assert time.monotonic() < deadline, "the impact run did not finish in time"
        time.sleep(0.5)


def _table(page: str, table_id: str) -> list[list[str]]:
    """The body rows of a table, as the text of their cells."""
    table = page.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    body = table.split("<tbody", 1)[1]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
             for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)] for row in rows]


def _md_rows(md: str, heading: str) -> list[list[str]]:
    section = md.split(f"\n{heading}\n", 1)[1].lstrip("\n").split("\n\n")[0].splitlines()
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in section[2:]]


def test_a_report_made_through_the_console(impact_console, reports):
    form = impact_console.get("/impact")
    assert form.status_code == 200
    assert '<option value="application_fee/2017"' in form.text and 'id="count"' in form.text
    assert 'value="10000"' in form.text  # the default corpus size
    assert 'name="cases"' not in form.text  # synthetic cases only: no folder is named by a user
    started = _post(impact_console, FORM)
    assert started.status_code == 303, started.text
    url = started.headers["location"]
    run_id = url.rsplit("/", 1)[1]
    assert re.fullmatch(r"/impact/[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}", url)

    # while it runs: its progress, kept up to date by the page's script (no meta refresh: WCAG 2.2.1)
    # or the "Check progress" link; a second run is refused
    running = impact_console.get(url)
    assert running.status_code == 200
    assert 'http-equiv="refresh"' not in running.text
    assert '<script type="module" src="/static/impact-progress.js"></script>' in running.text
    assert f'id="check-progress" href="/impact/{run_id}"' in running.text
    progress = impact_console.get(f"/impact/{run_id}/progress.json").json()
    assert progress["status"] in ("running", "done") and 0 <= progress["percent"] <= 100
    assert progress["status"] == "done" or "of 300 cases decided" in progress["text"]
    assert re.search(r'<progress class="console-progress" id="progress" max="100" value="[0-9]+">', running.text)
    assert "of 300 cases decided" in running.text and "Running" in running.text
    second = _post(impact_console, FORM)
    assert second.status_code == 409
    assert f'href="/impact/{run_id}"' in second.text and "A report is being made" in second.text

    done = _wait(impact_console, url)
    folder = reports / run_id
    data = json.loads((folder / "impact.json").read_text("utf-8"))
    md = (folder / "impact.md").read_text("utf-8")
    transitions = _table(done, "transitions")
    assert [[t["old"], t["new"], f"{t['cases']:,}"] for t in data["transitions"]] == \
        [[a, b.removesuffix(" (unchanged)"), n] for a, b, n, _ in transitions]
    assert [row[:3] for row in _md_rows(md, "## Transitions")] == [row[:3] for row in transitions]
    assert transitions[0][:2] == ["FEE_PAYABLE", "NO_FEE"]  # the largest change: the fee abolished
    assert sum(int(row[2]) for row in transitions) == 300
    outcomes = _table(done, "outcomes")
    assert [row[:3] for row in _md_rows(md, "## Outcomes")] == [row[:3] for row in outcomes]
    assert {row[0]: row[2] for row in outcomes}["FEE_PAYABLE"] == "0"
    # the chart: an SVG picture with its title and description, and the same numbers as the table
    chart = done.split('<svg id="outcome-chart"', 1)[1].split("</svg>", 1)[0]
    assert 'role="img"' in chart and "<title id=\"outcome-chart-title\">Outcomes under 2017 and 2024</title>" in chart
    for outcome, old, new, _ in outcomes:
        assert f"{outcome}: {old} under 2017, {new} under 2024" in chart
    # the changed cases: rules and examples as the Markdown has them
    assert "no-fee.abolished" in done and "payable.standard" in done
    first = data["outcome_changed"][0]["examples"][0]
    assert f"<code>{first['id']}</code>" in done and f"- `{first['id']}`:" in md
    assert "Amounts, summed over the cases compared" in done and "£0" in done

    # downloads: the report's files, and nothing else of the folder
    assert impact_console.get(f"{url}/impact.md").text == md
    png = impact_console.get(f"{url}/impact.png")
    assert png.status_code == 200 and png.content.startswith(PNG_MAGIC)
    assert "attachment" in png.headers["content-disposition"]
    for other in ("run.json", "stderr.txt", "stdout.txt", "exit.json", "impact.MD", "..%2Frun.json"):
        assert impact_console.get(f"{url}/{other}").status_code == 404, other

    # the folder: what was asked, never a token; the list of reports names it as done
    assert TOKEN not in "".join(p.read_text("utf-8", errors="replace") for p in folder.iterdir())
    asked = json.loads((folder / "run.json").read_text("utf-8"))
    assert asked["caller_token_sha256"] == hashlib.sha256(TOKEN.encode()).hexdigest()[:16]
    assert asked["corpus"] == {"kind": "synthetic", "count": 300, "seed": 2023}
    assert asked["old"]["version"] == "2017" and asked["new"]["content_hash"] == data["new"]["content_hash"]
    listing = impact_console.get("/impact").text
    row = listing.split(f'id="run-{run_id}"', 1)[1].split("</tr>", 1)[0]
    assert "2017 to 2024" in row and "300 synthetic cases, seed 2023" in row and "Done" in row


def _prepared(reports: Path, run_id: str, exit_code: int | None, stderr: str = "", **asked) -> Path:
    folder = reports / run_id
    folder.mkdir()
    ref = {"policy": "application_fee", "revision": 1, "status": "enacted", "title": "t", "content_hash": "0" * 64}
    (folder / "run.json").write_text(json.dumps({
        "policy": "application_fee", "old": {**ref, "version": "2024"}, "new": {**ref, "version": "review-2023"},
        "corpus": {"kind": "synthetic", "count": 13, "seed": 1}, "started": "2026-12-01T09:30:00+00:00",
        "run_id": run_id, **asked}))
    (folder / "stderr.txt").write_text(stderr)
    if exit_code is not None:
        (folder / "exit.json").write_text(json.dumps({"returncode": exit_code}))
    return folder


def test_a_report_folder_made_elsewhere(impact_console, reports):
    """A finished folder (here of the handwritten cases of test_impact.py, with their invalid cases
    and a flag change), made from other policy files than the service's."""
    folder = _prepared(reports, "20261201T093000Z-0123456789ab", 0)
    made = subprocess.run([sys.executable, "-m", "rules", "impact", "application_fee/2024", "application_fee/review-2023",
                           "--cases", str(CASES), "--out", str(folder), "--no-chart", "--workers", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    page = impact_console.get("/impact/20261201T093000Z-0123456789ab")
    assert page.status_code == 200 and 'id="check-progress"' not in page.text
    assert _table(page.text, "transitions") == [
        ["NO_FEE", "WAIVED", "4", "44.4%"], ["NO_FEE", "FEE_PAYABLE", "2", "22.2%"],
        ["NO_FEE", "UNDETERMINED", "1", "11.1%"], ["NOT_APPLICABLE", "NOT_APPLICABLE (unchanged)", "2", "22.2%"]]
    assert ["NOT_APPLICABLE", "none", "WARNING_ORDER", "1"] in _table(page.text, "flags-changed")
    invalid = _table(page.text, "invalid")
    assert ["2024 and review-2023", "facts.favourite_colour: unknown fact for application_fee", "1", "cases.json#4"] \
        in invalid
    assert _table(page.text, "other-policies") == [["service_type", "1"]]
    assert _table(page.text, "unreadable")[0][0] == "requests.jsonl:8"
    assert "lines of the synthetic corpus file" not in page.text  # a folder's ids are file names
    assert 'id="other-files"' in page.text  # the recorded content hashes are not the files'
    assert 'id="download-impact-md"' in page.text and 'id="download-impact-png"' not in page.text
    assert impact_console.get("/impact/20261201T093000Z-0123456789ab/impact.png").status_code == 404


def test_a_failed_and_an_interrupted_run(impact_console, reports):
    _prepared(reports, "20261201T100000Z-00000000000f", 2, "loading\nerror: unknown version 'x' of application_fee\n")
    failed = impact_console.get("/impact/20261201T100000Z-00000000000f")
    assert failed.status_code == 200 and "The report could not be made" in failed.text
    assert "error: unknown version &#39;x&#39; of application_fee" in failed.text
    assert "ended with code 2" in failed.text
    assert impact_console.get("/impact/20261201T100000Z-00000000000f/impact.md").status_code == 404
    _prepared(reports, "20261201T110000Z-0000000000ee", None)  # no exit.json, and no one watching it
    interrupted = impact_console.get("/impact/20261201T110000Z-0000000000ee")
    assert "The console stopped before the report was finished" in interrupted.text
    assert 'id="check-progress"' not in interrupted.text


@pytest.mark.parametrize("path", [  # (an HTTP client resolves a bare ".." segment itself)
    "/impact/..%2F..%2Fetc", "/impact/%2E%2E", "/impact/20261201T093000Z-0123456789AB", "/impact/20261201T093000Z-0123",
    "/impact/20261201T093000Z-0123456789ab%2F..", "/impact/x%00y", "/impact/29991231T000000Z-aaaaaaaaaaaa",
    "/impact/%2E%2E/impact.md", "/impact/20261201T093000Z-0123456789ab%0A/impact.md",
])
def test_bad_or_unknown_run_ids_are_not_found(impact_console, path):
    assert impact_console.get(path).status_code == 404


@pytest.mark.parametrize("run_id", ["..", "../x", "/etc", "20261201T093000Z-0123456789ab/..",
                                    "20261201T093000Z-0123456789ab\n", "."])
def test_a_bad_run_id_never_reaches_the_file_system(reports, run_id):
    assert runs(reports).get(run_id) is None


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"new": "service_type/2012"}, "new", "Choose a version of the same policy as the old version"),
    ({"new": "application_fee/2017"}, "new", "Choose a different version from the old one"),
    ({"old": "application_fee/1999"}, "old", "Choose the version in force now"),
    ({"count": "300000"}, "count", "The number of cases must be between 1 and 200,000"),
    ({"count": "ten"}, "count", "Enter the number of cases as a whole number"),
    ({"seed": "-1"}, "seed", "Enter the seed as a whole number"),
    ({"count": "²"}, "count", "Enter the number of cases as a whole number"),
    ({"count": "0"}, "count", "The number of cases must be between 1 and 200,000"),
])
def test_the_form_says_what_is_wrong(impact_console, reports, changes, field, message):
    before = sorted(p.name for p in reports.iterdir())
    page = _post(impact_console, {**FORM, **changes})
    assert page.status_code == 400
    assert f'<a href="#{field}">{message}' in page.text and f'id="{field}-error"' in page.text
    assert sorted(p.name for p in reports.iterdir()) == before


def test_a_post_without_its_csrf_token_starts_nothing(impact_console, reports):
    before = sorted(p.name for p in reports.iterdir())
    assert impact_console.post("/impact/run", data=FORM).status_code == 403
    assert sorted(p.name for p in reports.iterdir()) == before


class RefusingGetPolicy(ServiceClient):
    """The service as a caller without get_policy for application_fee sees it."""

    def get_policy(self, token, policy, version="", markdown=False):
        raise ServiceError(grpc.StatusCode.PERMISSION_DENIED,
                           f"caller 'fee-portal' may not call GetPolicy for policy '{policy}'")


def test_a_caller_the_service_refuses_starts_nothing(console_service, reports):
    config = Config(service=grpc_target(console_service[0]), golden=GOLDEN, reports=reports,
                    session_secret=b"test-secret")
    with TestClient(create_app(config, RefusingGetPolicy(config)), base_url="http://127.0.0.1:8080",
                    follow_redirects=False) as client:
        before = sorted(p.name for p in reports.iterdir())
        refused = _post(client, FORM)
        assert refused.status_code == 403 and "may not call GetPolicy" in refused.text
        assert sorted(p.name for p in reports.iterdir()) == before
        # nor may it read a report of that policy, or download one
        some = next(p.name for p in reports.iterdir() if (p / "impact.md").is_file())
        assert client.get(f"/impact/{some}").status_code == 403
        assert client.get(f"/impact/{some}/impact.md").status_code == 403


def test_the_chart_is_a_labelled_picture():
    from console.charts import Series, bar_chart
    svg = str(bar_chart("c", "T <1>", "D", ["A", "B"], [Series("old", [3, 0], "x"), Series("new", [1, 2], "y")]))
    assert svg.startswith('<svg id="c" class="console-chart" role="img" aria-labelledby="c-title c-desc"')
    assert "<title id=\"c-title\">T &lt;1&gt;</title>" in svg and "<desc id=\"c-desc\">D</desc>" in svg
    assert "old: 3" in svg and "new: 2" in svg and "style=" not in svg
    widths = [int(w) for w in re.findall(r'<rect class="[xy]" x="[0-9]+" y="[0-9]+" width="([0-9]+)"', svg)]
    assert widths == [16, 16, 330, 110, 0, 220]  # the legend's two swatches, then old A, new A, old B, new B



def test_the_services_own_refusal_starts_nothing(tmp_path, reports):
    """A service with --authz: a caller that may read service_type's versions but not
    application_fee's may weigh a change to the one and not the other."""
    from tests.conftest import start_service, stop_service
    token = "impact-readers-token-5e1c9a7f3b2d4086a1c3e5f7b9d0e2a4"
    authz = tmp_path / "authz.yaml"
    authz.write_text(f"""\
callers:
  impact-readers:
    token_sha256: [{hashlib.sha256(token.encode()).hexdigest()}]
    allow: {{list_policies: true, get_policy: [service_type]}}
""")
    proc, channel, _ = start_service(tmp_path, "--authz", str(authz))
    try:
        with console_client(grpc_target(proc), reports, require_sign_in=True) as client:
            client.headers["authorization"] = f"Bearer {token}"  # as an OIDC proxy in front sends it
            before = sorted(p.name for p in reports.iterdir())
            refused = _post(client, FORM)
            assert refused.status_code == 403 and "You do not have permission to see this" in refused.text
            assert sorted(p.name for p in reports.iterdir()) == before
            # nor may it read a report of application_fee; one of service_type it may
            _prepared(reports, "20261202T080000Z-00000000fee0", 2, "error: x\n")
            assert client.get("/impact/20261202T080000Z-00000000fee0").status_code == 403
            ref = {"policy": "service_type", "revision": 1, "status": "enacted", "title": "t", "content_hash": "0" * 64}
            _prepared(reports, "20261202T080000Z-0000000005e0", 2, "error: y\n", policy="service_type",
                      old={**ref, "version": "2012"}, new={**ref, "version": "review-2023"})
            readable = client.get("/impact/20261202T080000Z-0000000005e0")
            assert readable.status_code == 200 and "error: y" in readable.text
    finally:
        stop_service(proc, channel)


# --- a case folder the console was started with ----------------------------------------------------
# Three application_fee cases, decided as the policies' YAML says (each version pinned, facts of the
# other version ignored):
# - JSONL line 1, direct_pay, not NI, applied 2023-06-01, born 1990, no abuse disclosed: 2017 decides
#   by payable.standard (no earlier rule holds; applicant_is_victim keeps its default, false) →
#   FEE_PAYABLE £20; 2024: not family-based, not NI → no-fee.abolished → NO_FEE.
# - JSONL line 2, bare facts, family_based: the first rule of both → NOT_APPLICABLE, unchanged.
# - more/under-19.yml, collect_and_pay, born 2006-01-01, applied 2023-06-01 (17, under 19):
#   2017 waived.under-19 → WAIVED; 2024 → NO_FEE.
FOLDER_CASES = {
    "requests.jsonl": "\n".join(json.dumps(case) for case in [
        {"policy": "application_fee", "facts": {
            "application_route": "direct_pay", "applicant_in_northern_ireland": False,
            "application_date": "2023-06-01", "applicant_date_of_birth": "1990-01-01", "abuse_of_applicant": False,
            "child_abuse_disclosed": False, "child_abuse_witnessed": False, "child_abuser": "someone_else",
            "abuse_reported_to": [], "declaration": "not_made"}},
        {"application_route": "family_based", "applicant_in_northern_ireland": False,
         "application_date": "2023-06-01"}]) + "\n",
    "more/under-19.yml": """\
policy: application_fee
facts:
  application_route: collect_and_pay
  applicant_in_northern_ireland: false
  application_date: 2023-06-01
  applicant_date_of_birth: 2006-01-01
""",
    "notes.txt": "not a case file\n",
    ".hidden/ignored.yaml": "application_route: family_based\n",
}
FOLDER_TRANSITIONS = [["FEE_PAYABLE", "NO_FEE", "1", "33.3%"], ["NOT_APPLICABLE", "NOT_APPLICABLE (unchanged)", "1", "33.3%"],
                      ["WAIVED", "NO_FEE", "1", "33.3%"]]


@pytest.fixture(scope="module")
def case_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("configured") / "fee-cases"
    for name, text in FOLDER_CASES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def folder_console(console_service, reports, case_folder):
    with console_client(grpc_target(console_service[0]), reports, dev_token=TOKEN,
                        case_folders=(case_folder,)) as client:
        yield client


def test_a_report_over_a_case_folder(folder_console, reports, case_folder):
    form = folder_console.get("/impact").text
    assert 'value="folder:fee-cases"' in form and "The case folder fee-cases" in form
    assert "2 case files" in form  # the JSONL and the YAML; not notes.txt, nor the hidden folder's
    assert 'id="folder-warning"' in form and "shows example cases' facts" in form
    assert 'id="corpus" name="corpus" type="radio" value="synthetic" checked' in form
    started = _post(folder_console, {"old": "application_fee/2017", "new": "application_fee/2024",
                                     "corpus": "folder:fee-cases", "count": "", "seed": ""})
    assert started.status_code == 303, started.text
    url = started.headers["location"]
    run_id = url.rsplit("/", 1)[1]
    done = _wait(folder_console, url)
    assert sorted(_table(done, "transitions")) == FOLDER_TRANSITIONS
    assert 'id="run-cases">Case folder fee-cases: 3 cases in 2 files<' in done
    assert "no-fee.abolished" in done and "waived.under-19" in done and "payable.standard" in done
    assert "£20" in done  # the amounts: £20 under 2017, £0 under 2024
    assert str(case_folder) not in done and "--cases fee-cases" in done  # the machine's path stays off the page
    asked = json.loads((reports / run_id / "run.json").read_text("utf-8"))
    assert asked["corpus"] == {"kind": "folder", "name": "fee-cases"}
    assert str(case_folder) not in json.dumps(asked)
    for name in ("impact.md", "impact.json"):  # nor in the report files a reader downloads
        report = folder_console.get(f"{url}/{name}").text
        assert str(case_folder) not in report and "fee-cases" in report
    listing = folder_console.get("/impact").text
    row = listing.split(f'id="run-{run_id}"', 1)[1].split("</tr>", 1)[0]
    assert "Case folder fee-cases" in row and "Done" in row


@pytest.mark.parametrize("choice", ["folder:elsewhere", "/etc", "folder:../fee-cases", "folder:", "", "FOLDER:fee-cases"])
def test_only_a_configured_folder_can_be_chosen(folder_console, reports, case_folder, choice):
    before = sorted(p.name for p in reports.iterdir())
    page = _post(folder_console, {**FORM, "corpus": choice})
    assert page.status_code == 400
    assert '<a href="#corpus">Choose synthetic cases or one of the case folders' in page.text
    assert 'id="corpus-error"' in page.text
    assert sorted(p.name for p in reports.iterdir()) == before
    # the path itself is no choice either
    assert _post(folder_console, {**FORM, "corpus": str(case_folder)}).status_code == 400


def test_case_folders_need_names_of_their_own(tmp_path):
    from console.config import ConfigError
    (tmp_path / "a" / "cases").mkdir(parents=True)
    (tmp_path / "b" / "cases").mkdir(parents=True)
    with pytest.raises(ConfigError, match="a name of its own"):
        Config(case_folders=(tmp_path / "a" / "cases", tmp_path / "b" / "cases")).check()
    with pytest.raises(ConfigError, match="no such folder"):
        Config(case_folders=(tmp_path / "c",)).check()


def test_a_folder_runs_progress_counts_its_cases_once_read(tmp_path):
    from console.impactruns import Run
    from console.pages.impact import _progress_text
    asked = {"corpus": {"kind": "folder", "name": "fee-cases"}}
    assert _progress_text(Run("r", tmp_path, asked, "running")) == "0% done: reading the folder's cases"
    read = Run("r", tmp_path, asked, "running", cases_done=2_000, cases_total=4_500, percent=44)
    assert _progress_text(read) == "44% done: 2,000 of 4,500 cases decided by both versions"
    synthetic = Run("r", tmp_path, {"corpus": {"kind": "synthetic", "count": 300, "seed": 1}}, "running")
    assert _progress_text(synthetic) == "0% done: 0 of 300 cases decided by both versions"
