"""Bad policy files, fuzzed: real files from rules/policies, mutated (keys deleted, values of
the wrong type, duplicate rule ids, unknown facts, cycles through `uses`, YAML bombs, huge files,
deep nesting, invalid UTF-8, tabs, byte flips, Python tags), are loaded as a bundle. Each must
load, or be refused with a PolicyLoadError whose every error names a real file, a line of it
and a reason — never another exception, never a crash, never anything run. A bundle that loads
must decide. Through the running service's hot reload, a broken bundle is refused and the last
good one keeps serving.

CI runs a short, derandomized version; CMS_FUZZ_EXAMPLES=N runs N examples per test.
"""
from __future__ import annotations

import copy
import datetime as dt
import os
import shutil
import time
from pathlib import Path

import grpc
import pytest
import yaml
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from cms_policy.v1 import policy_pb2 as pb
from cms_policy.v1 import policy_pb2_grpc
from rules.audit.factory import open_log
from rules.decide.evaluator import Evaluator
from rules.engine import durable_host
from rules.engine.decision import DecisionRequest, RequestError
from rules.engine.loader import DEFAULT_POLICY_DIR, PolicyLoadError, load_bundle
from rules.language import checks, values, yamlsource
from rules.language.model import FactType
from service.reload import LiveBundle
from service.server import build_server

LONG_RUN = int(os.environ.get("CMS_FUZZ_EXAMPLES", "0") or 0)


def fuzz(ci_examples: int):
    return settings(max_examples=LONG_RUN or ci_examples, deadline=None, derandomize=not LONG_RUN, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


FILES = {str(p.relative_to(DEFAULT_POLICY_DIR)): p.read_bytes() for p in sorted(DEFAULT_POLICY_DIR.glob("*/*.yaml"))}
USES = {p: sorted({u["policy"] for f, text in FILES.items() if f.startswith(p + "/")
                   for u in (yaml.safe_load(text).get("uses") or [])}) for p in {f.split("/")[0] for f in FILES}}


def _needed(policy: str) -> list[str]:
    """The policies a policy uses, recursively."""
    out, todo = [], list(USES.get(policy, ()))
    while todo:
        name = todo.pop()
        if name not in out:
            out.append(name)
            todo += USES.get(name, ())
    return out


def _bundle_dir(root: Path, files: dict[str, bytes]) -> Path:
    """A policy directory holding `files` (relative path -> bytes), and every version of the
    policies they use, as they are."""
    directory = root / f"bundle-{time.monotonic_ns()}"
    for rel, data in files.items():
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_bytes(data)
    for policy in {u for rel in files for u in _needed(rel.split("/")[0])}:
        if not (directory / policy).exists():
            shutil.copytree(DEFAULT_POLICY_DIR / policy, directory / policy)
    return directory


def load_checked(directory: Path):
    """The bundle, or None if it was refused as it must be: every error with a real file, a line of
    it and a reason. Anything else (another exception, a crash) fails the test."""
    try:
        bundle = load_bundle(directory)
    except PolicyLoadError as exc:
        assert exc.errors
        for error in exc.errors:
            path = Path(error.path)
            assert path.is_file(), f"not a file: {error}"
            lines = path.read_bytes().count(b"\n") + 1
            assert 1 <= error.line <= lines, f"no such line: {error}"
            assert error.message.strip(), f"no reason: {error}"
        if currently_in_test_context():
            event("refused")
        return None
    finally:
        assert durable_host.live_sessions() == 0
    decide_everything(bundle)
    if currently_in_test_context():
        event("loaded")
    return bundle


def _plausible(spec):
    t = spec.type
    return {FactType.BOOL: True, FactType.INTEGER: 1, FactType.MONEY: 15000, FactType.PERCENT: "10",
            FactType.DATE: "2020-01-01", FactType.ENUM: spec.allowed[0] if spec.allowed else "x",
            FactType.ENUM_LIST: list(spec.allowed[:1]), FactType.STRING: "x"}[t]


def decide_everything(bundle) -> None:
    """Every version decides an empty request and one with a value for each fact (and item)."""
    evaluator = Evaluator(bundle)
    for name in bundle.policies:
        for compiled in bundle.versions(name):
            pv = compiled.version
            facts = {f.name: _plausible(f) for f in pv.facts}
            facts.update({lst.name: [{f.name: _plausible(f) for f in lst.facts}] for lst in pv.lists})
            for request_facts in ({}, facts):
                try:
                    decision = evaluator.decide(DecisionRequest(policy=name, version=pv.version, facts=request_facts))
                except RequestError:
                    continue  # e.g. a fact the used policy needs in another form
                assert decision.outcome and decision.rationale
    assert durable_host.live_sessions() == 0


# --- mutations -------------------------------------------------------------------------------

def _paths(data, at=()):
    """Every path into a YAML document (mapping keys and list indexes)."""
    yield at
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, at + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, at + (i,))


