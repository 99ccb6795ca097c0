"""In-process decision cost against floors measured in the same run.

    .venv/bin/python bench/bench.py [--n 3000]

Rows (application_fee, every version, the golden requests round-robin):
  decide     Evaluator.decide: checks, engine session, explanation
  engine     the same compiled ruleset through durable_host.evaluate with a prepared fact (engine floor)
  python     the 2017 rules hand-written in plain Python (compute floor; bench only, never used by the service)
Ratios are against the engine floor, so a noisy machine shifts all rows together.
"""
from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import time
from pathlib import Path

import yaml

from rules import durable_host, values
from rules.decision import DecisionRequest
from rules.evaluator import Evaluator
from rules.loader import load_bundle

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "application_fee"


def plain_python_2017(f: dict) -> str:
    if f.get("application_route") == "family_based" or f.get("applicant_in_northern_ireland"):
        return "NOT_APPLICABLE"
    app, born = dt.date.fromisoformat(f["application_date"]), dt.date.fromisoformat(f["applicant_date_of_birth"])
    if (app.year - born.year - ((app.month, app.day) < (born.month, born.day))) < 19:
        return "WAIVED"
    victim = f.get("abuse_of_applicant") or (f.get("child_abuse_witnessed") and f.get("child_abuser") in (
        "current_or_former_partner", "applicant_family_member", "partner_family_member"))
    reported = any(p != "someone_else" for p in f.get("abuse_reported_to", []))
    if victim and reported and f.get("declaration") in ("at_application", "written_before_payment"):
        return "WAIVED"
    return "FEE_PAYABLE"


def timed(fn, items, n) -> list[float]:
    out = []
    for i in range(n):
        item = items[i % len(items)]
        t = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t)
    return out


def summary(name: str, samples: list[float], floor: float) -> str:
    med = statistics.median(samples)
    p99 = sorted(samples)[int(len(samples) * 0.99) - 1]
    return f"{name:<22} {med * 1e6:9.1f} {p99 * 1e6:9.1f} {1 / med:10.0f} {med / floor:8.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    n = parser.parse_args().n
    bundle = load_bundle()
    evaluator = Evaluator(bundle)
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, n={n} per row")
    print(f"{'row':<22} {'p50 µs':>9} {'p99 µs':>9} {'per sec':>10} {'vs engine':>9}")
    for compiled in bundle.versions("application_fee"):
        pv = compiled.version
        cases = [yaml.safe_load(p.read_text())["request"] for p in sorted((GOLDEN / pv.version).glob("*.yaml"))]
        requests = [DecisionRequest(policy="application_fee", version=pv.version, facts=c["facts"]) for c in cases]
        facts = [compiled.working_fact({f.name: values.parse(f, c["facts"][f.name])
                                         for f in pv.facts if f.name in c["facts"]}) for c in cases]
        engine = timed(lambda f: durable_host.evaluate(compiled.ruleset, f), facts, n)
        decide = timed(evaluator.decide, requests, n)
        floor = statistics.median(engine)
        print(f"-- {pv.policy}/{pv.version}: {compiled.engine_rules} engine rules, {compiled.engine_tests} tests, {compiled.strata} strata")
        print(summary("decide", decide, floor))
        print(summary("engine (floor)", engine, floor))
        if pv.version == "2017":
            complete = [c["facts"] for c in cases if {"application_date", "applicant_date_of_birth"} <= set(c["facts"])]
            print(summary("plain python", timed(plain_python_2017, complete, n), floor))


if __name__ == "__main__":
    main()
