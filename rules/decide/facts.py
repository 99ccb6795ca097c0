"""Checking the request's facts: every fact is parsed by the version that reads it (or checked by
the version that would), lists item by item, and anything unknown or malformed refused at once."""
from __future__ import annotations

from typing import Any

from rules.engine.compiler import CompiledPolicy
from rules.engine.decision import DecisionRequest, MissingFact, RequestError, Violation
from rules.engine.loader import Bundle
from rules.language import values
from rules.language.model import Fact, ItemList


def parse_facts(bundle: Bundle, compiled: CompiledPolicy, request: DecisionRequest, fixed: dict[str, Any]
                ) -> tuple[dict[str, Any], dict[str, list[dict]], list[str]]:
    """This version's facts and lists, parsed; facts of other versions are ignored (and
    listed), facts of the policies it uses are left to those policies. Every fact is checked,
    used or not, so that each version accepts or refuses a request alike (and nothing
    unchecked is recorded)."""
    pv = compiled.version
    own, own_lists = compiled.facts, compiled.item_lists
    accepted, accepted_lists = bundle.accepted(pv.policy)
    known = bundle.request_names(pv.policy)
    passed_on = set().union(*(bundle.request_names(u.policy) for u in pv.uses))
    if len(request.facts) > values.MAX_FACTS:
        raise RequestError([Violation(field="facts", description=f"more than {values.MAX_FACTS} facts")])
    facts = {**request.facts, **fixed}
    given: dict[str, Any] = {}
    lists: dict[str, list[dict]] = {}
    ignored: list[str] = []
    problems: list[Violation] = []
    for name in sorted(facts):
        raw = facts[name]
        if name not in known:
            problems.append(Violation(field=values.field("facts", name),
                                      description=f"unknown fact for {request.policy}"))
        elif raw is None:
            continue  # null means "not known", the same as leaving it out
        elif name in own:
            try:
                given[name] = values.parse(own[name], raw)
            except values.FactValueError as exc:
                problems.append(Violation(field=values.field("facts", name), description=str(exc)))
        elif name in own_lists:
            lists[name] = parse_items(name, own_lists[name], accepted_lists[name], raw, ignored, problems)
        else:  # a fact of another version, or of a policy this one uses (which reads it)
            if name in accepted_lists and name not in accepted:
                parse_items(name, None, accepted_lists[name], raw, [], problems)
            elif accepted.get(name) is not None:
                try:
                    values.parse(accepted[name], raw)
                except values.FactValueError as exc:
                    problems.append(Violation(field=values.field("facts", name), description=str(exc)))
            if name not in passed_on:
                ignored.append(name)
    if problems:
        raise RequestError(problems)
    return given, lists, sorted(ignored)


def parse_items(name: str, spec: ItemList | None, any_version: dict[str, Fact], raw: Any, ignored: list[str],
                problems: list[Violation]) -> list[dict]:
    """The items of list `name` parsed by this version's `spec` (None: another version's list,
    only checked); item facts only other versions read (`any_version`) are checked and ignored."""
    own = {f.name: f for f in spec.facts} if spec is not None else {}
    if not isinstance(raw, (list, tuple)):
        problems.append(Violation(field=f"facts.{name}", description="expected a list of items"))
        return []
    if len(raw) > values.MAX_LIST:
        problems.append(Violation(field=f"facts.{name}", description=f"list longer than {values.MAX_LIST} items"))
        return []
    items = []
    for n, item in enumerate(raw):
        at = f"facts.{name}[{n}]"
        if not isinstance(item, dict):
            problems.append(Violation(field=at, description="expected an item: a mapping of its facts"))
            continue
        if len(item) > values.MAX_FACTS:
            problems.append(Violation(field=at, description=f"more than {values.MAX_FACTS} facts"))
            continue
        parsed = {}
        for key in sorted(item):
            fact, field = own.get(key) or any_version.get(key), values.field(at, key)
            if key not in own and key not in any_version:
                problems.append(Violation(field=field, description=f"unknown fact for an item of {name}"))
            elif item[key] is None:
                continue
            else:
                try:
                    value = values.parse(fact, item[key]) if fact is not None else None
                except values.FactValueError as exc:
                    problems.append(Violation(field=field, description=str(exc)))
                    continue
                if key in own:
                    parsed[key] = value
                elif f"{name}[].{key}" not in ignored:
                    ignored.append(f"{name}[].{key}")
        items.append(parsed)
    return items


def specs(bundle: Bundle, compiled: CompiledPolicy) -> dict[str, Fact]:
    """The request's facts this version reads, then those of the policies it uses (not fixed by it)."""
    out = {f.name: f for f in compiled.version.facts}
    for use in compiled.version.uses:
        for name, spec in bundle.fact_schema(use.policy).items():
            if name not in use.set:
                out.setdefault(name, spec)
    return out


def fact_missing(compiled: CompiledPolicy, name: str) -> MissingFact:
    """A fact of this version the request did not give, as asked for."""
    fact = next(f for f in compiled.version.facts if f.name == name)
    return MissingFact(name=fact.name, description=fact.description, question=fact.question)
