"""The running service (a real `python -m service` process): discovery by
reflection, health, errors as INVALID_ARGUMENT with field details, clean stop."""
from __future__ import annotations

import signal
import subprocess
import sys

import grpc
import pytest
from google.protobuf import descriptor_pool, struct_pb2
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_status import rpc_status

from cms_policy.v1 import policy_pb2 as pb

from .conftest import ROOT, _free_port

SERVICE = "cms.policy.v1.PolicyDecisionService"


def _facts(**kw) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(kw)
    return s


def _bad_request(call) -> dict[str, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    return {v.field: v.description for v in detail.field_violations}


def test_health_reports_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE):
        assert health.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING


def test_a_reflection_only_client_can_discover_and_decide(channel):
    db = ProtoReflectionDescriptorDatabase(channel)
    assert SERVICE in db.get_services() and "grpc.health.v1.Health" in db.get_services()
    pool = descriptor_pool.DescriptorPool(db)
    service = pool.FindServiceByName(SERVICE)
    method = service.methods_by_name["Decide"]
    request_cls, response_cls = GetMessageClass(method.input_type), GetMessageClass(method.output_type)
    request = request_cls(policy="application_fee", version="2014")
    request.facts.update({"application_route": "family_based"})
    decide = channel.unary_unary(f"/{SERVICE}/Decide", request_serializer=request_cls.SerializeToString,
                                 response_deserializer=response_cls.FromString)
    assert decide(request).outcome == "NOT_APPLICABLE"


def test_list_policies_shows_every_version(stub):
    response = stub.ListPolicies(pb.ListPoliciesRequest())
    fee = next(p for p in response.policies if p.policy == "application_fee")
    assert [(v.version, v.status, v.effective_from, v.effective_to) for v in fee.versions] == [
        ("2014", "enacted", "2014-06-30", "2017-07-31"), ("2017", "enacted", "2017-08-01", "2024-02-25"),
        ("2024", "enacted", "2024-02-26", ""), ("review-2023", "proposed", "", "")]
    assert all(len(v.content_hash) == 64 for v in fee.versions) and len(response.bundle_hash) == 64


def test_get_policy_describes_facts_rules_and_citations(stub):
    detail = stub.GetPolicy(pb.GetPolicyRequest(policy="application_fee", as_at="2020-01-01"))
    assert detail.ref.version == "2017"
    assert {f.name for f in detail.facts if f.sensitive} >= {"abuse_of_applicant", "abuse_reported_to"}
    under_19 = next(r for r in detail.rules if r.id == "waived.under-19")
    assert under_19.when == "application_date < applicant_date_of_birth + fee_waiver_age_years (19) years"
    assert under_19.citations[0].provision == "reg 4(2)"
    fee = next(p for p in detail.parameters if p.name == "application_fee_pence")
    assert fee.value.number_value == 2000 and fee.citations


def test_list_policies_shows_all_six_domains(stub):
    listed = {p.policy: [(v.version, v.status) for v in p.versions] for p in stub.ListPolicies(pb.ListPoliciesRequest()).policies}
    assert len(listed) == 6
    assert listed["abuse_evidence"] == [("2013", "enacted"), ("2014", "enacted"), ("2016", "enacted"), ("2018", "enacted")]
    assert listed["service_type"] == [("2012-pre-2014", "enacted"), ("2012", "enacted"), ("da-act-2023", "prospective"),
                                      ("reform-2025", "proposed"), ("review-2023", "proposed")]
    assert listed["maintenance_calculation"] == [("2012", "enacted")]
    assert listed["prisoner_liability"] == [("2012", "enacted"), ("review-2023", "proposed")]
    assert len(listed["caseworker_routing"]) == 3 and len(listed["application_fee"]) == 4


def test_get_policy_describes_lists_uses_and_arithmetic(stub):
    evidence = stub.GetPolicy(pb.GetPolicyRequest(policy="abuse_evidence", version="2016"))
    [items] = evidence.lists
    assert items.name == "evidence_items" and items.sensitive
    assert [c.code for c in items.outcomes] == ["ACCEPTED", "REJECTED", "REFER_TO_DECISION_MAKER"]
    assert items.rules[-1].id == "item.not-on-list" and not items.rules[-1].when
    review = stub.GetPolicy(pb.GetPolicyRequest(policy="service_type", version="review-2023"))
    assert [(u.policy, u.version, getattr(u, "as")) for u in review.uses] == [("abuse_evidence", "in_force", "evidence")]
    calc = stub.GetPolicy(pb.GetPolicyRequest(policy="maintenance_calculation", version="2012"))
    reduced = next(r for r in calc.rules if r.id == "amount.reduced")
    assert reduced.computes == "flat_rate + reduced_percent% of excess_income"
    table = next(p for p in calc.parameters if p.name == "reduced_rates")
    assert [v.string_value for v in table.value.list_value.values[1].list_value.values] == ["14.1", "21.2", "26.4"]


