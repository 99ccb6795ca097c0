"""The console in a real headless Chromium: every part a reviewer or policy officer uses, each page
screenshotted (a test artefact) and checked by axe-core. The pages run no script but one (an impact
run's progress, which without it is a "Check progress" link): what the browser does here, a user with
no JavaScript does too."""
from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.browsertools import check_page, click_and_wait, start_chromium
from tests.consoletools import ServedConsole, grpc_target


@pytest.fixture(scope="module")
def site(console_service, console_reports):
    served = ServedConsole(grpc_target(console_service[0]), console_reports)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("browser"))
    yield driver
    driver.quit()


def test_the_start_page(site, browser):
    browser.get(site.url + "/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "CMS policy console"
    check_page(browser, "start")


def _recorded_fee_decision(console_service, metadata=()) -> str:
    from google.protobuf import struct_pb2

    from cms_policy.v1 import policy_pb2 as pb
    from cms_policy.v1 import policy_pb2_grpc

    facts = struct_pb2.Struct()
    facts.update({"application_route": "direct_pay", "applicant_in_northern_ireland": False,
                  "application_date": "2019-03-15", "applicant_date_of_birth": "1985-07-20",
                  "abuse_of_applicant": True, "abuse_reported_to": ["police"], "declaration": "at_application"})
    stub = policy_pb2_grpc.PolicyDecisionServiceStub(console_service[1])
    decision = stub.Decide(pb.DecideRequest(policy="application_fee", facts=facts, as_at="2019-03-15",
                                            subject=pb.AUDIENCE_RECEIVING_PARENT,
                                            requested_by=pb.AUDIENCE_RECEIVING_PARENT),
                           timeout=30, metadata=metadata)
    assert decision.outcome == "WAIVED"
    return decision.decision_id


def test_a_reviewer_inspects_a_decision_and_replays_it(site, browser, console_service):
    decision_id = _recorded_fee_decision(console_service)
    browser.get(site.url + "/decisions")
    check_page(browser, "decision-lookup")
    browser.find_element(By.ID, "decision_id").send_keys(decision_id)
    click_and_wait(browser, browser.find_element(By.ID, "decision-lookup-button"))
    assert browser.current_url == f"{site.url}/decisions/{decision_id}"
    assert browser.title.startswith(f"Decision {decision_id}")
    assert "WAIVED" in browser.find_element(By.ID, "outcome").text
    assert browser.find_element(By.CSS_SELECTOR, "#trail-picture svg").get_attribute("role") == "img"
    assert "abuse_of_applicant" in browser.find_element(By.ID, "not-told-paying-parent").text
    check_page(browser, "decision")
    click_and_wait(browser, browser.find_element(By.ID, "replay-button"))
    assert "Identical" in browser.find_element(By.ID, "replay-verdict").text
    check_page(browser, "decision-replayed")


def test_a_policy_officer_browses_a_policy_its_timeline_a_version_and_a_diff(site, browser):
    from selenium.webdriver.support.ui import Select

    browser.get(site.url + "/policies")
    svg = browser.find_element(By.CSS_SELECTOR, "#picture-application_fee svg")
    assert svg.get_attribute("role") == "img"
    check_page(browser, "policies")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "#policy-application_fee h2 a, #policy-application_fee a"))
    assert browser.current_url == site.url + "/policies/application_fee"
    for version in ("2014", "2017", "2024", "review-2023"):
        assert browser.find_element(By.ID, f"versions-{version}")
    check_page(browser, "policy-application-fee")
    Select(browser.find_element(By.ID, "diff-a")).select_by_value("2017")
    Select(browser.find_element(By.ID, "diff-b")).select_by_value("2024")
    click_and_wait(browser, browser.find_element(By.ID, "diff-submit"))
    assert browser.current_url.endswith("/policies/application_fee/diff?a=2017&b=2024")
    assert "2017" in browser.find_element(By.ID, "diff-ref-a").text
    assert browser.find_element(By.ID, "diff-rules").text  # the rules did change between them
    check_page(browser, "policy-diff-2017-2024")
    browser.get(site.url + "/policies/application_fee/2017")
    assert browser.find_element(By.ID, "parameters").find_elements(By.CSS_SELECTOR, "a[href*='legislation.gov.uk']")
    assert browser.find_elements(By.CSS_SELECTOR, "details[id^='example-']")
    check_page(browser, "policy-version-application-fee-2017")


# One golden case of each policy, posed through the form as a policy officer would (case 60 with a
# shadow under the 2024 version, where the fee was abolished).
TRIED = [("application_fee/2017/60-audience-applicant-is-receiving-parent.yaml", "2024"),
         ("service_type/da-act-2023/06-relevant-abuse-unspent-conviction.yaml", ""),
         ("abuse_evidence/2016/01-financial-abuse-only.yaml", ""),
         ("caseworker_routing/2024/02-scenario-a-not-safe.yaml", ""),
         ("maintenance_calculation/2012/17-two-children-income-200-basic.yaml", ""),
         ("prisoner_liability/review-2023/12-enforced-low-pay-shared-care-capped.yaml", "")]


def _fill(browser, name: str, value) -> None:
    from selenium.webdriver.support.ui import Select

    elements = browser.find_elements(By.NAME, name)
    assert elements, f"the form has no field {name}"
    first = elements[0]
    if first.tag_name == "select":
        Select(first).select_by_value(value)
    elif first.get_attribute("type") in ("radio", "checkbox"):
        for wanted in value if isinstance(value, list) else [value]:
            [choice] = [e for e in elements if e.get_attribute("value") == wanted]
            # GOV.UK's radios and checkboxes are drawn by their labels: click as a person does
            browser.find_element(By.CSS_SELECTOR, f"label[for='{choice.get_attribute('id')}']").click()
    else:
        first.clear()
        first.send_keys(value)


