"""No sensitive fact reaches a URL, a page title, a download's name or a log line: a case with
sentinel values of sensitive facts (evidence of abuse, whom it was towards, why the decision was
asked for) is tried, inspected, replayed, asked "what would change it" and saved as a golden case,
and every address, redirect, title and log record along the way is searched for them."""
from __future__ import annotations

import copy
import html
import json
import logging
import re

from cms_policy.v1 import policy_pb2_grpc
from rules.authoring import goldens
from tests.consoletools import GOLDEN, csrf
from tests.test_console_try import form_fields

CASE = GOLDEN / "service_type" / "da-act-2023" / "06-relevant-abuse-unspent-conviction.yaml"
# Values that appear nowhere in the console but in this case's facts: a document's date, the kind
# of evidence, whom the abuse was towards, and why the decision was asked for.
SENTINELS = ("2023-02-17", "17 February 2023", "conviction", "disclosing_parent", "MANDATORY_RECONSIDERATION")
_ADDRESS = re.compile(r'\b(?:href|action|src)="([^"]*)"')
_TITLE = re.compile(r"<title>(.*?)</title>", re.S)


def _request() -> dict:
    request = copy.deepcopy(goldens.read(CASE)["request"])
    request["facts"]["evidence_items"][0]["document_date"] = "2023-02-17"
    request.update(requested_by="RECEIVING_PARENT", reason="MANDATORY_RECONSIDERATION", subject="RECEIVING_PARENT")
    return request


def _public(response) -> list[str]:
    """What of a response may travel or be kept outside its body: addresses, redirect, title, file name."""
    text = response.text if response.headers.get("content-type", "").startswith("text/html") else ""
    return [*map(html.unescape, _ADDRESS.findall(text)), *map(html.unescape, _TITLE.findall(text)),
            response.headers.get("location", ""), response.headers.get("content-disposition", "")]


def test_sensitive_facts_reach_no_url_title_file_name_or_log(console, console_service, caplog):
    stub = policy_pb2_grpc.PolicyDecisionServiceStub(console_service[1])
    request = _request()
    fields = form_fields(stub, request)
    path = f"/try/{request['policy']}/{request['version']}"
    seen = []
    with caplog.at_level(logging.DEBUG):
        form = console.get(path)
        decided = console.post(path, data={"csrf_token": csrf(form.text), "action": "decide", **fields})
        assert decided.status_code == 200 and "COLLECT_AND_PAY" in decided.text
        decision_id = re.search(r'id="decision-id" href="/decisions/([0-9a-f]{32})"', decided.text)[1]
        token = csrf(decided.text)
        golden_form = decided.text.split('id="save-golden"', 1)[1].split("</form>", 1)[0]
        golden_fields: dict[str, list[str]] = {}
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', golden_form):
            golden_fields.setdefault(name, []).append(html.unescape(value))
        saved = console.post(f"{path}/golden", data=golden_fields)
        assert saved.status_code == 200 and "2023-02-17" in saved.text  # the file holds them, its name does not
        page = console.get(f"/decisions/{decision_id}")
        assert page.status_code == 200 and "2023-02-17" in page.text  # shown to the reviewer, in the body
        replayed = console.post(f"/decisions/{decision_id}/replay", data={"csrf_token": token})
        what_if = console.post(f"/decisions/{decision_id}/what-if", data={"csrf_token": token})
        seen = [form, decided, saved, page, replayed, what_if]
    assert all(r.status_code == 200 for r in seen), [r.status_code for r in seen]
    for response in seen:
        for public in _public(response):
            assert not any(s in public for s in SENTINELS), f"{response.request.url}: {public!r}"
    logged = [json.dumps({"message": r.getMessage(), **getattr(r, "fields", {})}, default=str) for r in caplog.records]
    assert any('"path": "/decisions/' in line for line in logged)  # the access log was captured
    for line in logged:
        assert not any(s in line for s in SENTINELS), line


def test_the_search_finds_a_sentinel_where_one_is_put():
    """The check above can fail: a title or address holding a sentinel is caught."""
    from types import SimpleNamespace

    reply = SimpleNamespace(headers={"content-type": "text/html", "location": "/try?d=2023-02-17"},
                            text='<title>Decision 2023-02-17</title><a href="/x?reason=MANDATORY_RECONSIDERATION">')
    public = _public(reply)
    assert sum(any(s in p for s in SENTINELS) for p in public) == 3
