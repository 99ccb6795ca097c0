"""`python -m rules impact OLD NEW [--cases DIR]`: what changes if version NEW replaces OLD.

OLD and NEW are `policy/version` of the same policy (`application_fee/2024 application_fee/review-2023`).
Every case is decided by both versions, pinned (the case's own version or as-at date is not used;
no counterfactuals), and the report counts the cases whose outcome changes, from what to what, with
the rules that decided them in each version and example cases; then the cases whose outcome stays
but whose amount or outputs change (a maintenance amount, a collection charge), and those where only
the procedure flags change. Cases that either version rejects (INVALID_ARGUMENT) are not compared:
they are counted with the first error.

Cases (`--cases DIR`): every `*.jsonl` (one case a line; blank lines and lines starting with `#`
are skipped), `*.json`, `*.yaml` and `*.yml` file under DIR, recursively, in path order. A case is a
request (`{"policy": ..., "facts": {...}}`; other keys such as version, as_at or subject are
ignored), a golden case (its `request:`), or a bare mapping of facts, which belongs to the policy
compared. A JSON or YAML file (or a JSONL line) may hold a list of cases, or a mapping with a
`cases:` list; a YAML file may hold several documents. Cases of other policies are skipped and
counted. Case ids: `file:line` for JSONL, `file#n` (from 1) for the n-th case of a file of several,
else the file's path. Without `--cases` the synthetic corpus of `python -m rules corpus` (seed
2023, 10,000 cases; `--seed` and `--count` change them) is made in memory: its ids are the lines of
the `<policy>.jsonl` that command writes.

Output: the Markdown report on standard output. With `--out DIR` it is also written to
`DIR/impact.md`, with the same report as data in `DIR/impact.json` (format "cms-policy-impact/1":
the versions' refs, the corpus, the counts, transitions, rules, examples and errors, in the
Markdown's order; read by the web console) and a bar chart of the outcome counts under each
version, `DIR/impact.png` (needs matplotlib; `--no-chart` leaves it out). Without `--out` nothing
is written to disk. Every file is deterministic for the same cases, policies and command.

Runs of 20,000 cases or more go through a local Dask cluster of one worker process a core
(`--workers N` sets how many; `--workers 1` stays in this process), or through a running one
(`--scheduler ADDRESS`): see rules/authoring/bulk.py. Workers decide chunks of cases (the synthetic
ones they make themselves from the corpus generator's state) and send back each chunk's counts and
first examples, merged in chunk order: the report is byte for byte the one a single process makes.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import heapq
import importlib.util
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rules.authoring import bulk, corpus
from rules.engine.decision import UNDETERMINED, Decision, DecisionRequest, RequestError
from rules.language.checks import needs
from rules.language.model import FactType, PolicyVersion

DEFAULT_EXAMPLES = 3
CASE_SUFFIXES = (".jsonl", ".json", ".yaml", ".yml")
MAX_LISTED = 20  # unreadable cases listed one by one; the rest are counted
INVALID_SHOWN = 3  # ids shown for each first error of invalid cases
CHUNK = 2_000  # cases a bulk task: about 2 s of work, 500 tasks for a million
_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,40}$")


class ImpactError(Exception):
    """The comparison cannot be made as asked (unknown version, unreadable directory...)."""


# --- cases ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    facts: dict | None = None
    policy: str | None = None  # None: the policy compared
    error: str = ""  # set when the case could not be read


def read_cases(directory: Path) -> list[Case]:
    """Every case under `directory` (see the module docstring), in path order, then file order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ImpactError(f"{directory}: not a directory")
    files = sorted((p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in CASE_SUFFIXES
                    and not any(part.startswith(".") for part in p.relative_to(directory).parts)),
                   key=lambda p: p.relative_to(directory).as_posix())
    cases: list[Case] = []
    for path in files:
        name = path.relative_to(directory).as_posix()
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            cases.append(Case(name, error=f"cannot be read ({type(exc).__name__})"))
            continue
        if path.suffix.lower() == ".jsonl":
            for n, line in enumerate(text.splitlines(), 1):
                line = line.strip()
                if not line or line.startswith(("#", "//")):
                    continue
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    cases.append(Case(f"{name}:{n}", error=f"not JSON: {exc.msg} (column {exc.colno})"))
                    continue
                cases += _cases(f"{name}:{n}", [data])
            continue
        try:
            if path.suffix.lower() == ".json":
                docs = [json.loads(text)]
            else:
                docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except json.JSONDecodeError as exc:
            cases.append(Case(name, error=f"not JSON: {exc.msg} (line {exc.lineno})"))
            continue
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            cases.append(Case(name, error=f"not YAML{where}"))
            continue
        cases += _cases(name, docs)
    return cases


def _cases(name: str, docs: list) -> list[Case]:
    """The cases in the documents of one file (or one JSONL line)."""
    items, single = [], len(docs) == 1
    for doc in docs:
        if isinstance(doc, list):
            items += doc
            single = False
        elif isinstance(doc, dict) and isinstance(doc.get("cases"), list) and not ({"facts", "request"} & set(doc)):
            items += doc["cases"]
            single = False
        else:
            items.append(doc)
    if single and len(items) == 1:
        return [_case(name, items[0])]
    return [_case(f"{name}#{n}", item) for n, item in enumerate(items, 1)]


def _case(case_id: str, data: Any) -> Case:
    data = _plain(data)
    if not isinstance(data, dict):
        return Case(case_id, error="expected a mapping: a request, a golden case or facts")
    if isinstance(data.get("request"), dict):
        data = data["request"]
    if "facts" in data or "policy" in data:
        facts, policy = data.get("facts"), data.get("policy") or None
        facts = {} if facts is None else facts
        if not isinstance(facts, dict):
            return Case(case_id, error="facts: expected a mapping of facts")
        if policy is not None and not isinstance(policy, str):
            return Case(case_id, error="policy: expected text")
        return Case(case_id, facts, policy)
    return Case(case_id, data)


