"""The console's policy pages: every policy with its versions (a timeline and a table), each version
in full with its golden cases as worked examples, and side-by-side diffs of versions and revisions.
The expected texts are from the policy files (rules/policies) and golden cases (tests/golden)."""
from __future__ import annotations

import hashlib
import html
import re

import pytest
from starlette.testclient import TestClient

from cms_policy.v1 import policy_pb2 as pb
from cms_policy.v1 import policy_pb2_grpc
from console.app import create_app
from console.config import Config
from tests.conftest import start_service, stop_service
from tests.consoletools import GOLDEN, console_client, grpc_target


def _element(page: str, element_id: str, end: str) -> str:
    """The markup inside the element with this id, up to the first `end` after its start, unescaped."""
    start = page.index(">", page.index(f'id="{element_id}"')) + 1
    return html.unescape(page[start:page.index(end, start)])


def _words(fragment: str) -> str:
    """Markup's text, its whitespace made single spaces."""
    return " ".join(re.sub(r"<[^>]+>", " ", fragment).split())


@pytest.fixture
def listed(console_service) -> pb.ListPoliciesResponse:
    return policy_pb2_grpc.PolicyDecisionServiceStub(console_service[1]).ListPolicies(pb.ListPoliciesRequest(), timeout=10)


def test_every_policy_lists_all_its_versions_with_their_statuses(console, listed):
    index = console.get("/policies")
    assert index.status_code == 200
    assert len(listed.policies) == 6
    for summary in listed.policies:
        page = console.get(f"/policies/{summary.policy}")
        assert page.status_code == 200
        for ref in summary.versions:
            for text, table in ((page.text, "versions"), (index.text, f"versions-{summary.policy}")):
                row = _words(_element(text, f"{table}-{ref.version}", "</tr>"))
                assert row.startswith(f"{ref.version} {ref.status.capitalize()}"), row
                assert ref.content_hash[:12] in row and str(ref.revision) in row
    fee = _words(_element(console.get("/policies/application_fee").text, "versions", "</table>"))
    assert ("2017 Enacted 1 August 2017 25 February 2024 2" in fee and "2024 Enacted 26 February 2024 Open-ended" in fee
            and "review-2023 Proposed No date No date" in fee)


def test_the_timeline_is_a_picture_with_a_title_and_its_words(console):
    page = console.get("/policies/application_fee").text
    svg = page[page.index("<svg"):page.index("</svg>")]
    assert 'role="img"' in svg and 'aria-labelledby="timeline-policy-title timeline-policy-desc"' in svg
    assert '<title id="timeline-policy-title">Timeline of the versions of application_fee</title>' in svg
    desc = html.unescape(svg[svg.index('<desc id="timeline-policy-desc">'):svg.index("</desc>")])
    assert "2017, enacted, revision 2, from 1 August 2017 to 25 February 2024" in desc
    assert "2024, enacted, revision 2, from 26 February 2024 open-ended" in desc
    assert "review-2023, proposed, revision 2, no dates: not in force" in desc
    # the status is written beside each bar, not only its pattern
    assert "review-2023 · proposed · revision 2" in html.unescape(svg) and "Not in force, no dates" in svg
    index = console.get("/policies").text
    assert index.count('<svg') == 6 and 'id="timeline-service_type-title"' in index


def test_a_version_page_shows_parameters_facts_rules_and_worked_examples(console):
    page = console.get("/policies/application_fee/2017")
    assert page.status_code == 200
    text = page.text
    assert "<title>Policy application_fee version 2017 – CMS policy console</title>" in text
    fee = _words(_element(text, "parameter-application_fee_pence", "</tr>"))
    assert "£20" in fee and "Child Support Fees Regulations 2014 (SI 2014/612), reg 3(1)" in fee
    born = _words(_element(text, "facts-applicant_date_of_birth", "</tr>"))
    assert "What is the applicant's date of birth?" in born and "date" in born
    abuse = _words(_element(text, "facts-abuse_of_applicant", "</tr>"))
    assert "Sensitive" in abuse and "The parent the decision is about" in abuse
    family = _words(_element(text, "rule-not-applicable.family-based", "</li>"))
    assert ("A family-based arrangement is made outside the statutory scheme, so no application fee applies." in family
            and "application_route is family_based" in family and "NOT_APPLICABLE" in family)
    standard = _words(_element(text, "example-01-standard-fee", "</details>"))
    assert "Adult applicant, no exemption: the £20 fee is payable." in standard
    assert "Expected outcome: FEE_PAYABLE : the application fee is payable (£20)" in standard
    assert "What is the applicant's date of birth? 20 July 1985" in standard  # the facts in words
    assert "If applicant_date_of_birth were 16 March 2000 or later (it is 20 July 1985): WAIVED" in standard
    assert text.count('class="govuk-details policies-example"') == 36  # every case in tests/golden/application_fee/2017 (not r1/)
    assert 'href="/try/application_fee/2017"' in text and 'id="try-link"' in text
    corrections = _words(_element(text, "corrections", "</table>"))
    assert "The applicant's review line states no time limit" in corrections
    assert 'href="/policies/application_fee/2017?revision=1"' in text


