"""Bad input, fuzzed: every RPC of an in-process server gets random and adversarial requests
(wrong types, huge and deeply nested values, unknown facts, impossible dates, NaN and huge
numbers, unknown enum values, odd names, raw bytes that are not a message, oversize messages).

Every call must end in a decision or in INVALID_ARGUMENT (with a google.rpc.BadRequest) /
RESOURCE_EXHAUSTED (only for a message over 4 MiB) / NOT_FOUND / FAILED_PRECONDITION where that
is the answer — never UNKNOWN or INTERNAL, never a crash — with no durable_rules session left
alive, and no fact value (each text value carries MARK) in an error or a log record.

CI runs a short, derandomized version. A long run picks its number of examples per test from
the environment (and is then random):

    CMS_FUZZ_EXAMPLES=30000 python -m pytest tests/test_fuzz_rpc.py
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re

import grpc
import pytest
from google.protobuf import struct_pb2
from google.protobuf.internal.encoder import _VarintBytes
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from cms_policy.v1 import policy_pb2 as pb
from cms_policy.v1 import policy_pb2_grpc
from rules.audit.factory import open_log
from rules.engine import durable_host
from rules.engine.decision import DecisionRequest, RequestError
from rules.engine.loader import load_bundle
from rules.language import values
from rules.language.model import Fact, FactType
from service import convert
from service.reload import LiveBundle
from service.server import MAX_MESSAGE_BYTES, build_server

LONG_RUN = int(os.environ.get("CMS_FUZZ_EXAMPLES", "0") or 0)
MARK = "Zq9MARK"  # in every text value sent: it must never come back in an error or a log


def fuzz(ci_examples: int):
    """Hypothesis settings: `ci_examples` derandomized in CI, CMS_FUZZ_EXAMPLES (random) in a long run."""
    return settings(max_examples=LONG_RUN or ci_examples, deadline=None, derandomize=not LONG_RUN, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


BUNDLE = load_bundle()
POLICIES = sorted(BUNDLE.policies)
VERSIONS = sorted({c.version.version for p in POLICIES for c in BUNDLE.versions(p)})


# --- the server, and what every call must satisfy ------------------------------------------

class _Records(logging.Handler):
    """Every log record while the fuzzer runs, as text (message, fields, traceback)."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self._formatter.format(record) + repr(record.__dict__))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    records = _Records()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    log = open_log(tmp_path_factory.mktemp("fuzz-log") / "decisions.sqlite3", [os.urandom(32)])
    srv, port = build_server(LiveBundle(BUNDLE), "127.0.0.1:0", decision_log=log)
    big = 64 * 1024 * 1024  # the client may send more than the server takes
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", big),
                                                                  ("grpc.max_receive_message_length", big)])
    served = Server(channel, records)
    yield served
    if LONG_RUN:  # what the long run did (pytest -s shows it)
        print("\nfuzz calls by method and code:", {k: served.counts[k] for k in sorted(served.counts)})
    channel.close()
    srv.stop(None).wait()
    log.close()
    root.removeHandler(records)
    root.setLevel(old_level)


class Server:
    def __init__(self, channel: grpc.Channel, records: _Records):
        self.channel = channel
        self.records = records
        self.decide = policy_pb2_grpc.PolicyDecisionServiceStub(channel)
        self.admin = policy_pb2_grpc.PolicyAdminServiceStub(channel)
        self.counts: dict[str, int] = {}

    def raw(self, method: str):
        """`method` ("Service/Method") called with bytes as they are, answering bytes."""
        return self.channel.unary_unary(f"/cms.policy.v1.{method}", request_serializer=lambda b: b,
                                        response_deserializer=lambda b: b)

    def call(self, method, request, allowed: set[grpc.StatusCode]):
        """(code, response): the call's outcome, checked against what every call must satisfy."""
        seen = len(self.records.texts)
        try:
            response = method(request, timeout=300)
            code = grpc.StatusCode.OK
        except grpc.RpcError as err:
            response, code = err, err.code()
            _check_error(err)
        assert code in allowed | {grpc.StatusCode.OK}, f"{code}: {_details(code, response)}"
        if currently_in_test_context():
            event(code.name)
        name = f"{getattr(method, '_method', b'?').decode().rsplit('/', 1)[-1]} {code.name}"
        self.counts[name] = self.counts.get(name, 0) + 1
        assert durable_host.live_sessions() == 0, "a durable_rules session was left alive"
        leaked = [t for t in self.records.texts[seen:] if MARK in t]
        assert not leaked, f"a fact value reached the logs: {leaked[0][:300]}"
        del self.records.texts[:]
        return code, response