def _plain(value: Any) -> Any:
    """YAML values as JSON would give them: dates as YYYY-MM-DD, keys as text."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def synthetic_chunk(policy: str, start: int, count: int, state: tuple) -> list[Case]:
    """Cases start+1 to start+count of the corpus `python -m rules corpus` writes for `policy`, with
    the same ids (file:line), from a chunk of `corpus.chunks`."""
    return [Case(f"{policy}.jsonl:{n}", r["facts"], r["policy"])
            for n, r in enumerate(corpus.generate_chunk(policy, state, count), start + 1)]


# --- deciding ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Result:
    """What the report needs of one decision."""
    outcome: str = ""
    amount: int | None = None
    outputs: tuple = ()  # (name, value, text)
    flags: tuple = ()
    rule: str | None = None  # the outcome rule that decided it
    missing: tuple = ()
    keys: frozenset = frozenset()  # request facts (and lists) behind the decision
    used: tuple = ()  # (name, shown value) of other policies' results behind it
    error: str = ""  # the first problem, when the request is invalid for this version


def decide(evaluator, bundle, policy: str, version: str, facts: dict) -> Result:
    try:
        request = DecisionRequest(policy=policy, version=version, facts=facts, counterfactuals=False)
        decision = evaluator.decide_unexplained(request)
    except RequestError as exc:
        first = exc.violations[0]
        return Result(error=f"{first.field}: {first.description}")
    except ValueError as exc:  # the request itself is malformed (pydantic)
        return Result(error=f"not a valid request ({type(exc).__name__})")
    except Exception as exc:  # an engine failure on one case must not lose the whole report
        return Result(error=f"could not be decided: {type(exc).__name__}: {str(exc)[:200]}")
    keys, used = _behind(bundle, decision)
    return Result(
        outcome=decision.outcome, amount=decision.amount_pence,
        outputs=tuple((o.name, o.value, o.text) for o in decision.outputs),
        flags=tuple(f.code for f in decision.flags), rule=deciding_rule(bundle, decision),
        missing=tuple(m.name for m in decision.missing_facts), keys=frozenset(keys), used=tuple(used))


def deciding_rule(bundle, decision: Decision) -> str | None:
    """The outcome rule that decided: the trail step concluding the outcome that is an outcome rule
    of the version (derive and flag rules are the other steps); None when UNDETERMINED."""
    if decision.outcome == UNDETERMINED:
        return None
    pv = bundle.policies[decision.policy.policy][decision.policy.version].version
    outcome_rules = {r.id for r in pv.rules if r.outcome}
    return next((s.rule_id for s in decision.trail if s.rule_id in outcome_rules and s.concludes == decision.outcome),
                None)


def _behind(bundle, decision: Decision) -> tuple[set[str], list[tuple[str, str]]]:
    """The request facts a decision turned on, and the results of other policies among them (with
    the facts those turned on). Decided: what the outcome rules tried before the deciding one read
    (why they did not decide), what the deciding rule reads, and, for a derived value it reads,
    what the rules in the trail that worked it out read (else what every rule deriving it reads).
    UNDETERMINED: the missing facts and what the trail read."""
    pv = bundle.policies[decision.policy.policy][decision.policy.version].version
    rule = deciding_rule(bundle, decision)
    trail_names = {f.name for s in decision.trail for f in s.facts_used}
    if rule is None:
        names = {m.name.split("[")[0] for m in decision.missing_facts} | trail_names
    else:
        worked_out = frozenset(s.concludes.split(" ")[0] for s in decision.trail if s.rule_id != rule)
        names = set(considered(pv, rule, worked_out)) | trail_names
    used: list[tuple[str, str]] = []
    for use in pv.uses:
        if not set(use.facts()) & names:
            continue
        sub = next((s for s in decision.sub_decisions if s.policy.policy == use.policy), None)
        if sub is None:
            continue
        shown = sub.outcome + (f" {_money(sub.amount_pence)}" if sub.amount_pence is not None else "")
        used.append((use.as_, f"{shown} ({use.policy}/{sub.policy.version})"))
        sub_names, sub_used = _behind(bundle, sub)
        names |= sub_names - set(use.set)
        used += sub_used
    return names, used


_CONSIDERED: dict[tuple, tuple[PolicyVersion, frozenset[str]]] = {}


def considered(pv: PolicyVersion, rule_id: str, worked_out: frozenset[str] = frozenset()) -> frozenset[str]:
    """The names the outcome rules before `rule_id` read and the names `rule_id` reads, with each
    derived value replaced by what the rules deriving it read — except, for `rule_id` itself, the
    derived values in `worked_out` (the trail shows what they read) — and each list aggregate by
    its list. Worked out once per version, rule and `worked_out`."""
    key = (id(pv), rule_id, worked_out)
    if key not in _CONSIDERED or _CONSIDERED[key][0] is not pv:
        _CONSIDERED[key] = (pv, frozenset(_considered(pv, rule_id, worked_out)))
    return _CONSIDERED[key][1]


def _considered(pv: PolicyVersion, rule_id: str, worked_out: frozenset[str]) -> set[str]:
    derived = {d.name for d in pv.derived}
    aggregates = {name: lst.name for lst in pv.lists for name in lst.aggregates()}
    todo: list[str] = []
    names: set[str] = set()
    for rule in pv.rules:
        if rule.outcome and rule.id == rule_id:
            for name in needs(rule):
                (names.add if name in worked_out else todo.append)(name)
            break
        if rule.outcome:
            todo += needs(rule)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in derived:
            todo += [n for r in pv.rules if r.derive and r.derive.name == name for n in needs(r)]
        else:
            names.add(aggregates.get(name, name))
    return names


# --- comparing -----------------------------------------------------------------------------------

@dataclass
class Group:
    """Cases sharing a change (a transition, or an outcome whose amount changed), or invalid with
    the same first error (then `examples` holds the first case ids)."""
    count: int = 0
    rules: Counter = field(default_factory=Counter)  # (old rule, new rule) -> cases
    examples: list = field(default_factory=list)  # (case, old Result, new Result)

    def add(self, other: Group, keep: int) -> None:
        self.count += other.count
        self.rules.update(other.rules)
        self.examples += other.examples[:max(0, keep - len(self.examples))]


@dataclass
class Impact:
    policy: str
    old: str
    new: str
    read: int = 0  # cases of this policy (compared, invalid)
    compared: int = 0
    old_counts: Counter = field(default_factory=Counter)
    new_counts: Counter = field(default_factory=Counter)
    transitions: Counter = field(default_factory=Counter)
    changed: dict = field(default_factory=dict)  # (old outcome, new outcome) -> Group
    amounts: dict = field(default_factory=dict)  # outcome -> Group (same outcome, amount/outputs changed)
    flags: Counter = field(default_factory=Counter)  # (outcome, old flags, new flags) -> cases
    old_total: int = 0
    new_total: int = 0
    any_amount: bool = False
    invalid: dict = field(default_factory=dict)  # (versions, error) -> Group of case ids
    other_policies: Counter = field(default_factory=Counter)
    unreadable: list = field(default_factory=list)  # Case
    distinct: int = 0  # distinct fact sets decided

    def add(self, part: Impact, examples: int) -> None:
        """Count in the cases of the next chunk. Chunks added in order keep the examples, and the
        order in which transitions were first met, of one pass over all the cases."""
        self.read += part.read
        self.compared += part.compared
        for mine, theirs in ((self.old_counts, part.old_counts), (self.new_counts, part.new_counts),
                             (self.transitions, part.transitions), (self.flags, part.flags),
                             (self.other_policies, part.other_policies)):
            mine.update(theirs)
        for groups, more, keep in ((self.changed, part.changed, examples), (self.amounts, part.amounts, examples),
                                   (self.invalid, part.invalid, INVALID_SHOWN)):
            for key, group in more.items():
                groups.setdefault(key, Group()).add(group, keep)
        self.old_total += part.old_total
        self.new_total += part.new_total
        self.any_amount |= part.any_amount
        self.unreadable += part.unreadable

    @property
    def outcome_changed(self) -> int:
        return sum(g.count for g in self.changed.values())

    @property
    def amount_changed(self) -> int:
        return sum(g.count for g in self.amounts.values())

    @property
    def flags_changed(self) -> int:
        return sum(self.flags.values())


def _key(facts: dict) -> str:
    return json.dumps(facts, sort_keys=True, ensure_ascii=False, default=repr)


def compare(evaluator, bundle, policy: str, old: str, new: str, cases: Iterable[Case],
            examples: int = DEFAULT_EXAMPLES) -> Impact:
    """Decide every case of `policy` under both versions, in this process, and count what changes."""
    return _tally(evaluator, bundle, policy, old, new, cases, examples)[0]


def compare_bulk(client, policy_dir: str, bundle, policy: str, old: str, new: str, *,
                 cases: list[Case] | None = None, synthetic: tuple[int, int] | None = None,
                 examples: int = DEFAULT_EXAMPLES, progress: bulk.Progress | None = None, chunk: int = CHUNK) -> Impact:
    """`compare` in chunks of `chunk` cases, on the client's cluster (in this process without one):
    the `cases` given, or the synthetic corpus (count, seed), which each task makes itself. Only the
    policy directory, the chunk (or the generator's state) and each chunk's Impact cross the wire;
    the chunks' distinct fact sets are counted from 16-byte digests (16 MB a million)."""
    tasks: Iterable[tuple]
    if cases is not None:
        tasks = ((policy_dir, policy, old, new, examples, cases[i:i + chunk], None) for i in range(0, len(cases), chunk))
    else:
        assert synthetic is not None
        count, seed = synthetic
        tasks = ((policy_dir, policy, old, new, examples, None, part)
                 for part in corpus.chunks(policy, count, seed, chunk))
    impact, digests = Impact(policy, old, new), []
    for bundle_hash, _, part, fact_sets in bulk.run(client, _chunk, tasks, progress, size=lambda r: r[1]):
        bulk.same_bundle(bundle.bundle_hash, bundle_hash)
        impact.add(part, examples)
        digests.append(fact_sets)
    impact.distinct = _distinct(digests)
    return impact


def _chunk(policy_dir: str, policy: str, old: str, new: str, examples: int, cases: list[Case] | None,
           synthetic: tuple | None) -> tuple[str, int, Impact, bytes]:
    """One task, on a worker: its cases (or the synthetic ones it makes) compared, with the sorted
    digests of their distinct fact sets."""
    bundle, evaluator = bulk.loaded(policy_dir)
    if cases is None:
        assert synthetic is not None
        cases = synthetic_chunk(policy, *synthetic)
    part, keys = _tally(evaluator, bundle, policy, old, new, cases, examples)
    return bundle.bundle_hash, len(cases), part, b"".join(sorted(_digest(k) for k in keys))


def _digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode(), digest_size=16).digest()


