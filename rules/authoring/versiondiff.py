"""`python -m rules diff POLICY OLD NEW`: what changes from one version of a policy to another,
in words.

Grouped: the version itself (title, status, dates, description, legal sources), outcomes,
flags and outputs, parameters (values in words: money in £, percents, dates, with what each
is), facts, item lists, values the rules work out, other policies used, what parents are told,
and rules, matched by id: added, removed, changed (which parts; conditions in words) and moved
(the first rule that holds decides, so order matters). `--format markdown` prints the same as
Markdown. "No differences" when the two versions say the same.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rules.engine.loader import DEFAULT_POLICY_DIR, PolicyLoadError, load_bundle
from rules.explain.explainer import describe, format_value
from rules.explain.markdown import conclusion
from rules.language import arith
from rules.language.model import About, Fact, ItemList, ParamType, PolicyVersion, Rule, Status, WhoseFact

NO_DIFFERENCES = "No differences."
SHORT = 80  # a change shorter than this reads on one line: `old → new`

Entry = tuple[str, list[str]]  # one difference, and its details (written with `code` spans)


@dataclass
class Section:
    title: str
    entries: list[Entry]


def add_command(commands) -> None:
    cmd = commands.add_parser("diff", help="what changes between two versions of a policy, in words",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("policy")
    cmd.add_argument("old", metavar="OLD", help="a version, or VERSION@rN for an earlier revision of it")
    cmd.add_argument("new", metavar="NEW", help="a version (its current revision), or VERSION@rN")
    cmd.add_argument("--policies", type=Path, default=DEFAULT_POLICY_DIR, help="policy directory (default: %(default)s)")
    cmd.add_argument("--format", choices=["text", "markdown"], default="text", help="output format (default: %(default)s)")
    cmd.set_defaults(run=run)


def run(args) -> int:
    try:
        bundle = load_bundle(args.policies)
    except PolicyLoadError as exc:
        print(f"{exc}\nthe policy files do not load: fix them first (python -m rules validate)", file=sys.stderr)
        return 1
    versions = bundle.policies.get(args.policy)
    if versions is None:
        print(f"unknown policy '{args.policy}' (policies: {', '.join(sorted(bundle.policies))})", file=sys.stderr)
        return 2
    found = {name: _revision(bundle, args.policy, name) for name in (args.old, args.new)}
    unknown = [name for name, pv in found.items() if pv is None]
    if unknown:
        print(f"{args.policy} has no version {', '.join(unknown)} (versions: {', '.join(sorted(versions))}; "
              f"an earlier revision as VERSION@rN)", file=sys.stderr)
        return 2
    old, new = found[args.old], found[args.new]
    assert old is not None and new is not None  # none is unknown
    render = markdown if args.format == "markdown" else text
    print(render(old, new, compare(old, new)))
    return 0


def _names(old: PolicyVersion, new: PolicyVersion) -> tuple[str, str]:
    """The two sides' names: with their revisions when they are revisions of one version."""
    if old.version != new.version:
        return old.version, new.version
    return f"{old.version} revision {old.revision}", f"{new.version} revision {new.revision}"


def _revision(bundle, policy: str, name: str) -> PolicyVersion | None:
    """`VERSION` (its current revision) or `VERSION@rN` (any loaded revision of it)."""
    version, _, number = name.partition("@r")
    current = bundle.policies[policy].get(version)
    if current is None or not number:
        return None if current is None or "@" in name else current.version
    every = [current, *bundle.earlier_revisions(policy, version)]
    return next((c.version for c in every if str(c.version.revision) == number), None)


def compare(old: PolicyVersion, new: PolicyVersion) -> list[Section]:
    """Every difference between two versions, grouped; only the groups that have some."""
    sections = [
        Section("Version", _header(old, new)),
        Section("Outcomes", _texts(old.outcomes, new.outcomes)),
        Section("Flags", _texts(old.flags, new.flags)),
        Section("Outputs", _outputs(old, new)),
        Section("Parameters", _parameters(old, new)),
        Section("Facts", _facts(old.facts, new.facts)),
        Section("Item lists", _lists(old, new)),
        Section("Values the rules work out", _derived(old, new)),
        Section("Other policies used", _uses(old, new)),
        Section("What parents are told", _tell(old, new)),
        Section("Rules", _rules(old, new, old.rules, new.rules, old.outcomes, new.outcomes)),
    ]
    return [s for s in sections if s.entries]


# --- output -------------------------------------------------------------------

