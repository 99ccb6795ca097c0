"""The console's only way to decisions and policies: the gRPC service, called with the user's token.

Errors come back as `ServiceError`, with the status code the pages turn into an HTTP status (a
refusal by the service's authorisation is a 403 page, never a page made without it) and, for
INVALID_ARGUMENT, the field each violation names so that a form can show it beside the field.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from cms_policy.v1 import policy_pb2 as pb
from cms_policy.v1 import policy_pb2_grpc

from .config import Config

TIMEOUT = 30.0  # seconds; a decision with counterfactuals takes milliseconds, a shadow one a little more
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


@dataclass
class ServiceError(Exception):
    code: grpc.StatusCode
    message: str
    fields: dict[str, str] = field(default_factory=dict)  # field path -> what is wrong with it

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 502)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def _service_error(error: grpc.RpcError) -> ServiceError:
    fields: dict[str, str] = {}
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            for violation in bad.field_violations:
                fields.setdefault(violation.field, violation.description)
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = error.details() if isinstance(error, grpc.Call) else str(error)
    return ServiceError(code, details or code.name, fields)


class ServiceClient:
    """One channel to the service for the console's life; each call carries the caller's token."""

    def __init__(self, config: Config):
        if config.service_ca:
            credentials = grpc.ssl_channel_credentials(root_certificates=config.service_ca.read_bytes())
            self._channel = grpc.secure_channel(config.service, credentials)
        else:
            self._channel = grpc.insecure_channel(config.service)
        self._stub = policy_pb2_grpc.PolicyDecisionServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request, token: str | None):
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        try:
            return getattr(self._stub, method)(request, timeout=TIMEOUT, metadata=metadata)
        except grpc.RpcError as error:
            raise _service_error(error) from None

    def list_policies(self, token: str | None) -> pb.ListPoliciesResponse:
        return self._call("ListPolicies", pb.ListPoliciesRequest(), token)

    def get_policy(self, token: str | None, policy: str, version: str = "", markdown: bool = False,
                   revision: int = 0) -> pb.GetPolicyResponse:
        return self._call("GetPolicy", pb.GetPolicyRequest(policy=policy, version=version, markdown=markdown,
                                                           revision=revision), token)

    def decide(self, token: str | None, request: pb.DecideRequest) -> pb.DecideResponse:
        return self._call("Decide", request, token)

    def get_decision(self, token: str | None, decision_id: str) -> pb.GetDecisionResponse:
        return self._call("GetDecision", pb.GetDecisionRequest(decision_id=decision_id), token)

    def replay(self, token: str | None, decision_id: str) -> pb.ReplayDecisionResponse:
        return self._call("ReplayDecision", pb.ReplayDecisionRequest(decision_id=decision_id), token)

    def what_if(self, token: str | None, decision_id: str) -> pb.WhatIfResponse:
        return self._call("WhatIf", pb.WhatIfRequest(decision_id=decision_id), token)
