"""gRPC load: our Decide RPC against floors: an echo server built like ours, one that records each
call durably, and one that burns a given CPU time per call.

    start_echo(workers, durable_dir=None, busy_seconds=0)     -> echo servers with .target and .stop()
    start_service(workdir, extra_args)                         -> our service, the same
    latency(target, method, payloads, n)                      -> per-call seconds, one client
    throughput(target, method, payloads, clients, seconds)     -> calls/s with p50/p99 and errors
    saturate(target, method, payloads, seconds)                -> the best calls/s over client counts
    saturate_in_turn({name: (target, method, payloads, counts)}, seconds) -> the same, targets taking turns
    alternating({name: (target, method, payloads, pids)}, n)   -> latency() of each in turns, and server CPU a call

Both servers are measured by the same client code on raw bytes (identity serializers), so the
client's cost is the same for each; build Decide payloads with decide_payloads(). Client and
echo processes are spawned ("spawn" context): a caller running this as a script needs the usual
`if __name__ == "__main__":` guard.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import yaml
from google.protobuf import struct_pb2

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
# Golden cases name parties and reasons as the engine does; the wire's enum values carry a prefix.
WIRE_PREFIXES = {"subject": "AUDIENCE_", "requested_by": "AUDIENCE_", "reason": "REQUEST_REASON_"}
ECHO = "/bench.Echo/Echo"
DECIDE = "/cms.policy.v1.PolicyDecisionService/Decide"
CALL_TIMEOUT = 10.0  # seconds; a call that takes longer counts as an error (DEADLINE_EXCEEDED)
_spawn = mp.get_context("spawn")
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(samples: list[float], q: float) -> float:
    """The q-quantile (0..1) of `samples` (nearest rank); nan if there are none."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- servers -------------------------------------------------------------------------------------

DURABLE_ROW_BYTES = 3000  # about a sealed decision (fee 2017: 2,992 bytes)


def _durable_echo(path: Path):
    """An echo handler that first commits a row of DURABLE_ROW_BYTES to SQLite at `path` as our
    decision log does (WAL, synchronous=FULL: fsync before the reply; a random text key and an
    index on time), one commit per call."""
    import sqlite3
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE rows (id TEXT PRIMARY KEY, at TEXT NOT NULL, body BLOB NOT NULL)")
    db.execute("CREATE INDEX rows_by_time ON rows (at)")
    lock = threading.Lock()

    def echo(request: bytes, context) -> bytes:
        body = request * (DURABLE_ROW_BYTES // max(len(request), 1) + 1)
        with lock:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO rows VALUES (?, ?, ?)",
                       (os.urandom(16).hex(), repr(time.time()), body[:DURABLE_ROW_BYTES]))
            db.execute("COMMIT")
        return request
    return echo


def _busy_echo(seconds: float):
    """An echo handler that first runs Python for `seconds` of its thread's CPU time, holding the
    GIL as a handler's own work does."""
    def echo(request: bytes, context) -> bytes:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass
        return request
    return echo


def _echo_worker(port: int, ready, durable_dir: str | None = None, busy_seconds: float = 0.0) -> None:
    """One echo server process: grpc.server as service/server.py build_server makes it (same pool
    and options, no interceptors), sharing `port` with its siblings through SO_REUSEPORT. With
    `durable_dir`, each call is first made durable there (_durable_echo, a file per process); with
    `busy_seconds`, each call first burns that much CPU (_busy_echo)."""
    from service.server import MAX_MESSAGE_BYTES
    try:
        handler = (_durable_echo(Path(durable_dir) / f"echo-{os.getpid()}.sqlite3") if durable_dir
                   else _busy_echo(busy_seconds) if busy_seconds else lambda request, context: request)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="rpc"),
                             options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                      ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                                      ("grpc.so_reuseport", 1)])
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(handler)})])
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
    except Exception as exc:
        ready.put(f"{type(exc).__name__}: {exc}")
        raise
    ready.put(None)
    server.wait_for_termination()


@dataclass
class EchoServer:
    target: str
    processes: list = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        for p in self.processes:
            p.terminate()
        for p in self.processes:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()