def text(old: PolicyVersion, new: PolicyVersion, sections: list[Section]) -> str:
    a, b = _names(old, new)
    lines = [f"{new.policy}: {a} → {b}", f"  {a}: {_summary(old)}", f"  {b}: {_summary(new)}"]
    for section in sections:
        lines += ["", section.title]
        for entry, details in section.entries:
            lines.append(f"  - {entry}")
            lines += [f"      {d}" for d in details]
    if not sections:
        lines += ["", NO_DIFFERENCES]
    return "\n".join(lines).replace("`", "")


def markdown(old: PolicyVersion, new: PolicyVersion, sections: list[Section]) -> str:
    lines = [f"# `{new.policy}`: {' → '.join(_names(old, new))}", "",
             f"- **{old.version}**: {_summary(old)}", f"- **{new.version}**: {_summary(new)}"]
    for section in sections:
        lines += ["", f"## {section.title}", ""]
        for entry, details in section.entries:
            lines.append(f"- {entry}")
            lines += [f"  - {d}" for d in details]
    if not sections:
        lines += ["", NO_DIFFERENCES]
    return "\n".join(lines)


def _summary(pv: PolicyVersion) -> str:
    if pv.status is Status.ENACTED:
        when = f"in force from {_date(pv.effective_from)}" + (f" to {_date(pv.effective_to)}" if pv.effective_to else "")
    else:
        when = "not in force" + (f", effective from {_date(pv.effective_from)}" if pv.effective_from else "")
    return f"{_one(pv.title)} ({pv.status.value}, {when})"


# --- words --------------------------------------------------------------------

def _one(value: Any) -> str:
    """Text on one line (policy texts may span lines)."""
    return " ".join(str(value).split())


def _date(day) -> str:
    return format_value(ParamType.DATE, day) if day else "none"


def _what(description: str) -> str:
    """A description as a parenthesis: "The application fee." -> "the application fee"."""
    text = _one(description).rstrip(".")
    return text[0].lower() + text[1:] if text[:2].istitle() else text


def _change(label: str, old: str, new: str) -> list[str]:
    """`label: old → new` on one line when short, else what it was and what it is now."""
    if len(old) + len(new) <= SHORT:
        return [f"{label}: {old} → {new}"]
    return [f"{label} was: {old}", f"{label} now: {new}"]


def _members(label: str, old, new) -> list[str]:
    """A change of a list of names or texts: what it adds and what it removes."""
    added, removed = [x for x in new if x not in old], [x for x in old if x not in new]
    lines = [f"{label} added: {'; '.join(added)}"] * bool(added) + [f"{label} removed: {'; '.join(removed)}"] * bool(removed)
    if not lines and list(old) != list(new):
        lines = [f"{label}: the same, in a new order"]
    return lines


def _entries(lines: list[str]) -> list[Entry]:
    return [(line, []) for line in lines]


def _cites(cites) -> list[str]:
    return [_one(c.text()) for c in cites]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _whose(about: About) -> str:
    if about is None:
        return "not a parent's"
    if isinstance(about, WhoseFact):
        return f"the parent `{about.fact}` names"
    return about.replace("_", " ")


# --- the version ----------------------------------------------------------------

def _header(old: PolicyVersion, new: PolicyVersion) -> list[Entry]:
    lines = []
    if old.revision != new.revision:
        lines.append(f"revision: {old.revision} → {new.revision}")
        lines += [f"correction (revision {c.revision}): {_one(c.change)} [{'; '.join(x.text() for x in c.cites)}]"
                  for c in new.corrections if c.revision > old.revision]
    if old.title != new.title:
        lines += _change("title", _one(old.title), _one(new.title))
    if old.status != new.status:
        lines.append(f"status: {old.status.value} → {new.status.value}")
    if old.effective_from != new.effective_from:
        lines.append(f"effective from: {_date(old.effective_from)} → {_date(new.effective_from)}")
    if old.effective_to != new.effective_to:
        lines.append(f"effective to: {_date(old.effective_to)} → {_date(new.effective_to)}")
    if old.as_at_fact != new.as_at_fact:
        lines.append(f"date fact that picks the version: {old.as_at_fact or 'none'} → {new.as_at_fact or 'none'}")
    if old.description != new.description:
        lines += _change("description", _one(old.description), _one(new.description))
    lines += _members("legal sources", _cites(old.cites), _cites(new.cites))
    return _entries(lines)


def _texts(old: dict[str, str], new: dict[str, str], prefix: str = "") -> list[Entry]:
    """Codes with a meaning (outcomes, flags), added, removed or reworded."""
    out: list[Entry] = [(f"added {prefix}`{code}`: {_one(text)}", []) for code, text in new.items() if code not in old]
    out += [(f"removed {prefix}`{code}`: {_one(text)}", []) for code, text in old.items() if code not in new]
    out += [(f"changed {prefix}`{code}`", _change("meaning", _one(old[code]), _one(new[code])))
            for code in old if code in new and old[code] != new[code]]
    return out


