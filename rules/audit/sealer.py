"""Sealing a decision for the log, the same for every backend: AES-256-GCM over the request and
decision, padded to a power of two, with every clear column as associated data."""
from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass, fields, replace
from operator import attrgetter

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rules.audit.errors import DecisionLogIntegrityError, DecisionLogKeyError
from rules.audit.keys import key_id
from rules.engine.decision import Decision, DecisionRequest

NONCE_BYTES = 12
SEAL_FORMAT = 2  # what new rows' associated data binds (_associated_data): 1 the decision id, 2 every clear column
PAYLOAD_FORMAT = 1
PAD_FROM = 4096  # bytes: the smallest padded document (see _pad)


@dataclass(frozen=True)
class LoggedDecision:
    request: DecisionRequest
    decision: Decision
    bundle_hash: str



@dataclass(frozen=True)
class SealedRow:
    """One row of the `decisions` table, as every backend stores it (the fields in column order)."""
    decision_id: str
    decided_at: str
    policy: str
    version: str
    content_hash: str
    bundle_hash: str
    shadow_version: str | None
    key_id: str
    nonce: bytes
    sealed: bytes
    seal_format: int  # last: the column a migration added (in every backend the table's last)

    def values(self) -> tuple:
        return _column_values(self)  # not dataclasses.astuple: it deep-copies every field (30 µs a row)


COLUMNS = tuple(f.name for f in fields(SealedRow))
_column_values = attrgetter(*COLUMNS)


def _pad(document: bytes) -> bytes:
    """The JSON `document` followed by spaces up to the next power of two, PAD_FROM bytes at least,
    so that a sealed row's length tells only its size class (4, 8, 16 KiB…), not whether its texts
    name abuse. JSON ignores whitespace after the value, so reading needs no change and rows sealed
    before padding open as they always did."""
    size = max(PAD_FROM, 1 << (len(document) - 1).bit_length())
    return document + b" " * (size - len(document))


def _instant(value: str | dt.datetime) -> str:
    """`decided_at` as associated data: the UTC instant to the microsecond, the same whether it
    is read back as SQLite's text or as PostgreSQL's timestamptz (in the session's time zone).
    ValueError for a time without an offset or not a time at all."""
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("a decision time needs its UTC offset")
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _associated_data(row: SealedRow) -> bytes:
    """What a row's seal authenticates besides its document. Format 1 (rows sealed before format
    2): the decision id alone. Format 2: the format and every clear column, in column order, as a
    JSON array (unambiguous: each value quoted or null), `decided_at` as its instant (`_instant`).
    ValueError for another format or a malformed time."""
    if row.seal_format == 1:
        return row.decision_id.encode()
    if row.seal_format == 2:
        return json.dumps([2, row.decision_id, _instant(row.decided_at), row.policy, row.version, row.content_hash,
                           row.bundle_hash, row.shadow_version, row.key_id], separators=(",", ":")).encode()
    raise ValueError(f"unknown seal format {row.seal_format!r}")


class Sealer:
    """AES-256-GCM over the request and decision, with every clear column as associated data
    (`_associated_data`); the first key seals, any key given opens the rows it sealed."""

    def __init__(self, keys: list[bytes]):
        if not keys:
            raise DecisionLogKeyError("no key given")
        self._aeads = {key_id(k): AESGCM(k) for k in keys}
        self.sealing_id = key_id(keys[0])

    def seal(self, request: DecisionRequest, decision: Decision) -> SealedRow:
        if not decision.decision_id:
            raise ValueError("a decision needs its id to be recorded")
        # {"format":…,"request":…,"decision":…}, each model serialised by pydantic's own (fast) encoder
        payload = _pad(b"".join((b'{"format":%d,"request":' % PAYLOAD_FORMAT, request.model_dump_json().encode(),
                                 b',"decision":', decision.model_dump_json().encode(), b"}")))
        clear = SealedRow(decision_id=decision.decision_id, decided_at=decision.decided_at,
                          policy=decision.policy.policy, version=decision.policy.version,
                          content_hash=decision.policy.content_hash, bundle_hash=decision.bundle_hash,
                          shadow_version=request.shadow_version or None, key_id=self.sealing_id, nonce=b"",
                          sealed=b"", seal_format=SEAL_FORMAT)
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aeads[self.sealing_id].encrypt(nonce, payload, _associated_data(clear))
        return replace(clear, nonce=nonce, sealed=sealed)

    def unseal(self, row: SealedRow) -> LoggedDecision:
        """The request and decision of a stored row. DecisionLogKeyError if its key was not given;
        DecisionLogIntegrityError if its sealed document or any clear column was changed."""
        aead = self._aeads.get(row.key_id)
        if aead is None:
            raise DecisionLogKeyError(f"decision {row.decision_id} was sealed with key {row.key_id}, which was not given")
        try:
            payload = json.loads(aead.decrypt(bytes(row.nonce), bytes(row.sealed), _associated_data(row)))
        # altered (a clear column too), or stored values of the wrong shape (a short nonce, text, an unknown format)
        except (InvalidTag, ValueError, TypeError):
            raise DecisionLogIntegrityError(f"decision {row.decision_id} fails its integrity check: the row was "
                                            "altered or belongs to another decision") from None
        return LoggedDecision(request=DecisionRequest.model_validate(payload["request"]),
                              decision=Decision.model_validate(payload["decision"]), bundle_hash=row.bundle_hash)

    def check_newest(self, kid: str | None, where: str) -> None:
        """Fail at once, not on the first read, if the newest row was sealed with a key we do not have."""
        if kid is not None and kid not in self._aeads:
            raise DecisionLogKeyError(
                f"{where}: the newest decision was sealed with key {kid}, but the key(s) given are "
                f"{', '.join(self._aeads)}: wrong key (add the old key after the new one to rotate)")