def _distinct(runs: list[bytes]) -> int:
    """Distinct digests in sorted runs of them, merged without a set of them all."""
    count, last = 0, None
    for digest in heapq.merge(*map(_digests, runs)):
        if digest != last:
            count, last = count + 1, digest
    return count


def _digests(run: bytes) -> Iterable[bytes]:
    return (run[i:i + 16] for i in range(0, len(run), 16))


def _tally(evaluator, bundle, policy: str, old: str, new: str, cases: Iterable[Case],
           examples: int) -> tuple[Impact, list[str]]:
    """The Impact of the cases and the keys of their distinct fact sets. Identical fact sets are
    decided once (the engine is deterministic), but every case is counted."""
    impact = Impact(policy, old, new)
    mine: list[tuple[Case, str]] = []
    distinct: dict[str, dict] = {}
    for case in cases:
        if case.error:
            impact.unreadable.append(case)
        elif case.policy not in (None, policy):
            impact.other_policies[case.policy] += 1
        else:
            assert case.facts is not None  # a case without an error was read
            key = _key(case.facts)
            distinct.setdefault(key, case.facts)
            mine.append((case, key))
    keys = list(distinct)
    results = {k: (decide(evaluator, bundle, policy, old, distinct[k]), decide(evaluator, bundle, policy, new, distinct[k]))
               for k in keys}
    impact.distinct = len(keys)
    impact.read = len(mine)
    for case, key in mine:
        a, b = results[key]
        if a.error or b.error:
            which = " and ".join(v for v, r in ((old, a), (new, b)) if r.error)
            invalid = impact.invalid.setdefault((which, a.error or b.error), Group())
            invalid.count += 1
            if len(invalid.examples) < INVALID_SHOWN:
                invalid.examples.append(case.id)
            continue
        impact.compared += 1
        impact.old_counts[a.outcome] += 1
        impact.new_counts[b.outcome] += 1
        impact.transitions[(a.outcome, b.outcome)] += 1
        impact.old_total += a.amount or 0
        impact.new_total += b.amount or 0
        impact.any_amount |= a.amount is not None or b.amount is not None
        if a.outcome != b.outcome:
            group = impact.changed.setdefault((a.outcome, b.outcome), Group())
        elif a.amount != b.amount or _outputs(a) != _outputs(b):
            group = impact.amounts.setdefault(a.outcome, Group())
        else:
            if set(a.flags) != set(b.flags):
                impact.flags[(a.outcome, a.flags, b.flags)] += 1
            continue
        group.count += 1
        group.rules[(_rule(a), _rule(b))] += 1
        if len(group.examples) < examples:
            group.examples.append((case, a, b))
    return impact, keys