def _outputs(old: PolicyVersion, new: PolicyVersion) -> list[Entry]:
    a, b = old.outputs, new.outputs
    out: list[Entry] = [(f"added `{name}` ({spec.type.value}): {_one(spec.description)}", []) for name, spec in b.items() if name not in a]
    out += [(f"removed `{name}`", []) for name in a if name not in b]
    for name in (n for n in a if n in b and a[n] != b[n]):
        details = [f"type: {a[name].type.value} → {b[name].type.value}"] * (a[name].type != b[name].type)
        if a[name].description != b[name].description:
            details += _change("meaning", _one(a[name].description), _one(b[name].description))
        out.append((f"changed `{name}`", details))
    return out


def _value(p) -> str:
    return format_value(p.type, p.value)


def _parameters(old: PolicyVersion, new: PolicyVersion) -> list[Entry]:
    a, b = old.parameters, new.parameters
    out: list[Entry] = [(f"added `{name}` ({_what(p.description)}): {_value(p)}", []) for name, p in b.items() if name not in a]
    out += [(f"removed `{name}` ({_what(p.description)}): {_value(p)}", []) for name, p in a.items() if name not in b]
    for name in (n for n in a if n in b and a[n] != b[n]):
        was, now = a[name], b[name]
        entry, details = f"changed `{name}` ({_what(now.description)})", []
        if was.type is now.type is ParamType.STRING_LIST:
            details += _members("values", was.value, now.value)
        elif was.value != now.value or was.type != now.type:
            entry += f": {_value(was)} → {_value(now)}"
        if was.type != now.type:
            details.append(f"type: {was.type.value} → {now.type.value}")
        if was.description != now.description:
            details += _change("description", _one(was.description), _one(now.description))
        for part in ("rows", "columns"):
            if getattr(was, part) != getattr(now, part):
                details += _change(part, _one(getattr(was, part)), _one(getattr(now, part)))
        details += _members("cites", _cites(was.cites), _cites(now.cites))
        out.append((entry, details))
    return out


def _fact_words(f: Fact) -> str:
    kind = f.type.value + (f", one of {', '.join(f.allowed)}" if f.allowed else "")
    kind += (", sensitive" + (f" ({_whose(f.about)})" if f.about else "")) if f.sensitive else ""
    return f"{kind}: {_one(f.description)}"


def _facts(old: tuple[Fact, ...], new: tuple[Fact, ...], prefix: str = "") -> list[Entry]:
    a, b = {f.name: f for f in old}, {f.name: f for f in new}
    out: list[Entry] = [(f"added `{prefix}{name}`: {_fact_words(f)}", []) for name, f in b.items() if name not in a]
    out += [(f"removed `{prefix}{name}`: {_fact_words(f)}", []) for name, f in a.items() if name not in b]
    for name in (n for n in a if n in b and a[n] != b[n]):
        was, now = a[name], b[name]
        details = [f"type: {was.type.value} → {now.type.value}"] * (was.type != now.type)
        details += _members("allowed values", was.allowed, now.allowed)
        details += [f"sensitive: {_yes(was.sensitive)} → {_yes(now.sensitive)}"] * (was.sensitive != now.sensitive)
        details += [f"whose: {_whose(was.about)} → {_whose(now.about)}"] * (was.about != now.about)
        for part in ("description", "question"):
            if getattr(was, part) != getattr(now, part):
                details += _change(part, _one(getattr(was, part)) or "none", _one(getattr(now, part)) or "none")
        if was.labels != now.labels:
            details += [f"label of `{v}`: {was.labels.get(v, 'none')} → {now.labels.get(v, 'none')}"
                        for v in dict.fromkeys([*was.labels, *now.labels]) if was.labels.get(v) != now.labels.get(v)]
        out.append((f"changed `{prefix}{name}`", details))
    return out


def _lists(old: PolicyVersion, new: PolicyVersion) -> list[Entry]:
    a, b = {lst.name: lst for lst in old.lists}, {lst.name: lst for lst in new.lists}
    out: list[Entry] = [(f"added `{name}`: {_one(lst.description)}", [f"item facts: {', '.join(f.name for f in lst.facts)}",
                                                          f"item outcomes: {', '.join(lst.outcomes)}"])
           for name, lst in b.items() if name not in a]
    out += [(f"removed `{name}`: {_one(lst.description)}", []) for name, lst in a.items() if name not in b]
    for name in (n for n in a if n in b and a[n] != b[n]):
        was, now = a[name], b[name]
        details = _list_details(was, now)
        if details:
            out.append((f"changed `{name}`", details))
        out += _facts(was.facts, now.facts, prefix=f"{name}.")
        out += _texts(was.outcomes, now.outcomes, prefix=f"`{name}` item outcome ")
        out += _rules(old, new, was.rules, now.rules, was.outcomes, now.outcomes, prefix=f"`{name}` item rule ")
    return out


