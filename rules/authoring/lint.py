"""Lint: what a policy file may legally say but probably does not mean.

`python -m rules validate` prints these after a bundle loads, as `path:line: warning: …` or
`path:line: note: …`, with the line of the rule, comparison, fact, parameter or citation concerned:

- warning: a rule that can never fire: its condition cannot hold, or whenever it holds earlier
  rules of the same decision (the outcome, one derived value, a list's items; first hit, see
  hitpolicy) decide first. An item list's last, catch-all rule that earlier rules always pre-empt
  is only a note: it is kept as a safety net (abuse_evidence/2018).
- warning: a comparison with a value the compared thing never has (an enum parameter outside
  `allowed`, an outcome the used policy does not have, a value no rule derives).
- note: two rules of one decision with different conclusions that can both hold; the earlier wins.
  The note gives an example.
- warning: a fact, list item fact or parameter nothing reads; a citation with a blank source.

Soundness: a rule is said never to fire only when that is proved. A condition is put in
disjunctive normal form over comparisons; a conjunct can hold iff, for every value it reads, its
comparisons can hold together (a choice from a set, a whole number in an interval but not at some
excluded points, a list holding some of its allowed items). What is not modelled is left open:
a comparison of two facts constrains only their difference (`a < b` excludes `a = b`, nothing
about `a` alone), a percent comparison is a free proposition, and derived values, list aggregates
and used policies' results are free values of their type (those like an enum limited to the values
they can take). This only ever makes more cases possible. The engine also decides with facts
missing (three-valued logic, see compiler): a rule decides when it holds, every earlier rule with
another conclusion fails, and every earlier one with the same conclusion fails or is unknown. So
rules with its own conclusion pre-empt a rule only when they must hold once the facts it needs are
known. Work is bounded (MAX_CONJUNCTS, MAX_PAIRS): a rule beyond the bound is not analysed, and is
counted in the summary.
"""
from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rules.engine.loader import shown_path
from rules.language import arith
from rules.language.checks import expressions, needs, tested, value_types, walk
from rules.language.model import (
    PLACEHOLDER,
    AllOf,
    Compare,
    Condition,
    FactType,
    Lookup,
    NotOf,
    ParamType,
    PolicyVersion,
    Ref,
    Rule,
    WhoseFact,
)
from rules.language.yamlsource import Located, YamlSourceError, read_yaml

MAX_CONJUNCTS = 20_000  # per normal form; beyond it a rule is not analysed
MAX_PAIRS = 400_000  # conjunct pairs tried for one conjunction
MAX_SHOWN = 5  # parts of an example, values of a list in a message

WARNING, NOTE = "warning", "note"


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    level: str  # WARNING or NOTE
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.level}: {self.message}"


@dataclass
class Report:
    findings: list[Finding]
    not_analysed: int = 0  # rules too complex to analyse


def lint(bundle, directory: Path) -> Report:
    """Findings for every version of a loaded bundle (loader.Bundle) read from `directory`,
    sorted by path and line."""
    report = Report([])
    for policy in sorted(bundle.policies):
        for version, compiled in sorted(bundle.policies[policy].items()):
            where = _Where.of(Path(directory), policy, version)
            _lint_version(bundle, compiled, where, report)
    report.findings.sort(key=lambda f: (f.path, f.line, f.level, f.message))
    return report


# --- where findings point ----------------------------------------------------

