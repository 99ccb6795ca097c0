"""The benchmark's compute floors (bench/floors.py) decide every golden case as the engine does."""
from __future__ import annotations

import pytest

from bench.floors import FLOORS, agreement

# Golden cases that a complete-facts floor cannot match: each leaves out a fact, and the engine still decides
# because every earlier rule it cannot test would conclude the same. The floor needs the fact and raises KeyError.
EXCLUDED = {
    # applicant_date_of_birth is missing: waived.under-19 is unknown, but waived.domestic-abuse gives WAIVED too.
    ("application_fee", "2014"): ["20-abuse-waiver-date-of-birth-unknown.yaml"],
    ("application_fee", "2017"): ["20-abuse-waiver-date-of-birth-unknown.yaml"],
    # The first item lacks organisation_months_operating (UNDETERMINED), but the second is ACCEPTED: VERIFIED.
    ("abuse_evidence", "2018"): ["17-undecided-item-beside-accepted-item.yaml"],
}


@pytest.mark.parametrize("policy, version", sorted(FLOORS))
def test_floor_agrees_with_golden(policy, version):
    agreeing, compared, disagreeing = agreement(policy, version)
    assert compared > 0
    assert disagreeing == EXCLUDED.get((policy, version), [])
    assert agreeing == compared - len(disagreeing)
