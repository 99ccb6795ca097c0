"""Logs, metrics and deadlines of the running service (`python -m service --log-format json
--metrics-port N`).

The leak test replays every golden case through the real service, with GetDecision and
ReplayDecision on some and bad requests carrying made-up personal data, then reads the service's
whole log: every line must be one JSON object, every decision line must carry its fields, and
no value of a golden case's facts that could identify or describe a person may appear anywhere
in the log, nor in the bytes of the (encrypted) decision log on disk.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import shutil
import sqlite3
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2
from prometheus_client.parser import text_string_to_metric_families

from cms_policy.v1 import policy_pb2 as pb
from cms_policy.v1 import policy_pb2_grpc
from rules.audit.factory import open_log
from rules.authoring import goldens
from rules.engine.loader import DEFAULT_POLICY_DIR
from rules.explain.explainer import format_value
from rules.language.model import FactType
from service import convert
from service import server as server_module
from service.observability import JsonFormatter, Metrics, TextFormatter, log_fields, resolve_format
from service.reload import LiveBundle

from .conftest import ROOT, _free_port, start_service, stop_service, wire_enums

GOLDEN = ROOT / "tests" / "golden"
CASES = sorted(GOLDEN.glob("*/*/*.yaml"))
DECIDE = "cms.policy.v1.PolicyDecisionService/Decide"
FEE_FACTS = {"application_route": "direct_pay", "applicant_in_northern_ireland": False,
             "application_date": "2019-03-15", "applicant_date_of_birth": "1985-07-20",
             "abuse_of_applicant": True, "abuse_reported_to": ["police"], "declaration": "at_application"}
# A slow decision: counterfactuals for four children re-decide the case many times (a few hundred ms).
SLOW_FACTS = {"gross_weekly_income": 45000, "relevant_other_children": 2, "receives_prescribed_benefit": False,
              "paying_parent_is_prisoner": False, "nil_rate_category": "none",
              "qualifying_children": [{"shared_care_nights": n} for n in (0, 52, 104, 156)]}
# Made-up personal data sent in bad requests: none of it may reach a log.
CANARIES = ("Jane Roe", "Acacia Avenue", "canary")


def _message(req: dict, **kw) -> pb.DecideRequest:
    facts = struct_pb2.Struct()
    facts.update(req.get("facts", {}))
    return pb.DecideRequest(policy=req["policy"], version=str(req.get("version", "")), as_at=str(req.get("as_at", "")),
                            facts=facts, **wire_enums(req), **kw)


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()


# --- what counts as a sensitive value ------------------------------------------------------

def _schema(bundle, policy: str):
    """Every fact and item list a request for `policy` may carry (all its versions and the
    policies they use): {name: Fact}, {name: ItemList}."""
    facts, lists, todo, seen = {}, {}, [policy], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for compiled in bundle.versions(name):
            pv = compiled.version
            for f in pv.facts:
                facts.setdefault(f.name, f)
            for lst in pv.lists:
                lists.setdefault(lst.name, lst)
            todo += [u.policy for u in pv.uses]
    return facts, lists


def _vocabulary(bundle) -> set[str]:
    """Names the logs rightly carry: policies, versions, facts and lists."""
    names = set(bundle.policies)
    for policy in bundle.policies:
        for compiled in bundle.versions(policy):
            pv = compiled.version
            names |= {pv.version} | {f.name for f in pv.facts} | {lst.name for lst in pv.lists}
            names |= {f.name for lst in pv.lists for f in lst.facts}
    return names


def _sensitive_values(bundle, request: dict) -> tuple[set[str], set[str], set[str]]:
    """What a log must never show of this request, as (texts, codes, phrases):

    - texts: every date of every fact (top level or in a list item, sensitive or not: a date of
      birth or of a police caution is personal data), as sent (ISO) and as the engine writes it
      ("2 November 2023"); and every free-text (string) fact of four characters or more;
    - codes: the values of sensitive enum and enum-list facts (`police`, `marac_letter`,
      `collect_and_pay`), matched case-sensitively as whole identifiers, and who asked
      (`requested_by`);
    - phrases: the same values as texts read them (`collect and pay`, or their labels, such as
      "letter from a MARAC"), matched case-insensitively as whole words.

    Left out, and why: booleans (a `true` proves nothing); numbers (the sensitive ones are small
    counts, such as caseworkers told or months an organisation has operated, that any log line's
    timings or counts may contain by chance — the test checks that this stays so); codes shorter
    than four characters; and codes that are also the name of a policy, version, fact or list,
    which a log may rightly name.
    """
    facts, lists = _schema(bundle, request["policy"])
    vocabulary = _vocabulary(bundle)
    texts, codes, phrases = set(), set(), set()

    def take(spec, value, sensitive: bool) -> None:
        if value is None or isinstance(value, bool):
            return
        if spec.type is FactType.DATE:
            day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
            texts.update({day.isoformat(), format_value(FactType.DATE, day)})
        elif spec.type is FactType.STRING and len(str(value)) >= 4:
            texts.add(str(value))
        elif spec.type in (FactType.ENUM, FactType.ENUM_LIST) and sensitive:
            for code in value if isinstance(value, list) else [value]:
                if len(code) >= 4 and code not in vocabulary:
                    codes.add(code)
                    phrases.add(code.replace("_", " "))
                if code in spec.labels:
                    phrases.add(spec.labels[code])
        elif spec.type in (FactType.INTEGER, FactType.MONEY) and sensitive:
            assert abs(value) < 1000, f"a large sensitive number ({spec.name}): scan numbers too"

    for name, value in request.get("facts", {}).items():
        if name in facts:
            take(facts[name], value, facts[name].sensitive)
        elif name in lists and isinstance(value, list):
            lst = lists[name]
            item_facts = {f.name: f for f in lst.facts}
            for item in value:
                for key, v in (item or {}).items():
                    if key in item_facts:
                        take(item_facts[key], v, lst.sensitive or item_facts[key].sensitive)
    if request.get("requested_by"):
        codes.add(str(request["requested_by"]))
    return texts, codes, phrases


def _records(log_text: str) -> tuple[list[dict], list[str]]:
    """Every line of the service's output as JSON, but the one line the service prints on
    standard output to say where it listens (not a log record)."""
    records, other = [], []
    for line in log_text.splitlines():
        if re.fullmatch(r"listening on \S+", line):
            other.append(line)
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"a log line is not JSON: {line!r}") from None
        assert isinstance(record, dict), line
        records.append(record)
    return records, other


# --- the leak test ---------------------------------------------------------------------------

def test_logs_of_a_full_golden_run_are_json_and_carry_no_sensitive_value(tmp_path, bundle):
    proc, channel, log_path = start_service(tmp_path, "--log-format", "json", "--no-watch")
    stub = policy_pb2_grpc.PolicyDecisionServiceStub(channel)
    cases = [(path, goldens.read(path)["request"]) for path in CASES]
    # Counterfactuals quote facts in their texts: asked for everywhere except most of the slow
    # maintenance calculations (whose facts are not sensitive).
    slow = {"maintenance_calculation", "prisoner_liability"}

    def decide(numbered):
        n, (path, req) = numbered
        omit = req["policy"] in slow and n % 5 != 0
        return path, req, stub.Decide(_message(req, include_counterfactuals=not omit), timeout=60)

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            decided = list(pool.map(decide, enumerate(cases)))
        first_of_each_version = {}
        for path, _, decision in decided:
            first_of_each_version.setdefault(path.parent, decision)
        for decision in first_of_each_version.values():
            assert stub.GetDecision(pb.GetDecisionRequest(decision_id=decision.decision_id)).decision == decision
            assert stub.ReplayDecision(pb.ReplayDecisionRequest(decision_id=decision.decision_id)).identical

        bad = [
            lambda: stub.Decide(_message({"policy": "canary Jane Roe", "facts": {"x": 1}})),
            lambda: stub.Decide(_message({"policy": "application_fee", "version": "2017", "facts": {
                **FEE_FACTS, "Jane Roe of 12 Acacia Avenue": "canary", "applicant_date_of_birth": "20/07/1985 canary",
                "application_route": "Jane Roe canary", "evidence_items": [{"type": "canary"}]}})),
            lambda: stub.Decide(_message({"policy": "application_fee", "facts": FEE_FACTS},
                                         shadow_version="canary Jane Roe")),
            lambda: stub.GetDecision(pb.GetDecisionRequest(decision_id="canary Jane Roe")),
            lambda: stub.ReplayDecision(pb.ReplayDecisionRequest(decision_id="0" * 32)),
        ]
        codes = [_code(call) for call in bad]
        assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * 3 + [grpc.StatusCode.NOT_FOUND] * 2
    finally:
        stop_service(proc, channel)

    log_text = log_path.read_text()
    records, _ = _records(log_text)
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"]), record
    lines = [r for r in records if r["message"] == "decision"]
    assert len(lines) == len(decided)
    by_id = {r["decision_id"]: r for r in lines}
    for _, _, decision in decided:
        line = by_id[decision.decision_id]
        assert (line["policy"], line["version"], line["bundle"]) == (
            decision.policy.policy, decision.policy.version, decision.bundle_hash[:12])
        assert "outcome" not in line and "shadow_outcome" not in line  # beside the id, it tells the case's story
        assert line["level"] == "INFO" and line["logger"] == "cms_policy.service" and line["rpc"] == "Decide"
        assert isinstance(line["latency_ms"], float) and 0 <= line["record_ms"] <= line["latency_ms"]
    rejected = [r for r in records if r["message"] == "decision rejected"]
    assert [r["policy"] for r in rejected] == ["unknown", "application_fee", "application_fee"]
    assert "facts.?" in rejected[1]["fields"] and "facts.applicant_date_of_birth" in rejected[1]["fields"]
    failed = [(r["rpc"], r["code"]) for r in records if r["message"] == "rpc failed"]
    assert failed == [("Decide", "INVALID_ARGUMENT")] * 3 + [("GetDecision", "NOT_FOUND"), ("ReplayDecision", "NOT_FOUND")]
    assert sum(r["message"] == "replay" and r["identical"] for r in records) == len(first_of_each_version)

    # What is scanned: every record without its own time stamp (today's date is not a fact).
    scanned = "\n".join(json.dumps({k: v for k, v in r.items() if k != "time"}, ensure_ascii=False) for r in records)
    for canary in CANARIES:
        assert canary.lower() not in scanned.lower(), f"the made-up {canary!r} of a bad request reached the log"
    texts, codes, phrases = set(), set(), set()
    for _, req, _ in decided:
        t, c, p = _sensitive_values(bundle, req)
        texts |= t
        codes |= c
        phrases |= p
    assert len(texts) > 50 and "police" in codes and "letter from a MARAC" in phrases  # the scan has teeth
    for text in texts:
        assert text not in scanned, f"{text!r} (a fact of a golden case) is in the service's log"
    for code in codes:
        found = re.search(rf"(?<![A-Za-z0-9_]){re.escape(code)}(?![A-Za-z0-9_])", scanned)
        assert found is None, f"{code!r} (a sensitive fact of a golden case) is in the service's log"
    for phrase in phrases:
        found = re.search(rf"\b{re.escape(phrase)}\b", scanned, re.I)
        assert found is None, f"{phrase!r} (a sensitive fact of a golden case) is in the service's log"
    outcomes = {decision.outcome for _, _, decision in decided}
    assert {"WAIVED", "EMERGENCY_ESCALATION"} <= outcomes  # the scan has teeth
    for outcome in outcomes:
        found = re.search(rf"(?<![A-Za-z0-9_]){re.escape(outcome)}(?![A-Za-z0-9_])", scanned)
        assert found is None, f"the outcome {outcome!r} is in the service's log"
    # Nor any explanation text: the trail's because-texts and the rationale quote the facts.
    for _, _, decision in decided:
        quoted = [s.because for s in decision.trail] + decision.rationale.splitlines()
        for text in quoted:
            if len(text) >= 30:
                assert text not in log_text, f"an explanation text is in the service's log: {text!r}"

    # The decision log on disk: the sealed documents hold the facts, encrypted.
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir()
                      if p.name.startswith("decisions.sqlite3") and not p.name.endswith(".key"))
    assert b"application_fee" in stored  # the clear columns: we read the data
    for value in sorted(texts | codes | phrases | outcomes) + list(CANARIES):
        assert value.encode() not in stored, f"{value!r} is stored in the clear in the decision log"


# --- metrics and deadlines -----------------------------------------------------------------

class Running:
    def __init__(self, tmp_path: Path):
        self.policies = tmp_path / "policies"
        shutil.copytree(DEFAULT_POLICY_DIR, self.policies)
        self.metrics_port = _free_port()
        self.proc, self.channel, self.log_path = start_service(
            tmp_path, "--log-format", "json", "--no-watch", "--policies", str(self.policies),
            "--metrics-port", str(self.metrics_port))
        self.db = tmp_path / "decisions.sqlite3"
        self.stub = policy_pb2_grpc.PolicyDecisionServiceStub(self.channel)
        self.admin = policy_pb2_grpc.PolicyAdminServiceStub(self.channel)

    def scrape(self) -> dict[tuple[str, frozenset], float]:
        """Every sample of /metrics: {(name, labels): value}."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def rows(self) -> int:
        """Decisions in the decision log (its clear columns need no key)."""
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return db.execute("SELECT count(*) FROM decisions").fetchone()[0]
        finally:
            db.close()

    def records(self) -> list[dict]:
        return _records(self.log_path.read_text())[0]


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    service = Running(tmp_path_factory.mktemp("observed"))
    yield service
    stop_service(service.proc, service.channel)


