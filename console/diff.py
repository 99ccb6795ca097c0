"""What differs between two versions (or two revisions of one) of a policy, from their GetPolicy
responses alone: the console holds no engine, so it compares what the service says about each.

Each part of a version (parameters, facts, rules, ...) is a set of named items, and each item a few
aspects in words (a parameter's value and citations, a rule's condition and reason, ...). An item is
Added, Removed or Changed, and a changed item lists the aspects that differ, old beside new.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter

from google.protobuf import json_format

from cms_policy.v1 import policy_pb2 as pb

from .formatting import long_date, pounds, shown

ADDED, REMOVED, CHANGED = "Added", "Removed", "Changed"
ORDER = "The order they are tried in"


@dataclass(frozen=True)
class Aspect:
    label: str
    old: str
    new: str

    @property
    def changed(self) -> bool:
        return self.old != self.new


@dataclass(frozen=True)
class Item:
    name: str
    change: str  # ADDED, REMOVED or CHANGED
    aspects: list[Aspect]  # a changed item's differing aspects; an added or removed one's all


@dataclass(frozen=True)
class Section:
    key: str  # for the page's ids
    title: str
    items: list[Item]
    unchanged: int  # items in both and the same


# --- words for each kind of item ----------------------------------------------------------

def citations(cites: Iterable[pb.Citation]) -> str:
    return "; ".join(" ".join(filter(None, (c.source, c.provision))) + (f" ({c.url})" if c.url else "") for c in cites)


def parameter_value(parameter: pb.Parameter) -> str:
    """A parameter's value as the legislation states it: money in pounds, percentages with %."""
    value = json_format.MessageToDict(parameter.value)
    if parameter.type == "money" and isinstance(value, int | float):
        return pounds(int(value))
    if parameter.type == "percent":
        return f"{shown(value)}%"
    if parameter.type == "percent_table" and isinstance(value, list):
        return " / ".join(", ".join(f"{shown(cell)}%" for cell in row) for row in value)
    if parameter.type == "date" and isinstance(value, str):
        return long_date(value)
    return shown(value)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _parameter(p: pb.Parameter) -> dict[str, str]:
    return {"Value": parameter_value(p), "Type": p.type, "Description": p.description, "Citations": citations(p.citations)}


def _fact(f: pb.FactSpec) -> dict[str, str]:
    return {"Question": f.question, "Type": f.type, "Allowed values": ", ".join(f.allowed), "Sensitive": _yes(f.sensitive),
            "Whose": f.about, "Description": f.description}


def _derived(d: pb.DerivedSpec) -> dict[str, str]:
    return {"Type": d.type, "Description": d.description,
            "Default": shown(d.default) if d.HasField("default") else ""}


def _rule(r: pb.RuleSpec) -> dict[str, str]:
    return {"Concludes": r.concludes, "When": r.when or "always", "Because": r.because, "Citations": citations(r.citations),
            "Actions": "; ".join(r.actions), "Amount": r.amount,
            "Outputs": "; ".join(f"{k}: {v}" for k, v in sorted(r.outputs.items())), "Computes": r.computes}


def _code(c: pb.Code) -> dict[str, str]:
    return {"Meaning": c.description}


def _uses(u: pb.UsesSpec) -> dict[str, str]:
    return {"Version": u.version, "Its results as": getattr(u, "as"),
            "Facts it fixes": shown(json_format.MessageToDict(u.set)) if u.set.fields else ""}


def _used(u: pb.UsesSpec) -> str:
    return f"{u.policy} as {getattr(u, 'as')}"


def _correction(c: pb.Correction) -> dict[str, str]:
    return {"Date": long_date(c.date), "Change": c.change, "Citations": citations(c.citations)}


def _version(d: pb.GetPolicyResponse) -> dict[str, str]:
    ref = d.ref
    return {"Title": ref.title, "Status": ref.status, "Effective from": long_date(ref.effective_from) or "no date",
            "Effective to": long_date(ref.effective_to) or "open-ended", "Revision": str(ref.revision),
            "Content hash": ref.content_hash[:12], "Description": d.description, "Citations": citations(d.citations),
            "Date the facts are read at": d.as_at_fact}


def _list(lst: pb.ItemListSpec) -> dict[str, str]:
    return {"Description": lst.description, "Question": lst.question, "Sensitive": _yes(lst.sensitive), "Whose": lst.about}


