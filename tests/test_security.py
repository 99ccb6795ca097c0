"""Transport security and caller identity: TLS and mutual TLS from certificate files (the tests
make their own CAs), plaintext only on loopback unless --insecure-plaintext, and who may call what
(callers by client certificate or bearer token; an unauthorised client is refused)."""
from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from cms_policy.v1 import policy_pb2 as pb
from cms_policy.v1 import policy_pb2_grpc
from rules.audit.factory import open_log
from service import authz, tls
from service.reload import LiveBundle
from service.server import build_server

from .conftest import ROOT, start_service, stop_service
from .eventually import eventually

FEE_FACTS = {"application_route": "direct_pay", "applicant_in_northern_ireland": False,
             "application_date": "2019-03-15", "applicant_date_of_birth": "1985-07-20",
             "abuse_of_applicant": True, "abuse_reported_to": ["police"], "declaration": "at_application"}
FEE_TOKEN = "fee-portal-7c1e9a5b0d2f4e8a9b3c6d1e0f2a4b6c"
OPS_TOKEN = "operations-3d5f7a9c1e2b4d6f8a0c2e4f6b8d0a1c"
OTHER_TOKEN = "nobody-0000000000000000000000000000000000"


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _fee_request(policy: str = "application_fee") -> pb.DecideRequest:
    facts = struct_pb2.Struct()
    facts.update(FEE_FACTS)
    return pb.DecideRequest(policy=policy, as_at="2019-03-15", facts=facts)


# --- a test PKI ------------------------------------------------------------------------------

@dataclass
class Issued:
    key: bytes  # PEM
    cert: bytes  # PEM
    certificate: x509.Certificate
    private_key: object


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _issue(cn: str, issuer: Issued | None = None, *, dns=(), uris=(), ips=(), server=False,
           days: float = 1, key=None) -> Issued:
    """A certificate for `cn` signed by `issuer` (None: a self-signed CA)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer.certificate.subject if issuer else name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=2))
               .not_valid_after(now + dt.timedelta(days=days)))
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        names = ([x509.DNSName(d) for d in dns] + [x509.UniformResourceIdentifier(u) for u in uris]
                 + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips])
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(issuer.private_key if issuer else key, hashes.SHA256())
    return Issued(_pem_key(key), cert.public_bytes(serialization.Encoding.PEM), cert, key)


@dataclass
class Pki:
    directory: Path
    ca: Issued
    other_ca: Issued
    server: Issued
    case_management: Issued  # CN=case-management.cms.internal
    reviewer: Issued  # CN not listed; SAN URI spiffe://cms.internal/reviewers is
    stranger: Issued  # from the right CA, listed nowhere
    impostor: Issued  # CN=case-management.cms.internal, from another CA

    def file(self, name: str, data: bytes) -> Path:
        path = self.directory / name
        path.write_bytes(data)
        return path

    def tls_files(self) -> dict[str, Path]:
        return {"cert": self.file("server.pem", self.server.cert), "key": self.file("server.key", self.server.key),
                "client_ca": self.file("client-ca.pem", self.ca.cert)}

    def channel_credentials(self, client: Issued | None = None, token: str | None = None) -> grpc.ChannelCredentials:
        creds = grpc.ssl_channel_credentials(self.ca.cert, client.key if client else None,
                                             client.cert if client else None)
        if token is not None:  # how a real client sends a bearer token: `authorization: Bearer <token>`
            creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(token))
        return creds


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    ca = _issue("CMS test CA")
    other = _issue("Some other CA")
    return Pki(
        directory=tmp_path_factory.mktemp("pki"), ca=ca, other_ca=other,
        server=_issue("cms-policy.cms.internal", ca, dns=["localhost"], ips=["127.0.0.1"], server=True),
        case_management=_issue("case-management.cms.internal", ca),
        reviewer=_issue("reviewer workstation 17", ca, uris=["spiffe://cms.internal/reviewers"]),
        stranger=_issue("stranger.cms.internal", ca),
        impostor=_issue("case-management.cms.internal", other))


TOKEN_AUTHZ = f"""\
# callers of a TLS service (no client certificates): bearer tokens, kept as sha256 only
callers:
  fee-portal:
    token_sha256: [{_sha(FEE_TOKEN)}]
    allow:
      decide: [application_fee]
      get_policy: [application_fee]
  operations:
    token_sha256: {_sha(OPS_TOKEN)}
    allow:
      reload_policies: true