def _value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _series(samples: dict, name: str) -> list[dict]:
    return [dict(labels) for (n, labels) in samples if n == name]


def test_metrics_count_decisions_latency_errors_and_reloads(running, bundle):
    before = running.scrape()
    fee = _message({"policy": "application_fee", "version": "2017", "facts": FEE_FACTS})
    for _ in range(2):
        assert running.stub.Decide(fee).outcome == "WAIVED"
    assert _code(lambda: running.stub.Decide(_message({"policy": "application_fee", "version": "2017",
                                                         "facts": {"no_such_fact": True}}))) == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: running.stub.Decide(_message({"policy": "canary Jane Roe"}))) == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: running.stub.GetDecision(pb.GetDecisionRequest(decision_id="0" * 32))) == grpc.StatusCode.NOT_FOUND

    served = running.stub.ListPolicies(pb.ListPoliciesRequest()).bundle_hash
    assert not running.admin.ReloadPolicies(pb.ReloadPoliciesRequest()).changed
    fee_file = running.policies / "application_fee" / "2017.yaml"
    original = fee_file.read_text()
    try:
        fee_file.write_text(original.replace("value: 2000", "value: 2500", 1))
        reloaded = running.admin.ReloadPolicies(pb.ReloadPoliciesRequest())
        assert reloaded.changed and reloaded.previous_bundle_hash == served
        fee_file.write_text(original.replace("outcome: WAIVED", "outcome: NO_SUCH_OUTCOME", 1))
        assert _code(lambda: running.admin.ReloadPolicies(pb.ReloadPoliciesRequest())) == \
            grpc.StatusCode.FAILED_PRECONDITION
    finally:
        fee_file.write_text(original)
    after = running.scrape()

    def moved(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert moved("cms_policy_decisions_total", policy="application_fee", version="2017", outcome="WAIVED") == 2
    assert moved("cms_policy_decision_seconds_count", policy="application_fee") == 2
    assert moved("cms_policy_decision_seconds_bucket", policy="application_fee", le="+Inf") == 2
    assert moved("cms_policy_decision_seconds_bucket", policy="application_fee", le="0.2") == 2  # ~ms each
    assert moved("cms_policy_decision_log_record_seconds_count") == 2
    assert moved("cms_policy_rpc_errors_total", method=DECIDE, code="INVALID_ARGUMENT") == 2
    assert moved("cms_policy_rpc_errors_total", method="cms.policy.v1.PolicyDecisionService/GetDecision",
                 code="NOT_FOUND") == 1
    assert moved("cms_policy_rpc_errors_total", method="cms.policy.v1.PolicyAdminService/ReloadPolicies",
                 code="FAILED_PRECONDITION") == 1
    assert [moved("cms_policy_reloads_total", result=r) for r in ("unchanged", "changed", "refused")] == [1, 1, 1]
    assert _series(after, "cms_policy_bundle_info") == [{"bundle_hash": reloaded.bundle_hash}]
    assert _value(after, "cms_policy_bundle_info", bundle_hash=reloaded.bundle_hash) == 1
    assert _value(after, "cms_policy_versions_loaded") == reloaded.versions == 19
    assert ("process_cpu_seconds_total", frozenset()) in after

    # Labels are names from the policy files or fixed words, never what a client sent.
    policies = {labels["policy"] for name in ("cms_policy_decisions_total", "cms_policy_decision_seconds_count")
                for labels in _series(after, name)}
    assert policies <= set(bundle.policies) | {"unknown"}
    assert not [labels for (_, labels) in after if any("canary" in v.lower() for _, v in labels)]
    # The endpoint is on loopback unless told otherwise.
    assert any(r["message"].startswith("metrics on http://127.0.0.1:") for r in running.records())


def test_a_decision_past_its_deadline_is_given_up_and_not_recorded(running):
    slow = _message({"policy": "maintenance_calculation", "version": "2012", "facts": SLOW_FACTS},
                    include_counterfactuals=True)
    started = time.monotonic()
    full = running.stub.Decide(slow, timeout=60)
    took = time.monotonic() - started
    assert full.counterfactuals and took > 0.02, f"the slow decision took only {took:.3f}s"
    rows = running.rows()
    errors = running.scrape()

    for timeout in (0.001, min(0.02, took / 4)):
        assert _code(lambda: running.stub.Decide(slow, timeout=timeout)) == grpc.StatusCode.DEADLINE_EXCEEDED

    def abandoned():
        return [r for r in running.records() if r["message"] == "decision abandoned"]

    # Wait until the decisions under way have finished: the count of abandoned ones has settled.
    limit, seen, since = time.monotonic() + 30 + 4 * took, -1, time.monotonic()
    while time.monotonic() < limit:
        count = len(abandoned())
        if count != seen:
            seen, since = count, time.monotonic()
        elif count and time.monotonic() - since > 3 * took + 0.5:
            break
        time.sleep(0.05)
    given_up = abandoned()
    assert given_up, "the service never noticed the deadline"
    for record in given_up:
        assert record["stage"] in ("before_decide", "before_record") and record["code"] == "DEADLINE_EXCEEDED"
        assert record["policy"] == "maintenance_calculation"
    assert running.rows() == rows, "a decision past its deadline was recorded"
    after = running.scrape()
    assert sum(_value(after, "cms_policy_deadline_exceeded_total", stage=s) - _value(errors, "cms_policy_deadline_exceeded_total", stage=s)
               for s in ("before_decide", "before_record")) == len(given_up)
    assert _value(after, "cms_policy_rpc_errors_total", method=DECIDE, code="DEADLINE_EXCEEDED") - \
        _value(errors, "cms_policy_rpc_errors_total", method=DECIDE, code="DEADLINE_EXCEEDED") == len(given_up)

    # The service goes on, and a decision within its deadline is recorded and returned.
    again = running.stub.Decide(slow, timeout=60)
    assert again.outcome == full.outcome and running.rows() == rows + 1
    assert running.stub.GetDecision(pb.GetDecisionRequest(decision_id=again.decision_id)).decision == again
    assert running.proc.poll() is None


def test_text_logs_for_a_person_and_json_by_default_off_a_terminal(tmp_path):
    record = logging.LogRecord("cms_policy.service", logging.INFO, __file__, 1, "decision", (), None)
    record.__dict__.update(decision_id="ab" * 16, policy="application_fee", version="2017", latency_ms=12.345)
    with log_fields(rpc="Decide"):
        text = TextFormatter().format(record)
        data = json.loads(JsonFormatter().format(record))
    assert re.fullmatch(r"\S+Z INFO cms_policy\.service decision rpc=Decide decision_id=(ab){16} "
                        r"policy=application_fee version=2017 latency_ms=12\.35", text), text
    assert data["message"] == "decision" and data["rpc"] == "Decide" and data["latency_ms"] == 12.345
    assert resolve_format("auto", open(tmp_path / "file", "w")) == "json"


def test_an_exception_is_logged_by_type_and_frames_never_by_its_message():
    """durable_rules' errors quote the facts they were given; gRPC logs `str(exception)`."""
    def fail():
        try:
            raise KeyError("born 1985-07-20, reported to police")
        except KeyError:
            raise ValueError("Jane Roe at 12 Acacia Avenue") from None

    try:
        fail()
    except ValueError as exc:
        caught = sys.exc_info()
        record = logging.LogRecord("grpc._server", logging.ERROR, __file__, 1,
                                   f"Exception calling application: {exc}", (), caught)
        with_arg = logging.LogRecord("cms_policy.service", logging.ERROR, __file__, 1, "failed: %s", (exc,), None)
    for formatter in (JsonFormatter(), TextFormatter()):
        out = formatter.format(record) + formatter.format(with_arg)
        assert "Jane Roe" not in out and "Acacia" not in out and "1985" not in out, out
        assert "ValueError" in out and "in fail" in out
    data = json.loads(JsonFormatter().format(record))
    assert data["message"] == "Exception calling application: <ValueError>"
    assert data["exception"]["type"] == "ValueError" and data["exception"]["frames"][-1].endswith("in fail")


def test_an_unexpected_error_is_internal_and_neither_sent_nor_logged_with_its_text(bundle, tmp_path, monkeypatch):
    """gRPC would answer UNKNOWN with "Exception calling application: <its text>" and log the same."""
    def broken(decision):
        raise ValueError("Jane Roe of 12 Acacia Avenue, born 1985-07-20")

    monkeypatch.setattr(convert, "decision", broken)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    metrics = Metrics()
    log = open_log(tmp_path / "log.sqlite3", [b"k" * 32])
    server, port = server_module.build_server(LiveBundle(bundle), "127.0.0.1:0", decision_log=log, metrics=metrics)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = policy_pb2_grpc.PolicyDecisionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.Decide(_message({"policy": "application_fee", "version": "2017", "facts": FEE_FACTS}))
    finally:
        server.stop(None).wait()
        log.close()
        root.removeHandler(handler)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal error; it has been logged"
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    crashed = [r for r in records if r["message"] == "rpc crashed"]
    assert crashed and crashed[0]["exception"]["type"] == "ValueError" and crashed[0]["rpc"] == "Decide"
    for secret in ("Jane Roe", "Acacia", "1985"):
        assert secret not in stream.getvalue()
    assert metrics.registry.get_sample_value("cms_policy_rpc_errors_total", {"method": DECIDE, "code": "INTERNAL"}) == 1
