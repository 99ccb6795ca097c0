"""Try a case: each version's form asks every fact of its schema; golden cases posted through the
form get their hand-written outcome and both parents' texts; unreadable answers are refused at
their field without a call; a shadow version's differences are marked; the golden download
round-trips through the project's golden loader; and no fact ever reaches a URL."""
from __future__ import annotations

import html
import re
from pathlib import Path

import grpc
import pytest
import yaml
from starlette.datastructures import FormData

from cms_policy.v1 import policy_pb2 as pb
from cms_policy.v1 import policy_pb2_grpc
from console import factform
from console.client import ServiceError
from console.formatting import pounds
from console.pages.try_case import load_version
from rules.authoring import goldens
from tests.consoletools import GOLDEN, csrf

POLICIES = ("application_fee", "service_type", "abuse_evidence", "caseworker_routing",
            "maintenance_calculation", "prisoner_liability")
_URL_ATTR = re.compile(r'\b(?:href|action)="([^"]*)"')


def _case(path: str) -> dict:
    return goldens.read(GOLDEN / path)


def _triable(path: Path) -> bool:
    """A case the form can pose as its file does: a pinned version, no as_at, counterfactuals on."""
    case = goldens.read(path)
    return (bool(case["request"].get("version")) and "as_at" not in case["request"]
            and "counterfactuals" not in case["request"] and "expected" in case)


def _first_triable(version_dir: Path) -> str:
    return next(str(p.relative_to(GOLDEN)) for p in sorted(version_dir.glob("*.yaml")) if _triable(p))


# One case for each version (the first the form can pose), and some that use more of the form:
# subject/requested_by/reason and an enum list, evidence items through a used policy, a parent held
# back, several children, a prisoner's calculation's facts.
CASES = sorted({*(_first_triable(d) for d in GOLDEN.glob("*/*") if d.is_dir()),
                "application_fee/2017/60-audience-applicant-is-receiving-parent.yaml",
                "service_type/da-act-2023/06-relevant-abuse-unspent-conviction.yaml",
                "abuse_evidence/2016/01-financial-abuse-only.yaml"})
assert {c.split("/")[0] for c in CASES} == set(POLICIES)


@pytest.fixture(scope="module")
def stub(console_service):
    return policy_pb2_grpc.PolicyDecisionServiceStub(console_service[1])


def _types(stub, policy: str, version: str) -> dict[str, str]:
    """Every fact's type the form of `policy`/`version` asks (lists as "list", items' facts by name),
    with the facts of the policies it uses."""
    own = stub.GetPolicy(pb.GetPolicyRequest(policy=policy, version=version))
    specs = [own]
    for use in own.uses:
        specs += [stub.GetPolicy(pb.GetPolicyRequest(policy=use.policy, version=v.version))
                  for p in stub.ListPolicies(pb.ListPoliciesRequest()).policies if p.policy == use.policy
                  for v in p.versions]
    types: dict[str, str] = {}
    for spec in specs:
        for f in spec.facts:
            types.setdefault(f.name, f.type)
        for lst in spec.lists:
            types.setdefault(lst.name, "list")
            types.update({f"{lst.name}.{f.name}": f.type for f in lst.facts})
    return types


def _answer(name: str, kind: str, value, fields: dict) -> None:
    """One fact's value as the form's inputs would send it."""
    if value is None:
        return
    if kind == "date":
        year, month, day = value.split("-")
        fields.update({f"{name}-day": str(int(day)), f"{name}-month": str(int(month)), f"{name}-year": year})
    elif kind == "bool":
        fields[name] = "yes" if value else "no"
    elif kind == "money":
        fields[name] = f"{value // 100}.{value % 100:02d}"
    elif kind == "enum_list":
        fields[name] = list(value) or [":none"]
    else:
        fields[name] = str(value)