def _get(data, path):
    for part in path:
        data = data[part]
    return data


ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from([10**30, -10**30, 2**63, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30), st.just("x" * 5000),
    st.dates().map(lambda d: d), st.sampled_from([dt.date(1, 1, 1), dt.date(9999, 12, 31)]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.sampled_from(["no_such_fact", "NO_SUCH_OUTCOME", "in_force", "latest_enacted", "{not_a_value}",
                     "2023-02-30", "UNDETERMINED", "true", "yes", ""]))


@st.composite
def structured(draw, text: bytes) -> bytes:
    """A mutation of the parsed file, written back as YAML."""
    data = yaml.safe_load(text)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        path = draw(st.sampled_from(paths))
        parent, key = _get(data, path[:-1]), path[-1]
        how = draw(st.sampled_from(["delete", "retype", "copy", "duplicate_rule", "unknown_fact", "rename_key",
                                    "nest_not", "widen_in"]))
        if how == "delete":
            del parent[key]
        elif how == "retype":
            parent[key] = draw(ODD_VALUES)
        elif how == "copy":  # another part of the file (a copy: it may be an ancestor) put here
            parent[key] = copy.deepcopy(_get(data, draw(st.sampled_from(paths))))
        elif how == "duplicate_rule" and isinstance(data.get("rules"), list) and data["rules"]:
            data["rules"].append(copy.deepcopy(draw(st.sampled_from(data["rules"]))))
        elif how == "unknown_fact":
            conditions = [p for p in paths if p[-1] == "fact"]
            if conditions:
                cpath = draw(st.sampled_from(conditions))
                _get(data, cpath[:-1])["fact"] = draw(st.sampled_from(["no_such_fact", "x" * 100, "Upper"]))
        elif how == "rename_key" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "when", "not", "all", "eval", "__class__"]))] = parent.pop(key)
        elif how == "nest_not":
            whens = [p for p in paths if p[-1] == "when"]
            if whens:
                wpath = draw(st.sampled_from(whens))
                cond = _get(data, wpath)
                for _ in range(draw(st.integers(1, 60))):
                    cond = {draw(st.sampled_from(["not", "all", "any"])): cond}
                    if "not" not in cond:
                        cond = {k: [v] for k, v in cond.items()}
                _get(data, wpath[:-1])["when"] = cond
        elif how == "widen_in":
            ins = [p for p in paths if p[-1] in ("in", "not_in", "any_in") and isinstance(_get(data, p), list)]
            if ins:
                ipath = draw(st.sampled_from(ins))
                _get(data, ipath[:-1])[ipath[-1]] = [f"v{n}" for n in range(draw(st.sampled_from([1, 300, 600])))]
        if not isinstance(data, dict):
            break
    return dump(data)


