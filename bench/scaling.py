"""How decision cost scales with the size of a policy and of the bundle, measured in one process.

    python bench/scaling.py [--n 3000]

rule_count_scaling    synthetic policies of N first-hit outcome rules, decided alike (Evaluator.decide)
                      and through the engine alone (CompiledPolicy.run)
version_count_effect  application_fee/2017 pinned, in a bundle of its own and beside 49 proposed copies

Timed calls run in blocks that take turns, so noise on a shared machine falls on every row alike:
compare the ratios, which come from the same run, rather than absolute times.
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from rules.authoring import corpus
from rules.decide.evaluator import Evaluator
from rules.engine.decision import DecisionRequest
from rules.engine.loader import DEFAULT_POLICY_DIR, load_bundle
from rules.language import values

BLOCK = 100  # timed calls in a row before the next measurement takes its turn
CITE = {"source": "Synthetic benchmark guidance"}
ENUMS = {"case_type": ["new_application", "change_of_circumstances", "annual_review", "mandatory_reconsideration",
                       "enforcement"],
         "applicant_region": ["england", "wales", "scotland", "northern_ireland"]}
FACTS = {**{name: "enum" for name in ENUMS}, "receives_benefits": "bool", "shared_care": "bool",
         "weekly_income": "money", "arrears": "money", "application_date": "date", "applicant_date_of_birth": "date"}
OUTCOMES = {"NOT_APPLICABLE": "the scheme does not apply", "EXEMPT": "no fee is payable",
            "REDUCED": "the reduced fee is payable", "REFERRED": "a caseworker decides", "FEE_PAYABLE": "the fee is payable"}
AMOUNTS = {"REDUCED": "reduced_fee_pence", "FEE_PAYABLE": "fee_pence"}
# What a condition may test; "age" compares the application date with the date of birth.
SLOTS = [*FACTS, "age", "low_income"]
SLOTS.remove("applicant_date_of_birth")


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:  # policy files may not hold anchors or aliases
        return True


# --- synthetic policies ---------------------------------------------------------------------------

def _test(rng: random.Random, slot: str) -> dict:
    """One comparison on `slot`, of the kinds application_fee uses."""
    if slot in ENUMS:
        return {"fact": slot, "eq": rng.choice(ENUMS[slot])} if rng.random() < 0.5 else \
            {"fact": slot, "in": rng.sample(ENUMS[slot], 2)}
    if slot in ("receives_benefits", "shared_care", "low_income"):
        return {"fact": slot, "eq": rng.random() < 0.5}
    if slot == "weekly_income":
        return {"fact": slot, rng.choice(["lt", "gte"]): rng.randrange(5_000, 100_000, 500)}
    if slot == "arrears":
        return {"fact": slot, "gt": rng.randrange(0, 200_000, 1_000)}
    if slot == "application_date":
        return {"fact": slot, rng.choice(["lt", "gte"]): dt.date(rng.randint(2015, 2024), rng.randint(1, 12), 1)}
    return {"fact": "application_date", "lt": {"fact": "applicant_date_of_birth", "plus_years": rng.choice([18, 19, 21, 25])}}


def _outcome_rule(rng: random.Random, index: int) -> dict:
    """An outcome rule: an `all` of three tests, the last sometimes negated or an `any` of two."""
    shape = rng.random()
    slots = rng.sample(SLOTS, 4 if shape >= 0.8 else 3)
    tests = [_test(rng, s) for s in slots]
    if shape < 0.6:
        when = {"all": tests}
    elif shape < 0.8:
        when = {"all": [*tests[:2], {"not": tests[2]}]}
    else:
        when = {"all": [*tests[:2], {"any": tests[2:]}]}
    named = ", ".join(f"{{{'applicant_date_of_birth' if s == 'age' else s}}}" for s in slots)
    return _rule(f"synthetic.r{index:02d}", rng.choice(list(OUTCOMES)), f"Paragraph {index} applies ({named}).", when)


def _rule(rule_id: str, outcome: str, because: str, when: dict | None = None) -> dict:
    rule = {"id": rule_id, "when": when} if when else {"id": rule_id}
    rule.update(outcome=outcome, because=because, cites=[{**CITE, "provision": rule_id}])
    if outcome in AMOUNTS:
        rule["amount"] = {"param": AMOUNTS[outcome]}
    return rule


def synthetic_policy(name: str, outcome_rules: list[dict]) -> dict:
    """An enacted policy: one derived value, then `outcome_rules` and a catch-all in first-hit order."""
    def param(value: int, description: str) -> dict:
        return {"type": "money", "value": value, "description": description, "cites": [CITE]}

    words = {n: n.replace("_", " ") for n in FACTS}
    return {
        "policy": name, "version": "1", "status": "enacted", "effective_from": dt.date(2014, 1, 1),
        "title": f"Synthetic fee policy of {len(outcome_rules) + 1} outcome rules",
        "description": "Generated for the scaling benchmark.", "cites": [CITE], "as_at_fact": "application_date",
        "outcomes": OUTCOMES,
        "parameters": {"fee_pence": param(2000, "The fee."), "reduced_fee_pence": param(1000, "The reduced fee."),
                       "low_income_threshold": param(10_000, "Weekly income below this is low.")},
        "facts": [{"name": n, "type": t, **({"allowed": ENUMS[n]} if n in ENUMS else {}),
                   "description": f"The {words[n]}.", "question": f"What is the {words[n]}?"} for n, t in FACTS.items()],
        "derived": [{"name": "low_income", "type": "bool", "default": False, "description": "The applicant has a low income."}],
        "rules": [{"id": "derive.low-income", "derive": {"name": "low_income", "value": True},
                   "when": {"any": [{"fact": "receives_benefits", "eq": True},
                                    {"fact": "weekly_income", "lt": {"param": "low_income_threshold"}}]},
                   "because": "The applicant receives benefits or earns less than {low_income_threshold} a week.",
                   "cites": [CITE]},
                  *outcome_rules, _rule("synthetic.default", "FEE_PAYABLE", "No other paragraph applies.")],
    }


def synthetic_facts(rng: random.Random) -> dict:
    """A complete request: every fact of the synthetic policies, as a caller sends them."""
    applied = dt.date(2015, 1, 1) + dt.timedelta(days=rng.randrange(3650))
    born = applied - dt.timedelta(days=rng.randrange(16 * 365, 60 * 365))
    return {"case_type": rng.choice(ENUMS["case_type"]), "applicant_region": rng.choice(ENUMS["applicant_region"]),
            "receives_benefits": rng.random() < 0.3, "shared_care": rng.random() < 0.4,
            "weekly_income": rng.randrange(0, 150_000, 100), "arrears": rng.choice([0, rng.randrange(0, 300_000, 100)]),
            "application_date": applied.isoformat(), "applicant_date_of_birth": born.isoformat()}


# --- timing ---------------------------------------------------------------------------------------

def interleaved(jobs: dict, n: int) -> dict[object, list[float]]:
    """`n` timed calls (seconds) of each job `(function, items)`, items taken round-robin, in blocks
    of BLOCK that take turns, the order rotating each round; every job is warmed up first."""
    for fn, items in jobs.values():
        for item in items[:20]:
            fn(item)
    samples: dict[object, list[float]] = {key: [] for key in jobs}
    keys = list(jobs)
    for r in range(math.ceil(n / BLOCK)):
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            (fn, items), out = jobs[key], samples[key]
            for i in range(len(out), min(len(out) + BLOCK, n)):
                item = items[i % len(items)]
                start = time.perf_counter()
                fn(item)
                out.append(time.perf_counter() - start)
    return samples


def p50_p99(samples: list[float]) -> tuple[float, float]:
    """Median and 99th percentile in µs."""
    return statistics.median(samples) * 1e6, statistics.quantiles(samples, n=100)[98] * 1e6


# --- the measurements -----------------------------------------------------------------------------

def rule_count_scaling(counts=(5, 10, 20, 40, 80), n: int = 3000, seed: int = 1) -> dict:
    """Per-decision cost of synthetic policies of N outcome rules (the first N - 1 of one seeded list,
    then a catch-all; plus one derivation), on 200 seeded complete requests; `median_hit_rule` is the
    position of the deciding rule. `linear`: cost(N_max) / cost(N_min) <= N_max / N_min (counts in
    increasing order); slope and intercept: least squares of p50 on N. Past about 80 rules the C core
    fails on some requests (error 303) although the loader's checks pass."""
    rng = random.Random(seed)
    pool = [_outcome_rule(rng, i + 1) for i in range(max(counts) - 1)]
    raw = [synthetic_facts(rng) for _ in range(200)]
    with tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            path = Path(tmp, f"synthetic_rules_{count}", "1.yaml")
            path.parent.mkdir()
            path.write_text(yaml.dump(synthetic_policy(path.parent.name, pool[:count - 1]), Dumper=_PlainDumper,
                                      sort_keys=False, allow_unicode=True))
        bundle = load_bundle(Path(tmp))
    evaluator = Evaluator(bundle)
    jobs, rows = {}, []
    for count in counts:
        compiled = bundle.policies[f"synthetic_rules_{count}"]["1"]
        requests = [DecisionRequest(policy=compiled.version.policy, version="1", facts=f, counterfactuals=False)
                    for f in raw]
        # In name order, as rules.decide.facts.parse_facts gives them: in another order the C core can fail on the
        # 80-rule policy (error 303, ERR_MAX_STACK_SIZE).
        specs = {spec.name: spec for spec in compiled.version.facts}
        parsed = [{name: values.parse(specs[name], f[name]) for name in sorted(f)} for f in raw]
        hits = [compiled.by_id[evaluator.decide(r).trail[-1].rule_id].index for r in requests]
        jobs[count, "decide"], jobs[count, "engine"] = (evaluator.decide, requests), (compiled.run, parsed)
        rows.append({"outcome_rules": count, "engine_rules": compiled.engine_rules, "engine_tests": compiled.engine_tests,
                     "strata": compiled.strata, "median_hit_rule": statistics.median(hits),
                     "catch_all_share": hits.count(len(compiled.rules) - 1) / len(hits)})
    samples = interleaved(jobs, n)
    for row in rows:
        row["decide_p50_us"], row["decide_p99_us"] = p50_p99(samples[row["outcome_rules"], "decide"])
        row["engine_p50_us"], row["engine_p99_us"] = p50_p99(samples[row["outcome_rules"], "engine"])
        row["us_per_rule"] = row["decide_p50_us"] / row["outcome_rules"]
    cost_ratio = rows[-1]["decide_p50_us"] / rows[0]["decide_p50_us"]
    count_ratio = counts[-1] / counts[0]
    fit = statistics.linear_regression(list(counts), [row["decide_p50_us"] for row in rows])
    engine_fit = statistics.linear_regression(list(counts), [row["engine_p50_us"] for row in rows])
    return {"n": n, "rows": rows, "cost_ratio": cost_ratio, "count_ratio": count_ratio, "linear": cost_ratio <= count_ratio,
            "slope_us_per_rule": fit.slope, "intercept_us": fit.intercept,
            "engine_slope_us_per_rule": engine_fit.slope, "engine_intercept_us": engine_fit.intercept}


