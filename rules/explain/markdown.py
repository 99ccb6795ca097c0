"""A policy version as a Markdown document for people: its law, parameters, facts, each rule in
plain English, and its golden cases as worked examples (`GetPolicy` with `markdown`, and
`python -m rules doc`, rules/authoring/doc.py). The output is GitHub-flavoured Markdown and depends
only on the version and the example files, never on when it is made.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any, cast

import yaml

from rules.engine.compiler import CompiledPolicy
from rules.explain.explainer import describe, format_value, money
from rules.language import arith
from rules.language.model import (
    Citation,
    Fact,
    FactType,
    ItemList,
    Parameter,
    ParamType,
    PolicyVersion,
    Rule,
    Status,
    Uses,
)

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # golden files are large: libyaml when there is one
NO_EXAMPLES = "No worked examples are installed for this version."
RULE_ORDER = ("Rules are tried in the order below. The first outcome rule whose condition holds decides the "
              "outcome, and the first rule for each derived value that holds gives that value (otherwise its "
              "default); every flag rule that holds raises its flag. A condition on a missing fact is unknown: "
              "if such a rule comes before the deciding one and would conclude differently, the outcome is "
              "`UNDETERMINED`.")


def document(compiled: CompiledPolicy, examples_dir: Path | None = None) -> str:
    """The version's document; its worked examples are the golden cases under `examples_dir`
    (`<policy>/<version>/*.yaml`), if given."""
    pv = compiled.version
    sections = [_header(compiled), _sources(pv), _corrections(pv), _outcomes(pv), _parameters(pv), _facts_section(pv),
                _lists(pv), _uses(pv), _rules(pv), _examples(compiled, examples_dir)]
    return "\n\n".join(s for s in sections if s) + "\n"


# --- text helpers -------------------------------------------------------------

def _inline(text: Any) -> str:
    """One line of text (policy texts may span lines)."""
    return " ".join(str(text).split())


def _cell(text: Any) -> str:
    return _inline(text).replace("|", "\\|")


def _table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _citation(c: Citation) -> str:
    text = _inline(c.text())
    if not c.url:
        return text
    label = text.replace("[", "\\[").replace("]", "\\]")
    return f"[{label}]({c.url})"


def _cites(cites: tuple[Citation, ...]) -> str:
    return "; ".join(_citation(c) for c in cites)


def _fenced(text: str) -> str:
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{fence}text\n{text}\n{fence}"


def _date(day: dt.date | None) -> str:
    return format_value(ParamType.DATE, day)


# --- the version --------------------------------------------------------------

def _header(compiled: CompiledPolicy) -> str:
    pv = compiled.version
    if pv.status is Status.ENACTED:
        when = f"in force from {_date(pv.effective_from)}" + (f" to {_date(pv.effective_to)}" if pv.effective_to else "")
    else:
        when = "not in force" + (f" (effective from {_date(pv.effective_from)})" if pv.effective_from else "")
    lines = [f"# {_inline(pv.title)}", "",
             f"Policy `{pv.policy}`, version `{pv.version}` · {pv.status.value} · {when} · "
             f"content hash `{compiled.content_hash}`", "", _inline(pv.description)]
    if pv.as_at_fact:
        lines += ["", f"When a request gives neither a version nor an as-at date, the version in force on "
                      f"`{pv.as_at_fact}` decides it."]
    return "\n".join(lines)


def _sources(pv: PolicyVersion) -> str:
    return "## Legal sources\n\n" + "\n".join(f"- {_citation(c)}" for c in pv.cites)


def _corrections(pv: PolicyVersion) -> str:
    """What each revision after the first corrected, and the law behind it ("" if none)."""
    if not pv.corrections:
        return ""
    rows = [[c.revision, c.date.isoformat(), c.change, "; ".join(_citation(x) for x in c.cites)] for c in pv.corrections]
    return f"## Corrections (this is revision {pv.revision})\n\n" + _table(["Revision", "Date", "What changed", "Law"], rows)


def _outcomes(pv: PolicyVersion) -> str:
    rows = [[f"`{code}`", text] for code, text in pv.outcomes.items()]
    rows.append(["`UNDETERMINED`", "built in: the facts given are not enough to decide; the decision lists "
                                   "the facts needed"])
    parts = ["## Outcomes", _table(["Outcome", "Meaning"], rows)]
    if pv.flags:
        parts += ["### Flags for the caseworker",
                  _table(["Flag", "Meaning"], [[f"`{code}`", text] for code, text in pv.flags.items()])]
    if pv.outputs:
        parts += ["### Values an outcome states",
                  _table(["Output", "Type", "Meaning"],
                         [[f"`{name}`", o.type.value, o.description] for name, o in pv.outputs.items()])]
    return "\n\n".join(parts)


def _parameters(pv: PolicyVersion) -> str:
    if not pv.parameters:
        return "## Parameters\n\nThis version has no parameters."
    rows, tables = [], []
    for name, p in pv.parameters.items():
        if p.type is ParamType.PERCENT_TABLE:
            rows.append([f"`{name}`", "the table below", p.description, _cites(p.cites)])
            tables.append(_percent_table(name, p))
        else:
            rows.append([f"`{name}`", format_value(p.type, p.value), p.description, _cites(p.cites)])
    return "\n\n".join(["## Parameters", _table(["Parameter", "Value", "Meaning", "Citations"], rows), *tables])


def _percent_table(name: str, p: Parameter) -> str:
    said = [f"rows: {_inline(p.rows)}"] * bool(p.rows) + [f"columns: {_inline(p.columns)}"] * bool(p.columns)
    table = cast("tuple[tuple[str, ...], ...]", p.value)  # a percent_table's rows of percents (validated)
    head = _labels(p.columns, len(table[0]))
    cells = [[f"{v}%" for v in row] for row in table]
    if len(table) > 1:  # a first column naming the rows
        head = [""] + head
        cells = [[label, *row] for label, row in zip(_labels(p.rows, len(table)), cells)]
    return f"**`{name}`**" + (f" ({'; '.join(said)})" if said else "") + ":\n\n" + _table(head, cells)


def _labels(text: str, count: int) -> list[str]:
    """Row or column labels from a description like "qualifying children 1, 2, 3 or more";
    otherwise the index a `lookup` uses (from 0)."""
    parts = [p.strip() for p in text.split(",")]
    return parts if text and len(parts) == count else [str(i) for i in range(count)]


def _facts_section(pv: PolicyVersion) -> str:
    parts = ["## Facts", _facts(pv.facts) if pv.facts else "This version asks for no facts of its own."]
    if pv.derived:
        rows = [[f"`{d.name}`", d.type.value, "none" if d.default is None else format_value(d.type, d.default),
                 d.description] for d in pv.derived]
        parts += ["### Values the rules work out", _table(["Value", "Type", "Default", "Meaning"], rows)]
    return "\n\n".join(parts)


def _facts(facts: tuple[Fact, ...]) -> str:
    def allowed(f: Fact) -> str:
        return ", ".join(f"`{v}`" + (f" ({f.labels[v]})" if v in f.labels else "") for v in f.allowed)
    rows = [[f"`{f.name}`", f.type.value, allowed(f), f.description, f.question, "yes" if f.sensitive else "no"]
            for f in facts]
    return _table(["Fact", "Type", "Allowed values", "Meaning", "Question", "Sensitive"], rows)


def _lists(pv: PolicyVersion) -> str:
    return "\n\n".join(["## Lists judged item by item"] + [_list(pv, lst) for lst in pv.lists]) if pv.lists else ""


def _list(pv: PolicyVersion, lst: ItemList) -> str:
    about = [_inline(lst.description)] + [f"Question: {_inline(lst.question)}"] * bool(lst.question)
    about += ["Sensitive: yes."] * lst.sensitive
    aggregates = ", ".join(f"`{name}`" for name in lst.aggregates())
    return "\n\n".join([
        f"### `{lst.name}`", *about,
        "Each item's facts:", _facts(lst.facts),
        "Each item gets one of:", _table(["Outcome", "Meaning"], [[f"`{k}`", v] for k, v in lst.outcomes.items()]),
        f"The policy's rules read {aggregates}.",
        "Item rules, tried in order for each item (the first that holds decides):",
        *[_rule(pv, n, rule, "####", lst.outcomes) for n, rule in enumerate(lst.rules, 1)]])


def _uses(pv: PolicyVersion) -> str:
    if not pv.uses:
        return ""
    return "## Other policies used\n\n" + "\n".join(f"- {_use(u)}" for u in pv.uses)


def _use(u: Uses) -> str:
    version = {"in_force": "the version in force on the same date",
               "latest_enacted": "its latest enacted version"}.get(u.version, f"version `{u.version}`")
    fixed = ", ".join(f"`{k}` = {json.dumps(v)}" for k, v in u.set.items())
    return (f"`{u.policy}`, {version}: its outcome and amount are the facts `{u.as_}_outcome` and "
            f"`{u.as_}_amount`" + (f"; it is decided with {fixed}" if fixed else "") + ".")


# --- rules ----------------------------------------------------------------------

def _rules(pv: PolicyVersion) -> str:
    rules = [_rule(pv, n, rule, "###", pv.outcomes) for n, rule in enumerate(pv.rules, 1)]
    return "\n\n".join(["## Rules", RULE_ORDER, *rules])


def _rule(pv: PolicyVersion, n: int, rule: Rule, level: str, outcomes: dict[str, str]) -> str:
    """Rule number `n` under a heading of `level`; `outcomes` are those it may conclude."""
    items = [f"**Concludes:** {conclusion(pv, rule, outcomes)}",
             f"**When:** {describe(pv, rule.when) if rule.when is not None else 'always'}"]
    if rule.amount is not None:
        items.append(f"**Amount:** {arith.describe(rule.amount)}")
    items += [f"**`{name}`:** {arith.describe(expr)}" for name, expr in rule.outputs.items()]
    items.append(f"**Because:** {_inline(rule.because)}")
    if rule.actions:
        items.append("**Actions:**\n" + "\n".join(f"   {k}. {_inline(a)}" for k, a in enumerate(rule.actions, 1)))
    items.append(f"**Citations:** {_cites(rule.cites)}")
    return f"{level} {n}. `{rule.id}`\n\n" + "\n".join(f"- {item}" for item in items)


def conclusion(pv: PolicyVersion, rule: Rule, outcomes: dict[str, str]) -> str:
    """What a rule concludes, e.g. "`WAIVED` (the application fee is waived)"."""
    if rule.derive is not None:
        value = rule.derive.value
        if isinstance(value, bool):
            shown = str(value).lower()
        elif isinstance(value, str):
            shown = json.dumps(value, ensure_ascii=False)
        else:
            shown = arith.describe(value)
        return f"`{rule.derive.name}` = {shown}"
    if rule.flag:
        return f"flag `{rule.flag}` ({pv.flags[rule.flag]})"
    assert rule.outcome is not None  # a rule that derives nothing and flags nothing has an outcome
    return f"`{rule.outcome}` ({outcomes[rule.outcome]})"


# --- worked examples ------------------------------------------------------------

def _examples(compiled: CompiledPolicy, examples_dir: Path | None) -> str:
    pv = compiled.version
    folder = Path(examples_dir) / pv.policy / pv.version if examples_dir is not None else None
    paths = sorted(folder.glob("*.yaml")) if folder is not None and folder.is_dir() else []
    if not paths:
        return f"## Worked examples\n\n{NO_EXAMPLES}"
    intro = ("These are the version's golden test cases: the test suite checks that each request is decided "
             "exactly as shown. Facts this version does not declare (those read by the policies it uses, or "
             "ignored) are shown in `code`, as the request gives them.")
    return "\n\n".join(["## Worked examples", intro] + [_example(compiled, p) for p in paths])


def _example(compiled: CompiledPolicy, path: Path) -> str:
    case = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    request, expected = case["request"], case.get("expected") or {}
    picked = (f"as at {request['as_at']}" if request.get("as_at")
              else f"version `{request['version']}`" if request.get("version") else "no version or as-at date")
    facts = request.get("facts") or {}
    given = "\n".join(_given(compiled, name, value) for name, value in facts.items()) or "- (no facts)"
    outcome = expected.get("outcome", case["expect_outcome"])
    amount = expected.get("amount_pence", case.get("expect_amount_pence"))
    meaning = expected.get("outcome_description") or compiled.version.outcomes.get(outcome, "")
    decided = f"**Decision:** `{outcome}`" + (f" ({_inline(meaning)})" if meaning else "")
    decided += f", {money(amount)}." if amount is not None else "."
    parts = [f"### Example {path.stem}", _inline(case.get("description", "")),
             f"**Request** ({picked}):", given, decided]
    if expected.get("rationale"):
        parts += ["The caseworker's explanation:", _fenced(expected["rationale"])]
    return "\n\n".join(p for p in parts if p)


def _given(compiled: CompiledPolicy, name: str, value: Any) -> str:
    spec = compiled.lists.get(name)
    if spec is not None and isinstance(value, list):
        items = [f"  - item {n}: " + "; ".join(f"`{k}`: {_value(spec.kinds.get(k), v, compiled.labels.get(k, {}))}"
                                                for k, v in item.items())
                 for n, item in enumerate(value)]
        count = f"{len(value)} item" + "s" * (len(value) != 1)
        return f"- `{name}`: " + (count + "\n" + "\n".join(items) if items else "none")
    return f"- `{name}`: {_value(compiled.kinds.get(name), value, compiled.labels.get(name, {}))}"


def _value(kind: FactType | None, value: Any, labels: dict[str, str]) -> str:
    """A request value in words, as the version's type and labels read it."""
    if kind is None:
        return f"`{value if isinstance(value, str) and value else json.dumps(value, ensure_ascii=False)}`"
    if kind is FactType.DATE and isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value)
        except ValueError:
            pass
    elif isinstance(value, list):
        value = [labels.get(v, v) for v in value]
    elif isinstance(value, str) and value in labels:
        return _inline(labels[value])
    return _inline(format_value(kind, value))


