"""Connection, stream and timeout limits (issue 27 item 4), against the real service: silent and
idle connections are closed; connections beyond the cap (kept below the open-file limit) are
closed at once and logged once, and the service goes on serving; a client that opens many streams
and never reads its replies costs a bounded share of the server's CPU and memory.

Small counts by default; `CMS_CHAOS=1 python -m pytest tests/test_limits.py` runs the issue's
sizes (1,011 idle sockets against a 1,024-file limit, 2,000 unread replies)."""
from __future__ import annotations

import json
import os
import re
import resource
import select
import socket
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cms_policy.v1 import policy_pb2 as pb
from cms_policy.v1 import policy_pb2_grpc
from service.limits import RESERVED_FDS, Limits

from .conftest import start_service, stop_service
from .eventually import eventually
from .http2 import ACK, GOAWAY, MAX_CONCURRENT_STREAMS, PING, RST_STREAM, Connection, frame

INITIAL_WINDOW = 65_535  # bytes a peer may send on a connection unread (RFC 9113, 6.9.2)

CHAOS = os.environ.get("CMS_CHAOS", "") not in ("", "0")
GET_POLICY = "/cms.policy.v1.PolicyDecisionService/GetPolicy"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
REFUSED_STREAM = 7
NEW_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]  # else channels to one address share a connection


def _port(log_path) -> int:
    return int(re.search(r"^listening on 127\.0\.0\.1:(\d+)$", log_path.read_text(), re.M)[1])


def _records(log_path, message: str) -> list[dict]:
    out = []
    for line in log_path.read_text().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("message", "").startswith(message):
                out.append(record)
    return out


def _closed_within(sockets: list[socket.socket], seconds: float) -> list[socket.socket]:
    """Those of `sockets` the server closes (end of file or reset) within `seconds`; data is ignored."""
    closed, open_ = [], {s.fileno(): s for s in sockets}
    poll = select.poll()
    for fd in open_:
        poll.register(fd, select.POLLIN)
    limit = time.monotonic() + seconds
    while open_ and (left := limit - time.monotonic()) > 0:
        for fd, _ in poll.poll(left * 1000):
            try:
                ended = open_[fd].recv(65536, socket.MSG_DONTWAIT) == b""
            except BlockingIOError:
                continue
            except OSError:
                ended = True
            if ended:
                poll.unregister(fd)
                closed.append(open_.pop(fd))
    return closed


def _until_closed(conn: Connection, answer_pings: bool, seconds: float = 20, call_on_ping: bool = False
                  ) -> tuple[float, list[int], bytes]:
    """Read frames until the server closes: (seconds it took, frame types seen, GOAWAY's debug text).
    `call_on_ping`: a health check each time the server pings, so the connection is never idle."""
    conn.sock.settimeout(seconds)
    started, kinds, why = time.monotonic(), [], b""
    try:
        while True:
            kind, flags, _, payload = conn.read_frame()
            kinds.append(kind)
            if kind == PING and not flags & ACK and answer_pings:
                conn.sock.sendall(frame(PING, ACK, 0, payload))
                if call_on_ping and not why:
                    conn.call(HEALTH_CHECK, b"")
            if kind == GOAWAY:
                why = payload[8:]
    except (ConnectionError, OSError):
        pass
    return time.monotonic() - started, kinds, why


def _health(channel: grpc.Channel, **kw) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), **kw).status


@pytest.fixture(scope="module")
def short_timeouts(tmp_path_factory):
    """A service whose timeouts are short enough to watch them fire."""
    proc, channel, log_path = start_service(
        tmp_path_factory.mktemp("limits"), "--no-watch", "--handshake-timeout", "1", "--idle-timeout", "2.5",
        "--keepalive-time", "0.3", "--keepalive-timeout", "0.5", "--max-connection-age", "5",
        "--max-connection-age-grace", "1")
    yield _port(log_path)
    stop_service(proc, channel)


