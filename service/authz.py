"""Who may call what: calling services, how each is recognised, and the RPCs (and policies) it may use.

`--authz FILE` names a YAML file (pure data, read like a policy file: no tags, anchors or duplicate
keys; errors as `path:line: message`):

    callers:
      case-management:                    # a name for the logs and refusals
        certificate: [case-management.cms.internal]   # mTLS: the client certificate's subject CN or a SAN
        allow:
          decide: ["*"]                    # every policy
          get_policy: ["*"]
          list_policies: true
      fee-portal:
        token_sha256: [<the token's sha256: 64 hex digits>]
        allow:
          decide: [application_fee]
          get_policy: [application_fee]
      reviewers:
        certificate: [spiffe://cms.internal/reviewers]
        allow: {get_decision: true, replay_decision: true, what_if: true}
      parent-portal:
        token_sha256: [<...>]
        views: [receiving_parent, paying_parent]   # only a parent's view of a decision
        allow: {decide: [application_fee], get_decision: true}
      operations:
        token_sha256: [<...>]
        allow: {reload_policies: true}

A caller is recognised by its mTLS client certificate (`certificate`: a name equal to the
certificate's subject common name or to one of its subject alternative names: DNS, URI such as a
SPIFFE id, e-mail or IP) or by a bearer token (`authorization: Bearer <token>` metadata; the file
keeps only the token's sha256, hex, never the token). A request that carries a token is judged by the token alone: an unknown token is
refused even over a known certificate. Lists allow rotation: several certificate names or token
hashes may stand for one caller.

The interceptor runs before the servicer: an unknown caller is UNAUTHENTICATED, a known one
without the permission PERMISSION_DENIED ("caller 'fee-portal' may not call Decide for policy
'service_type'"). Each refusal is logged with the caller's name (or "unknown"), the RPC, the policy
and why, never facts or tokens. Health checks and server reflection are open: load balancers and
orchestrators probe health without credentials, and reflection serves only the public schema.
An RPC that this table does not know is refused (a new RPC is closed until it is listed here).

`views` limits the views of a decision (DecideRequest.view, GetDecisionRequest.view) a caller may
ask for: `full`, `receiving_parent`, `paying_parent`; absent, every view. A caller without `full`
is refused Decide, GetDecision and WhatIf for the full decision and ReplayDecision (which returns two).

DecideBatch carries many requests, each for its own policy and view. The interceptor lets the
call through if the caller may decide at least one policy; the servicer then asks `request_refusal`
about each request's policy and view (the interceptor binds the caller for it), and a request for a
policy the caller may not decide, or a view it may not see, gets PERMISSION_DENIED in its own
result, with the message a unary Decide would get, logged as "request refused" with its index. The
other requests are decided.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import hmac
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import grpc
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from cms_policy.v1 import policy_pb2 as pb
from rules.language.yamlsource import YamlSourceError, read_yaml

from .observability import log_fields

log = logging.getLogger("cms_policy.authz")

_DECISIONS = pb.DESCRIPTOR.services_by_name["PolicyDecisionService"].full_name
_ADMIN = pb.DESCRIPTOR.services_by_name["PolicyAdminService"].full_name
# method -> (permission, whether it is granted per policy). A per-policy permission checked as not
# per policy (DecideBatch) needs it for at least one policy; the servicer checks each request's.
PERMISSIONS: dict[str, tuple[str, bool]] = {
    f"/{_DECISIONS}/Decide": ("decide", True),
    f"/{_DECISIONS}/DecideBatch": ("decide", False),  # and each request: `request_refusal`
    f"/{_DECISIONS}/GetPolicy": ("get_policy", True),
    f"/{_DECISIONS}/ListPolicies": ("list_policies", False),
    f"/{_DECISIONS}/GetDecision": ("get_decision", False),  # reviewers: a decision holds every fact
    f"/{_DECISIONS}/ReplayDecision": ("replay_decision", False),
    f"/{_DECISIONS}/WhatIf": ("what_if", False),  # reads a recorded decision, as GetDecision
    f"/{_ADMIN}/ReloadPolicies": ("reload_policies", False),
}
# Methods that return decisions: True, the request's `view`; False, always the full decision.
# DecideBatch's requests are checked one by one (`request_refusal`).
VIEWED: dict[str, bool] = {f"/{_DECISIONS}/Decide": True, f"/{_DECISIONS}/GetDecision": True,
                           f"/{_DECISIONS}/ReplayDecision": False, f"/{_DECISIONS}/WhatIf": True}
# A View as the authorisation file names it.
VIEWS: dict[int, str] = {pb.VIEW_UNSPECIFIED: "full", pb.VIEW_RECEIVING_PARENT: "receiving_parent",
         pb.VIEW_PAYING_PARENT: "paying_parent"}
# Open to every caller: health (probes carry no credentials) and reflection (the public schema).
OPEN_SERVICES = frozenset({"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                           "grpc.reflection.v1.ServerReflection"})

_POLICY = re.compile(r"^(\*|[a-z][a-z0-9]*(_[a-z0-9]+)*)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class AuthzConfigError(Exception):
    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("\n".join(errors))


def _listed(value):
    return [value] if isinstance(value, str) else value


Names = Annotated[list[Annotated[str, Field(min_length=1, max_length=1024)]], BeforeValidator(_listed)]
Policies = list[Annotated[str, Field(pattern=_POLICY.pattern)]]
Views = Annotated[list[Literal["full", "receiving_parent", "paying_parent"]], BeforeValidator(_listed), Field(min_length=1)]


class Allow(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    decide: Policies = []  # policy ids, or "*" for every policy
    get_policy: Policies = []
    list_policies: bool = False
    get_decision: bool = False
    replay_decision: bool = False
    what_if: bool = False
    reload_policies: bool = False

    def permits(self, permission: str, policy: str | None) -> bool:
        """Whether `permission` is granted: for `policy` if it is granted per policy, and for a
        `policy` of None, for at least one policy."""
        granted = getattr(self, permission)
        if isinstance(granted, bool):
            return granted
        if policy is None:
            return bool(granted)
        return "*" in granted or policy in granted


class CallerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    certificate: Names = []
    token_sha256: Names = []
    allow: Allow = Allow()
    views: Views | None = None  # the views of a decision it may ask for; absent, every view

    @field_validator("token_sha256")
    @classmethod
    def _hashes(cls, value: list[str]) -> list[str]:
        for digest in value:
            if not _SHA256.match(digest.lower()):
                raise ValueError("each entry is the sha256 of a token as 64 hex digits (never the token itself)")
        return [d.lower() for d in value]

    @model_validator(mode="after")
    def _identified(self):
        if not self.certificate and not self.token_sha256:
            raise ValueError("a caller needs a certificate name or a token_sha256 to be recognised by")
        return self


class AuthzConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    callers: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)], CallerSpec] = \
        Field(min_length=1)


@dataclass(frozen=True)
class Caller:
    name: str
    allow: Allow
    views: frozenset[str] | None = None  # None: every view

    def sees(self, view: int) -> bool:
        """Whether the caller may ask for this View (an unknown one only when every view is allowed:
        the servicer refuses it as INVALID_ARGUMENT)."""
        return self.views is None or VIEWS.get(view) in self.views


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, reason: str, caller: str = "unknown"):
        super().__init__(message)
        self.code, self.message, self.reason, self.caller = code, message, reason, caller


# The caller of the call being served, bound by AuthzInterceptor (None: no authorisation).
_serving: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("cms_policy_caller", default=None)


@contextlib.contextmanager
def _bound(caller: Caller) -> Iterator[None]:
    token = _serving.set(caller)
    try:
        yield
    finally:
        _serving.reset(token)


def request_refusal(permission: str, policy: str, view: int, rpc: str, index: int) -> str | None:
    """For one of the requests a call carries (DecideBatch's `requests[index]`): why the caller
    of the call being served may not use `permission` for `policy`, or see `view`, as unary `rpc`
    would be refused ("caller 'fee-portal' may not call Decide for policy 'service_type'"), logged
    as "request refused"; None if it may. Without authorisation (no interceptor bound a caller)
    every request is allowed, as every call is."""
    caller = _serving.get()
    if caller is None:
        return None
    if not caller.allow.permits(permission, policy):
        reason = f"not allowed {permission}"
        message = f"caller '{caller.name}' may not call {rpc} for policy '{_printable(policy)}'"
    elif not caller.sees(view):
        message, reason = _view_refusal(caller, rpc, view)
    else:
        return None
    log.warning("request refused", extra={"caller": caller.name, "policy": _logged_policy(policy), "index": index,
                                          "code": grpc.StatusCode.PERMISSION_DENIED.name, "reason": reason})
    return message


def _view_refusal(caller: Caller, rpc: str, view: int) -> tuple[str, str]:
    """The message and the logged reason of a refused view."""
    name = VIEWS.get(view, str(view))
    return f"caller '{caller.name}' may not call {rpc} with view '{name}'", f"not allowed view {name}"


UNKNOWN_CALLER = ("unknown caller: present a client certificate or a bearer token (authorization: Bearer ...) "
                  "that this service's authorisation lists")


class Authorisation:
    """The callers of a checked configuration, and who each request comes from."""

    def __init__(self, config: AuthzConfig, source: str = "(authz)"):
        self.source = source
        self.callers = {name: Caller(name, spec.allow, frozenset(spec.views) if spec.views else None)
                        for name, spec in config.callers.items()}
        self._by_certificate = {n: self.callers[name] for name, spec in config.callers.items() for n in spec.certificate}
        self._tokens = [(bytes.fromhex(d), self.callers[name])
                        for name, spec in config.callers.items() for d in spec.token_sha256]
        self.certificate_callers = sorted({c.name for c in self._by_certificate.values()})
        self.token_callers = sorted({c.name for _, c in self._tokens})

    def identify(self, auth_context: dict, metadata) -> Caller:
        """The caller of a request, or Refused (UNAUTHENTICATED). A bearer token, when sent,
        decides alone; otherwise the verified client certificate does."""
        tokens = [value for key, value in metadata or () if key == "authorization"]
        if len(tokens) > 1:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, UNKNOWN_CALLER, "more than one authorization header")
        if tokens:
            return self._by_token(tokens[0])
        names = [v.decode("utf-8", "replace") for key in ("x509_common_name", "x509_subject_alternative_name")
                 for v in auth_context.get(key, ())]
        if not names:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, UNKNOWN_CALLER, "no client certificate or bearer token")
        found = {self._by_certificate[n].name: self._by_certificate[n] for n in names if n in self._by_certificate}
        if len(found) > 1:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, UNKNOWN_CALLER,
                          f"client certificate names several callers ({', '.join(sorted(found))})")
        if not found:
            subject = (auth_context.get("x509_subject") or [b""])[0].decode("utf-8", "replace")
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, UNKNOWN_CALLER,
                          f"client certificate not listed ({_printable(subject or ', '.join(names))})")
        return next(iter(found.values()))

    def _by_token(self, header) -> Caller:
        text = header.decode("latin-1") if isinstance(header, bytes) else header
        scheme, _, token = text.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, UNKNOWN_CALLER, "authorization is not 'Bearer <token>'")
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        match = None
        for expected, caller in self._tokens:  # every entry compared, in constant time
            if hmac.compare_digest(digest, expected):
                match = caller
        if match is None:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, UNKNOWN_CALLER, "unknown bearer token")
        return match

    def check(self, method: str, request, auth_context: dict, metadata) -> Caller:
        """The caller, if it may make this call; else Refused."""
        rule = PERMISSIONS.get(method)
        caller = self.identify(auth_context, metadata)
        rpc = method.rsplit("/", 1)[-1]
        if rule is None:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, f"caller '{caller.name}' may not call {rpc}",
                          "the RPC is not covered by authorisation", caller.name)
        permission, per_policy = rule
        policy = getattr(request, "policy", "") if per_policy else None
        if not caller.allow.permits(permission, policy):
            target = f" for policy '{_printable(policy)}'" if per_policy else ""
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, f"caller '{caller.name}' may not call {rpc}{target}",
                          f"not allowed {permission}", caller.name)
        view = _asked_view(method, request)
        if view is not None and not caller.sees(view):
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, *_view_refusal(caller, rpc, view), caller.name)
        return caller

    def startup_lines(self, transport) -> list[tuple[int, str]]:
        who = "; ".join(part for part in (
            f"by client certificate: {', '.join(self.certificate_callers)}" if self.certificate_callers else "",
            f"by bearer token: {', '.join(self.token_callers)}" if self.token_callers else "") if part)
        lines = [(logging.INFO, f"authorisation: {len(self.callers)} callers from {self.source} ({who}); "
                                "health and reflection are open to all")]
        if self.token_callers and transport.mode == "plaintext":
            lines.append((logging.WARNING, "authorisation: bearer tokens are sent in plaintext (no TLS): anyone who "
                                           "can see the traffic can reuse them"))
        return lines

    def unknown_policies(self, known: set[str]) -> list[str]:
        """Policies the file grants that the loaded bundle does not have (a typo, or one to come)."""
        out = []
        for caller in self.callers.values():
            for permission in ("decide", "get_policy"):
                for policy in getattr(caller.allow, permission):
                    if policy != "*" and policy not in known:
                        out.append(f"caller '{caller.name}' is allowed {permission} of policy '{policy}', "
                                   "which is not loaded")
        return out


def load(path: Path, client_certificates: bool = True) -> Authorisation:
    """Read and check an authorisation file. `client_certificates`: whether the service asks for
    client certificates (mutual TLS); if not, a caller recognised only by one is an error."""
    shown = str(path)
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthzConfigError([f"{shown}: cannot read: {getattr(exc, 'strerror', None) or exc}"]) from None
    try:
        located = read_yaml(text)
    except YamlSourceError as exc:
        raise AuthzConfigError([f"{shown}:{exc.line}: {exc.message}"]) from None
    if not isinstance(located.data, dict):
        raise AuthzConfigError([f"{shown}:{located.line_of(())}: the file is a mapping with 'callers:'"])
    try:
        config = AuthzConfig.model_validate(located.data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            where = tuple(p for p in err["loc"] if isinstance(p, int) or not (p[:1].isupper() or "[" in p))
            message = err["msg"].removeprefix("Value error, ")
            line = f"{shown}:{located.line_of(where)}: {'.'.join(map(str, where)) or '(top level)'}: {message}"
            if line not in errors:
                errors.append(line)
        raise AuthzConfigError(errors) from None
    errors = []
    seen: dict[tuple[str, str], str] = {}
    for name, spec in config.callers.items():
        if name == "unknown":  # what the logs call an unrecognised caller
            errors.append(f"{shown}:{located.line_of(('callers', name))}: callers.unknown: the name 'unknown' is "
                          "reserved for callers that are not recognised")
        for field, values in (("certificate", spec.certificate), ("token_sha256", spec.token_sha256)):
            for i, value in enumerate(values):
                other = seen.setdefault((field, value), name)
                if other != name:
                    errors.append(f"{shown}:{located.line_of(('callers', name, field, i))}: callers.{name}.{field}: "
                                  f"also stands for caller '{other}'")
        if spec.certificate and not client_certificates:
            errors.append(f"{shown}:{located.line_of(('callers', name, 'certificate'))}: callers.{name}.certificate: "
                          "recognised by client certificate, but the service does not ask for one "
                          "(give --tls-client-ca for mutual TLS)")
    if errors:
        raise AuthzConfigError(errors)
    return Authorisation(config, shown)


def _asked_view(method: str, request) -> int | None:
    """The View a call asks for; None for a call that returns no decision."""
    if method not in VIEWED:
        return None
    return request.view if VIEWED[method] else pb.VIEW_UNSPECIFIED


def _printable(text: str | None, limit: int = 64) -> str:
    """Client-supplied text made safe for a log line or a message."""
    return re.sub(r"[^\w.:/@*=,\[\] -]", "?", (text or "")[:limit])


def _logged_policy(policy: str | None) -> str:
    """A policy name for the log only if it looks like one: the field is the client's to fill."""
    if policy is None:
        return "-"
    return policy if re.fullmatch(r"[a-z][a-z0-9_]{0,63}", policy) else "(malformed)"


def _refuse(context: grpc.ServicerContext, method: str, policy: str | None, refused: Refused) -> None:
    log.warning("call refused", extra={
        "caller": refused.caller, "rpc": method.rsplit("/", 1)[-1],
        "policy": _logged_policy(policy), "code": refused.code.name,
        "reason": refused.reason, "peer": _printable(context.peer())})
    context.abort(refused.code, refused.message)


class AuthzInterceptor(grpc.ServerInterceptor):
    """Checks each call against `authorisation` before the servicer sees it. The check runs
    inside the handler, with the request in hand, because the policy asked for is in the request
    and the client certificate in the call's auth context."""

    def __init__(self, authorisation: Authorisation):
        self.authorisation = authorisation

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.lstrip("/").rsplit("/", 1)[0] in OPEN_SERVICES:
            return handler  # nothing served there (UNIMPLEMENTED), or open to all
        if handler.unary_unary is None:  # every protected RPC is unary: anything else is refused
            def refuse_stream(request_or_iterator, context):
                _refuse(context, method, None, Refused(grpc.StatusCode.PERMISSION_DENIED,
                                                       "this RPC is not covered by authorisation", "streaming RPC"))
            return grpc.stream_stream_rpc_method_handler(refuse_stream) if handler.request_streaming else \
                grpc.unary_stream_rpc_method_handler(refuse_stream, request_deserializer=handler.request_deserializer)
        behaviour = handler.unary_unary
        authorisation = self.authorisation

        def checked(request, context):
            try:
                caller = authorisation.check(method, request, context.auth_context(), context.invocation_metadata())
            except Refused as refused:
                per_policy = PERMISSIONS.get(method, ("", False))[1]
                _refuse(context, method, getattr(request, "policy", "") if per_policy else None, refused)
            # which service asked: on every line of this call, and for DecideBatch's `request_refusal`
            with log_fields(caller=caller.name), _bound(caller):
                return behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(checked, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)


def startup_lines(authorisation: Authorisation | None, transport, policies: set[str]) -> list[tuple[int, str]]:
    """What the log says at start-up about transport and authorisation (level, message)."""
    lines = list(transport.startup_lines())
    if authorisation is None:
        who = "every client with a certificate from the client CA" if transport.client_certificates else \
            "every caller that can connect"
        where = "" if transport.loopback else f", on non-loopback address {transport.host}"
        lines.append((logging.WARNING, f"authorisation: OFF (no --authz): {who} may call every RPC{where}; "
                                       "for development only"))
    else:
        lines += authorisation.startup_lines(transport)
        lines += [(logging.WARNING, f"authorisation: {m}") for m in authorisation.unknown_policies(policies)]
    return lines
