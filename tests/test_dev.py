"""`./dev` as a newcomer meets it: one clear error and exit 1 without Python 3.11 or 3.12 (no pyenv
noise from probing), a quiet install (its output only when it fails, with the log's path), and
`./dev rules ...` passing its arguments to the policy tools. Runs a copy of ./dev with fake
interpreters on a PATH that holds nothing else, so no real Python or pip is involved."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import ROOT

TOOLS = ["bash", "env", "dirname", "find", "touch", "mktemp", "rm", "tail", "sed", "mkdir", "chmod", "cat"]

# A pyenv shim for a version pyenv does not have: it exists on PATH, and complains when run.
PYENV_SHIM = """\
#!/usr/bin/env bash
echo "pyenv: $(basename "$0"): command not found" >&2
echo >&2; echo "The \\`$(basename "$0")' command exists in these Python versions:" >&2
exit 127
"""
# Python 3.13: the version probe fails.
PYTHON_313 = """\
#!/usr/bin/env bash
[ "$1" = -c ] && exit 1
echo "Python 3.13.0"
"""
# A supported Python whose venv's python fakes pip (300 lines, exit $FAKE_PIP_RC for the project
# install) and runs nothing else but echoes what it was asked.
GOOD_PYTHON = """\
#!/usr/bin/env bash
[ "$1" = -c ] && exit 0
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"
  cat > "$3/bin/python" <<'VENV'
#!/usr/bin/env bash
if [ "$1 $2" = "-m pip" ]; then
  for ((i = 1; i <= 300; i++)); do echo "pip line $i: $*"; done
  [[ "$*" == *"-e .[test]"* ]] && exit "${FAKE_PIP_RC:-0}"
  exit 0
fi
echo "ran: $*"
VENV
  chmod +x "$3/bin/python"
fi
"""


@pytest.fixture
def sandbox(tmp_path):
    """A copy of ./dev in an empty project, and a PATH with only the tools it uses."""
    repo = tmp_path / "repo"
    (repo / "protos").mkdir(parents=True)
    (repo / "cms_policy").mkdir()  # what the real install generates
    shutil.copy(ROOT / "dev", repo / "dev")
    (repo / "pyproject.toml").write_text("")
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in TOOLS:
        (tools / tool).symlink_to(shutil.which(tool))
    shims = tmp_path / "shims"
    shims.mkdir()
    return repo, shims, tools


def _shim(shims: Path, name: str, text: str) -> None:
    (shims / name).write_text(textwrap.dedent(text))
    (shims / name).chmod(0o755)


def _dev(sandbox, *args: str, **env: str) -> subprocess.CompletedProcess:
    repo, shims, tools = sandbox
    return subprocess.run([str(repo / "dev"), *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": f"{shims}:{tools}", "TMPDIR": str(repo.parent), **env})


def test_without_python_3_11_or_3_12_it_says_so_once_and_exits_1(sandbox):
    repo, shims, _ = sandbox
    _shim(shims, "python3.12", PYENV_SHIM)
    _shim(shims, "python3.11", PYENV_SHIM)
    _shim(shims, "python3", PYTHON_313)
    result = _dev(sandbox, "test")
    assert result.returncode == 1, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Python 3.11 or 3.12 is required"), lines
    assert not (repo / ".venv").exists()
    assert not list(repo.parent.glob("cms-policy-install.*"))  # no log left behind


def test_the_install_is_quiet_and_the_probe_hides_pyenv_noise(sandbox):
    repo, shims, _ = sandbox
    _shim(shims, "python3.12", PYENV_SHIM)  # tried first: its complaint must not be shown
    _shim(shims, "python3.11", GOOD_PYTHON)
    first = _dev(sandbox, "rules", "validate", "some dir", "--strict")
    assert first.returncode == 0, first
    assert first.stdout == "ran: -m rules validate some dir --strict\n"  # arguments passed as given
    assert first.stderr.splitlines() == [
        "dev: creating .venv with python3.11 and installing the project (a minute or two the first time)..."]
    assert not list(repo.parent.glob("cms-policy-install.*"))  # the log goes when the install works
    again = _dev(sandbox, "test", "-x")
    assert (again.returncode, again.stdout, again.stderr) == (0, "ran: -m pytest -x\n", "")


def test_a_failed_install_shows_the_end_of_its_output_and_where_the_rest_is(sandbox):
    repo, shims, _ = sandbox
    _shim(shims, "python3.12", GOOD_PYTHON)
    failed = _dev(sandbox, "serve", FAKE_PIP_RC="1")
    assert failed.returncode == 1 and "ran:" not in failed.stdout, failed
    lines = failed.stderr.splitlines()
    assert lines[1].startswith("error: installing into .venv failed (.venv/bin/python -m pip install -e .[test])")
    assert "pip line 300" in lines[-2] and len(lines) < 35
    log = Path(lines[-1].removeprefix("full output: "))
    assert log.is_file() and "pip line 1:" in log.read_text()
    # Not marked installed: the next run installs again (and says so).
    retry = _dev(sandbox, "serve")
    assert retry.returncode == 0 and retry.stdout == "ran: -m service\n", retry
    assert retry.stderr.splitlines() == ["dev: installing the project into .venv (its definition or protos changed)..."]


def test_the_authoring_tools_run_as_a_console_script():
    script = Path(sys.executable).parent / "cms-policy"
    result = subprocess.run([str(script), "validate", "--help"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PATH": "/usr/bin:/bin"})  # no .venv on PATH: the script finds it
    assert result.returncode == 0, result.stderr
    assert "usage: cms-policy validate" in result.stdout


def test_the_build_warns_about_nothing(tmp_path):
    """A newcomer's first install showed setuptools "Package would be ignored" warnings, one for
    each policy folder (pip -v shows what the backend says; ./dev keeps it in its log)."""
    source = tmp_path / "source"
    generated = {".git", ".venv", "node_modules", "build", "dist", "cms_policy", "tests", "bench"}  # at the top only
    shutil.copytree(ROOT, source, ignore=lambda folder, names: [
        n for n in names if n == "__pycache__" or n.endswith(".egg-info") or (Path(folder) == ROOT and n in generated)])
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                             "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    said = (result.stdout + result.stderr).splitlines()
    assert not [line for line in said if "Warning" in line or "would be ignored" in line], "\n".join(said)