def _list_details(was: ItemList, now: ItemList) -> list[str]:
    details = []
    for part in ("description", "question"):
        if getattr(was, part) != getattr(now, part):
            details += _change(part, _one(getattr(was, part)) or "none", _one(getattr(now, part)) or "none")
    details += [f"sensitive: {_yes(was.sensitive)} → {_yes(now.sensitive)}"] * (was.sensitive != now.sensitive)
    details += [f"whose: {_whose(was.about)} → {_whose(now.about)}"] * (was.about != now.about)
    return details


def _derived(old: PolicyVersion, new: PolicyVersion) -> list[Entry]:
    a, b = {d.name: d for d in old.derived}, {d.name: d for d in new.derived}

    def default(d) -> str:
        return "none" if d.default is None else format_value(d.type, d.default)
    out: list[Entry] = [(f"added `{name}` ({d.type.value}, default {default(d)}): {_one(d.description)}", [])
           for name, d in b.items() if name not in a]
    out += [(f"removed `{name}`: {_one(d.description)}", []) for name, d in a.items() if name not in b]
    for name in (n for n in a if n in b and a[n] != b[n]):
        was, now = a[name], b[name]
        details = [f"type: {was.type.value} → {now.type.value}"] * (was.type != now.type)
        details += [f"default: {default(was)} → {default(now)}"] * (was.default != now.default)
        if was.description != now.description:
            details += _change("description", _one(was.description), _one(now.description))
        out.append((f"changed `{name}`", details))
    return out


def _uses(old: PolicyVersion, new: PolicyVersion) -> list[Entry]:
    a, b = {u.as_: u for u in old.uses}, {u.as_: u for u in new.uses}

    def use(u) -> str:
        version = {"in_force": "the version in force", "latest_enacted": "its latest enacted version"}.get(u.version, f"version {u.version}")
        return f"`{u.policy}` ({version}) as `{u.as_}`"
    out: list[Entry] = [(f"added {use(u)}", [f"sets {k} = {v}" for k, v in u.set.items()]) for name, u in b.items() if name not in a]
    out += [(f"removed {use(u)}", []) for name, u in a.items() if name not in b]
    for name in (n for n in a if n in b and a[n] != b[n]):
        was, now = a[name], b[name]
        details = [f"policy: {was.policy} → {now.policy}"] * (was.policy != now.policy)
        details += [f"version: {was.version} → {now.version}"] * (was.version != now.version)
        details += [f"sets {k}: {was.set.get(k, 'nothing')} → {now.set.get(k, 'nothing')}"
                    for k in dict.fromkeys([*was.set, *now.set]) if was.set.get(k) != now.set.get(k)]
        details += [f"about the parent: {was.subject or 'the same'} → {now.subject or 'the same'}"] * (was.subject != now.subject)
        out.append((f"changed `{name}`", details))
    return out


def _wording(label: str, old: dict, new: dict) -> list[Entry]:
    """Per-party wording (`tell`): one entry per party whose text changed."""
    out = []
    for party in dict.fromkeys([*old, *new]):
        was, now = old.get(party), new.get(party)
        if was != now:
            lines = ([f"was: {_one(was)}"] if was else []) + ([f"now: {_one(now)}"] if now else [])
            verb = "added" if was is None else "removed" if now is None else "changed"
            out.append((f"{verb}: {label} for the {party.replace('_', ' ')}", lines))
    return out


def _tell(old: PolicyVersion, new: PolicyVersion) -> list[Entry]:
    a, b = old.tell, new.tell
    out = []
    for code in dict.fromkeys([*a.outcomes, *b.outcomes]):
        out += _wording(f"what `{code}` says", a.outcomes.get(code, {}), b.outcomes.get(code, {}))
    out += _wording("how to ask for a review", a.review, b.review)
    if a.counterfactuals != b.counterfactuals:
        out.append((f"parents told what of theirs would change it: {_yes(a.counterfactuals)} → {_yes(b.counterfactuals)}", []))
    return out


# --- rules ----------------------------------------------------------------------

