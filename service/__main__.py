"""Run the policy decision service: `python -m service --port 50051`."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from rules.audit.errors import DecisionLogError
from rules.audit.factory import open_log
from rules.audit.log import DEFAULT_PATH as DEFAULT_DECISION_LOG
from rules.audit.log import LOG_ENV
from rules.engine.loader import DEFAULT_POLICY_DIR, PolicyLoadError, load_bundle

from . import authz, tls, workers
from . import limits as server_limits
from .observability import LOG_FORMATS, Metrics, configure_logging, is_loopback, serve_metrics
from .reload import LiveBundle, Watcher
from .server import build_server
from .writes import Writes

log = logging.getLogger("cms_policy.service")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--port", type=int, default=50051, help="port to listen on (0 picks a free one)")
    parser.add_argument("--host", default="localhost",
                        help="interface to bind (default: loopback only; any other needs --tls-cert and --tls-key, "
                             "or --insecure-plaintext)")
    parser.add_argument("--policies", type=Path, default=DEFAULT_POLICY_DIR, help="policy directory")
    parser.add_argument("--decision-log", default=os.environ.get(LOG_ENV) or str(DEFAULT_DECISION_LOG),
                        metavar="PATH|URL",
                        help="the decision log: a SQLite file (made with its directories if absent) or a PostgreSQL "
                             "URL, postgresql://user@host:5432/db (for several replicas; password from PGPASSWORD "
                             f"or a PGPASSFILE); default: ${LOG_ENV}, else {DEFAULT_DECISION_LOG}")
    parser.add_argument("--decision-log-key-file", type=Path, default=None,
                        help="file with the log's key(s), base64, one per line, the first seals new decisions "
                             "(default: $CMS_POLICY_LOG_KEY, else for a SQLite log in development a key file "
                             "beside it)")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds to finish in-flight requests on stop")
    parser.add_argument("--workers", type=workers.count, default=1, metavar="N|auto",
                        help="server processes sharing the port (SO_REUSEPORT), one per core with `auto`; each "
                             "takes about one core (default: %(default)s)")
    parser.add_argument("--worker-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="with --workers: a worker whose health has not answered for this long (frozen, "
                             "deadlocked) is killed and started again; long enough for a busy worker to answer "
                             "(default: %(default)s)")
    parser.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)  # set by the supervisor
    parser.add_argument("--worker-socket", default=None, help=argparse.SUPPRESS)  # the supervisor's health checks
    parser.add_argument("--watch-interval", type=float, default=2.0,
                        help="seconds between looks at the policy directory for changes (default: %(default)s)")
    parser.add_argument("--no-watch", action="store_true",
                        help="do not watch the policy directory (reload only on SIGHUP or ReloadPolicies)")
    tls.add_arguments(parser)
    server_limits.add_arguments(parser)
    parser.add_argument("--authz", type=Path, metavar="FILE",
                        help="who may call what (YAML: callers by client certificate or bearer token, and their "
                             "RPCs and policies); without it every caller may call everything (development)")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="auto",
                        help="logs on standard error: one JSON object per line, or text for a person; auto "
                             "(default): text when standard error is a terminal, else json")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus metrics on http://METRICS_HOST:PORT/metrics (0 picks a free port; "
                             "default: no metrics endpoint)")
    parser.add_argument("--metrics-host", default="127.0.0.1",
                        help="interface for the metrics endpoint (default: %(default)s, loopback only)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    configure_logging(args.log_format, **({} if args.worker_index is None else {"worker": args.worker_index}))
    if args.workers > 1 and args.worker_index is None:
        # Each worker gets the same arguments; the --port and --worker-index added last win.
        return workers.supervise(argv, args.workers, args.host, args.port, args.grace, args.worker_timeout)
    worker = args.worker_index is not None

    try:
        transport = tls.configure(args.host, args.tls_cert, args.tls_key, args.tls_client_ca, args.insecure_plaintext)
        authorisation = authz.load(args.authz, transport.client_certificates) if args.authz else None
    except tls.TransportConfigError as exc:
        print(f"transport security: {exc}", file=sys.stderr)
        return 2
    except authz.AuthzConfigError as exc:
        print(f"authorisation file rejected:\n{exc}", file=sys.stderr)
        return 2

    try:
        bundle = load_bundle(args.policies)
    except PolicyLoadError as exc:
        print(f"policy files rejected:\n{exc}", file=sys.stderr)
        return 2
    try:
        decision_log = open_log(args.decision_log, key_file=args.decision_log_key_file)
    except DecisionLogError as exc:
        print(f"decision log unusable: {exc}", file=sys.stderr)
        return 2
    log.info("recording decisions in %s", decision_log.where)
    metrics = Metrics(process_collectors=True)
    live = LiveBundle(bundle, args.policies, on_reload=metrics.reloaded, writes=Writes(args.policies))
    watcher = Watcher(live, None if args.no_watch else args.watch_interval)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    supervisor = os.getppid() if worker else None
    if worker:  # the supervisor's pipe ends when it dies, even by kill -9: then stop too
        threading.Thread(target=_until_supervisor_gone, args=(stop,), name="supervisor-pipe", daemon=True).start()
    signal.signal(signal.SIGHUP, lambda *_: watcher.poke())
    metrics_server = None
    if args.metrics_port is not None:
        wanted = args.metrics_port + args.worker_index if worker and args.metrics_port else args.metrics_port
        try:
            metrics_server, metrics_port = serve_metrics(metrics, args.metrics_host, wanted)
        except OSError as exc:
            print(f"metrics endpoint: cannot listen on {args.metrics_host}:{wanted}: {exc.strerror}",
                  file=sys.stderr)
            decision_log.close()
            return 2
        log.log(logging.INFO if is_loopback(args.metrics_host) else logging.WARNING,
                "metrics on http://%s:%d/metrics%s", args.metrics_host, metrics_port,
                "" if is_loopback(args.metrics_host) else " (not loopback: no TLS, no authentication)",
                extra={"metrics_host": args.metrics_host, "metrics_port": metrics_port})
    # A connection is an open file: use the hard limit, and keep the connection cap below it.
    limits = server_limits.from_arguments(args, server_limits.raise_open_file_limit())
    try:
        server, port = build_server(live, f"{args.host}:{args.port}", decision_log=decision_log, metrics=metrics,
                                    limits=limits,
                                    credentials=transport.credentials,
                                    interceptors=[authz.AuthzInterceptor(authorisation)] if authorisation else (),
                                    shared_port=worker,
                                    # A reload asked of one worker reaches the others through the supervisor
                                    # (only its own: never whichever process adopted an orphan).
                                    after_reload=(lambda: _signal_supervisor(supervisor)) if supervisor is not None else None,
                                    private_address=f"unix:{args.worker_socket}" if args.worker_socket else None)
    except OSError as exc:  # a clear start-up error, not a traceback (issue 27 item 8)
        print(f"error: {exc}", file=sys.stderr)
        decision_log.close()
        if metrics_server is not None:
            metrics_server.shutdown()
        return 2
    versions = sum(len(v) for v in bundle.policies.values())
    log.info("serving %d policy versions on %s:%d (%s)", versions, args.host, port, transport.mode)
    for level, line in authz.startup_lines(authorisation, transport, set(bundle.policies)):
        log.log(level, line)
    print(f"listening on {args.host}:{port}", flush=True)
    connection_watch = server_limits.ConnectionWatch(port, limits.max_connections).start()

    if args.no_watch:
        log.info("policy directory %s: reloaded on SIGHUP or ReloadPolicies only", args.policies)
    else:
        log.info("watching %s for policy changes every %.1fs (also SIGHUP, ReloadPolicies)", args.policies,
                 args.watch_interval)
    watcher.start()

    # Wake now and then: a signal that lands on one of gRPC's threads only runs its Python
    # handler once the main thread runs again.
    while not stop.wait(0.2):
        pass
    watcher.stop()
    connection_watch.stop()
    log.info("stopping: draining in-flight requests for up to %.0fs", args.grace)
    server.stop(args.grace).wait()
    if metrics_server is not None:
        metrics_server.shutdown()
    decision_log.close()
    return 0


def _until_supervisor_gone(stop: threading.Event) -> None:
    while sys.stdin.buffer.read(4096):
        pass
    if not stop.is_set():
        log.error("the supervisor is gone; stopping")
        stop.set()


def _signal_supervisor(supervisor: int) -> None:
    if os.getppid() == supervisor:
        os.kill(supervisor, signal.SIGHUP)


if __name__ == "__main__":
    sys.exit(main())