def start_echo(workers: int, durable_dir: str | os.PathLike | None = None, busy_seconds: float = 0.0) -> EchoServer:
    """`workers` echo server processes on one free loopback port, once every one has bound it and
    the port answers. With `durable_dir` (an existing directory), every call commits a row to SQLite
    there before it replies: the transport and durability floor of a service that records each
    request. With `busy_seconds`, every call first burns that much CPU in Python: the ceiling of a
    Python gRPC server whose handler costs that much."""
    port = free_port()
    ready = _spawn.Queue()
    echo = EchoServer(f"127.0.0.1:{port}")
    try:
        for _ in range(workers):
            proc = _spawn.Process(target=_echo_worker, daemon=True,
                                  args=(port, ready, durable_dir and str(durable_dir), busy_seconds))
            proc.start()
            echo.processes.append(proc)
        for _ in range(workers):
            error = ready.get(timeout=60)
            if error:
                raise RuntimeError(f"echo worker failed: {error}")
        with grpc.insecure_channel(echo.target) as channel:
            channel.unary_unary(ECHO)(b"ping", timeout=CALL_TIMEOUT, wait_for_ready=True)
    except BaseException:
        echo.stop()
        raise
    return echo


@dataclass
class ServiceProcess:
    target: str
    proc: subprocess.Popen
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        """SIGTERM, up to 10 s to finish, then SIGKILL; then anything left in its process group
        (worker processes) is killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_service(workdir: Path, extra_args: list[str], timeout: float = 60) -> ServiceProcess:
    """`python -m service` on a free loopback port (decision log and stderr, JSON lines, in
    `workdir`; `extra_args` e.g. ["--workers", "2"]), once it prints "listening on"."""
    workdir = Path(workdir)
    port = free_port()
    stderr_path = workdir / "service.stderr.jsonl"
    with open(stderr_path, "ab") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port),
             "--decision-log", str(workdir / "decisions.sqlite3"), "--no-watch", "--log-format", "json",
             *extra_args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    listening = threading.Event()

    def drain() -> None:  # read stdout to the end, so the pipe never fills
        for line in proc.stdout:
            if line.startswith("listening on"):
                listening.set()

    threading.Thread(target=drain, daemon=True).start()
    service = ServiceProcess(f"127.0.0.1:{port}", proc, stderr_path)
    deadline = time.monotonic() + timeout
    while not listening.wait(0.1):
        if proc.poll() is not None or time.monotonic() > deadline:
            service.stop()
            tail = stderr_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"service did not start (exit {proc.returncode}):\n{tail}")
    return service


# --- payloads ------------------------------------------------------------------------------------

def decide_payloads(policy: str, version: str | None = None, include_counterfactuals: bool = False) -> list[bytes]:
    """Serialized DecideRequests from the golden cases of `policy` (tests/golden/POLICY/VERSION;
    every version if None), as test_golden.py builds them; default Decides unless
    `include_counterfactuals`."""
    from cms_policy.v1 import policy_pb2 as pb
    out = []
    for path in sorted(GOLDEN.glob(f"{policy}/{version or '*'}/*.yaml")):
        req = yaml.safe_load(path.read_text())["request"]
        facts = struct_pb2.Struct()
        facts.update(req.get("facts", {}))
        message = pb.DecideRequest(policy=req["policy"], version=str(req.get("version", "")),
                                   as_at=str(req.get("as_at", "")), facts=facts,
                                   include_counterfactuals=include_counterfactuals,
                                   **{k: prefix + req[k] for k, prefix in WIRE_PREFIXES.items() if k in req})
        out.append(message.SerializeToString())
    if not out:
        raise ValueError(f"no golden requests for {policy}/{version or '*'} in {GOLDEN}")
    return out


def corpus_facts(policy: str, count: int = 500) -> list[dict]:
    """The facts of `count` synthetic requests (rules/authoring/corpus.py, shaped by the review's
    figures): the realistic mix, where golden cases are edge cases."""
    from rules.authoring import corpus
    return [case["facts"] for case in corpus.generate(policy, count)]


def corpus_payloads(policy: str, version: str, count: int = 500) -> list[bytes]:
    """Serialized default DecideRequests (no options) of corpus_facts(policy, count), pinned to `version`."""
    from cms_policy.v1 import policy_pb2 as pb
    out = []
    for case in corpus_facts(policy, count):
        facts = struct_pb2.Struct()
        facts.update(case)
        out.append(pb.DecideRequest(policy=policy, version=version, facts=facts).SerializeToString())
    return out


# --- clients -------------------------------------------------------------------------------------

def latency(target: str, method: str, payloads: list[bytes], n: int, warmup: int = 200) -> list[float]:
    """Seconds per call for `n` sequential unary calls (after `warmup` unmeasured ones) from one
    client on one channel, `payloads` round-robin. A failing call raises grpc.RpcError."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(method)
        call(payloads[0], timeout=CALL_TIMEOUT, wait_for_ready=True)
        for i in range(warmup):
            call(payloads[i % len(payloads)], timeout=CALL_TIMEOUT)
        out = []
        for i in range(n):
            payload = payloads[i % len(payloads)]
            started = time.perf_counter()
            call(payload, timeout=CALL_TIMEOUT)
            out.append(time.perf_counter() - started)
    return out