def form_fields(stub, request: dict) -> dict:
    """A golden case's request as the form's fields (without the CSRF token)."""
    types = _types(stub, request["policy"], request["version"])
    fields: dict = {}
    for name, value in request.get("facts", {}).items():
        if types[name] == "list":
            fields[f"count-{name}"] = str(len(value))
            fields[f"facts-{name}"] = "items" if value else "none"
            for index, item in enumerate(value):
                for fact, v in item.items():
                    _answer(f"facts-{name}-{index}-{fact}", types[f"{name}.{fact}"], v, fields)
        else:
            _answer(f"facts-{name}", types[name], value, fields)
    fields.update({k: request[k] for k in ("subject", "requested_by", "reason") if k in request})
    return fields


def _strings(value) -> set[str]:
    """The fact values that could be recognised in a URL (long enough not to be a chance match)."""
    if isinstance(value, dict):
        return {s for v in value.values() for s in _strings(v)}
    if isinstance(value, list):
        return {s for v in value for s in _strings(v)}
    if isinstance(value, bool) or value is None:
        return set()
    text = str(value)
    return {text} if len(text) >= 4 else set()


def assert_no_fact_in_a_url(response, facts: dict) -> None:
    urls = [response.headers.get("location", "")] + _URL_ATTR.findall(response.text)
    for secret in _strings(facts):
        leaked = [u for u in urls if secret in html.unescape(u)]
        assert not leaked, f"the fact value {secret!r} is in a URL: {leaked}"


def _section(page: str, element_id: str) -> str:
    """The text of the element with this id (up to its closing tag of the same name)."""
    match = re.search(rf'<(\w+)[^>]*\bid="{re.escape(element_id)}"[^>]*>', page)
    assert match, f"no element with id {element_id}"
    tag, start, depth = match.group(1), match.end(), 1
    for m in re.finditer(rf"<(/?){tag}\b[^>]*>", page[start:]):
        depth += -1 if m.group(1) else 1
        if depth == 0:
            return html.unescape(page[start:start + m.start()])
    raise AssertionError(f"element {element_id} is not closed")


