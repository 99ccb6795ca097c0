"""`python -m service --workers N`: several server processes on one port, one decision log."""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import grpc
from google.protobuf import struct_pb2

from cms_policy.v1 import policy_pb2 as pb
from cms_policy.v1 import policy_pb2_grpc as pb_grpc

from .conftest import ROOT, start_service, stop_service


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def _wait_for(what, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("timed out")


def _records(log_path: Path) -> list[dict]:
    return [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]


def _fresh_channels(target: str, n: int) -> list[grpc.Channel]:
    # A channel of its own each (no shared subchannel): separate connections, spread by the kernel.
    return [grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(n)]


def _decide(channel: grpc.Channel) -> pb.DecideResponse:
    facts = struct_pb2.Struct()
    facts.update({"application_route": "family_based"})
    return pb_grpc.PolicyDecisionServiceStub(channel).Decide(
        pb.DecideRequest(policy="application_fee", version="2017", facts=facts), timeout=30)


def test_workers_share_the_port_and_the_decision_log(tmp_path):
    proc, channel, log_path = start_service(tmp_path, "--workers", "2", "--no-watch", "--log-format", "json")
    try:
        _wait_for(lambda: any(r["message"].startswith("serving with 2 worker") for r in _records(log_path)))
        workers = _children(proc.pid)
        assert len(workers) == 2
        target = channel._channel.target().decode()
        channels = _fresh_channels(target, 16)
        ids = [_decide(c).decision_id for c in channels for _ in range(2)]
        # Every decision is in the one log, and any worker finds any decision.
        for c, decision_id in zip(reversed(channels * 2), ids):
            logged = pb_grpc.PolicyDecisionServiceStub(c).GetDecision(pb.GetDecisionRequest(decision_id=decision_id))
            assert logged.decision.decision_id == decision_id
        with sqlite3.connect(tmp_path / "decisions.sqlite3") as db:
            assert db.execute("SELECT count(*) FROM decisions").fetchone()[0] == len(ids)
        deciders = {r["worker"] for r in _records(log_path) if r["message"] == "decision"}
        assert deciders == {0, 1}  # 16 connections all on one worker: 1 chance in 32,768

        # A worker that dies is replaced; the service keeps answering.
        victim = min(workers)
        subprocess.run(["kill", "-KILL", str(victim)], check=True)
        replacement = _wait_for(lambda: (_children(proc.pid) - workers) if len(_children(proc.pid)) == 2 else None)
        assert victim not in _children(proc.pid) and len(replacement) == 1
        _wait_for(lambda: sum(r["message"].startswith("serving ") for r in _records(log_path)) >= 3)
        assert all(_decide(c).outcome == "NOT_APPLICABLE" for c in _fresh_channels(target, 8))
    finally:
        stop_service(proc, channel)
    assert proc.returncode == 0 and not _children(proc.pid)


def test_a_reload_asked_of_one_worker_reaches_every_worker(tmp_path):
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "rules" / "policies", policies)
    proc, channel, log_path = start_service(tmp_path, "--workers", "2", "--no-watch", "--log-format", "json",
                                            "--policies", str(policies))
    try:
        _wait_for(lambda: any(r["message"].startswith("serving with 2 worker") for r in _records(log_path)))
        target = channel._channel.target().decode()
        before = pb_grpc.PolicyDecisionServiceStub(channel).ListPolicies(pb.ListPoliciesRequest()).bundle_hash
        fee = policies / "application_fee" / "2017.yaml"
        fee.write_text(fee.read_text() + "\n# a comment changes the content hash\n")
        reloaded = pb_grpc.PolicyAdminServiceStub(channel).ReloadPolicies(pb.ReloadPoliciesRequest())
        assert reloaded.changed and reloaded.bundle_hash != before

        def everyone_reloaded() -> bool:
            hashes = {pb_grpc.PolicyDecisionServiceStub(c).ListPolicies(pb.ListPoliciesRequest()).bundle_hash
                      for c in _fresh_channels(target, 12)}
            return hashes == {reloaded.bundle_hash}
        _wait_for(everyone_reloaded, timeout=30)
        reloads = {r["worker"] for r in _records(log_path) if r["message"].startswith("policy bundle ")}
        assert reloads == {0, 1}
    finally:
        stop_service(proc, channel)


