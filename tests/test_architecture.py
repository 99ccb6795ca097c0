"""The layers the folder tree shows hold: `lint-imports` checks the contracts in pyproject.toml
(language <- engine <- explain/audit <- decide <- {service, authoring}; the service never imports the
command-line tools; the decision log needs only the decision models; only
rules/engine/durable_host.py imports durable_rules). See docs/architecture.md."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
