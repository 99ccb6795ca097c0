"""Decide a request: pick the version, check the facts, run the engine, explain.

The engine (durable_rules, via the compiled ruleset) evaluates every rule and
chains the derived values; this module only chooses the version, encodes the
facts, applies the first-hit policy to the engine's verdicts and turns them
into a Decision.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from . import durable_host, explainer, values
from .compiler import CompiledPolicy
from .decision import (UNDETERMINED, Decision, DecisionRequest, FactUsed, Flag, MissingFact, PolicyRef,
                       RequestError, TrailStep, Violation)
from .hitpolicy import first_hit
from .loader import Bundle

UNDETERMINED_TEXT = "the decision needs facts that were not given"


class Evaluator:
    def __init__(self, bundle: Bundle, today=lambda: dt.datetime.now(dt.timezone.utc).date()):
        self.bundle = bundle
        self._today = today

    def decide(self, request: DecisionRequest) -> Decision:
        compiled, as_at = self.select(request)
        given, ignored = self._facts(compiled, request)
        return self._evaluate(compiled, as_at, given, ignored)

    # --- choosing the version ------------------------------------------------

    def select(self, request: DecisionRequest) -> tuple[CompiledPolicy, dt.date | None]:
        versions = self.bundle.policies.get(request.policy)
        if versions is None:
            known = ", ".join(sorted(self.bundle.policies))
            raise RequestError([Violation(field="policy", description=f"unknown policy '{request.policy}'; known: {known}")])
        if request.version and request.as_at:
            raise RequestError([Violation(field="version", description="give a version or an as_at date, not both")])
        if request.version:
            if request.version not in versions:
                known = ", ".join(c.version.version for c in self.bundle.versions(request.policy))
                raise RequestError([Violation(field="version", description=f"unknown version '{request.version}' of {request.policy}; known: {known}")])
            return versions[request.version], None
        as_at = request.as_at or self._as_at_from_facts(request) or self._today()
        compiled = self.bundle.in_force(request.policy, as_at)
        if compiled is None:
            raise RequestError([Violation(field="as_at", description=f"no enacted version of {request.policy} is in force on {as_at.isoformat()}")])
        return compiled, as_at

    def _as_at_from_facts(self, request: DecisionRequest) -> dt.date | None:
        name = self.bundle.as_at_fact(request.policy)
        if name is None or request.facts.get(name) is None:
            return None
        try:
            return values.parse(self.bundle.fact_schema(request.policy)[name], request.facts[name])
        except values.FactValueError as exc:
            raise RequestError([Violation(field=f"facts.{name}", description=str(exc))]) from None

    # --- checking the facts --------------------------------------------------

    def _facts(self, compiled: CompiledPolicy, request: DecisionRequest) -> tuple[dict[str, Any], list[str]]:
        own = {f.name: f for f in compiled.version.facts}
        schema = self.bundle.fact_schema(request.policy)
        given, ignored, problems = {}, [], []
        for name in sorted(request.facts):
            raw = request.facts[name]
            fact = own.get(name) or schema.get(name)
            if fact is None:
                problems.append(Violation(field=f"facts.{name}", description=f"unknown fact for {request.policy}"))
                continue
            if raw is None:
                continue  # null means "not known", the same as leaving it out
            try:
                value = values.parse(fact, raw)
            except values.FactValueError as exc:
                problems.append(Violation(field=f"facts.{name}", description=str(exc)))
                continue
            if name in own:
                given[name] = value
            else:
                ignored.append(name)
        if problems:
            raise RequestError(problems)
        return given, ignored

    # --- running the engine --------------------------------------------------

    def _evaluate(self, compiled: CompiledPolicy, as_at, given: dict, ignored: list[str]) -> Decision:
        pv, kinds = compiled.version, compiled.kinds
        state = durable_host.evaluate(compiled.ruleset, compiled.working_fact(given))
        if not state.get("complete"):
            raise durable_host.EngineError(f"{compiled.ruleset}: the engine did not complete the decision")

        true, false = set(state.get("true", ())), set(state.get("false", ()))
        hit = first_hit(compiled.outcome_candidates, true, false)
        flags = [r for r in compiled.rules if r.rule.flag and r.index in true]
        if hit.index is not None:
            rule = compiled.rules[hit.index].rule
            outcome, description = rule.outcome, pv.outcomes[rule.outcome]
            amount = pv.parameters[rule.amount.param].value if rule.amount else None
            roots, missing = [hit.index], []
        else:
            outcome, description, amount = UNDETERMINED, UNDETERMINED_TEXT, None
            roots, missing = list(hit.blockers), self._missing(compiled, hit.blockers, given, state)

        fired = self._trail(compiled, roots + [r.index for r in flags], state)
        trail = [self._step(compiled, i, state["used"][str(i)], kinds) for i in fired]
        # The deciding rule's actions first, then those of flags, in firing order.
        actions = [a for i in sorted(fired, key=lambda i: i not in roots) for a in compiled.rules[i].rule.actions]
        flag_list = [Flag(code=r.rule.flag, description=pv.flags[r.rule.flag]) for r in flags]
        return Decision(
            decision_id=uuid.uuid4().hex,
            decided_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
            policy=PolicyRef(policy=pv.policy, version=pv.version, status=pv.status.value, title=pv.title,
                             effective_from=pv.effective_from, effective_to=pv.effective_to,
                             content_hash=compiled.content_hash),
            as_at=as_at, outcome=outcome, outcome_description=description, amount_pence=amount,
            flags=flag_list, actions=actions, trail=trail, missing_facts=missing, ignored_facts=ignored,
            rationale=explainer.rationale(pv, outcome, description, amount, trail, missing, flag_list, actions))

    def _trail(self, compiled: CompiledPolicy, roots: list[int], state: dict) -> list[int]:
        """The fired rules behind `roots`: each root and every fired rule that supports a derived
        value it tested (all of them, not only the first: each is a reason)."""
        via, fired_set, wanted, todo = state.get("via", {}), set(state.get("true", ())), set(), list(roots)
        while todo:
            index = todo.pop()
            if index is None or index in wanted:
                continue
            wanted.add(index)
            for name in compiled.rules[index].tests:
                if via.get(name) is not None:
                    value = compiled.rules[via[name]].conclusion
                    todo += [r.index for r in compiled.rules if r.index in fired_set and r.rule.derive
                             and r.rule.derive.name == name and r.conclusion == value]
        return [i for i in state.get("true", ()) if i in wanted]

    def _step(self, compiled: CompiledPolicy, index: int, used: dict, kinds: dict) -> TrailStep:
        rule = compiled.rules[index].rule
        decoded = {name: values.decode(kinds[name], v) for name, v in used.items()}
        return TrailStep(
            rule_id=rule.id,
            concludes=rule.concludes,
            because=explainer.render(rule.because, compiled.version, decoded, kinds),
            citations=list(rule.cites),
            facts_used=[FactUsed(name=n, value=values.to_json(v)) for n, v in decoded.items()])

    def _missing(self, compiled: CompiledPolicy, blockers, given: dict, state: dict) -> list[MissingFact]:
        """The absent facts that the blocking rules (and the derived values they test) need."""
        blocked = state.get("blocked", {})
        names, todo, seen = set(), list(blockers), set()
        while todo:
            index = todo.pop()
            if index in seen:
                continue
            seen.add(index)
            for name in compiled.rules[index].tests:
                if name in blocked:
                    todo += blocked[name]
                elif name not in given:
                    names.add(name)
        return [MissingFact(name=f.name, description=f.description, question=f.question)
                for f in compiled.version.facts if f.name in names]
