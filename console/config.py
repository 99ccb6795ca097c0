"""How the console was started: the service it calls, how users sign in, and where its data lives."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The GOV.UK Frontend package, installed by `npm ci` from package.json (never copied into the repo).
GOVUK_FRONTEND = ROOT / "node_modules" / "govuk-frontend" / "dist" / "govuk"


class ConfigError(ValueError):
    """A start-up setting that would make the console unsafe or unusable."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True)
class Config:
    service: str = "127.0.0.1:50051"  # host:port of the gRPC service
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: Path | None = None  # the console's own HTTPS certificate and key
    tls_key: Path | None = None
    service_ca: Path | None = None  # verify the service's TLS certificate with this CA (else plaintext)
    # Development: no sign-in; every call carries this token (if any). Only on loopback without TLS.
    dev_token: str | None = None
    # Sign-in: users present a bearer token of the service's authz file (or an OIDC proxy sends one).
    require_sign_in: bool = False
    golden: Path | None = None  # golden cases shown as worked examples (a dev checkout's tests/golden)
    reports: Path = field(default_factory=lambda: ROOT / "var" / "impact")  # impact reports: one folder each
    # Folders of cases an impact report may be made over (users pick one by its name, never type a path).
    case_folders: tuple[Path, ...] = ()
    assets: Path = GOVUK_FRONTEND
    session_secret: bytes = b""  # signs the session cookie (sign-in, CSRF); random per start if empty

    @property
    def secure(self) -> bool:
        return self.tls_cert is not None

    def check(self) -> None:
        """Refuse settings that would expose sensitive facts: a console off loopback needs TLS and
        signed-in users; development mode (no sign-in) stays on loopback."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together")
        if not is_loopback(self.host):
            if not self.secure:
                raise ConfigError(f"--host {self.host} is not loopback: it needs --tls-cert and --tls-key")
            if not self.require_sign_in:
                raise ConfigError(f"--host {self.host} is not loopback: users must sign in (--sign-in)")
            if self.dev_token:
                raise ConfigError("--dev-token-file is for development on loopback only")
        if self.require_sign_in and self.dev_token:
            raise ConfigError("--dev-token-file and --sign-in do not go together: signed-in users call with their own token")
        names = [folder.name for folder in self.case_folders]
        for folder in self.case_folders:
            if not folder.is_dir():
                raise ConfigError(f"--cases-folder {folder}: no such folder")
            if not folder.name or names.count(folder.name) > 1:  # users pick a folder by its name
                raise ConfigError(f"--cases-folder {folder}: each case folder needs a name of its own")
        if not (self.assets / "govuk-frontend.min.css").is_file():
            raise ConfigError(f"GOV.UK Frontend is not installed at {self.assets}: run `npm ci` (package.json)")
