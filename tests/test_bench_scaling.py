"""Smoke test of bench/scaling.py: both measurements, a few decisions each."""
from __future__ import annotations

from bench import scaling


def test_rule_count_scaling():
    result = scaling.rule_count_scaling(counts=(5, 10), n=40)
    small, large = result["rows"]
    assert (small["outcome_rules"], large["outcome_rules"]) == (5, 10)
    assert small["engine_rules"] < large["engine_rules"] and small["engine_tests"] < large["engine_tests"]
    assert all(row["strata"] == 2 and 0 < row["decide_p50_us"] <= row["decide_p99_us"] for row in result["rows"])
    assert 0 < small["catch_all_share"] <= 1 and isinstance(result["linear"], bool)
    assert result["count_ratio"] == 2 and result["cost_ratio"] > 0


def test_version_count_effect():
    result = scaling.version_count_effect(n=40, versions=3)
    assert result["versions"] == {"alone": 1, "with_versions": 3}
    assert all(result[key]["p50_us"] > 0 and result[key]["load_s"] > 0 for key in ("alone", "with_versions"))
    assert result["p50_ratio"] > 0 and result["p99_ratio"] > 0