"""
CERT_AUTHZ = f"""\
callers:
  case-management:
    certificate: [case-management.cms.internal]
    allow:
      decide: ["*"]
      get_policy: ["*"]
      list_policies: true
  reviewers:
    certificate: spiffe://cms.internal/reviewers
    allow: {{get_decision: true, replay_decision: true}}
  fee-portal:
    token_sha256: [{_sha(FEE_TOKEN)}]
    allow:
      decide: [application_fee, child_benefit]
"""


def _authorisation(tmp_path: Path, text: str, client_certificates: bool) -> authz.Authorisation:
    path = tmp_path / "authz.yaml"
    path.write_text(text)
    return authz.load(path, client_certificates)


class Served:
    """A server in this process: TLS from `files`, optionally authorisation."""

    def __init__(self, bundle, workdir: Path, transport: tls.Transport, authorisation=None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = open_log(workdir / "decisions.sqlite3", [b"k" * 32])
        self.server, self.port = build_server(
            LiveBundle(bundle), "127.0.0.1:0", decision_log=self.log, credentials=transport.credentials,
            interceptors=[authz.AuthzInterceptor(authorisation)] if authorisation else ())
        self.channels: list[grpc.Channel] = []

    def channel(self, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
        target = f"127.0.0.1:{self.port}"
        channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
        self.channels.append(channel)
        return channel

    def stub(self, credentials=None) -> policy_pb2_grpc.PolicyDecisionServiceStub:
        return policy_pb2_grpc.PolicyDecisionServiceStub(self.channel(credentials))

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        self.server.stop(None).wait()
        self.log.close()


@pytest.fixture(scope="module")
def token_server(bundle, pki, tmp_path_factory):
    """TLS without client certificates; callers by bearer token."""
    workdir = tmp_path_factory.mktemp("token-server")
    files = pki.tls_files()
    served = Served(bundle, workdir, tls.configure("127.0.0.1", files["cert"], files["key"]),
                    _authorisation(workdir, TOKEN_AUTHZ, client_certificates=False))
    yield served
    served.close()


@pytest.fixture(scope="module")
def mtls_server(bundle, pki, tmp_path_factory):
    """Mutual TLS; callers by client certificate (or bearer token)."""
    workdir = tmp_path_factory.mktemp("mtls-server")
    files = pki.tls_files()
    served = Served(bundle, workdir, tls.configure("127.0.0.1", files["cert"], files["key"], files["client_ca"]),
                    _authorisation(workdir, CERT_AUTHZ, client_certificates=True))
    yield served
    served.close()


def _fields(record: logging.LogRecord) -> dict:
    """A refusal's log record as its message and fields (what the JSON log shows)."""
    return {"message": record.getMessage(), **{k: getattr(record, k, None)
                                                for k in ("caller", "rpc", "policy", "code", "reason", "peer")}}


