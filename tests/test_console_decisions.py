"""Inspect a decision: a recorded decision by id, in full for a reviewer (facts with their sensitive
tags, the rules tried as a picture and a list, every audience's text with what each parent was not
told), its replay and what would change it; refused (403, nothing of it shown) to a caller the
service does not allow to read decisions; no fact in a URL, a title or the access log."""
from __future__ import annotations

import hashlib
import json
import logging
import re
from html import unescape
from pathlib import Path

import pytest
import yaml
from google.protobuf import struct_pb2
from starlette.testclient import TestClient

from cms_policy.v1 import policy_pb2 as pb
from cms_policy.v1 import policy_pb2_grpc
from console.app import create_app
from console.client import ServiceClient
from console.config import Config
from tests.conftest import start_service, stop_service, wire_enums
from tests.consoletools import GOLDEN, console_client, csrf, grpc_target

FEE = GOLDEN / "application_fee/2017/60-audience-applicant-is-receiving-parent.yaml"
PRISONER = GOLDEN / "prisoner_liability/2012/09-not-in-custody-reduced.yaml"
EVIDENCE = GOLDEN / "abuse_evidence/2016/05-mixed-accepted-rejected-referred.yaml"


def _case(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _request(path: Path) -> pb.DecideRequest:
    req = _case(path)["request"]
    facts = struct_pb2.Struct()
    facts.update(req.get("facts", {}))
    return pb.DecideRequest(policy=req["policy"], version=str(req.get("version", "")), facts=facts,
                            include_counterfactuals=True, **wire_enums(req))


def _decide(channel, path: Path, metadata=()) -> str:
    stub = policy_pb2_grpc.PolicyDecisionServiceStub(channel)
    return stub.Decide(_request(path), timeout=30, metadata=metadata).decision_id


def _by_id(html: str, element_id: str) -> str:
    """The text of the element with this id, up to its closing tag of the same name (no nesting of it)."""
    match = re.search(rf'<(\w+)[^>]*\bid="{re.escape(element_id)}"[^>]*>(.*?)</\1>', html, re.S)
    assert match, f"no element #{element_id}"
    return unescape(match.group(2))


def _title(html: str) -> str:
    return unescape(re.search(r"<title>(.*?)</title>", html, re.S).group(1))


@pytest.fixture(scope="module")
def fee_id(console_service) -> str:
    return _decide(console_service[1], FEE)


def test_the_lookup_form_checks_the_id_and_goes_to_its_page(console):
    form = console.get("/decisions")
    assert form.status_code == 200 and 'name="decision_id"' in form.text
    for bad, message in (("", "Enter a decision id"), ("not-an-id", "32 characters"), ("a" * 31, "32 characters")):
        page = console.get("/decisions", params={"decision_id": bad})
        assert page.status_code == 400
        assert message in _by_id(page.text, "decision_id-error")
        assert _title(page.text).startswith("Error: ")
    good = "0123456789ABCDEF0123456789abcdef"
    went = console.get("/decisions", params={"decision_id": f" {good} "})
    assert went.status_code == 303 and went.headers["location"] == f"/decisions/{good.lower()}"
    assert console.get("/decisions/zz-not-hex").status_code == 400
    upper = console.get(f"/decisions/{good.upper()}")
    assert upper.status_code == 303 and upper.headers["location"] == f"/decisions/{good.lower()}"


def test_an_unknown_id_is_not_found(console):
    page = console.get("/decisions/" + "0" * 32)
    assert page.status_code == 404 and "no decision with id" in page.text


def test_the_page_shows_the_request_with_its_sensitive_facts_tagged(console, fee_id):
    page = console.get(f"/decisions/{fee_id}")
    assert page.status_code == 200
    html = page.text
    assert _title(html) == f"Decision {fee_id} – CMS policy console"
    assert _by_id(html, "outcome") == _case(FEE)["expect_outcome"] == "FEE_PAYABLE"
    assert _by_id(html, "amount").strip() == "£20"
    assert 'href="/policies/application_fee/2017"' in html and 'href="/policies/application_fee/2017?revision=2"' in html
    abuse, route = _by_id(html, "fact-abuse_of_applicant"), _by_id(html, "fact-application_route")
    assert "Sensitive" in abuse and "Receiving parent's" in abuse and "yes" in abuse
    assert "Sensitive" not in route and "direct_pay" in route
    assert "Sensitive" in _by_id(html, "fact-requested_by") and "Receiving parent" in _by_id(html, "fact-requested_by")


def test_the_trail_lists_every_rule_in_order_with_the_one_that_decided(console, fee_id):
    html = console.get(f"/decisions/{fee_id}").text
    rule_ids = [r["id"] for r in yaml.safe_load((Path("rules/policies/application_fee/2017.yaml")).read_text())["rules"]]
    listed = re.findall(r'<li class="decision-rule decision-rule--([\w-]+)"\s+id="trail-list-rule-\d+">\s*<code>([^<]+)</code>',
                        _by_id(html, "trail-list") + "</ol>")
    assert [rule for _, rule in listed] == rule_ids
    status = dict((rule, s) for s, rule in listed)
    assert status["payable.abuse-not-reported"] == "decided"
    assert status["victim.abuse-of-applicant"] == "fired"
    assert status["waived.domestic-abuse"] == "not-used"
    assert status["payable.standard"] == "not-reached"  # after the deciding rule: first hit
    assert "Read <code>abuse_of_applicant</code> = yes" in html
    picture = _by_id(html, "trail-picture")
    assert '<svg class="trail-picture" role="img" aria-labelledby="trail-title trail-desc"' in page_svg(html)
    assert "payable.abuse-not-reported decided FEE_PAYABLE" in picture
    assert "10. payable.standard: Not reached" in picture
    assert "trail-mark--decided" in page_svg(html) and "<polygon" in page_svg(html)


def page_svg(html: str) -> str:
    return html[html.index("<svg"):html.index("</svg>")]


def test_each_parent_is_shown_with_what_they_were_not_told_and_why(console, fee_id):
    html = console.get(f"/decisions/{fee_id}").text
    paying_text = _by_id(html, "text-paying-parent")
    assert "the other parent's application fee" in paying_text and "abuse" not in paying_text
    kept = _by_id(html, "not-told-paying-parent")
    assert "<code>abuse_of_applicant</code>: yes" in kept
    assert "sensitive information, the receiving parent's, and the decision read it" in kept
    assert "That the receiving parent asked for this decision (new application)" in kept
    assert "Told FEE_PAYABLE, the paying parent could infer the receiving parent's information" in kept
    # her own facts are hers: not withheld from her
    receiving = _by_id(html, "not-told-receiving-parent")
    assert "abuse_of_applicant" not in receiving
    assert "You need to pay the £20.00 application fee" in _by_id(html, "text-receiving-parent")
    # the change she could make to her reporting is the caseworker's only: she is never asked to change it
    assert "a parent is never asked to change such an answer" in receiving
    assert "FEE_PAYABLE: the application fee is payable" in _by_id(html, "text-caseworker")


def test_replay_says_identical_and_what_if_lists_the_changes(console, fee_id):
    page = console.get(f"/decisions/{fee_id}")
    token = csrf(page.text)
    replayed = console.post(f"/decisions/{fee_id}/replay", data={"csrf_token": token})
    assert replayed.status_code == 200
    assert _by_id(replayed.text, "replay-verdict") == "Identical"
    assert "replay-differences" not in replayed.text
    changes = console.post(f"/decisions/{fee_id}/what-if", data={"csrf_token": token})
    assert changes.status_code == 200
    table = _by_id(changes.text, "what-if-changes")
    assert "applicant_date_of_birth" in table and "WAIVED" in table
    assert console.post(f"/decisions/{fee_id}/replay", data={}).status_code == 403  # no CSRF token


def test_a_decision_that_used_another_policy_shows_it_nested(console, console_service):
    decision_id = _decide(console_service[1], PRISONER)
    html = console.get(f"/decisions/{decision_id}").text
    assert _by_id(html, "outcome") == "LIABLE"
    assert "REDUCED_RATE" in _by_id(html, "sub-decision-1-outcome")
    nested = _by_id(html, "trail-list-sub-1")
    assert "<code>reduced</code>" in nested and "Read <code>gross_weekly_income</code> = 14950" in nested
    assert "maintenance_calculation 2012 (revision" in page_svg(html)
    assert "Schedule 1, para 10" in _by_id(html, "citations")
    assert "£149.50 (14950 pence)" in _by_id(html, "fact-gross_weekly_income")  # a fact of the used policy


def test_items_and_disclosure_risks_are_listed(console, console_service):
    decision_id = _decide(console_service[1], EVIDENCE)
    html = console.get(f"/decisions/{decision_id}").text
    items = _by_id(html, "items")
    assert "ACCEPTED" in items and "REJECTED" in items and "REFER_TO_DECISION_MAKER" in items
    risks = _by_id(html, "disclosure-risks")
    assert "evidence_items" in risks and "Before the receiving parent is told this outcome" in risks
    assert "Withheld" in _by_id(html, "status-paying-parent")
    evidence = _by_id(html, "fact-evidence_items")
    assert "Sensitive" in evidence and "3 items" in evidence and "type: financial_abuse" in evidence


def test_the_access_log_holds_no_fact_and_no_query(console, fee_id, caplog):
    facts = _case(FEE)["request"]["facts"]
    values = {str(v) for v in facts.values() if isinstance(v, str)} | {"abuse"}
    with caplog.at_level(logging.INFO, logger="cms_policy.console.access"):
        token = csrf(console.get(f"/decisions/{fee_id}").text)
        console.post(f"/decisions/{fee_id}/replay", data={"csrf_token": token})
        console.post(f"/decisions/{fee_id}/what-if", data={"csrf_token": token})
        console.get("/decisions", params={"decision_id": fee_id})
    lines = [json.dumps(r.fields) for r in caplog.records if r.name == "cms_policy.console.access"]
    assert len(lines) == 4
    for line in lines:
        assert "?" not in line and "decision_id=" not in line
        assert not any(value in line for value in values), line


def test_a_caller_without_get_decision_is_refused_and_sees_nothing(tmp_path, console_reports):
    tokens = {name: f"{name}-token-5b2e9c0d7a1f48e3b6c4d2a0f9e8d7c6" for name in ("reviewers", "policy-team", "readers")}
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
  readers:
    token_sha256: [{sha["readers"]}]
    allow: {{get_decision: true, get_policy: ["*"], list_policies: true}}
""")
    proc, channel, _ = start_service(tmp_path, "--authz", str(authz))
    try:
        decision_id = _decide(channel, FEE, metadata=(("authorization", f"Bearer {tokens['reviewers']}"),))
        facts = _case(FEE)["request"]["facts"]

        def signed_in(name: str):
            client = console_client(grpc_target(proc), console_reports, require_sign_in=True)
            signed = client.post("/sign-in", data={"token": tokens[name], "csrf_token": csrf(client.get("/sign-in").text)})
            assert signed.status_code == 303 and signed.headers["location"] == "/"
            return client

        with signed_in("reviewers") as reviewer:
            page = reviewer.get(f"/decisions/{decision_id}")
            assert page.status_code == 200
            assert "1985-07-20" in _by_id(page.text, "fact-applicant_date_of_birth")
            assert reviewer.get("/decisions/" + "f" * 32).status_code == 404
        with signed_in("policy-team") as outsider:
            refused = outsider.get(f"/decisions/{decision_id}")
            assert refused.status_code == 403
            assert "You do not have permission to see this" in refused.text
            for name, value in facts.items():
                assert name not in refused.text
                if isinstance(value, str):
                    assert value not in refused.text
            assert "FEE_PAYABLE" not in refused.text
            token = csrf(outsider.get("/decisions").text)
            assert outsider.post(f"/decisions/{decision_id}/replay", data={"csrf_token": token}).status_code == 403
        with signed_in("readers") as reader:  # may read the decision, not replay it: said in the panel
            token = csrf(reader.get(f"/decisions/{decision_id}").text)
            refused = reader.post(f"/decisions/{decision_id}/replay", data={"csrf_token": token})
            assert refused.status_code == 403
            assert "may not call ReplayDecision" in _by_id(refused.text, "replay-problem")
            assert _by_id(refused.text, "outcome") == "FEE_PAYABLE"
    finally:
        stop_service(proc, channel)


class _Corrected(ServiceClient):
    """The real service's replay, as if the version had been corrected since (the service decides new
    cases under the latest revision only, so a decision of an earlier one cannot be made here)."""

    def replay(self, token, decision_id):
        result = super().replay(token, decision_id)
        result.current.CopyFrom(result.replayed)
        result.current.outcome = "WAIVED"
        result.current.policy.revision += 1
        result.current_differences.append("outcome: FEE_PAYABLE != WAIVED")
        return result


def test_a_replay_of_a_corrected_version_shows_the_current_decision(console_service, console_reports, fee_id):
    target = grpc_target(console_service[0])
    app = create_app(Config(service=target, reports=console_reports, session_secret=b"test-secret"),
                     client=_Corrected(Config(service=target)))
    with TestClient(app, base_url="http://127.0.0.1:8080", follow_redirects=False) as client:
        token = csrf(client.get(f"/decisions/{fee_id}").text)
        html = client.post(f"/decisions/{fee_id}/replay", data={"csrf_token": token}).text
    assert _by_id(html, "replay-verdict") == "Identical"
    assert _by_id(html, "current-outcome") == "WAIVED"
    assert "outcome: FEE_PAYABLE != WAIVED" in _by_id(html, "current-differences")


def test_without_the_policy_the_picture_has_the_fired_rules_and_escapes_what_it_draws():
    from console import trail
    decision = pb.DecideResponse(outcome="X<Y", policy=pb.PolicyRef(policy="p", version="v", revision=1), trail=[
        pb.TrailStep(rule_id="first", concludes="d = 1"),
        pb.TrailStep(rule_id="<script>alert(1)</script>", concludes="X<Y",
                     facts_used=[pb.FactUsed(name="n", value=struct_pb2.Value(string_value="</text><b>"))])])
    drawn = trail.group(decision, {})
    assert not drawn.complete and [(r.rule_id, r.status) for r in drawn.rows] == [
        ("first", trail.FIRED), ("<script>alert(1)</script>", trail.DECIDED)]
    svg = str(trail.picture(drawn))
    assert "Only the rules that fired are known" in svg
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "</text><b>" not in svg


def test_a_held_letter_is_shown_as_held_with_why(console, console_service):
    case = GOLDEN / "prisoner_liability/2012/16-not-in-custody-missing-income.yaml"
    html = console.get(f"/decisions/{_decide(console_service[1], case)}").text
    assert _by_id(html, "outcome") == _case(case)["expect_outcome"] == "UNDETERMINED"
    assert "Held" in _by_id(html, "status-receiving-parent")
    kept = _by_id(html, "not-told-receiving-parent")
    assert "Anything at all yet: their letter is held" in kept and "not theirs to give" in kept
    assert "gross_weekly_income" in _by_id(html, "missing-facts")
    assert "Held" not in _by_id(html, "status-paying-parent")