def _rules(old_pv: PolicyVersion, new_pv: PolicyVersion, old: tuple[Rule, ...], new: tuple[Rule, ...],
           old_outcomes: dict[str, str], new_outcomes: dict[str, str], prefix: str = "") -> list[Entry]:
    a, b = {r.id: r for r in old}, {r.id: r for r in new}
    new_ids = [r.id for r in new]
    out: list[Entry] = [(f"added {prefix}`{r.id}`, {_place(new_ids, r.id)}", _rule_words(new_pv, r, new_outcomes))
           for r in new if r.id not in a]
    out += [(f"removed {prefix}`{r.id}`", _rule_words(old_pv, r, old_outcomes)) for r in old if r.id not in b]
    for rule in (r for r in new if r.id in a and a[r.id] != r):
        details = _rule_changes(old_pv, new_pv, a[rule.id], rule, old_outcomes, new_outcomes)
        out.append((f"changed {prefix}`{rule.id}`", details))
    old_ids = [r.id for r in old]
    for rule_id in _moved([i for i in old_ids if i in b], [i for i in new_ids if i in a]):
        out.append((f"moved {prefix}`{rule_id}`: now {_place(new_ids, rule_id)} (was {_place(old_ids, rule_id)})", []))
    return out


def _place(ids: list[str], rule_id: str) -> str:
    """Where a rule is tried: before the next one, or last."""
    at = ids.index(rule_id)
    if at + 1 < len(ids):
        return f"tried before `{ids[at + 1]}`"
    return f"tried last, after `{ids[at - 1]}`" if at else "the only rule"


def _moved(old: list[str], new: list[str]) -> list[str]:
    """The rules (in both, in their new order) that are not in the longest run of rules keeping
    their relative order: the fewest that moved."""
    lengths = [[0] * (len(new) + 1) for _ in range(len(old) + 1)]
    for i in range(len(old) - 1, -1, -1):
        for j in range(len(new) - 1, -1, -1):
            lengths[i][j] = lengths[i + 1][j + 1] + 1 if old[i] == new[j] else max(lengths[i + 1][j], lengths[i][j + 1])
    kept, i, j = set(), 0, 0
    while i < len(old) and j < len(new):
        if old[i] == new[j]:
            kept.add(old[i])
            i, j = i + 1, j + 1
        elif lengths[i + 1][j] >= lengths[i][j + 1]:
            i += 1
        else:
            j += 1
    return [rule_id for rule_id in new if rule_id not in kept]


def _condition(pv: PolicyVersion, rule: Rule) -> str:
    return describe(pv, rule.when) if rule.when is not None else "always"


def _amount(expr) -> str:
    return "none" if expr is None else arith.describe(expr)


def _rule_words(pv: PolicyVersion, rule: Rule, outcomes: dict[str, str]) -> list[str]:
    lines = [f"when: {_condition(pv, rule)}", f"concludes: {conclusion(pv, rule, outcomes)}"]
    lines += [f"amount: {_amount(rule.amount)}"] * (rule.amount is not None)
    lines += [f"`{name}`: {arith.describe(expr)}" for name, expr in rule.outputs.items()]
    return lines + [f"because: {_one(rule.because)}"]


def _rule_changes(old_pv: PolicyVersion, new_pv: PolicyVersion, was: Rule, now: Rule,
                  old_outcomes: dict[str, str], new_outcomes: dict[str, str]) -> list[str]:
    """Which parts of a rule changed, each in words."""
    details = []
    if was.when != now.when:
        details += _change("condition", _condition(old_pv, was), _condition(new_pv, now))
    if (was.outcome, was.derive, was.flag) != (now.outcome, now.derive, now.flag):
        details += _change("concludes", conclusion(old_pv, was, old_outcomes), conclusion(new_pv, now, new_outcomes))
    if was.amount != now.amount:
        details += _change("amount", _amount(was.amount), _amount(now.amount))
    for name in dict.fromkeys([*was.outputs, *now.outputs]):
        if was.outputs.get(name) != now.outputs.get(name):
            details += _change(f"`{name}`", _amount(was.outputs.get(name)), _amount(now.outputs.get(name)))
    if was.because != now.because:
        details += _change("because", _one(was.because), _one(now.because))
    if was.actions != now.actions:
        details += _change("actions", "; ".join(map(_one, was.actions)) or "none", "; ".join(map(_one, now.actions)) or "none")
    for party in dict.fromkeys([*was.tell, *now.tell]):
        if was.tell.get(party) != now.tell.get(party):
            details += _change(f"told to the {party.replace('_', ' ')}", _one(was.tell.get(party) or "nothing"),
                               _one(now.tell.get(party) or "nothing"))
    details += _members("cites", _cites(was.cites), _cites(now.cites))
    return details