def test_every_version_page_has_its_rules_and_all_its_golden_cases(console, listed):
    for summary in listed.policies:
        for ref in summary.versions:
            page = console.get(f"/policies/{summary.policy}/{ref.version}")
            assert page.status_code == 200, (summary.policy, ref.version)
            assert _element(page.text, "policy-title", "</h1>") == ref.title
            cases = list((GOLDEN / summary.policy / ref.version).glob("*.yaml"))
            assert cases and page.text.count('class="govuk-details policies-example"') == len(cases)
            assert page.text.count('class="govuk-summary-card policies-rule"') >= 1


def test_citations_link_to_the_legislation(console):
    page = console.get("/policies/maintenance_calculation/2012").text
    nil = _element(page, "parameter-nil_rate_income_below", "</tr>")
    assert '<a class="govuk-link" href="https://www.legislation.gov.uk/uksi/2012/2677/regulation/45">' in nil
    assert "£7" in _words(nil)
    fee = console.get("/policies/application_fee/2017").text
    assert 'href="https://www.legislation.gov.uk/uksi/2014/612' in _element(fee, "citations", "</ul>")


def test_lists_and_uses_are_shown(console):
    evidence = console.get("/policies/abuse_evidence/2016").text
    items = _words(_element(evidence, "list-evidence_items", "</section>"))
    assert "evidence_items Sensitive" in items and "REFER_TO_DECISION_MAKER" in items
    assert "item.not-on-list" in items
    review = console.get("/policies/service_type/review-2023").text
    assert 'href="/policies/abuse_evidence"' in _element(review, "uses", "</ul>")
    assert "the enacted version in force on the same date" in _words(_element(review, "uses", "</ul>"))


def test_an_earlier_revision_is_shown_as_it_was_with_its_own_examples(console):
    page = console.get("/policies/application_fee/2017?revision=1")
    assert page.status_code == 200
    text = page.text
    assert "revision 1" in text[:text.index("</title>")]
    assert "This is revision 1, as it was before it was corrected. New decisions use revision 2" in _words(
        _element(text, "earlier-revision", "</div>"))
    assert "0f1314f8bb40" in text  # revision 1's content hash (tests/golden/application_fee/2017/r1)
    standard = _words(_element(text, "example-01-standard-fee", "</details>"))
    assert "If application_route were family based (it is direct pay)" in standard  # as revision 1 wrote it


def test_the_diff_of_two_versions_names_what_changed(console):
    page = console.get("/policies/application_fee/diff", params={"a": "2017", "b": "2024"})
    assert page.status_code == 200
    text = page.text
    # 2024 abolished the fee: no parameters, the NO_FEE outcome and the no-fee.abolished rule
    fee = _words(_element(text, "diff-parameters-application_fee_pence", "</tbody>"))
    assert fee.startswith("application_fee_pence Removed Value £20 Not in this version")
    assert "Child Support Fees Regulations 2014 (SI 2014/612) reg 3(1)" in fee
    assert _words(_element(text, "diff-outcomes-NO_FEE", "</tr>")).endswith("NO_FEE Added Meaning Not in this version there is no application fee")
    abolished = _words(_element(text, "diff-rules-no-fee.abolished", "</tbody>"))
    assert "Added" in abolished and "The application fee was abolished from 26 February 2024" in abolished
    version = _words(_element(text, "diff-version-This-version", "</tbody>"))
    assert "Effective to 25 February 2024 Changed open-ended" in version
    assert "policies-cell--changed" in text and "policies-cell--added" in text
    form = _element(text, "diff-form", "</form>")
    assert '<option value="2017" selected>' in form and '<option value="2024" selected>' in form


