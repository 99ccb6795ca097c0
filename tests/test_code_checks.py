"""The code is checked as the README's test command runs: ruff (rules in pyproject.toml: pyflakes,
bugbear, import order, pyupgrade, simplify, ruff's own) over every Python file but the generated stubs, and mypy
([tool.mypy] in pyproject.toml) over the rules and service packages."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def test_ruff_finds_nothing():
    done = subprocess.run([_tool("ruff"), "check", "--no-cache", "--output-format", "concise", "."], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_mypy_finds_nothing():
    # `mypy` with no arguments checks the packages [tool.mypy] in pyproject.toml names.
    done = subprocess.run([_tool("mypy"), "--no-incremental", "--no-error-summary"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
