"""Smoke test of bench/engine_cost.py: every loaded version is measured against application_fee/2017."""
from __future__ import annotations

from bench import engine_cost


def test_engine_cost_quick(bundle):
    result = engine_cost.measure(quick=True, bundle=bundle)
    versions = result["versions"]
    assert set(versions) == {f"{p}/{v}" for p, vs in bundle.policies.items() for v in vs}
    assert versions[engine_cost.REFERENCE]["decision"]["ratio"] == 1
    mc = versions["maintenance_calculation/2012"]
    assert mc["strata"] == 3 and mc["decision"]["rounds"] >= 4 and mc["decision"]["engine_us"] > 0
    assert all(row["cases"] and row["decision"]["sessions"] >= 1 for row in versions.values())
    assert result["target"]["pass"] == (result["target"]["worst"] <= result["target"]["bound"])
