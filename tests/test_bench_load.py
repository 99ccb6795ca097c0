"""Smoke test of bench/load.py: echo and Decide, a few calls each, servers stopped afterwards."""
from __future__ import annotations

import os
import sqlite3

from bench import load
from cms_policy.v1 import policy_pb2 as pb


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_echo_and_decide(tmp_path):
    payloads = load.decide_payloads("application_fee", "2017")
    first = pb.DecideRequest.FromString(payloads[0])  # a default Decide: no counterfactuals, no options
    assert payloads and not first.include_counterfactuals and not first.omit_counterfactuals
    assert pb.DecideRequest.FromString(load.decide_payloads("application_fee", "2017", True)[0]).include_counterfactuals

    echo = load.start_echo(2)
    try:
        assert len(load.latency(echo.target, load.ECHO, payloads, 20, warmup=5)) == 20
        result = load.saturate(echo.target, load.ECHO, payloads, 0.3, client_counts=(2,))
        assert result["points"][0]["calls"] > 0 and result["points"][0]["errors"] == 0
        in_turn = load.saturate_in_turn({"a": (echo.target, load.ECHO, payloads, (2,)),
                                         "b": (echo.target, load.ECHO, payloads[:1], (1, 2))}, 0.4, rounds=2)
        assert [(p["round"], p["clients"]) for p in in_turn["b"]["points"]] == [(0, 1), (0, 2), (1, 1), (1, 2)]
        assert in_turn["a"]["per_second"] == max(p["per_second"] for p in in_turn["a"]["points"]) > 0
    finally:
        echo.stop()
    assert all(not p.is_alive() for p in echo.processes)

    durable = load.start_echo(1, durable_dir=tmp_path)
    try:
        assert len(load.latency(durable.target, load.ECHO, payloads[:1], 3, warmup=0)) == 3
    finally:
        durable.stop()
    (log,) = tmp_path.glob("echo-*.sqlite3")
    with sqlite3.connect(log) as db:  # the warm-up call, the 3 measured ones and start_echo's ping
        assert db.execute("SELECT count(*), min(length(body)) FROM rows").fetchone() == (5, load.DURABLE_ROW_BYTES)

    busy = load.start_echo(1, busy_seconds=0.02)
    try:  # each call burns 20 ms of the worker's CPU before it replies
        samples = load.latency(busy.target, load.ECHO, payloads[:1], 3, warmup=0)
    finally:
        busy.stop()
    assert len(samples) == 3 and min(samples) >= 0.02

    service = load.start_service(tmp_path, [])
    try:
        assert len(load.latency(service.target, load.DECIDE, payloads, 10, warmup=2)) == 10
        bad = pb.DecideRequest(policy="no_such_policy").SerializeToString()
        result = load.throughput(service.target, load.DECIDE, [bad], clients=2, seconds=0.3, warmup=0.1)
        assert result["calls"] == 0 and result["errors"] > 0
        assert result["first_error"].startswith("INVALID_ARGUMENT")
    finally:
        service.stop()
    assert _gone(service.pid)
