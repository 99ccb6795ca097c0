"""The decision log's keys: from a key file, the environment, or (SQLite, development only) a file
beside the log; the first key seals, the others open older rows."""
from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import secrets
from pathlib import Path

from rules.audit.errors import DecisionLogKeyError

log = logging.getLogger("cms_policy.decision_log")

KEY_ENV = "CMS_POLICY_LOG_KEY"
KEY_BYTES = 32
_URL = re.compile(r"(?i)^postgres(?:ql)?://")


def is_postgres_url(target: str | os.PathLike) -> bool:
    """Whether `target` names a PostgreSQL database (`postgresql://...` or `postgres://...`)."""
    return isinstance(target, str) and bool(_URL.match(target))


def key_id(key: bytes) -> str:
    """A short public name for a key (not reversible), stored with each row it seals."""
    return hashlib.sha256(b"cms-policy decision-log key\0" + key).hexdigest()[:16]


def parse_keys(text: str, source: str) -> list[bytes]:
    """Keys as base64 text, one per line (or comma-separated); `#` starts a comment. The first
    key seals new rows; the others are old keys, kept to open older rows."""
    keys = []
    for line in text.splitlines():
        for word in line.split("#", 1)[0].replace(",", " ").split():
            try:
                key = base64.b64decode(word, validate=True)
            except (binascii.Error, ValueError):
                raise DecisionLogKeyError(f"{source}: a key is not valid base64") from None
            if len(key) != KEY_BYTES:
                raise DecisionLogKeyError(f"{source}: a key must be {KEY_BYTES} bytes (base64 of 32 random bytes), "
                                          f"not {len(key)}")
            keys.append(key)
    if not keys:
        raise DecisionLogKeyError(f"{source}: no key found")
    return keys


def new_key_text() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def resolve_keys(target: str | os.PathLike, key_file: Path | None = None, environ=os.environ,
                 generate: bool = True) -> list[bytes]:
    """The keys for the log at `target`: from `key_file` if given, else the environment variable
    CMS_POLICY_LOG_KEY, else (local development only, SQLite only) `<db_path>.key`, generated if
    `generate`. A PostgreSQL log has no development key: it must come from a secret store."""
    if key_file is not None:
        try:
            return parse_keys(Path(key_file).read_text(), str(key_file))
        except OSError as exc:
            raise DecisionLogKeyError(f"cannot read the decision-log key file {key_file}: {exc.strerror}") from None
    if environ.get(KEY_ENV):
        return parse_keys(environ[KEY_ENV], KEY_ENV)
    if is_postgres_url(target):
        raise DecisionLogKeyError(
            f"no key for the PostgreSQL decision log: set {KEY_ENV} or give a key file (--decision-log-key-file; "
            "for `python -m rules explain`, --key-file), from a secret store; a development key file is only "
            "made beside a SQLite log")
    db_path = target
    dev_file = Path(f"{db_path}.key")
    if not dev_file.exists():
        if not generate:
            raise DecisionLogKeyError(f"no key for the decision log {db_path}: set {KEY_ENV} or give a key file "
                                      f"({dev_file} does not exist)")
        dev_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dev_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(new_key_text() + "\n")
        log.warning("generated a new decision-log key in %s for local development", dev_file)
    log.warning("decision-log key read from %s, beside the database: fine for development only; in production "
                "supply it from a secret store (%s or a key file outside the data directory)", dev_file, KEY_ENV)
    return parse_keys(dev_file.read_text(), str(dev_file))
