"""The benchmark's peer: Cerbos, a policy decision point written in Go, deciding application_fee 2017
(bench/cerbos/policies/) with its audit log on (bench/cerbos/config.yaml).

    start_cerbos(workdir)          -> the server, with .target, .pid, .audit_log and .stop()
    check_payloads(facts_list)     -> serialized CheckResourcesRequests, one per case
    outcome(response_bytes)        -> the outcome its one allowed action stands for

Requests are built with the generated stubs of the `cerbos` package and sent as raw bytes by the
same client code as ours (load.latency), so that one client code path measures both services.
The server binary comes from npm (package.json: @cerbos/cerbos-linux-x64).
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from cerbos.effect.v1 import effect_pb2
from cerbos.engine.v1 import engine_pb2
from cerbos.request.v1 import request_pb2
from cerbos.response.v1 import response_pb2
from google.protobuf import struct_pb2

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BINARY = ROOT / "node_modules" / "@cerbos" / "cerbos-linux-x64" / "cerbos-linux-x64"
CONFIG = HERE / "cerbos" / "config.yaml"
POLICIES = HERE / "cerbos" / "policies"
CHECK = "/cerbos.svc.v1.CerbosService/CheckResources"
HEALTH = "/grpc.health.v1.Health/Check"  # both servers serve it; an empty request asks about the server
HEALTH_REQUEST = b""  # grpc.health.v1.HealthCheckRequest(service=""), serialized
# The policy's actions, one allowed per case, and the outcomes they stand for.
OUTCOMES = {"not_applicable": "NOT_APPLICABLE", "waived": "WAIVED", "fee_payable": "FEE_PAYABLE"}


def _free_port() -> int:  # as load.free_port: this module stands alone (tests import it as bench.peer)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class CerbosServer:
    target: str
    proc: subprocess.Popen
    audit_log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_cerbos(workdir: Path, timeout: float = 60) -> CerbosServer:
    """The Cerbos server on free loopback ports, its audit log and its own log in `workdir`, once
    its gRPC health check says SERVING. FileNotFoundError if the npm package is not installed."""
    if not BINARY.exists():
        raise FileNotFoundError(f"{BINARY} (npm ci installs it from package.json)")
    workdir = Path(workdir)
    port = _free_port()
    env = {**os.environ, "CERBOS_BENCH_GRPC_PORT": str(port), "CERBOS_BENCH_HTTP_PORT": str(_free_port()),
           "CERBOS_BENCH_POLICIES": str(POLICIES), "CERBOS_BENCH_AUDIT_LOG": str(workdir / "cerbos-audit.jsonl")}
    with open(workdir / "cerbos.log", "ab") as log:
        proc = subprocess.Popen([str(BINARY), "server", f"--config={CONFIG}", "--log-level=warn"],
                                cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = CerbosServer(f"127.0.0.1:{port}", proc, workdir / "cerbos-audit.jsonl")
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(server.target) as channel:
        health = channel.unary_unary(HEALTH)
        while True:
            try:
                if health(HEALTH_REQUEST, timeout=2, wait_for_ready=True) == b"\x08\x01":  # status: SERVING
                    return server
            except grpc.RpcError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                tail = (workdir / "cerbos.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"cerbos did not start (exit {proc.returncode}):\n{tail}")
            time.sleep(0.1)


def check_request(facts: dict, request_id: str = "") -> request_pb2.CheckResourcesRequest:
    """One CheckResources request: the case's facts as the resource's attributes, every outcome
    action asked about, by a caseworker (the policy allows any role)."""
    attrs = struct_pb2.Struct()
    attrs.update(facts)
    resource = engine_pb2.Resource(kind="application_fee", policy_version="2017", id=request_id or "case")
    for name, value in attrs.fields.items():
        resource.attr[name].CopyFrom(value)
    return request_pb2.CheckResourcesRequest(
        request_id=request_id, principal=engine_pb2.Principal(id="caseworker", roles=["caseworker"]),
        resources=[request_pb2.CheckResourcesRequest.ResourceEntry(actions=list(OUTCOMES), resource=resource)])


def check_payloads(facts_list: list[dict]) -> list[bytes]:
    return [check_request(facts, f"case-{i}").SerializeToString() for i, facts in enumerate(facts_list)]


def outcome(response: bytes) -> str:
    """The outcome of a CheckResources response: its one allowed action's. ValueError otherwise."""
    (result,) = response_pb2.CheckResourcesResponse.FromString(response).results
    allowed = [a for a, effect in result.actions.items() if effect == effect_pb2.EFFECT_ALLOW]
    if len(allowed) != 1:
        raise ValueError(f"expected exactly one allowed action, got {sorted(allowed)}")
    return OUTCOMES[allowed[0]]
