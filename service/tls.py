"""Transport security: TLS and mutual TLS from certificate files, and plaintext only on loopback.

- `--tls-cert FILE --tls-key FILE`: serve TLS with this certificate (PEM; the file may hold the
  chain after the server's own certificate) and its unencrypted PEM private key.
- `--tls-client-ca FILE`: mutual TLS. Every client must present a certificate issued by one of the
  CA certificates in FILE (PEM, one or more); a connection without one is refused in the handshake.
- Neither: plaintext, which is allowed on a loopback address only (`localhost`, `127.0.0.1`,
  `::1`) unless `--insecure-plaintext` says, on purpose, that it may be served on a network.

The files are checked at start-up (each parses, the key belongs to the certificate, the certificate
has not expired) and a problem stops the service with a clear error. They are looked at again
before each new connection: replaced files (a renewed certificate, a rotated client CA) are used
from the next connection on without a restart. Replaced files that do not check out are refused
with an error in the log, and the previous ones go on serving.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

log = logging.getLogger("cms_policy.tls")

PLAINTEXT, TLS, MUTUAL_TLS = "plaintext", "TLS", "mutual TLS"


class TransportConfigError(Exception):
    """The transport options or files cannot be used (the service does not start)."""


def add_arguments(parser) -> None:
    group = parser.add_argument_group("transport security")
    group.add_argument("--tls-cert", type=Path, metavar="FILE",
                       help="serve TLS with this PEM certificate (the server's first, then any intermediates)")
    group.add_argument("--tls-key", type=Path, metavar="FILE", help="the certificate's PEM private key (unencrypted)")
    group.add_argument("--tls-client-ca", type=Path, metavar="FILE",
                       help="mutual TLS: require a client certificate issued by a CA in this PEM file")
    group.add_argument("--insecure-plaintext", action="store_true",
                       help="allow plaintext (no TLS) on a non-loopback --host: anyone who can reach the port "
                            "can read and send requests")


def is_loopback(host: str) -> bool:
    """True when `host` can only be reached from this machine: a loopback address, or a name
    every address of which is loopback. Any-address binds ("0.0.0.0", "::", "") are not."""
    name = host.strip().removeprefix("[").removesuffix("]")
    if not name:
        return False
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    if name.lower() == "localhost":
        return True
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(str(a).split("%", 1)[0]).is_loopback for a in addresses)


@dataclass(frozen=True)
class _Loaded:
    """Checked certificate material, ready for gRPC."""
    key: bytes
    chain: bytes
    client_ca: bytes | None
    summary: str  # for the log: subject, expiry, client CAs

    def configuration(self):
        return grpc.ssl_server_certificate_configuration([(self.key, self.chain)], root_certificates=self.client_ca)


@dataclass(frozen=True)
class CertificateFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None

    def paths(self) -> tuple[Path, ...]:
        return (self.cert, self.key) + ((self.client_ca,) if self.client_ca else ())

    def signature(self) -> tuple:
        """What the files look like on disk (a renewed certificate changes it)."""
        out: list[tuple[int, int, int] | None] = []
        for path in self.paths():
            try:
                stat = os.stat(path)
                out.append((stat.st_ino, stat.st_mtime_ns, stat.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def load(self, now: dt.datetime | None = None) -> _Loaded:
        chain_pem = _read(self.cert, "--tls-cert")
        key_pem = _read(self.key, "--tls-key")
        try:
            chain = x509.load_pem_x509_certificates(chain_pem)
        except ValueError:
            raise TransportConfigError(f"{self.cert}: not a PEM certificate") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except TypeError:
            raise TransportConfigError(f"{self.key}: the private key is encrypted; give an unencrypted PEM key "
                                       "(protect it with file permissions or a secret store)") from None
        except (ValueError, UnsupportedAlgorithm):
            raise TransportConfigError(f"{self.key}: not a PEM private key") from None
        leaf = chain[0]
        if _spki(key.public_key()) != _spki(leaf.public_key()):
            raise TransportConfigError(f"{self.key}: this private key does not belong to the certificate in {self.cert}")
        now = now or dt.datetime.now(dt.UTC)
        if leaf.not_valid_after_utc <= now:
            raise TransportConfigError(f"{self.cert}: the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
        if leaf.not_valid_before_utc > now:
            raise TransportConfigError(f"{self.cert}: the certificate is not valid until "
                                       f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
        summary = f"certificate {leaf.subject.rfc4514_string() or '(no subject)'}, expires " \
                  f"{leaf.not_valid_after_utc:%Y-%m-%d}"
        ca_pem = None
        if self.client_ca is not None:
            ca_pem = _read(self.client_ca, "--tls-client-ca")
            try:
                cas = x509.load_pem_x509_certificates(ca_pem)
            except ValueError:
                raise TransportConfigError(f"{self.client_ca}: not a PEM certificate") from None
            summary += f"; client certificates required, issued by {len(cas)} CA(s) in {self.client_ca}: " + \
                       ", ".join(ca.subject.rfc4514_string() for ca in cas)
        return _Loaded(key_pem, chain_pem, ca_pem, summary)


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TransportConfigError(f"{flag} {path}: {exc.strerror or exc}") from None


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class _Rotating:
    """gRPC asks this before each TLS handshake: a new configuration when the files changed and
    check out, else None (keep the current one)."""

    def __init__(self, files: CertificateFiles, loaded_signature: tuple):
        self.files = files
        self._signature = loaded_signature
        self._refused: tuple | None = None
        self._lock = threading.Lock()

    def __call__(self):
        try:
            with self._lock:
                signature = self.files.signature()
                if signature in (self._signature, self._refused):
                    return None
                try:
                    loaded = self.files.load()
                except TransportConfigError as exc:
                    self._refused = signature  # said once; tried again when the files change again
                    log.error("TLS files changed but are refused, still serving the previous ones: %s", exc)
                    return None
                self._signature = signature
            log.info("TLS files reloaded: %s", loaded.summary)
            return loaded.configuration()
        except Exception:  # never fail a handshake over a reload
            log.exception("TLS reload failed; still serving the previous certificate")
            return None


@dataclass(frozen=True)
class Transport:
    mode: str  # PLAINTEXT, TLS or MUTUAL_TLS
    host: str
    loopback: bool
    credentials: grpc.ServerCredentials | None = None  # None: plaintext
    summary: str = ""

    @property
    def client_certificates(self) -> bool:
        return self.mode == MUTUAL_TLS

    def startup_lines(self) -> list[tuple[int, str]]:
        """What the log says at start-up (level, message)."""
        if self.mode == PLAINTEXT and self.loopback:
            return [(logging.WARNING, f"transport: INSECURE plaintext (no TLS) on loopback address {self.host} only, "
                                      "for local development; give --tls-cert and --tls-key to serve beyond this machine")]
        if self.mode == PLAINTEXT:
            return [(logging.WARNING, f"transport: INSECURE plaintext (no TLS) on non-loopback address {self.host} "
                                      "(--insecure-plaintext): anyone who can reach the port can read and send "
                                      "requests and decisions")]
        return [(logging.INFO, f"transport: {self.mode} ({self.summary})")]


def configure(host: str, cert: Path | None, key: Path | None, client_ca: Path | None = None,
              insecure_plaintext: bool = False) -> Transport:
    """The transport for the command-line options, or TransportConfigError saying what is wrong."""
    loopback = is_loopback(host)
    if cert is None and key is None:
        if client_ca is not None:
            raise TransportConfigError("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)")
        if not loopback and not insecure_plaintext:
            raise TransportConfigError(
                f"refusing to serve plaintext on {host or 'every address'}, which is not a loopback address: give "
                "--tls-cert and --tls-key (and --tls-client-ca for mutual TLS), or --insecure-plaintext to accept "
                "that anyone who can reach the port can read and send requests")
        return Transport(PLAINTEXT, host, loopback)
    if cert is None or key is None:
        raise TransportConfigError("--tls-cert and --tls-key go together")
    if insecure_plaintext:
        raise TransportConfigError("--insecure-plaintext contradicts --tls-cert: choose one")
    files = CertificateFiles(cert, key, client_ca)
    signature = files.signature()
    loaded = files.load()
    credentials = grpc.dynamic_ssl_server_credentials(
        loaded.configuration(), _Rotating(files, signature), require_client_authentication=client_ca is not None)
    return Transport(MUTUAL_TLS if client_ca else TLS, host, loopback, credentials, loaded.summary)
