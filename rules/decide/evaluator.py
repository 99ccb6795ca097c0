"""Decide a request: pick the version, check the facts, run the engine, explain.

The engine (durable_rules, via the compiled ruleset) evaluates every rule and
chains the derived values; this module only chooses the version, encodes the
facts, applies the first-hit policy to the engine's verdicts and turns them
into a Decision.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

from rules.language import arith, values
from rules.explain import audiences, explainer, whatif
from rules.engine import durable_host
from rules.engine.compiler import CompiledList, CompiledPolicy
from rules.engine.decision import (PARENTS, UNDETERMINED, Audience, Counterfactual, Decision, DecisionRequest,
                                   Explanation, FactUsed, Flag, ItemVerdict, MissingFact, Output, PolicyRef,
                                   RequestError, Shadow, TrailStep, Violation)
from rules.language.model import Fact, FactType, ItemList, Rule, Uses
from rules.engine.hitpolicy import Hit, first_hit
from rules.engine.loader import Bundle

UNDETERMINED_TEXT = "the decision needs facts that were not given"


@dataclass
class _Worked:
    """A decision with what explaining it needs: every known value, the subject (a party, or None)
    and the deciding rule (None when UNDETERMINED)."""
    decision: Decision
    known: dict
    subject: str | None
    root: int | None
    decided: bool = True  # False: the root was found from the outcome a parent is told (see _told_rule)


class Evaluator:
    def __init__(self, bundle: Bundle, today=lambda: dt.datetime.now(dt.timezone.utc).date(),
                 pinned: dict[tuple[str, str], CompiledPolicy] | None = None):
        self.bundle = bundle
        self._today = today
        self._pinned = pinned or {}  # (policy, version) -> the revision a used policy must use (replay)

    def decide(self, request: DecisionRequest) -> Decision:
        compiled, as_at = self.select(request)
        shadow_request = self._shadow_request(request)
        decision = self.decide_at(compiled, as_at, request)
        if shadow_request is not None:
            decision.shadow = self._shadow(shadow_request, decision)
        decision.decision_id = _new_id()
        decision.bundle_hash = self.bundle.bundle_hash
        decision.decided_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        return decision

    def _shadow_request(self, request: DecisionRequest) -> DecisionRequest | None:
        """The same request pinned to the shadow version (checked before anything is decided)."""
        if not request.shadow_version:
            return None
        _check_names(("shadow_version", request.shadow_version))
        if request.shadow_version not in self.bundle.policies.get(request.policy, {}):
            known = ", ".join(c.version.version for c in self.bundle.versions(request.policy))
            raise RequestError([Violation(field="shadow_version", description=(
                f"unknown version '{request.shadow_version}' of {request.policy}; known: {known}"))])
        return request.model_copy(update={"version": request.shadow_version, "as_at": None,
                                          "shadow_version": "", "counterfactuals": False})

    def _shadow(self, request: DecisionRequest, decision: Decision) -> Shadow:
        """The shadow version's decision, in brief. Its failure is reported in it, never raised:
        a shadow must not change or stop the real decision."""
        try:
            other = self.decide_at(self.bundle.policies[request.policy][request.version], None, request)
        except (RequestError, durable_host.EngineError) as exc:
            return Shadow(error=f"{request.policy}/{request.version} could not decide: {exc}")
        agrees = (other.outcome, other.amount_pence, other.outputs) == (decision.outcome, decision.amount_pence, decision.outputs)
        return Shadow(policy=other.policy, outcome=other.outcome, amount_pence=other.amount_pence, outputs=other.outputs,
                      rule_ids=[step.rule_id for step in other.trail], missing_facts=[m.name for m in other.missing_facts],
                      rationale=other.rationale, agrees=agrees)

    def decide_at(self, compiled: CompiledPolicy, as_at, request: DecisionRequest) -> Decision:
        """The decision under a chosen version (no id or time yet), explained for every audience:
        what replaying a logged decision repeats."""
        worked = self._decide(compiled, as_at, request)
        decision = worked.decision
        if decision.outcome == UNDETERMINED:
            decision.missing_facts = self._ask_order(compiled, as_at, request, decision.missing_facts)
        elif request.counterfactuals:
            decision.counterfactuals = self._counterfactuals(compiled, as_at, request, worked)
        declared = self.bundle.declared(compiled.version.policy)
        readings = [self._reading(compiled, as_at, request, worked, declared, reader) for reader in PARENTS]
        parents = [audiences.parent_explanation(compiled, decision, request, r) for r in readings]
        audiences.mark_shown(decision.counterfactuals, parents)
        decision.disclosure_risks = audiences.disclosure_risks(
            declared, compiled, request, decision, worked.root, readings,
            {u.policy: self.bundle.request_names(u.policy) for u in compiled.version.uses})
        decision.rationale = explainer.rationale(compiled.version, decision, request,
                                                 audiences.caseworker_lines(parents))
        decision.explanations = [Explanation(audience=Audience.CASEWORKER, text=decision.rationale), *parents]
        return decision

    def _reading(self, compiled: CompiledPolicy, as_at, request: DecisionRequest, worked: _Worked,
                 declared: dict, reader: Audience) -> audiences.Reading:
        """The decision as `reader` may know it: decided again on their reader's request (unless it
        is the whole request), with their own counterfactuals or questions worked out on it alone."""
        facts = audiences.reader_facts(declared, request, reader)
        own = request if len(facts) == len(request.facts) else request.model_copy(update={"facts": facts})
        # The whole request's decision serves when it is decided: on the same facts a parent's first
        # hit (which ignores actions) picks the same rule. Otherwise decide again as the parent would.
        same = own is request and worked.root is not None
        told = None if worked.root is None else worked.decision
        seen = worked if same else self._decide(compiled, as_at, own, for_parent=True, told=told)
        reading = audiences.Reading(reader, facts, seen.decision, seen.known, decides=seen.decided)
        if worked.decision.outcome == UNDETERMINED:
            reading.questions = audiences.own_questions(declared, request, reader, seen.decision.missing_facts)
        elif reading.settled and request.counterfactuals and compiled.version.tell.counterfactuals:
            mine = audiences.own_facts(declared, request, reader)
            reading.changes = [c.model_copy(update={"text": "", "shown_to": [reader]}) for c in
                               self._counterfactuals(compiled, as_at, own, seen, only=mine)]
        return reading

    def decide_revision(self, request: DecisionRequest, revision: int, like: Decision | None = None) -> Decision:
        """The request decided by an earlier revision of the version it names (golden files keep
        pinning how a corrected revision behaved); its used policies are today's, or the revisions
        that `like` (the decision it made then) used."""
        pinned = self._pins(like) if like is not None else None
        if pinned:
            return Evaluator(self.bundle, self._today, pinned).decide_revision(request, revision)
        compiled, as_at = self.select(request)
        pv = compiled.version
        older = next((c for c in self.bundle.earlier_revisions(pv.policy, pv.version)
                      if c.version.revision == revision), compiled if pv.revision == revision else None)
        if older is None:
            raise RequestError([Violation(field="revision", description=(
                f"{pv.policy}/{pv.version} has no revision {revision} loaded"))])
        return self.decide_at(older, as_at, request)

    def replay(self, request: DecisionRequest, original: Decision, current: bool = False) -> Decision:
        """Decide a logged request again with the version, revision (content hash) and as-at date the
        original used, and the revisions its used policies used; RequestError if one is no longer
        loaded. `current`: with the version's current revision (and current used policies) instead,
        as a correction would decide it."""
        ref = original.policy
        if current:
            compiled, pinned = self.bundle.policies.get(ref.policy, {}).get(ref.version), {}
        else:
            compiled, pinned = self.bundle.revision(ref.policy, ref.version, ref.content_hash), self._pins(original)
        if compiled is None or pinned is None:
            raise RequestError([Violation(field="decision_id", description=(
                f"{ref.policy}/{ref.version} with content hash {ref.content_hash[:12]}, or a revision of a policy "
                f"it used, is no longer loaded"))])
        # A used policy chosen "in force" with no date to go on was chosen by the day of the decision.
        decided_on = dt.date.fromisoformat(original.decided_at[:10]) if original.decided_at else self._today()
        return Evaluator(self.bundle, lambda: decided_on, pinned).decide_at(compiled, original.as_at, request)

    def _pins(self, original: Decision) -> dict[tuple[str, str], CompiledPolicy] | None:
        """The revisions the original's used policies were decided under (None if one is gone)."""
        pins = {}
        for sub in original.sub_decisions:
            ref = sub.policy
            compiled = self.bundle.revision(ref.policy, ref.version, ref.content_hash)
            deeper = self._pins(sub)
            if compiled is None or deeper is None:
                return None
            pins |= deeper | {(ref.policy, ref.version): compiled}
        return pins

    def _decide(self, compiled: CompiledPolicy, as_at, request: DecisionRequest, fixed: dict | None = None,
                subject: str | None = None, brief: bool = False, for_parent: bool = False,
                told: Decision | None = None) -> _Worked:
        """The decision with what explaining it needs. `brief`: the outcome, amount and missing
        facts only, no trail, outputs or texts (for re-decisions that only compare outcomes).
        `for_parent`: an unknown rule blocks a decision only if it would state another outcome,
        amount or outputs (not merely other actions), as a parent's reading needs; `told`, the outcome
        the parent is told, explains an outcome their facts alone leave open by a rule of it that
        holds on them (`_told_rule`)."""
        given, lists, ignored = self._facts(compiled, request, fixed or {})
        if subject is None and request.subject is not None:
            subject = audiences.PARTY.get(request.subject)
        pending: dict[str, list[MissingFact]] = {}  # what an unknown list aggregate or used result needs
        subs = self._use_policies(compiled, as_at, request, given, pending, subject, brief)
        verdicts = self._judge_lists(compiled, lists, given, pending)
        return self._evaluate(compiled, as_at, given, ignored, pending, verdicts, subs, subject, brief, for_parent,
                              told)

    def _use_policies(self, compiled: CompiledPolicy, as_at, request: DecisionRequest, given: dict,
                      pending: dict, subject: str | None, brief: bool) -> dict[str, Decision]:
        """Decide each used policy; its outcome and amount become facts of this decision."""
        subs = {}
        for use in compiled.version.uses:
            theirs = given.get(use.subject) if use.subject else subject
            worked = self._sub_decision(use, as_at, request, theirs if theirs in audiences.PARTY.values() else None,
                                        brief)
            results = (f"{use.as_}_outcome", f"{use.as_}_amount")
            if isinstance(worked, MissingFact):  # no version of it applies: its result stays unknown
                pending.update(dict.fromkeys(results, [worked]))
                continue
            sub = subs[use.as_] = worked.decision
            if sub.outcome == UNDETERMINED:
                pending.update(dict.fromkeys(results, sub.missing_facts))
                continue
            given[results[0]] = sub.outcome
            if sub.amount_pence is not None:
                given[results[1]] = sub.amount_pence
        return subs

    def _judge_lists(self, compiled: CompiledPolicy, lists: dict, given: dict, pending: dict) -> list[ItemVerdict]:
        """Judge every list's items; the aggregates they settle become facts of this decision."""
        verdicts = []
        for cl in compiled.lists.values():
            items = lists.get(cl.spec.name)
            if items is None:
                absent = [MissingFact(name=cl.spec.name, description=cl.spec.description, question=cl.spec.question)]
                pending.update(dict.fromkeys(cl.spec.aggregates(), absent))
                continue
            judged = self._judge_items(compiled, cl, items, given)
            verdicts += judged
            aggregates, unknown = _aggregate(cl, judged)
            given.update(aggregates)
            pending.update({name: unknown for name in cl.spec.aggregates() if name not in aggregates})
        return verdicts

    # --- what would change it, and what to ask first -------------------------

    def _retry(self, compiled: CompiledPolicy, as_at, request: DecisionRequest, for_parent: bool = False):
        """Decide the same case under the same version with other facts."""
        def decide(facts: dict) -> whatif.Result:
            try:
                worked = self._decide(compiled, as_at, request.model_copy(update={"facts": facts}), brief=True,
                                      for_parent=for_parent)
            except RequestError:
                return whatif.Result(UNDETERMINED, len(facts))
            return whatif.Result(worked.decision.outcome, len(worked.decision.missing_facts), worked)
        return decide

    def _specs(self, compiled: CompiledPolicy) -> dict[str, Fact]:
        """The request's facts this version reads, then those of the policies it uses (not fixed by it)."""
        specs = {f.name: f for f in compiled.version.facts}
        for use in compiled.version.uses:
            for name, spec in self.bundle.fact_schema(use.policy).items():
                if name not in use.set:
                    specs.setdefault(name, spec)
        return specs

    def _marks(self, compiled: CompiledPolicy, facts: dict) -> dict[str, set[int]]:
        marks = whatif.marks(compiled.version, facts, compiled.kinds)
        for use in compiled.version.uses:
            for used in self.bundle.versions(use.policy):
                for name, points in whatif.marks(used.version, facts, used.kinds).items():
                    marks.setdefault(name, set()).update(points)
        return marks

    def _counterfactuals(self, compiled: CompiledPolicy, as_at, request: DecisionRequest,
                         worked: _Worked, only: set[str] | None = None) -> list[Counterfactual]:
        """Single-fact changes that give another outcome, one line per fact and new outcome. Only facts
        that a rule tried before (or as) the deciding one reads can change it; facts of a used policy
        count when its result is read. The date that chose the law (as_at_fact) is not varied.
        `only`: the facts that may be varied (a parent's own)."""
        pv = compiled.version
        tried = [i for i, _ in compiled.outcome_candidates if i <= worked.root]
        relevant = compiled.sources_of(n for i in tried for n in compiled.rules[i].reads)
        passed_on = {n for u in pv.uses if set(u.facts()) & relevant for n in self.bundle.request_names(u.policy)}
        specs = self._specs(compiled)
        facts = {k: v for k, v in request.facts.items() if v is not None}
        names = [n for n in specs if n in facts and n != pv.as_at_fact and (n in relevant or n in passed_on)
                 and (only is None or n in only)]
        found = whatif.changes(facts, [specs[n] for n in names], self._marks(compiled, facts),
                               worked.decision.outcome, self._retry(compiled, as_at, request, only is not None))
        groups: dict[tuple, list[whatif.Change]] = {}
        for change in found:
            groups.setdefault((change.fact.name, change.direction, change.result.outcome), []).append(change)
        return [self._counterfactual(group, facts[group[0].fact.name]) for group in groups.values()]

    @staticmethod
    def _counterfactual(group: list[whatif.Change], current) -> Counterfactual:
        """One fact's changes that give the same new outcome, in words."""
        first, spec = group[0], group[0].fact

        def shown(raw) -> str:
            value = values.parse(spec, raw)
            if isinstance(value, tuple):
                return explainer.join([spec.labels.get(v, v.replace("_", " ")) for v in value])
            if isinstance(value, str) and spec.type is not FactType.STRING:
                return spec.labels.get(value, value.replace("_", " "))
            return explainer.format_value(spec.type, value)

        if spec.type is FactType.ENUM_LIST:
            added = [x for c in group for x in c.value if x not in current]
            removed = [x for x in current if any(x not in c.value for c in group)]
            phrase = " or ".join(p for p in (
                f"also included {shown(added)}".replace(" and ", " or ") if added else "",
                f"did not include {shown(removed)}".replace(" and ", " or ") if removed else "") if p)
        else:
            later = spec.type is FactType.DATE  # "16 March 2000 or later", not "or more"
            beyond = {"at_least": " or later" if later else " or more",
                      "at_most": " or earlier" if later else " or less"}.get(first.direction, "")
            phrase = "were " + explainer.join([shown(c.value) for c in group], "or") + beyond
        new = first.result.detail.decision
        return Counterfactual(
            fact=spec.name, value=first.value if len(group) == 1 else [c.value for c in group],
            direction=first.direction, outcome=new.outcome,
            text=f"If {spec.name} {phrase} (it is {shown(current)}): {new.outcome} — {new.outcome_description}.",
            parent_text=f'If the answer to "{spec.question or spec.description}" {phrase}, the decision would be: '
                        f"{new.outcome_description}.",
            shown_to=[Audience.CASEWORKER])

    def _ask_order(self, compiled: CompiledPolicy, as_at, request: DecisionRequest,
                   missing: list[MissingFact]) -> list[MissingFact]:
        if len(missing) < 2:  # nothing to order: no retries (most undetermined decisions lack one fact)
            return missing
        facts = {k: v for k, v in request.facts.items() if v is not None}
        by_name = {m.name: m for m in missing}
        order = whatif.ask_order(facts, list(by_name), self._specs(compiled), self._marks(compiled, facts),
                                 self._retry(compiled, as_at, request))
        return [by_name[name] for name in order]

    # --- choosing the version ------------------------------------------------

    def select(self, request: DecisionRequest) -> tuple[CompiledPolicy, dt.date | None]:
        _check_names(("policy", request.policy), ("version", request.version))
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
        from_facts = None if request.as_at else self._as_at_from_facts(request)
        as_at = request.as_at or from_facts or self._today()
        compiled = self.bundle.in_force(request.policy, as_at)
        if compiled is None:
            # A date from the facts is a fact: never quoted in an error.
            day = f"its {self.bundle.as_at_fact(request.policy)}" if from_facts else as_at.isoformat()
            raise RequestError([Violation(field="as_at", description=f"no enacted version of {request.policy} is in force on {day}")])
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

    def _facts(self, compiled: CompiledPolicy, request: DecisionRequest, fixed: dict):
        """This version's facts and lists, parsed; facts of other versions are ignored (and
        listed), facts of the policies it uses are left to those policies. Every fact is checked,
        used or not, so that each version accepts or refuses a request alike (and nothing
        unchecked is recorded)."""
        pv = compiled.version
        own, own_lists = compiled.facts, compiled.item_lists
        accepted, accepted_lists = self.bundle.accepted(pv.policy)
        known = self.bundle.request_names(pv.policy)
        passed_on = set().union(*(self.bundle.request_names(u.policy) for u in pv.uses))
        if len(request.facts) > values.MAX_FACTS:
            raise RequestError([Violation(field="facts", description=f"more than {values.MAX_FACTS} facts")])
        facts = {**request.facts, **fixed}
        given, lists, ignored, problems = {}, {}, [], []
        for name in sorted(facts):
            raw = facts[name]
            if name not in known:
                problems.append(Violation(field=values.field("facts", name), description=f"unknown fact for {request.policy}"))
            elif raw is None:
                continue  # null means "not known", the same as leaving it out
            elif name in own:
                try:
                    given[name] = values.parse(own[name], raw)
                except values.FactValueError as exc:
                    problems.append(Violation(field=values.field("facts", name), description=str(exc)))
            elif name in own_lists:
                lists[name] = self._items(name, own_lists[name], accepted_lists[name], raw, ignored, problems)
            else:  # a fact of another version, or of a policy this one uses (which reads it)
                if name in accepted_lists and name not in accepted:
                    self._items(name, None, accepted_lists[name], raw, [], problems)
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

    @staticmethod
    def _items(name: str, spec: ItemList | None, any_version: dict, raw: Any, ignored: list, problems: list
               ) -> list[dict]:
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

    # --- other policies and item lists ---------------------------------------

    def _sub_decision(self, use: Uses, as_at, request: DecisionRequest, subject: str | None, brief: bool
                      ) -> _Worked | MissingFact:
        """The decision of a used policy on the same request (its own facts only), or, when no
        version of it is in force on the date, why its result is unknown."""
        names = self.bundle.request_names(use.policy)
        in_force = use.version == "in_force"
        version = self.bundle.latest_enacted(use.policy) if use.version == "latest_enacted" else use.version
        sub_request = DecisionRequest(policy=use.policy, version="" if in_force else version,
                                      as_at=as_at if in_force else None,
                                      facts={k: v for k, v in request.facts.items() if k in names})
        try:
            compiled, sub_as_at = self.select(sub_request)
        except RequestError as exc:
            if any(v.field != "as_at" for v in exc.violations):
                raise
            return MissingFact(name=f"{use.as_}_outcome", description=exc.violations[0].description)
        compiled = self._pinned.get((use.policy, compiled.version.version), compiled)
        worked = self._decide(compiled, sub_as_at, sub_request, fixed=dict(use.set), subject=subject, brief=brief)
        if not brief:
            worked.decision.rationale = explainer.rationale(compiled.version, worked.decision)
        return worked

    def _judge_items(self, compiled: CompiledPolicy, cl: CompiledList, items: list[dict], given: dict) -> list[ItemVerdict]:
        """Each item by the list's rules (first hit per item), each in a session of its own (a
        session is cheap for the few rules of a list, and the verdicts need no item index)."""
        scopes = [cl.judge(item, given) for item in items]
        verdicts = []
        for n, item in enumerate(items):
            scope = scopes[n]
            hit = first_hit(cl.candidates, set(scope.get("true", ())), set(scope.get("false", ())))
            if hit.index is not None:
                rule = cl.rules[hit.index].rule
                step = self._step(compiled, rule, scope["used"][hit.index], cl.kinds, {})
                verdicts.append(ItemVerdict(list=cl.spec.name, index=n, outcome=rule.outcome,
                                            outcome_description=cl.spec.outcomes[rule.outcome], step=step))
                continue
            needed = dict.fromkeys(name for i in hit.blockers for name in cl.rules[i].tests
                                   if name not in item and name not in given)
            item_facts = {f.name: f for f in cl.spec.facts}
            missing = [MissingFact(name=f"{cl.spec.name}[{n}].{name}", description=item_facts[name].description,
                                   question=item_facts[name].question) if name in item_facts
                       else self._fact_missing(compiled, name) for name in needed]
            verdicts.append(ItemVerdict(list=cl.spec.name, index=n, outcome=UNDETERMINED,
                                        outcome_description=UNDETERMINED_TEXT, missing_facts=missing))
        return verdicts

    @staticmethod
    def _fact_missing(compiled: CompiledPolicy, name: str) -> MissingFact:
        fact = next(f for f in compiled.version.facts if f.name == name)
        return MissingFact(name=fact.name, description=fact.description, question=fact.question)

    # --- running the engine --------------------------------------------------

    def _evaluate(self, compiled: CompiledPolicy, as_at, given: dict, ignored: list[str],
                  pending: dict[str, list[MissingFact]], verdicts: list[ItemVerdict], subs: dict[str, Decision],
                  subject: str | None, brief: bool = False, for_parent: bool = False,
                  told: Decision | None = None) -> _Worked:
        pv, kinds = compiled.version, compiled.kinds
        state = compiled.run(given)
        if not state.get("complete"):
            raise durable_host.EngineError(f"{compiled.ruleset}: the engine did not complete the decision")
        derived = state.get("derived", {})
        known = {**given, **derived}

        true, false = set(state.get("true", ())), set(state.get("false", ()))
        hit = first_hit(compiled.outcome_results if for_parent else compiled.outcome_candidates, true, false)
        decided = hit.index is not None
        if not decided and told is not None:
            index = self._told_rule(compiled, true, known, told)
            hit = hit if index is None else Hit(index)
        flags = [r for r in compiled.rules if r.rule.flag and r.index in true]
        amount, outputs = None, []
        if hit.index is not None:
            rule = compiled.rules[hit.index].rule
            outcome, description = rule.outcome, pv.outcomes[rule.outcome]
            if rule.amount is not None:
                amount = arith.round_half_up(arith.evaluate(rule.amount, pv, known.__getitem__))
            outputs = [] if brief else [self._output(pv, name, expr, known) for name, expr in rule.outputs.items()]
            roots, missing = [hit.index], []
        else:
            outcome, description = UNDETERMINED, UNDETERMINED_TEXT
            roots, missing = list(hit.blockers), self._missing(compiled, hit.blockers, given, state, pending)
        if brief:
            decision = Decision(policy=_policy_ref(compiled), as_at=as_at, outcome=outcome, outcome_description=description,
                                amount_pence=amount, missing_facts=missing, rationale="")
            return _Worked(decision, known, subject, hit.index, decided)

        fired = self._trail(compiled, roots + [r.index for r in flags], state, whole=hit.index is not None)
        trail = [self._step(compiled, compiled.rules[i].rule, state["used"][i], kinds, derived) for i in fired]
        # The deciding rule's actions first, then those of flags, in firing order.
        actions = [a for i in sorted(fired, key=lambda i: i not in roots) for a in compiled.rules[i].rule.actions]
        flag_list = [Flag(code=r.rule.flag, description=pv.flags[r.rule.flag]) for r in flags]
        # A used policy's decision is shown when a rule in the trail read its result, or when it was
        # decided and an outcome rule tried before the deciding one read it (a referral shows the
        # evidence it weighed; an undecided sub-decision nobody needed is left out).
        tried = [i for i, _ in compiled.outcome_candidates if hit.index is None or i <= hit.index]
        in_trail = {name for i in fired for name in compiled.rules[i].tests}
        weighed = {name for i in tried for name in compiled.rules[i].tests}
        used_subs = [subs[u.as_] for u in pv.uses if u.as_ in subs and (
            set(u.facts()) & in_trail or (set(u.facts()) & weighed and subs[u.as_].outcome != UNDETERMINED))]
        decision = Decision(
            policy=_policy_ref(compiled), as_at=as_at, outcome=outcome, outcome_description=description, amount_pence=amount,
            outputs=outputs, items=verdicts, flags=flag_list, actions=actions, trail=trail, missing_facts=missing,
            ignored_facts=ignored, sub_decisions=used_subs, rationale="")  # written by the caller
        return _Worked(decision, known, subject, hit.index, decided)

    @staticmethod
    def _told_rule(compiled: CompiledPolicy, true: set[int], known: dict, told: Decision) -> int | None:
        """The first outcome rule that holds on a parent's facts and states what they are told
        (outcome, amount, outputs): its reasons are true of the case, and they come from nothing
        but the parent's facts and the outcome, which the parent is told anyway."""
        pv = compiled.version
        for index, _ in compiled.outcome_candidates:
            rule = compiled.rules[index].rule
            if index not in true or rule.outcome != told.outcome:
                continue
            try:
                amount = None if rule.amount is None else arith.round_half_up(
                    arith.evaluate(rule.amount, pv, known.__getitem__))
                outputs = {n: arith.store(pv.outputs[n].type, arith.evaluate(e, pv, known.__getitem__))
                           for n, e in rule.outputs.items()}
            except KeyError:  # it reads a value their facts do not give
                continue
            if amount == told.amount_pence and outputs == {o.name: o.value for o in told.outputs}:
                return index
        return None

    @staticmethod
    def _output(pv, name: str, expr, known: dict) -> Output:
        spec = pv.outputs[name]
        value = arith.store(spec.type, arith.evaluate(expr, pv, known.__getitem__))
        return Output(name=name, value=value, text=explainer.format_value(spec.type, value), description=spec.description)

    def _trail(self, compiled: CompiledPolicy, roots: list[int], state: dict, whole: bool) -> list[int]:
        """The fired rules behind `roots`: each root and every fired rule that supports a derived
        value it read (all of them, not only the first: each is a reason). Unless `whole` (a decided
        outcome), only values the conditions read are followed, not those of amounts and outputs."""
        via, fired_set, wanted, todo = state.get("via", {}), set(state.get("true", ())), set(), list(roots)
        while todo:
            index = todo.pop()
            if index is None or index in wanted:
                continue
            wanted.add(index)
            rule = compiled.rules[index]
            for name in (rule.tests if whole else rule.condition_reads):
                if via.get(name) is not None:
                    value = compiled.rules[via[name]].conclusion
                    todo += [r.index for r in compiled.rules if r.index in fired_set and r.rule.derive
                             and r.rule.derive.name == name and r.conclusion == value]
        return [i for i in state.get("true", ()) if i in wanted]

    @staticmethod
    def _step(compiled: CompiledPolicy, rule: Rule, used: dict, kinds: dict, derived: dict) -> TrailStep:
        decoded = {name: values.decode(kinds[name], v) for name, v in used.items()}
        shown = {**derived, **decoded}
        return TrailStep(
            rule_id=rule.id,
            concludes=rule.concludes,
            because=explainer.render(rule.because, compiled.version, shown, kinds, compiled.labels),
            citations=list(rule.cites),
            facts_used=[FactUsed(name=n, value=values.to_json(v)) for n, v in decoded.items()])

    def _missing(self, compiled: CompiledPolicy, blockers, given: dict, state: dict,
                 pending: dict[str, list[MissingFact]]) -> list[MissingFact]:
        """The absent facts that the blocking rules (and the derived values they read) need;
        for a list or a used policy, the facts its undecided items or decision need."""
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
        out = [MissingFact(name=f.name, description=f.description, question=f.question)
               for f in compiled.version.facts if f.name in names]
        for name in sorted(n for n in names if n in pending):
            out += [m for m in pending[name] if m.name not in {x.name for x in out}]
        return out