def _details(code, response) -> str:
    return response.details() if isinstance(response, grpc.RpcError) else type(response).__name__


def _violations(err: grpc.RpcError) -> dict[str, str]:
    bad = error_details_pb2.BadRequest()
    rpc_status.from_call(err).details[0].Unpack(bad)
    return {v.field: v.description for v in bad.field_violations}


def _check_error(err: grpc.RpcError) -> None:
    code, details = err.code(), err.details() or ""
    assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), f"{code}: {details}"
    assert MARK not in details, f"an error quotes a fact's value: {details[:300]}"
    status = rpc_status.from_call(err)
    if status is not None:
        assert MARK.encode() not in status.SerializeToString()
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert status is not None, f"INVALID_ARGUMENT without details: {details}"
        bad = error_details_pb2.BadRequest()
        assert status.details and status.details[0].Unpack(bad), details
        assert bad.field_violations and all(v.description for v in bad.field_violations)
    if code == grpc.StatusCode.FAILED_PRECONDITION and status is not None and status.details:
        assert status.details[0].Is(error_details_pb2.PreconditionFailure.DESCRIPTOR)


def _oversize(request) -> bool:
    return request.ByteSize() > MAX_MESSAGE_BYTES


def _bad_request(err_or_call) -> dict[str, str]:
    with pytest.raises(grpc.RpcError) as caught:
        err_or_call()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    _check_error(caught.value)
    bad = error_details_pb2.BadRequest()
    rpc_status.from_call(caught.value).details[0].Unpack(bad)
    return {v.field: v.description for v in bad.field_violations}


# --- what the fuzzer sends -----------------------------------------------------------------

ODD_TEXT = st.sampled_from(["", " ", "\x00", "\n", "\r\n", "'", '"', "\\", "%s", "{}", "{0}", "../..", "é", "\u202e",
                            "\U0001F600", "\ufeff", "\ud7ff", "null", "NaN", "-", "_", "."])
KEYS = st.one_of(st.text(max_size=20), ODD_TEXT, st.integers(65, 300).map(lambda n: "k" * n)).filter(
    lambda k: MARK not in k)
NAMES = st.one_of(st.sampled_from(POLICIES + VERSIONS + ["in_force", "latest_enacted"]), ODD_TEXT,
                  st.text(max_size=30), st.integers(60, 70).map(lambda n: "v" * n), st.just("x" * 100_000),
                  st.sampled_from(POLICIES).map(lambda p: p + "\x00"), st.sampled_from(POLICIES).map(str.upper))

BAD_DATES = ["2023-02-30", "2023-02-29", "2024-02-30", "99999-01-01", "", "garbage", "2019-3-15", "20190315",
             "2019-W11-5", "2019-03-15T00:00", " 2019-03-15", "2019-03-15 ", "2019-03-15\n", "0000-01-01",
             "0001-01-01", "1899-12-31", "2200-01-01", "9999-12-31", "２０１９-０３-１５", "2019-00-10", "2019-13-01",
             "-2019-03-15", "+2019-03-15"]
DATES = st.one_of(st.dates(dt.date(1900, 1, 1), dt.date(2199, 12, 31)).map(dt.date.isoformat),
                  st.dates(dt.date(1990, 1, 1), dt.date(2030, 12, 31)).map(dt.date.isoformat),
                  st.sampled_from(["1900-01-01", "2199-12-31", "2000-02-29", "2024-02-29"]),
                  st.sampled_from(BAD_DATES))
NUMBERS = st.one_of(
    st.integers(-10, 100_000),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.5, 1e308, -1e308, 5e-324, 2.0**53, 2.0**53 + 2,
                     2.0**63, 1e16, 9007199254740993.0]))
MARKED = st.one_of(st.text(max_size=40), ODD_TEXT).map(lambda s: f"{s}{MARK}{s}")
HUGE_TEXT = st.sampled_from([999, 1000, 1001, 5000, 100_000]).map(lambda n: (MARK + "é" * n)[:n])
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, MARKED, DATES.map(lambda d: d))