@st.composite
def textual(draw, text: bytes) -> bytes:
    """A mutation of the file's bytes."""
    data = bytearray(text)
    how = draw(st.sampled_from(["flip", "insert", "delete_lines", "duplicate_line", "tab", "bom", "non_utf8", "cut",
                                "python_tag", "anchor", "bomb", "deep_flow", "deep_block", "huge", "crlf", "nul"]))
    lines = bytes(data).split(b"\n")
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
    elif how == "insert":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=40))
    elif how == "delete_lines":
        start = draw(st.integers(0, len(lines) - 1))
        del lines[start:start + draw(st.integers(1, 10))]
        data = bytearray(b"\n".join(lines))
    elif how == "duplicate_line":
        n = draw(st.integers(0, len(lines) - 1))
        lines.insert(n, lines[n])
        data = bytearray(b"\n".join(lines))
    elif how == "tab":
        n = draw(st.integers(0, len(lines) - 1))
        lines[n] = b"\t" + lines[n].lstrip(b" ")
        data = bytearray(b"\n".join(lines))
    elif how == "bom":
        data[0:0] = b"\xef\xbb\xbf"
    elif how == "non_utf8":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf"]))
    elif how == "cut":
        data = data[:draw(st.integers(0, len(data)))]
    elif how == "python_tag":
        data += b"\nevil: !!python/object/apply:os.system ['touch " + MARKER_FILE.encode() + b"']\n"
    elif how == "anchor":
        data += b"\nextra: &a {x: 1}\nmore: *a\n"
    elif how == "bomb":
        data = bytearray(BILLION_LAUGHS)
    elif how == "deep_flow":
        depth = draw(st.sampled_from([49, 51, 1000, 10_000, 100_000]))
        data += b"\nx: " + b"{not: " * depth + b"{fact: a, eq: true}" + b"}" * depth + b"\n"
    elif how == "deep_block":
        depth = draw(st.sampled_from([49, 51, 500]))
        data += b"\nx:\n" + b"".join(b" " * i + b"- \n" for i in range(1, depth)) + b" " * depth + b"- 1\n"
    elif how == "huge":
        data += b"\n# " + b"x" * draw(st.sampled_from([yamlsource.MAX_BYTES, 50_000_000])) + b"\n"
    elif how == "crlf":
        data = bytearray(bytes(data).replace(b"\n", b"\r\n"))
    else:
        at = draw(st.integers(0, len(data)))
        data[at:at] = b"\x00"
    return bytes(data)


MARKER_FILE = "/tmp/cms-policy-fuzz-was-run"


class _Plain(yaml.SafeDumper):
    """Writes a value used twice out twice (anchors and aliases are refused in policy files)."""

    def ignore_aliases(self, data) -> bool:
        return True


def dump(data) -> bytes:
    return yaml.dump(data, Dumper=_Plain, allow_unicode=True, sort_keys=False).encode()
BILLION_LAUGHS = b"a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + b"".join(
    b"%s: &%s [%s]\n" % (bytes([98 + i]), bytes([98 + i]), b", ".join([b"*" + bytes([97 + i])] * 10)) for i in range(9))


@fuzz(30)
@given(data=st.data(), rel=st.sampled_from(sorted(FILES)), kind=st.sampled_from(["structured", "textual"]))
def test_a_mutated_policy_file_loads_or_is_refused_with_its_lines(tmp_path_factory, data, rel, kind):
    mutated = data.draw(structured(FILES[rel]) if kind == "structured" else textual(FILES[rel]))
    load_checked(_bundle_dir(tmp_path_factory.mktemp("fuzz"), {rel: mutated}))
    assert not Path(MARKER_FILE).exists(), "a policy file ran a command"


# --- particular files ------------------------------------------------------------------------

REL = "application_fee/2017.yaml"


def _refused(tmp_path: Path, files: dict[str, bytes]) -> list[str]:
    directory = _bundle_dir(tmp_path, files)
    with pytest.raises(PolicyLoadError) as caught:
        load_bundle(directory)
    assert load_checked(directory) is None
    return [f"{Path(e.path).relative_to(directory)}:{e.line}: {e.message}" for e in caught.value.errors]