def _new_id() -> str:
    """A random (version 4) UUID's 32 hex digits, as uuid.uuid4().hex gives without building a UUID."""
    n = int.from_bytes(os.urandom(16), "big")
    return f"{n & ~(0xF000 << 64) & ~(0xC000 << 48) | 0x4000 << 64 | 0x8000 << 48:032x}"


def _policy_ref(compiled: CompiledPolicy) -> PolicyRef:
    """The version's reference (frozen), made once per compiled version and shared by its decisions."""
    ref = _REFS.get(compiled.ruleset)
    if ref is None:
        pv = compiled.version
        ref = _REFS[compiled.ruleset] = PolicyRef(
            policy=pv.policy, version=pv.version, status=pv.status.value, title=pv.title,
            effective_from=pv.effective_from, effective_to=pv.effective_to, content_hash=compiled.content_hash,
            revision=pv.revision)
    return ref


_REFS: dict[str, PolicyRef] = {}  # by ruleset name (policy, version and content hash)


def _check_names(*named: tuple[str, str]) -> None:
    """Policy and version names are short: a longer one is refused without being quoted."""
    problems = [Violation(field=field, description=f"longer than {values.MAX_NAME} characters")
                for field, name in named if len(name) > values.MAX_NAME]
    if problems:
        raise RequestError(problems)


def _aggregate(cl: CompiledList, verdicts: list[ItemVerdict]) -> tuple[dict[str, Any], list[MissingFact]]:
    """The list's aggregates that the verdicts settle, and what the undecided items need."""
    name, undecided = cl.spec.name, [v for v in verdicts if v.outcome == UNDETERMINED]
    out: dict[str, Any] = {f"{name}_count": len(verdicts)}
    for code in cl.spec.outcomes:
        has = sum(v.outcome == code for v in verdicts)
        if has or not undecided:
            out[f"{name}_any_{code.lower()}"] = bool(has)
        if not undecided:
            out[f"{name}_{code.lower()}_count"] = has
    return out, [m for v in undecided for m in v.missing_facts]