def _nested(depth: int, leaf):
    value = leaf
    for n in range(depth):
        value = [value] if n % 2 else {"k": value}
    return value


ANY_VALUE = st.one_of(
    SCALARS,
    HUGE_TEXT,
    st.lists(SCALARS, max_size=5),
    st.dictionaries(KEYS, SCALARS, max_size=4),
    st.builds(_nested, st.integers(1, 60), MARKED),
    st.integers(99, 102).map(lambda n: [MARK] * n),
    st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
                 max_leaves=8),
)


def valid_value(spec: Fact):
    t = spec.type
    if t is FactType.BOOL:
        return st.booleans()
    if t in (FactType.INTEGER, FactType.MONEY):
        return st.one_of(st.integers(0, 200_000), st.integers(-5, 5), st.just(2**53))
    if t is FactType.DATE:
        return DATES
    if t is FactType.ENUM:
        return st.sampled_from(spec.allowed)
    if t is FactType.ENUM_LIST:
        return st.lists(st.sampled_from(spec.allowed), max_size=4)
    if t is FactType.PERCENT:
        return st.decimals(0, 100, places=2).map(str)
    return MARKED  # string


def fact_value(spec: Fact | None):
    if spec is None:
        return ANY_VALUE
    return st.one_of(valid_value(spec), valid_value(spec), valid_value(spec), st.none(), ANY_VALUE)


def _all_item_specs() -> dict[str, dict[str, Fact]]:
    lists: dict[str, dict[str, Fact]] = {}
    for p in POLICIES:
        for name, specs in BUNDLE.list_schema(p).items():
            for key, spec in specs.items():
                lists.setdefault(name, {}).setdefault(key, spec)
    return lists


ITEM_SPECS = _all_item_specs()
FACT_SPECS = {name: spec for p in POLICIES for name, spec in BUNDLE.fact_schema(p).items()}


def item_list(name: str):
    specs = ITEM_SPECS[name]
    item = st.one_of(
        st.fixed_dictionaries({}, optional={k: fact_value(s) for k, s in specs.items()}),
        st.fixed_dictionaries({k: valid_value(s) for k, s in specs.items()}),
        st.dictionaries(st.one_of(st.sampled_from(sorted(specs)), KEYS), ANY_VALUE, max_size=4),
        SCALARS)
    return st.one_of(st.lists(item, max_size=4), st.lists(item, min_size=99, max_size=102),
                     st.sampled_from([10_000]).map(lambda n: [{}] * n), ANY_VALUE)


GOOD_DATES = st.dates(dt.date(1990, 1, 1), dt.date(2030, 12, 31)).map(dt.date.isoformat)


def _good(spec: Fact):
    return GOOD_DATES if spec.type is FactType.DATE else valid_value(spec)


@st.composite
def facts_for(draw, policy: str, bad: int) -> dict:
    """Facts for `policy`; each part is adversarial with a chance of `bad` in 100."""
    def odd() -> bool:
        return draw(st.integers(0, 99)) < bad
    names = sorted(BUNDLE.request_names(policy)) if policy in BUNDLE.policies else []
    chosen = draw(st.lists(st.sampled_from(names), unique=True)) if names and draw(st.booleans()) else names
    if odd():  # facts of any policy, used or not
        chosen = chosen + draw(st.lists(st.sampled_from(sorted(FACT_SPECS) + sorted(ITEM_SPECS)), max_size=3))
    facts = {}
    for name in chosen:
        if name in ITEM_SPECS:
            good = st.lists(st.fixed_dictionaries({}, optional={k: _good(s) for k, s in ITEM_SPECS[name].items()}),
                            max_size=4)
            facts[name] = draw(item_list(name) if odd() else good)
        else:
            facts[name] = draw(fact_value(FACT_SPECS.get(name)) if odd() else _good(FACT_SPECS[name]))
    if odd():
        facts.update(draw(st.dictionaries(KEYS, ANY_VALUE, max_size=3)))
    if odd() and odd():
        facts.update({f"fact_{n}": 1 for n in range(draw(st.sampled_from([100, 101, 5000])))})
    return facts


ENUMS = st.one_of(st.sampled_from([0, 1, 2, 3]), st.sampled_from([4, 5, 6, -1, 2**31 - 1, -(2**31)]),
                  st.integers(-(2**31), 2**31 - 1))