def test_a_billion_laughs_is_refused_fast(tmp_path):
    started = time.perf_counter()
    errors = _refused(tmp_path, {REL: BILLION_LAUGHS})
    assert errors == [f"{REL}:1: anchors and aliases are not allowed in policy files"]
    assert time.perf_counter() - started < 2
    started = time.perf_counter()
    with pytest.raises(yamlsource.YamlSourceError):
        yamlsource.read_yaml(BILLION_LAUGHS.decode())
    assert time.perf_counter() - started < 0.1


def test_python_tags_are_refused_and_never_run(tmp_path):
    for tag in ("!!python/object/apply:os.system", "!!python/name:os.system", "!python/object/apply:os.system"):
        evil = FILES[REL] + f"\nevil: {tag} ['touch {MARKER_FILE}']\n".encode()
        [error] = _refused(tmp_path, {REL: evil})
        assert "is not allowed in policy files" in error
    assert not Path(MARKER_FILE).exists()


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path):
    # Was a RecursionError from PyYAML's composer (10,000 levels of `not:`).
    for depth in (10_000, 100_000):
        deep = FILES[REL] + b"\nx: " + b"{not: " * depth + b"1" + b"}" * depth + b"\n"
        line = FILES[REL].count(b"\n") + 2
        assert _refused(tmp_path, {REL: deep}) == [
            f"{REL}:{line}: mappings and lists are nested more than {yamlsource.MAX_DEPTH} deep"]


def test_huge_files_are_refused_before_they_are_read(tmp_path):
    huge = FILES[REL] + b"\n#" + b"x" * 50_000_000 + b"\n"
    started = time.perf_counter()
    assert _refused(tmp_path, {REL: huge}) == [f"{REL}:1: file is larger than {yamlsource.MAX_BYTES} bytes"]
    assert time.perf_counter() - started < 5


def test_a_directory_or_a_fifo_named_like_a_policy_file_is_refused(tmp_path):
    # Were IsADirectoryError (and a FIFO would have blocked the loader for ever).
    directory = _bundle_dir(tmp_path, {REL: FILES[REL]})
    (directory / "application_fee" / "2099.yaml").mkdir()
    os.mkfifo(directory / "application_fee" / "2098.yaml")
    with pytest.raises(PolicyLoadError) as caught:
        load_bundle(directory)
    assert sorted(e.message for e in caught.value.errors) == ["not a regular file", "not a regular file"]


@pytest.mark.parametrize("value, problem", [
    (b"9" * 5000, "'9999999999999999999999999999999999999999' cannot be read: the number is too long"),
    (b"2023-02-30", "'2023-02-30' cannot be read: day is out of range for month"),
])
def test_scalars_that_cannot_be_read_are_refused(tmp_path, value, problem):
    # Were a ValueError out of the loader.
    text = FILES[REL].replace(b"value: 2000", b"value: " + value, 1)
    [error] = _refused(tmp_path, {REL: text})
    assert error.endswith(problem) and error.startswith(f"{REL}:")


def test_duplicate_rule_ids_and_unknown_facts_are_refused(tmp_path):
    data = yaml.safe_load(FILES[REL])
    data["rules"].append(dict(data["rules"][0]))
    data["rules"][1]["when"] = {"fact": "no_such_fact", "eq": True}
    errors = _refused(tmp_path, {REL: dump(data)})
    assert any("duplicate rule id" in e for e in errors) and any("unknown fact 'no_such_fact'" in e for e in errors)


def test_cycles_through_uses_are_refused(tmp_path):
    fee, evidence = yaml.safe_load(FILES[REL]), yaml.safe_load(FILES["abuse_evidence/2018.yaml"])
    fee["uses"] = [{"policy": "abuse_evidence", "version": "2018", "as": "evidence"}]
    evidence["uses"] = [{"policy": "application_fee", "version": "2017", "as": "fee"}]
    errors = _refused(tmp_path, {REL: dump(fee),
                                 "abuse_evidence/2018.yaml": dump(evidence)})
    assert any("application_fee uses itself through other policies" in e for e in errors)


def _synthetic(when: str, facts: int = 2, rules: int = 1, params: str = "") -> bytes:
    return (f"""policy: syn
version: v1
status: proposed
title: t
description: d
cites: [{{source: s}}]
outcomes: {{OK: ok, NO: no}}
{params}
facts:
""" + "".join(f"  - {{name: f{i}, type: bool, description: fact {i}}}\n" for i in range(facts))
            + "  - {name: d, type: date, description: a date}\n  - {name: s, type: string, description: text}\n"
            + "rules:\n" + "".join(f"  - {{id: r{i}, when: {when}, outcome: OK, because: b, cites: [{{source: s}}]}}\n"
                                   for i in range(rules))
            + "  - {id: last, outcome: NO, because: b, cites: [{source: s}]}\n").encode()


def _ors(n: int) -> str:
    return "{any: [" + ", ".join(f"{{fact: f{i}, eq: true}}" for i in range(n)) + "]}"


@pytest.mark.parametrize("when, facts, rules, problem", [
    # An OR of 512 values never finished registering, holding the engine's lock (every decision waited).
    ("{fact: s, in: [" + ", ".join(f"v{n}" for n in range(1000)) + "]}", 2, 1, "alternatives for the rules engine"),
    # 2^13 alternatives took 10 s to register.
    ("{all: [" + ", ".join(["{any: [{fact: f0, eq: true}, {fact: f1, eq: true}]}"] * 13) + "]}", 2, 1,
     "alternatives for the rules engine"),
    # More than about 64 alternatives holding at once failed every decision that met them.
    (_ors(70), 70, 1, "alternatives of the condition can hold at once"),
    # 'all'/'any' about 15 deep failed to register (error 113), out of load_bundle.
    ("{all: [" * 12 + "{fact: f0, eq: true}" + ", {fact: f1, eq: true}]}" * 12, 2, 1, "nested more than"),
    # About 128 rules and values failed every decision (the engine's state is full).
    ("{fact: f0, eq: true}", 2, 127, "the rules engine takes at most"),
    # Dates beyond what a fact may hold failed every decision (working out what would change it).
    ("{fact: d, lt: 0001-01-01}", 2, 1, values.DATE_RANGE_PROBLEM),
    ("{fact: d, lt: {fact: d, plus_years: 99999}}", 2, 1, "a shift of more than"),
])
def test_what_the_engine_cannot_take_is_refused_at_load(tmp_path, when, facts, rules, problem):
    started = time.perf_counter()
    [error] = _refused(tmp_path, {"syn/v1.yaml": _synthetic(when, facts, rules)})
    assert problem in error
    assert time.perf_counter() - started < 5


def test_what_the_engine_can_take_decides(tmp_path):
    values16 = "[" + ", ".join(f"v{n}" for n in range(16)) + "]"
    at_limit = [
        "{fact: s, in: [" + ", ".join(f"v{n}" for n in range(checks.MAX_ENGINE_TESTS - 2)) + "]}",
        f"{{all: [{{fact: s, in: {values16}}}, {{fact: s, in: {values16}}}]}}",  # 256 alternatives
        _ors(checks.MAX_ENGINE_AT_ONCE),
        "{all: [" * 10 + "{fact: f0, eq: true}" + ", {fact: f1, eq: true}]}" * 10,
        "{fact: d, lt: {fact: d, plus_years: 150}}",
    ]
    for when in at_limit:
        bundle = load_checked(_bundle_dir(tmp_path, {"syn/v1.yaml": _synthetic(when, facts=checks.MAX_ENGINE_AT_ONCE)}))
        assert bundle is not None, when
        every = {f"f{i}": True for i in range(checks.MAX_ENGINE_AT_ONCE)} | {"d": "2199-12-31", "s": "v1"}
        assert Evaluator(bundle).decide(DecisionRequest(policy="syn", version="v1", facts=every)).outcome == "OK"


