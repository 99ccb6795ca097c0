"""The README's example requests, one per domain, decide as the README says, and its first
Python example prints what the README shows."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rules.engine.decision import DecisionRequest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
ROW = re.compile(r"^\| `(\w+)` \| (?:`(version|as_at)` ([\w-]+); )?`(\{.*\})` \| `(\w+)`(?:, (\d+) pence)?", re.M)
EXAMPLES = ROW.findall(README)


def test_the_readme_has_an_example_for_every_domain(bundle):
    assert sorted(e[0] for e in EXAMPLES) == sorted(bundle.policies)


@pytest.mark.parametrize("policy, key, value, facts, outcome, amount", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_readme_example(evaluator, policy, key, value, facts, outcome, amount):
    decision = evaluator.decide(DecisionRequest(policy=policy, facts=json.loads(facts), **({key: value} if key else {})))
    assert decision.outcome == outcome, decision.rationale
    if amount:
        assert decision.amount_pence == int(amount)


def _block_after(text: str, marker: str, lang: str) -> str:
    """The first fenced block of `lang` after `marker`."""
    rest = text[text.index(marker):]
    return re.search(rf"^```{lang}\n(.*?)^```$", rest, re.M | re.S)[1]


def test_the_first_python_example_prints_what_the_readme_says(server_process):
    """Run against the real service, the README's first example prints exactly what it shows."""
    proc, _ = server_process
    port = proc.args[proc.args.index("--port") + 1]
    code = _block_after(README, "## Asking for a decision", "python")
    shown = _block_after(README, "## Asking for a decision", "text")
    assert "localhost:50051" in code
    run = subprocess.run([sys.executable, "-c", code.replace("localhost:50051", f"127.0.0.1:{port}")],
                         capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout == shown
