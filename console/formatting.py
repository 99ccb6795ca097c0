"""Jinja filters shared by every page: money, protobuf values, audiences, dates."""
from __future__ import annotations

from datetime import date

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Value

from cms_policy.v1 import policy_pb2 as pb

from .legislation import citation_link

AUDIENCES: dict[int, str] = {pb.AUDIENCE_CASEWORKER: "Caseworker", pb.AUDIENCE_RECEIVING_PARENT: "Receiving parent",
             pb.AUDIENCE_PAYING_PARENT: "Paying parent", pb.AUDIENCE_UNSPECIFIED: "Not stated"}


def pounds(pence: int | None) -> str:
    """Whole pence as the letters write money: £1,234.50, £20."""
    if pence is None:
        return ""
    sign = "-" if pence < 0 else ""
    whole, part = divmod(abs(int(pence)), 100)
    return f"{sign}£{whole:,}" + (f".{part:02d}" if part else "")


def plain(value) -> object:
    """A protobuf Value (or Struct) as plain Python."""
    if isinstance(value, Value):
        return json_format.MessageToDict(value)
    return value


def shown(value) -> str:
    """A fact's value in words: yes/no, lists joined, not known for null."""
    value = plain(value)
    if value is None:
        return "not known"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(shown(v) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {shown(v)}" for k, v in value.items())
    return str(value)


def long_date(text: str) -> str:
    """YYYY-MM-DD as 1 August 2017 (GOV.UK style); anything else as it is."""
    try:
        day = date.fromisoformat(text)
    except (TypeError, ValueError):
        return text or ""
    return f"{day.day} {day:%B %Y}"


def audience(value: int) -> str:
    return AUDIENCES.get(value, "Unknown")


FILTERS = {"citation_link": citation_link, "pounds": pounds, "plain": plain, "shown": shown, "long_date": long_date, "audience": audience}
