"""Logs and metrics for the service.

**Logs.** `configure_logging("json" | "text" | "auto")` sends every record (the service's, gRPC's,
Python warnings) to standard error, one line each. A record's message is a fixed event name
("decision", "decision rejected", ...) and its values are fields passed with `extra={...}`:

    {"time": "2025-01-10T09:30:00.123Z", "level": "INFO", "logger": "cms_policy.service",
     "message": "decision", "rpc": "Decide", "decision_id": "…", "policy": "application_fee", …}

    2025-01-10T09:30:00.123Z INFO cms_policy.service decision rpc=Decide decision_id=… policy=application_fee …

A record whose message has %-arguments (older call sites, other libraries) is rendered as it always
was; in text its fields are not repeated after it. Fields bound with `log_fields(...)` (the RPC
being served) are added to every record logged inside it.

Exception *messages* never reach a log: a library's exception text can quote the data it was
given (durable_rules' errors quote the facts; gRPC puts `str(exception)` of an unexpected error
in its message). A logged exception appears as its type, the types it was raised from, and the
frames of its traceback; an exception passed as an argument or field is shown as its type; and
an exception's text inside a message (gRPC's "Exception calling application: …") is replaced by
its type. Call sites that want an error's text in a log (storage errors, which say which file or
key failed) pass it as a string.

**Metrics.** `Metrics` holds the Prometheus collectors in its own registry; `serve_metrics` serves
them over HTTP (`/metrics`). Labels never carry request data: a policy name is a label only once
the loaded bundle knows it (else "unknown"), versions and outcomes come from the loaded policy
files, and RPC methods only from the registered services.

**RPC observer.** `RpcObserver` is a gRPC server interceptor: it counts every unary RPC that ends
with a status other than OK by method and code, binds the method to the RPC's log records, and
turns an unexpected exception into `INTERNAL` with a fixed message (gRPC would otherwise send the
exception's text to the client as `UNKNOWN`).
"""
from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

LOG_FORMATS = ("auto", "json", "text")

# Attributes every LogRecord has; anything else on a record is a field given with `extra`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
# never mutated: each binding sets a new dict
_bound: contextvars.ContextVar[dict] = contextvars.ContextVar("cms_policy_log_fields", default={})  # noqa: B039


@contextlib.contextmanager
def log_fields(**fields) -> Iterator[None]:
    """Add `fields` to every record logged in this context (e.g. the RPC being served)."""
    token = _bound.set({**_bound.get(), **fields})
    try:
        yield
    finally:
        _bound.reset(token)


def _scrub(value):
    """An exception as its type name (its text may quote data); anything else unchanged."""
    return type(value).__name__ if isinstance(value, BaseException) else value


