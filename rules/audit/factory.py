"""Opening the decision log: the one module that knows every backend, so that the interface
(rules/audit/log.py) imports none of them."""
from __future__ import annotations

import os
import re
from pathlib import Path

from rules.audit.errors import DecisionLogError
from rules.audit.keys import is_postgres_url
from rules.audit.log import DecisionLog
from rules.audit.sqlite import SQLiteDecisionLog


def open_log(target: str | os.PathLike, keys: list[bytes] | None = None, *, key_file: Path | None = None,
             create: bool = True) -> DecisionLog:
    """Open the log at `target`: a PostgreSQL URL, or a SQLite file path (with `create`: made,
    with its parent directories). Without `keys`, they are found by `resolve_keys`."""
    if is_postgres_url(target):
        from rules.audit.postgres import PostgresDecisionLog  # psycopg is only needed for PostgreSQL
        assert isinstance(target, str)  # is_postgres_url is only true of a str
        return PostgresDecisionLog.open(target, keys, key_file=key_file, create=create)
    if re.match(r"(?i)postgres(ql)?:", os.fspath(target)):  # a URL made a Path loses its "//"
        raise DecisionLogError(f"{target}: give a PostgreSQL URL as a string (postgresql://...), not a path")
    return SQLiteDecisionLog.open(target, keys, key_file=key_file, create=create)
