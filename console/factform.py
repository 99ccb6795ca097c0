"""A version's facts as a form, and the posted form back as the facts a DecideRequest carries.

The questions come from GetPolicy (`facts` and `lists`, and those of the policies a version uses),
never from the engine. Each answer is read as the API wants it: dates "YYYY-MM-DD", money whole
pence, enums their codes, item lists as lists of objects; "Not known" (a blank) leaves the fact
out. What cannot be read is an error at its field, keyed by the id of the input the error summary
links to, and nothing is sent to the service.

Input names (and ids) come from the fact's place in the request: `facts-application_date-day`,
`facts-evidence_items-0-type`. A list's item count travels in `count-<list>`, so that the form can
be drawn again with the answers kept, and its own answer in `facts-<list>`: "items" (the items as
given, a blank one sent with nothing known of it), "none" (an empty list), or blank (not known,
unless items are described).
"""
from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from starlette.datastructures import FormData

NONE = ":none"  # an enum_list's "none of these" box: an empty list, unlike no box at all (not known)
# A list's own answer: its items as given (a blank item too), none at all, or (blank) not known unless
# items are described (blank items then are no items).
LIST_AS_GIVEN, LIST_EMPTY = "items", "none"
MAX_RADIOS = 6  # an enum with more choices is a select
MAX_ITEMS = 50
DATE_PARTS = ("day", "month", "year")
# ASCII digits only: str.isdigit and \d take others (², ٣) that a person did not mean as a number.
_MONEY = re.compile(r"-?[0-9]+(\.[0-9]{1,2})?")
_INTEGER = re.compile(r"-?[0-9]+")
_DIGITS = re.compile(r"[0-9]+")
_SERVICE_PATH = re.compile(r"facts\.(\w+)(?:\[(\d+)\]\.(\w+))?")


@dataclass(frozen=True)
class Question:
    """One fact, as a FactSpec describes it."""
    name: str
    type: str  # bool | integer | money | string | enum | date | enum_list
    question: str
    description: str
    allowed: tuple[str, ...] = ()
    sensitive: bool = False

    @classmethod
    def of(cls, spec) -> Question:
        return cls(spec.name, spec.type, spec.question or spec.name, spec.description, tuple(spec.allowed), spec.sensitive)

    @property
    def as_select(self) -> bool:
        return self.type == "enum" and len(self.allowed) > MAX_RADIOS


@dataclass(frozen=True)
class ItemList:
    """A list fact (e.g. evidence_items): each item answers the same questions."""
    name: str
    question: str
    description: str
    sensitive: bool
    facts: tuple[Question, ...]

    @classmethod
    def of(cls, spec) -> ItemList:
        return cls(spec.name, spec.question or spec.name, spec.description, spec.sensitive,
                   tuple(Question.of(f) for f in spec.facts))


@dataclass(frozen=True)
class Group:
    """The questions of one policy version: the one tried, or one it uses (`source` says which)."""
    title: str
    source: str  # "" for the version's own facts
    facts: tuple[Question, ...]
    lists: tuple[ItemList, ...]
    versions: int = 1  # how many versions' questions it holds


@dataclass(frozen=True)
class Schema:
    groups: tuple[Group, ...]

    @property
    def facts(self) -> list[Question]:
        return [q for g in self.groups for q in g.facts]

    @property
    def lists(self) -> list[ItemList]:
        return [lst for g in self.groups for lst in g.lists]

    def question(self, name: str) -> Question | None:
        return next((q for q in self.facts if q.name == name), None)

    def item_list(self, name: str) -> ItemList | None:
        return next((lst for lst in self.lists if lst.name == name), None)


