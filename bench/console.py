"""What a console user waits for, against what the same call costs over gRPC, in one run.

    .venv/bin/python bench/console.py [--rounds 5] [--calls 100]

Starts the service (a throwaway decision log) and the console (`python -m console`, as `./dev
console` does) and times, with one sequential client over keep-alive HTTP: a policy version's page
(GetPolicy and its golden cases), the try-a-case form, a tried fee case (Decide with counterfactuals)
and a decision's page (GetDecision and GetPolicy); beside them, the same client's gRPC calls that
each page makes, so a ratio says what the console's rendering adds. p50 of each round, median of
the rounds; rounds interleave the kinds so that the machine's drift falls on all alike.
"""
from __future__ import annotations

import argparse
import http.client
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from google.protobuf import struct_pb2

from cms_policy.v1 import policy_pb2 as pb
from cms_policy.v1 import policy_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import start_service, stop_service  # noqa: E402
from tests.consoletools import _free_port, grpc_target  # noqa: E402

FEE = {"application_route": "direct_pay", "applicant_in_northern_ireland": False,
       "application_date": "2019-03-15", "applicant_date_of_birth": "1985-07-20",
       "abuse_of_applicant": True, "abuse_reported_to": ["police"], "declaration": "at_application"}
FORM = {"facts-application_route": "direct_pay", "facts-applicant_in_northern_ireland": "no",
        "facts-application_date-day": "15", "facts-application_date-month": "3", "facts-application_date-year": "2019",
        "facts-applicant_date_of_birth-day": "20", "facts-applicant_date_of_birth-month": "7",
        "facts-applicant_date_of_birth-year": "1985", "facts-abuse_of_applicant": "yes",
        "facts-abuse_reported_to": "police", "facts-declaration": "at_application", "action": "decide"}


def _p50(call, n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        proc, channel, _ = start_service(Path(workdir))
        port = _free_port()
        console = subprocess.Popen([sys.executable, "-m", "console", "--service", grpc_target(proc), "--port", str(port),
                                    "--reports", workdir], cwd=ROOT, stderr=subprocess.DEVNULL)
        try:
            stub = policy_pb2_grpc.PolicyDecisionServiceStub(channel)
            facts = struct_pb2.Struct()
            facts.update(FEE)
            decide = pb.DecideRequest(policy="application_fee", version="2017", facts=facts, include_counterfactuals=True)
            decision_id = stub.Decide(decide).decision_id
            time.sleep(2)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

            def get(path: str) -> str:
                conn.request("GET", path)
                reply = conn.getresponse()
                body = reply.read().decode()
                assert reply.status == 200, (path, reply.status)
                return body

            conn.request("GET", "/try/application_fee/2017")  # the form's page gives the session its CSRF token
            reply = conn.getresponse()
            cookie = reply.getheader("set-cookie", "").split(";", 1)[0]
            form = reply.read().decode()
            token = re.search(r'name="csrf_token" value="([^"]+)"', form)[1]
            body = urllib.parse.urlencode({**FORM, "csrf_token": token})

            def post_try() -> None:
                conn.request("POST", "/try/application_fee/2017", body=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
                reply = conn.getresponse()
                page = reply.read().decode()
                assert reply.status == 200 and "WAIVED" in page, reply.status

            kinds = {
                "version page": (lambda: get("/policies/application_fee/2017"),
                                 lambda: stub.GetPolicy(pb.GetPolicyRequest(policy="application_fee", version="2017"))),
                "try-a-case form": (lambda: get("/try/application_fee/2017"),
                                    lambda: stub.GetPolicy(pb.GetPolicyRequest(policy="application_fee", version="2017"))),
                "a tried case": (post_try, lambda: stub.Decide(decide)),
                "a decision's page": (lambda: get(f"/decisions/{decision_id}"),
                                      lambda: stub.GetDecision(pb.GetDecisionRequest(decision_id=decision_id))),
            }
            rounds: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
            for _ in range(args.rounds):
                for kind, (page, rpc) in kinds.items():
                    rounds[kind].append((_p50(page, args.calls), _p50(rpc, args.calls)))
            print(f"{'page':20} {'console ms':>11} {'its main RPC ms':>16} {'ratio':>6}")
            for kind, values in rounds.items():
                page_ms = statistics.median(v[0] for v in values)
                rpc_ms = statistics.median(v[1] for v in values)
                print(f"{kind:20} {page_ms:11.2f} {rpc_ms:16.2f} {page_ms / rpc_ms:6.1f}x")
        finally:
            console.terminate()
            console.wait(timeout=30)
            stop_service(proc, channel)


if __name__ == "__main__":
    main()
