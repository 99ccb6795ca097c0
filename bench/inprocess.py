"""In-process cost of one decision, beside the engine's own cost, measured in the same run.

For each request the engine sessions its decision runs are captured (ruleset and first fact).
Then, one request at a time and in turn, the order turning each round (so noise, and the cold
caches after the handler's fsync, hit every row alike):

  handler   the service's Decide handler without gRPC: protobuf in, validation, decision,
            explanation, the decision log (SQLite, fsync; group commit), log line, protobuf out
  no log    the same with the decision log write left out
  decide    Evaluator.decide alone
  what if   Evaluator.decide with counterfactuals (every 10th round: each re-decides the case 10-48 times)
  engine    the captured sessions through rules.durable_host (the C core, driven as the service does)
  raw       the same sessions through durable_rules' own Python API (`durable.engine.Host`, actions
            as Closures: the session state goes through JSON at every action), the same rules and
            the same action code: what the compiled ruleset costs in durable_rules as documented
  floor     the same logic in plain Python (bench/floors.py), where there is one

"Overhead" is what we add on top of the engine: `no log` minus `engine` (validation, conversion,
explanation, log line), compared with `raw`.
"""
from __future__ import annotations

import itertools
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from durable import engine as durable_engine
from floors import FLOORS
from google.protobuf import struct_pb2

from cms_policy.v1 import policy_pb2 as pb
from rules.audit.factory import open_log
from rules.authoring import corpus
from rules.decide.evaluator import Evaluator
from rules.engine import durable_host
from rules.engine.decision import DecisionRequest
from rules.engine.loader import Bundle
from service.observability import configure_logging
from service.reload import LiveBundle
from service.server import PolicyDecisionService


class _QuietHost(durable_engine.Host):
    def _run(self) -> None:  # no background dispatch threads (they crash the C core beside ours)
        pass


_host = _QuietHost()
_raw_names: set[str] = set()
_sids = itertools.count(1)


def _raw_ruleset(name: str) -> str:
    """`name`'s definition and actions registered in a durable_rules Host (once)."""
    raw = f"raw.{name}"
    if raw not in _raw_names:
        definition, actions = durable_host.registered(name)

        def closure(action):
            def run(c) -> None:
                state = c.s._d
                state["fact"] = c.m._d
                action(state, lambda fact: c.assert_fact({k: v for k, v in fact.items() if k not in ("sid", "id")}))
            return run
        _host.register_rulesets({raw: {rule: {**spec, "run": closure(actions[rule])} for rule, spec in definition.items()}})
        _raw_names.add(raw)
    return raw


def _raw_evaluate(name: str, fact: dict) -> dict:
    raw, sid = _raw_ruleset(name), str(next(_sids))
    try:
        return _host.assert_fact(raw, {**fact, "sid": sid})
    finally:
        _host.delete_state(raw, sid)


def _same_verdicts(name: str, fact: dict) -> bool:
    """Whether the raw ruleset reaches the verdicts ours does (a check that `raw` does the same work)."""
    ours, raw = durable_host.evaluate(name, fact), _raw_evaluate(name, fact)
    return "exception" not in raw and all(sorted(ours.get(k, [])) == sorted(raw.get(k, [])) for k in ("true", "false"))


def sessions(evaluator: Evaluator, request: DecisionRequest) -> list[tuple[str, dict]]:
    """The engine sessions (ruleset, first fact) deciding `request` runs."""
    calls, real = [], durable_host.evaluate

    def spy(ruleset: str, fact: dict) -> dict:
        calls.append((ruleset, fact))
        return real(ruleset, fact)
    durable_host.evaluate = spy
    try:
        evaluator.decide(request)
    finally:
        durable_host.evaluate = real
    return calls


class _Context:
    """Enough of grpc.ServicerContext for the Decide handler (no deadline, never cancelled)."""
    def time_remaining(self):
        return None

    def is_active(self) -> bool:
        return True

    def add_callback(self, callback) -> bool:
        return False  # "the call has ended": the handler logs at once, so its rows count the log line

    def abort(self, code, details):
        raise RuntimeError(f"{code}: {details}")

    def abort_with_status(self, status):
        raise RuntimeError(f"{status.code}: {status.details}")