def _outputs(r: Result) -> dict:
    return {name: value for name, value, _ in r.outputs}


def _rule(r: Result) -> str:
    if r.rule is not None:
        return r.rule
    if r.outcome == UNDETERMINED:
        needed = ", ".join(r.missing[:3]) + (", …" if len(r.missing) > 3 else "")
        return f"(undetermined: needs {needed})" if needed else "(undetermined)"
    return "(no outcome rule in the trail)"


# --- the Markdown report -------------------------------------------------------------------------

def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "–"


def _cases_text(n: int) -> str:
    return f"{n} case" if n == 1 else f"{n} cases"


def _money(pence: int | None) -> str:
    if pence is None:
        return "none"
    sign = "-" if pence < 0 else ""
    return f"{sign}£{abs(pence) // 100:,}.{abs(pence) % 100:02d}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _order(bundle, policy: str, old: str, new: str, impact: Impact) -> list[str]:
    """Outcomes in the order the versions declare them (OLD's, then NEW's own), UNDETERMINED last,
    then any other outcome met."""
    seen = list(bundle.policies[policy][old].version.outcomes) + list(bundle.policies[policy][new].version.outcomes)
    seen = list(dict.fromkeys(seen))
    met = set(impact.old_counts) | set(impact.new_counts)
    extra = sorted(met - set(seen) - {UNDETERMINED})
    return [o for o in seen if o in met] + extra + ([UNDETERMINED] if UNDETERMINED in met else [])


class _Facts:
    """Key facts of a case in words: request facts (codes, dates, money), never free text."""

    def __init__(self, bundle, policy: str):
        self.specs: dict[str, Any] = {}
        self.lists: dict[str, dict] = {}
        todo, seen = [policy], set()
        while todo:
            name = todo.pop(0)
            if name in seen or name not in bundle.policies:
                continue
            seen.add(name)
            for fact, spec in bundle.fact_schema(name).items():
                self.specs.setdefault(fact, spec)
            for lst, item_specs in bundle.list_schema(name).items():
                self.lists.setdefault(lst, item_specs)
            todo += [u.policy for c in bundle.versions(name) for u in c.version.uses]
        self.order = {name: n for n, name in enumerate([*self.specs, *self.lists])}

    def shown(self, case: Case, a: Result, b: Result) -> str:
        facts, used = self.pairs(case, a, b)
        parts = [f"`{name}={value}`" for name, value in facts] + [f"`{label}: {value}`" for label, value in used]
        return ", ".join(parts) if parts else "(no facts read)"

    def pairs(self, case: Case, a: Result, b: Result) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The request facts the decisions turned on, (name, value in words), and the other
        policies' results behind them, (name, result)."""
        assert case.facts is not None  # only cases that were read are decided
        names = sorted(a.keys | b.keys, key=lambda n: (self.order.get(n, len(self.order)), n))
        missing = {m.split("[")[0] for m in a.missing + b.missing}
        facts = []
        for name in names:
            value = case.facts.get(name)
            if (name not in self.specs and name not in self.lists) or (value is None and name not in missing):
                continue  # not a request fact, or not given and not needed
            facts.append((name, "?" if value is None else self._value(name, value)))
        used = dict.fromkeys(a.used)
        for label, value in b.used:
            used.setdefault((label, value))
        return facts, list(used)

    def _value(self, name: str, value: Any) -> str:
        if name in self.lists:
            if not isinstance(value, list):
                return "?"
            items = ["; ".join(self._item(name, item) for item in value[:4])]
            more = f" +{len(value) - 4} more" if len(value) > 4 else ""
            return f"[{items[0]}{more}]" if value else "[]"
        return self._scalar(self.specs[name].type, value)

    def _item(self, name: str, item: Any) -> str:
        if not isinstance(item, dict):
            return "?"
        specs = self.lists[name]
        return " ".join(f"{k}={self._scalar(specs[k].type, v) if k in specs else '?'}" for k, v in item.items()
                        if v is not None)

    @staticmethod
    def _scalar(kind: FactType, value: Any) -> str:
        if value is None:
            return "?"
        if isinstance(value, bool):
            return "true" if value else "false"
        if kind is FactType.MONEY and isinstance(value, (int, float)):
            return _money(int(value))
        if isinstance(value, list):
            return "[" + ", ".join(str(v) if isinstance(v, str) and _CODE.match(v) else "(text)" for v in value) + "]"
        if isinstance(value, str):
            return value if _CODE.match(value) else "(text)"
        return str(value)


