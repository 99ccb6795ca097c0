"""Run the policy decision service: `python -m service --port 50051`."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from rules.decision_log import DEFAULT_PATH as DEFAULT_DECISION_LOG, DecisionLog, DecisionLogError
from rules.loader import DEFAULT_POLICY_DIR, PolicyLoadError, load_bundle

from .reload import LiveBundle, Watcher
from .server import build_server

log = logging.getLogger("cms_policy.service")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--port", type=int, default=50051, help="port to listen on (0 picks a free one)")
    parser.add_argument("--host", default="localhost",
                        help="interface to bind (default: loopback only; the service has no TLS yet)")
    parser.add_argument("--policies", type=Path, default=DEFAULT_POLICY_DIR, help="policy directory")
    parser.add_argument("--decision-log", type=Path, default=DEFAULT_DECISION_LOG,
                        help="the SQLite decision log (made with its directories if absent; default: %(default)s)")
    parser.add_argument("--decision-log-key-file", type=Path, default=None,
                        help="file with the log's key(s), base64, one per line, the first seals new decisions "
                             "(default: $CMS_POLICY_LOG_KEY, else for development a key file beside the log)")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds to finish in-flight requests on stop")
    parser.add_argument("--watch-interval", type=float, default=2.0,
                        help="seconds between looks at the policy directory for changes (default: %(default)s)")
    parser.add_argument("--no-watch", action="store_true",
                        help="do not watch the policy directory (reload only on SIGHUP or ReloadPolicies)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    try:
        bundle = load_bundle(args.policies)
    except PolicyLoadError as exc:
        print(f"policy files rejected:\n{exc}", file=sys.stderr)
        return 2
    try:
        decision_log = DecisionLog.open(args.decision_log, key_file=args.decision_log_key_file)
    except DecisionLogError as exc:
        print(f"decision log unusable: {exc}", file=sys.stderr)
        return 2
    log.info("recording decisions in %s", args.decision_log)
    live = LiveBundle(bundle, args.policies)
    watcher = Watcher(live, None if args.no_watch else args.watch_interval)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: watcher.poke())
    server, port = build_server(live, f"{args.host}:{args.port}", decision_log=decision_log)
    versions = sum(len(v) for v in bundle.policies.values())
    log.info("serving %d policy versions on %s:%d (insecure, plaintext; bind to loopback only)",
             versions, args.host, port)
    print(f"listening on {args.host}:{port}", flush=True)

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
    log.info("stopping: draining in-flight requests for up to %.0fs", args.grace)
    server.stop(args.grace).wait()
    decision_log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