def test_a_connection_that_never_speaks_is_closed_after_the_handshake_timeout(short_timeouts):
    with socket.create_connection(("127.0.0.1", short_timeouts)) as silent:
        assert _closed_within([silent], 10)


def test_a_connection_without_calls_is_pinged_and_closed_after_the_idle_timeout(short_timeouts):
    conn = Connection("127.0.0.1", short_timeouts)
    try:
        conn.handshake()
        took, kinds, why = _until_closed(conn, answer_pings=True)
    finally:
        conn.close()
    assert kinds.count(PING) >= 2  # keepalive on an idle connection, answered
    assert why == b"connection idle" and 2 < took < 4.4, (took, why)  # before the maximum age


def test_a_client_that_stops_answering_pings_is_dropped(short_timeouts):
    conn = Connection("127.0.0.1", short_timeouts)
    try:
        conn.handshake()
        took, kinds, why = _until_closed(conn, answer_pings=False)
    finally:
        conn.close()
    assert PING in kinds and why != b"connection idle" and took < 2, (took, why)  # before idle or age


def test_a_busy_connection_is_asked_to_go_at_its_maximum_age_then_closed(short_timeouts):
    conn = Connection("127.0.0.1", short_timeouts)
    try:
        conn.handshake()
        took, kinds, why = _until_closed(conn, answer_pings=True, call_on_ping=True)
    finally:
        conn.close()
    assert why == b"max_age" and 4 < took < 10, (took, why)


def _lower_file_limit(files: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))


