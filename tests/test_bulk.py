"""Bulk runs through Dask (rules/authoring/bulk.py): chunks decided on worker processes and merged
in order give exactly what one process gives; sensitive work goes off the machine only over TLS."""
from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from rules.authoring import bulk, corpus, impact
from rules.engine.decision import DecisionRequest
from rules.engine.loader import DEFAULT_POLICY_DIR

ROOT = Path(__file__).resolve().parents[1]
POLICIES = str(DEFAULT_POLICY_DIR.resolve())
CASES = Path(__file__).parent / "fixtures" / "impact"
PAIRS = [("application_fee", "2017", "review-2023"), ("service_type", "2012", "reform-2025"),
         ("prisoner_liability", "2012", "review-2023"), ("caseworker_routing", "2024", "review-2023-pilot")]


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def loaded():
    return bulk.loaded(POLICIES)


def _corpus(policy: str, count: int, seed: int) -> list[impact.Case]:
    """The corpus file's cases in one piece, with its line numbers as ids."""
    return [impact.Case(f"{policy}.jsonl:{n}", r["facts"], r["policy"])
            for n, r in enumerate(corpus.generate(policy, count, seed), 1)]


def _rules(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rules", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_the_impact_report_is_byte_for_byte_the_same_through_dask():
    args = ["impact", "application_fee/2017", "application_fee/review-2023", "--count", "2000", "--no-chart"]
    one, dask = _rules(*args, "--workers", "1"), _rules(*args, "--workers", "2")
    assert one.returncode == dask.returncode == 0, one.stderr + dask.stderr
    assert one.stdout == dask.stdout
    assert "1 process" in one.stderr and "2 Dask workers" in dask.stderr
    assert "| cases compared | 2000 | 100.0% |" in one.stdout


@pytest.mark.parametrize("policy,old,new", PAIRS)
def test_small_chunks_merged_in_order_give_the_one_pass_report(policy, old, new, client, loaded):
    bundle, evaluator = loaded
    whole = impact.compare(evaluator, bundle, policy, old, new, _corpus(policy, 600, 2023))
    for where in (None, client):
        chunked = impact.compare_bulk(where, POLICIES, bundle, policy, old, new, synthetic=(600, 2023), chunk=77)
        assert impact.render(chunked, bundle, "c", "c") == impact.render(whole, bundle, "c", "c")
        assert chunked.distinct == whole.distinct


def test_chunks_of_read_cases_keep_invalid_skipped_and_unreadable_ones(client, loaded):
    bundle, evaluator = loaded
    cases = impact.read_cases(CASES) * 3
    whole = impact.compare(evaluator, bundle, "application_fee", "2024", "review-2023", cases)
    chunked = impact.compare_bulk(client, POLICIES, bundle, "application_fee", "2024", "review-2023", cases=cases,
                                  chunk=4)
    assert impact.render(chunked, bundle, "c", "c") == impact.render(whole, bundle, "c", "c")
    assert chunked.distinct == whole.distinct == 11  # the same facts three times are 11 fact sets


def test_a_chunk_of_the_corpus_is_made_from_the_generator_state():
    whole = corpus.generate("service_type", 500, 7)
    assert [r for start, n, state in corpus.chunks("service_type", 500, 7, 123)
            for r in corpus.generate_chunk("service_type", state, n)] == whole
    ids = [c.id for start, n, state in corpus.chunks("service_type", 500, 7, 123)
           for c in impact.synthetic_chunk("service_type", start, n, state)]
    assert ids == [c.id for c in _corpus("service_type", 500, 7)]


@pytest.mark.parametrize("policy,old,new", PAIRS)
def test_an_unexplained_decision_is_the_evaluators_without_the_explanations(policy, old, new, loaded):
    _, evaluator = loaded
    fields = ("policy", "outcome", "amount_pence", "outputs", "flags", "trail", "missing_facts", "items")
    for request in corpus.generate(policy, 120, 11):
        for version in (old, new):
            asked = DecisionRequest(policy=policy, version=version, facts=request["facts"], counterfactuals=False)
            plain, full = evaluator.decide_unexplained(asked), evaluator.decide(asked)
            assert [getattr(plain, f) for f in fields] == [getattr(full, f) for f in fields]
            assert [s.policy for s in plain.sub_decisions] == [s.policy for s in full.sub_decisions]


def test_sensitive_work_goes_off_this_machine_only_over_tls():
    with pytest.raises(bulk.BulkError, match=r"must be a tls:// address"):
        bulk.check_scheduler("tcp://10.20.30.40:8786", sensitive=True)
    with pytest.raises(bulk.BulkError, match=r"must be a tls:// address"):
        bulk.check_scheduler("scheduler.internal:8786", sensitive=True)
    for fine in ("tls://10.20.30.40:8786", "tcp://127.0.0.1:8786", "localhost:8786", "tcp://[::1]:8786"):
        bulk.check_scheduler(fine, sensitive=True)
    bulk.check_scheduler("tcp://10.20.30.40:8786", sensitive=False)  # synthetic cases: a generator's state
    refused = _rules("impact", "application_fee/2024", "application_fee/review-2023", "--cases", str(CASES),
                     "--scheduler", "tcp://10.20.30.40:8786")
    assert refused.returncode == 1 and "must be a tls:// address" in refused.stderr and not refused.stdout


def test_workers_on_other_policy_files_are_refused():
    with pytest.raises(bulk.BulkError, match="other policy files"):
        bulk.same_bundle("a" * 64, "b" * 64)


def test_progress_off_a_terminal_is_a_line_a_tenth():
    out = io.StringIO()
    progress = bulk.Progress(1000, "impact", out)
    for _ in range(40):
        progress.advance(25)
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("impact: 1000/1000 cases (100%)")
    assert "\r" not in out.getvalue()
