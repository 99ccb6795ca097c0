"""Impact runs: `python -m rules impact` started as a process of its own, one at a time, each in a
folder of `config.reports`, and read back from the files it writes.

The console may not import the policy tools (an import-linter contract keeps any engine out of
it), so it starts the command with this interpreter and reads its files. A run's folder,
`<reports>/<run id>/`:

- `run.json`: what was asked, when, and by which caller (a prefix of the token's sha256, as the
  service's authz file lists tokens; never the token), written before the process starts;
- `stdout.txt` (the Markdown), `stderr.txt` (a progress line each tenth of the cases, then errors);
- `impact.md`, `impact.json`, `impact.png`: the report (`--out`);
- `exit.json`: the process's return code, written when it ends.

A run is running while this console's process watches it; a folder without `exit.json` that no
one watches was interrupted (the console stopped first). Its cases are synthetic (made by the
corpus generator: no real person's facts) or those of a case folder the console was started with
(`--cases-folder`): then the report's examples hold some of those cases' facts, and whoever may
read both versions may read it, as the service's authorisation decides.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .config import ROOT

RUN_ID = re.compile(r"\A[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}\Z")  # a timestamp and 48 random bits
DOWNLOADS = {"impact.md": "text/markdown; charset=utf-8", "impact.json": "application/json",
             "impact.png": "image/png"}
CASE_SUFFIXES = (".jsonl", ".json", ".yaml", ".yml")  # the files `rules impact --cases` reads
_PROGRESS = re.compile(r"^impact: ([0-9]+)/([0-9]+) cases \(([0-9]+)%\)", re.MULTILINE)
TAIL_LINES = 40  # of a failed run's error output
# The child's environment: enough to run Python and matplotlib, nothing else of the console's.
_ENV_KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")


class RunBusy(Exception):
    """Another run is under way (its id in `args[0]`)."""


@dataclass(frozen=True)
class Run:
    id: str
    folder: Path
    asked: dict  # run.json
    status: str  # running | done | failed
    returncode: int | None = None
    interrupted: bool = False
    cases_done: int = 0
    cases_total: int = 0  # as the progress line says (0 before the first)
    percent: int = 0
    report: dict | None = field(default=None, repr=False)  # impact.json, when done

    def has(self, name: str) -> bool:
        return name in DOWNLOADS and (self.folder / name).is_file()

    def error_tail(self) -> str:
        """The end of the run's error output (no token is ever given to the command; a case's
        problems go to the report, not here)."""
        lines = _read(self.folder / "stderr.txt").splitlines()
        return "\n".join(lines[-TAIL_LINES:])


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict) -> None:
    """Whole or not at all: a reader never sees half a file."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


def new_run_id(now: datetime | None = None) -> str:
    return f"{(now or datetime.now(UTC)):%Y%m%dT%H%M%SZ}-{secrets.token_hex(6)}"


def caller(token: str | None) -> str | None:
    """Who started a run, as the authz file knows them: the start of their token's sha256."""
    return hashlib.sha256(token.encode()).hexdigest()[:16] if token else None


class Runs:
    """The runs in one reports folder, and the one this process is watching, if any."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = threading.Lock()
        self._live: dict[str, subprocess.Popen] = {}

    def running(self) -> str | None:
        with self._lock:
            return next(iter(self._live), None)

    def start(self, asked: dict, argv: list[str], cwd: Path | None = None) -> str:
        """Make the run's folder, write run.json and start `python -m rules impact` with `argv` and
        `--out` the folder, in `cwd` (default: the checkout); RunBusy if a run is under way."""
        with self._lock:
            if self._live:
                raise RunBusy(next(iter(self._live)))
            run_id = new_run_id()
            folder = self.folder / run_id
            folder.mkdir(parents=True)
            _write_json(folder / "run.json", {**asked, "run_id": run_id,
                                              "started": datetime.now(UTC).isoformat(timespec="seconds")})
            env = {k: v for k, v in os.environ.items() if k in _ENV_KEPT} | {"PYTHONUNBUFFERED": "1",
                                                                               "MPLBACKEND": "Agg"}
            with open(folder / "stdout.txt", "wb") as out, open(folder / "stderr.txt", "wb") as err:
                try:
                    process = subprocess.Popen([sys.executable, "-m", "rules", "impact", *argv,
                                                "--out", str(folder.resolve())], cwd=cwd or ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
                except OSError as exc:  # recorded as a failed run, with why
                    err.write(f"error: the impact command could not be started: {exc}\n".encode())
                    _write_json(folder / "exit.json", {"returncode": None})
                    return run_id
            self._live[run_id] = process
        threading.Thread(target=self._watch, args=(run_id, folder, process), daemon=True,
                         name=f"impact-{run_id}").start()
        return run_id

    def _watch(self, run_id: str, folder: Path, process: subprocess.Popen) -> None:
        returncode = process.wait()
        try:
            _write_json(folder / "exit.json", {"returncode": returncode,
                                               "finished": datetime.now(UTC).isoformat(timespec="seconds")})
        finally:
            with self._lock:
                self._live.pop(run_id, None)

    def get(self, run_id: str, report: bool = True) -> Run | None:
        """The run with this id, or None (a malformed id never reaches the file system). `report`:
        read its impact.json (else a finished run with one is done, unread: for the list of runs)."""
        if not RUN_ID.match(run_id):
            return None
        folder = self.folder / run_id
        asked = _json(folder / "run.json")
        if asked is None:
            return None
        ended = _json(folder / "exit.json")
        with self._lock:
            live = run_id in self._live
        if ended is None:
            if live:
                done, total, percent = _progress(_read(folder / "stderr.txt"))
                return Run(run_id, folder, asked, "running", cases_done=done, cases_total=total, percent=percent)
            return Run(run_id, folder, asked, "failed", interrupted=True)
        returncode = ended.get("returncode")
        data = None
        if returncode == 0:
            data = _json(folder / "impact.json") if report else {} if (folder / "impact.json").is_file() else None
        if data is None:
            return Run(run_id, folder, asked, "failed", returncode=returncode if isinstance(returncode, int) else None)
        return Run(run_id, folder, asked, "done", returncode=0, percent=100, report=data or None)

    def all(self) -> list[Run]:
        """Every run in the folder, newest first (a run id starts with its time)."""
        if not self.folder.is_dir():
            return []
        ids = sorted((p.name for p in self.folder.iterdir() if p.is_dir() and RUN_ID.match(p.name)), reverse=True)
        return [run for run in (self.get(i, report=False) for i in ids) if run is not None]


def case_files(folder: Path) -> int:
    """The files of cases under `folder` that `rules impact --cases` reads: those with a case
    suffix, recursively, leaving out hidden files and folders (as it does)."""
    try:
        return sum(1 for path in folder.rglob("*") if path.suffix.lower() in CASE_SUFFIXES and path.is_file()
                   and not any(part.startswith(".") for part in path.relative_to(folder).parts))
    except OSError:
        return 0


def _progress(stderr: str) -> tuple[int, int, int]:
    """The last progress line's cases done, total and percentage (0s before the first)."""
    lines = _PROGRESS.findall(stderr)
    if not lines:
        return 0, 0, 0
    done, total, percent = lines[-1]
    return int(done), int(total), int(percent)


_REGISTRY: dict[Path, Runs] = {}
_REGISTRY_LOCK = threading.Lock()


def runs(folder: Path) -> Runs:
    """The runs of a reports folder: one watcher a folder in this process, whichever app asks."""
    key = folder.resolve()
    with _REGISTRY_LOCK:
        return _REGISTRY.setdefault(key, Runs(key))