def _struct(facts: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(facts)
    return s


@st.composite
def decide_requests(draw) -> pb.DecideRequest:
    bad = draw(st.sampled_from([0, 3, 10, 30, 70]))  # the chance in 100 of each part being adversarial

    def pick(good, adversarial):
        return draw(adversarial if draw(st.integers(0, 99)) < bad else good)
    policy = pick(st.sampled_from(POLICIES), NAMES)
    versions = [c.version.version for c in BUNDLE.versions(policy)] or VERSIONS
    version = pick(st.one_of(st.just(""), st.sampled_from(versions)), NAMES)
    as_at = pick(st.one_of(st.just(""), GOOD_DATES), DATES) if not version else pick(st.just(""), DATES)
    shadow = pick(st.one_of(st.just(""), st.just(""), st.just(""), st.sampled_from(versions)), NAMES)
    facts = draw(facts_for(policy, bad))
    request = pb.DecideRequest(
        policy=policy, version=version, as_at=as_at, shadow_version=shadow,
        subject=pick(st.sampled_from([0, 2, 3]), ENUMS), requested_by=pick(st.integers(0, 3), ENUMS),
        reason=pick(st.integers(0, 5), ENUMS), include_counterfactuals=draw(st.integers(0, 3)) == 0)
    request.facts.update(facts)  # in place: copying a Struct nested deeper than protobuf parses would fail
    return request


DECIDE_CODES = {grpc.StatusCode.INVALID_ARGUMENT}


def _check_decision(server: Server, request: pb.DecideRequest, decision: pb.DecideResponse) -> None:
    assert decision.outcome and re.fullmatch(r"[0-9a-f]{32}", decision.decision_id)
    assert decision.policy.policy == request.policy and decision.bundle_hash == BUNDLE.bundle_hash
    code, logged = server.call(server.decide.GetDecision, pb.GetDecisionRequest(decision_id=decision.decision_id), set())
    assert logged.decision == decision  # recorded exactly as returned


# --- Decide ----------------------------------------------------------------------------------

@fuzz(150)
@given(request=decide_requests())
def test_decide_answers_every_request_with_a_decision_or_a_bad_request(server, request):
    allowed = DECIDE_CODES | ({grpc.StatusCode.RESOURCE_EXHAUSTED} if _oversize(request) else set())
    code, decision = server.call(server.decide.Decide, request, allowed)
    if code == grpc.StatusCode.OK:
        _check_decision(server, request, decision)


def _valid_facts(policy: str):
    """Facts every one of which is valid for some version (dates within range): mostly decisions."""
    specs = {n: FACT_SPECS[n] for n in BUNDLE.request_names(policy) if n in FACT_SPECS}
    lists = {n: ITEM_SPECS[n] for n in BUNDLE.request_names(policy) if n in ITEM_SPECS}
    good_dates = st.dates(dt.date(1900, 1, 1), dt.date(2199, 12, 31)).map(dt.date.isoformat)

    def value(spec):
        return good_dates if spec.type is FactType.DATE else valid_value(spec)
    items = {n: st.lists(st.fixed_dictionaries({}, optional={k: value(s) for k, s in item.items()}), max_size=5)
             for n, item in lists.items()}
    return st.fixed_dictionaries({}, optional={**{n: value(s) for n, s in specs.items()}, **items})


@st.composite
def plausible_requests(draw) -> pb.DecideRequest:
    policy = draw(st.sampled_from(POLICIES))
    version = draw(st.one_of(st.just(""), st.sampled_from([c.version.version for c in BUNDLE.versions(policy)])))
    as_at = "" if version else draw(st.one_of(st.just(""), st.dates(dt.date(1900, 1, 1), dt.date(2199, 12, 31)).map(
        dt.date.isoformat)))
    return pb.DecideRequest(policy=policy, version=version, as_at=as_at, facts=_struct(draw(_valid_facts(policy))),
                            subject=draw(st.sampled_from([0, 2, 3])), requested_by=draw(st.sampled_from([0, 1, 2, 3])),
                            reason=draw(st.integers(0, 5)), include_counterfactuals=draw(st.booleans()))


@fuzz(60)
@given(request=plausible_requests())
def test_decide_with_valid_facts_of_any_version_decides(server, request):
    """Facts any version accepts, extreme dates and numbers included: decisions, and
    INVALID_ARGUMENT only when no version is in force on the date."""
    code, decision = server.call(server.decide.Decide, request, DECIDE_CODES)
    if code == grpc.StatusCode.OK:
        _check_decision(server, request, decision)
    else:
        found = _violations(decision)
        assert list(found) == ["as_at"] and "no enacted version" in found["as_at"], found


# --- the other RPCs --------------------------------------------------------------------------

@fuzz(60)
@given(policy=st.one_of(st.sampled_from(POLICIES), NAMES), version=st.one_of(st.just(""), NAMES),
       as_at=st.one_of(st.just(""), DATES),
       markdown=st.booleans())
def test_get_policy_and_list_policies(server, policy, version, as_at, markdown):
    request = pb.GetPolicyRequest(policy=policy, version=version, as_at=as_at, markdown=markdown)
    code, detail = server.call(server.decide.GetPolicy, request, {grpc.StatusCode.INVALID_ARGUMENT})
    if code == grpc.StatusCode.OK:
        assert detail.ref.policy == policy and detail.rules
    code, listed = server.call(server.decide.ListPolicies, pb.ListPoliciesRequest(), set())
    assert listed.bundle_hash == BUNDLE.bundle_hash


DECISION_IDS = st.one_of(st.just(""), st.text(max_size=40), ODD_TEXT, st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
                         st.integers(33, 200).map(lambda n: "f" * n), st.just("x" * 1_000_000),
                         st.just("' OR 1=1 --"), st.just("%"), st.just("_" * 32))


@fuzz(60)
@given(decision_id=DECISION_IDS, replay=st.booleans())
def test_get_and_replay_decision_with_any_id(server, decision_id, replay):
    method, message = (server.decide.ReplayDecision, pb.ReplayDecisionRequest) if replay else \
        (server.decide.GetDecision, pb.GetDecisionRequest)
    code, _ = server.call(method, message(decision_id=decision_id),
                          {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND})
    assert code != grpc.StatusCode.OK


@fuzz(25)
@given(request=plausible_requests())
def test_every_decision_replays_identically(server, request):
    code, decision = server.call(server.decide.Decide, request, DECIDE_CODES)
    if code == grpc.StatusCode.OK:
        code, replayed = server.call(server.decide.ReplayDecision,
                                     pb.ReplayDecisionRequest(decision_id=decision.decision_id), set())
        assert replayed.identical, replayed.differences


def test_reload_without_a_directory_changes_nothing(server):
    code, result = server.call(server.admin.ReloadPolicies, pb.ReloadPoliciesRequest(), set())
    assert not result.changed and result.bundle_hash == BUNDLE.bundle_hash


# --- bytes that are not a message ------------------------------------------------------------

METHODS = {  # method: (a valid request, the codes it may answer besides OK)
    "PolicyDecisionService/Decide": (pb.DecideRequest(policy="application_fee", version="2024", facts=_struct(
        {"application_route": "direct_pay", "applicant_in_northern_ireland": False})), DECIDE_CODES),
    "PolicyDecisionService/ListPolicies": (pb.ListPoliciesRequest(), set()),
    "PolicyDecisionService/GetPolicy": (pb.GetPolicyRequest(policy="application_fee", version="2017"),
                                        {grpc.StatusCode.INVALID_ARGUMENT}),
    "PolicyDecisionService/GetDecision": (pb.GetDecisionRequest(decision_id="0" * 32),
                                          {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}),
    "PolicyDecisionService/ReplayDecision": (pb.ReplayDecisionRequest(decision_id="0" * 32),
                                             {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}),
    "PolicyAdminService/ReloadPolicies": (pb.ReloadPoliciesRequest(), set()),
}


def _field(number: int, payload: bytes) -> bytes:
    return _VarintBytes(number << 3 | 2) + _VarintBytes(len(payload)) + payload


INVALID_UTF8 = st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"a\x80b",
                                b"\xf4\x90\x80\x80"])