def _log(path: Path) -> list[dict]:
    """The service's JSON log records (standard error is a file, so the log is JSON)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def _logged(records: list[dict], level: str, start: str) -> list[dict]:
    return [r for r in records if r["level"] == level and r["message"].startswith(start)]


def _refused(call, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == code, caught.value.details()
    return caught.value.details() or ""


# --- transport -------------------------------------------------------------------------------

def test_a_plaintext_client_is_refused_by_a_tls_server(token_server):
    _refused(lambda: token_server.stub(None).ListPolicies(pb.ListPoliciesRequest(), timeout=5),
             grpc.StatusCode.UNAVAILABLE)


@pytest.mark.parametrize("client", [None, "impostor"], ids=["no-client-certificate", "certificate-of-another-ca"])
def test_mutual_tls_refuses_a_client_without_a_certificate_from_the_ca(mtls_server, pki, client):
    stub = mtls_server.stub(pki.channel_credentials(getattr(pki, client) if client else None))
    _refused(lambda: stub.Decide(_fee_request(), timeout=5), grpc.StatusCode.UNAVAILABLE)


def test_a_client_with_the_right_certificate_decides(mtls_server, pki):
    stub = mtls_server.stub(pki.channel_credentials(pki.case_management))
    assert stub.Decide(_fee_request(), timeout=10).outcome == "WAIVED"
    assert stub.GetPolicy(pb.GetPolicyRequest(policy="service_type", version="2012"), timeout=5).ref.version  # "*"
    assert stub.ListPolicies(pb.ListPoliciesRequest(), timeout=5).policies


def test_a_server_without_client_ca_serves_tls_to_any_client(bundle, pki, tmp_path):
    files = pki.tls_files()
    served = Served(bundle, tmp_path, tls.configure("127.0.0.1", files["cert"], files["key"]))
    try:
        assert served.stub(pki.channel_credentials()).Decide(_fee_request(), timeout=10).outcome == "WAIVED"
    finally:
        served.close()


# --- who may call what -----------------------------------------------------------------------

def test_every_rpc_of_the_api_has_a_permission():
    methods = {f"/{service.full_name}/{method.name}"
               for service in pb.DESCRIPTOR.services_by_name.values() for method in service.methods}
    assert methods == set(authz.PERMISSIONS)


def test_a_token_caller_may_use_only_its_policies(token_server, pki, caplog):
    stub = token_server.stub(pki.channel_credentials(token=FEE_TOKEN))
    decision = stub.Decide(_fee_request(), timeout=10)
    assert decision.outcome == "WAIVED"
    assert stub.GetPolicy(pb.GetPolicyRequest(policy="application_fee", version="2017"), timeout=5).ref.version == "2017"
    with caplog.at_level(logging.WARNING, logger="cms_policy.authz"):
        message = _refused(lambda: stub.Decide(_fee_request("service_type"), timeout=5),
                           grpc.StatusCode.PERMISSION_DENIED)
        assert message == "caller 'fee-portal' may not call Decide for policy 'service_type'"
        assert "for policy 'service_type'" in _refused(
            lambda: stub.GetPolicy(pb.GetPolicyRequest(policy="service_type"), timeout=5),
            grpc.StatusCode.PERMISSION_DENIED)
        # a reviewer's permission, even for its own decision
        assert _refused(lambda: stub.GetDecision(pb.GetDecisionRequest(decision_id=decision.decision_id), timeout=5),
                        grpc.StatusCode.PERMISSION_DENIED) == "caller 'fee-portal' may not call GetDecision"
        _refused(lambda: stub.ReplayDecision(pb.ReplayDecisionRequest(decision_id=decision.decision_id), timeout=5),
                 grpc.StatusCode.PERMISSION_DENIED)
        _refused(lambda: stub.ListPolicies(pb.ListPoliciesRequest(), timeout=5), grpc.StatusCode.PERMISSION_DENIED)
    refusals = [_fields(r) for r in caplog.records if r.name == "cms_policy.authz"]
    assert [(r["message"], r["caller"], r["rpc"], r["policy"], r["code"]) for r in refusals] == [
        ("call refused", "fee-portal", "Decide", "service_type", "PERMISSION_DENIED"),
        ("call refused", "fee-portal", "GetPolicy", "service_type", "PERMISSION_DENIED"),
        ("call refused", "fee-portal", "GetDecision", "-", "PERMISSION_DENIED"),
        ("call refused", "fee-portal", "ReplayDecision", "-", "PERMISSION_DENIED"),
        ("call refused", "fee-portal", "ListPolicies", "-", "PERMISSION_DENIED")]
    assert refusals[0]["reason"] == "not allowed decide" and refusals[0]["peer"].startswith("ipv4:127.0.0.1:")
    logged = repr(refusals)
    assert FEE_TOKEN not in logged and "police" not in logged and "1985" not in logged


def test_an_unknown_or_missing_token_is_unauthenticated(token_server, pki, caplog):
    with caplog.at_level(logging.WARNING, logger="cms_policy.authz"):
        for creds, metadata in ((pki.channel_credentials(token=OTHER_TOKEN), None),
                                (pki.channel_credentials(), None),
                                (pki.channel_credentials(), [("authorization", f"Basic {FEE_TOKEN}")]),
                                (pki.channel_credentials(), [("authorization", f"Bearer {FEE_TOKEN}x")])):
            stub = token_server.stub(creds)
            message = _refused(lambda: stub.Decide(_fee_request(), timeout=5, metadata=metadata),
                               grpc.StatusCode.UNAUTHENTICATED)
            assert message.startswith("unknown caller")
    refusals = [_fields(r) for r in caplog.records if r.name == "cms_policy.authz"]
    assert [r["reason"] for r in refusals] == [
        "unknown bearer token", "no client certificate or bearer token", "authorization is not 'Bearer <token>'",
        "unknown bearer token"]
    assert {(r["caller"], r["rpc"], r["policy"], r["code"]) for r in refusals} == {
        ("unknown", "Decide", "application_fee", "UNAUTHENTICATED")}
    assert OTHER_TOKEN not in repr(refusals) and FEE_TOKEN not in repr(refusals)


def test_reload_is_for_the_admin_caller_only(token_server, pki):
    admin = policy_pb2_grpc.PolicyAdminServiceStub(token_server.channel(pki.channel_credentials(token=OPS_TOKEN)))
    assert not admin.ReloadPolicies(pb.ReloadPoliciesRequest(), timeout=10).changed
    fee = policy_pb2_grpc.PolicyAdminServiceStub(token_server.channel(pki.channel_credentials(token=FEE_TOKEN)))
    assert _refused(lambda: fee.ReloadPolicies(pb.ReloadPoliciesRequest(), timeout=5),
                    grpc.StatusCode.PERMISSION_DENIED) == "caller 'fee-portal' may not call ReloadPolicies"
    # and the admin may do nothing else
    ops = token_server.stub(pki.channel_credentials(token=OPS_TOKEN))
    _refused(lambda: ops.Decide(_fee_request(), timeout=5), grpc.StatusCode.PERMISSION_DENIED)


def test_health_and_reflection_are_open_without_credentials(token_server, pki):
    channel = token_server.channel(pki.channel_credentials())
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    assert "cms.policy.v1.PolicyDecisionService" in ProtoReflectionDescriptorDatabase(channel).get_services()


def test_a_reviewer_certificate_may_get_and_replay_decisions_only(mtls_server, pki):
    decision = mtls_server.stub(pki.channel_credentials(pki.case_management)).Decide(_fee_request(), timeout=10)
    reviewer = mtls_server.stub(pki.channel_credentials(pki.reviewer))  # recognised by its SAN URI
    logged = reviewer.GetDecision(pb.GetDecisionRequest(decision_id=decision.decision_id), timeout=10)
    assert logged.decision.outcome == "WAIVED" and logged.request.facts["abuse_reported_to"][0] == "police"
    assert reviewer.ReplayDecision(pb.ReplayDecisionRequest(decision_id=decision.decision_id), timeout=10).identical
    assert "may not call Decide for policy 'application_fee'" in _refused(
        lambda: reviewer.Decide(_fee_request(), timeout=5), grpc.StatusCode.PERMISSION_DENIED)
    case_management = mtls_server.stub(pki.channel_credentials(pki.case_management))
    _refused(lambda: case_management.GetDecision(pb.GetDecisionRequest(decision_id=decision.decision_id), timeout=5),
             grpc.StatusCode.PERMISSION_DENIED)


def test_under_mutual_tls_an_unlisted_certificate_is_unauthenticated_and_a_token_decides_alone(mtls_server, pki,
                                                                                               caplog):
    with caplog.at_level(logging.WARNING, logger="cms_policy.authz"):
        stranger = mtls_server.stub(pki.channel_credentials(pki.stranger))
        _refused(lambda: stranger.Decide(_fee_request(), timeout=5), grpc.StatusCode.UNAUTHENTICATED)
    assert _fields(caplog.records[-1])["reason"] == "client certificate not listed (CN=stranger.cms.internal)"
    # a known certificate does not rescue an unknown token
    known = mtls_server.stub(pki.channel_credentials(pki.case_management, token=OTHER_TOKEN))
    _refused(lambda: known.Decide(_fee_request(), timeout=5), grpc.StatusCode.UNAUTHENTICATED)
    # a token caller over mTLS (any certificate from the CA) is that caller
    fee = mtls_server.stub(pki.channel_credentials(pki.stranger, token=FEE_TOKEN))
    assert fee.Decide(_fee_request(), timeout=10).outcome == "WAIVED"
    _refused(lambda: fee.Decide(_fee_request("service_type"), timeout=5), grpc.StatusCode.PERMISSION_DENIED)


# --- the authorisation file ------------------------------------------------------------------

def _errors(tmp_path: Path, text: str, client_certificates: bool = True) -> list[str]:
    with pytest.raises(authz.AuthzConfigError) as caught:
        _authorisation(tmp_path, text, client_certificates)
    return [e.replace(str(tmp_path / "authz.yaml"), "authz.yaml") for e in caught.value.errors]


def test_the_authorisation_file_is_checked_with_lines(tmp_path):
    assert _errors(tmp_path, f"""\