def cpu_seconds(pids) -> float:
    """User + system CPU time (every thread) that the processes `pids` have used so far: fields 14
    and 15 of /proc/<pid>/stat, in clock ticks. A process that has gone counts nothing."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after the command name, which may hold spaces
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 counting from 1)
    return total / _TICK


def alternating(targets: dict[str, tuple[str, str, list[bytes], list]], n: int,
                block: int = 250) -> tuple[dict[str, list[float]], dict[str, float]]:
    """latency() of each target (name: target, method, payloads, server pids), `n` calls each in
    alternating blocks (so drift in the machine's load hits each alike); and each one's server CPU
    seconds per call (cpu_seconds() around each block, its warm-up calls counted: ticks of 10 ms,
    so only a whole run's sum means much)."""
    warmup, blocks = 20, max(n // block, 1)
    out: dict[str, list[float]] = {name: [] for name in targets}
    cpu = dict.fromkeys(targets, 0.0)
    for _ in range(blocks):
        for name, (target, method, payloads, pids) in targets.items():
            before = cpu_seconds(pids)
            out[name] += latency(target, method, payloads, block, warmup=warmup)
            cpu[name] += cpu_seconds(pids) - before
    calls = blocks * (block + warmup + 1)  # latency() first waits for the server with one call
    return out, {name: seconds / calls for name, seconds in cpu.items()}


def _client_process(target, method, payloads, threads, seconds, warmup, barrier, results) -> None:
    """`threads` threads, each on its own channel and connection, calling back to back: `warmup`
    seconds unmeasured, then (once every client process is warm) `seconds` measured. Puts
    (calls, elapsed, latencies, errors, first_error) on `results`."""
    try:
        warm, go = threading.Barrier(threads + 1, timeout=warmup + 120), threading.Event()
        lock, totals = threading.Lock(), {"latencies": [], "errors": 0, "first_error": None}
        end = [0.0]

        def run(index: int) -> None:
            # A local subchannel pool: a connection per thread, so SO_REUSEPORT spreads them over workers.
            with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                call = channel.unary_unary(method)
                i, until = index, time.perf_counter() + warmup
                while time.perf_counter() < until:
                    try:
                        call(payloads[i % len(payloads)], timeout=CALL_TIMEOUT, wait_for_ready=True)
                    except grpc.RpcError:
                        pass  # counted in the measured run, if it persists
                    i += 1
                warm.wait()
                go.wait()
                latencies, errors, first_error = [], 0, None
                while (started := time.perf_counter()) < end[0]:
                    try:
                        call(payloads[i % len(payloads)], timeout=CALL_TIMEOUT)
                        latencies.append(time.perf_counter() - started)
                    except grpc.RpcError as exc:
                        errors += 1
                        first_error = first_error or f"{exc.code().name}: {exc.details()}"
                    i += 1
            with lock:
                totals["latencies"] += latencies
                totals["errors"] += errors
                totals["first_error"] = totals["first_error"] or first_error

        workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        warm.wait()
        barrier.wait(timeout=120)
        started = time.perf_counter()
        end[0] = started + seconds
        go.set()
        for w in workers:
            w.join()
        results.put((len(totals["latencies"]), time.perf_counter() - started, totals["latencies"],
                     totals["errors"], totals["first_error"]))
    except BaseException as exc:
        results.put(exc)
        raise


def throughput(target: str, method: str, payloads: list[bytes], clients: int, seconds: float,
               processes: int = 2, warmup: float = 1.0) -> dict:
    """`clients` threads, spread over `processes` client processes (the GIL caps one), calling back
    to back for `seconds` after `warmup` seconds. Returns calls (OK calls), per_second (OK calls per
    second of the longest process's run), p50/p99 (seconds, OK calls), errors (non-OK calls) and
    first_error ("CODE: details" or None)."""
    processes = min(processes, clients)
    barrier, results = _spawn.Barrier(processes), _spawn.Queue()
    procs = [_spawn.Process(target=_client_process, daemon=True, args=(
        target, method, payloads, clients // processes + (i < clients % processes), seconds, warmup,
        barrier, results)) for i in range(processes)]
    for p in procs:
        p.start()
    try:
        parts = []
        for _ in procs:
            part = results.get(timeout=seconds + warmup + 180)
            if isinstance(part, BaseException):
                raise RuntimeError(f"client process failed: {part!r}")
            parts.append(part)
    except queue.Empty:
        raise RuntimeError("client processes did not report") from None
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    latencies = [s for part in parts for s in part[2]]
    calls = sum(part[0] for part in parts)
    first_error = next((part[4] for part in parts if part[4]), None)
    return {"clients": clients, "calls": calls, "per_second": calls / max(part[1] for part in parts),
            "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
            "errors": sum(part[3] for part in parts), "first_error": first_error}


def saturate(target: str, method: str, payloads: list[bytes], seconds: float,
             client_counts=(4, 8, 16, 32), processes: int = 2) -> dict:
    """throughput() at each client count: the best per_second, the clients that gave it, and
    every point."""
    return _best([throughput(target, method, payloads, c, seconds, processes) for c in client_counts])


def saturate_in_turn(targets: dict[str, tuple[str, str, list[bytes], tuple[int, ...]]], seconds: float,
                     rounds: int = 2, processes: int = 2) -> dict[str, dict]:
    """saturate() for each of `targets` (name: target, method, payloads, client counts), the targets
    taking turns for `rounds` rounds of `seconds / rounds` a point, so that drift in the machine's
    load hits each alike: by name, the best per_second over every round and client count, and
    every point (with its round)."""
    points: dict[str, list[dict]] = {name: [] for name in targets}
    for round_ in range(rounds):
        for name, (target, method, payloads, counts) in targets.items():
            points[name] += [{**throughput(target, method, payloads, c, seconds / rounds, processes), "round": round_}
                             for c in counts]
    return {name: _best(found) for name, found in points.items()}


def _best(points: list[dict]) -> dict:
    best = max(points, key=lambda p: p["per_second"])
    return {"per_second": best["per_second"], "clients": best["clients"], "points": points}


if __name__ == "__main__":  # a quick look: echo against Decide (application_fee 2017), single process
    import tempfile

    def show(name: str, target: str, method: str, payloads: list[bytes]) -> None:
        samples = latency(target, method, payloads, 3000)
        sat = saturate(target, method, payloads, 3)
        print(f"{name:<7} p50 {percentile(samples, .5) * 1e3:6.3f} ms  p99 {percentile(samples, .99) * 1e3:6.3f} ms  "
              f"saturated {sat['per_second']:7.0f}/s at {sat['clients']} clients  "
              + "  ".join(f"{p['clients']}:{p['per_second']:.0f}/s,p99 {p['p99'] * 1e3:.1f}ms,err {p['errors']}"
                          for p in sat["points"]))

    payloads = decide_payloads("application_fee", "2017")
    echo = start_echo(2)
    try:
        show("echo", echo.target, ECHO, payloads)  # Decide's requests, echoed
    finally:
        echo.stop()
    with tempfile.TemporaryDirectory() as tmp:
        service = start_service(Path(tmp), sys.argv[1:])
        try:
            show("decide", service.target, DECIDE, payloads)
        finally:
            service.stop()