def _as_data(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """A form's (name, value) pairs as the test client posts them (a name may repeat)."""
    data: dict[str, list[str]] = {}
    for name, value in pairs:
        data.setdefault(name, []).append(value)
    return data


def _post(console, path: str, fields: dict):
    token = csrf(console.get(path).text)  # the form's own page gives the session its token
    return console.post(path, data={"csrf_token": token, **fields})


def test_try_lists_every_version_of_every_policy(console, stub):
    page = console.get("/try")
    assert page.status_code == 200
    listing = stub.ListPolicies(pb.ListPoliciesRequest())
    assert {p.policy for p in listing.policies} == set(POLICIES)
    for p in listing.policies:
        for v in p.versions:
            assert f'href="/try/{p.policy}/{v.version}"' in page.text


@pytest.mark.parametrize("policy", POLICIES)
def test_the_form_asks_every_fact_of_each_version(console, stub, policy):
    [summary] = [p for p in stub.ListPolicies(pb.ListPoliciesRequest()).policies if p.policy == policy]
    for ref in summary.versions:
        spec = stub.GetPolicy(pb.GetPolicyRequest(policy=policy, version=ref.version))
        page = console.get(f"/try/{policy}/{ref.version}")
        assert page.status_code == 200
        assert f"{policy} {ref.version}" in page.text.split("</title>")[0]
        for fact in spec.facts:
            first_input = f"facts-{fact.name}-day" if fact.type == "date" else f"facts-{fact.name}"
            assert f'id="{first_input}"' in page.text, f"{policy}/{ref.version}: no input for {fact.name}"
            assert fact.question in html.unescape(page.text)
        for lst in spec.lists:
            for fact in lst.facts:
                first_input = f"facts-{lst.name}-0-{fact.name}" + ("-day" if fact.type == "date" else "")
                assert f'id="{first_input}"' in page.text, f"{policy}/{ref.version}: no input for {lst.name}[0].{fact.name}"
            assert f'id="add-{lst.name}"' in page.text
        for use in spec.uses:  # a used policy's facts are asked too, less those the version fixes
            used = stub.GetPolicy(pb.GetPolicyRequest(policy=use.policy, version="" if use.version in ("in_force", "latest_enacted") else use.version))
            for fact in used.facts:
                if fact.name not in use.set.fields:
                    assert f'facts-{fact.name}' in page.text, f"{policy}/{ref.version}: no input for {use.policy}'s {fact.name}"
        assert "decided and recorded by the decision service" in page.text
        assert 'name="subject"' in page.text and 'name="requested_by"' in page.text and 'name="reason"' in page.text


@pytest.mark.parametrize("path", CASES)
def test_a_golden_case_posted_through_the_form_gets_its_outcome_and_both_parents_texts(console, stub, path):
    case = _case(path)
    request = case["request"]
    response = _post(console, f"/try/{request['policy']}/{request['version']}", form_fields(stub, request))
    assert response.status_code == 200, response.text[-2000:]
    page = response.text
    assert case["expect_outcome"] in _section(page, "outcome-code")
    if "expect_amount_pence" in case:
        assert pounds(case["expect_amount_pence"]) in _section(page, "amount")
    explanations = {e["audience"]: e for e in case["expected"]["explanations"]}
    for audience, element in (("RECEIVING_PARENT", "view-receiving-parent"), ("PAYING_PARENT", "view-paying-parent")):
        expected = explanations[audience]
        if expected.get("notify", True):
            assert _section(page, f"{element}-text") == expected["text"]
        else:
            assert "Send this parent nothing yet" in _section(page, element)
        if expected["withheld"]:
            assert f'id="{element}-withheld"' in page
    assert re.search(r'<a class="govuk-link" id="decision-id" href="/decisions/[0-9a-f]+">', page)
    assert case["expected"]["rationale"].splitlines()[0] in _section(page, "rationale")
    for step in case["expected"]["trail"]:
        assert step["rule_id"] in _section(page, "trail")
    if "expect_items" in case:
        items = _section(page, "items")
        assert all(verdict in items for verdict in case["expect_items"])
    assert_no_fact_in_a_url(response, request["facts"])


def test_undetermined_shows_the_next_questions_in_order(console, stub):
    case = _case("abuse_evidence/2013/14-undetermined-no-decision-date.yaml")
    assert case["expect_outcome"] == "UNDETERMINED"
    request = case["request"]
    response = _post(console, f"/try/{request['policy']}/{request['version']}", form_fields(stub, request))
    assert response.status_code == 200
    questions = _section(response.text, "next-questions")
    missing = case["expected"]["missing_facts"]
    assert missing
    positions = [questions.index(m["question"]) for m in missing]
    assert positions == sorted(positions)


def test_an_unreadable_answer_is_refused_at_its_field_without_a_call(console, stub, monkeypatch):
    calls = []
    real = console.app.state.client.decide
    monkeypatch.setattr(console.app.state.client, "decide", lambda *a: calls.append(a) or real(*a))
    case = _case("application_fee/2017/60-audience-applicant-is-receiving-parent.yaml")
    fields = form_fields(stub, case["request"])
    fields.update({"facts-application_date-day": "31", "facts-application_date-month": "2"})
    response = _post(console, "/try/application_fee/2017", fields)
    assert response.status_code == 400
    assert response.text.count('class="govuk-error-summary"') == 1
    assert '<a href="#facts-application_date-day">' in response.text
    assert "must be a real date" in _section(response.text, "facts-application_date-error")
    assert "<title>Error: Try a case" in response.text
    assert 'value="31"' in response.text and 'value="direct_pay" checked' in response.text  # the answers are kept
    money = _post(console, "/try/maintenance_calculation/2012", {"facts-gross_weekly_income": "abc"})
    assert money.status_code == 400
    assert "in pounds" in _section(money.text, "facts-gross_weekly_income-error")
    assert '<a href="#facts-gross_weekly_income">' in money.text
    assert not calls
    assert_no_fact_in_a_url(response, case["request"]["facts"])


def test_the_services_invalid_argument_is_shown_at_its_field(console, monkeypatch):
    def refuse(*_):
        raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, "bad facts", {
            "facts.decision_date": "expected a date as YYYY-MM-DD",
            "facts.evidence_items[0].type": "expected one of: conviction, …"})
    monkeypatch.setattr(console.app.state.client, "decide", refuse)
    response = _post(console, "/try/abuse_evidence/2013", {"facts-decision_date-day": "1", "facts-decision_date-month": "6",
                                                           "facts-decision_date-year": "2017", "count-evidence_items": "1",
                                                           "facts-evidence_items-0-type": "conviction"})
    assert response.status_code == 400
    assert '<a href="#facts-decision_date-day">' in response.text
    assert '<a href="#facts-evidence_items-0-type">' in response.text
    assert "expected a date as YYYY-MM-DD" in _section(response.text, "facts-decision_date-error")
    assert "expected one of" in _section(response.text, "facts-evidence_items-0-type-error")