def version_count_effect(n: int = 3000, versions: int = 50) -> dict:
    """Per-decision cost of application_fee/2017 (pinned) in a bundle holding only it, and beside
    `versions` - 1 proposed copies (bench-01, ...), measured alternately. Requests: the seeded corpus
    (500), keeping the facts 2017 declares (the corpus adds one of a later version, unknown here).
    Load times are of each bundle's first load in the process (engine rulesets are registered once)."""
    source = (DEFAULT_POLICY_DIR / "application_fee" / "2017.yaml").read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as alone, tempfile.TemporaryDirectory() as crowded:
        for tmp, copies in ((alone, 0), (crowded, versions - 1)):
            Path(tmp, "application_fee").mkdir()
            Path(tmp, "application_fee", "2017.yaml").write_text(source, encoding="utf-8")
            for i in range(1, copies + 1):
                text = source.replace('version: "2017"', f'version: "bench-{i:02d}"', 1)
                Path(tmp, "application_fee", f"bench-{i:02d}.yaml").write_text(
                    text.replace("status: enacted", "status: proposed", 1), encoding="utf-8")
        bundles, load_s = {}, {}
        for key, tmp in (("alone", alone), ("with_versions", crowded)):
            start = time.perf_counter()
            bundles[key] = load_bundle(Path(tmp))
            load_s[key] = time.perf_counter() - start
    own = {f.name for f in bundles["alone"].policies["application_fee"]["2017"].version.facts}
    requests = [DecisionRequest(policy="application_fee", version="2017", counterfactuals=False,
                                facts={k: v for k, v in r["facts"].items() if k in own})
                for r in corpus.generate("application_fee", 500)]
    samples = interleaved({key: (Evaluator(b).decide, requests) for key, b in bundles.items()}, n)
    result = {"n": n, "versions": {key: len(b.policies["application_fee"]) for key, b in bundles.items()}}
    for key in bundles:
        p50, p99 = p50_p99(samples[key])
        result[key] = {"load_s": load_s[key], "p50_us": p50, "p99_us": p99}
    result["p50_ratio"] = result["with_versions"]["p50_us"] / result["alone"]["p50_us"]
    result["p99_ratio"] = result["with_versions"]["p99_us"] / result["alone"]["p99_us"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000, help="timed decisions per row (default: %(default)s)")
    n = parser.parse_args().n
    show(rule_count_scaling(n=n), version_count_effect(n=n))


