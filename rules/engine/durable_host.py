"""The one module that touches durable_rules, and the edges it needs handled.

durable_rules is a C core (`durable_rules_engine`: the Rete network, sessions,
the action queue) under a Python layer (`durable.engine`: Host, Ruleset,
Closure). The Python layer round-trips the whole session state through JSON
for every action it runs (about 80% of a decision's engine time) and its Host
starts background threads that crash the C core beside request threads. So
this module drives the C core directly, the way `Ruleset.do_actions` does,
and keeps each session's state in Python:

- A ruleset is created once per process from its definition (the same JSON
  durable.engine would send) and warmed up with one session (a fresh ruleset
  whose first session matched nothing crashes when the session is deleted).
- Each decision is a fresh session: its fact is asserted, then the queued
  actions run one by one in the engine's order (highest priority first); an
  action may assert further facts, which the engine matches and queues. The
  session is always deleted, even on error.
- An action learns which rule matched, not the matched fact: the session's
  state holds the fact asserted last under "fact" (our rulesets only ever
  match that one), so the engine's JSON copy of the match is never parsed
  (rule names are ours: the name is read from the start of its message).
- One process-wide lock is held around each session: the C core is not
  thread-safe (scale with processes instead: `python -m service --workers`).
- An action's exception propagates (as EngineError, chained for the log's
  frames); the C core's own failures never chain (their text quotes facts).
- The C core's JSON parser crashes the process (SIGSEGV) on a number written
  with an exponent (json.dumps gives `1e+16`, `Infinity`), and a string that
  is not valid Unicode fails before the session exists: `_payload` refuses
  both before a session is made. Facts reach the engine as ints, text and
  lists of text, never floats.
- `create_ruleset` reads a field it never set on the node of an `$or` put
  directly inside `$iany`/`$iall` (rete.c), and refuses the ruleset (error
  102) when the heap held 0x09 or 0x0C there: the compiler never emits one.
- A rule whose `$or` holds by several branches fires once per branch (the
  compiler's actions record one verdict per rule).
"""
from __future__ import annotations

import itertools
import json
import math
import threading
from collections.abc import Callable

import durable_rules_engine as _core


class EngineError(RuntimeError):
    """durable_rules failed while evaluating a session."""


_lock = threading.Lock()
_session_ids = itertools.count(1)
_rulesets: dict[str, tuple[int, dict[str, Callable]]] = {}  # name -> (C handle, actions by rule name)
_definitions: dict[str, dict] = {}  # name -> the definition as the C core got it (JSON), for reports
_live = 0  # sessions created and not yet deleted (guarded by _lock)
_NOT_HANDLED = 1  # the C core's result when no rule matched an asserted fact
_json = json.JSONEncoder(ensure_ascii=False).encode

Action = Callable[[dict, Callable[[dict], None]], None]
"""An action gets the session state and a function to assert a new fact."""


def register(name: str, rules: dict[str, dict], warm_fact: dict) -> None:
    """Register a ruleset once per process; `rules` maps rule names to
    durable_rules definitions whose "run" is an `Action`."""
    with _lock:
        if name in _rulesets:
            return
        actions = {rule: spec["run"] for rule, spec in rules.items()}
        definition = {rule: {k: v for k, v in spec.items() if k != "run"} for rule, spec in rules.items()}
        try:
            handle = _core.create_ruleset(name, json.dumps(definition, ensure_ascii=False))
        except Exception as exc:  # e.g. "Could not create ruleset, error code: 113" (a capacity exceeded)
            raise EngineError(f"durable_rules cannot take ruleset {name}: {exc}") from None
        _rulesets[name] = (handle, actions)
        _definitions[name] = definition
    evaluate(name, warm_fact)


def registered(name: str) -> tuple[dict, dict[str, Action]]:
    """A registered ruleset's definition (as the C core got it) and its actions by rule name."""
    return _definitions[name], _rulesets[name][1]


def _bad_float(value) -> bool:
    """Whether `value` holds a float the C core's JSON parser cannot take (see the module docstring)."""
    for v in (value.values() if type(value) is dict else value):
        kind = type(v)
        if kind is str or kind is int or kind is bool or v is None:
            continue
        if kind is float:
            if not math.isfinite(v) or "e" in repr(v):
                return True
        elif (kind is dict or kind is list or kind is tuple) and _bad_float(v):
            return True
    return False


def _payload(ruleset: str, value) -> str:
    """`value` as the JSON the C core takes, or EngineError before any session is made."""
    text = _json(value)
    try:
        text.encode("utf-8")  # a lone surrogate: the binding would fail to encode it
    except UnicodeEncodeError:
        raise EngineError(f"a fact for {ruleset} holds text that is not valid Unicode") from None
    if _bad_float(value):
        raise EngineError(f"a fact for {ruleset} holds a float the engine cannot take")
    return text


def live_sessions() -> int:
    """How many engine sessions exist now: 0 whenever no decision is under way (a leak shows
    here)."""
    with _lock:
        return _live


def evaluate(ruleset: str, fact: dict) -> dict:
    """Assert `fact` into a fresh session, let every rule fire, and return the session's scratch:
    "fact" (the fact asserted last) and whatever the actions wrote (the compiler reads it back
    as an EngineState)."""
    if ruleset not in _rulesets:
        raise EngineError(f"ruleset {ruleset} is not registered")
    handle, actions = _rulesets[ruleset]
    global _live
    with _lock:
        sid = str(next(_session_ids))
        payload = _payload(ruleset, {**fact, "sid": sid})
        state = {"fact": fact}

        def assert_fact(new: dict) -> None:
            state["fact"] = new
            _check(_call(ruleset, _core.assert_fact, handle, _payload(ruleset, {**new, "sid": sid})), ruleset)

        _live += 1
        try:
            result = _call(ruleset, _core.assert_fact, handle, payload)
            _check(result, ruleset)
            offset = result[1]
            queued = _call(ruleset, _core.start_action_for_state, handle, offset)
            message = queued and queued[1]
            while message:  # '{"<rule name>":{"m":{<the matched fact>}}}'
                action = actions.get(message[2:message.find('"', 2)])
                if action is None:
                    raise EngineError(f"durable_rules queued an action {ruleset} does not have")
                try:
                    action(state, assert_fact)
                except EngineError:
                    raise
                except Exception as exc:
                    raise EngineError(f"a rule action failed in {ruleset}: {type(exc).__name__}") from exc
                message = _call(ruleset, _core.complete_and_start_action, handle, offset)
        finally:
            try:
                _core.delete_state(handle, sid)
            except Exception as exc:  # error code 309: the session was never made (nothing to leak)
                if "309" not in str(exc):
                    raise EngineError(f"durable_rules could not delete a session of {ruleset}") from None
            finally:
                _live -= 1
    return state


def _call(ruleset: str, function, *args):
    """A call into the C core; its failures (bare exceptions) become EngineError. Never chained:
    the engine's text may include the asserted facts (sensitive)."""
    try:
        return function(*args)
    except Exception as exc:
        raise EngineError(f"durable_rules failed in {ruleset}: {type(exc).__name__}") from None


def _check(result: tuple[int, int], ruleset: str) -> None:
    """Raise when no rule matched the asserted fact (the session exists all the same)."""
    if result[0] == _NOT_HANDLED:
        raise EngineError(f"no rule handled the fact in {ruleset}")
