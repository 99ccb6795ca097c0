"""The one module that touches durable_rules, and the edges it needs handled.

- `Host` starts two background threads that dispatch live sessions; with
  request threads of our own that crashes the C core, so `_run` is disabled.
- One process-wide lock is held around each session: the C core is not
  thread-safe (scale with processes instead).
- Each decision is a fresh session that is always deleted, even on error.
- A ruleset is warmed up once at registration (a fresh ruleset whose first
  session matched nothing crashes when the session is deleted).
- Errors raised inside actions do not propagate; they appear in the
  returned state under "exception" and are raised here.
- The C core's JSON parser crashes the process (SIGSEGV) on a number written
  with an exponent (json.dumps gives `1e+16`, `Infinity`), and a string that
  is not valid Unicode fails before the session exists (then deleting it
  fails too): `_sendable` refuses both before a session is made. Facts reach
  the engine as ints, text and lists of text, never floats.
"""
from __future__ import annotations

import itertools
import math
import threading
from typing import Any, Callable

from durable import engine


class EngineError(RuntimeError):
    """durable_rules failed while evaluating a session."""


class _QuietHost(engine.Host):
    def _run(self) -> None:  # no background dispatch threads
        pass


_host = _QuietHost()
_lock = threading.Lock()
_session_ids = itertools.count(1)
_registered: set[str] = set()
_live = 0  # sessions created and not yet deleted (guarded by _lock)

Action = Callable[[dict, dict, Callable[[dict], None]], None]
"""An action gets the session state, the matched fact, and a function to assert a new fact."""


def _wrap(action: Action) -> Callable[[Any], None]:
    def run(c) -> None:
        action(c.s._d, c.m._d, c.assert_fact)
    return run


def register(name: str, rules: dict[str, dict], warm_facts: list[dict]) -> None:
    """Register a ruleset once per process; `rules` maps rule names to
    durable_rules definitions whose "run" is an `Action`."""
    with _lock:
        if name in _registered:
            return
        definition = {rule: {**spec, "run": _wrap(spec["run"])} for rule, spec in rules.items()}
        try:
            _host.register_rulesets({name: definition})
        except Exception as exc:  # e.g. "Could not create ruleset, error code: 113" (a capacity exceeded)
            raise EngineError(f"durable_rules cannot take ruleset {name}: {exc}") from None
        _registered.add(name)
    evaluate(name, warm_facts)


def _sendable(value) -> bool:
    """Whether the C core can take `value` (see the module docstring)."""
    if isinstance(value, float):
        return math.isfinite(value) and "e" not in repr(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_sendable(k) and _sendable(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_sendable(v) for v in value)
    return True


def live_sessions() -> int:
    """How many engine sessions exist now: 0 whenever no decision is under way (a leak shows
    here)."""
    with _lock:
        return _live


def evaluate(ruleset: str, facts: list[dict]) -> dict:
    """Assert `facts` into a fresh session, let every rule fire, and return the final state."""
    if ruleset not in _registered:
        raise EngineError(f"ruleset {ruleset} is not registered")
    if not all(_sendable(fact) for fact in facts):
        raise EngineError(f"a fact for {ruleset} holds a value the engine cannot take (a float or invalid text)")
    global _live
    with _lock:
        sid = str(next(_session_ids))
        _live += 1
        try:
            state = _host.assert_facts(ruleset, [{**fact, "sid": sid} for fact in facts])
        # Never chain the engine's exception: its text includes the asserted facts (sensitive).
        except engine.MessageNotHandledException:
            raise EngineError(f"no rule handled the fact in {ruleset}") from None
        except Exception as exc:  # the C core reports failures as bare exceptions
            raise EngineError(f"durable_rules failed in {ruleset}: {type(exc).__name__}") from None
        finally:
            try:
                _host.delete_state(ruleset, sid)
                _live -= 1
            except Exception as exc:  # error code 309: the session was never made (nothing to leak)
                if "309" not in str(exc):
                    raise EngineError(f"durable_rules could not delete a session of {ruleset}") from None
                _live -= 1
    if "exception" in state:
        raise EngineError(f"a rule action failed in {ruleset}: {state['exception']}")
    return state
