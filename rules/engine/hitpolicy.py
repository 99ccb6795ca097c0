"""The "first hit" policy over the engine's verdicts.

Rules deciding the same thing (the outcome, or one derived value) are tried
in file order. The engine reports each rule's condition as true, false, or
neither (unknown: a fact it needs is missing). The first true rule decides,
unless an earlier rule is unknown and would decide differently: then the
answer depends on the missing facts and is unknown too.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Hit:
    index: int | None  # the deciding rule, if any
    blockers: tuple[int, ...] = ()  # unknown rules that stop a decision

    @property
    def unknown(self) -> bool:
        return bool(self.blockers)


def first_hit(candidates: Sequence[tuple[int, Hashable]], true: set[int], false: set[int]) -> Hit:
    """`candidates` are (rule index, conclusion) in file order."""
    pending: list[tuple[int, Hashable]] = []
    for index, conclusion in candidates:
        if index in true:
            blockers = tuple(i for i, c in pending if c != conclusion)
            return Hit(None, blockers) if blockers else Hit(index)
        if index not in false:
            pending.append((index, conclusion))
    return Hit(None, tuple(i for i, _ in pending))
