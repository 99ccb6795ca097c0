"""Connection, stream and timeout limits of the gRPC server (issue 27 item 4), as gRPC core
channel arguments; the process's open-file limit; and a watcher that logs when the connection
cap is reached. Every limit has a flag (`add_arguments`); the README's "Limits" says why each
default is what it is."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import resource
import threading
import time

log = logging.getLogger("cms_policy.service")

# File descriptors kept for everything but client connections: the decision log (SQLite, or up to
# 8 PostgreSQL connections), policy files read on a reload, the metrics endpoint, gRPC's own
# pipes and epoll, standard streams (about 40 at start-up here).
RESERVED_FDS = 64


@dataclasses.dataclass(frozen=True)
class Limits:
    max_connections: int = 1000
    # Per connection. RFC 9113 (6.5.2) recommends no fewer than 100: a client at a lower limit meets
    # REFUSED_STREAM (UNAVAILABLE) when its count of open streams and the server's disagree for a
    # moment, as 16 calls from 16 threads on one channel did at a limit of 16.
    max_streams: int = 100
    max_concurrent_rpcs: int = 64  # in the whole process, running or waiting for a thread
    handshake_timeout: float = 10.0
    idle_timeout: float = 300.0
    max_connection_age: float = 3600.0
    max_connection_age_grace: float = 30.0
    keepalive_time: float = 60.0
    keepalive_timeout: float = 20.0
    min_client_ping_interval: float = 10.0  # not a flag: what a client's keepalive may ask

    def options(self) -> list[tuple[str, int]]:
        """The limits as gRPC server options."""
        def ms(seconds: float) -> int:
            return max(1, round(seconds * 1000))
        return [("grpc.max_allowed_incoming_connections", self.max_connections),
                ("grpc.max_concurrent_streams", self.max_streams),
                # a connection that has not finished TLS and HTTP/2's preface by then is closed
                ("grpc.server_handshake_timeout_ms", ms(self.handshake_timeout)),
                ("grpc.max_connection_idle_ms", ms(self.idle_timeout)),
                ("grpc.max_connection_age_ms", ms(self.max_connection_age)),
                ("grpc.max_connection_age_grace_ms", ms(self.max_connection_age_grace)),
                ("grpc.keepalive_time_ms", ms(self.keepalive_time)),
                ("grpc.keepalive_timeout_ms", ms(self.keepalive_timeout)),
                # grpcio 1.85 closes on an unanswered ping after this (default a minute), whatever
                # keepalive_timeout_ms says: tests/test_limits.py checks the pair
                ("grpc.http2.ping_timeout_ms", ms(self.keepalive_timeout)),
                # ping idle connections too (a dead peer's socket is closed), and let clients do so
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", ms(self.min_client_ping_interval))]


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
        return value
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = Limits()
    group = parser.add_argument_group("connection limits (see the README, \"Limits\")")
    group.add_argument("--max-connections", type=_positive(int), default=d.max_connections, metavar="N",
                       help="client connections held at once; more are closed as they arrive and logged (at most "
                            "once a minute) as \"connection limit reached\". Kept below the open-file limit, "
                            f"less {RESERVED_FDS} files for the service itself (default: %(default)s)")
    group.add_argument("--max-streams-per-connection", type=_positive(int), default=d.max_streams, metavar="N",
                       help="calls one connection may have open at once (HTTP/2 max concurrent streams): a client "
                            "queues more itself; it bounds what one client that never reads its replies holds "
                            "(default: %(default)s)")
    group.add_argument("--max-concurrent-rpcs", type=_positive(int), default=d.max_concurrent_rpcs, metavar="N",
                       help="calls being handled or waiting for a thread, over all connections; more are "
                            "answered RESOURCE_EXHAUSTED at once (default: %(default)s)")
    group.add_argument("--handshake-timeout", type=_positive(float), default=d.handshake_timeout, metavar="SECONDS",
                       help="close a connection that has not completed TLS and the HTTP/2 preface by then "
                            "(default: %(default)s)")
    group.add_argument("--idle-timeout", type=_positive(float), default=d.idle_timeout, metavar="SECONDS",
                       help="close a connection with no calls for this long (GOAWAY: the client reconnects when "
                            "it next calls) (default: %(default)s)")
    group.add_argument("--max-connection-age", type=_positive(float), default=d.max_connection_age,
                       metavar="SECONDS",
                       help="ask a client to reconnect after this long (GOAWAY), so that load spreads over new "
                            "replicas (default: %(default)s)")
    group.add_argument("--max-connection-age-grace", type=_positive(float), default=d.max_connection_age_grace,
                       metavar="SECONDS",
                       help="then close it, ending calls still running on it (default: %(default)s)")
    group.add_argument("--keepalive-time", type=_positive(float), default=d.keepalive_time, metavar="SECONDS",
                       help="ping a connection that has been silent this long (default: %(default)s)")
    group.add_argument("--keepalive-timeout", type=_positive(float), default=d.keepalive_timeout, metavar="SECONDS",
                       help="close it if the ping is not answered within this (a dead or stuck client) "
                            "(default: %(default)s)")


def from_arguments(args: argparse.Namespace, open_files: int | None = None) -> Limits:
    """The limits the flags ask for, the connection cap kept below `open_files` (default: the
    process's soft RLIMIT_NOFILE): a connection is a file, and a process out of files stops
    accepting without a word while clients wait."""
    cap = args.max_connections
    if open_files is not None:
        room = max(open_files - RESERVED_FDS, open_files // 2)
        if cap > room:
            log.warning("--max-connections %d lowered to %d: the open-file limit is %d", cap, room, open_files,
                        extra={"max_connections": room, "open_files": open_files})
            cap = room
    return Limits(max_connections=cap, max_streams=args.max_streams_per_connection,
                  max_concurrent_rpcs=args.max_concurrent_rpcs, handshake_timeout=args.handshake_timeout,
                  idle_timeout=args.idle_timeout, max_connection_age=args.max_connection_age,
                  max_connection_age_grace=args.max_connection_age_grace, keepalive_time=args.keepalive_time,
                  keepalive_timeout=args.keepalive_timeout)


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (often 1024 soft against far more hard);
    the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # e.g. above the kernel's nr_open: keep the soft limit
            pass
    return soft


class ConnectionWatch:
    """Logs "connection limit reached" (WARNING, at most once per `interval`) while the server
    holds its cap of client connections: gRPC closes each further one as it arrives and says
    nothing. Counts this process's established TCP sockets on `port` from /proc (Linux; elsewhere
    it does nothing)."""

    def __init__(self, port: int, cap: int, *, interval: float = 60.0, poll: float = 1.0):
        self.port, self.cap, self.interval, self.poll = port, cap, interval, poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="connection-watch", daemon=True)

    def start(self) -> ConnectionWatch:
        if os.path.isdir("/proc/self/fd") and os.path.exists("/proc/net/tcp"):
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        logged = None  # when "limit reached" was last logged
        while not self._stop.wait(self.poll):
            try:
                held = connections(self.port)
            except OSError:
                continue
            now = time.monotonic()
            if held >= self.cap:
                if logged is None or now - logged >= self.interval:
                    log.warning("connection limit reached: %d client connections open; new ones are closed as "
                                "they arrive", held, extra={"connections": held, "max_connections": self.cap})
                    logged = now
            elif logged is not None and held < self.cap * 0.9:
                log.info("connections below the limit again", extra={"connections": held,
                                                                    "max_connections": self.cap})
                logged = None


def connections(port: int) -> int:
    """This process's established TCP connections whose local port is `port`."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    # local address "HEX:PORT", state 01 = ESTABLISHED, inode is field 9
                    if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                        count += 1
        except FileNotFoundError:
            continue
    return count
