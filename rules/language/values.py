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

from rules.language.model import Fact, FactType, percent_text

# Limits on what a request may carry (README, "Limits"): beyond them a request is refused
# with INVALID_ARGUMENT before anything is decided.
MAX_STRING = 1_000  # characters of a text fact
MAX_LIST = 100  # items of a list fact
MAX_FACTS = 100  # facts in a request, and facts in one item of a list
MAX_NAME = 64  # characters of a fact name, a policy, a version, a decision id
MAX_DEPTH = 8  # lists and objects nested inside one fact's value
MIN_DATE, MAX_DATE = dt.date(1900, 1, 1), dt.date(2199, 12, 31)  # dates a fact or as_at may hold
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # fullmatch: ASCII digits, no trailing newline
DATE_PROBLEM = "expected a date as YYYY-MM-DD"
DATE_RANGE_PROBLEM = f"expected a date from {MIN_DATE.isoformat()} to {MAX_DATE.isoformat()}"


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
    """Why a value is refused. The text never quotes the value (facts are sensitive)."""


def field(at: str, name: str) -> str:
    """The field of fact `name` under `at` in an error (`facts.name`); a name longer than any
    fact's is cut short."""
    return f"{at}.{name[:MAX_NAME]}…" if len(name) > MAX_NAME else f"{at}.{name}"


def parse_date(raw: Any) -> dt.date:
    """A date given as YYYY-MM-DD text (or a date) within MIN_DATE..MAX_DATE, or FactValueError."""
    if isinstance(raw, dt.date) and not isinstance(raw, dt.datetime):
        day = raw
    elif isinstance(raw, str) and _ISO_DATE.fullmatch(raw):
        try:
            day = dt.date.fromisoformat(raw)
        except ValueError:
            raise FactValueError(DATE_PROBLEM) from None
    else:
        raise FactValueError(DATE_PROBLEM)
    if not MIN_DATE <= day <= MAX_DATE:
        raise FactValueError(DATE_RANGE_PROBLEM)
    return day


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise FactValueError("expected text")
    if len(raw) > MAX_STRING:
        raise FactValueError(f"text longer than {MAX_STRING} characters")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (e.g. "\ud800" in JSON): not text
        raise FactValueError("text is not valid Unicode") from None
    return raw


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
        if isinstance(raw, str):
            _text(raw)
        try:
            return percent_text(raw)
        except ValueError:  # its message quotes the value
            raise FactValueError("expected a percent from 0 to 100") from None
    if t is FactType.DATE:
        return parse_date(raw)
    if t in (FactType.STRING, FactType.ENUM):
        _text(raw)
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
