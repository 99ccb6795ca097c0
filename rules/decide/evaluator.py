"""Decide a request: orchestrate choosing the version, checking the facts, running the engine and
explaining.

The engine (durable_rules, via the compiled ruleset) evaluates every rule and chains the derived
values; the Evaluator decides the used policies and item lists first (their results are facts of
the decision), applies the first-hit policy to the engine's verdicts and turns them into a Decision
explained for every audience. Its helpers, by job: `versions` (choosing the version), `facts`
(checking the request's facts), `counterfactuals` (what would change it, what to ask first),
`trail` (the trail, missing facts and outputs from the engine's verdicts).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Callable
from typing import Any

from rules.decide import counterfactuals, trail, versions
from rules.decide import facts as request_facts
from rules.decide.counterfactuals import Redecide
from rules.decide.trail import UNDETERMINED_TEXT
from rules.decide.worked import Inputs, Worked
from rules.engine import durable_host
from rules.engine.compiler import CompiledList, CompiledPolicy, EngineState
from rules.engine.decision import (
    PARENTS,
    UNDETERMINED,
    Audience,
    Decision,
    DecisionRequest,
    Explanation,
    Flag,
    ItemVerdict,
    MissingFact,
    RequestError,
    Shadow,
    Violation,
)
from rules.engine.hitpolicy import Hit, first_hit
from rules.engine.loader import Bundle
from rules.explain import audiences, explainer
from rules.language import arith
from rules.language.model import Uses

__all__ = ["UNDETERMINED_TEXT", "Evaluator"]


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class Evaluator:
    def __init__(self, bundle: Bundle, today: Callable[[], dt.date] = _today,
                 pinned: dict[tuple[str, str], CompiledPolicy] | None = None):
        self.bundle = bundle
        self._today = today
        self._pinned = pinned or {}  # (policy, version) -> the revision a used policy must use (replay)

    def decide(self, request: DecisionRequest) -> Decision:
        compiled, as_at = self.select(request)
        shadow_request = versions.shadow_request(self.bundle, request)
        decision = self.decide_at(compiled, as_at, request)
        if shadow_request is not None:
            decision.shadow = self._shadow(shadow_request, decision)
        decision.decision_id = _new_id()
        decision.bundle_hash = self.bundle.bundle_hash
        decision.decided_at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        return decision

    def decide_unexplained(self, request: DecisionRequest) -> Decision:
        """The decision without an id, a time, explanations for each audience, disclosure risks or
        counterfactuals: the outcome, amount, outputs, flags, trail, sub-decisions and missing facts
        in asking order, which is what bulk runs (impact, annual review) read. The parents' readings
        re-decide the case, so this is a quarter to a half of `decide`'s work."""
        compiled, as_at = self.select(request)
        worked = self._decide(compiled, as_at, request)
        decision = worked.decision
        if decision.outcome == UNDETERMINED:
            decision.missing_facts = counterfactuals.ask_order(self.bundle, compiled, request, decision.missing_facts,
                                                               self._redecide(compiled, as_at, base=worked))
        return decision

    def select(self, request: DecisionRequest) -> tuple[CompiledPolicy, dt.date | None]:
        """The version to decide the request under, and the as-at date that chose it (versions.select)."""
        return versions.select(self.bundle, request, self._today)

    def _shadow(self, request: DecisionRequest, decision: Decision) -> Shadow:
        """The shadow version's decision, in brief. Its failure is reported in it, never raised:
        a shadow must not change or stop the real decision."""
        try:
            other = self.decide_at(self.bundle.policies[request.policy][request.version], None, request)
        except (RequestError, durable_host.EngineError) as exc:
            return Shadow(error=f"{request.policy}/{request.version} could not decide: {exc}")
        agrees = ((other.outcome, other.amount_pence, other.outputs)
                  == (decision.outcome, decision.amount_pence, decision.outputs))
        return Shadow(policy=other.policy, outcome=other.outcome, amount_pence=other.amount_pence, outputs=other.outputs,
                      rule_ids=[step.rule_id for step in other.trail], missing_facts=[m.name for m in other.missing_facts],
                      rationale=other.rationale, agrees=agrees)

    def decide_at(self, compiled: CompiledPolicy, as_at: dt.date | None, request: DecisionRequest) -> Decision:
        """The decision under a chosen version (no id or time yet), explained for every audience:
        what replaying a logged decision repeats."""
        worked = self._decide(compiled, as_at, request)
        decision = worked.decision
        if decision.outcome == UNDETERMINED:
            decision.missing_facts = counterfactuals.ask_order(self.bundle, compiled, request, decision.missing_facts,
                                                               self._redecide(compiled, as_at, base=worked))
        elif request.counterfactuals:
            decision.counterfactuals = counterfactuals.counterfactuals(self.bundle, compiled, request, worked,
                                                                       self._redecide(compiled, as_at, base=worked))
        declared = self.bundle.declared(compiled.version.policy)
        readings: list[audiences.Reading] = []
        for reader in PARENTS:
            readings.append(self._reading(compiled, as_at, request, worked, declared, reader, readings))
        parents = [audiences.parent_explanation(compiled, decision, request, r) for r in readings]
        audiences.mark_shown(decision.counterfactuals, parents)
        decision.disclosure_risks = audiences.disclosure_risks(
            declared, compiled, request, decision, worked.root, readings,
            {u.policy: self.bundle.request_names(u.policy) for u in compiled.version.uses})
        decision.rationale = explainer.rationale(compiled.version, decision, request,
                                                 audiences.caseworker_lines(parents))
        decision.explanations = [Explanation(audience=Audience.CASEWORKER, text=decision.rationale), *parents]
        return decision

    def _reading(self, compiled: CompiledPolicy, as_at: dt.date | None, request: DecisionRequest, worked: Worked,
                 declared: dict, reader: Audience, earlier: list[audiences.Reading]) -> audiences.Reading:
        """The decision as `reader` may know it: decided again on their reader's request (unless it
        is the whole request, or another parent's reader's request already decided), with their own
        counterfactuals or questions worked out on it alone."""
        facts = audiences.reader_facts(declared, request, reader)
        own = request if len(facts) == len(request.facts) else request.model_copy(update={"facts": facts})
        # The whole request's decision serves when it is decided: on the same facts a parent's first
        # hit (which ignores actions) picks the same rule. Otherwise decide again as the parent would.
        same = own is request and worked.root is not None
        told = None if worked.root is None else worked.decision
        tried = worked.inputs.tried if worked.inputs is not None else None
        # Both parents often read the same facts (e.g. the applicant's when nobody is the subject):
        # the same reader's request comes to the same decision, so it is decided once.
        twin = next((r.seen for r in earlier if r.facts == facts), None)
        seen = worked if same else twin or self._decide(compiled, as_at, own, for_parent=True, told=told, tried=tried)
        reading = audiences.Reading(reader, facts, seen.decision, seen.known, decides=seen.decided, seen=seen)
        if worked.decision.outcome == UNDETERMINED:
            reading.questions = audiences.own_questions(declared, request, reader, seen.decision.missing_facts)
        elif reading.settled and request.counterfactuals and compiled.version.tell.counterfactuals:
            mine = audiences.own_facts(declared, request, reader)
            found = counterfactuals.counterfactuals(self.bundle, compiled, own, seen,
                                                    self._redecide(compiled, as_at, True, seen), only=mine)
            reading.changes = [c.model_copy(update={"text": "", "shown_to": [reader]}) for c in found]
        return reading

    def _redecide(self, compiled: CompiledPolicy, as_at: dt.date | None, for_parent: bool = False,
                  base: Worked | None = None) -> Redecide:
        """The same case decided again under the same version, briefly, on another request; against
        the decision it varies (`base`), by `_again`."""
        def redecide(request: DecisionRequest) -> Worked:
            if base is None or base.inputs is None:
                return self._decide(compiled, as_at, request, brief=True, for_parent=for_parent)
            given, pending, state = self._again(compiled, as_at, request, base.inputs, base.subject, {})
            return self._evaluate(compiled, as_at, given, [], pending, [], {}, base.subject, True, for_parent,
                                  state=state)
        return redecide

    def _again(self, compiled: CompiledPolicy, as_at: dt.date | None, request: DecisionRequest, inputs: Inputs,
               subject: str | None, fixed: dict) -> tuple[dict, dict[str, list[MissingFact]], EngineState]:
        """What the engine makes of the case of `inputs` on another request: facts already tried are
        not run again, and a request that changes one fact re-parses that fact only and reuses the
        used decisions and list verdicts it does not feed."""
        key = json.dumps(request.facts, sort_keys=True, default=str)
        if key not in inputs.tried:
            changed = [n for n in request.facts.keys() | inputs.facts.keys()
                       if request.facts.get(n) != inputs.facts.get(n)]
            if len(changed) == 1:
                one = request.model_copy(update={"facts": {changed[0]: request.facts.get(changed[0])}})
                parsed, lists, _ = request_facts.parse_facts(self.bundle, compiled, one, fixed)
                parsed = {**{k: v for k, v in inputs.parsed.items() if k != changed[0]}, **parsed}
                lists = {**{k: v for k, v in inputs.lists.items() if k != changed[0]}, **lists}
                prepared = self._prepare(compiled, as_at, request, parsed, lists, subject, True, inputs, changed[0])
            else:
                parsed, lists, _ = request_facts.parse_facts(self.bundle, compiled, request, fixed)
                prepared = self._prepare(compiled, as_at, request, parsed, lists, subject, True)
            given, pending = prepared[1], prepared[2]
            inputs.tried[key] = (given, pending, compiled.run(given))
        return inputs.tried[key]

    def decide_revision(self, request: DecisionRequest, revision: int, like: Decision | None = None) -> Decision:
        """The request decided by an earlier revision of the version it names (golden files keep
        pinning how a corrected revision behaved); its used policies are today's, or the revisions
        that `like` (the decision it made then) used."""
        pinned = versions.pins(self.bundle, like) if like is not None else None
        if pinned:
            return Evaluator(self.bundle, self._today, pinned).decide_revision(request, revision)
        compiled, as_at = self.select(request)
        return self.decide_at(versions.revision_of(self.bundle, compiled, revision), as_at, request)

    def replay(self, request: DecisionRequest, original: Decision, current: bool = False) -> Decision:
        """Decide a logged request again with the version, revision (content hash) and as-at date the
        original used, and the revisions its used policies used; RequestError if one is no longer
        loaded. `current`: with the version's current revision (and current used policies) instead,
        as a correction would decide it."""
        ref = original.policy
        pinned: dict[tuple[str, str], CompiledPolicy] | None
        if current:
            compiled, pinned = self.bundle.policies.get(ref.policy, {}).get(ref.version), {}
        else:
            compiled = self.bundle.revision(ref.policy, ref.version, ref.content_hash)
            pinned = versions.pins(self.bundle, original)
        if compiled is None or pinned is None:
            raise RequestError([Violation(field="decision_id", description=(
                f"{ref.policy}/{ref.version} with content hash {ref.content_hash[:12]}, or a revision of a policy "
                f"it used, is no longer loaded"))])
        # A used policy chosen "in force" with no date to go on was chosen by the day of the decision.
        decided_on = dt.date.fromisoformat(original.decided_at[:10]) if original.decided_at else self._today()
        return Evaluator(self.bundle, lambda: decided_on, pinned).decide_at(compiled, original.as_at, request)

    # --- orchestrating one decision -------------------------------------------

    def _decide(self, compiled: CompiledPolicy, as_at: dt.date | None, request: DecisionRequest,
                fixed: dict | None = None, subject: str | None = None, brief: bool = False, for_parent: bool = False,
                told: Decision | None = None, tried: dict | None = None) -> Worked:
        """The decision with what explaining it needs. `brief`: the outcome, amount and missing
        facts only, no trail, outputs or texts (for re-decisions that only compare outcomes).
        `for_parent`: an unknown rule blocks a decision only if it would state another outcome,
        amount or outputs (not merely other actions), as a parent's reading needs; `told`, the outcome
        the parent is told, explains an outcome their facts alone leave open by a rule of it that
        holds on them (`_told_rule`). `tried`: the engine runs its re-decisions may share (Inputs)."""
        parsed, lists, ignored = request_facts.parse_facts(self.bundle, compiled, request, fixed or {})
        if subject is None and request.subject is not None:
            subject = audiences.PARTY.get(request.subject)
        inputs, given, pending, subs, verdicts = self._prepare(compiled, as_at, request, parsed, lists, subject, brief)
        worked = self._evaluate(compiled, as_at, given, ignored, pending, verdicts, subs, subject, brief, for_parent,
                                told)
        if brief:
            return worked
        return dataclasses.replace(worked, inputs=dataclasses.replace(inputs, tried={} if tried is None else tried))

    def _prepare(self, compiled: CompiledPolicy, as_at: dt.date | None, request: DecisionRequest, parsed: dict,
                 lists: dict, subject: str | None, brief: bool, base: Inputs | None = None, changed: str | None = None
                 ) -> tuple[Inputs, dict, dict[str, list[MissingFact]], dict[str, Decision], list[ItemVerdict]]:
        """Decide each used policy (its outcome and amount become facts of this decision), then judge
        every list's items (the aggregates they settle become facts too). Given `base`, the same case
        with only fact `changed` changed, what that fact does not feed is taken from it."""
        given = dict(parsed)
        pending: dict[str, list[MissingFact]] = {}  # what an unknown list aggregate or used result needs
        fed = {changed}  # what differs from `base`
        uses: dict[str, Worked | MissingFact] = {}
        subs = {}
        for use in compiled.version.uses:
            results = (f"{use.as_}_outcome", f"{use.as_}_amount")
            if base is not None and changed != use.subject and changed not in self.bundle.request_names(use.policy):
                worked = base.uses[use.as_]
            else:
                theirs = given.get(use.subject) if use.subject else subject
                worked = self._sub_decision(use, as_at, request, theirs if theirs in audiences.PARTY.values() else None,
                                            brief, None if base is None else base.uses[use.as_])
                fed.update(results)
            uses[use.as_] = worked
            if isinstance(worked, MissingFact):  # no version of it applies: its result stays unknown
                pending.update({result: [worked] for result in results})
                continue
            sub = subs[use.as_] = worked.decision
            if sub.outcome == UNDETERMINED:
                pending.update(dict.fromkeys(results, sub.missing_facts))
                continue
            given[results[0]] = sub.outcome
            if sub.amount_pence is not None:
                given[results[1]] = sub.amount_pence
        judged: dict[str, list[ItemVerdict]] = {}
        verdicts = []
        for cl in compiled.lists.values():
            items = lists.get(cl.spec.name)
            if items is None:
                absent = [MissingFact(name=cl.spec.name, description=cl.spec.description, question=cl.spec.question)]
                pending.update(dict.fromkeys(cl.spec.aggregates(), absent))
                continue
            if base is not None and cl.spec.name not in fed and fed.isdisjoint(n for r in cl.rules for n in r.tests):
                judged[cl.spec.name] = base.judged[cl.spec.name]
            else:  # its items, or a value its rules read, changed
                judged[cl.spec.name] = _judge_items(compiled, cl, items, given)
                fed.update(cl.spec.aggregates())
            verdicts += judged[cl.spec.name]
            aggregates, unknown = _aggregate(cl, judged[cl.spec.name])
            given.update(aggregates)
            pending.update({name: unknown for name in cl.spec.aggregates() if name not in aggregates})
        inputs = Inputs(facts=request.facts, parsed=parsed, lists=lists, uses=uses, judged=judged, tried={})
        return inputs, given, pending, subs, verdicts

    def _sub_decision(self, use: Uses, as_at: dt.date | None, request: DecisionRequest, subject: str | None,
                      brief: bool, base: Worked | MissingFact | None = None) -> Worked | MissingFact:
        """The decision of a used policy on the same request (its own facts only), or, when no
        version of it is in force on the date, why its result is unknown. `base`: its decision of
        the case a brief re-decision varies, which it varies in turn when the version is the same."""
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
        if isinstance(base, Worked) and base.inputs is not None and base.decision.policy == trail.policy_ref(compiled):
            given, pending, state = self._again(compiled, sub_as_at, sub_request, base.inputs, subject, dict(use.set))
            return self._evaluate(compiled, sub_as_at, given, [], pending, [], {}, subject, True, state=state)
        worked = self._decide(compiled, sub_as_at, sub_request, fixed=dict(use.set), subject=subject, brief=brief)
        if not brief:
            worked.decision.rationale = explainer.rationale(compiled.version, worked.decision)
        return worked

    # --- running the engine ---------------------------------------------------

    def _evaluate(self, compiled: CompiledPolicy, as_at: dt.date | None, given: dict, ignored: list[str],
                  pending: dict[str, list[MissingFact]], verdicts: list[ItemVerdict], subs: dict[str, Decision],
                  subject: str | None, brief: bool = False, for_parent: bool = False,
                  told: Decision | None = None, state: EngineState | None = None) -> Worked:
        """The engine's verdicts on `given` (or the `state` it already gave) turned into a decision."""
        pv, kinds = compiled.version, compiled.kinds
        state = compiled.run(given) if state is None else state
        if not state.complete:
            raise durable_host.EngineError(f"{compiled.ruleset}: the engine did not complete the decision")
        derived = state.derived
        known = {**given, **derived}

        true, false = set(state.true), set(state.false)
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
            outputs = [] if brief else [trail.output(pv, name, expr, known) for name, expr in rule.outputs.items()]
            roots, missing = [hit.index], []
        else:
            outcome, description = UNDETERMINED, UNDETERMINED_TEXT
            roots, missing = list(hit.blockers), trail.missing(compiled, hit.blockers, given, state, pending)
        if brief:
            decision = Decision(policy=trail.policy_ref(compiled), as_at=as_at, outcome=outcome,
                                outcome_description=description, amount_pence=amount, missing_facts=missing,
                                rationale="")
            return Worked(decision=decision, known=known, subject=subject, root=hit.index, decided=decided)

        fired = trail.fired(compiled, roots + [r.index for r in flags], state, whole=hit.index is not None)
        steps = [trail.step(compiled, compiled.rules[i].rule, state.used[i], kinds, derived) for i in fired]
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
            policy=trail.policy_ref(compiled), as_at=as_at, outcome=outcome, outcome_description=description,
            amount_pence=amount, outputs=outputs, items=verdicts, flags=flag_list, actions=actions, trail=steps,
            missing_facts=missing, ignored_facts=ignored, sub_decisions=used_subs, rationale="")  # written by the caller
        return Worked(decision=decision, known=known, subject=subject, root=hit.index, decided=decided)

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


