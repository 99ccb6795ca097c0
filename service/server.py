"""The gRPC adapter: requests in, engine decisions out, errors as gRPC statuses.

Every decision is recorded in the decision log before Decide returns it. Logs carry the
decision id, policy, version, outcome and latency — never facts or explanation texts.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from concurrent import futures

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from cms_policy.v1 import policy_pb2 as pb
from cms_policy.v1 import policy_pb2_grpc as pb_grpc
from rules import decision_log as dlog
from rules import markdown
from rules.decision import DecisionRequest, RequestError, Violation
from rules.decision_log import DecisionLog, DecisionLogError, DecisionLogIntegrityError, DecisionLogKeyError
from rules.durable_host import EngineError

from . import convert
from .reload import LiveBundle

log = logging.getLogger("cms_policy.service")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PolicyDecisionService"].full_name
ADMIN_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PolicyAdminService"].full_name
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def _abort_invalid(context: grpc.ServicerContext, violations: list[Violation]) -> None:
    detail = error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description) for v in violations])
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT,
                               message="; ".join(f"{v.field}: {v.description}" for v in violations))
    status.details.add().Pack(detail)
    context.abort_with_status(rpc_status.to_status(status))


def _parse_date(text: str, field: str) -> tuple[dt.date | None, list[Violation]]:
    if not text:
        return None, []
    try:
        return dt.date.fromisoformat(text), []
    except ValueError:
        return None, [Violation(field=field, description="expected a date as YYYY-MM-DD")]


class PolicyDecisionService(pb_grpc.PolicyDecisionServiceServicer):
    """Each call reads `live.current` once: it finishes on that bundle even if a reload swaps it."""

    def __init__(self, live: LiveBundle, decision_log: DecisionLog):
        self.live = live
        self.decision_log = decision_log

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

    def Decide(self, request: pb.DecideRequest, context: grpc.ServicerContext) -> pb.Decision:
        started = time.perf_counter()
        evaluator = self.live.current.evaluator
        try:
            asked = self._request(request.policy, request.version, request.as_at, request.facts, request)
            decision = evaluator.decide(asked)
        except RequestError as exc:
            log.info("decide rejected policy=%s fields=%s", request.policy[:64],
                     ",".join(v.field for v in exc.violations)[:200])
            _abort_invalid(context, exc.violations)
        except EngineError:
            log.exception("engine failure policy=%s", request.policy[:64])
            context.abort(grpc.StatusCode.INTERNAL, "the rules engine failed on this request; it has been logged")
        decided = time.perf_counter()
        try:
            self.decision_log.record(asked, decision)
        except Exception as exc:  # never return a decision that is not recorded
            log.error("decision not recorded id=%s policy=%s version=%s error=%s", decision.decision_id,
                      decision.policy.policy, decision.policy.version, _error_text(exc))
            context.abort(grpc.StatusCode.UNAVAILABLE, "the decision could not be recorded; try again")
        done = time.perf_counter()
        log.info("decision id=%s policy=%s version=%s outcome=%s bundle=%s latency_ms=%.2f record_ms=%.2f",
                 decision.decision_id, decision.policy.policy, decision.policy.version, decision.outcome,
                 decision.bundle_hash[:12], (done - started) * 1000, (done - decided) * 1000)
        return convert.decision(decision)

    def _logged(self, decision_id: str, context: grpc.ServicerContext) -> dlog.LoggedDecision:
        if not decision_id:
            _abort_invalid(context, [Violation(field="decision_id", description="required")])
        try:
            logged = self.decision_log.get(decision_id)
        except DecisionLogKeyError as exc:
            log.error("decision unreadable id=%s error=%s", decision_id[:64], exc)
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"the decision cannot be decrypted: {exc}")
        except DecisionLogIntegrityError as exc:
            log.error("decision fails its integrity check id=%s", decision_id[:64])
            context.abort(grpc.StatusCode.DATA_LOSS, str(exc))
        except DecisionLogError as exc:
            log.error("decision log read failed id=%s error=%s", decision_id[:64], exc)
            context.abort(grpc.StatusCode.UNAVAILABLE, "the decision log could not be read")
        if logged is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no decision with id '{decision_id[:64]}'")
        return logged

    def GetDecision(self, request: pb.GetDecisionRequest, context: grpc.ServicerContext) -> pb.LoggedDecision:
        logged = self._logged(request.decision_id, context)
        log.info("decision fetched id=%s", logged.decision.decision_id)
        return pb.LoggedDecision(request=convert.decide_request(logged.request),
                                 decision=convert.decision(logged.decision), bundle_hash=logged.bundle_hash)

    def ReplayDecision(self, request: pb.ReplayDecisionRequest, context: grpc.ServicerContext
                       ) -> pb.ReplayDecisionResponse:
        logged = self._logged(request.decision_id, context)
        original = logged.decision
        try:
            result = dlog.replay(self.live.current.evaluator, logged)
        except RequestError as exc:
            log.info("replay refused id=%s policy=%s version=%s", original.decision_id, original.policy.policy,
                     original.policy.version)
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"cannot replay: {exc}")
        except EngineError:
            log.exception("engine failure on replay id=%s", original.decision_id)
            context.abort(grpc.StatusCode.INTERNAL, "the rules engine failed on this replay; it has been logged")
        # Which parts differ, never their values (they can quote facts).
        log.log(logging.INFO if result.identical else logging.WARNING,
                "replay id=%s policy=%s version=%s identical=%s differing=%s", original.decision_id,
                original.policy.policy, original.policy.version, result.identical,
                ",".join(d.split(":", 1)[0] for d in result.differences))
        return pb.ReplayDecisionResponse(identical=result.identical, original=convert.decision(original),
                                         replayed=convert.decision(result.replayed), differences=result.differences)

    def ListPolicies(self, request: pb.ListPoliciesRequest, context) -> pb.ListPoliciesResponse:
        bundle = self.live.current.bundle
        return pb.ListPoliciesResponse(
            policies=[pb.PolicySummary(policy=name, versions=[convert.policy_ref(c) for c in bundle.versions(name)])
                      for name in sorted(bundle.policies)],
            bundle_hash=bundle.bundle_hash)

    def GetPolicy(self, request: pb.GetPolicyRequest, context: grpc.ServicerContext) -> pb.PolicyVersionDetail:
        try:
            compiled, _ = self.live.current.evaluator.select(
                self._request(request.policy, request.version, request.as_at, None))
        except RequestError as exc:
            _abort_invalid(context, exc.violations)
        detail = convert.policy_detail(compiled)
        if request.markdown:
            detail.markdown = markdown.document(compiled)
        return detail


class PolicyAdminService(pb_grpc.PolicyAdminServiceServicer):
    def __init__(self, live: LiveBundle):
        self.live = live

    def ReloadPolicies(self, request: pb.ReloadPoliciesRequest, context: grpc.ServicerContext
                       ) -> pb.ReloadPoliciesResponse:
        result = self.live.reload()
        if result.refused:
            failure = error_details_pb2.PreconditionFailure(violations=[
                error_details_pb2.PreconditionFailure.Violation(type="POLICY_FILE", subject=f"{e.path}:{e.line}",
                                                                description=e.message) for e in result.errors])
            status = status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=(
                f"policy files refused ({len(result.errors)} errors); still serving bundle {result.bundle_hash}"))
            status.details.add().Pack(failure)
            context.abort_with_status(rpc_status.to_status(status))
        return pb.ReloadPoliciesResponse(changed=result.changed, bundle_hash=result.bundle_hash,
                                         previous_bundle_hash=result.previous_bundle_hash, versions=result.versions)


def _error_text(exc: Exception) -> str:
    """An error for the logs: storage errors say what failed; anything else only its type (its
    message might quote a fact)."""
    if isinstance(exc, (DecisionLogError, OSError)):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


def build_server(live: LiveBundle, address: str, max_workers: int = 8, *, decision_log: DecisionLog
                 ) -> tuple[grpc.Server, int]:
    """A started server on `address` ("host:port"; port 0 picks one) and the port it bound,
    answering from `live` (which the caller may reload). Every decision is recorded in
    `decision_log` (the caller opens and closes it)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
                         options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                  ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
    pb_grpc.add_PolicyDecisionServiceServicer_to_server(PolicyDecisionService(live, decision_log), server)
    pb_grpc.add_PolicyAdminServiceServicer_to_server(PolicyAdminService(live), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, ADMIN_SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port