class _NoLog:
    def record(self, request, decision, timeout=None) -> None:
        pass


def requests(policy: str, version: str, count: int) -> list[dict]:
    """`count` synthetic requests (rules/authoring/corpus.py: shaped by the review's figures), pinned to a version."""
    return [{**case, "version": version} for case in corpus.generate(policy, count)]


def _message(case: dict) -> pb.DecideRequest:
    facts = struct_pb2.Struct()
    facts.update(case["facts"])
    return pb.DecideRequest(policy=case["policy"], version=case["version"], facts=facts)  # the default: no counterfactuals


def _stats(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"p50_us": statistics.median(ordered) * 1e6, "p99_us": ordered[int(len(ordered) * 0.99) - 1] * 1e6,
            "per_second": 1 / statistics.median(ordered)}


def measure(bundle: Bundle, policy: str, version: str, n: int, cases: int = 500) -> dict:
    """Every row above for one version, over `n` decisions of `cases` distinct synthetic requests."""
    configure_logging("json", stream=open(os.devnull, "w"))  # the service's log line, written nowhere
    evaluator, live = Evaluator(bundle), LiveBundle(bundle)
    workdir = Path(tempfile.mkdtemp(prefix="cms-bench-"))
    decision_log = open_log(workdir / "decisions.sqlite3", keys=[os.urandom(32)])
    try:
        logged = PolicyDecisionService(live, decision_log)
        unlogged = PolicyDecisionService(live, _NoLog())
        raw_cases = requests(policy, version, cases)
        messages = [_message(c) for c in raw_cases]
        asked = [DecisionRequest(policy=policy, version=version, facts=c["facts"], counterfactuals=False)
                 for c in raw_cases]
        captured = [sessions(evaluator, r) for r in asked]
        if not all(_same_verdicts(r, f) for c in captured[:50] for r, f in c):
            raise AssertionError(f"{policy}/{version}: durable_rules' own API reached other verdicts")
        floor = FLOORS.get((policy, version))
        complete = []
        for c in raw_cases:
            try:
                floor and floor(c["facts"])
                complete.append(c["facts"])
            except (KeyError, TypeError):
                pass
        what_if = [r.model_copy(update={"counterfactuals": True}) for r in asked]
        rows = {name: [] for name in ("handler", "no log", "decide", "what if", "engine", "raw", "floor")}
        context = _Context()
        turns = (("handler", lambda: logged.Decide(messages[k], context)),
                 ("no log", lambda: unlogged.Decide(messages[k], context)),
                 ("decide", lambda: evaluator.decide(asked[k])),
                 ("engine", lambda: [durable_host.evaluate(r, f) for r, f in captured[k]]),
                 ("raw", lambda: [_raw_evaluate(r, f) for r, f in captured[k]]))
        for i in range(n):
            k = i % cases
            # The order turns each round: the row after the handler's fsync may find cold caches,
            # and no row should always be that one.
            for name, run in turns[i % len(turns):] + turns[:i % len(turns)]:
                started = time.perf_counter()
                run()
                rows[name].append(time.perf_counter() - started)
            if i % 10 == 0:
                started = time.perf_counter()
                evaluator.decide(what_if[k])
                rows["what if"].append(time.perf_counter() - started)
            if floor and complete:
                facts = complete[i % len(complete)]
                started = time.perf_counter()
                floor(facts)
                rows["floor"].append(time.perf_counter() - started)
        out = {name: _stats(samples) for name, samples in rows.items() if samples}
        engine, raw = out["engine"]["p50_us"], out["raw"]["p50_us"]
        out["overhead_us"] = out["no log"]["p50_us"] - engine
        out["overhead_vs_raw"] = out["overhead_us"] / raw
        out["sessions_per_decision"] = statistics.mean(len(c) for c in captured)
        out["engine_rules"] = sum(len(durable_host.registered(r)[0]) for r in {r for c in captured for r, _ in c})
        return out
    finally:
        decision_log.close()
        logging.getLogger().handlers.clear()