callers:
  fee-portal:
    token_sha256: [{FEE_TOKEN}]
    allow:
      decide: [Application Fee]
      delete_everything: true
      list_policies: 1
  nobody:
    allow: {{list_policies: true}}
""") == [
        "authz.yaml:3: callers.fee-portal.token_sha256: each entry is the sha256 of a token as 64 hex digits "
        "(never the token itself)",
        "authz.yaml:5: callers.fee-portal.allow.decide.0: String should match pattern "
        "'^(\\*|[a-z][a-z0-9]*(_[a-z0-9]+)*)$'",
        "authz.yaml:7: callers.fee-portal.allow.list_policies: Input should be a valid boolean",
        "authz.yaml:6: callers.fee-portal.allow.delete_everything: Extra inputs are not permitted",
        "authz.yaml:8: callers.nobody: a caller needs a certificate name or a token_sha256 to be recognised by",
    ]


def test_identities_are_unique_and_certificates_need_mutual_tls(tmp_path):
    assert _errors(tmp_path, f"""\
callers:
  a:
    token_sha256: [{_sha(FEE_TOKEN)}]
  b:
    token_sha256: [{_sha(FEE_TOKEN).upper()}]
    certificate: [b.cms.internal]
""", client_certificates=False) == [
        "authz.yaml:5: callers.b.token_sha256: also stands for caller 'a'",
        "authz.yaml:6: callers.b.certificate: recognised by client certificate, but the service does not ask for "
        "one (give --tls-client-ca for mutual TLS)"]
    assert _errors(tmp_path, "callers:\n  a: &x {token_sha256: []}\n  b: *x\n") == [
        "authz.yaml:2: anchors and aliases are not allowed in policy files"]
    assert _errors(tmp_path, "callers:\n  a: {}\n  a: {}\n") == ["authz.yaml:3: duplicate key 'a'"]
    assert _errors(tmp_path, "callers:\n  unknown: {certificate: x}\n") == [
        "authz.yaml:2: callers.unknown: the name 'unknown' is reserved for callers that are not recognised"]


# --- transport options -----------------------------------------------------------------------

@pytest.mark.parametrize("host,loopback", [("localhost", True), ("127.0.0.1", True), ("127.1.2.3", True),
                                           ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("::", False),
                                           ("", False), ("10.1.2.3", False)])
def test_loopback_addresses(host, loopback):
    assert tls.is_loopback(host) is loopback


def test_plaintext_is_loopback_only_unless_insecure_plaintext_is_given():
    with pytest.raises(tls.TransportConfigError, match=r"refusing to serve plaintext on 0\.0\.0\.0"):
        tls.configure("0.0.0.0", None, None)
    transport = tls.configure("0.0.0.0", None, None, insecure_plaintext=True)
    assert transport.credentials is None
    assert "INSECURE plaintext (no TLS) on non-loopback address 0.0.0.0" in transport.startup_lines()[0][1]
    lines = authz.startup_lines(None, tls.configure("localhost", None, None), set())
    assert [level for level, _ in lines] == [logging.WARNING, logging.WARNING]
    assert "INSECURE plaintext (no TLS) on loopback address localhost only" in lines[0][1]
    assert lines[1][1].startswith("authorisation: OFF (no --authz): every caller that can connect may call every RPC")


def test_certificate_files_are_checked_at_start_up(pki, tmp_path):
    files = pki.tls_files()
    other_key = pki.file("other.key", pki.stranger.key)
    with pytest.raises(tls.TransportConfigError, match="does not belong to the certificate"):
        tls.configure("0.0.0.0", files["cert"], other_key)
    key = ec.generate_private_key(ec.SECP256R1())
    expired = _issue("old", pki.ca, server=True, days=-1, key=key)
    with pytest.raises(tls.TransportConfigError, match="the certificate expired on"):
        tls.configure("0.0.0.0", pki.file("expired.pem", expired.cert), pki.file("expired.key", expired.key))
    encrypted = pki.file("encrypted.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(tls.TransportConfigError, match="the private key is encrypted"):
        tls.configure("0.0.0.0", pki.file("expired.pem", expired.cert), encrypted)
    with pytest.raises(tls.TransportConfigError, match="not a PEM certificate"):
        tls.configure("0.0.0.0", files["key"], files["key"])
    with pytest.raises(tls.TransportConfigError, match="--tls-cert and --tls-key go together"):
        tls.configure("0.0.0.0", files["cert"], None)
    with pytest.raises(tls.TransportConfigError, match="contradicts"):
        tls.configure("0.0.0.0", files["cert"], files["key"], insecure_plaintext=True)
    transport = tls.configure("0.0.0.0", files["cert"], files["key"], files["client_ca"])
    assert transport.mode == tls.MUTUAL_TLS and transport.credentials is not None
    assert transport.startup_lines() == [(logging.INFO, (
        "transport: mutual TLS (certificate CN=cms-policy.cms.internal, expires "
        f"{pki.server.certificate.not_valid_after_utc:%Y-%m-%d}; client certificates required, issued by 1 CA(s) in "
        f"{files['client_ca']}: CN=CMS test CA)"))]


def test_replaced_certificate_files_are_used_from_the_next_connection(bundle, pki, tmp_path, caplog):
    directory = tmp_path / "tls"
    directory.mkdir()
    cert, key, client_ca = directory / "server.pem", directory / "server.key", directory / "ca.pem"
    cert.write_bytes(pki.server.cert)
    key.write_bytes(pki.server.key)
    client_ca.write_bytes(pki.ca.cert)
    served = Served(bundle, tmp_path / "work", tls.configure("127.0.0.1", cert, key, client_ca))
    try:
        def health(client: Issued) -> object:
            channel = served.channel(pki.channel_credentials(client))
            try:
                return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
            except grpc.RpcError as exc:
                return exc.code()

        assert health(pki.impostor) == grpc.StatusCode.UNAVAILABLE
        with caplog.at_level(logging.INFO, logger="cms_policy.tls"):
            client_ca.write_bytes(b"not a certificate")  # half-written: refused, the old CA serves on
            assert health(pki.case_management) == health_pb2.HealthCheckResponse.SERVING
            time.sleep(0.01)
            client_ca.write_bytes(pki.ca.cert + pki.other_ca.cert)  # the other CA is trusted too now
            assert health(pki.impostor) == health_pb2.HealthCheckResponse.SERVING
        messages = [r.getMessage() for r in caplog.records if r.name == "cms_policy.tls"]
        assert messages[0].startswith("TLS files changed but are refused, still serving the previous ones:")
        assert "issued by 2 CA(s)" in messages[1]
    finally:
        served.close()


# --- the service as run ----------------------------------------------------------------------

def test_the_service_refuses_a_network_bind_without_tls():
    result = subprocess.run([sys.executable, "-m", "service", "--host", "0.0.0.0", "--port", "0"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "refusing to serve plaintext on 0.0.0.0, which is not a loopback address" in result.stderr
    assert "--insecure-plaintext" in result.stderr


def test_the_service_serves_plaintext_on_the_network_only_when_told_and_says_so(tmp_path):
    proc, channel, log_path = start_service(tmp_path, "--host", "0.0.0.0", "--insecure-plaintext", "--no-watch")
    try:
        assert policy_pb2_grpc.PolicyDecisionServiceStub(channel).Decide(_fee_request(), timeout=10).outcome == "WAIVED"
    finally:
        stop_service(proc, channel)
    log = _log(log_path)
    assert _logged(log, "INFO", "serving 19 policy versions on 0.0.0.0:")[0]["message"].endswith("(plaintext)")
    assert _logged(log, "WARNING", "transport: INSECURE plaintext (no TLS) on non-loopback address 0.0.0.0")
    assert _logged(log, "WARNING", "authorisation: OFF (no --authz): every caller that can connect may call "
                                   "every RPC, on non-loopback address 0.0.0.0")


def test_the_service_with_mutual_tls_and_authorisation(pki, tmp_path):
    files = pki.tls_files()
    authz_file = tmp_path / "authz.yaml"
    authz_file.write_text(CERT_AUTHZ)
    proc, channel, log_path = start_service(
        tmp_path, "--no-watch", "--tls-cert", str(files["cert"]), "--tls-key", str(files["key"]),
        "--tls-client-ca", str(files["client_ca"]), "--authz", str(authz_file),
        credentials=pki.channel_credentials(pki.case_management))
    target = "127.0.0.1:" + log_path.read_text().split("listening on ", 1)[1].split()[0].rsplit(":", 1)[1]
    try:
        assert policy_pb2_grpc.PolicyDecisionServiceStub(channel).Decide(_fee_request(), timeout=10).outcome == "WAIVED"
        with grpc.secure_channel(target, pki.channel_credentials(token=FEE_TOKEN)) as no_cert:
            _refused(lambda: policy_pb2_grpc.PolicyDecisionServiceStub(no_cert).Decide(_fee_request(), timeout=5),
                     grpc.StatusCode.UNAVAILABLE)
        with grpc.secure_channel(target, pki.channel_credentials(pki.reviewer)) as reviewer:
            _refused(lambda: policy_pb2_grpc.PolicyDecisionServiceStub(reviewer).Decide(_fee_request(), timeout=5),
                     grpc.StatusCode.PERMISSION_DENIED)
    finally:
        stop_service(proc, channel)
    log = _log(log_path)
    assert _logged(log, "INFO", "serving 19 policy versions on 127.0.0.1:")[0]["message"].endswith("(mutual TLS)")
    assert _logged(log, "INFO", "transport: mutual TLS (certificate CN=cms-policy.cms.internal, expires ")
    assert _logged(log, "INFO", "authorisation: 3 callers from ")[0]["message"].endswith(
        "(by client certificate: case-management, reviewers; by bearer token: fee-portal); "
        "health and reflection are open to all")
    assert _logged(log, "WARNING", "authorisation: caller 'fee-portal' is allowed decide of policy 'child_benefit', "
                                   "which is not loaded")
    refused = _logged(log, "WARNING", "call refused")
    assert [(r["caller"], r["rpc"], r["policy"], r["code"]) for r in refused] == [
        ("reviewers", "Decide", "application_fee", "PERMISSION_DENIED")]
    assert not any("INSECURE" in r["message"] or "OFF" in r["message"] for r in log)


def test_a_certificate_naming_two_callers_or_two_authorization_headers_are_refused(tmp_path):
    authorisation = _authorisation(tmp_path, f"""\