def merged(title: str, source: str, policies, taken: set[str], fixed: set[str]) -> Group:
    """One group of questions from one or more GetPolicy responses (the versions a used policy may
    be decided by: every question any of them asks, first asked first), without the facts already
    asked (`taken`) or fixed by the using version (`fixed`). `taken` grows by what is added."""
    facts: dict[str, Question] = {}
    lists: dict[str, ItemList] = {}
    for policy in policies:
        for spec in policy.facts:
            if spec.name not in taken and spec.name not in fixed:
                facts.setdefault(spec.name, Question.of(spec))
        for spec in policy.lists:
            if spec.name in taken or spec.name in fixed:
                continue
            known = lists.get(spec.name)
            if known is None:
                lists[spec.name] = ItemList.of(spec)
            else:
                more = tuple(Question.of(f) for f in spec.facts if f.name not in {q.name for q in known.facts})
                lists[spec.name] = ItemList(known.name, known.question, known.description, known.sensitive, known.facts + more)
    taken.update(facts, lists)
    return Group(title, source, tuple(facts.values()), tuple(lists.values()), len(policies))


def field_name(name: str, item: tuple[str, int] | None = None) -> str:
    """The input name of a fact (or of an item's fact: `item` is the list and the index)."""
    return f"facts-{item[0]}-{item[1]}-{name}" if item else f"facts-{name}"


def anchor(question: Question, name: str) -> str:
    """The id of the input an error about this fact links to (the first of its inputs)."""
    return f"{name}-day" if question.type == "date" else name