@pytest.mark.parametrize("request_kwargs, field, words", [
    (dict(policy=""), "policy", "required"),
    (dict(policy="nope"), "policy", "unknown policy"),
    (dict(policy="application_fee", version="1999"), "version", "unknown version"),
    (dict(policy="application_fee", as_at="2019-13-01"), "as_at", "YYYY-MM-DD"),
    (dict(policy="application_fee", as_at="2001-01-01"), "as_at", "no enacted version"),
    (dict(policy="application_fee", version="2014", facts=_facts(application_date=20160101)), "facts.application_date", "YYYY-MM-DD"),
    (dict(policy="application_fee", version="2014", facts=_facts(colour="red")), "facts.colour", "unknown fact"),
    (dict(policy="application_fee", version="2014", facts=_facts(declaration={"nested": [1, 2]})), "facts.declaration", "expected text"),
    (dict(policy="application_fee", version="2014", facts=_facts(application_route="x" * 5000)), "facts.application_route", "longer than"),
    (dict(policy="abuse_evidence", version="2018", facts=_facts(evidence_items=[{"type": "rumour"}])),
     "facts.evidence_items[0].type", "expected one of"),
    (dict(policy="service_type", version="review-2023", facts=_facts(evidence_items="a letter")),
     "facts.evidence_items", "expected a list of items"),
])
def test_bad_requests_get_invalid_argument_with_field_details(stub, request_kwargs, field, words):
    found = _bad_request(lambda: stub.Decide(pb.DecideRequest(**request_kwargs)))
    assert words in found[field]


def test_get_policy_renders_markdown_when_asked(stub):
    plain = stub.GetPolicy(pb.GetPolicyRequest(policy="application_fee", version="2017"))
    assert plain.markdown == ""
    doc = stub.GetPolicy(pb.GetPolicyRequest(policy="application_fee", version="2017", markdown=True)).markdown
    assert doc.startswith(f"# {plain.ref.title}")
    assert "## Parameters" in doc and "| `application_fee_pence` | £20.00 |" in doc
    assert "`waived.domestic-abuse`" in doc and "## Worked examples" in doc


def test_get_policy_errors_are_invalid_argument(stub):
    found = _bad_request(lambda: stub.GetPolicy(pb.GetPolicyRequest(policy="application_fee", version="x")))
    assert "unknown version" in found["version"]


def test_server_keeps_serving_after_bad_requests(stub):
    for _ in range(20):
        _bad_request(lambda: stub.Decide(pb.DecideRequest(policy="application_fee", facts=_facts(bogus=1))))
    ok = stub.Decide(pb.DecideRequest(policy="application_fee", version="2024", facts=_facts(
        application_route="direct_pay", applicant_in_northern_ireland=False)))
    assert ok.outcome == "NO_FEE" and ok.decision_id and ok.decided_at.seconds > 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_service_stops_cleanly_on_signal(sig, tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "service", "--port", str(port), "--host", "127.0.0.1",
                             "--decision-log", str(tmp_path / "log.sqlite3")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().startswith(f"listening on 127.0.0.1:{port}")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            health = health_pb2_grpc.HealthStub(ch)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_broken_policy_directory_refuses_to_start(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "v1.yaml").write_text("policy: demo\nversion: v1\n")
    result = subprocess.run([sys.executable, "-m", "service", "--port", "0", "--policies", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "v1.yaml:1: " in result.stderr


def test_concurrent_decisions_are_all_correct(stub):
    # durable_rules' C core is not thread-safe; the engine lock must make concurrent RPCs safe.
    from concurrent.futures import ThreadPoolExecutor
    cases = [({"application_route": "family_based"}, "NOT_APPLICABLE"),
             ({"application_route": "direct_pay", "applicant_in_northern_ireland": False}, "NO_FEE")]

    def call(i: int) -> bool:
        facts, expected = cases[i % 2]
        reply = stub.Decide(pb.DecideRequest(policy="application_fee", version="2024", facts=_facts(**facts)))
        return reply.outcome == expected

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert all(pool.map(call, range(800)))


def test_a_corrected_version_shows_its_revision_corrections_and_earlier_revisions(stub):
    detail = stub.GetPolicy(pb.GetPolicyRequest(policy="abuse_evidence", version="2016"))
    assert detail.ref.revision == 2 and [e.revision for e in detail.earlier_revisions] == [1]
    assert detail.earlier_revisions[0].content_hash != detail.ref.content_hash
    spent = next(c for c in detail.corrections if "unspent" in c.change)
    assert spent.revision == 2 and spent.citations[0].source.endswith("(SI 2016/516)")
    listed = stub.ListPolicies(pb.ListPoliciesRequest())
    versions = {(p.policy, v.version): v.revision for p in listed.policies for v in p.versions}
    assert versions[("abuse_evidence", "2016")] == 2


def test_a_port_in_use_is_a_clear_start_up_error(tmp_path):
    """Issue 27 item 8: a failed bind printed a traceback and exited 1."""
    import socket
    import subprocess
    import sys

    from .conftest import ROOT
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "service", "--port", str(port), "--host", "127.0.0.1", "--no-watch",
                               "--decision-log", str(tmp_path / "decisions.sqlite3")],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"error: cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr
