"""Impact: what would change if a new version replaced an old one, over a corpus of cases.

A run is `python -m rules impact OLD NEW --count N --seed S --out <reports>/<run id>` (synthetic
cases) or `... --cases <folder> --out ...` (a case folder the console was started with: a user
picks one by its name, never types a path), started as a process of its own
(console/impactruns.py: the console holds no engine), one at a time. Before it starts, the
service is asked for both versions with the user's token, so its authorisation decides who may
weigh a change to a policy (and who may read a report of one). While it runs its page follows
the progress the command prints (a small script, or a Check progress link); when done it shows
the report's data (impact.json): the outcomes under each version as a chart and a table, the
transitions, the rules and example cases of each change, amounts, flags and errors, and the
report's files to download.

A folder's report holds some of its cases' facts (the examples of each change): the form says so,
and it is shown, like any report, to whoever the service lets read both versions. The folder's
path stays on the console's machine: run.json and the pages name it by its folder name. A sample
of the decision log is not offered: it needs the log's key, which only the service holds, and the
API has no call that samples it.
"""
from __future__ import annotations

import re
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse
from starlette.routing import Route

from cms_policy.v1 import policy_pb2 as pb

from ..charts import Series, bar_chart
from ..formatting import pounds
from ..impactruns import DOWNLOADS, Run, RunBusy, caller, case_files, runs
from ..render import render
from ..security import checked_form, token

DEFAULT_CASES = 10_000
# The console's machine decides them: a million cases took 8 to 27 minutes on two cores (so 200,000
# a few minutes, with the console's other users waiting on the same cores); larger runs belong on a
# machine for bulk work (`python -m rules impact`, with --scheduler for a cluster).
MAX_CASES = 200_000
DEFAULT_SEED = 2023  # the corpus generator's own default
MAX_SEED = 2**31 - 1
LISTED = 50  # newest runs listed
STATUS_TAGS = {"running": ("Running", "govuk-tag--blue"), "done": ("Done", "govuk-tag--green"),
               "failed": ("Failed", "govuk-tag--red")}


def _options(listing: pb.ListPoliciesResponse) -> list[tuple[str, list[tuple[str, str]]]]:
    """Each policy's versions as (value "policy/version", label), for the selects' option groups."""
    return [(p.policy, [(f"{p.policy}/{v.version}", _version_label(v)) for v in p.versions]) for p in listing.policies]


def _version_label(ref: pb.PolicyRef) -> str:
    if ref.effective_from and ref.effective_to:
        return f"{ref.version} ({ref.status}, {ref.effective_from} to {ref.effective_to})"
    if ref.effective_from:
        return f"{ref.version} ({ref.status}, from {ref.effective_from})"
    return f"{ref.version} ({ref.status})"


SYNTHETIC = "synthetic"  # the corpus choice's value for synthetic cases; a folder's is "folder:<its name>"


def _folders(request: Request) -> dict[str, Path]:
    """The configured case folders by their choice values (their names are distinct: Config.check)."""
    return {f"folder:{folder.name}": folder for folder in request.app.state.config.case_folders}


def _index(request: Request, listing: pb.ListPoliciesResponse, values: dict[str, str],
           errors: dict[str, str], status_code: int = 200):
    registry = runs(request.app.state.config.reports)
    everything = registry.all()
    folders = [(value, folder.name, case_files(folder)) for value, folder in _folders(request).items()]
    return render(request, "impact.html", status_code=status_code, section="impact",
                  runs=everything[:LISTED], more=max(0, len(everything) - LISTED), options=_options(listing),
                  values=values, errors=errors, error_summary=list(errors.items()), running=registry.running(),
                  max_cases=MAX_CASES, tags=STATUS_TAGS, folders=folders)


def index(request: Request):
    listing = request.app.state.client.list_policies(token(request))
    first = listing.policies[0].versions if listing.policies else []
    values = {"old": f"{first[0].policy}/{first[0].version}" if first else "",
              "new": f"{first[1].policy}/{first[1].version}" if len(first) > 1 else "",
              "count": str(DEFAULT_CASES), "seed": str(DEFAULT_SEED), "corpus": SYNTHETIC}
    return _index(request, listing, values, {})


def _number(text: str, name: str, what: str, low: int, high: int, errors: dict[str, str]) -> int:
    cleaned = text.replace(",", "").replace(" ", "")
    if not re.fullmatch(r"[0-9]{1,12}", cleaned):  # ASCII digits only: str.isdigit() takes "²", int() does not
        errors[name] = f"Enter the {what} as a whole number, like {DEFAULT_CASES if name == 'count' else DEFAULT_SEED}"
        return 0
    value = int(cleaned)
    if not low <= value <= high:
        errors[name] = f"The {what} must be between {low:,} and {high:,}"
    return value


def _check(values: dict[str, str], listing: pb.ListPoliciesResponse,
           folders: dict[str, Path]) -> tuple[dict[str, str], int, int]:
    """What is wrong with the form, field by field (its anchors are the fields' ids), and its
    numbers (synthetic cases only: a folder's cases are its own)."""
    errors: dict[str, str] = {}
    known = {value for _, versions in _options(listing) for value, _ in versions}
    if values["old"] not in known:
        errors["old"] = "Choose the version in force now, or the one to compare from"
    if values["new"] not in known:
        errors["new"] = "Choose the version that would replace it"
    elif "old" not in errors:
        if values["new"].split("/")[0] != values["old"].split("/")[0]:
            errors["new"] = "Choose a version of the same policy as the old version"
        elif values["new"] == values["old"]:
            errors["new"] = "Choose a different version from the old one"
    if values["corpus"] in folders:
        if not case_files(folders[values["corpus"]]):
            errors["corpus"] = f"The folder {folders[values['corpus']].name} has no case files: choose another"
        return errors, 0, 0
    if values["corpus"] != SYNTHETIC:  # only the configured folders, by name: never a path from the form
        errors["corpus"] = "Choose synthetic cases or one of the case folders"
        return errors, 0, 0
    count = _number(values["count"], "count", "number of cases", 1, MAX_CASES, errors)
    seed = _number(values["seed"], "seed", "seed", 0, MAX_SEED, errors)
    return errors, count, seed


def _ref(ref: pb.PolicyRef) -> dict:
    return {"policy": ref.policy, "version": ref.version, "revision": ref.revision, "status": ref.status,
            "title": ref.title, "content_hash": ref.content_hash}


async def start(request: Request):
    form = await checked_form(request)
    client, who = request.app.state.client, token(request)
    listing = await run_in_threadpool(client.list_policies, who)
    values = {name: str(form.get(name, "")).strip() for name in ("old", "new", "count", "seed")}
    values["corpus"] = str(form.get("corpus", SYNTHETIC))  # a form without case folders has no choice
    folders = _folders(request)
    errors, count, seed = await run_in_threadpool(_check, values, listing, folders)  # counts a folder's files
    if errors:
        return _index(request, listing, values, errors, status_code=400)
    registry = runs(request.app.state.config.reports)
    if (under_way := registry.running()) is not None:
        return _busy(request, under_way)
    # The service's authorisation, with the user's own token: a refusal is a 403 page, nothing started.
    (policy, old), (_, new) = values["old"].split("/", 1), values["new"].split("/", 1)
    refs = [(await run_in_threadpool(client.get_policy, who, policy, version)).ref for version in (old, new)]
    corpus: dict[str, str | int]
    where = None
    if values["corpus"] in folders:
        # run beside the folder and name it alone: the report records `--cases` as given, and this
        # machine's paths are not for the report's readers
        folder = folders[values["corpus"]].resolve()
        corpus, cases, where = {"kind": "folder", "name": folder.name}, ["--cases", folder.name], folder.parent
    else:
        corpus, cases = {"kind": "synthetic", "count": count, "seed": seed}, ["--count", str(count), "--seed", str(seed)]
    asked = {"policy": policy, "old": _ref(refs[0]), "new": _ref(refs[1]), "bundle_hash": listing.bundle_hash,
             "corpus": corpus, "caller_token_sha256": caller(who)}
    try:
        run_id = await run_in_threadpool(registry.start, asked, [values["old"], values["new"], *cases], where)
    except RunBusy as busy:
        return _busy(request, busy.args[0])
    return RedirectResponse(f"/impact/{run_id}", status_code=303)


def _busy(request: Request, run_id: str):
    return render(request, "impact_busy.html", status_code=409, section="impact", run_id=run_id)


def _run(request: Request) -> Run:
    """The run named in the URL, once the service lets this user read both of its versions."""
    run = runs(request.app.state.config.reports).get(request.path_params["run_id"])
    if run is None:
        raise HTTPException(404, "There is no impact report with this id.")
    client, who = request.app.state.client, token(request)
    for side in ("old", "new"):
        client.get_policy(who, run.asked["policy"], run.asked[side]["version"])
    return run


def show(request: Request):
    run = _run(request)
    report, chart, changed_files = run.report, None, []
    if report is not None:
        old, new = report["old"]["version"], report["new"]["version"]
        outcomes = report["outcomes"]
        chart = bar_chart(
            "outcome-chart", f"Outcomes under {old} and {new}",
            f"{report['summary']['compared']:,} cases, decided by each version: "
            + "; ".join(f"{o['outcome']}: {o['old']:,} under {old}, {o['new']:,} under {new}" for o in outcomes) + ".",
            [o["outcome"] for o in outcomes],
            [Series(old, [o["old"] for o in outcomes], "console-chart__old"),
             Series(new, [o["new"] for o in outcomes], "console-chart__new")])
        # The report was made from this checkout's policy files; the service may serve others.
        changed_files = [side for side in ("old", "new")
                         if run.asked[side].get("content_hash") != report[side]["content_hash"]]
    return render(request, "impact_run.html", section="impact", run=run, report=report, chart=chart,
                  changed_files=changed_files, tags=STATUS_TAGS, progress_text=_progress_text(run),
                  command=_unplaced(request, run, report["command"]) if report else "",
                  error_tail=_unplaced(request, run, run.error_tail()) if run.status == "failed" else "",
                  downloads=[name for name in DOWNLOADS if run.status == "done" and run.has(name)])


def _unplaced(request: Request, run: Run, text: str) -> str:
    """`text` (the report's command, the run's error output) with a case folder's path on this
    machine replaced by the folder's name, as the pages name it."""
    corpus = run.asked.get("corpus", {})
    if corpus.get("kind") != "folder":
        return text
    paths = {str(folder) for folder in request.app.state.config.case_folders if folder.name == corpus.get("name")}
    paths |= {str(Path(p).resolve()) for p in set(paths)}
    if run.report and run.report.get("corpus", {}).get("directory"):
        paths.add(run.report["corpus"]["directory"])
    for path in sorted(paths, key=len, reverse=True):
        text = text.replace(path, corpus["name"])
    return text


def _progress_text(run: Run) -> str:
    corpus = run.asked["corpus"]
    total = corpus["count"] if corpus["kind"] == "synthetic" else run.cases_total
    if not total:  # a folder's cases are counted when read: the first progress line says how many
        return f"{run.percent}% done: reading the folder's cases"
    return f"{run.percent}% done: {run.cases_done:,} of {total:,} cases decided by both versions"


def progress(request: Request):
    """A run's progress for the page's script: status, percentage and the label's words."""
    run = _run(request)
    return JSONResponse({"status": run.status, "percent": run.percent, "text": _progress_text(run)})


def download(request: Request):
    name = request.path_params["name"]
    if name not in DOWNLOADS:
        raise HTTPException(404, "A report has only its Markdown, its data and its chart to download.")
    run = _run(request)
    if run.status != "done" or not run.has(name):
        raise HTTPException(404, "This report has no such file.")
    stem, dot, suffix = name.partition(".")
    return FileResponse(run.folder / name, media_type=DOWNLOADS[name], filename=f"{stem}-{run.id}{dot}{suffix}")


def signed_pounds(pence: int) -> str:
    return ("+" if pence > 0 else "") + pounds(pence)


def signed(n: int) -> str:
    return f"{n:+,}"


def share(n: int, total: int) -> str:
    """As the Markdown report gives it: one decimal place of the cases compared."""
    return f"{100 * n / total:.1f}%" if total else "–"


filters = {"signed_pounds": signed_pounds, "signed": signed, "share": share}
routes = [Route("/impact", index), Route("/impact/run", start, methods=["POST"]),
          Route("/impact/{run_id}", show), Route("/impact/{run_id}/progress.json", progress),
          Route("/impact/{run_id}/{name}", download)]