@st.composite
def wire_bytes(draw, valid: bytes) -> bytes:
    """A valid request's bytes mutated: bytes flipped, cut, spliced, or a string field holding
    invalid UTF-8 (top level, a fact's name or a fact's text), or nesting deeper than protobuf allows."""
    how = draw(st.sampled_from(["flip", "cut", "splice", "random", "utf8", "fact_utf8", "key_utf8", "deep"]))
    data = bytearray(valid)
    if how == "flip" and data:
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
    elif how == "cut":
        data = data[:draw(st.integers(0, len(data)))]
    elif how == "splice":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=20))
    elif how == "random":
        data = bytearray(draw(st.binary(max_size=200)))
    elif how == "utf8":
        data += _field(draw(st.integers(1, 3)), b"x" + draw(INVALID_UTF8) + MARK.encode())
    elif how == "fact_utf8":  # DecideRequest.facts = {"site": <bad text>}
        value = _field(3, MARK.encode() + draw(INVALID_UTF8))
        data += _field(4, _field(1, _field(1, b"site") + _field(2, value)))
    elif how == "key_utf8":
        data += _field(4, _field(1, _field(1, draw(INVALID_UTF8)) + _field(2, _field(3, MARK.encode()))))
    else:
        value = _field(3, MARK.encode())
        for _ in range(draw(st.integers(40, 400))):
            value = _field(6, _field(1, value))  # Value.list_value.values
        data += _field(4, _field(1, _field(1, b"declaration") + _field(2, value)))
    return bytes(data)