def test_add_another_item_draws_one_more_with_the_answers_kept(console):
    response = _post(console, "/try/abuse_evidence/2013", {
        "action": "add-evidence_items", "count-evidence_items": "1", "facts-evidence_items-0-type": "conviction",
        "facts-evidence_items-0-document_date-day": "3", "facts-evidence_items-0-document_date-month": "4",
        "facts-evidence_items-0-document_date-year": "2016"})
    assert response.status_code == 200 and "govuk-error-summary" not in response.text
    assert 'id="facts-evidence_items-1-type"' in response.text and 'id="facts-evidence_items-2-type"' not in response.text
    assert '<option value="conviction" selected>' in response.text
    assert 'id="facts-evidence_items-0-document_date-year" name="facts-evidence_items-0-document_date-year" type="text" inputmode="numeric" autocomplete="off" value="2016"' in response.text
    assert 'name="count-evidence_items" value="2"' in response.text


def test_a_shadow_version_that_disagrees_is_marked_where_it_differs(console, stub):
    case = _case("application_fee/2017/01-standard-fee.yaml")
    assert case["expect_outcome"] == "FEE_PAYABLE"
    fields = form_fields(stub, case["request"])
    response = _post(console, "/try/application_fee/2017", {**fields, "shadow_version": "2024"})
    assert response.status_code == 200
    page = response.text
    assert "Disagrees" in _section(page, "shadow-agrees")
    outcome_row = re.search(r'<tr class="([^"]*)" id="shadow-outcome">', page)
    assert outcome_row and "console-changed" in outcome_row.group(1)
    row = _section(page, "shadow-outcome")
    assert "FEE_PAYABLE" in row and "NO_FEE" in row and "Differs" in row
    assert "Differs" in _section(page, "shadow-amount")  # a fee under 2017, none under 2024
    assert "Same" in _section(page, "shadow-outputs") and "Differs" not in _section(page, "shadow-outputs")
    assert "Differs" in _section(page, "shadow-rules")
    # the same case under a version that agrees marks nothing
    same = _post(console, "/try/application_fee/2017", {**fields, "shadow_version": "2014"}).text
    if "Agrees" in _section(same, "shadow-agrees"):
        assert "Differs" not in _section(same, "shadow-outcome")


