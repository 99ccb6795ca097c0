"""Waiting for what the service does after its reply (its log lines are written once the reply has
been sent) or in its own time."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(found: Callable[[], T], timeout: float = 30) -> T:
    """`found()` as soon as it is truthy (asked every 20 ms), or its last answer after `timeout`."""
    limit = time.monotonic() + timeout
    while not (answer := found()) and time.monotonic() < limit:
        time.sleep(0.02)
    return answer
