"""`python -m console` (`./dev console`): the web console on http://127.0.0.1:8080 for the service on
127.0.0.1:50051 (`./dev serve`). See console/__init__.py and docs/console.md."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import uvicorn

from .app import create_app
from .config import GOVUK_FRONTEND, ROOT, Config, ConfigError
from .security import JsonLines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m console", description=__doc__)
    parser.add_argument("--service", default="127.0.0.1:50051", help="host:port of the decision service")
    parser.add_argument("--service-ca", type=Path, help="CA certificate to verify the service's TLS (else plaintext)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to serve on (default: loopback; any other needs TLS and --sign-in)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument("--sign-in", action="store_true",
                        help="users sign in with a bearer token of the service's authz file (or an OIDC proxy sends it)")
    parser.add_argument("--dev-token-file", type=Path,
                        help="development on loopback: every call carries this file's token")
    parser.add_argument("--golden", type=Path, default=ROOT / "tests" / "golden",
                        help="golden cases shown as worked examples (default: the checkout's tests/golden)")
    parser.add_argument("--reports", type=Path, default=ROOT / "var" / "impact", help="folder of impact reports")
    parser.add_argument("--cases-folder", type=Path, action="append", default=[], metavar="DIR", dest="case_folders",
                        help="a folder of cases (*.jsonl, *.json, *.yaml) users may make impact reports over; repeatable")
    parser.add_argument("--govuk-frontend", type=Path, default=GOVUK_FRONTEND,
                        help="GOV.UK Frontend's dist/govuk folder (default: the checkout's node_modules, from npm ci)")
    parser.add_argument("--session-secret-file", type=Path,
                        help="key that signs session cookies (several replicas must share one; default: random)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    config = Config(service=args.service, service_ca=args.service_ca, host=args.host, port=args.port,
                    tls_cert=args.tls_cert, tls_key=args.tls_key, require_sign_in=args.sign_in,
                    dev_token=args.dev_token_file.read_text().strip() if args.dev_token_file else None,
                    golden=args.golden if args.golden.is_dir() else None, reports=args.reports,
                    assets=args.govuk_frontend,
                    case_folders=tuple(folder.resolve() for folder in args.case_folders),
                    session_secret=args.session_secret_file.read_bytes().strip() if args.session_secret_file
                    else os.urandom(32))
    try:
        app = create_app(config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    scheme = "https" if config.secure else "http"
    logging.getLogger("cms_policy.console").info(
        "console serving", extra={"fields": {"url": f"{scheme}://{config.host}:{config.port}/",
                                             "service": config.service, "sign_in": config.require_sign_in}})
    # uvicorn's own access log would write query strings: ours (security.Protections) never does.
    # A browser's idle keep-alive connection would hold a stop for as long as it stays open.
    uvicorn.run(app, host=config.host, port=config.port, access_log=False, log_config=None, timeout_graceful_shutdown=5,
                ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
                ssl_keyfile=str(config.tls_key) if config.tls_key else None, server_header=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
