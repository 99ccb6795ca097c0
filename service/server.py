"""The gRPC adapter: requests in, engine decisions out, errors as gRPC statuses.

Logs carry the decision id, policy, version, outcome and latency — never facts.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from concurrent import futures

import grpc
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from cms_policy.v1 import policy_pb2 as pb
from cms_policy.v1 import policy_pb2_grpc as pb_grpc
from rules.decision import DecisionRequest, RequestError, Violation
from rules.durable_host import EngineError
from rules.evaluator import Evaluator
from rules.loader import Bundle

from . import convert

log = logging.getLogger("cms_policy.service")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PolicyDecisionService"].full_name
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
    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.evaluator = Evaluator(bundle)

    def _request(self, policy: str, version: str, as_at_text: str, facts=None, message: pb.DecideRequest | None = None
                 ) -> DecisionRequest:
        as_at, problems = _parse_date(as_at_text, "as_at")
        if not policy:
            problems.append(Violation(field="policy", description="required"))
        context = convert.request_context(message, problems) if message is not None else {}
        if problems:
            raise RequestError(problems)
        return DecisionRequest(policy=policy, version=version, as_at=as_at,
                               facts=json_format.MessageToDict(facts) if facts is not None else {}, **context)

    def Decide(self, request: pb.DecideRequest, context: grpc.ServicerContext) -> pb.Decision:
        started = time.perf_counter()
        try:
            decision = self.evaluator.decide(
                self._request(request.policy, request.version, request.as_at, request.facts, request))
        except RequestError as exc:
            log.info("decide rejected policy=%s fields=%s", request.policy[:64],
                     ",".join(v.field for v in exc.violations)[:200])
            _abort_invalid(context, exc.violations)
        except EngineError:
            log.exception("engine failure policy=%s", request.policy[:64])
            context.abort(grpc.StatusCode.INTERNAL, "the rules engine failed on this request; it has been logged")
        log.info("decision id=%s policy=%s version=%s outcome=%s latency_ms=%.2f",
                 decision.decision_id, decision.policy.policy, decision.policy.version, decision.outcome,
                 (time.perf_counter() - started) * 1000)
        return convert.decision(decision)

    def ListPolicies(self, request: pb.ListPoliciesRequest, context) -> pb.ListPoliciesResponse:
        return pb.ListPoliciesResponse(
            policies=[pb.PolicySummary(policy=name, versions=[convert.policy_ref(c) for c in self.bundle.versions(name)])
                      for name in sorted(self.bundle.policies)],
            bundle_hash=self.bundle.bundle_hash)

    def GetPolicy(self, request: pb.GetPolicyRequest, context: grpc.ServicerContext) -> pb.PolicyVersionDetail:
        try:
            compiled, _ = self.evaluator.select(self._request(request.policy, request.version, request.as_at, None))
        except RequestError as exc:
            _abort_invalid(context, exc.violations)
        return convert.policy_detail(compiled)


def build_server(bundle: Bundle, address: str, max_workers: int = 8) -> tuple[grpc.Server, int]:
    """A started server on `address` ("host:port"; port 0 picks one) and the port it bound."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
                         options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                  ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
    pb_grpc.add_PolicyDecisionServiceServicer_to_server(PolicyDecisionService(bundle), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port
