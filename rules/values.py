"""Fact values: checking what a caller sent, and encoding it for the engine.

Dates go to the engine as `month_index * 100 + day` (month_index counts
calendar months from year 0). Adding N months is then adding N*100, so "within
24 months" or "under 19 on the date" are plain comparisons the engine makes
itself, with calendar-month semantics: 29 February plus one year falls after
28 February and before 1 March.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from .model import Fact, FactType, percent_text

MAX_STRING = 1_000
MAX_LIST = 100
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def date_code(day: dt.date) -> int:
    return (day.year * 12 + day.month - 1) * 100 + day.day


def date_from_code(code: int) -> dt.date:
    months, day = divmod(code, 100)
    year, month0 = divmod(months, 12)
    return dt.date(year, month0 + 1, day)


def months_code(years: int = 0, months: int = 0) -> int:
    return (years * 12 + months) * 100


def count_key(name: str) -> str:
    """The engine field holding the length of a list fact (the engine cannot test for an empty list)."""
    return f"{name}__count"


class FactValueError(ValueError):
    pass


def parse(fact: Fact, raw: Any) -> Any:
    """A caller's value for `fact` as a Python value, or FactValueError saying why not."""
    t = fact.type
    if t is FactType.BOOL:
        if isinstance(raw, bool):
            return raw
        raise FactValueError("expected true or false")
    if t in (FactType.INTEGER, FactType.MONEY):
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise FactValueError("expected a whole number" + (" of pence" if t is FactType.MONEY else ""))
        if isinstance(raw, float) and (not math.isfinite(raw) or not raw.is_integer()):
            raise FactValueError("expected a whole number" + (" of pence" if t is FactType.MONEY else ""))
        if abs(raw) > 2**53:
            raise FactValueError("number is out of range")
        return int(raw)
    if t is FactType.PERCENT:
        try:
            return percent_text(raw)
        except ValueError as exc:
            raise FactValueError(str(exc)) from None
    if t is FactType.DATE:
        if isinstance(raw, dt.date) and not isinstance(raw, dt.datetime):
            return raw
        if isinstance(raw, str) and _ISO_DATE.match(raw):
            try:
                return dt.date.fromisoformat(raw)
            except ValueError:
                pass
        raise FactValueError("expected a date as YYYY-MM-DD")
    if t in (FactType.STRING, FactType.ENUM):
        if not isinstance(raw, str):
            raise FactValueError("expected text")
        if len(raw) > MAX_STRING:
            raise FactValueError(f"text longer than {MAX_STRING} characters")
        if t is FactType.ENUM and raw not in fact.allowed:
            raise FactValueError(f"expected one of: {', '.join(fact.allowed)}")
        return raw
    if t is FactType.ENUM_LIST:
        if not isinstance(raw, (list, tuple)):
            raise FactValueError(f"expected a list of: {', '.join(fact.allowed)}")
        if len(raw) > MAX_LIST:
            raise FactValueError(f"list longer than {MAX_LIST} items")
        bad = [v for v in raw if not isinstance(v, str) or v not in fact.allowed]
        if bad:
            raise FactValueError(f"list items must be among: {', '.join(fact.allowed)}")
        return tuple(dict.fromkeys(raw))  # duplicates add nothing
    raise AssertionError(t)


def encode(fact_type: FactType, value: Any) -> Any:
    if fact_type is FactType.DATE:
        return date_code(value)
    if fact_type is FactType.ENUM_LIST:
        return list(value)
    return value


def decode(fact_type: FactType, value: Any) -> Any:
    if fact_type is FactType.DATE:
        return date_from_code(value)
    if fact_type is FactType.ENUM_LIST:
        return tuple(value)
    return value


def to_json(value: Any) -> Any:
    """A Python fact value as plain JSON data (dates as ISO text)."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value