@fuzz(200)
@given(data=st.data(), method=st.sampled_from(sorted(METHODS)))
def test_raw_bytes_are_answered_never_with_internal(server, data, method):
    valid, allowed = METHODS[method]
    raw = data.draw(wire_bytes(valid.SerializeToString()))
    server.call(server.raw(method), raw, allowed | {grpc.StatusCode.INVALID_ARGUMENT})


# --- regressions: one per bug the fuzzer found ------------------------------------------------

def _decide(server, **kw):
    facts = kw.pop("facts", None)
    request = pb.DecideRequest(**kw)
    if facts is not None:
        request.facts.update(facts)
    return lambda: server.decide.Decide(request, timeout=60)


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_bad_requests_not_unknown(server, number):
    # Was UNKNOWN: json_format.MessageToDict refuses NaN and infinity in a Struct.
    found = _bad_request(_decide(server, policy="maintenance_calculation", version="2012",
                                 facts={"gross_weekly_income": number, "nil_rate_category": "none"}))
    assert found == {"facts.gross_weekly_income": "expected a finite number"}


def test_raw_invalid_utf8_names_the_field(server):
    # Was INTERNAL ("Exception deserializing request!") with no details.
    decide = server.raw("PolicyDecisionService/Decide")
    found = _bad_request(lambda: decide(_field(1, b"application_fee\xff")))
    assert found == {"policy": "text is not valid UTF-8"}
    site = _field(1, b"site") + _field(2, _field(3, MARK.encode() + b"\xc3"))
    found = _bad_request(lambda: decide(_field(1, b"caseworker_routing") + _field(4, _field(1, site))))
    assert found == {"facts.site": "text is not valid UTF-8"}
    found = _bad_request(lambda: server.raw("PolicyDecisionService/GetDecision")(_field(1, b"\xed\xa0\x80")))
    assert found == {"decision_id": "text is not valid UTF-8"}
    found = _bad_request(lambda: decide(b"\xff\xff\xff"))
    assert "not a valid cms.policy.v1.DecideRequest message" in found[""]


def test_nesting_deeper_than_protobuf_allows_names_the_fact(server):
    # Was INTERNAL: upb refuses to decode the message (nesting limit).
    value = _field(3, b"x")
    for _ in range(200):
        value = _field(6, _field(1, value))
    raw = _field(1, b"application_fee") + _field(4, _field(1, _field(1, b"declaration") + _field(2, value)))
    assert _bad_request(lambda: server.raw("PolicyDecisionService/Decide")(raw)) == {
        "facts.declaration": "nested too deeply"}
    found = _bad_request(_decide(server, policy="application_fee", facts={"declaration": _nested(20, MARK)}))
    assert found == {"facts.declaration": f"lists and objects nested more than {values.MAX_DEPTH} deep"}


def test_dates_far_from_now_are_refused_not_unknown(server):
    # Was UNKNOWN: working out what would change the fee overflowed the year (9999 + 19).
    for day in ("9999-12-31", "0001-01-01"):
        found = _bad_request(_decide(server, policy="application_fee", version="2017", facts={
            "application_route": "direct_pay", "applicant_in_northern_ireland": False, "application_date": day,
            "applicant_date_of_birth": day}))
        assert found["facts.application_date"] == "expected a date from 1900-01-01 to 2199-12-31"
    for day in ("1900-01-01", "2199-12-31"):
        decision = _decide(server, policy="application_fee", version="2017", facts={
            "application_route": "direct_pay", "applicant_in_northern_ireland": False, "application_date": day,
            "applicant_date_of_birth": day})()
        assert decision.outcome