# --- every version ------------------------------------------------------------

INDEX_NOTE = ("Generated from `rules/policies/` and the golden cases in `tests/golden/` by "
              "`python -m rules doc --all --out docs/policies`; do not edit by hand. "
              "`tests/test_docs.py` fails when a document here is not what that command writes.")


def _version_order(compiled: CompiledPolicy) -> tuple:
    pv = compiled.version
    return (pv.effective_from or dt.date.max, pv.version)


def all_documents(bundle, examples_dir: Path | None = None) -> dict[str, str]:
    """Every version's document and an index, by path relative to the output directory
    (`<policy>/<version>.md` and `README.md`)."""
    docs = {f"{policy}/{version}.md": document(compiled, examples_dir)
            for policy, versions in sorted(bundle.policies.items()) for version, compiled in versions.items()}
    docs["README.md"] = index(bundle)
    return docs


def index(bundle) -> str:
    """A table of every policy version with a link to its document."""
    parts = ["# Policy documents", INDEX_NOTE,
             "Each document gives the version's law, parameters, facts, every rule in plain English and its "
             "golden cases as worked examples."]
    for policy, versions in sorted(bundle.policies.items()):
        rows = []
        for compiled in sorted(versions.values(), key=_version_order):
            pv = compiled.version
            if pv.status is Status.ENACTED:
                when = _date(pv.effective_from) + (f" to {_date(pv.effective_to)}" if pv.effective_to else " on")
            else:
                when = f"not in force (from {_date(pv.effective_from)})" if pv.effective_from else "not in force"
            rows.append([f"[`{pv.version}`]({policy}/{pv.version}.md)", pv.status.value, when, pv.title])
        parts.append(f"## `{policy}`\n\n" + _table(["Version", "Status", "In force", "Title"], rows))
    return "\n\n".join(parts) + "\n"