@pytest.mark.parametrize(("case", "shadow"), TRIED, ids=[c.split("/")[0] for c, _ in TRIED])
def test_a_policy_officer_tries_a_case_of_each_policy(site, browser, console_service, case, shadow):
    from cms_policy.v1 import policy_pb2_grpc
    from rules.authoring import goldens
    from tests.consoletools import GOLDEN
    from tests.test_console_try import form_fields

    golden = goldens.read(GOLDEN / case)
    request = golden["request"]
    fields = form_fields(policy_pb2_grpc.PolicyDecisionServiceStub(console_service[1]), request)
    policy, version = request["policy"], request["version"]
    browser.get(f"{site.url}/try")
    click_and_wait(browser, browser.find_element(By.ID, f"try-{policy}-{version}"))
    check_page(browser, f"try-form-{policy}")
    for name, count in [(n, int(c)) for n, c in fields.items() if n.startswith("count-")]:
        while int(browser.find_element(By.NAME, name).get_attribute("value")) < count:
            click_and_wait(browser, browser.find_element(By.ID, f"add-{name.removeprefix('count-')}"))
    for name, value in fields.items():
        if not name.startswith("count-"):
            _fill(browser, name, value)
    if shadow:
        _fill(browser, "shadow_version", shadow)
    click_and_wait(browser, browser.find_element(By.ID, "decide"))
    assert browser.current_url == f"{site.url}/try/{policy}/{version}"  # answered in the POST: no facts in a URL
    assert golden["expect_outcome"] in browser.find_element(By.ID, "outcome-code").text
    assert browser.find_element(By.ID, "view-receiving-parent").text
    assert browser.find_element(By.ID, "view-paying-parent").text
    assert browser.find_element(By.ID, "rationale").text
    if shadow:
        assert browser.find_elements(By.CSS_SELECTOR, "#shadow .console-differs")
    check_page(browser, f"try-result-{policy}")


def test_a_policy_officer_runs_an_impact_report_and_opens_it(site, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(site.url + "/impact")
    check_page(browser, "impact")
    _fill(browser, "old", "application_fee/2017")
    _fill(browser, "new", "application_fee/2024")
    _fill(browser, "count", "3000")  # long enough to be seen running, on most machines
    click_and_wait(browser, browser.find_element(By.ID, "start-run"))
    run_url = browser.current_url
    assert run_url.startswith(site.url + "/impact/")
    check_page(browser, "impact-run")  # running (with its progress) or, on a fast machine, already done
    # the page's script follows the progress and shows the report when it is done
    WebDriverWait(browser, 180).until(lambda b: b.find_elements(By.ID, "transitions") or b.find_elements(By.ID, "failure"))
    assert not browser.find_elements(By.ID, "failure"), browser.find_element(By.ID, "error-output").text
    rows = browser.find_element(By.ID, "transitions").text
    assert "NO_FEE" in rows  # the 2024 version abolished the fee: cases move to NO_FEE
    assert browser.find_element(By.ID, "outcome-chart").get_attribute("role") == "img"
    check_page(browser, "impact-report")
    browser.get(site.url + "/impact")
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, f"a[href='{run_url.removeprefix(site.url)}']"))
    assert browser.find_element(By.ID, "transitions").text == rows


def test_signed_in_users_see_what_the_services_authorisation_allows(browser, tmp_path, console_reports):
    """A policy officer (no get_decision) opening a decision gets the 403 page; a reviewer sees it."""
    import hashlib

    from tests.conftest import start_service, stop_service

    tokens = {name: f"{name}-browser-token-8f2d4b6a0c1e3a5d7f9b" for name in ("reviewers", "policy-team")}
    sha = {name: hashlib.sha256(token.encode()).hexdigest() for name, token in tokens.items()}
    authz = tmp_path / "authz.yaml"
    authz.write_text(f"""\
callers:
  reviewers:
    token_sha256: [{sha["reviewers"]}]
    allow: {{get_decision: true, replay_decision: true, what_if: true, get_policy: ["*"], list_policies: true, decide: ["*"]}}
  policy-team:
    token_sha256: [{sha["policy-team"]}]
    allow: {{decide: ["*"], get_policy: ["*"], list_policies: true}}
""")
    proc, channel, _ = start_service(tmp_path, "--authz", str(authz))
    served = ServedConsole(grpc_target(proc), console_reports, require_sign_in=True)
    try:
        decision_id = _recorded_fee_decision((proc, channel), (("authorization", f"Bearer {tokens['reviewers']}"),))

        def sign_in(name: str) -> None:
            browser.delete_all_cookies()
            browser.get(f"{served.url}/decisions/{decision_id}")
            assert browser.current_url == f"{served.url}/sign-in"  # sent to sign in first
            browser.find_element(By.ID, "token").send_keys(tokens[name])
            click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "main form button"))

        sign_in("policy-team")
        check_page(browser, "sign-in-done")
        browser.get(f"{served.url}/decisions/{decision_id}")
        assert browser.find_element(By.TAG_NAME, "h1").text == "You do not have permission to see this"
        assert "WAIVED" not in browser.page_source and "abuse_of_applicant" not in browser.page_source
        check_page(browser, "decision-refused")
        sign_in("reviewers")
        browser.get(f"{served.url}/decisions/{decision_id}")
        assert "WAIVED" in browser.find_element(By.ID, "outcome").text
        click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "footer form button"))  # sign out
        assert browser.current_url == f"{served.url}/sign-in"
        check_page(browser, "sign-in")
    finally:
        served.stop()
        stop_service(proc, channel)