def test_sockets_beyond_the_connection_cap_are_closed_at_once_and_logged_and_clients_still_get_answers(tmp_path):
    """Issue 27: 1,011 idle sockets used up the 1,024 files; new clients then waited until their
    deadline and nothing was logged. The cap now stays below the file limit."""
    files = 1024 if CHAOS else 128
    cap = max(files - RESERVED_FDS, files // 2)
    assert cap < Limits().max_connections  # the default cap is lowered to fit
    proc, channel, log_path = start_service(tmp_path, "--no-watch", preexec_fn=_lower_file_limit(files))
    port = _port(log_path)
    sockets = []
    try:
        assert _records(log_path, "--max-connections 1000 lowered to")
        sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(cap + (1011 - cap if CHAOS else 40))]
        closed = _closed_within(sockets, 2)  # less than the handshake timeout (10 s)
        assert cap - 5 <= len(sockets) - len(closed) <= cap  # each held one; a few the service's own
        [warning] = eventually(lambda: _records(log_path, "connection limit reached"))
        assert warning["level"] == "WARNING" and warning["max_connections"] == cap
        # a new client (a connection of its own) is told at once, not left waiting for its deadline
        started = time.monotonic()
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=NEW_CONNECTION) as fresh:
            with pytest.raises(grpc.RpcError) as refused:
                _health(fresh, timeout=20)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() - started < 10
        if CHAOS:  # the silent ones go after the handshake timeout; a client that waits is served
            with grpc.insecure_channel(f"127.0.0.1:{port}", options=NEW_CONNECTION) as patient:
                assert _health(patient, timeout=60, wait_for_ready=True) == health_pb2.HealthCheckResponse.SERVING
        for s in sockets:
            s.close()
        assert _health(channel, timeout=30, wait_for_ready=True) == health_pb2.HealthCheckResponse.SERVING
        assert len(_records(log_path, "connection limit reached")) == 1  # once a minute, not per connection
    finally:
        for s in sockets:
            s.close()
        stop_service(proc, channel)


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_bytes(pid: int) -> int:
    return int(open(f"/proc/{pid}/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _settled_cpu(pid: int) -> float:
    """The process's CPU seconds once it has stopped using any for a moment."""
    last = _cpu_seconds(pid)
    for _ in range(240):
        time.sleep(0.5)
        now = _cpu_seconds(pid)
        if now == last:
            return now
        last = now
    return last


def test_a_client_that_never_reads_its_replies_costs_a_bounded_share_of_cpu_and_memory(tmp_path):
    """Issue 27: 2,000 GetPolicy calls whose replies were never read cost 31 s of CPU and 160 MiB.
    Now one connection has at most --max-streams-per-connection calls open; the server refuses
    the streams beyond (REFUSED_STREAM), so the cost is that of the cap, not of the calls sent."""
    cap = 16  # well below the calls sent, so that the bound shows
    proc, channel, log_path = start_service(tmp_path, "--no-watch", "--max-streams-per-connection", str(cap))
    calls = 2000 if CHAOS else 300
    # The largest policy document (28 KB): few replies fit the client's unread 64 KiB window, and each
    # that does completes and frees its stream for one more call past the cap.
    request = pb.GetPolicyRequest(policy="maintenance_calculation", version="2012", markdown=True)
    stub = policy_pb2_grpc.PolicyDecisionServiceStub(channel)
    conn = None
    try:
        reply_bytes = stub.GetPolicy(request, timeout=30).ByteSize()
        before = _settled_cpu(proc.pid)
        for _ in range(20):
            stub.GetPolicy(request, timeout=30)
        one_call = (_settled_cpu(proc.pid) - before) / 20
        assert one_call > 0
        rss = _rss_bytes(proc.pid)
        before = _settled_cpu(proc.pid)
        conn = Connection("127.0.0.1", _port(log_path))
        assert conn.handshake()[MAX_CONCURRENT_STREAMS] == cap
        for _ in range(calls):  # ignoring the setting, as a hostile client would
            conn.call(GET_POLICY, request.SerializeToString())
        spent = _settled_cpu(proc.pid) - before
        grew = _rss_bytes(proc.pid) - rss
        # unbounded, every call would be answered and held: `calls` calls' CPU, `calls` replies' memory
        assert spent < calls / 4 * one_call, f"{spent:.2f}s of CPU, {one_call * 1000:.1f}ms a call"
        assert grew < calls * reply_bytes / 2, f"RSS grew {grew / 2**20:.1f} MiB"
        conn.sock.settimeout(2)
        refused = 0
        try:
            while True:
                kind, _, _, payload = conn.read_frame()
                refused += kind == RST_STREAM and int.from_bytes(payload, "big") == REFUSED_STREAM
        except (TimeoutError, ConnectionError):
            pass
        assert refused >= calls - cap - INITIAL_WINDOW // reply_bytes
        assert stub.GetPolicy(request, timeout=30).ByteSize() == reply_bytes  # other clients are served
    finally:
        if conn is not None:
            conn.close()
        stop_service(proc, channel)


def test_calls_beyond_the_concurrent_rpc_limit_are_resource_exhausted_at_once(tmp_path):
    proc, channel, _ = start_service(tmp_path, "--no-watch", "--max-concurrent-rpcs", "2")
    # counterfactuals for four children: a few hundred ms each, so the calls overlap
    slow = pb.DecideRequest(policy="maintenance_calculation", version="2012", include_counterfactuals=True)
    slow.facts.update({"gross_weekly_income": 45000, "relevant_other_children": 2,
                       "receives_prescribed_benefit": False, "paying_parent_is_prisoner": False,
                       "nil_rate_category": "none",
                       "qualifying_children": [{"shared_care_nights": n} for n in (0, 52, 104, 156)]})
    stub = policy_pb2_grpc.PolicyDecisionServiceStub(channel)
    start = threading.Barrier(8)
    codes: list[grpc.StatusCode] = []

    def call() -> None:
        start.wait()
        try:
            stub.DecideBatch(pb.DecideBatchRequest(requests=[slow] * 3), timeout=60)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as exc:
            codes.append(exc.code())

    try:
        threads = [threading.Thread(target=call) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        assert 2 <= codes.count(grpc.StatusCode.OK) < 8
        assert stub.Decide(slow, timeout=60).outcome  # and then served as before
    finally:
        stop_service(proc, channel)
