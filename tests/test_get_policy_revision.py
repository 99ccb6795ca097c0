"""GetPolicyRequest.revision: an earlier revision of a corrected version, as it was (it stays loaded
so that the decisions it made replay), beside the current one; an unknown one is NOT_FOUND."""
from __future__ import annotations

import grpc
import pytest

from cms_policy.v1 import policy_pb2 as pb


def _get(stub, **kwargs) -> pb.GetPolicyResponse:
    return stub.GetPolicy(pb.GetPolicyRequest(**kwargs), timeout=10)


def test_revision_0_and_the_current_number_are_the_current_revision(stub):
    current = _get(stub, policy="application_fee", version="2017")
    assert current.ref.revision == 2 and [c.revision for c in current.corrections] == [2, 2]
    assert _get(stub, policy="application_fee", version="2017", revision=2) == current
    [first] = current.earlier_revisions
    assert first.revision == 1 and first.content_hash != current.ref.content_hash


def test_an_earlier_revision_is_served_as_it_was(stub):
    current = _get(stub, policy="application_fee", version="2017")
    first = _get(stub, policy="application_fee", version="2017", revision=1)
    assert first.ref.revision == 1 and first.ref.version == "2017"
    assert first.ref.content_hash == current.earlier_revisions[0].content_hash != current.ref.content_hash
    assert not first.corrections and not first.earlier_revisions  # nothing before it
    # abuse_evidence 2013's revision 2 made the MARAC rule's reason say what the letter showed.
    old, new = (_get(stub, policy="abuse_evidence", version="2013", revision=r) for r in (1, 0))
    old_rule, new_rule = (next(r for r in p.lists[0].rules if r.id == "item.marac-not-chair-high-risk") for p in (old, new))
    assert "{from_marac_chair}" in new_rule.because and "{from_marac_chair}" not in old_rule.because


def test_an_earlier_revision_works_with_as_at_and_markdown(stub):
    first = _get(stub, policy="application_fee", as_at="2020-01-01", revision=1, markdown=True)
    assert first.ref.version == "2017" and first.ref.revision == 1
    assert first.markdown.startswith(f"# {first.ref.title}")


@pytest.mark.parametrize(("kwargs", "code", "words"), [
    ({"policy": "application_fee", "version": "2017", "revision": 3}, grpc.StatusCode.NOT_FOUND,
     "application_fee/2017 has no revision 3; loaded: 1, 2"),
    ({"policy": "maintenance_calculation", "version": "2012", "revision": 7}, grpc.StatusCode.NOT_FOUND, "no revision 7"),
    ({"policy": "application_fee", "version": "2017", "revision": -1}, grpc.StatusCode.INVALID_ARGUMENT, ""),
])
def test_a_revision_that_is_not_loaded_is_not_found(stub, kwargs, code, words):
    with pytest.raises(grpc.RpcError) as caught:
        _get(stub, **kwargs)
    assert caught.value.code() == code and words in caught.value.details()
