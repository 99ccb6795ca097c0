"""Lint findings reported by `python -m rules validate`: rules that can never fire, comparisons
with values that never occur, overlapping rules, unused facts and parameters, blank citations.
Each test edits a copy of a shipped policy and checks the finding and its line."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rules.authoring import lint as lint_module
from rules.authoring.lint import NOTE, WARNING, lint
from rules.engine.loader import DEFAULT_POLICY_DIR, PolicyLoadError, load_bundle

ROOT = Path(__file__).resolve().parent.parent
FEE_2017 = DEFAULT_POLICY_DIR / "application_fee" / "2017.yaml"
LAST_RULE = "  - id: payable.standard\n"


def _write(tmp_path: Path, text: str, policy: str = "application_fee", version: str = "2017") -> Path:
    target = tmp_path / policy / f"{version}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def _fee(tmp_path: Path, rules: str = "", facts: str = "", parameters: str = "") -> Path:
    """application_fee/2017 with rules added before its last rule, and facts and parameters added."""
    text = FEE_2017.read_text()
    assert LAST_RULE in text
    text = text.replace(LAST_RULE, rules + LAST_RULE)
    text = text.replace("\nfacts:\n", "\nfacts:\n" + facts)
    text = text.replace("\nparameters:\n", "\nparameters:\n" + parameters)
    return _write(tmp_path, text)


def _rule(rule_id: str, when: str, outcome: str = "NOT_APPLICABLE") -> str:
    return (f"  - id: {rule_id}\n    when: {when}\n    outcome: {outcome}\n    because: A test rule.\n"
            "    cites:\n      - source: Test Act\n")


def _line(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def _findings(directory: Path, level: str | None = None) -> list[lint_module.Finding]:
    return [f for f in lint(load_bundle(directory), directory).findings if level in (None, f.level)]


def _about(findings, path: Path, name: str) -> list[lint_module.Finding]:
    """The findings about a rule, fact or parameter (for an overlap, the later rule) in a file."""
    def subject(message: str) -> str:
        quoted = message.split("'")
        return quoted[3] if message.startswith("rules '") else quoted[1]
    return [f for f in findings if subject(f.message) == name and Path(f.path).resolve() == path.resolve()]


def _validate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rules", "validate", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(ROOT)})


# --- the shipped policies -----------------------------------------------------------

# Genuine findings in the shipped files, reported to the policy owners: facts a version declares
# but never reads. Remove an entry when its file is fixed; any other warning is a false positive.
KNOWN = {
    ("abuse_evidence/2018.yaml", "item fact 'evidence_items.document_date' is never used"),
    ("application_fee/2014.yaml", "fact 'child_abuse_witnessed' is never used"),
    ("service_type/reform-2025.yaml", "fact 'receiving_parent_requests' is never used"),
    ("service_type/reform-2025.yaml", "fact 'paying_parent_requests' is never used"),
    ("service_type/reform-2025.yaml", "fact 'paying_parent_agrees_to_collect_and_pay' is never used"),
    ("service_type/reform-2025.yaml", "fact 'abuse_disclosed' is never used"),
    ("service_type/reform-2025.yaml", "fact 'abuse_disclosed_by' is never used"),  # names whose abuse_disclosed is
}


def test_shipped_policies_give_no_false_warnings(bundle):
    report = lint(bundle, DEFAULT_POLICY_DIR)
    warnings = {(f"{Path(f.path).parent.name}/{Path(f.path).name}", f.message.split(":")[0])
                for f in report.findings if f.level == WARNING}
    assert not warnings - KNOWN, sorted(warnings - KNOWN)
    assert report.not_analysed == 0
    # Every rule fires in some golden case (test_golden), so none may be reported as never firing;
    # the one note is abuse_evidence/2018's catch-all, which earlier rules always pre-empt.
    never = [str(f) for f in report.findings if "never reached" in f.message or "never fire" in f.message]
    assert len(never) == 1 and "abuse_evidence/2018.yaml" in never[0] and "'item.not-on-list'" in never[0], never


def test_catch_all_item_rule_that_is_never_reached_is_a_note(tmp_path):
    shutil.copytree(DEFAULT_POLICY_DIR / "abuse_evidence", tmp_path / "abuse_evidence")
    path = tmp_path / "abuse_evidence" / "2018.yaml"
    found = _about(_findings(tmp_path), path, "item.not-on-list")
    assert [(f.level, f.line) for f in found] == [(NOTE, _line(path, "- id: item.not-on-list"))]
    assert "kept as a safety net" in found[0].message


# --- rules that can never fire --------------------------------------------------------

def test_contradictory_rule(tmp_path):
    path = _fee(tmp_path, _rule("both-declarations", "{all: [{fact: declaration, eq: at_application}, "
                                                     "{fact: declaration, eq: not_made}]}"))
    found = _about(_findings(tmp_path, WARNING), path, "both-declarations")
    assert [f.line for f in found] == [_line(path, "- id: both-declarations")]
    assert found[0].message == ("rule 'both-declarations' can never fire: its condition cannot hold "
                                "(declaration = at_application and declaration = not_made)")


def test_contradictory_numbers_and_touching_ranges(tmp_path):
    facts = ("  - name: children\n    type: integer\n    description: Children.\n")
    rules = (_rule("many-and-few", "{all: [{fact: children, gt: 5}, {fact: children, lt: 3}]}")
             + _rule("exactly-five", "{all: [{fact: children, gte: 5}, {fact: children, lte: 5}]}")
             + _rule("five-but-not", "{all: [{fact: children, gte: 5}, {fact: children, lte: 5}, "
                                     "{not: {fact: children, eq: 5}}]}"))
    path = _fee(tmp_path, rules, facts)
    found = _findings(tmp_path, WARNING)
    assert [f.line for f in _about(found, path, "many-and-few")] == [_line(path, "- id: many-and-few")]
    assert "(children > 5 and children < 3)" in _about(found, path, "many-and-few")[0].message
    assert _about(found, path, "exactly-five") == []  # satisfiable: 5
    assert [f.line for f in _about(found, path, "five-but-not")] == [_line(path, "- id: five-but-not")]


def test_shadowed_outcome_rule(tmp_path):
    path = _fee(tmp_path, _rule("waived.family", "{fact: application_route, eq: family_based}", "WAIVED"))
    found = _about(_findings(tmp_path, WARNING), path, "waived.family")
    assert [f.line for f in found] == [_line(path, "- id: waived.family")]
    assert found[0].message == ("rule 'waived.family' can never fire: whenever it holds, earlier rules "
                                "decide first ('not-applicable.family-based')")


def test_same_outcome_rules_shadow_only_when_they_must_hold(tmp_path):
    rules = (_rule("na.disclosed", "{fact: child_abuse_disclosed, eq: true}")
             + _rule("na.not-disclosed", "{fact: child_abuse_disclosed, eq: false}")
             # decides while child_abuse_disclosed is not known: not reported
             + _rule("na.northern-ireland", "{fact: applicant_in_northern_ireland, eq: true}")
             # needs child_abuse_disclosed = true, so 'na.disclosed' always decides first
             + _rule("na.disclosed-again", "{all: [{fact: child_abuse_disclosed, eq: true}, "
                                           "{fact: application_route, eq: direct_pay}]}"))
    first = "  - id: not-applicable.family-based\n"
    path = _write(tmp_path, FEE_2017.read_text().replace(first, rules + first))
    found = _findings(tmp_path, WARNING)
    assert _about(found, path, "na.northern-ireland") == []
    assert _about(found, path, "not-applicable.family-based") == []  # the same outcome, and the same way
    again = _about(found, path, "na.disclosed-again")
    assert [f.line for f in again] == [_line(path, "- id: na.disclosed-again")]
    assert again[0].message.endswith("earlier rules decide first ('na.disclosed')")
    # another outcome is pre-empted whether or not child_abuse_disclosed is known
    standard = _about(found, path, "payable.standard")
    assert [f.line for f in standard] == [_line(path, "- id: payable.standard")]
    assert standard[0].message.endswith("earlier rules decide first ('na.disclosed', 'na.not-disclosed')")


def test_derive_rules_for_one_value(tmp_path):
    text = FEE_2017.read_text()
    anchor = "  - id: waived.domestic-abuse\n"
    derive = ("  - id: {id}\n    when: {{fact: abuse_of_applicant, eq: true}}\n"
              "    derive: {{name: applicant_is_victim, value: {value}}}\n    because: A test rule.\n"
              "    cites:\n      - source: Test Act\n")
    text = text.replace(anchor, derive.format(id="victim.again", value="true")
                        + derive.format(id="victim.not", value="false") + anchor)
    path = _write(tmp_path, text)
    found = _findings(tmp_path, WARNING)
    assert _about(found, path, "victim.again") == []  # a second reason for the same value
    assert [f.line for f in _about(found, path, "victim.not")] == [_line(path, "- id: victim.not")]


def test_enum_compared_with_a_value_it_never_has(tmp_path):
    parameters = ("  late_declaration:\n    type: string\n    value: late\n    description: Late.\n"
                  "    cites:\n      - source: Test Act\n")
    path = _fee(tmp_path, _rule("late", "{fact: declaration, eq: {param: late_declaration}}"), parameters=parameters)
    found = _about(_findings(tmp_path, WARNING), path, "late")
    line = _line(path, "- id: late")
    assert [(f.line, f.message.split(":")[0]) for f in found] == [
        (line, "rule 'late' can never fire"),
        (line + 1, "rule 'late' compares 'declaration' with 'late', which it never is (allowed")]


def test_used_policy_outcome_it_never_has_and_facts_passed_down(tmp_path):
    shutil.copytree(DEFAULT_POLICY_DIR / "abuse_evidence", tmp_path / "abuse_evidence")
    service = (DEFAULT_POLICY_DIR / "service_type" / "da-act-2023.yaml").read_text()
    assert "{fact: evidence_outcome, eq: VERIFIED}" in service
    service = service.replace("{fact: evidence_outcome, eq: VERIFIED}", "{fact: evidence_outcome, eq: VERIFIED_}")
    # decision_date is read here; declare another fact that only the used policy reads
    evidence = (tmp_path / "abuse_evidence" / "2018.yaml").read_text()
    (tmp_path / "abuse_evidence" / "2018.yaml").write_text(evidence.replace("\nfacts:\n", (
        "\nfacts:\n  - name: extra_check\n    type: bool\n    description: An extra check.\n"), 1).replace(
        "  - id: verified\n", _rule("not-verified.extra", "{fact: extra_check, eq: true}", "NOT_VERIFIED")
        + "  - id: verified\n"))
    path = _write(tmp_path, service.replace("\nfacts:\n", (
        "\nfacts:\n  - name: extra_check\n    type: bool\n    description: An extra check.\n"), 1),
        "service_type", "da-act-2023")
    found = [f for f in _findings(tmp_path, WARNING) if Path(f.path).resolve() == path.resolve()]
    rule_line = _line(path, "- id: collect-and-pay.relevant-domestic-abuse")
    assert [(f.line, f.message.split(",")[0]) for f in found if "relevant-domestic-abuse" in f.message] == [
        (rule_line, "rule 'collect-and-pay.relevant-domestic-abuse' can never fire: its condition cannot hold "
                    "(evidence_outcome = VERIFIED_)"),
        (_line(path, "eq: VERIFIED_"), "rule 'collect-and-pay.relevant-domestic-abuse' compares 'evidence_outcome' "
                                       "with 'VERIFIED_'")]
    assert "which it never is (outcomes of abuse_evidence: " in found[-1].message
    assert not [f for f in found if "extra_check" in f.message]  # passed on to abuse_evidence, which reads it


# --- overlaps -------------------------------------------------------------------------------

def test_overlapping_rules_with_different_outcomes_are_a_note(tmp_path):
    path = _write(tmp_path, FEE_2017.read_text())
    found = _about(_findings(tmp_path, NOTE), path, "payable.abuse-not-reported")
    ours = [f for f in found if "'waived.under-19'" in f.message]
    assert [f.line for f in ours] == [_line(path, "- id: payable.abuse-not-reported")]
    assert ours[0].message.startswith("rules 'waived.under-19' and 'payable.abuse-not-reported' can both match "
                                      "(e.g. application_date < applicant_date_of_birth + 19 years, ")
    assert "abuse_reported_to = []" in ours[0].message and ours[0].message.endswith("; the earlier one wins")
    # rules that cannot both hold are not noted
    assert not [f for f in _findings(tmp_path, NOTE) if "'payable.declaration-not-timely'" in f.message
                and "'waived.domestic-abuse'" in f.message]


# --- unused facts and parameters, citations ----------------------------------------------

def test_unused_fact_and_parameter(tmp_path):
    facts = "  - name: pet_name\n    type: string\n    description: The applicant's pet.\n"
    parameters = ("  unused_pence:\n    type: money\n    value: 100\n    description: Not used.\n"
                  "    cites:\n      - source: Test Act\n")
    path = _fee(tmp_path, facts=facts, parameters=parameters)
    found = _findings(tmp_path, WARNING)
    assert [(f.line, f.message) for f in found] == [
        (_line(path, "  unused_pence:"), "parameter 'unused_pence' is never used: no rule or text reads it"),
        (_line(path, "- name: pet_name"), "fact 'pet_name' is never used: no rule, text or used policy reads it")]


OWNED_FACTS = ("  - name: pet_owner\n    type: enum\n    allowed: [receiving_parent, paying_parent]\n"
               "    description: Whose pet it is.\n"
               "  - name: pet_name\n    type: string\n    sensitive: true\n    about: {fact: pet_owner}\n"
               "    description: The pet's name.\n")


def test_fact_naming_whose_an_unused_fact_is_is_unused_too(tmp_path):
    path = _write(tmp_path, FEE_2017.read_text().replace("\nfacts:\n", "\nfacts:\n" + OWNED_FACTS))
    found = _findings(tmp_path, WARNING)
    assert [(f.line, f.message.split(":")[0]) for f in found] == [
        (_line(path, "- name: pet_owner"), "fact 'pet_owner' is never used"),
        (_line(path, "- name: pet_name"), "fact 'pet_name' is never used")]


def test_fact_named_only_in_a_text_is_used(tmp_path):
    text = FEE_2017.read_text().replace("because: No exemption applies,", "because: For {pet_name}, no exemption applies,")
    _write(tmp_path, text.replace("\nfacts:\n", "\nfacts:\n" + OWNED_FACTS))
    assert _findings(tmp_path, WARNING) == []  # and pet_owner says whose pet_name is


def test_unused_item_fact(tmp_path):
    shutil.copytree(DEFAULT_POLICY_DIR / "abuse_evidence", tmp_path / "abuse_evidence")
    path = tmp_path / "abuse_evidence" / "2018.yaml"
    found = _about(_findings(tmp_path, WARNING), path, "evidence_items.document_date")
    assert [f.line for f in found] == [_line(path, "- name: document_date")]


def test_citation_with_a_blank_source(tmp_path):
    text = FEE_2017.read_text().replace(LAST_RULE, _rule("blank-source", "{fact: application_route, eq: direct_pay}")
                                        .replace("source: Test Act", 'source: "  "') + LAST_RULE)
    path = _write(tmp_path, text)
    found = [f for f in _findings(tmp_path, WARNING) if "blank source" in f.message]
    assert [f.line for f in found] == [_line(path, 'source: "  "')]


# --- bounds -------------------------------------------------------------------------------

def test_a_rule_past_the_work_bound_is_not_analysed(tmp_path, monkeypatch):
    _write(tmp_path, FEE_2017.read_text())
    monkeypatch.setattr(lint_module, "MAX_CONJUNCTS", 2)
    report = lint(load_bundle(tmp_path), tmp_path)
    assert report.not_analysed > 0
    assert not [f for f in report.findings if "never fire" in f.message]


# --- loader: overlapping enacted versions point at the later one's effective_from -------------

def test_overlapping_enacted_versions_point_at_effective_from(tmp_path):
    _write(tmp_path, FEE_2017.read_text())
    later = _write(tmp_path, FEE_2017.read_text().replace('version: "2017"', 'version: "2018"')
                   .replace("effective_from: 2017-08-01", "effective_from: 2018-01-01"), version="2018")
    with pytest.raises(PolicyLoadError) as caught:
        load_bundle(tmp_path)
    [error] = [e for e in caught.value.errors if "both in force" in e.message]
    assert Path(error.path).resolve() == later.resolve() and error.line == _line(later, "effective_from:")


# --- the command ----------------------------------------------------------------------------

def test_validate_prints_findings_then_summary_and_strict_fails_on_warnings(tmp_path):
    parameters = ("  unused_pence:\n    type: money\n    value: 100\n    description: Not used.\n"
                  "    cites:\n      - source: Test Act\n")
    _fee(tmp_path, parameters=parameters)
    shutil.copytree(DEFAULT_POLICY_DIR / "prisoner_liability", tmp_path / "prisoner_liability")
    shutil.copytree(DEFAULT_POLICY_DIR / "maintenance_calculation", tmp_path / "maintenance_calculation")
    result = _validate("--policies", ".", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    line = _line(tmp_path / "application_fee" / "2017.yaml", "  unused_pence:")
    assert f"application_fee/2017.yaml:{line}: warning: parameter 'unused_pence' is never used: no rule or text reads it" in lines
    assert any(": note: rules '" in line for line in lines)
    assert lines[-1].startswith("ok: 4 versions of 3 policies, bundle ") and lines[-1].endswith(" notes")
    assert "; 1 warning, " in lines[-1]
    keys = [(path, int(n)) for path, n, *_ in (line.split(":", 2) for line in lines[:-1])]
    assert keys == sorted(keys)

    strict = _validate("--policies", ".", "--strict", cwd=tmp_path)
    assert strict.returncode == 1 and strict.stdout == result.stdout

    quiet = _validate("--policies", ".", "--no-notes", cwd=tmp_path)
    assert quiet.returncode == 0 and ": note: " not in quiet.stdout
    assert quiet.stdout.splitlines()[-1].endswith("1 warning (notes not shown)")

    named = _validate("--policies", ".", "prisoner_liability/2012.yaml", "--strict", cwd=tmp_path)
    assert named.returncode == 0, named.stdout  # the warning is in another file
    assert all(line.startswith("prisoner_liability/2012.yaml:") for line in named.stdout.splitlines()[:-1])
    assert "; 0 warnings, " in named.stdout.splitlines()[-1]


def test_validate_still_reports_errors_without_lint(tmp_path):
    _fee(tmp_path, _rule("broken", "{fact: no_such_fact, eq: true}"))
    path = tmp_path / "application_fee" / "2017.yaml"
    result = _validate("--policies", ".", "--strict", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"application_fee/2017.yaml:{_line(path, 'no_such_fact')}: unknown fact 'no_such_fact'"]


# --- the analysis against brute force --------------------------------------------------------

def _random_condition(rng, depth: int = 0) -> dict:
    if depth >= 2 or rng.random() < 0.4:
        fact = rng.choice("benl")
        if fact == "b":
            return {"fact": "b", rng.choice(["eq", "ne"]): rng.random() < 0.5}
        if fact == "e":
            op = rng.choice(["eq", "ne", "in", "not_in"])
            return {"fact": "e", op: rng.choice("abc") if op in ("eq", "ne") else rng.sample("abc", rng.randint(1, 2))}
        if fact == "n":
            return {"fact": "n", rng.choice(["eq", "ne", "lt", "lte", "gt", "gte"]): rng.randint(0, 5)}
        return {"fact": "l", "any_in": rng.sample("xyz", rng.randint(1, 2))}
    kind = rng.choice(["all", "any", "not"])
    if kind == "not":
        return {"not": _random_condition(rng, depth + 1)}
    return {kind: [_random_condition(rng, depth + 1) for _ in range(rng.randint(2, 3))]}


def _kleene(cond, env: dict):
    """True, False or None (unknown) for a condition on facts that may be missing (None)."""
    from rules.language.model import AllOf, AnyOf, NotOf
    if isinstance(cond, (AllOf, AnyOf)):
        parts = [_kleene(c, env) for c in (cond.all if isinstance(cond, AllOf) else cond.any)]
        decisive, other = (False, True) if isinstance(cond, AllOf) else (True, False)
        return decisive if decisive in parts else other if all(p is other for p in parts) else None
    if isinstance(cond, NotOf):
        inner = _kleene(cond.not_, env)
        return None if inner is None else not inner
    value, x = env[cond.fact], cond.operand
    if value is None:
        return None
    return {"eq": lambda: value == x, "ne": lambda: value != x, "lt": lambda: value < x, "lte": lambda: value <= x,
            "gt": lambda: value > x, "gte": lambda: value >= x, "in": lambda: value in x,
            "not_in": lambda: value not in x, "any_in": lambda: bool(set(value) & set(x))}[cond.op]()


def _brute_space():
    import itertools
    from types import SimpleNamespace

    from rules.language.model import Fact
    facts = [Fact(name="b", type="bool", description="b"), Fact(name="e", type="enum", allowed=("a", "b", "c"), description="e"),
             Fact(name="n", type="integer", description="n"),
             Fact(name="l", type="enum_list", allowed=("x", "y", "z"), description="l")]
    kinds = {f.name: lint_module._fact_kind(f) for f in facts}
    space = lint_module._Space(kinds, {f.name: f.type for f in facts}, SimpleNamespace(parameters={}))
    lists = [tuple(c) for k in range(4) for c in itertools.combinations("xyz", k)]
    values = {"b": [True, False], "e": list("abc"), "n": list(range(-1, 7)), "l": lists}  # thresholds are 0-5
    return space, values


def test_satisfiability_matches_brute_force():
    import itertools
    import random

    from pydantic import TypeAdapter

    from rules.language.model import Condition
    rng, (space, values) = random.Random(5), _brute_space()
    cases = [dict(zip("benl", combo)) for combo in itertools.product(*(values[f] for f in "benl"))]
    for _ in range(300):
        cond = TypeAdapter(Condition).validate_python(_random_condition(rng))
        assert bool(space.dnf(cond)) == any(_kleene(cond, env) for env in cases), cond


def test_never_firing_matches_brute_force_with_facts_missing():
    """A rule is reported as never firing exactly when no case (facts given or missing) has it decide
    (exactly, for the comparisons the analysis models; for others it is only sound)."""
    import itertools
    import random

    from pydantic import TypeAdapter

    from rules.engine.hitpolicy import first_hit
    from rules.language.model import Condition, Rule
    rng, (space, values) = random.Random(7), _brute_space()
    cases = [dict(zip("benl", combo)) for combo in itertools.product(*([None, *values[f]] for f in "benl"))]
    reported = 0
    for _ in range(60):
        rules = []
        for i in range(4):
            when = TypeAdapter(Condition).validate_python(_random_condition(rng)) if i < 3 or rng.random() < 0.5 else None
            rules.append(Rule(id=f"r{i}", when=when, outcome=rng.choice(["A", "B"]), because="x", cites=[{"source": "s"}]))
        group = lint_module._Group([(r, (), r.outcome, r.outcome) for r in rules], True)
        never = {i for i in range(4) if lint_module._never_fires(space, group, i) is not None}
        reported += len(never)
        candidates, decided = [(i, r.outcome) for i, r in enumerate(rules)], set()
        for env in cases:
            verdicts = [True if r.when is None else _kleene(r.when, env) for r in rules]
            decided.add(first_hit(candidates, {i for i, v in enumerate(verdicts) if v is True},
                                  {i for i, v in enumerate(verdicts) if v is False}).index)
        assert never == set(range(4)) - decided, rules
    assert reported > 20  # the check is not vacuous