def test_the_diff_of_two_revisions_shows_the_correction(console):
    page = console.get("/policies/application_fee/diff", params={"a": "2017@1", "b": "2017@2"})
    assert page.status_code == 200
    text = page.text
    version = _words(_element(text, "diff-version-This-version", "</tbody>"))
    assert "Revision 1 Changed 2" in version and "Content hash 0f1314f8bb40 Changed d561e9031b84" in version
    corrections = _words(_element(text, "diff-corrections", "</table>"))
    assert "Revision 2, correction 1 Added" in corrections
    assert "The applicant's review line states no time limit" in corrections
    # abuse_evidence 2013's correction changed what a MARAC letter's rule says (rules/policies/abuse_evidence)
    marac = console.get("/policies/abuse_evidence/diff", params={"a": "2013@1", "b": "2013"}).text
    rule = _words(_element(marac, "diff-list-evidence_items-rules-item.marac-not-chair-high-risk", "</tbody>"))
    assert rule.startswith("item.marac-not-chair-high-risk Changed Because")
    assert "Changed A MARAC letter counts only if it is from the chair" in rule and "{from_marac_chair}" in rule


def test_the_policy_page_offers_revisions_to_compare(console):
    page = console.get("/policies/application_fee").text
    form = _element(page, "diff-form", "</form>")
    assert '<form method="get" action="/policies/application_fee/diff" id="diff-form"' in page
    assert '<option value="2017@1">2017, revision 1 (corrected since)</option>' in form
    assert 'name="a"' in form and 'name="b"' in form


@pytest.mark.parametrize("path", ["/policies/nope", "/policies/nope/2017", "/policies/application_fee/1999",
                                  "/policies/application_fee/2017?revision=9", "/policies/nope/diff?a=1&b=2"])
def test_an_unknown_policy_version_or_revision_is_not_found(console, path):
    page = console.get(path)
    assert page.status_code == 404 and "Page not found" in page.text


@pytest.mark.parametrize(("query", "words"), [
    ({"a": "2017"}, "'b' is missing"),
    ({"a": "2017@0", "b": "2024"}, "'a' should be a version"),
    ({"a": "2017", "b": "2024@x"}, "'b' should be a version"),
    ({"a": "1999", "b": "2024"}, "unknown version '1999' of application_fee"),
    ({"a": "2017@7", "b": "2024"}, "application_fee/2017 has no revision 7"),
])
def test_a_bad_diff_query_is_a_400_saying_what_is_wrong(console, query, words):
    page = console.get("/policies/application_fee/diff", params=query)
    assert page.status_code == 400 and words in html.unescape(page.text)


@pytest.mark.parametrize("revision", ["first", "-1", "²", "1234567"])
def test_a_bad_revision_number_is_a_400(console, revision):
    page = console.get("/policies/application_fee/2017", params={"revision": revision})
    assert page.status_code == 400 and "revision is a revision number" in page.text


def test_without_golden_cases_the_page_says_none_are_available(console_service, console_reports):
    app = create_app(Config(service=grpc_target(console_service[0]), golden=None, reports=console_reports,
                            session_secret=b"test-secret"))
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        page = client.get("/policies/application_fee/2017").text
    assert "No worked examples are available" in page and "policies-example" not in page


def test_a_caller_may_list_every_policy_and_read_only_those_it_is_allowed(tmp_path, console_reports):
    token = "fee-readers-token-3f9a1c7e5b2d4086a1c3e5f7b9d0e2a4"
    authz = tmp_path / "authz.yaml"
    authz.write_text(f"""\
callers:
  fee-readers:
    token_sha256: [{hashlib.sha256(token.encode()).hexdigest()}]
    allow: {{list_policies: true, get_policy: [application_fee]}}
""")
    proc, channel, _ = start_service(tmp_path, "--authz", str(authz))
    try:
        with console_client(grpc_target(proc), console_reports, require_sign_in=True) as client:
            client.headers["authorization"] = f"Bearer {token}"  # as an OIDC proxy in front sends it
            versions = client.get("/policies/service_type")  # its versions are listed; no revisions to compare
            assert versions.status_code == 200 and 'id="versions-da-act-2023"' in versions.text
            assert "revision 1 (corrected since)" not in versions.text
            refused = client.get("/policies/service_type/2012")
            assert refused.status_code == 403 and "You do not have permission to see this" in refused.text
            assert "parameter-" not in refused.text
            assert client.get("/policies/service_type/diff", params={"a": "2012", "b": "review-2023"}).status_code == 403
            allowed = client.get("/policies/application_fee/2017")
            assert allowed.status_code == 200 and 'id="parameter-application_fee_pence"' in allowed.text
    finally:
        stop_service(proc, channel)