def test_a_worker_that_cannot_start_stops_the_service_with_its_status(tmp_path):
    broken = tmp_path / "policies"
    broken.mkdir()
    (broken / "x.yaml").write_text("policy: [")
    result = subprocess.run([*_service_command(tmp_path), "--workers", "2", "--policies", str(broken)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "policy files rejected" in result.stderr


def _service_command(workdir: Path) -> list[str]:
    return [sys.executable, "-m", "service", "--port", "0", "--host", "127.0.0.1",
            "--decision-log", str(workdir / "decisions.sqlite3")]


def test_workers_count_is_checked():
    result = subprocess.run([sys.executable, "-m", "service", "--workers", "0"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "--workers" in result.stderr


# --- no worker outlives its supervisor, no two supervisors share a port, no frozen worker stays (issue 27 item 3)

def _gone(pids: set[int]) -> bool:
    return not any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in pids)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


def test_killing_the_supervisor_stops_its_workers_and_frees_the_port(tmp_path):
    proc, channel, log_path = start_service(tmp_path, "--workers", "2", "--no-watch", "--log-format", "json",
                                            "--grace", "1")
    target = channel._channel.target().decode()
    workers = _wait_for(lambda: _children(proc.pid) if len(_children(proc.pid)) == 2 else None)
    channel.close()
    proc.kill()  # kill -9: no chance to stop them
    proc.wait()
    _wait_for(lambda: _gone(workers), timeout=30)
    assert any(r["message"] == "the supervisor is gone; stopping" for r in _records(log_path))
    # The port is free again: a new service takes it and is the only one answering there.
    port = target.rsplit(":", 1)[1]
    again = subprocess.Popen([*_service_command(tmp_path)[:-2], "--port", port, "--workers", "2", "--no-watch",
                              "--decision-log", str(tmp_path / "decisions.sqlite3")],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert again.stdout.readline().startswith("listening on ")
        assert all(_decide(c).outcome == "NOT_APPLICABLE" for c in _fresh_channels(target, 4))
    finally:
        again.terminate()
        again.wait(timeout=60)


def test_a_second_service_with_workers_on_a_served_port_refuses_to_start(tmp_path):
    proc, channel, _ = start_service(tmp_path, "--workers", "2", "--no-watch")
    try:
        port = channel._channel.target().decode().rsplit(":", 1)[1]
        other = tmp_path / "other"
        other.mkdir()
        result = subprocess.run([*_service_command(other)[:-2], "--port", port, "--workers", "2", "--no-watch",
                                 "--decision-log", str(other / "decisions.sqlite3")],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port}: port {port} is already served by another" in result.stderr
        assert not (other / "decisions.sqlite3").exists()  # no worker started: no decision goes astray
    finally:
        stop_service(proc, channel)


def test_a_frozen_worker_is_killed_and_replaced(tmp_path):
    proc, channel, log_path = start_service(tmp_path, "--workers", "2", "--no-watch", "--log-format", "json",
                                            "--worker-timeout", "3")
    try:
        target = channel._channel.target().decode()
        workers = _wait_for(lambda: _children(proc.pid) if len(_children(proc.pid)) == 2 else None)
        frozen = min(workers)
        subprocess.run(["kill", "-STOP", str(frozen)], check=True)
        _wait_for(lambda: frozen not in _children(proc.pid) and len(_children(proc.pid)) == 2, timeout=30)
        killed = [r for r in _records(log_path) if r["message"] == "worker stopped answering; killing it"]
        assert [r["pid"] for r in killed] == [frozen] and killed[0]["silent_s"] >= 3  # rounded to 0.1 s
        _wait_for(lambda: sum(r["message"].startswith("serving ") for r in _records(log_path)) >= 3)
        assert all(_decide(c).outcome == "NOT_APPLICABLE" for c in _fresh_channels(target, 8))
    finally:
        stop_service(proc, channel)