def test_the_golden_download_round_trips_through_the_golden_loader(console, stub, evaluator, tmp_path):
    case = _case("service_type/da-act-2023/06-relevant-abuse-unspent-conviction.yaml")
    request = case["request"]
    result = _post(console, f"/try/{request['policy']}/{request['version']}", form_fields(stub, request))
    assert result.status_code == 200
    form = _section(result.text, "save-golden")
    fields: list[tuple[str, str]] = [(html.unescape(n), html.unescape(v))
                                     for n, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form)]
    assert ("expect_outcome", case["expect_outcome"]) in fields
    saved = console.post(f"/try/{request['policy']}/{request['version']}/golden",
                         data=_as_data([*fields, ("description", "Relevant abuse, proved by an unspent conviction.")]))
    assert saved.status_code == 200
    assert saved.headers["content-disposition"] == 'attachment; filename="service_type-da-act-2023-case.yaml"'
    assert_no_fact_in_a_url(saved, request["facts"])
    text = saved.text
    assert text.startswith("#") and "from the law" in text and "--update" in text
    data = yaml.safe_load(text)
    assert data["expect_outcome"] == case["expect_outcome"]
    assert data["description"] == "Relevant abuse, proved by an unspent conviction."
    assert data["request"] == {k: v for k, v in request.items() if k != "counterfactuals"}
    assert "expected" not in data
    path = tmp_path / request["policy"] / request["version"] / "90-from-the-console.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    checked = goldens.check(evaluator, path)
    assert not checked.failures, checked.failures
    assert not checked.has_expected and checked.actual is not None
    assert checked.actual["outcome"] == case["expect_outcome"]


def test_the_golden_download_keeps_who_asked_and_why_in_the_golden_spelling(console, stub):
    case = _case("application_fee/2017/60-audience-applicant-is-receiving-parent.yaml")
    request = case["request"]
    result = _post(console, "/try/application_fee/2017", form_fields(stub, request))
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', _section(result.text, "save-golden"))
    saved = console.post("/try/application_fee/2017/golden", data=_as_data([(html.unescape(n), html.unescape(v)) for n, v in fields]))
    data = yaml.safe_load(saved.text)
    assert data["request"] == request  # subject, requested_by, reason and an enum list included
    assert data["expect_outcome"] == case["expect_outcome"]


def test_a_post_without_csrf_is_refused(console):
    console.get("/try/application_fee/2024")  # the session has a token; these posts do not carry it
    assert console.post("/try/application_fee/2024", data={"facts-application_route": "direct_pay"}).status_code == 403
    assert console.post("/try/application_fee/2024/golden", data={"expect_outcome": "NO_FEE"}).status_code == 403


def test_change_the_answers_posts_them_back_to_the_form_without_deciding(console, stub, monkeypatch):
    case = _case("maintenance_calculation/2012/02-one-child-income-7-flat.yaml")
    result = _post(console, "/try/maintenance_calculation/2012", form_fields(stub, case["request"]))
    form = _section(result.text, "change-answers")
    pairs = [(html.unescape(n), html.unescape(v)) for n, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form)]
    monkeypatch.setattr(console.app.state.client, "decide", lambda *a: pytest.fail("decided"))
    again = console.post("/try/maintenance_calculation/2012", data=_as_data([*pairs, ("action", "edit")]))
    assert again.status_code == 200 and 'id="decide"' in again.text
    assert 'id="facts-gross_weekly_income" name="facts-gross_weekly_income" type="text" autocomplete="off" spellcheck="false" value="7.00"' in again.text
    assert_no_fact_in_a_url(again, case["request"]["facts"])


@pytest.mark.parametrize("version_dir", sorted(str(d.relative_to(GOLDEN)) for d in GOLDEN.glob("*/*") if d.is_dir()))
def test_the_form_reads_back_every_golden_cases_facts_exactly(console, stub, version_dir):
    """Every golden case's facts, as form fields, read back to the same facts (dates, pence, enum
    lists, empty lists, items) without a call; facts the version does not ask are the golden's own
    tests of ignored facts, and are left out."""
    policy, version = version_dir.split("/")
    schema = load_version(console.app.state.client, None, policy, version).schema
    asked = {q.name for q in schema.facts} | {lst.name for lst in schema.lists}
    item_facts = {lst.name: {q.name for q in lst.facts} for lst in schema.lists}
    for path in sorted((GOLDEN / version_dir).glob("*.yaml")):
        request = {**goldens.read(path)["request"], "version": version}
        facts = {k: [{f: x for f, x in item.items() if f in item_facts[k]} for item in v] if k in item_facts else v
                 for k, v in request.get("facts", {}).items() if k in asked and v is not None}
        fields = form_fields(stub, {**request, "facts": facts})
        answers = factform.read(FormData([(k, v) for k, vs in fields.items() for v in (vs if isinstance(vs, list) else [vs])]), schema)
        assert not answers.errors, f"{path.name}: {answers.errors}"
        expected = {k: [{f: x for f, x in item.items() if x is not None} for item in v] if isinstance(v, list) and v and isinstance(v[0], dict) else v
                    for k, v in facts.items()}
        assert answers.facts == expected, path.name


