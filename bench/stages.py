"""Where a round trip goes: client send -> handler start -> handler end -> client reply, per call.

    .venv/bin/python bench/stages.py            # about a minute

One client calls one server process, sequentially. The server stamps its handler's start and end
with the same clock the client uses (time.perf_counter: CLOCK_MONOTONIC, shared by processes), so
each call splits into `in` (client to handler), `handler` and `out` (handler to client). Servers:

  echo      replies at once (the transport floor)
  idle 2ms  sleeps 2 ms, then replies: what merely waiting costs the transport
  fdatasync appends 3 KB to a file and fdatasyncs it: the cheapest durable write
  Decide    our service in process (build_server: interceptors, decision log on), fee 2017

On a VM a round trip grows with the time the handler takes even when the handler only sleeps:
idle vCPUs are halted and take hundreds of µs to wake (see bench/README.md).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import grpc  # noqa: E402
import load  # noqa: E402

CALLS = 2000
SERVERS = ("echo", "idle 2ms", "fdatasync", "Decide")


def _echo_handler(kind: str, workdir: str, stamps: list[float]):
    durable = os.open(Path(workdir) / "appended", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def handler(request: bytes, context) -> bytes:
        stamps.append(time.perf_counter())
        if kind == "idle 2ms":
            time.sleep(0.002)
        elif kind == "fdatasync":
            os.write(durable, (request * (3000 // len(request) + 1))[:3000])
            os.fdatasync(durable)
        stamps.append(time.perf_counter())
        return request
    return handler


def _server(kind: str, port: int, workdir: str, pipe) -> None:
    stamps: list[float] = []
    if kind == "Decide":
        from rules.audit.factory import open_log
        from rules.engine.loader import load_bundle
        from service.observability import configure_logging
        from service.reload import LiveBundle
        from service.server import PolicyDecisionService, build_server
        configure_logging("json", stream=open(os.devnull, "w"))
        decide = PolicyDecisionService.Decide

        def stamped(self, request, context):
            stamps.append(time.perf_counter())
            try:
                return decide(self, request, context)
            finally:
                stamps.append(time.perf_counter())
        PolicyDecisionService.Decide = stamped
        decision_log = open_log(Path(workdir) / "decisions.sqlite3", keys=[os.urandom(32)])
        server, _ = build_server(LiveBundle(load_bundle()), f"127.0.0.1:{port}", decision_log=decision_log)
    else:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo_handler(kind, workdir, stamps))})])
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
    pipe.send("ready")
    pipe.recv()
    pipe.send(stamps)
    server.stop(None)


def measure(kind: str, payloads: list[bytes], calls: int = CALLS) -> dict[str, float]:
    """Median µs of each stage (and the total) over `calls` sequential calls to a `kind` server."""
    port, (ours, theirs) = load.free_port(), mp.get_context("spawn").Pipe()
    with tempfile.TemporaryDirectory() as workdir:
        proc = mp.get_context("spawn").Process(target=_server, args=(kind, port, workdir, theirs), daemon=True)
        proc.start()
        try:
            ours.recv()
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary(load.DECIDE if kind == "Decide" else load.ECHO)
                for i in range(300):
                    call(payloads[i % len(payloads)], timeout=load.CALL_TIMEOUT, wait_for_ready=True)
                sent = []
                for i in range(calls):
                    started = time.perf_counter()
                    call(payloads[i % len(payloads)], timeout=load.CALL_TIMEOUT)
                    sent.append((started, time.perf_counter()))
            ours.send("stamps")
            stamps = ours.recv()[-2 * calls:]
        finally:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    median = lambda xs: statistics.median(xs) * 1e6  # noqa: E731
    return {"total": median([end - start for start, end in sent]),
            "in": median([stamps[2 * i] - start for i, (start, _) in enumerate(sent)]),
            "handler": median([stamps[2 * i + 1] - stamps[2 * i] for i in range(calls)]),
            "out": median([end - stamps[2 * i + 1] for i, (_, end) in enumerate(sent)])}


if __name__ == "__main__":
    payloads = load.corpus_payloads("application_fee", "2017")
    print(f"{'server':<12}{'total':>8}{'in':>8}{'handler':>9}{'out':>8}   (µs, median of {CALLS} calls)")
    for _ in range(2):  # twice, in turn: the machine drifts
        for kind in SERVERS:
            r = measure(kind, payloads)
            print(f"{kind:<12}{r['total']:>8.0f}{r['in']:>8.0f}{r['handler']:>9.0f}{r['out']:>8.0f}")