@pytest.mark.parametrize("as_at", ["20190315", "2019-W11-5", "2019-03-15T00:00", "1899-12-31"])
def test_as_at_is_yyyy_mm_dd_only(server, as_at):
    # Was accepted (date.fromisoformat takes other ISO forms) while facts took YYYY-MM-DD only.
    assert "as_at" in _bad_request(_decide(server, policy="application_fee", as_at=as_at))


def test_many_problems_fit_in_the_trailers(server):
    # Were lost: the client refused the status (trailers over 16 KiB) as RESOURCE_EXHAUSTED, no details.
    found = _bad_request(_decide(server, policy="abuse_evidence", version="2018", facts={
        "evidence_items": [{f"bad_{n}": 1 for n in range(20)} for _ in range(100)]}))
    assert "facts.evidence_items[0].bad_0" in found and any("more problems are not shown" in d for d in found.values())
    found = _bad_request(_decide(server, policy="application_fee", facts={"x" * 100_000: 1}))
    assert found == {f"facts.{'x' * values.MAX_NAME}…": "unknown fact for application_fee"}
    assert _bad_request(_decide(server, policy="application_fee", facts={f"f{n}": 1 for n in range(1000)})) == {
        "facts": f"more than {values.MAX_FACTS} facts"}


@pytest.mark.parametrize("field", ["policy", "version", "shadow_version"])
def test_long_names_are_refused_without_being_quoted(server, field):
    kw = {"policy": "application_fee", field: "p" * 100_000}
    assert _bad_request(_decide(server, **kw)) == {field: f"longer than {values.MAX_NAME} characters"}


@pytest.mark.parametrize("replay", [False, True])
def test_long_decision_ids_are_refused(server, replay):
    method, message = (server.decide.ReplayDecision, pb.ReplayDecisionRequest) if replay else \
        (server.decide.GetDecision, pb.GetDecisionRequest)
    assert _bad_request(lambda: method(message(decision_id="f" * 65))) == {
        "decision_id": f"longer than {values.MAX_NAME} characters"}


def test_facts_only_other_versions_read_are_checked_too(server):
    # Were ignored unchecked (and recorded): any value, of any size, for another version's fact.
    found = _bad_request(_decide(server, policy="application_fee", version="2014", facts={
        "application_route": "family_based", "legal_warning_before_abuse_question": MARK}))
    assert found == {"facts.legal_warning_before_abuse_question": "expected true or false"}
    # ... and a list of a policy used by another version (abuse_evidence, used by service_type/review-2023)
    found = _bad_request(_decide(server, policy="service_type", version="2012", facts={
        "evidence_items": [{"type": MARK}] * 10_000}))
    assert found == {"facts.evidence_items": f"list longer than {values.MAX_LIST} items"}
    found = _bad_request(_decide(server, policy="service_type", version="2012", facts={
        "evidence_items": [{"type": MARK * 200}]}))
    assert set(found) == {"facts.evidence_items[0].type"}
    # A value some other version allows is still accepted (and ignored).
    decision = _decide(server, policy="abuse_evidence", version="2013", facts={
        "decision_date": "2013-06-01", "evidence_items": [{"type": "police_caution", "document_date": "2013-01-01",
                                                           "concerns_other_party": True, "letter_gives_judgement": True}]})()
    assert decision.outcome and "evidence_items[].letter_gives_judgement" in decision.ignored_facts
    found = _bad_request(_decide(server, policy="abuse_evidence", version="2013", facts={
        "evidence_items": [{"letter_gives_judgement": MARK}]}))
    assert found == {"facts.evidence_items[0].letter_gives_judgement": "expected true or false"}


def test_a_date_from_the_facts_is_not_quoted_when_no_version_is_in_force(server):
    # Was "no enacted version of application_fee is in force on 2001-02-03": a fact's value in an error.
    found = _bad_request(_decide(server, policy="application_fee", facts={"application_date": "2001-02-03"}))
    assert found == {"as_at": "no enacted version of application_fee is in force on its application_date"}
    assert "2001-02-03" in _bad_request(_decide(server, policy="application_fee", as_at="2001-02-03"))["as_at"]