def test_a_used_policy_the_account_may_not_read_is_said_not_asked(console, monkeypatch):
    real = console.app.state.client.get_policy

    def get_policy(who, policy, version="", markdown=False):
        if policy == "abuse_evidence":
            raise ServiceError(grpc.StatusCode.PERMISSION_DENIED, "not for this account")
        return real(who, policy, version, markdown)
    monkeypatch.setattr(console.app.state.client, "get_policy", get_policy)
    page = console.get("/try/service_type/da-act-2023")
    assert page.status_code == 200
    assert "may not read" in _section(page.text, "unreadable-abuse_evidence")
    assert 'id="facts-evidence_items-0-type"' not in page.text and 'id="facts-decision_date-day"' in page.text
    assert console.get("/try/abuse_evidence/2018").status_code == 403  # its own form is the service's refusal


@pytest.mark.parametrize(("fields", "anchor"), [
    ({"facts-application_date-day": "²", "facts-application_date-month": "3", "facts-application_date-year": "2024"}, "facts-application_date-day"),
    ({"facts-application_date-day": "1", "facts-application_date-month": "3", "facts-application_date-year": "24"}, "facts-application_date-day"),
    ({"facts-application_date-day": "1", "facts-application_date-month": "", "facts-application_date-year": "2024"}, "facts-application_date-month"),
    ({"facts-application_route": "by_pigeon"}, "facts-application_route"),
    ({"facts-applicant_in_northern_ireland": "maybe"}, "facts-applicant_in_northern_ireland"),
])
def test_answers_the_form_cannot_read_are_refused_at_their_field(console, fields, anchor):
    response = _post(console, "/try/application_fee/2024", fields)
    assert response.status_code == 400
    assert f'<a href="#{anchor}">' in response.text


@pytest.mark.parametrize(("text", "pence"), [("250", 25000), ("£1,234.50", 123450), ("0.5", 50), ("7", 700)])
def test_money_in_pounds_is_whole_pence(text, pence):
    schema = factform.Schema((factform.Group("", "", (factform.Question("income", "money", "Income?", ""),), ()),))
    assert factform.read(FormData([("facts-income", text)]), schema).facts == {"income": pence}
    assert factform.read(FormData([("facts-income", "12.345")]), schema).errors
    assert factform.read(FormData([("facts-income", "١٢")]), schema).errors  # ASCII digits only


def test_remove_takes_out_one_item_and_moves_the_later_ones_up(console):
    response = _post(console, "/try/maintenance_calculation/2012", {
        "action": "remove-qualifying_children-1", "count-qualifying_children": "3", "facts-gross_weekly_income": "300",
        "facts-qualifying_children-0-shared_care_nights": "10", "facts-qualifying_children-1-shared_care_nights": "20",
        "facts-qualifying_children-2-shared_care_nights": "30"})
    assert response.status_code == 200 and "govuk-error-summary" not in response.text
    assert 'name="count-qualifying_children" value="2"' in response.text
    values = re.findall(r'name="facts-qualifying_children-(\d)-shared_care_nights" type="text" autocomplete="off" spellcheck="false" value="(\d*)"', response.text)
    assert values == [("0", "10"), ("1", "30")]
    assert 'value="300"' in response.text