@dataclass
class _Where:
    path: str
    located: Located | None

    @classmethod
    def of(cls, directory: Path, policy: str, version: str) -> _Where:
        path = directory / policy / f"{version}.yaml"
        try:
            return cls(shown_path(path, directory), read_yaml(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, YamlSourceError):
            return cls(str(path), None)

    def finding(self, at: tuple, level: str, message: str) -> Finding:
        return Finding(self.path, self.located.line_of(at) if self.located else 1, level, message)


def _lint_version(bundle, compiled, where: _Where, report: Report) -> None:
    pv = compiled.version
    problems = _blank_citations(pv) + _unused_facts(bundle, pv) + _unused_parameters(pv)
    report.findings += [where.finding(at, WARNING, message) for at, message in problems]
    scopes = [(_Space(_kinds(bundle, pv), value_types(pv), pv), _policy_groups(compiled))]
    for li, lst in enumerate(pv.lists):
        names = {f.name: f.type for f in (*pv.facts, *lst.facts)}
        rules = [(r, ("lists", li, "rules", i), r.outcome, r.outcome) for i, r in enumerate(lst.rules)]
        scopes.append((_Space(_item_kinds(pv, lst), names, pv), [_Group(rules, True, catch_all=True)]))
    for space, groups in scopes:
        rules = [(rule, at) for group in groups for rule, at, _, _ in group.rules]
        report.findings += [where.finding(at, WARNING, message) for at, message in _out_of_range(space, rules)]
        report.not_analysed += _lint_groups(space, groups, where, report.findings)


def _policy_groups(compiled) -> list[_Group]:
    """The policy's rules by what they decide: the outcome, each derived value, each flag rule."""
    rules = [(r, ("rules", i)) for i, r in enumerate(compiled.version.rules)]
    conclusions = {cr.rule.id: cr.conclusion for cr in compiled.rules}
    groups = [_Group([(r, at, conclusions[r.id], r.outcome) for r, at in rules if r.outcome], True)]
    for name in dict.fromkeys(r.derive.name for r, _ in rules if r.derive):
        groups.append(_Group([(r, at, r.derive.value, r.derive.value) for r, at in rules
                              if r.derive and r.derive.name == name], False))
    return groups + [_Group([(r, at, r.flag, r.flag)], False) for r, at in rules if r.flag]


# --- citations, unused facts and parameters ----------------------------------

def _blank_citations(pv: PolicyVersion) -> list[tuple[tuple, str]]:
    cited = [(("cites",), pv.cites)]
    cited += [(("parameters", name, "cites"), p.cites) for name, p in pv.parameters.items()]
    cited += [(("rules", i, "cites"), r.cites) for i, r in enumerate(pv.rules)]
    cited += [(("lists", li, "rules", i, "cites"), r.cites) for li, lst in enumerate(pv.lists)
              for i, r in enumerate(lst.rules)]
    return [(at + (j, "source"), "citation with a blank source: a citation must name its source")
            for at, cites in cited for j, c in enumerate(cites) if not c.source.strip()]


def _texts(pv: PolicyVersion) -> Iterable[str]:
    """Every text that may name facts, derived values or parameters in braces."""
    for rule in (*pv.rules, *(r for lst in pv.lists for r in lst.rules)):
        yield rule.because
        yield from rule.tell.values()
        yield from rule.actions
    for tell in pv.tell.outcomes.values():
        yield from tell.values()
    yield from pv.tell.review.values()


def _named_in_texts(pv: PolicyVersion) -> set[str]:
    return {name for text in _texts(pv) for name in PLACEHOLDER.findall(text)}


def _unused_facts(bundle, pv: PolicyVersion) -> list[tuple[tuple, str]]:
    """Facts and list item facts that no rule, text or setting reads, and that no used policy
    takes from the request."""
    read = _named_in_texts(pv) | {pv.as_at_fact}
    for rule in (*pv.rules, *(r for lst in pv.lists for r in lst.rules)):
        read.update(needs(rule))
    for use in pv.uses:
        read.update(use.set)
        read.add(use.subject)
    passed, passed_items = _passed_down(bundle, pv)
    read |= passed
    # A fact naming whose another is (`about: {fact: …}`) is read when that other one is used
    # (a list's items always are: their verdicts are part of the decision).
    owners = ([(f.name, f.about.fact) for f in pv.facts if isinstance(f.about, WhoseFact)]
              + [(None, lst.about.fact) for lst in pv.lists if isinstance(lst.about, WhoseFact)])
    while new := {owner for owned, owner in owners if owner not in read and owned != owner
                  and (owned is None or owned in read)}:
        read |= new
    out = [(("facts", i), f"fact '{f.name}' is never used: no rule, text or used policy reads it")
           for i, f in enumerate(pv.facts) if f.name not in read]
    for li, lst in enumerate(pv.lists):
        taken = passed_items.get(lst.name, set())
        out += [(("lists", li, "facts", j), f"item fact '{lst.name}.{f.name}' is never used: "
                 "no item rule or text reads it") for j, f in enumerate(lst.facts) if f.name not in read | taken]
    return out


def _passed_down(bundle, pv: PolicyVersion) -> tuple[set[str], dict[str, set[str]]]:
    """The facts and list item facts the policies this one uses (and theirs) take from the request."""
    facts: set[str] = set()
    items: dict[str, set[str]] = {}
    for use in pv.uses:
        facts |= bundle.request_names(use.policy)
        todo, seen = [use.policy], set()
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                for lst, schema in bundle.list_schema(name).items():
                    items.setdefault(lst, set()).update(schema)
                todo += [u.policy for c in bundle.versions(name) for u in c.version.uses]
    return facts, items


def _unused_parameters(pv: PolicyVersion) -> list[tuple[tuple, str]]:
    read = _named_in_texts(pv)
    for rule in (*pv.rules, *(r for lst in pv.lists for r in lst.rules)):
        for cmp, _ in walk(rule.when, ()):
            operand = cmp.operand
            if isinstance(operand, Ref):
                read.update(r.param for r in (operand, operand.plus_years, operand.plus_months)
                            if isinstance(r, Ref) and r.param)
        for _, expr in expressions(rule):
            read.update(r.lookup if isinstance(r, Lookup) else r.param for r in arith.refs(expr))
    return [(("parameters", name), f"parameter '{name}' is never used: no rule or text reads it")
            for name in pv.parameters if name not in read]


# --- what each value can be ----------------------------------------------------

@dataclass(frozen=True)
class _Kind:
    shape: str  # "choice" (a value from a set), "ordered" (an integer; dates as ordinals), "list"
    type: FactType | None = None
    values: frozenset | None = None  # choice: every possible value (None: any text); list: allowed items
    low: int | None = None
    high: int | None = None
    meaning: str = ""  # where a choice's values come from, for messages
    relation: tuple[str, str] | None = None  # ordered: the difference of these two (a - b)


_LIMIT = 2 ** 53  # the largest whole number a request may give (values.parse)
_DATES = (dt.date.min.toordinal(), dt.date.max.toordinal())


def _fact_kind(fact) -> _Kind | None:
    t = fact.type
    if t is FactType.BOOL:
        return _Kind("choice", t, frozenset({True, False}))
    if t is FactType.ENUM:
        return _Kind("choice", t, frozenset(fact.allowed), meaning=f"allowed: {_listed(fact.allowed)}")
    if t is FactType.STRING:
        return _Kind("choice", t)
    if t in (FactType.INTEGER, FactType.MONEY):
        return _Kind("ordered", t, low=-_LIMIT, high=_LIMIT)
    if t is FactType.DATE:
        return _Kind("ordered", t, low=_DATES[0], high=_DATES[1])
    if t is FactType.ENUM_LIST:
        return _Kind("list", t, frozenset(fact.allowed))
    return None  # percents are not compared


def _kinds(bundle, pv: PolicyVersion) -> dict[str, _Kind]:
    """What every value a policy rule may read can be."""
    kinds = {f.name: k for f in pv.facts if (k := _fact_kind(f)) is not None}
    for lst in pv.lists:
        for name, t in lst.aggregates().items():
            boolean = t is FactType.BOOL
            kinds[name] = _Kind("choice", t, frozenset({True, False})) if boolean else _Kind("ordered", t, low=0)
    for use in pv.uses:
        versions = bundle.policies.get(use.policy, {})
        chosen = [versions[use.version]] if use.version in versions else list(versions.values())
        outcomes = sorted({code for c in chosen for code in c.version.outcomes})
        kinds[f"{use.as_}_outcome"] = _Kind("choice", FactType.STRING, frozenset(outcomes),
                                            meaning=f"outcomes of {use.policy}: {_listed(outcomes)}")
        kinds[f"{use.as_}_amount"] = _Kind("ordered", FactType.MONEY)
    for d in pv.derived:
        if d.type in (FactType.BOOL, FactType.STRING):
            given = [r.derive.value for r in pv.rules if r.derive and r.derive.name == d.name]
            values = [v for v in dict.fromkeys([*given, d.default]) if v is not None]
            kinds[d.name] = _Kind("choice", d.type, frozenset(values),
                                  meaning=f"its rules and default give only {_listed(_shown(v) for v in values)}")
        elif d.type in (FactType.INTEGER, FactType.MONEY):
            kinds[d.name] = _Kind("ordered", d.type)
    return kinds


def _item_kinds(pv: PolicyVersion, lst) -> dict[str, _Kind]:
    """What every value an item rule may read can be: the policy's facts and the item's."""
    return {f.name: k for f in (*pv.facts, *lst.facts) if (k := _fact_kind(f)) is not None}


def _listed(values: Iterable, limit: int = MAX_SHOWN * 2) -> str:
    values = [str(v) for v in values]
    return ", ".join(values[:limit]) + (", …" if len(values) > limit else "")


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        return f"[{_listed(value, MAX_SHOWN)}]"
    return str(value)


# --- comparisons as literals ---------------------------------------------------

@dataclass(frozen=True)
class _Lit:
    """One constraint on one value: choice in/out a set; ordered ge/le/ne a number; list
    any/none of a set; a free proposition (named by its text) true/false."""
    name: str
    op: str
    arg: Hashable = None
    reads: tuple[str, ...] = field(default=(), compare=False)  # the facts it needs known
    text: str = field(default="", compare=False)  # the comparison it comes from, as written
    seq: int = field(default=0, compare=False)  # made in condition order: messages keep it

    def negated(self) -> list[frozenset[_Lit]]:
        """Its negation, in normal form."""
        flip = {"in": "out", "out": "in", "any": "none", "none": "any", "true": "false", "false": "true"}
        if self.op in flip:
            return [frozenset({replace(self, op=flip[self.op])})]
        if self.op == "ge":
            return [frozenset({replace(self, op="le", arg=self.arg - 1)})]
        if self.op == "le":
            return [frozenset({replace(self, op="ge", arg=self.arg + 1)})]
        return [frozenset({replace(self, op="ge"), replace(self, op="le")})]  # not "ne": equal


Conjunct = frozenset  # of _Lit
_NEGATED = {"eq": "ne", "ne": "eq", "lt": "gte", "gte": "lt", "lte": "gt", "gt": "lte", "in": "not_in",
            "not_in": "in", "any_in": "none_in", "none_in": "any_in"}
_SYMBOL = {"eq": "=", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "in": "in",
           "not_in": "not in", "any_in": "has any of", "none_in": "has none of"}
_FREE = {"ne": "eq", "gte": "lt", "gt": "lte", "not_in": "in", "none_in": "any_in"}  # free: (base op, false)
_UNRESOLVED = object()
_SEQ = itertools.count()


class _TooComplex(Exception):
    pass


class _Space:
    """The values rules read, and conditions over them in disjunctive normal form (a list of
    conjuncts; an empty list cannot hold, an empty conjunct always holds)."""

    def __init__(self, kinds: dict[str, _Kind], names: dict[str, FactType], pv: PolicyVersion):
        self.kinds, self.names, self.pv = kinds, names, pv  # names: every value rules may read
        self._sat: dict[Conjunct, bool] = {}
        self._forms: dict[tuple, list[Conjunct]] = {}

    # normal forms

    def dnf(self, cond: Condition | None, positive: bool = True, prune: bool = True) -> list[Conjunct]:
        key = (cond, positive, prune)
        if key not in self._forms:
            self._forms[key] = self._dnf(cond, positive, prune)
        return self._forms[key]

    def _dnf(self, cond, positive: bool, prune: bool) -> list[Conjunct]:
        if cond is None:
            return [frozenset()] if positive else []
        if isinstance(cond, NotOf):
            return self.dnf(cond.not_, not positive, prune)
        if isinstance(cond, Compare):
            return [c for c in self._atom(cond, positive) if not prune or self.sat(c)]
        parts = [self.dnf(c, positive, prune) for c in (cond.all if isinstance(cond, AllOf) else cond.any)]
        if isinstance(cond, AllOf) == positive:  # a conjunction
            out = [frozenset()]
            for part in parts:
                out = self.both(out, part, prune)
            return out
        return _capped(list(dict.fromkeys(c for part in parts for c in part)))

    def both(self, left: list[Conjunct], right: list[Conjunct], prune: bool = True) -> list[Conjunct]:
        """The conjunction of two normal forms, without the conjuncts that cannot hold."""
        if len(left) * len(right) > MAX_PAIRS:
            raise _TooComplex
        out: dict[Conjunct, None] = {}
        for a in left:
            for b in right:
                c = a | b
                if c not in out and (not prune or self.sat(c)):
                    out[c] = None
        return _capped(list(out))

    # comparisons

    def _atom(self, cmp: Compare, positive: bool) -> list[Conjunct]:
        op = cmp.op if positive else _NEGATED[cmp.op]
        kind = self.kinds.get(cmp.fact)
        text = f"{cmp.fact} {_SYMBOL[op]} {self._operand_text(cmp.operand)}"
        value = self.resolve(cmp.operand)
        other = cmp.operand.fact if isinstance(cmp.operand, Ref) else None
        name, lits = cmp.fact, None
        if other and kind is not None and kind.shape == "ordered":
            # `a op b + shift` is `d op 0` for the whole number d = a - (b + shift): constraints on
            # the same pair combine (a < b excludes a = b), and the pair is otherwise free
            relation = (cmp.fact, self._operand_text(cmp.operand))
            name = f"{relation[0]} - ({relation[1]})"
            kind = self.kinds.setdefault(name, _Kind("ordered", relation=relation))
            lits = _literals(kind, op, 0)
        elif kind is not None and value is not _UNRESOLVED:
            lits = _literals(kind, op, value)
        if lits is None:  # not modelled: a free proposition
            base = _FREE.get(op, op)
            name = f"{cmp.fact} {_SYMBOL[base]} {self._operand_text(cmp.operand)}"
            return [frozenset({_Lit(name, "false" if op in _FREE else "true", None,
                                    (cmp.fact, other) if other else (cmp.fact,), text, next(_SEQ))})]
        reads = (cmp.fact, other) if other else (cmp.fact,)
        return [frozenset(_Lit(name, o, a, reads, text, next(_SEQ)) for o, a in lits)]

    def resolve(self, operand) -> Any:
        """An operand as a value: a set (tuple), text, bool, or an integer (dates as ordinals)."""
        if isinstance(operand, Ref):
            if operand.fact:
                return _UNRESOLVED
            param = self.pv.parameters.get(operand.param)
            if param is None or param.type in (ParamType.PERCENT, ParamType.PERCENT_TABLE):
                return _UNRESOLVED
            operand = param.value
        if isinstance(operand, dt.date):
            return operand.toordinal()
        return operand

    def _operand_text(self, operand) -> str:
        if not isinstance(operand, Ref):
            return _shown(operand)
        if operand.param:
            return operand.param
        shifts = []
        for unit, shift in (("years", operand.plus_years), ("months", operand.plus_months)):
            if isinstance(shift, Ref):
                param = self.pv.parameters.get(shift.param)
                shift = param.value if param is not None else shift.param
            if shift is not None:
                shifts.append(f" + {shift} {unit}")
        return operand.fact + "".join(shifts)

    # satisfiability

    def sat(self, conj: Conjunct) -> bool:
        if conj not in self._sat:
            self._sat[conj] = self.clash(conj) is None
        return self._sat[conj]

    def clash(self, conj: Conjunct) -> list[_Lit] | None:
        """The literals on the first value whose constraints cannot hold together, if any."""
        by_name: dict[str, list[_Lit]] = {}
        for lit in conj:
            by_name.setdefault(lit.name, []).append(lit)
        for name in sorted(by_name):
            if not _consistent(self.kinds.get(name), by_name[name]):
                return by_name[name]
        return None

    def why(self, cond: Condition | None) -> str:
        """Why a condition that cannot hold cannot: the clashing comparisons of its alternatives."""
        try:
            conjuncts = self.dnf(cond, True, prune=False)
        except _TooComplex:
            return ""
        reasons = []
        for conj in conjuncts:
            lits = self.clash(conj) or []
            reason = " and ".join(dict.fromkeys(lit.text for lit in sorted(lits, key=lambda lit: lit.seq)))
            if reason and reason not in reasons:
                reasons.append(reason)
        shown = "; ".join(reasons[:2]) + ("; …" if len(reasons) > 2 else "")
        return f" ({shown})" if shown else ""

    def example(self, conj: Conjunct, order: list[str]) -> str:
        """A case the conjunct holds for, as `name = value` parts (free propositions as written)."""
        by_name: dict[str, list[_Lit]] = {}
        for lit in conj:
            by_name.setdefault(lit.name, []).append(lit)
        rank = {name: i for i, name in reversed(list(enumerate(order)))}
        names = sorted(by_name, key=lambda n: (rank.get(by_name[n][0].reads[0] if by_name[n][0].reads else n,
                                                        len(rank)), n))
        parts = [_example(self.kinds.get(n), n, by_name[n]) for n in names]
        return ", ".join(parts[:MAX_SHOWN]) + (", …" if len(parts) > MAX_SHOWN else "")


def _capped(conjuncts: list[Conjunct]) -> list[Conjunct]:
    if len(conjuncts) > MAX_CONJUNCTS:
        raise _TooComplex
    return conjuncts


def _literals(kind: _Kind, op: str, value: Any) -> list[tuple[str, Any]] | None:
    """A modelled comparison as (op, arg) literals, all of which must hold; None if not modelled."""
    if kind.shape == "choice":
        if op in ("eq", "ne") and isinstance(value, (str, bool)):
            return [("in" if op == "eq" else "out", frozenset({value}))]
        if op in ("in", "not_in") and isinstance(value, tuple):
            return [("in" if op == "in" else "out", frozenset(value))]
        return None
    if kind.shape == "ordered":
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        return {"eq": [("ge", value), ("le", value)], "ne": [("ne", value)], "lt": [("le", value - 1)],
                "lte": [("le", value)], "gt": [("ge", value + 1)], "gte": [("ge", value)]}.get(op)
    if kind.shape == "list" and op in ("any_in", "none_in") and isinstance(value, tuple):
        return [("any" if op == "any_in" else "none", frozenset(value))]
    return None


def _consistent(kind: _Kind | None, lits: list[_Lit]) -> bool:
    """Whether the constraints on one value can hold together."""
    if kind is None:  # a free proposition: true or false, not both
        return len({lit.op for lit in lits}) < 2
    if kind.shape == "choice":
        return _choices(kind, lits) != set()
    if kind.shape == "ordered":
        low, high, excluded = _interval(kind, lits)
        if low is None or high is None:
            return True  # unbounded on a side, finitely many points excluded
        return low <= high and high - low + 1 > len({x for x in excluded if low <= x <= high})
    allowed = kind.values
    banned = frozenset().union(*(lit.arg for lit in lits if lit.op == "none"))
    return all((lit.arg & allowed) - banned for lit in lits if lit.op == "any")


def _choices(kind: _Kind, lits: list[_Lit]) -> set | None:
    """The values a choice can take under the constraints; None: any text other than the excluded."""
    possible = None if kind.values is None else set(kind.values)
    for lit in lits:
        if lit.op == "in":
            possible = set(lit.arg) if possible is None else possible & lit.arg
    if possible is None:
        return None
    return possible - set().union(*(lit.arg for lit in lits if lit.op == "out"))


def _interval(kind: _Kind, lits: list[_Lit]) -> tuple[int | None, int | None, set[int]]:
    low = max([kind.low] * (kind.low is not None) + [lit.arg for lit in lits if lit.op == "ge"], default=None)
    high = min([kind.high] * (kind.high is not None) + [lit.arg for lit in lits if lit.op == "le"], default=None)
    return low, high, {lit.arg for lit in lits if lit.op == "ne"}


def _example(kind: _Kind | None, name: str, lits: list[_Lit]) -> str:
    """One value satisfying a value's constraints, as `name = value`."""
    if kind is None:
        return lits[0].text
    if kind.shape == "choice":
        possible = _choices(kind, lits)
        if possible is None:
            excluded = sorted({v for lit in lits for v in lit.arg})
            return f"{name} not in [{_listed(excluded, MAX_SHOWN)}]"
        return f"{name} = {_shown(sorted(possible, key=str)[0])}"
    if kind.shape == "ordered" and kind.relation:
        value = _pick(kind, lits)
        return f"{kind.relation[0]} {'<' if value < 0 else '=' if value == 0 else '>'} {kind.relation[1]}"
    if kind.shape == "ordered":
        return f"{name} = {_shown_number(kind, _pick(kind, lits))}"
    banned = frozenset().union(*(lit.arg for lit in lits if lit.op == "none"))
    chosen = {sorted((lit.arg & kind.values) - banned)[0] for lit in lits if lit.op == "any"}
    return f"{name} = {_shown(sorted(chosen))}"


def _pick(kind: _Kind, lits: list[_Lit]) -> int:
    """A number within the constraints: the lowest a comparison allows, else the highest."""
    low, high, excluded = _interval(kind, lits)
    if any(lit.op == "ge" for lit in lits):
        start = low
    elif any(lit.op == "le" for lit in lits):
        start = high
    else:  # only excluded points
        start = max(excluded) + 1
        start = max(start, low) if low is not None else start
        start = min(start, high) if high is not None else start
    for distance in range(len(excluded) + 1):  # one of these is free of exclusions and in range
        for value in (start + distance, start - distance):
            if value not in excluded and (low is None or value >= low) and (high is None or value <= high):
                return value
    return start


def _shown_number(kind: _Kind, value: int) -> str:
    if kind.type is FactType.DATE:
        try:
            return dt.date.fromordinal(value).isoformat()
        except (ValueError, OverflowError):
            return str(value)
    return str(value)


# --- comparisons with values that never occur -----------------------------------

def _out_of_range(space: _Space, rules: list[tuple[Rule, tuple]]) -> list[tuple[tuple, str]]:
    """Comparisons of a choice (enum, yes/no, a used policy's outcome, a derived text) with a value
    it never takes; the loader already refuses such literals for enums, not parameters or the rest."""
    out = []
    for rule, at in rules:
        for cmp, path in walk(rule.when, at + ("when",)):
            kind, value = space.kinds.get(cmp.fact), space.resolve(cmp.operand)
            if kind is None or kind.shape != "choice" or kind.values is None or cmp.op == "any_in":
                continue
            values = value if isinstance(value, tuple) else (value,)
            never = [v for v in values if isinstance(v, (str, bool)) and v not in kind.values]
            if never:
                shown = ", ".join(f"'{_shown(v)}'" for v in never)
                out.append((path + (cmp.op,), f"rule '{rule.id}' compares '{cmp.fact}' with {shown}, "
                                              f"which it never is ({kind.meaning})"))
    return out


# --- rules that never fire, and overlaps ------------------------------------------

@dataclass
class _Group:
    """Rules deciding one thing, in order: (rule, path, conclusion, label), where first hit compares
    conclusions and overlap notes compare labels (outcome codes, derived values)."""
    rules: list[tuple[Rule, tuple, Any, Any]]
    same_blocks: bool  # an earlier rule with the same conclusion that holds decides instead
    catch_all: bool = False  # the last rule is a deliberate catch-all (item lists)


def _lint_groups(space: _Space, groups: list[_Group], where: _Where, out: list[Finding]) -> int:
    """Never-firing rules and overlaps in each group; returns how many rules were not analysed."""
    skipped: set[str] = set()
    for group in groups:
        dead: set[int] = set()
        for i, (rule, at, _, _) in enumerate(group.rules):
            try:
                finding = _never_fires(space, group, i)
            except _TooComplex:
                skipped.add(rule.id)
                dead.add(i)  # unknown: no overlap notes about it either
                continue
            if finding is not None:
                dead.add(i)
                out.append(where.finding(at, *finding))
        for finding in _overlaps(space, group, dead, skipped):
            out.append(where.finding(*finding))
    return len(skipped)


def _never_fires(space: _Space, group: _Group, i: int) -> tuple[str, str] | None:
    rule, _, conclusion, _ = group.rules[i]
    if not space.dnf(rule.when):
        return WARNING, f"rule '{rule.id}' can never fire: its condition cannot hold{space.why(rule.when)}"
    # Earlier rules with the same conclusion stop it deciding only where first hit says so; a
    # derived value lists every rule that gave it, so those do not stop it.
    earlier = [(r, c == conclusion) for r, _, c, _ in group.rules[:i] if c != conclusion or group.same_blocks]
    if _can_decide(space, rule, earlier):
        return None
    if group.catch_all and i == len(group.rules) - 1:
        return NOTE, (f"catch-all rule '{rule.id}' is never reached: earlier rules decide every item "
                      "(kept as a safety net)")
    for k in range(len(earlier) - 1, -1, -1):  # name only the earlier rules it takes
        if not _can_decide(space, rule, earlier[:k] + earlier[k + 1:]):
            del earlier[k]
    named = ", ".join(f"'{r.id}'" for r, _ in earlier[:MAX_SHOWN]) + (", …" if len(earlier) > MAX_SHOWN else "")
    return WARNING, f"rule '{rule.id}' can never fire: whenever it holds, earlier rules decide first ({named})"


def _can_decide(space: _Space, rule: Rule, earlier: list[tuple[Rule, bool]]) -> bool:
    """Whether some case, perhaps with facts missing, has `rule` hold and no earlier rule stop it:
    each earlier rule (rule, same) fails, or, if it has the same conclusion (`same`), is unknown."""
    cases = space.dnf(rule.when)
    for e, same in earlier:
        if not same:
            cases = space.both(cases, space.dnf(e.when, False))
            if not cases:
                return False
    blockers = [(k, frozenset(_reads(k)) | _computed(space, e)) for e, same in earlier if same
                for k in space.dnf(e.when)]
    for case in cases:
        # Only the facts this case needs are known; a same-conclusion rule needing others is unknown.
        known = _reads(case) | _computed(space, rule)
        rest = [case]
        for conj, needed in blockers:
            if needed <= known:
                rest = space.both(rest, [n for lit in conj for n in lit.negated()])
                if not rest:
                    break
        if rest:
            return True
    return False


def _reads(conj: Conjunct) -> set[str]:
    return {name for lit in conj for name in lit.reads}


def _computed(space: _Space, rule: Rule) -> frozenset[str]:
    """Values a rule needs known to hold besides its condition's: its arithmetic and the values its
    because-text names (see compiler)."""
    return frozenset(needs(rule, space.names)) - frozenset(tested(rule.when))


def _overlaps(space: _Space, group: _Group, dead: set[int], skipped: set[str]) -> Iterable[tuple]:
    """Notes for rules with different labels that can both hold when the earlier one decides."""
    rules = group.rules
    for j, (b, at_b, _, label_b) in enumerate(rules):
        if j in dead or b.when is None:
            continue
        for i, (a, _, conclusion_a, label_a) in enumerate(rules[:j]):
            if i in dead or a.when is None or label_a == label_b:
                continue
            try:
                cases = space.both(space.dnf(a.when), space.dnf(b.when))
                for e, _, c, _ in rules[:i]:
                    if cases and c != conclusion_a:
                        cases = space.both(cases, space.dnf(e.when, False))
            except _TooComplex:
                skipped.add(b.id)
                continue
            if cases:
                order = tested(a.when) + tested(b.when)
                example = space.example(min(cases, key=len), order)
                yield at_b, NOTE, f"rules '{a.id}' and '{b.id}' can both match (e.g. {example}); the earlier one wins"