def _change(a: Result, b: Result) -> str:
    return "; ".join(_changes(a, b))


def _changes(a: Result, b: Result) -> list[str]:
    """What else differs between the two decisions of a case: amount, outputs, flags."""
    parts = []
    if a.amount != b.amount:
        parts.append(f"amount {_money(a.amount)} → {_money(b.amount)}")
    old_out, new_out = {n: t for n, _, t in a.outputs}, {n: t for n, _, t in b.outputs}
    for name in dict.fromkeys([*old_out, *new_out]):
        if old_out.get(name) != new_out.get(name):
            parts.append(f"{name} {old_out.get(name, 'none')} → {new_out.get(name, 'none')}")
    added, removed = [f for f in b.flags if f not in a.flags], [f for f in a.flags if f not in b.flags]
    parts += [f"flag +{f}" for f in added] + [f"flag −{f}" for f in removed]
    return parts


# The report's order, shared by the Markdown and the JSON: transitions that change first, then by
# cases; outcomes in _order's; rules, flags and errors by cases.

def _moves(impact: Impact, order: list[str]) -> list[tuple[tuple[str, str], int]]:
    rank = {o: n for n, o in enumerate(order)}
    return sorted(impact.transitions.items(),
                  key=lambda kv: (kv[0][0] == kv[0][1], -kv[1], rank.get(kv[0][0], 99), rank.get(kv[0][1], 99)))


def _amount_order(impact: Impact, order: list[str]) -> list[str]:
    rank = {o: n for n, o in enumerate(order)}
    return sorted(impact.amounts, key=lambda o: (-impact.amounts[o].count, rank.get(o, 99)))


def _rule_rows(group: Group) -> list[tuple[tuple[str, str], int]]:
    return sorted(group.rules.items(), key=lambda kv: (-kv[1], kv[0]))


def _flag_rows(impact: Impact) -> list[tuple[tuple[str, tuple, tuple], int]]:
    return sorted(impact.flags.items(), key=lambda kv: (-kv[1], kv[0]))


def _invalid_rows(impact: Impact) -> list[tuple[tuple[str, str], Group]]:
    return sorted(impact.invalid.items(), key=lambda kv: (-kv[1].count, kv[0]))


def render(impact: Impact, bundle, corpus_text: str, command: str) -> str:
    p, old, new = impact.policy, impact.old, impact.new
    vo, vn = bundle.policies[p][old].version, bundle.policies[p][new].version
    facts = _Facts(bundle, p)
    total = impact.compared
    lines = [f"# Impact: {p}/{old} → {p}/{new}", "",
             f"What changes for the cases below if **{p}/{new}** ({_status(vn)}) replaces **{p}/{old}** "
             f"({_status(vo)}). Each case is decided by both versions as named: a case's own version or "
             f"as-at date is not used. Shares are of the {total} cases compared.", "",
             "## Summary", "",
             "| | cases | share |", "|---|---:|---:|",
             f"| cases compared | {total} | {_pct(total, total)} |",
             f"| outcome changed | {impact.outcome_changed} | {_pct(impact.outcome_changed, total)} |",
             f"| same outcome, amount or outputs changed | {impact.amount_changed} | {_pct(impact.amount_changed, total)} |",
             f"| same outcome, only flags changed | {impact.flags_changed} | {_pct(impact.flags_changed, total)} |",
             f"| unchanged | {total - impact.outcome_changed - impact.amount_changed - impact.flags_changed} | "
             f"{_pct(total - impact.outcome_changed - impact.amount_changed - impact.flags_changed, total)} |",
             f"| invalid for either version (not compared) | {sum(g.count for g in impact.invalid.values())} | |",
             f"| other policies' cases (skipped) | {sum(impact.other_policies.values())} | |",
             f"| unreadable (skipped) | {len(impact.unreadable)} | |",
             ""]

    order = _order(bundle, p, old, new, impact)
    lines += ["## Outcomes", "", f"| outcome | {old} | {new} | difference |", "|---|---:|---:|---:|"]
    for outcome in order:
        was, now = impact.old_counts[outcome], impact.new_counts[outcome]
        lines.append(f"| {outcome} | {was} | {now} | {now - was:+d} |")
    if impact.any_amount:
        lines += ["", f"Amounts, summed over the cases compared (no amount counts as £0): {old} "
                      f"{_money(impact.old_total)}, {new} {_money(impact.new_total)}, difference "
                      f"{_money(impact.new_total - impact.old_total)}."]
    lines.append("")

    moves = _moves(impact, order)
    lines += ["## Transitions", "", f"| {old} | {new} | cases | share |", "|---|---|---:|---:|"]
    lines += [f"| {a} | {b}{'' if a != b else ' (unchanged)'} | {n} | {_pct(n, total)} |" for (a, b), n in moves]
    lines.append("")

    def detail(heading: str, group: Group) -> list[str]:
        out = [heading, "", f"| rule in {old} | rule in {new} | cases |", "|---|---|---:|"]
        out += [f"| {_cell(ra)} | {_cell(rb)} | {n} |"
                for (ra, rb), n in _rule_rows(group)]
        if group.examples:
            out += ["", "Examples:", ""]
            for case, a, b in group.examples:
                extra = _change(a, b)
                out.append(f"- `{case.id}`: {facts.shown(case, a, b)}" + (f" — {extra}" if extra else ""))
        return out + [""]

    if impact.changed:
        lines += ["## Outcome changed", ""]
        for (a, b), _ in moves:
            if a != b:
                group = impact.changed[(a, b)]
                lines += detail(f"### {a} → {b}: {_cases_text(group.count)} ({_pct(group.count, total)})", group)
    if impact.amounts:
        lines += ["## Same outcome, amount or outputs changed", ""]
        for outcome in _amount_order(impact, order):
            group = impact.amounts[outcome]
            lines += detail(f"### {outcome}: {_cases_text(group.count)} ({_pct(group.count, total)})", group)
    if impact.flags:
        lines += ["## Same outcome, only flags changed", "",
                  f"| outcome | flags in {old} | flags in {new} | cases |", "|---|---|---|---:|"]
        for (outcome, fa, fb), n in _flag_rows(impact):
            lines.append(f"| {outcome} | {', '.join(fa) or 'none'} | {', '.join(fb) or 'none'} | {n} |")
        lines.append("")

    if impact.invalid or impact.other_policies or impact.unreadable:
        lines += ["## Cases not compared", ""]
    if impact.invalid:
        lines += ["Invalid for either version (the first error):", "",
                  "| invalid for | first error | cases | examples |", "|---|---|---:|---|"]
        for (which, error), group in _invalid_rows(impact):
            shown = ", ".join(f"`{i}`" for i in group.examples) + (", …" if group.count > INVALID_SHOWN else "")
            lines.append(f"| {which} | {_cell(error)} | {group.count} | {shown} |")
        lines.append("")
    if impact.other_policies:
        lines += ["Cases of other policies (skipped):", "", "| policy | cases |", "|---|---:|"]
        lines += [f"| {_cell(name)} | {n} |" for name, n in sorted(impact.other_policies.items())]
        lines.append("")
    if impact.unreadable:
        lines += ["Unreadable (skipped):", "", "| case | problem |", "|---|---|"]
        lines += [f"| `{c.id}` | {_cell(c.error)} |" for c in impact.unreadable[:MAX_LISTED]]
        if len(impact.unreadable) > MAX_LISTED:
            lines.append(f"| … | {len(impact.unreadable) - MAX_LISTED} more |")
        lines.append("")

    lines += ["---", "",
              f"- {p}/{old}: {vo.status.value}, content sha256 `{bundle.policies[p][old].content_hash}`",
              f"- {p}/{new}: {vn.status.value}, content sha256 `{bundle.policies[p][new].content_hash}`",
              f"- policy bundle sha256 `{bundle.bundle_hash}`",
              f"- cases: {corpus_text}; {impact.distinct} distinct fact sets decided by each version",
              f"- command: `{command}`", ""]
    return "\n".join(lines)


