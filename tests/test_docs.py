"""The documentation is true on a fresh clone: the generated policy documents under docs/policies/
are what `python -m rules doc --all` writes today, README.md stays a short guide, every relative
link and repository path the guide and docs/ name exists, and every `python -m rules` command they
show is one the CLI has."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from rules.authoring.doc import DEFAULT_EXAMPLES_DIR
from rules.explain.markdown import all_documents

ROOT = Path(__file__).resolve().parents[1]
POLICY_DOCS = ROOT / "docs" / "policies"
REFRESH = "python -m rules doc --all --out docs/policies"
README_LIMIT = 12 * 1024
# The hand-written pages: the README and docs/*.md (docs/policies/ is generated, checked below).
GUIDES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`")
TOP_DIRS = ("rules/", "service/", "tests/", "protos/", "bench/", "deploy/", "docs/", ".ci/")


def _generated(bundle) -> dict[str, str]:
    return all_documents(bundle, DEFAULT_EXAMPLES_DIR)


def test_policy_documents_are_committed_and_fresh(bundle):
    expected = _generated(bundle)
    committed = {p.relative_to(POLICY_DOCS).as_posix() for p in POLICY_DOCS.rglob("*.md")}
    stale = sorted(rel for rel, text in expected.items()
                   if not (POLICY_DOCS / rel).is_file() or (POLICY_DOCS / rel).read_text(encoding="utf-8") != text)
    extra = sorted(committed - set(expected))
    assert not stale and not extra, (
        f"docs/policies/ is not what the policy files and golden cases give today "
        f"(stale or missing: {stale}; no such version: {extra}). "
        f"Refresh it with `.venv/bin/{REFRESH}` and commit it.")


def test_the_refresh_command_writes_the_committed_documents(bundle, tmp_path):
    out = tmp_path / "policies"
    subprocess.run([sys.executable, "-m", "rules", "doc", "--all", "--out", str(out)], cwd=ROOT, check=True,
                   capture_output=True, text=True)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.md")) == sorted(_generated(bundle))
    again = subprocess.run([sys.executable, "-m", "rules", "doc", "--all", "--out", str(out)], cwd=ROOT, check=True,
                           capture_output=True, text=True)
    assert again.stdout.strip().startswith("0 of "), again.stdout  # nothing changes the second time


def test_the_index_links_every_version(bundle):
    index = (POLICY_DOCS / "README.md").read_text(encoding="utf-8")
    for policy, versions in bundle.policies.items():
        for version in versions:
            assert f"]({policy}/{version}.md)" in index


def test_the_readme_is_a_short_guide():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; keep it within 12 KB and move reference text to docs/"


def _links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def _anchors(path: Path) -> set[str]:
    """GitHub's ids for a Markdown file's headings: lower case, punctuation dropped, spaces as '-'."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", [*GUIDES, POLICY_DOCS / "README.md"], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_to_a_file_in_the_repository(page):
    broken = []
    for target in _links(page):
        file, _, anchor = target.partition("#")
        resolved = (page.parent / file).resolve() if file else page
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(target)  # a heading that is not there (renamed or moved)
    assert not broken, f"{page.relative_to(ROOT)} links to what a clone does not have: {broken}"


@pytest.mark.parametrize("page", GUIDES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_repository_path_named_exists(page):
    """A `code` span that is a path in the repository (`tests/golden/`, `deploy/kubernetes.yaml`)
    names something a clone has; paths with placeholders (`<policy>`, `DIR`, `*`) are patterns."""
    missing = []
    for span in CODE.findall(page.read_text(encoding="utf-8")):
        path = span.split("::")[0].split(" ")[0].rstrip(".,:;")
        if not path.startswith(TOP_DIRS) or re.search(r"[<>*{}…]|\.\.\.|[A-Z]{3,}", path):
            continue
        if not (ROOT / path).exists():
            missing.append(path)
    assert not missing, f"{page.relative_to(ROOT)} names paths a clone does not have: {missing}"


def _cli_commands() -> set[str]:
    help_text = subprocess.run([sys.executable, "-m", "rules", "--help"], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout
    return set(re.search(r"\{([\w,-]+)\}", help_text)[1].split(","))


def test_every_rules_command_shown_exists():
    commands = _cli_commands()
    shown = {(page.name, c) for page in GUIDES
             for c in re.findall(r"python -m rules ([a-z][\w-]*)", page.read_text(encoding="utf-8"))}
    assert shown, "the guide shows no `python -m rules` command"
    unknown = sorted((page, c) for page, c in shown if c not in commands)
    assert not unknown, f"commands the CLI does not have: {unknown}"


def test_the_readme_set_up_commands_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    dev = (ROOT / "dev").read_text(encoding="utf-8")
    for command in ("serve", "test"):
        assert f"./dev {command}" in readme
        assert re.search(rf"^\s*{command}\)", dev, re.M), f"./dev has no '{command}' command"


NUMBERS = {"five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}


def test_the_readme_counts_the_domains_it_lists(bundle):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    said = re.search(r"The (\w+) policy domains", readme)[1]
    table = readme[readme.index("| policy | versions |"):].split("\n\n")[0].splitlines()[2:]
    assert NUMBERS[said] == len(table) == len(bundle.policies)
    assert sorted(re.match(r"\| `(\w+)`", row)[1] for row in table) == sorted(bundle.policies)


@pytest.mark.parametrize("page", GUIDES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_page_points_outside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    outside = [s for s in CODE.findall(text) + LINK.findall(text)
               if s.startswith("../") and not (page.parent / s.split("#")[0]).resolve().is_relative_to(ROOT)]
    assert not outside, f"{page.relative_to(ROOT)} names what is outside the repository: {outside}"


@pytest.mark.parametrize("page", GUIDES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_page_that_shows_python_m_says_which_python(page):
    """`python -m rules` needs the project's environment: a bare `python` lacks durable_rules."""
    text = page.read_text(encoding="utf-8")
    if re.search(r"(?<![/\w])python -m (rules [a-z]|service\b)", text):  # a command to run
        assert ".venv/bin/python" in text, f"{page.relative_to(ROOT)} shows `python -m` without saying it means .venv"