def test_oversize_messages_are_resource_exhausted(server):
    with pytest.raises(grpc.RpcError) as caught:
        _decide(server, policy="caseworker_routing", facts={"site": MARK * (MAX_MESSAGE_BYTES // len(MARK) + 10)})()
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert MARK not in (caught.value.details() or "")
    # Just under the limit: read, and refused for what it holds.
    found = _bad_request(_decide(server, policy="caseworker_routing", facts={"site": "s" * (MAX_MESSAGE_BYTES - 100)}))
    assert found == {"facts.site": f"text longer than {values.MAX_STRING} characters"}


def test_ten_thousand_evidence_items_are_refused(server):
    found = _bad_request(_decide(server, policy="abuse_evidence", version="2018", facts={
        "decision_date": "2020-01-01", "evidence_items": [{"type": "arrest", "document_date": "2019-01-01"}] * 10_000}))
    assert found == {"facts.evidence_items": f"list longer than {values.MAX_LIST} items"}
    items = [{"type": "arrest", "document_date": "2019-01-01", "concerns_other_party": True}] * values.MAX_LIST
    decision = _decide(server, policy="abuse_evidence", version="2018",
                       facts={"decision_date": "2020-01-01", "evidence_items": items})()
    assert len(decision.items) == values.MAX_LIST


# --- the same checks in-process (the Python API, `python -m rules decide`) ----------------------

def _refused(evaluator, **request) -> dict[str, str]:
    with pytest.raises(RequestError) as caught:
        evaluator.decide(DecisionRequest(**request))
    return {v.field: v.description for v in caught.value.violations}


def test_invalid_unicode_text_is_refused_before_the_engine(evaluator):
    # Was an unwrapped durable_rules error (and a session counted as never deleted): a lone
    # surrogate (JSON "\\ud800") cannot be encoded for the engine.
    found = _refused(evaluator, policy="caseworker_routing", version="review-2023-pilot",
                     facts={"site": f"{MARK}\ud800"})
    assert found == {"facts.site": "text is not valid Unicode"}
    assert durable_host.live_sessions() == 0


def test_percent_values_are_not_quoted_and_cannot_blow_up():
    spec = Fact(name="cap", type=FactType.PERCENT, description="a percent")
    for raw in (MARK, f"1e{MARK}", "101", -1, math.nan, "1e-999999999"):
        with pytest.raises(values.FactValueError) as caught:
            values.parse(spec, raw)
        assert MARK not in str(caught.value) and len(str(caught.value)) < 100
    assert values.parse(spec, "14.10") == "14.1" and values.parse(spec, "-0") == "0"


def test_the_engine_host_refuses_what_crashes_the_c_core(bundle):
    # A float written with an exponent (1e+16, Infinity) segfaulted the process; invalid text
    # failed before the session existed and then its deletion failed too.
    compiled = bundle.policies["application_fee"]["2017"]
    for bad in (1e16, math.inf, math.nan, "\ud800", ["\udfff"], {"k": 1e300}):
        with pytest.raises(durable_host.EngineError):
            durable_host.evaluate(compiled.ruleset, {**compiled.working_fact({}), "x": bad})
        assert durable_host.live_sessions() == 0
    assert compiled.run({}).complete


def test_undecodable_requests_name_their_fields():
    raw = _field(1, b"ok") + _field(2, b"\xff") + _field(4, _field(1, _field(1, b"a") + _field(2, _field(3, b"\xff"))))
    found = convert.undecodable(pb.DecideRequest, raw, ValueError("String field had bad UTF-8"))
    assert {v.field: v.description for v in found} == {"version": "text is not valid UTF-8",
                                                       "facts.a": "text is not valid UTF-8"}
    assert [v.field for v in convert.undecodable(pb.DecideRequest, b"\x0a\xff", ValueError("x"))] == [""]


def test_a_decision_with_a_shadow_is_answered(server):
    # Was INTERNAL: the service's log line read `shadow.version` (a Shadow has `policy.version`).
    for shadow in ("2013", "2018"):
        decision = _decide(server, policy="abuse_evidence", shadow_version=shadow)()
        assert decision.shadow.policy.version == shadow