# --- comparing ----------------------------------------------------------------------------

def _section(key: str, title: str, old: dict[str, dict[str, str]], new: dict[str, dict[str, str]]) -> Section:
    """Items by name in `old` and `new` (each its aspects in words), compared."""
    items: list[Item] = []
    unchanged = 0
    for name in [*old, *(n for n in new if n not in old)]:
        if name not in new:
            items.append(Item(name, REMOVED, [Aspect(k, v, "") for k, v in old[name].items() if v]))
        elif name not in old:
            items.append(Item(name, ADDED, [Aspect(k, "", v) for k, v in new[name].items() if v]))
        else:
            differing = [Aspect(k, old[name].get(k, ""), new[name].get(k, ""))
                         for k in dict.fromkeys([*old[name], *new[name]])]
            differing = [a for a in differing if a.changed]
            if differing:
                items.append(Item(name, CHANGED, differing))
            else:
                unchanged += 1
    return Section(key, title, items, unchanged)


def _by_name(entries: Iterable, name: Callable, words: Callable) -> dict[str, dict[str, str]]:
    return {name(e): words(e) for e in entries}


def _rules(rules: Iterable[pb.RuleSpec], other: Iterable[pb.RuleSpec]) -> dict[str, dict[str, str]]:
    """Rules by id, and one more item: the order those also in `other` are tried in (the first
    that holds decides, so a move is a change even when no rule's words are)."""
    rules = list(rules)
    others = {r.id for r in other}
    found = {r.id: _rule(r) for r in rules}
    if common := [r.id for r in rules if r.id in others]:
        found[ORDER] = {"Order": ", ".join(common)}
    return found


def _corrections(d: pb.GetPolicyResponse) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for c in d.corrections:
        number = 1 + sum(1 for name in found if name.startswith(f"Revision {c.revision},"))
        found[f"Revision {c.revision}, correction {number}"] = _correction(c)
    return found


def compare(a: pb.GetPolicyResponse, b: pb.GetPolicyResponse) -> list[Section]:
    """Every part of the two versions, compared (a part with no difference has no items)."""
    name, code = attrgetter("name"), attrgetter("code")
    sections = [
        _section("version", "The version", {"This version": _version(a)}, {"This version": _version(b)}),
        _section("outcomes", "Outcomes", _by_name(a.outcomes, code, _code), _by_name(b.outcomes, code, _code)),
        _section("outputs", "Outputs", _by_name(a.outputs, code, _code), _by_name(b.outputs, code, _code)),
        _section("flags", "Flags", _by_name(a.flags, code, _code), _by_name(b.flags, code, _code)),
        _section("parameters", "Parameters", _by_name(a.parameters, name, _parameter), _by_name(b.parameters, name, _parameter)),
        _section("facts", "Facts", _by_name(a.facts, name, _fact), _by_name(b.facts, name, _fact)),
        _section("derived", "Derived values", _by_name(a.derived, name, _derived), _by_name(b.derived, name, _derived)),
        _section("rules", "Rules", _rules(a.rules, b.rules), _rules(b.rules, a.rules)),
        _section("lists", "Item lists", _by_name(a.lists, name, _list), _by_name(b.lists, name, _list)),
    ]
    old_lists, new_lists = {lst.name: lst for lst in a.lists}, {lst.name: lst for lst in b.lists}
    for list_name in [*old_lists, *(n for n in new_lists if n not in old_lists)]:
        old_list, new_list = old_lists.get(list_name, pb.ItemListSpec()), new_lists.get(list_name, pb.ItemListSpec())
        sections += [
            _section(f"list-{list_name}-facts", f"Facts of each item of {list_name}",
                     _by_name(old_list.facts, name, _fact), _by_name(new_list.facts, name, _fact)),
            _section(f"list-{list_name}-outcomes", f"Outcomes of each item of {list_name}",
                     _by_name(old_list.outcomes, code, _code), _by_name(new_list.outcomes, code, _code)),
            _section(f"list-{list_name}-rules", f"Rules for each item of {list_name}",
                     _rules(old_list.rules, new_list.rules), _rules(new_list.rules, old_list.rules)),
        ]
    sections += [
        _section("uses", "Policies it uses", _by_name(a.uses, _used, _uses), _by_name(b.uses, _used, _uses)),
        _section("corrections", "Corrections", _corrections(a), _corrections(b)),
    ]
    return sections
