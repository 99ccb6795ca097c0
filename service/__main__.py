"""Run the policy decision service: `python -m service --port 50051`."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from rules.loader import DEFAULT_POLICY_DIR, PolicyLoadError, load_bundle

from .server import build_server

log = logging.getLogger("cms_policy.service")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--port", type=int, default=50051, help="port to listen on (0 picks a free one)")
    parser.add_argument("--host", default="localhost",
                        help="interface to bind (default: loopback only; the service has no TLS yet)")
    parser.add_argument("--policies", type=Path, default=DEFAULT_POLICY_DIR, help="policy directory")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds to finish in-flight requests on stop")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    try:
        bundle = load_bundle(args.policies)
    except PolicyLoadError as exc:
        print(f"policy files rejected:\n{exc}", file=sys.stderr)
        return 2
    server, port = build_server(bundle, f"{args.host}:{args.port}")
    versions = sum(len(v) for v in bundle.policies.values())
    log.info("serving %d policy versions on %s:%d (insecure, plaintext; bind to loopback only)",
             versions, args.host, port)
    print(f"listening on {args.host}:{port}", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("stopping: draining in-flight requests for up to %.0fs", args.grace)
    server.stop(args.grace).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
