"""Who is calling, and the protections every page gets.

- **Sign-in.** In development (loopback, no TLS) there is none: every call carries the `--dev-token-file`
  token, or none for a service without `--authz`. Otherwise a user presents a bearer token of the
  service's authz file: in an `Authorization: Bearer` header (an OIDC proxy in front sets it) or once
  on the sign-in page, kept in the signed, HttpOnly, SameSite=Strict, Secure session cookie. The
  console never decides what a token may do: the service's authorisation does, call by call.
- **CSRF.** Every form carries the session's random token; a POST without it, or from another origin,
  is refused (403) before anything is read or called.
- **Headers.** A strict Content-Security-Policy (no inline script or style: the
  pages need no JavaScript; one small file of the console's own follows an impact run's progress), no framing, no referrer to other sites (`same-origin`: with `no-referrer` Chromium sends
  `Origin: null` on the console's own forms, which the origin check must refuse), no sniffing; HSTS over TLS; and `Cache-Control: no-store` on
  every page, since any page may show sensitive facts.
- **Access log.** One JSON line a request: method, path (never the query), status, time, whether
  signed in. Facts never reach a URL (forms are POSTed), so they never reach this log.
"""
from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from datetime import UTC, datetime

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request

from .config import Config
from .render import error_page

access_log = logging.getLogger("cms_policy.console.access")
failures = logging.getLogger("cms_policy.console")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}


class NotSignedIn(Exception):
    """The page needs a signed-in user and there is none: the app sends them to sign in."""


def token(request: Request) -> str | None:
    """The bearer token this request's service calls carry."""
    config: Config = request.app.state.config
    if not config.require_sign_in:
        return config.dev_token
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    signed_in = request.session.get("token")
    if not signed_in:
        raise NotSignedIn()
    return signed_in


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use), for the hidden field of every form."""
    value = request.session.get("csrf")
    if not value:
        value = request.session["csrf"] = secrets.token_urlsafe(32)
    return value


async def checked_form(request: Request) -> FormData:
    """The POSTed form, once its CSRF token matches the session's and it came from this origin."""
    origin = request.headers.get("origin")
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise HTTPException(403, "This form was sent from another site.")
    form = await request.form()
    sent = form.get("csrf_token")
    expected = request.session.get("csrf")
    if not (isinstance(sent, str) and expected and hmac.compare_digest(sent, expected)):
        raise HTTPException(403, "This form has expired or was not sent from the console. Go back, reload the page and try again.")
    return form


class Protections(BaseHTTPMiddleware):
    """Security headers, no caching, and the access log line, for every response; and a page that
    fails is a plain 500 page, logged by the error's type alone: an error's message or traceback
    may quote a fact (uvicorn would log both)."""

    async def dispatch(self, request: Request, call_next):
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as error:
            failures.error("page failed", extra={"fields": {"method": request.method, "path": request.url.path,
                                                             "error": type(error).__name__}})
            response = error_page(request, 500, "The console could not show this page. Try again, or tell its operators when.")
        _log_access(request, response.status_code, started)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if request.app.state.config.secure:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        if not request.url.path.startswith(("/assets/", "/govuk/", "/static/")):  # public files only
            response.headers["Cache-Control"] = "no-store"
        return response


def _log_access(request: Request, status: int, started: float) -> None:
    config: Config = request.app.state.config
    signed_in = bool(config.require_sign_in and (request.headers.get("authorization")
                                                 or request.scope.get("session", {}).get("token")))
    access_log.info("request", extra={"fields": {
        "method": request.method, "path": request.url.path, "status": status,
        "ms": round((time.perf_counter() - started) * 1000, 1), "signed_in": signed_in}})


class JsonLines(logging.Formatter):
    """One JSON object a line, with the fields a record carries in `extra={"fields": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["error"] = type(record.exc_info[1]).__name__
        return json.dumps(line, default=str)