def _judge_items(compiled: CompiledPolicy, cl: CompiledList, items: list[dict], given: dict) -> list[ItemVerdict]:
    """Each item by the list's rules (first hit per item), each in a session of its own (a
    session is cheap for the few rules of a list, and the verdicts need no item index)."""
    scopes = [cl.judge(item, given) for item in items]
    verdicts = []
    for n, item in enumerate(items):
        scope = scopes[n]
        hit = first_hit(cl.candidates, set(scope.true), set(scope.false))
        if hit.index is not None:
            rule = cl.rules[hit.index].rule
            step = trail.step(compiled, rule, scope.used[hit.index], cl.kinds, {})
            verdicts.append(ItemVerdict(list=cl.spec.name, index=n, outcome=rule.outcome,
                                        outcome_description=cl.spec.outcomes[rule.outcome], step=step))
            continue
        needed = dict.fromkeys(name for i in hit.blockers for name in cl.rules[i].tests
                               if name not in item and name not in given)
        item_facts = {f.name: f for f in cl.spec.facts}
        missing = [MissingFact(name=f"{cl.spec.name}[{n}].{name}", description=item_facts[name].description,
                               question=item_facts[name].question) if name in item_facts
                   else request_facts.fact_missing(compiled, name) for name in needed]
        verdicts.append(ItemVerdict(list=cl.spec.name, index=n, outcome=UNDETERMINED,
                                    outcome_description=UNDETERMINED_TEXT, missing_facts=missing))
    return verdicts


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


def _new_id() -> str:
    """A random (version 4) UUID's 32 hex digits, as uuid.uuid4().hex gives without building a UUID."""
    n = int.from_bytes(os.urandom(16), "big")
    return f"{n & ~(0xF000 << 64) & ~(0xC000 << 48) | 0x4000 << 64 | 0x8000 << 48:032x}"
