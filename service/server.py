"""The gRPC adapter: requests in, engine decisions out, errors as gRPC statuses.

Every decision is recorded in the decision log before Decide returns it. Logs carry the
decision id, policy, version and latency as fields (`extra`) — never facts, outcomes or explanation
texts, nor a name the client sent that the bundle does not know (see `_policy_label`, `_field_names`).
A decision's log line is written once its reply has been sent (`_log_after_reply`); its metrics
are counted before.

Deadlines: Decide checks the client's deadline before deciding and again before recording; if it
has passed (or the client has cancelled) the decision is given up with DEADLINE_EXCEEDED
(CANCELLED) and nothing is recorded. A decision that has been recorded is returned.

DecideBatch decides each of its requests as Decide does (`_decide`: the same checks, decision and
errors), keeping each request's error in its own result; then records every decision in one
transaction (`record_batch`: all or none). It checks the deadline before the first request,
between requests and before recording, and gives up the whole batch, recording nothing.

Views: the full decision is decided and recorded whatever a request's `view`; the response holds
what that view shows (`Decision.for_parent` for a parent's). GetDecision with a parent's view
returns no request: the recorded request holds the other parent's facts.

Health: the server ("") is SERVING while the process serves (liveness); the decision service
(`cms.policy.v1.PolicyDecisionService`) is SERVING while the decision log can record and
NOT_SERVING while it cannot (readiness: `DecisionLog.watch`, which checks the log in the
background, so a health check never waits on the database). Calls pass their remaining deadline
to the log, which gives up a little before it (UNAVAILABLE) rather than hold a worker thread.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from concurrent import futures

import grpc
from google.rpc import status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from cms_policy.v1 import policy_pb2 as pb
from cms_policy.v1 import policy_pb2_grpc as pb_grpc
from rules.audit.errors import DecisionLogError, DecisionLogIntegrityError, DecisionLogKeyError
from rules.audit.log import DecisionLog
from rules.audit.sealer import LoggedDecision
from rules.decide.replay import replay, what_if
from rules.engine.decision import Decision, DecisionRequest, RequestError, Violation
from rules.engine.durable_host import EngineError
from rules.explain import markdown
from rules.language import values

from . import authz, convert
from .limits import Limits
from .observability import UNKNOWN, Metrics, RpcObserver
from .reload import LiveBundle, Snapshot

log = logging.getLogger("cms_policy.service")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PolicyDecisionService"].full_name
ADMIN_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PolicyAdminService"].full_name
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_BATCH_REQUESTS = 1000  # requests in one DecideBatch
ENGINE_FAILED = "the rules engine failed on this request; it has been logged"


def _abort_invalid(context: grpc.ServicerContext, violations: list[Violation]) -> None:
    context.abort_with_status(convert.invalid_argument(violations))  # as many as fit in the trailers


def _status(code: grpc.StatusCode, message: str) -> status_pb2.Status:
    return status_pb2.Status(code=code.value[0], message=message)


def _abort_status(context: grpc.ServicerContext, status: status_pb2.Status) -> None:
    """End the call with `status` (its details, if any, in the trailers)."""
    grpc_status = rpc_status.to_status(status)
    if status.details:
        context.abort_with_status(grpc_status)
    context.abort(grpc_status.code, grpc_status.details)


def _parse_date(text: str, field: str) -> tuple[dt.date | None, list[Violation]]:
    if not text:
        return None, []
    try:
        return values.parse_date(text), []  # YYYY-MM-DD only, within the dates a fact may hold
    except values.FactValueError as exc:
        return None, [Violation(field=field, description=str(exc))]


class PolicyDecisionService(pb_grpc.PolicyDecisionServiceServicer):
    """Each call reads `live.current` once: it finishes on that bundle even if a reload swaps it."""

    def __init__(self, live: LiveBundle, decision_log: DecisionLog, metrics: Metrics | None = None):
        self.live = live
        self.decision_log = decision_log
        self.metrics = metrics if metrics is not None else Metrics()
        # the smallest decision (bytes in a reply) made so far, by `_size_key`: DecideBatch's estimate
        self.smallest: dict[tuple, int] = {}

    def _request(self, policy: str, version: str, as_at_text: str, facts=None, message: pb.DecideRequest | None = None
                 ) -> DecisionRequest:
        as_at, problems = _parse_date(as_at_text, "as_at")
        if not policy:
            problems.append(Violation(field="policy", description="required"))
        context = convert.request_context(message, problems) if message is not None else {}
        if problems:
            raise RequestError(problems)
        return DecisionRequest(policy=policy, version=version, as_at=as_at,
                               facts=convert.facts(facts), **context)

    def _decide(self, snapshot: Snapshot, request: pb.DecideRequest, **fields
                ) -> tuple[DecisionRequest, Decision] | status_pb2.Status:
        """One DecideRequest checked and decided under `snapshot` (not yet recorded): the request as
        the engine took it and the decision; or, if it cannot be decided, the status Decide fails
        with (logged as "decision rejected" or "engine failure", with `fields`)."""
        policy = _policy_label(snapshot, request.policy)
        try:
            asked = self._request(request.policy, request.version, request.as_at, request.facts, request)
            return asked, snapshot.evaluator.decide(asked)
        except RequestError as exc:
            log.info("decision rejected", extra={"policy": policy, "fields": _field_names(snapshot, exc.violations),
                                                 **fields})
            return convert.bad_request(exc.violations)  # as many as fit in the trailers
        except EngineError:
            log.exception("engine failure", extra={"policy": policy, **fields})
            return _status(grpc.StatusCode.INTERNAL, ENGINE_FAILED)

    def _decided(self, decision: Decision, seconds: float, record_seconds: float, **fields) -> tuple[str, dict]:
        """Count a decision that has been recorded; its log line, for `_log_after_reply`."""
        self.metrics.decided(decision.policy.policy, decision.policy.version, decision.outcome, seconds,
                             record_seconds)
        return "decision", {**_decision_fields(decision), "latency_ms": _ms(seconds),
                            "record_ms": _ms(record_seconds), **fields}

    def Decide(self, request: pb.DecideRequest, context: grpc.ServicerContext) -> pb.DecideResponse:
        started = time.perf_counter()
        snapshot = self.live.current
        policy = _policy_label(snapshot, request.policy)
        self._check_deadline(context, "before_decide", started, policy=policy)
        result = self._decide(snapshot, request)
        if isinstance(result, status_pb2.Status):
            _abort_status(context, result)
        asked, decision = result
        decided = time.perf_counter()
        # A decision the client can no longer receive is not recorded.
        self._check_deadline(context, "before_record", started, policy=policy, version=decision.policy.version)
        try:
            self.decision_log.record(asked, decision, timeout=context.time_remaining())
        except Exception as exc:  # never return a decision that is not recorded
            log.error("decision not recorded", extra={**_decision_fields(decision), "error": _error_text(exc)})
            context.abort(grpc.StatusCode.UNAVAILABLE, "the decision could not be recorded; try again")
        recorded = time.perf_counter()
        reply = convert.decision(convert.viewed(decision, request.view))
        self._sized(request, reply.ByteSize())
        done = time.perf_counter()  # latency_ms spans the whole handler, the reply's message included
        _log_after_reply(context, [self._decided(decision, done - started, recorded - decided)])
        return reply

    def _sized(self, request: pb.DecideRequest, size: int) -> None:
        key = _size_key(request)
        if size < self.smallest.get(key, size + 1):
            self.smallest[key] = size

    def DecideBatch(self, request: pb.DecideBatchRequest, context: grpc.ServicerContext) -> pb.DecideBatchResponse:
        """Each request as Decide would decide it, on one bundle, its error kept in its own result;
        then every decision recorded in one transaction, or the call fails and none is."""
        started = time.perf_counter()
        snapshot = self.live.current
        count = len(request.requests)
        if count > MAX_BATCH_REQUESTS:
            log.info("batch rejected", extra={"items": count})
            _abort_invalid(context, [Violation(field="requests", description=(
                f"at most {MAX_BATCH_REQUESTS} requests in a batch, not {count}: send several batches"))])
        self._check_deadline(context, "before_decide", started, items=count)
        # Refuse as soon as the reply cannot fit (gRPC would not send it; nothing is recorded yet):
        # the results made so far, plus for each request still to decide the smallest decision made
        # for its policy (none yet: 0) — not after deciding them all (a 1,000-item batch took 6–7 s
        # to fail, issue 27 item 9).
        ahead = [0] * (count + 1)  # ahead[i]: the least the results of requests i… can come to
        for index in range(count - 1, -1, -1):
            ahead[index] = ahead[index + 1] + self.smallest.get(_size_key(request.requests[index]), 0)
        size = 0
        # per request: (the request as decided, its decision, seconds to decide it), or its error
        results: list[tuple[DecisionRequest, Decision, float] | status_pb2.Status] = []
        response = pb.DecideBatchResponse()  # filled in place: a message set as a field is copied
        for index, item in enumerate(request.requests):
            if size + ahead[index] > MAX_MESSAGE_BYTES:
                self._too_large(context, count, index, size, size + ahead[index])
            if index:
                self._check_deadline(context, "between_items", started, items=count, index=index)
            item_started = time.perf_counter()
            refusal = authz.request_refusal("decide", item.policy, item.view, "Decide", index)
            result = (_status(grpc.StatusCode.PERMISSION_DENIED, refusal) if refusal is not None
                      else self._decide(snapshot, item, index=index))
            if isinstance(result, status_pb2.Status):
                results.append(result)
                entry = response.results.add(error=result)
            else:
                results.append((*result, time.perf_counter() - item_started))
                entry = response.results.add()
                convert.decision(convert.viewed(result[1], item.view), entry.decision)
                self._sized(item, entry.decision.ByteSize())
            entry_size = entry.ByteSize()
            size += 1 + _varint_size(entry_size) + entry_size  # as the reply encodes it: tag, length, entry
        if size > MAX_MESSAGE_BYTES:
            self._too_large(context, count, count, size, size)
        decided = [r for r in results if isinstance(r, tuple)]
        self._check_deadline(context, "before_record", started, items=count)
        recording = time.perf_counter()
        try:
            self.decision_log.record_batch([(asked, decision) for asked, decision, _ in decided],
                                           timeout=context.time_remaining())
        except Exception as exc:  # never return a decision that is not recorded
            log.error("batch not recorded", extra={"items": count, "decided": len(decided),
                                                   "error": _error_text(exc)})
            context.abort(grpc.StatusCode.UNAVAILABLE,
                          "the batch's decisions could not be recorded (none of them was); try again")
        done = time.perf_counter()
        record_seconds = done - recording
        # each decision's own time, and the wait until it was durable
        lines = [self._decided(result[1], result[2] + record_seconds, record_seconds, index=index)
                 for index, result in enumerate(results) if isinstance(result, tuple)]
        lines.append(("batch decided", {"items": count, "decided": len(decided), "failed": count - len(decided),
                                        "latency_ms": _ms(done - started), "record_ms": _ms(record_seconds)}))
        _log_after_reply(context, lines)
        return response

    def _too_large(self, context: grpc.ServicerContext, count: int, done: int, size: int, least: int) -> None:
        """Refuse a batch whose reply would pass the message limit: `done` requests decided, whose
        results come to `size` bytes, and at least `least` bytes with the rest."""
        log.info("batch too large", extra={"items": count, "decided": done, "bytes": size, "least_bytes": least})
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, (
            f"the {count} results come to {'' if done == count else 'at least '}{least} bytes, more than a message "
            f"may hold ({MAX_MESSAGE_BYTES}); nothing was recorded: send fewer requests per batch "
            "(or leave out include_counterfactuals)"))

    def _check_deadline(self, context: grpc.ServicerContext, stage: str, started: float, **fields) -> None:
        """Give up (DEADLINE_EXCEEDED, or CANCELLED) if the client's deadline has passed or the
        client has gone: nothing after this point would reach it."""
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            code = grpc.StatusCode.DEADLINE_EXCEEDED
        elif not context.is_active():
            code = grpc.StatusCode.CANCELLED
        else:
            return
        self.metrics.deadlines.labels(stage).inc()
        log.info("decision abandoned", extra={**fields, "stage": stage, "code": code.name,
                                              "latency_ms": _ms(time.perf_counter() - started)})
        context.abort(code, f"the deadline passed {stage.replace('_', ' ')}; nothing was recorded"
                      if code is grpc.StatusCode.DEADLINE_EXCEEDED else "cancelled; nothing was recorded")

    def _logged(self, decision_id: str, context: grpc.ServicerContext) -> LoggedDecision:
        if not decision_id:
            _abort_invalid(context, [Violation(field="decision_id", description="required")])
        if len(decision_id) > values.MAX_NAME:
            _abort_invalid(context, [Violation(field="decision_id", description=f"longer than {values.MAX_NAME} characters")])
        logged_id = _id_label(decision_id)
        try:
            logged = self.decision_log.get(decision_id, timeout=context.time_remaining())
        except DecisionLogKeyError as exc:
            log.error("decision unreadable", extra={"decision_id": logged_id, "error": str(exc)})
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"the decision cannot be decrypted: {exc}")
        except DecisionLogIntegrityError as exc:
            log.error("decision fails its integrity check", extra={"decision_id": logged_id})
            context.abort(grpc.StatusCode.DATA_LOSS, str(exc))
        except DecisionLogError as exc:
            log.error("decision log read failed", extra={"decision_id": logged_id, "error": str(exc)})
            context.abort(grpc.StatusCode.UNAVAILABLE, "the decision log could not be read")
        if logged is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no decision with id '{decision_id[:64]}'")
        return logged  # type: ignore[return-value]  # context.abort raises: grpc is untyped, so mypy cannot know

    def GetDecision(self, request: pb.GetDecisionRequest, context: grpc.ServicerContext) -> pb.GetDecisionResponse:
        problems = convert.view_problems(request.view)
        if problems:
            _abort_invalid(context, problems)
        logged = self._logged(request.decision_id, context)
        log.info("decision fetched", extra={"decision_id": logged.decision.decision_id})
        if request.view:  # a parent's: the request holds the other parent's facts
            return pb.GetDecisionResponse(decision=convert.decision(convert.viewed(logged.decision, request.view)))
        return pb.GetDecisionResponse(request=convert.decide_request(logged.request),
                                 decision=convert.decision(logged.decision), bundle_hash=logged.bundle_hash)

    def ReplayDecision(self, request: pb.ReplayDecisionRequest, context: grpc.ServicerContext
                       ) -> pb.ReplayDecisionResponse:
        started = time.perf_counter()
        logged = self._logged(request.decision_id, context)
        original = logged.decision
        fields = {"decision_id": original.decision_id, "policy": original.policy.policy,
                  "version": original.policy.version}
        self._check_deadline(context, "before_replay", started, **fields)
        try:
            result = replay(self.live.current.evaluator, logged)
        except RequestError as exc:
            log.info("replay refused", extra=fields)
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"cannot replay: {exc}")
        except EngineError:
            log.exception("engine failure on replay", extra=fields)
            context.abort(grpc.StatusCode.INTERNAL, "the rules engine failed on this replay; it has been logged")
        # Which parts differ, never their values (they can quote facts).
        log.log(logging.INFO if result.identical else logging.WARNING, "replay", extra={
            **fields, "identical": result.identical, "differing": [d.split(":", 1)[0] for d in result.differences],
            "latency_ms": _ms(time.perf_counter() - started)})
        response = pb.ReplayDecisionResponse(identical=result.identical, original=convert.decision(original),
                                             replayed=convert.decision(result.replayed), differences=result.differences)
        if result.current is not None:
            convert.decision(result.current, response.current)
            response.current_differences.extend(result.current_differences)
        return response

    def WhatIf(self, request: pb.WhatIfRequest, context: grpc.ServicerContext) -> pb.WhatIfResponse:
        started = time.perf_counter()
        problems = convert.view_problems(request.view)
        if problems:
            _abort_invalid(context, problems)
        logged = self._logged(request.decision_id, context)
        ref = logged.decision.policy
        fields = {"decision_id": logged.decision.decision_id, "policy": ref.policy, "version": ref.version}
        self._check_deadline(context, "before_what_if", started, **fields)
        try:
            found = convert.viewed(what_if(self.live.current.evaluator, logged), request.view)
        except RequestError as exc:
            log.info("what-if refused", extra=fields)
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"cannot work out what would change it: {exc}")
        except EngineError:
            log.exception("engine failure on what-if", extra=fields)
            context.abort(grpc.StatusCode.INTERNAL, "the rules engine failed on this what-if; it has been logged")
        log.info("what-if", extra={**fields, "changes": len(found.counterfactuals),
                                   "latency_ms": _ms(time.perf_counter() - started)})
        reply = pb.WhatIfResponse(decision_id=found.decision_id, outcome=found.outcome)
        whole = convert.decision(found)  # the changes and texts as DecideResponse carries them
        reply.counterfactuals.extend(whole.counterfactuals)
        reply.explanations.extend(whole.explanations)
        return reply

    def ListPolicies(self, request: pb.ListPoliciesRequest, context) -> pb.ListPoliciesResponse:
        bundle = self.live.current.bundle
        return pb.ListPoliciesResponse(
            policies=[pb.PolicySummary(policy=name, versions=[convert.policy_ref(c) for c in bundle.versions(name)])
                      for name in sorted(bundle.policies)],
            bundle_hash=bundle.bundle_hash)

    def GetPolicy(self, request: pb.GetPolicyRequest, context: grpc.ServicerContext) -> pb.GetPolicyResponse:
        snapshot = self.live.current
        if request.revision < 0:
            _abort_invalid(context, [Violation(field="revision", description="0 for the current revision, or a revision number")])
        try:
            compiled, _ = snapshot.evaluator.select(self._request(request.policy, request.version, request.as_at, None))
        except RequestError as exc:
            _abort_invalid(context, exc.violations)
        pv = compiled.version
        earlier = snapshot.bundle.earlier_revisions(pv.policy, pv.version)
        if request.revision and request.revision != pv.revision:
            # An earlier revision as it was: only the revisions before it are earlier than it.
            older = next((c for c in earlier if c.version.revision == request.revision), None)
            if older is None:
                loaded = ", ".join(str(c.version.revision) for c in [*earlier, compiled])
                context.abort(grpc.StatusCode.NOT_FOUND,
                              f"{pv.policy}/{pv.version} has no revision {request.revision}; loaded: {loaded}")
            compiled = older  # type: ignore[assignment]  # context.abort raises: grpc is untyped, so mypy cannot know
            earlier = [c for c in earlier if c.version.revision < request.revision]
        detail = convert.policy_detail(compiled, earlier)
        if request.markdown:
            detail.markdown = markdown.document(compiled)
        return detail


class PolicyAdminService(pb_grpc.PolicyAdminServiceServicer):
    def __init__(self, live: LiveBundle, after_reload: Callable[[], None] | None = None):
        self.live = live
        self.after_reload = after_reload

    def ReloadPolicies(self, request: pb.ReloadPoliciesRequest, context: grpc.ServicerContext
                       ) -> pb.ReloadPoliciesResponse:
        result = self.live.reload()
        if result.refused:
            context.abort_with_status(convert.precondition_failure(result.errors, (  # as many as fit in the trailers
                f"policy files refused ({len(result.errors)} errors); still serving bundle {result.bundle_hash}")))
        if self.after_reload is not None:
            self.after_reload()
        return pb.ReloadPoliciesResponse(changed=result.changed, bundle_hash=result.bundle_hash,
                                         previous_bundle_hash=result.previous_bundle_hash, versions=result.versions)


def _log_after_reply(context: grpc.ServicerContext, lines: list[tuple[str, dict]]) -> None:
    """Log `lines` (message, fields; INFO) once the call has ended, with the call's log fields: gRPC
    runs the callback after it has sent the reply, so writing the lines is not on the reply's path
    (it took 0.06–0.15 of an echo round trip off Decide's p50 here). At once if the call has ended."""
    def write() -> None:
        for message, fields in lines:
            log.info(message, extra=fields)
    copied = contextvars.copy_context()

    def run() -> None:
        copied.run(write)
    if not context.add_callback(run):
        run()


def _size_key(request: pb.DecideRequest) -> tuple:
    """What a decision's size depends on most: its policy, counterfactuals or not, and the view."""
    return request.policy, request.include_counterfactuals, request.view


def _varint_size(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _decision_fields(decision) -> dict:
    """What the logs say about a decision: its id and names from the policy files, never a fact nor
    an outcome (beside the id, which the case system holds, an outcome such as an escalation for
    abuse tells the case's circumstances; the metrics count outcomes, without ids)."""
    fields = {"decision_id": decision.decision_id, "policy": decision.policy.policy,
              "version": decision.policy.version, "bundle": decision.bundle_hash[:12]}
    if decision.shadow is not None:
        fields["shadow_version"] = decision.shadow.policy.version if decision.shadow.policy else None
    return fields


def _policy_label(snapshot: Snapshot, name: str) -> str:
    """A policy name for a log or a metric label: one the loaded bundle knows, else "unknown" (what
    a client sends can be anything, and labels must stay few)."""
    return name if name in snapshot.bundle.policies else UNKNOWN


def _id_label(decision_id: str) -> str:
    """A decision id the client sent, for the logs: ids are 32 hex digits; anything else is not shown."""
    return decision_id if len(decision_id) == 32 and all(c in "0123456789abcdef" for c in decision_id) else "(malformed)"


def _field_names(snapshot: Snapshot, violations: list[Violation]) -> list[str]:
    """The fields of a rejected request, for the logs: a name (a fact, a list item's fact) the
    bundle does not declare is shown as `?`, since a client could put anything in a key."""
    known = _known_names(snapshot)
    out = []
    for v in violations[:20]:
        parts = []
        for part in v.field.split("."):
            name, bracket, index = part.partition("[")
            safe = name in known and (not bracket or index.rstrip("]").isdigit())
            parts.append(part if safe else "?")
        out.append(".".join(parts))
    return out


_KNOWN: dict[str, frozenset[str]] = {}


def _known_names(snapshot: Snapshot) -> frozenset[str]:
    """Every name a request's field may rightly have under this bundle (request fields, facts,
    lists and their items' facts)."""
    bundle = snapshot.bundle
    names = _KNOWN.get(bundle.bundle_hash)
    if names is None:
        found = {"facts", "policy", "version", "as_at", "subject", "requested_by", "reason", "shadow_version",
                 "decision_id", "view", "omit_counterfactuals"}
        for compiled in (c for name in bundle.policies for c in bundle.versions(name)):
            pv = compiled.version
            found.update(f.name for f in pv.facts)
            for lst in pv.lists:
                found.add(lst.name)
                found.update(f.name for f in lst.facts)
        names = _KNOWN[bundle.bundle_hash] = frozenset(found)
    return names


def _error_text(exc: Exception) -> str:
    """An error for the logs: storage errors say what failed; anything else only its type (its
    message might quote a fact)."""
    if isinstance(exc, (DecisionLogError, OSError)):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


def build_server(live: LiveBundle, address: str, max_workers: int = 8, *, decision_log: DecisionLog,
                 credentials: grpc.ServerCredentials | None = None,
                 interceptors: Sequence[grpc.ServerInterceptor] = (),
                 metrics: Metrics | None = None, shared_port: bool = False,
                 after_reload: Callable[[], None] | None = None, limits: Limits | None = None,
                 private_address: str | None = None
                 ) -> tuple[grpc.Server, int]:
    """A started server on `address` ("host:port"; port 0 picks one) and the port it bound,
    answering from `live` (which the caller may reload). Every decision is recorded in
    `decision_log` (the caller opens and closes it). `credentials`: TLS (service/tls.py), else
    plaintext; `interceptors` run in order, the first outermost (e.g. service/authz.py), after
    the RpcObserver, which counts what they refuse. Counts go to `metrics` (default: a registry of
    its own that nothing serves). `shared_port`: other processes serve the same port (service/workers.py);
    `after_reload` runs after ReloadPolicies has loaded new files. `limits`: connections, streams
    and timeouts (default: service/limits.py's defaults). `private_address` (a worker's `unix:` socket
    in its supervisor's private directory) serves too, for the supervisor's health checks."""
    metrics = metrics if metrics is not None else Metrics()
    limits = limits if limits is not None else Limits()
    metrics.bundle_served(live.current.bundle.bundle_hash, sum(len(v) for v in live.current.bundle.policies.values()))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
                         interceptors=[RpcObserver(metrics), convert.WireErrors(), *interceptors],
                         options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                  ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                                  ("grpc.so_reuseport", int(shared_port)), *limits.options()],
                         # beyond it RESOURCE_EXHAUSTED at once, not an ever longer queue for the threads
                         maximum_concurrent_rpcs=limits.max_concurrent_rpcs)
    pb_grpc.add_PolicyDecisionServiceServicer_to_server(PolicyDecisionService(live, decision_log, metrics), server)
    pb_grpc.add_PolicyAdminServiceServicer_to_server(PolicyAdminService(live, after_reload), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, ADMIN_SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server)
    try:  # grpcio raises RuntimeError ("Failed to bind") where older releases returned port 0
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {address}: the port is in use, or the address is not one of this machine's")
    if private_address is not None:
        try:
            server.add_insecure_port(private_address)
        except RuntimeError:
            raise OSError(f"cannot listen on {private_address}") from None
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)  # liveness: the process answers

    def ready(can_record: bool) -> None:  # readiness: decisions can be recorded
        health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING if can_record
                            else health_pb2.HealthCheckResponse.NOT_SERVING)

    decision_log.watch(ready)
    ready(decision_log.ready)
    return server, port