def show(scaling: dict, effect: dict) -> None:
    """Both results as tables."""
    print("rule count scaling (shared machine: compare ratios)")
    print(f"{'rules':>5} {'engine rules':>12} {'tests':>6} {'strata':>6} {'hit p50':>7} {'catch-all':>9} "
          f"{'decide p50':>10} {'p99':>8} {'engine p50':>10} {'µs/rule':>8}")
    for r in scaling["rows"]:
        print(f"{r['outcome_rules']:>5} {r['engine_rules']:>12} {r['engine_tests']:>6} {r['strata']:>6} "
              f"{r['median_hit_rule']:>7.0f} {r['catch_all_share']:>9.1%} {r['decide_p50_us']:>10.0f} "
              f"{r['decide_p99_us']:>8.0f} {r['engine_p50_us']:>10.0f} {r['us_per_rule']:>8.1f}")
    print(f"cost ratio {scaling['cost_ratio']:.2f}x for {scaling['count_ratio']:.0f}x the rules: "
          f"{'linear or better' if scaling['linear'] else 'WORSE than linear'}; fit decide "
          f"{scaling['slope_us_per_rule']:.1f} µs/rule + {scaling['intercept_us']:.0f} µs, engine "
          f"{scaling['engine_slope_us_per_rule']:.1f} µs/rule + {scaling['engine_intercept_us']:.0f} µs")
    print(f"\nversion count effect: application_fee/2017 pinned (alternating blocks of {BLOCK})")
    print(f"{'bundle':<14} {'versions':>8} {'load s':>7} {'p50 µs':>8} {'p99 µs':>8}")
    for key in ("alone", "with_versions"):
        row = effect[key]
        print(f"{key:<14} {effect['versions'][key]:>8} {row['load_s']:>7.2f} {row['p50_us']:>8.0f} {row['p99_us']:>8.0f}")
    print(f"ratio (with versions / alone): p50 {effect['p50_ratio']:.2f}x, p99 {effect['p99_ratio']:.2f}x")


if __name__ == "__main__":
    main()
