"""`python -m service.probe`: is the service on this machine (or pod) SERVING? For a Kubernetes exec
probe: kubelet's own `grpc:` probe speaks plaintext only, and the service serves TLS off loopback.

    python -m service.probe                                    # plaintext to 127.0.0.1:50051
    python -m service.probe --tls-ca /etc/cms-policy/tls/ca.crt --tls-cert /etc/cms-policy/tls/tls.crt
    python -m service.probe --service cms.policy.v1.PolicyDecisionService   # readiness: can it record?

With `--tls-ca` the connection is TLS, verified against that CA, for the name `--server-name`
(default: the first DNS name of the certificate in `--tls-cert`, else localhost). Where the
service requires client certificates, give the probe one (`--client-cert`, `--client-key`).
Exit status 0 when the health service says SERVING, else 1 with the reason on standard error.
Without `--service` it asks about the server, SERVING while the process serves (liveness); with
`--service cms.policy.v1.PolicyDecisionService`, whether decisions can be recorded (readiness).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _server_name(cert: Path | None) -> str:
    if cert is None:
        return "localhost"
    leaf = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    return names[0] if names else "localhost"


def check(address: str, *, tls_ca: Path | None = None, tls_cert: Path | None = None, server_name: str | None = None,
          client_cert: Path | None = None, client_key: Path | None = None, service: str = "",
          timeout: float = 5.0) -> str | None:
    """None when `address` answers SERVING for `service`, else why not."""
    if tls_ca is None:
        channel = grpc.insecure_channel(address)
    else:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls_ca.read_bytes(),
            private_key=client_key.read_bytes() if client_key else None,
            certificate_chain=client_cert.read_bytes() if client_cert else None)
        name = server_name or _server_name(tls_cert)
        channel = grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", name)])
    with channel:
        try:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                               timeout=timeout).status
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
    if status != health_pb2.HealthCheckResponse.SERVING:
        return health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default="127.0.0.1:50051", help="host:port (default: %(default)s)")
    parser.add_argument("--service", default="", help="the health service name to ask about (default: the server)")
    parser.add_argument("--tls-ca", type=Path, help="speak TLS, trusting this CA certificate (PEM)")
    parser.add_argument("--tls-cert", type=Path, help="the service's certificate: its first DNS name is verified")
    parser.add_argument("--server-name", help="the name to verify instead")
    parser.add_argument("--client-cert", type=Path, help="a client certificate, where the service requires one")
    parser.add_argument("--client-key", type=Path, help="its private key")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        problem = check(args.address, tls_ca=args.tls_ca, tls_cert=args.tls_cert, server_name=args.server_name,
                        client_cert=args.client_cert, client_key=args.client_key, service=args.service,
                        timeout=args.timeout)
    except (OSError, ValueError) as exc:
        problem = f"cannot read the probe's files: {exc}"
    if problem:
        print(f"not serving: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