def _exceptions(exc: BaseException | None) -> list[BaseException]:
    """`exc` and the exceptions it was raised from or during, outermost first."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return chain


def _message(record: logging.LogRecord) -> str:
    msg = str(record.msg)
    if record.args:
        args = record.args
        if isinstance(args, dict):
            args = {k: _scrub(v) for k, v in args.items()}
        else:
            args = tuple(_scrub(a) for a in args)
        try:
            msg = msg % args
        except (TypeError, ValueError, KeyError):
            msg = f"{msg} (unformattable log arguments)"
    if record.exc_info and record.exc_info[1] is not None:
        for exc in _exceptions(record.exc_info[1]):
            try:
                text = str(exc)
            except Exception:  # an exception that cannot print itself
                continue
            if len(text) >= 2:
                msg = msg.replace(text, f"<{type(exc).__name__}>")
    return msg


def _fields(record: logging.LogRecord) -> dict:
    return {**_bound.get(), **{k: _scrub(v) for k, v in record.__dict__.items()
                               if k not in _STANDARD and not k.startswith("_")}}


def _exception(exc_info) -> dict:
    """A logged exception without its message: type, the types it came from, and the frames."""
    exc_type, exc, tb = exc_info
    chain = _exceptions(exc)
    frames = [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(tb)]
    out = {"type": _type_name(exc_type), "frames": frames}
    if len(chain) > 1:
        out["from"] = [_type_name(type(e)) for e in chain[1:]]
    return out


def _type_name(cls) -> str:
    module = getattr(cls, "__module__", "")
    return cls.__qualname__ if module in ("builtins", "") else f"{module}.{cls.__qualname__}"


_last_second = (0, "")  # the last second formatted, and its text (many records share a second)


def _time(record: logging.LogRecord) -> str:
    global _last_second
    second, text = _last_second  # one tuple: another thread replaces it whole
    if int(record.created) != second:
        second = int(record.created)
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _last_second = second, text
    return f"{text}.{int(record.msecs):03d}Z"


_json_line = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":")).encode


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, then the record's fields,
    and `exception` ({type, from, frames}) if one was logged."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": _time(record), "level": record.levelname, "logger": record.name, "message": _message(record)}
        out.update({k: v for k, v in _fields(record).items() if k not in out})
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = _exception(record.exc_info)
        return _json_line(out)


class TextFormatter(logging.Formatter):
    """`time level logger message key=value ...` for a person at a terminal; a logged exception
    follows as its type and frames."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_time(record)} {record.levelname} {record.name} {_message(record)}"
        fields = _fields(record)
        if record.args:  # the message already shows its values; only the bound ones are added
            fields = {k: v for k, v in fields.items() if k in _bound.get()}
        if fields:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        if record.exc_info and record.exc_info[0] is not None:
            exc = _exception(record.exc_info)
            line += "\n  " + "\n  ".join(exc["frames"]) + f"\n  {exc['type']}"
            if "from" in exc:
                line += f" (from {', '.join(exc['from'])})"
        return line