callers:
  a: {{certificate: [a.cms.internal]}}
  b: {{certificate: [spiffe://cms.internal/b], token_sha256: [{_sha(FEE_TOKEN)}]}}
""", client_certificates=True)
    both = {"x509_common_name": [b"a.cms.internal"], "x509_subject_alternative_name": [b"spiffe://cms.internal/b"]}
    with pytest.raises(authz.Refused, match="unknown caller") as caught:
        authorisation.identify(both, ())
    assert caught.value.reason == "client certificate names several callers (a, b)"
    assert authorisation.identify({"x509_subject_alternative_name": [b"spiffe://cms.internal/b"]}, ()).name == "b"
    with pytest.raises(authz.Refused) as caught:
        authorisation.identify({}, [("authorization", f"Bearer {FEE_TOKEN}")] * 2)
    assert caught.value.reason == "more than one authorization header"
    assert authorisation.identify({}, [("authorization", f"bearer  {FEE_TOKEN} ")]).name == "b"


def test_the_calling_service_is_named_on_every_log_line_of_its_call(token_server, pki):
    from service.observability import JsonFormatter
    lines: list[str] = []
    handler = logging.Handler()
    handler.setFormatter(JsonFormatter())
    handler.emit = lambda record: lines.append(handler.format(record))
    service_log = logging.getLogger("cms_policy.service")
    level = service_log.level
    service_log.addHandler(handler)
    service_log.setLevel(logging.INFO)
    try:
        token_server.stub(pki.channel_credentials(token=FEE_TOKEN)).Decide(_fee_request(), timeout=10)
        decisions = eventually(lambda: [json.loads(line) for line in lines if json.loads(line)["message"] == "decision"])
    finally:
        service_log.removeHandler(handler)
        service_log.setLevel(level)
    assert [d["caller"] for d in decisions] == ["fee-portal"]