# --- the JSON report ----------------------------------------------------------------------------

JSON_FORMAT = "cms-policy-impact/1"


def structured(impact: Impact, bundle, corpus_ref: dict, command: str) -> dict:
    """What the Markdown report says, as data (impact.json, for the console and other tools): the
    same counts, rows and examples in the same order, with facts in the same words."""
    p, old, new = impact.policy, impact.old, impact.new
    facts = _Facts(bundle, p)
    order = _order(bundle, p, old, new, impact)
    moves = _moves(impact, order)

    def ref(version: str) -> dict:
        compiled = bundle.policies[p][version]
        pv = compiled.version
        return {"policy": p, "version": version, "revision": pv.revision, "content_hash": compiled.content_hash,
                "status": pv.status.value, "title": pv.title,
                "effective_from": pv.effective_from.isoformat() if pv.effective_from else None,
                "effective_to": pv.effective_to.isoformat() if pv.effective_to else None}

    def decision(r: Result) -> dict:
        return {"outcome": r.outcome, "amount_pence": r.amount, "rule": _rule(r)}

    def example(case: Case, a: Result, b: Result) -> dict:
        shown, used = facts.pairs(case, a, b)
        return {"id": case.id, "facts": [{"name": n, "value": v} for n, v in shown],
                "used": [{"name": n, "result": v} for n, v in used],
                "old": decision(a), "new": decision(b), "changes": _changes(a, b)}

    def group(g: Group) -> dict:
        return {"cases": g.count, "rules": [{"old": ra, "new": rb, "cases": n} for (ra, rb), n in _rule_rows(g)],
                "examples": [example(*e) for e in g.examples]}

    total = impact.compared
    unchanged = total - impact.outcome_changed - impact.amount_changed - impact.flags_changed
    return {
        "format": JSON_FORMAT,
        "policy": p, "old": ref(old), "new": ref(new), "bundle_hash": bundle.bundle_hash,
        "corpus": corpus_ref, "command": command,
        "summary": {"read": impact.read, "compared": total, "outcome_changed": impact.outcome_changed,
                    "amount_changed": impact.amount_changed, "flags_changed": impact.flags_changed,
                    "unchanged": unchanged, "invalid": sum(g.count for g in impact.invalid.values()),
                    "other_policies": sum(impact.other_policies.values()), "unreadable": len(impact.unreadable),
                    "distinct_fact_sets": impact.distinct},
        "outcomes": [{"outcome": o, "old": impact.old_counts[o], "new": impact.new_counts[o]} for o in order],
        "amounts": {"old_pence": impact.old_total, "new_pence": impact.new_total,
                    "difference_pence": impact.new_total - impact.old_total} if impact.any_amount else None,
        "transitions": [{"old": a, "new": b, "cases": n} for (a, b), n in moves],
        "outcome_changed": [{"old": a, "new": b, **group(impact.changed[(a, b)])} for (a, b), _ in moves if a != b],
        "amount_changed": [{"outcome": o, **group(impact.amounts[o])} for o in _amount_order(impact, order)],
        "flags_changed": [{"outcome": o, "old_flags": list(fa), "new_flags": list(fb), "cases": n}
                          for (o, fa, fb), n in _flag_rows(impact)],
        "invalid": [{"invalid_for": which, "error": error, "cases": g.count, "examples": list(g.examples)}
                    for (which, error), g in _invalid_rows(impact)],
        "other_policies": [{"policy": name, "cases": n} for name, n in sorted(impact.other_policies.items())],
        "unreadable": [{"id": c.id, "problem": c.error} for c in impact.unreadable[:MAX_LISTED]],
    }


