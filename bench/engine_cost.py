"""What the engine costs each loaded policy version, as a ratio to application_fee/2017's.

    .venv/bin/python bench/engine_cost.py [--quick]

For every current version: its rules, engine rules (its ruleset's and its item lists'), strata
(engine rounds in one session of it), and the engine cost of deciding its golden cases (those under
tests/golden/<policy>/<version>/, and the README's example when that version decides it). A case's
engine work is captured once (every CompiledPolicy.run and CompiledList.judge its Evaluator.decide
makes, used policies, item lists and the parents' readings included, no counterfactuals), then
replayed: the versions take turns, case by case, so noise on a shared machine falls on all alike.
A version's cost is the mean over its cases of each case's median replay time; `rounds` is the
engine rounds (asserts) a decision of it makes. Target (issue 29): maintenance_calculation and
prisoner_liability at most 2x application_fee/2017.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

from rules.authoring import goldens
from rules.decide.evaluator import Evaluator
from rules.engine import durable_host
from rules.engine.compiler import CompiledList, CompiledPolicy
from rules.engine.decision import DecisionRequest
from rules.engine.loader import Bundle, load_bundle

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
REFERENCE = "application_fee/2017"
TARGETS = ("maintenance_calculation/2012", "prisoner_liability/2012", "prisoner_liability/review-2023")
TARGET_RATIO = 2.0
_EXAMPLE = re.compile(r"^\| `(\w+)` \| (?:`(version|as_at)` ([\w-]+); )?`(\{.*\})` \| `(\w+)`", re.M)


def _cases(bundle: Bundle, evaluator: Evaluator) -> dict[str, list[DecisionRequest]]:
    """Each current version's golden requests (earlier revisions' cases left out: they decide
    with a revision the service no longer uses), then the README example it decides."""
    out: dict[str, list[DecisionRequest]] = {}
    for path in sorted(GOLDEN.glob("*/*/*.yaml")):
        request = DecisionRequest(**goldens.read(path)["request"])
        out.setdefault(f"{path.parent.parent.name}/{path.parent.name}", []).append(request)
    readme = ROOT / "README.md"
    for policy, key, value, facts, _ in _EXAMPLE.findall(readme.read_text(encoding="utf-8")):
        request = DecisionRequest(policy=policy, facts=json.loads(facts), **({key: value} if key else {}))
        compiled, _ = evaluator.select(request)
        out.setdefault(f"{policy}/{compiled.version.version}", []).append(request)
    return {name: [r.model_copy(update={"counterfactuals": False}) for r in requests]
            for name, requests in out.items()}


def _capture(evaluator: Evaluator, request: DecisionRequest) -> tuple[list[tuple], list[tuple]]:
    """The engine calls (function, its arguments, to replay) of the decision itself (its used
    policies' and item lists' included), and of the whole Evaluator.decide (the parents' readings too)."""
    calls: list[tuple] = []
    decision: list[tuple] = []
    run, judge, decide = CompiledPolicy.run, CompiledList.judge, Evaluator._decide
    depth = 0

    def spy_decide(self, *args, **kwargs):
        nonlocal depth
        depth += 1
        try:
            return decide(self, *args, **kwargs)
        finally:
            depth -= 1
            if not depth and not decision:
                decision.extend(calls)

    def spy_run(self, given):
        calls.append((run, (self, dict(given))))
        return run(self, given)

    def spy_judge(self, item, given):
        calls.append((judge, (self, dict(item), dict(given))))
        return judge(self, item, given)
    CompiledPolicy.run, CompiledList.judge, Evaluator._decide = spy_run, spy_judge, spy_decide
    try:
        evaluator.decide(request)
    finally:
        CompiledPolicy.run, CompiledList.judge, Evaluator._decide = run, judge, decide
    return decision, calls


def _rounds(calls: list[tuple]) -> int:
    """Engine rounds (asserts): each policy session runs every stratum, an item session one."""
    return sum(args[0].strata if function is CompiledPolicy.run else 1 for function, args in calls)


def _replay(calls: list[tuple]) -> float:
    started = time.perf_counter()
    for function, args in calls:
        function(*args)
    return time.perf_counter() - started


def measure(quick: bool = False, bundle: Bundle | None = None) -> dict:
    """Per loaded version: rules, engine rules and strata; for one decision (`decision`: the version's
    own session, its used policies' and its items') and for Evaluator.decide (`decide`: the parents'
    readings too) the engine rounds, sessions, µs and the ratio to application_fee/2017's; then the
    target (on `decision`) as PASS/MISS."""
    bundle = bundle or load_bundle()
    evaluator = Evaluator(bundle)
    cases = _cases(bundle, evaluator)
    if quick:
        cases = {name: requests[:5] for name, requests in cases.items()}
    captured = {name: [_capture(evaluator, r) for r in requests] for name, requests in cases.items()}
    repeats = 5 if quick else 31
    samples = {name: [([], []) for _ in pairs] for name, pairs in captured.items()}
    names = sorted(captured)
    for rep in range(repeats):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            for (decision, whole), (one, every) in zip(captured[name], samples[name]):
                one.append(_replay(decision))
                every.append(_replay(whole))

    def cost(name: str, scope: int) -> float:
        return statistics.fmean(statistics.median(pair[scope]) for pair in samples[name])
    reference = (cost(REFERENCE, 0), cost(REFERENCE, 1))
    versions = {}
    for policy in sorted(bundle.policies):
        for compiled in bundle.versions(policy):
            name = f"{policy}/{compiled.version.version}"
            row: dict = {"rules": len(compiled.rules) + sum(len(cl.rules) for cl in compiled.lists.values()),
                         "engine_rules": compiled.engine_rules + sum(len(durable_host.registered(cl.ruleset)[0])
                                                                    for cl in compiled.lists.values()),
                         "strata": compiled.strata, "cases": len(captured.get(name, ()))}
            for scope, key in enumerate(("decision", "decide")):
                if name in captured:
                    calls = [pair[scope] for pair in captured[name]]
                    row[key] = {"rounds": statistics.fmean(map(_rounds, calls)),
                                "sessions": statistics.fmean(map(len, calls)),
                                "engine_us": cost(name, scope) * 1e6, "ratio": cost(name, scope) / reference[scope]}
            versions[name] = row
    worst = max(versions[name]["decision"]["ratio"] for name in TARGETS)
    return {"reference": REFERENCE, "repeats": repeats, "versions": versions,
            "target": {"bound": TARGET_RATIO, "worst": worst, "pass": worst <= TARGET_RATIO}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 cases a version, 5 repeats (a smoke run)")
    args = parser.parse_args()
    result = measure(args.quick)
    print(f"{'':<58}{'one decision':^30}{'Evaluator.decide':^30}")
    print(f"{'version':<36}{'rules':>6}{'engine':>7}{'strata':>7}{'cases':>6}"
          + f"{'rounds':>7}{'sessions':>9}{'µs':>7}{'ratio':>7}" * 2)
    for name, row in result["versions"].items():
        timed = "".join(f"{r['rounds']:>7.1f}{r['sessions']:>9.1f}{r['engine_us']:>7.0f}{r['ratio']:>7.2f}"
                        for r in (row.get("decision"), row.get("decide")) if r)
        print(f"{name:<36}{row['rules']:>6}{row['engine_rules']:>7}{row['strata']:>7}{row['cases']:>6}{timed}")
    target = result["target"]
    print(f"\nengine cost of one decision of {', '.join(TARGETS)} <= {target['bound']}x {REFERENCE}'s: "
          f"worst {target['worst']:.2f}x {'PASS' if target['pass'] else 'MISS'}")


if __name__ == "__main__":
    main()
