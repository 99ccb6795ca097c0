"""The benchmark's peer (bench/peer.py): the real Cerbos server, with the bench's config, decides
every decided golden case of application_fee 2017 as our engine does, one allowed action per
case, and writes each decision to its audit log."""
from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
import yaml

from bench import load, peer
from rules.engine.decision import DecisionRequest
from tests.eventually import eventually

CASES = sorted((Path(__file__).resolve().parent / "golden" / "application_fee" / "2017").glob("*.yaml"))
DECIDED = [(path.stem, case["request"]["facts"], case["expect_outcome"])
           for path in CASES if (case := yaml.safe_load(path.read_text()))["expect_outcome"] != "UNDETERMINED"]
UNDETERMINED = len(CASES) - len(DECIDED)  # Cerbos has no "not enough facts": those are left out

pytestmark = pytest.mark.skipif(not peer.BINARY.exists(),
                                reason=f"the Cerbos binary is not installed ({peer.BINARY}): run `npm ci`")


@pytest.fixture(scope="module")
def cerbos(tmp_path_factory):
    server = peer.start_cerbos(tmp_path_factory.mktemp("cerbos"))
    yield server
    server.stop()


def test_every_decided_golden_case(cerbos):
    assert len(DECIDED) >= 30 and UNDETERMINED == 2  # 36 cases today: 17 and 18 lack facts
    with grpc.insecure_channel(cerbos.target) as channel:
        check = channel.unary_unary(peer.CHECK)
        got = {name: peer.outcome(check(payload, timeout=10))
               for (name, _, _), payload in zip(DECIDED, peer.check_payloads([facts for _, facts, _ in DECIDED]))}
    assert got == {name: expected for name, _, expected in DECIDED}


def test_the_same_client_measures_it_and_its_audit_log_records_decisions(cerbos):
    payloads = peer.check_payloads([facts for _, facts, _ in DECIDED[:3]])
    assert len(load.latency(cerbos.target, peer.CHECK, payloads, 5, warmup=1)) == 5
    assert len(load.latency(cerbos.target, peer.HEALTH, [peer.HEALTH_REQUEST], 3, warmup=0)) == 3
    assert load.cpu_seconds([cerbos.pid]) > 0  # its start-up at least

    def decisions() -> list[dict]:  # the file backend writes in the background
        lines = cerbos.audit_log.read_text().splitlines() if cerbos.audit_log.exists() else []
        return [e for e in map(json.loads, lines) if e.get("log.kind") == "decision"]

    assert eventually(lambda: len(decisions()) >= 6)
    assert {e["checkResources"]["inputs"][0]["resource"]["kind"] for e in decisions()} == {"application_fee"}


def test_no_allowed_action_is_an_error():
    from cerbos.response.v1 import response_pb2
    response = response_pb2.CheckResourcesResponse(results=[response_pb2.CheckResourcesResponse.ResultEntry()])
    with pytest.raises(ValueError, match="exactly one"):
        peer.outcome(response.SerializeToString())


def test_the_bench_round_measures_it_beside_an_echo(cerbos):
    """bench.py's sequential round: Cerbos and an echo in alternating blocks, with server CPU per call."""
    echo = load.start_echo(1)
    try:
        payloads = peer.check_payloads([facts for _, facts, _ in DECIDED])
        latencies, cpu = load.alternating({"echo": (echo.target, load.ECHO, payloads, echo.pids),
                                           "Cerbos": (cerbos.target, peer.CHECK, payloads, [cerbos.pid])}, 40, block=20)
    finally:
        echo.stop()
    assert {name: len(samples) for name, samples in latencies.items()} == {"echo": 40, "Cerbos": 40}
    assert set(cpu) == {"echo", "Cerbos"} and all(seconds >= 0 for seconds in cpu.values())


def test_the_bench_workload_the_same_outcomes_and_no_cel_errors(cerbos, evaluator):
    """The bench's fee 2017 corpus (2% with a fact absent or null): Cerbos allows exactly one action
    for every case, agrees with our engine on each case the engine decides, and evaluates every
    condition without an error (an error would be a cheaper, different path)."""
    facts_list = load.corpus_facts("application_fee")
    with grpc.insecure_channel(cerbos.target) as channel:
        check = channel.unary_unary(peer.CHECK)
        got = [peer.outcome(check(payload, timeout=10)) for payload in peer.check_payloads(facts_list)]
    ours = [evaluator.decide(DecisionRequest(policy="application_fee", version="2017", facts=facts,
                                             counterfactuals=False)).outcome for facts in facts_list]
    differ = [(facts, a, b) for facts, a, b in zip(facts_list, ours, got) if a != "UNDETERMINED" and a != b]
    assert not differ and sum(a != "UNDETERMINED" for a in ours) > 450
    assert "Error evaluating CEL expression" not in (cerbos.audit_log.parent / "cerbos.log").read_text()