def to_json(data: dict) -> str:
    """Sorted keys and a fixed layout: the same report, byte for byte."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _status(pv: PolicyVersion) -> str:
    if pv.effective_from and pv.effective_to:
        return f"{pv.status.value}, {pv.effective_from} to {pv.effective_to}"
    if pv.effective_from:
        return f"{pv.status.value}, from {pv.effective_from}"
    return pv.status.value


# --- the chart -----------------------------------------------------------------------------------

def chart(impact: Impact, bundle, path: Path) -> None:
    """A horizontal bar chart of the outcome counts under each version, side by side, titled with
    the versions and the number of cases whose outcome changes (PNG, no timestamps)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImpactError("the chart needs matplotlib: pip install -e '.[authoring]' (or give --no-chart)") from None
    p, old, new = impact.policy, impact.old, impact.new
    order = _order(bundle, p, old, new, impact)
    height = 0.38
    fig = Figure(figsize=(9, 1.6 + 0.75 * max(1, len(order))), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ys = list(range(len(order)))[::-1]  # first outcome at the top
    a = [impact.old_counts[o] for o in order]
    b = [impact.new_counts[o] for o in order]
    bars_a = ax.barh([y + height / 2 for y in ys], a, height, label=f"{old} ({bundle.policies[p][old].version.status.value})",
                     color="#7f7f7f")
    bars_b = ax.barh([y - height / 2 for y in ys], b, height, label=f"{new} ({bundle.policies[p][new].version.status.value})",
                     color="#1f77b4")
    top = max(a + b + [1])
    for bars in (bars_a, bars_b):
        for bar in bars:
            ax.text(bar.get_width() + top * 0.01, bar.get_y() + bar.get_height() / 2, str(int(bar.get_width())),
                    va="center", fontsize=9)
    ax.set_yticks(ys, order)
    ax.set_xlim(0, top * 1.15)
    ax.set_xlabel("cases")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 if len(order) > 2 else -0.25), ncol=2, fontsize=9,
              frameon=False)
    ax.set_title(f"{p}: {old} → {new}\n{impact.outcome_changed} of {impact.compared} cases change outcome "
                 f"({_pct(impact.outcome_changed, impact.compared)})", fontsize=11)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})


# --- measuring a bulk run ------------------------------------------------------------------------

def measure_impact(count: int, workers: int | None = None, scheduler: str | None = None,
                   old: str = "application_fee/2017", new: str = "application_fee/review-2023",
                   progress: bool = False) -> dict:
    """Time the impact of `count` synthetic cases through Dask (a local cluster unless `scheduler`
    is given; its start-up is timed too) and sample the resident memory of this process and of its
    child processes (the local workers) twice a second. Returns seconds, cases, peak_rss_mib (this
    process and its workers together), client_peak_rss_mib, worker_peak_rss_mib (the largest one)
    and the total, client and largest worker's at each tenth of the run (rss_mib_by_tenth,
    client_rss_mib_by_tenth, worker_rss_mib_by_tenth: flat if memory does not grow with the cases).
    `progress`: the progress line on stderr."""
    import threading

    import psutil  # type: ignore[import-untyped]  # comes with distributed; no stubs installed

    from rules.engine.loader import DEFAULT_POLICY_DIR
    (policy, a), (_, b) = _split(old), _split(new)
    policy_dir = str(DEFAULT_POLICY_DIR.resolve())
    bundle, _ = bulk.loaded(policy_dir)
    me, samples, stop = psutil.Process(), [], threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            try:
                mine, theirs = me.memory_info().rss, [c.memory_info().rss for c in me.children(recursive=True)]
            except psutil.Error:  # a worker came or went between the listing and the reading
                continue
            samples.append((time.perf_counter(), mine, max(theirs, default=0), mine + sum(theirs)))

    sampler = threading.Thread(target=sample, daemon=True)
    started = time.perf_counter()
    sampler.start()
    try:
        with bulk.cluster(workers, scheduler, count, sensitive=False) as client:
            impact = compare_bulk(client, policy_dir, bundle, policy, a, b, synthetic=(count, corpus.DEFAULT_SEED),
                                  progress=bulk.Progress(count, "impact") if progress else None)
    finally:
        stop.set()
        sampler.join()
    seconds = time.perf_counter() - started
    mib = 1024 * 1024
    tenths = [max((s for s in samples if s[0] - started <= seconds * k / 10), default=None, key=lambda s: s[0])
              for k in range(1, 11)]
    return {"seconds": round(seconds, 1), "cases": impact.read,
            "peak_rss_mib": round(max((s[3] for s in samples), default=0) / mib),
            "client_peak_rss_mib": round(max((s[1] for s in samples), default=0) / mib),
            "worker_peak_rss_mib": round(max((s[2] for s in samples), default=0) / mib),
            "rss_mib_by_tenth": [None if s is None else round(s[3] / mib) for s in tenths],
            "client_rss_mib_by_tenth": [None if s is None else round(s[1] / mib) for s in tenths],
            "worker_rss_mib_by_tenth": [None if s is None else round(s[2] / mib) for s in tenths]}


# --- command line --------------------------------------------------------------------------------