def _text_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (list, tuple)):
        text = ",".join(str(v) for v in value)
    else:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if not text or any(c.isspace() or c in "\"=" for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def resolve_format(name: str, stream=None) -> str:
    """`auto` is `text` when the stream is a terminal and `json` otherwise."""
    if name not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {name!r}")
    if name != "auto":
        return name
    stream = stream if stream is not None else sys.stderr
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def configure_logging(log_format: str = "auto", level: int = logging.INFO, stream=None, **fields) -> str:
    """Route every log record (and Python warnings) through one handler on `stream` (default:
    standard error) in `log_format`, with `fields` added to every record (e.g. the worker
    process); returns the format chosen."""
    stream = stream if stream is not None else sys.stderr
    chosen = resolve_format(log_format, stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    if fields:
        handler.addFilter(lambda record: record.__dict__.update(fields) or True)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    # Neither format shows where a record was logged from, nor its thread or process: not looking
    # them up saves a fifth of a record's cost (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    return chosen


# --- metrics -------------------------------------------------------------------------------

UNKNOWN = "unknown"  # the label of a policy the loaded bundle does not know
# A decision takes from about a millisecond to a few hundred (counterfactuals re-decide the case).
DECISION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
RECORD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """The service's Prometheus collectors, in a registry of their own (so that several servers
    in one process, as in tests, do not collide)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process_collectors: bool = False):
        r = self.registry = registry if registry is not None else CollectorRegistry()
        if process_collectors:  # the usual process_* and python_* series, once per process
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        self.decisions = Counter("cms_policy_decisions", "Decisions returned (recorded), by policy, version and "
                                 "outcome", ["policy", "version", "outcome"], registry=r)
        self.decision_seconds = Histogram("cms_policy_decision_seconds", "Time to decide and record a decision, "
                                          "by policy", ["policy"], buckets=DECISION_BUCKETS, registry=r)
        self.record_seconds = Histogram("cms_policy_decision_log_record_seconds", "Time to record a decision "
                                        "in the decision log (durable: committed and fsynced)",
                                        buckets=RECORD_BUCKETS, registry=r)
        self._decided: dict[tuple[str, str, str], tuple] = {}  # (policy, version, outcome): its two series
        self.rpc_errors = Counter("cms_policy_rpc_errors", "RPCs that ended with a status other than OK, by method "
                                  "and status code", ["method", "code"], registry=r)
        self.deadlines = Counter("cms_policy_deadline_exceeded", "Decisions given up because the client's deadline "
                                 "had passed or the client cancelled, by stage (before_decide, before_record)",
                                 ["stage"], registry=r)
        self.reloads = Counter("cms_policy_reloads", "Policy reloads, by result (changed, unchanged, refused)",
                               ["result"], registry=r)
        self.bundle_info = Gauge("cms_policy_bundle_info", "The policy bundle served (1 for its hash)",
                                 ["bundle_hash"], registry=r)
        self.versions_loaded = Gauge("cms_policy_versions_loaded", "Policy versions in the bundle served",
                                     registry=r)
        for result in ("changed", "unchanged", "refused"):  # every series from the start, at 0
            self.reloads.labels(result)

    def bundle_served(self, bundle_hash: str, versions: int) -> None:
        self.bundle_info.clear()
        self.bundle_info.labels(bundle_hash).set(1)
        self.versions_loaded.set(versions)

    def reloaded(self, result) -> None:
        """Count a `service.reload.Reload`; a changed bundle becomes the one served."""
        self.reloads.labels("refused" if result.refused else "changed" if result.changed else "unchanged").inc()
        if result.changed:
            self.bundle_served(result.bundle_hash, result.versions)

    def decided(self, policy: str, version: str, outcome: str, seconds: float, record_seconds: float) -> None:
        key = (policy, version, outcome)
        series = self._decided.get(key)
        if series is None:  # labels() takes a lock and builds its key on every call: once per series
            series = self._decided[key] = (self.decisions.labels(*key), self.decision_seconds.labels(policy))
        series[0].inc()
        series[1].observe(seconds)
        self.record_seconds.observe(record_seconds)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve_metrics(metrics: Metrics, host: str, port: int) -> tuple[WSGIServer, int]:
    """Serve `metrics` on http://host:port/metrics (port 0 picks one) in a daemon thread: the
    server (call `.shutdown()` to stop) and the port it bound."""
    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    return server, server.server_port


# --- the RPC observer --------------------------------------------------------------------

_log = logging.getLogger("cms_policy.service")
_QUIET = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
          grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAUTHENTICATED,
          grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNIMPLEMENTED}


class RpcObserver(grpc.ServerInterceptor):
    """Counts the RPCs that fail, by method and code, and logs each as "rpc failed" (method,
    code, latency); binds `rpc` (the method's short name) to the records logged while serving it;
    and answers an unexpected exception with INTERNAL and a fixed message. Only registered unary
    methods are observed (so method labels are bounded); streams pass through untouched.
    Put it first among the server's interceptors so that it sees what the others refuse."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails):
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method.lstrip("/")
        behaviour = handler.unary_unary

        def observed(request, context: grpc.ServicerContext):
            started = time.perf_counter()
            with log_fields(rpc=method.rsplit("/", 1)[-1]):
                try:
                    response = behaviour(request, context)
                except Exception as exc:
                    code = context.code()
                    if code is None:  # not an abort: a bug. Never send or log its text.
                        _log.error("rpc crashed", exc_info=exc)
                        self._failed(method, grpc.StatusCode.INTERNAL, started)
                        context.abort(grpc.StatusCode.INTERNAL, "internal error; it has been logged")
                    self._failed(method, code, started)
                    raise
                code = context.code()
                if code is not None and code != grpc.StatusCode.OK:  # set_code without abort
                    self._failed(method, code, started)
                return response

        return grpc.unary_unary_rpc_method_handler(observed, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)

    def _failed(self, method: str, code: grpc.StatusCode, started: float) -> None:
        self.metrics.rpc_errors.labels(method, code.name).inc()
        _log.log(logging.INFO if code in _QUIET else logging.WARNING, "rpc failed",
                 extra={"code": code.name, "latency_ms": round((time.perf_counter() - started) * 1000, 2)})