# --- hot reload ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def live_service(tmp_path_factory):
    """The service on a copy of rules/policies, reloadable: (directory, live, decision stub, admin stub)."""
    directory = tmp_path_factory.mktemp("live") / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, directory)
    live = LiveBundle(load_bundle(directory), directory)
    log = open_log(tmp_path_factory.mktemp("live-log") / "decisions.sqlite3", [os.urandom(32)])
    server, port = build_server(live, "127.0.0.1:0", decision_log=log)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield (directory, live, policy_pb2_grpc.PolicyDecisionServiceStub(channel),
           policy_pb2_grpc.PolicyAdminServiceStub(channel))
    channel.close()
    server.stop(None).wait()
    log.close()


FEE_REQUEST = pb.DecideRequest(policy="application_fee", as_at="2019-03-15")
FEE_REQUEST.facts.update({"application_route": "direct_pay", "applicant_in_northern_ireland": False,
                          "application_date": "2019-03-15", "applicant_date_of_birth": "1985-07-20",
                          "abuse_of_applicant": True, "abuse_reported_to": ["police"], "declaration": "at_application"})


@fuzz(5)
@given(data=st.data(), rel=st.sampled_from(sorted(FILES)))
def test_a_broken_bundle_is_refused_by_hot_reload_and_the_old_one_serves(live_service, data, rel):
    directory, live, stub, admin = live_service
    served = live.current
    before = stub.Decide(FEE_REQUEST)
    mutated = data.draw(st.one_of(structured(FILES[rel]), textual(FILES[rel])))
    (directory / rel).write_bytes(mutated)
    try:
        try:
            result = admin.ReloadPolicies(pb.ReloadPoliciesRequest())
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err.details()
            failure = error_details_pb2.PreconditionFailure()
            assert rpc_status.from_call(err).details[0].Unpack(failure)
            assert failure.violations and all(v.subject and v.description for v in failure.violations)
            assert live.current is served  # nothing changed
            after = stub.Decide(FEE_REQUEST)
            assert after.bundle_hash == served.bundle.bundle_hash
            assert (after.outcome, after.policy.content_hash) == (before.outcome, before.policy.content_hash)
        else:
            assert result.changed or mutated == FILES[rel] or result.bundle_hash == served.bundle.bundle_hash
            decide_everything(live.current.bundle)
    finally:
        (directory / rel).write_bytes(FILES[rel])
        live.reload()
    assert live.current.bundle.bundle_hash == served.bundle.bundle_hash
    assert durable_host.live_sessions() == 0


def test_a_reload_with_very_many_errors_still_answers(live_service):
    # The refusal's details must fit in the trailers however many errors the files have.
    directory, live, stub, admin = live_service
    served = live.current
    rel = "maintenance_calculation/2012.yaml"
    data = yaml.safe_load(FILES[rel])
    data["rules"] = [dict(r, outcome="NO_SUCH_OUTCOME", id=f"r{n}") for n, r in enumerate(data["rules"] * 3)]
    (directory / rel).write_bytes(dump(data))
    try:
        with pytest.raises(grpc.RpcError) as caught:
            admin.ReloadPolicies(pb.ReloadPoliciesRequest())
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        failure = error_details_pb2.PreconditionFailure()
        rpc_status.from_call(caught.value).details[0].Unpack(failure)
        assert "more errors are not shown" in failure.violations[-1].description
        assert live.current is served
    finally:
        (directory / rel).write_bytes(FILES[rel])
        live.reload()


def test_text_that_is_not_unicode_is_refused_at_its_line(tmp_path):
    # "\ud800" in a double-quoted YAML string is a lone surrogate: loaded, it failed every decision
    # (protobuf cannot send the rationale) or the engine's registration (in a condition).
    data = FILES[REL].decode()
    line = next(n for n, text in enumerate(data.splitlines(), 1) if "because:" in text)
    lines = data.splitlines()
    lines[line - 1] = lines[line - 1].split("because:")[0] + 'because: "abuse \\ud800"'
    assert _refused(tmp_path, {REL: "\n".join(lines).encode()}) == [
        f"{REL}:{line}: text is not valid Unicode (a lone surrogate escape)"]