def add_command(commands) -> None:
    cmd = commands.add_parser("impact", help="how many outcomes change between two versions, on a corpus of cases",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("old", metavar="OLD", help="policy/version, e.g. application_fee/2024")
    cmd.add_argument("new", metavar="NEW", help="policy/version of the same policy, e.g. application_fee/review-2023")
    cmd.add_argument("--cases", type=Path, default=None, metavar="DIR",
                     help="directory of cases (*.jsonl, *.json, *.yaml; default: the synthetic corpus)")
    cmd.add_argument("--seed", type=int, default=corpus.DEFAULT_SEED, metavar="N",
                     help="seed of the synthetic corpus (default: %(default)s)")
    cmd.add_argument("--count", type=int, default=corpus.DEFAULT_CASES, metavar="N",
                     help="cases in the synthetic corpus (default: %(default)s)")
    cmd.add_argument("--out", type=Path, default=None, metavar="DIR",
                     help="also write the report to DIR/impact.md, as data to DIR/impact.json and its chart to DIR/impact.png")
    cmd.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES, metavar="N",
                     help="example cases per change (default: %(default)s)")
    cmd.add_argument("--no-chart", action="store_true", help="with --out, do not draw the chart")
    cmd.add_argument("--policies", type=Path, default=None, metavar="DIR",
                     help="policy directory (default: rules/policies)")
    bulk.add_arguments(cmd)
    cmd.set_defaults(run=run)


def _split(text: str) -> tuple[str, str]:
    policy, sep, version = text.partition("/")
    if not sep or not policy or not version:
        raise ImpactError(f"'{text}': expected policy/version, e.g. application_fee/2024")
    return policy, version


def _command(args) -> str:
    parts = ["python -m rules impact", args.old, args.new]
    if args.cases is not None:
        parts += ["--cases", str(args.cases)]
    else:
        if args.seed != corpus.DEFAULT_SEED:
            parts += ["--seed", str(args.seed)]
        if args.count != corpus.DEFAULT_CASES:
            parts += ["--count", str(args.count)]
    if args.examples != DEFAULT_EXAMPLES:
        parts += ["--examples", str(args.examples)]
    if args.policies is not None:
        parts += ["--policies", str(args.policies)]
    return " ".join(parts)


def run(args) -> int:
    from rules.engine.loader import DEFAULT_POLICY_DIR, PolicyLoadError
    policy_dir = str(Path(args.policies or DEFAULT_POLICY_DIR).resolve())
    try:
        (policy, old), (other, new) = _split(args.old), _split(args.new)
        if policy != other:
            raise ImpactError(f"OLD and NEW must be versions of the same policy, not {policy} and {other}")
        if old == new:
            raise ImpactError(f"OLD and NEW are the same version ({policy}/{old})")
        if args.examples < 0 or args.count < 0:
            raise ImpactError("--examples and --count must be 0 or more")
        # fail before the work, not after it
        if args.out is not None and not args.no_chart and importlib.util.find_spec("matplotlib") is None:
            raise ImpactError("the chart needs matplotlib: pip install -e '.[authoring]' (or give --no-chart)")
        try:
            bundle, _ = bulk.loaded(policy_dir)
        except PolicyLoadError as exc:
            raise ImpactError(f"the policy files were rejected:\n{exc}") from None
        for version in (old, new):
            if version not in bundle.policies.get(policy, {}):
                if policy not in bundle.policies:
                    raise ImpactError(f"unknown policy '{policy}'; known: {', '.join(sorted(bundle.policies))}")
                known = ", ".join(c.version.version for c in bundle.versions(policy))
                raise ImpactError(f"unknown version '{version}' of {policy}; known: {known}")
        cases: list[Case] | None = None
        if args.cases is not None:
            cases = read_cases(args.cases)
            files = len({c.id.split(":")[0].split("#")[0] for c in cases})
            corpus_text = f"`{args.cases}` ({files} files, {len(cases)} cases)"
            corpus_ref = {"kind": "cases", "directory": str(args.cases), "files": files, "cases": len(cases)}
        else:
            if policy not in corpus.GENERATORS:
                raise ImpactError(f"no synthetic corpus for {policy}: give --cases DIR")
            corpus_text = (f"synthetic corpus, seed {args.seed}, {args.count} cases (the file "
                           f"`python -m rules corpus --seed {args.seed} --cases {args.count} --policy {policy}` "
                           f"writes; ids are its lines)")
            corpus_ref = {"kind": "synthetic", "seed": args.seed, "count": args.count}
    except ImpactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    total = args.count if cases is None else len(cases)
    started = time.perf_counter()
    progress = bulk.Progress(total, "impact")
    try:
        # Real cases (--cases) are sensitive; the synthetic ones cross the wire as a generator's state.
        with bulk.cluster(args.workers, args.scheduler, total, sensitive=cases is not None) as client:
            where = "1 process" if client is None else f"{len(client.scheduler_info()['workers'])} Dask workers"
            impact = compare_bulk(client, policy_dir, bundle, policy, old, new, cases=cases,
                                  synthetic=(args.count, args.seed), examples=args.examples, progress=progress)
    except bulk.BulkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        progress.close()
    took = time.perf_counter() - started
    report = render(impact, bundle, corpus_text, _command(args))
    sys.stdout.write(report)
    sys.stdout.flush()
    print(f"decided {impact.distinct} distinct fact sets of {impact.read} cases with both versions in "
          f"{took:.1f} s ({1000 * took / max(1, 2 * impact.distinct):.2f} ms a decision, {where})", file=sys.stderr)
    try:
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "impact.md").write_text(report, encoding="utf-8")
            print(f"wrote {args.out / 'impact.md'}", file=sys.stderr)
            data = structured(impact, bundle, corpus_ref, _command(args))
            (args.out / "impact.json").write_text(to_json(data), encoding="utf-8")
            print(f"wrote {args.out / 'impact.json'}", file=sys.stderr)
            if not args.no_chart:
                chart(impact, bundle, args.out / "impact.png")
                print(f"wrote {args.out / 'impact.png'}", file=sys.stderr)
        else:
            print("(give --out DIR to write the report, its data and its chart to DIR/impact.md, .json and .png)",
                  file=sys.stderr)
    except (ImpactError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