@dataclass
class Answers:
    """A posted form read: the facts for the request, errors by anchor id, and the raw answers by
    input name (to draw the form again, or to carry them to the golden download)."""
    facts: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    values: dict[str, str | list[str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def hidden(self) -> list[tuple[str, str]]:
        """Every answer as (name, value) pairs, for hidden inputs that post them again."""
        pairs = [(f"count-{name}", str(count)) for name, count in self.counts.items()]
        for name, value in self.values.items():
            pairs += [(name, v) for v in value] if isinstance(value, list) else [(name, value)]
        return [(n, v) for n, v in pairs if v != ""]


def blank(schema: Schema) -> Answers:
    """The form before anything is answered: one item for each list."""
    return Answers(counts={lst.name: 1 for lst in schema.lists})


def read(form: FormData, schema: Schema, extra_item: str = "") -> Answers:
    """The posted answers. `extra_item`: a list to draw with one more (empty) item."""
    answers = Answers()
    for question in schema.facts:
        _read_fact(form, question, field_name(question.name), answers, answers.facts)
    for lst in schema.lists:
        try:
            count = min(max(int(str(form.get(f"count-{lst.name}", "1"))), 0), MAX_ITEMS)
        except ValueError:  # not a number (the form always sends one): as first drawn
            count = 1
        name = field_name(lst.name)
        known = str(form.get(name, ""))
        answers.values[name] = known
        items = []
        for index in range(count):
            item: dict[str, Any] = {}
            for question in lst.facts:
                _read_fact(form, question, field_name(question.name, (lst.name, index)), answers, item)
            if item or known == LIST_AS_GIVEN:  # a blank item is sent (nothing known of it) only when asked
                items.append(item)
        if known == LIST_EMPTY:
            if items:
                answers.errors[name] = f"{lst.question}: either say there are none, or describe items, not both"
            else:
                answers.facts[lst.name] = []
        elif items:
            answers.facts[lst.name] = items
        answers.counts[lst.name] = min(count + (extra_item == lst.name), MAX_ITEMS)
    return answers


def without_item(answers: Answers, list_name: str, index: int) -> Answers:
    """The answers with one item of a list taken out (the later ones move up), to draw the form again."""
    prefix = f"facts-{list_name}-"
    values: dict[str, str | list[str]] = {}
    for name, value in answers.values.items():
        position, _, rest = name.removeprefix(prefix).partition("-")
        if not name.startswith(prefix) or not position.isascii() or not position.isdigit() or not rest:
            values[name] = value
        elif int(position) != index:
            values[f"{prefix}{int(position) - (int(position) > index)}-{rest}"] = value
    counts = {**answers.counts, list_name: max(answers.counts.get(list_name, 1) - 1, 0)}
    return Answers(values=values, counts=counts)


def _read_fact(form: FormData, question: Question, name: str, answers: Answers, into: dict[str, Any]) -> None:
    what = question.question
    if question.type == "date":
        parts = {part: str(form.get(f"{name}-{part}", "")).strip() for part in DATE_PARTS}
        answers.values.update({f"{name}-{part}": value for part, value in parts.items()})
        if not any(parts.values()):
            return
        day, problem = _date(parts)
        if problem:
            answers.errors[f"{name}-{_first_wrong(parts)}"] = f"{what}: {problem}"
        else:
            into[question.name] = day
        return
    if question.type == "enum_list":
        chosen = [str(v) for v in form.getlist(name)]
        answers.values[name] = chosen
        if not chosen:
            return
        if NONE in chosen:
            if len(chosen) > 1:
                answers.errors[name] = f"{what}: choose “None of these” or some of the answers, not both"
            else:
                into[question.name] = []
            return
        wrong = [v for v in chosen if v not in question.allowed]
        if wrong:
            answers.errors[name] = f"{what}: choose from the answers listed"
        else:
            into[question.name] = [v for v in question.allowed if v in chosen]  # in the schema's order
        return
    text = str(form.get(name, "")).strip()
    answers.values[name] = text
    if not text:
        return
    value, problem = _value(question, text)
    if problem:
        answers.errors[name] = f"{what}: {problem}"
    else:
        into[question.name] = value


def _value(question: Question, text: str) -> tuple[Any, str]:
    if question.type == "bool":
        return (text == "yes", "") if text in ("yes", "no") else (None, "choose yes, no or not known")
    if question.type == "enum":
        return (text, "") if text in question.allowed else (None, "choose one of the answers listed")
    if question.type == "money":
        cleaned = text.removeprefix("£").replace(",", "").strip()
        if not _MONEY.fullmatch(cleaned):
            return None, "enter an amount in pounds, like 250 or 250.50"
        return int(Decimal(cleaned) * 100), ""
    if question.type == "integer":
        cleaned = text.replace(",", "")
        return (int(cleaned), "") if _INTEGER.fullmatch(cleaned) else (None, "enter a whole number, like 3")
    return text, ""


def _date(parts: dict[str, str]) -> tuple[str, str]:
    """The date as YYYY-MM-DD, or what is wrong with it (a sentence's end)."""
    missing = [p for p in DATE_PARTS if not parts[p]]
    if missing:
        return "", "the date must include a " + " and a ".join(missing)
    if not all(_DIGITS.fullmatch(p) for p in parts.values()):
        return "", "the date must be in numbers, like 27 3 2024"
    day, month, year = int(parts["day"]), int(parts["month"]), int(parts["year"])
    if len(parts["year"]) != 4:
        return "", "the year must have 4 numbers, like 2024"
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return "", "the date must be a real date"
    return f"{year:04d}-{month:02d}-{day:02d}", ""


def _first_wrong(parts: dict[str, str]) -> str:
    """The part an error links to: the first missing or not a number, else the day."""
    return next((p for p in DATE_PARTS if not _DIGITS.fullmatch(parts[p])), "day")


def service_errors(fields: dict[str, str], schema: Schema) -> dict[str, str]:
    """The service's INVALID_ARGUMENT violations (`facts.application_date`,
    `facts.evidence_items[0].type`) as errors at the form's fields (anchor id -> message)."""
    errors: dict[str, str] = {}
    for path, message in fields.items():
        match = _SERVICE_PATH.fullmatch(path)
        question, name = None, ""
        if match and match.group(2) is None:
            question, name = schema.question(match.group(1)), field_name(match.group(1))
        elif match:
            lst = schema.item_list(match.group(1))
            question = next((q for q in lst.facts if q.name == match.group(3)), None) if lst else None
            name = field_name(match.group(3), (match.group(1), int(match.group(2))))
        if question is None:  # not a field of the form: shown at the top, as the service said it
            errors.setdefault("case-form", f"{path}: {message}")
        else:
            errors.setdefault(anchor(question, name), f"{question.question}: the service says {message}")
    return errors


def humanise(code: str) -> str:
    """A code as words for a label: `collect_and_pay` -> `Collect and pay`."""
    return code.replace("_", " ").capitalize()
