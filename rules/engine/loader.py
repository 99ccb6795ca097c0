"""Load every policy file under a directory into a bundle, or nothing at all.

Files live at `<dir>/<policy>/<version>.yaml` (a version's current revision), and the earlier
revisions of a corrected version at `<dir>/<policy>/revisions/<version>.r<N>.yaml`, kept as they
were so that the decisions they made replay; new decisions use the current revision only. Each is parsed (yamlsource),
validated (model + checks), checked against its siblings (same fact, same
type; enacted versions start on different days and an explicit end does not
overlap the next start) and compiled. Any error anywhere
rejects the whole bundle, with every error reported as `path:line: reason`.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from rules.engine.compiler import CompiledPolicy, compile_policy, content_hash
from rules.engine.durable_host import EngineError
from rules.language.checks import check
from rules.language.model import FactType, PolicyVersion, Status
from rules.language.yamlsource import MAX_BYTES, Located, YamlSourceError, read_yaml

DEFAULT_POLICY_DIR = Path(__file__).parent.parent / "policies"  # rules/policies


@dataclass(frozen=True)
class LoadError:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class PolicyLoadError(Exception):
    def __init__(self, errors: list[LoadError]):
        self.errors = errors
        super().__init__("\n".join(map(str, errors)))


class Bundle:
    """All loaded policy versions, by policy id and version id."""

    def __init__(self, policies: dict[str, dict[str, CompiledPolicy]], bundle_hash: str,
                 earlier: dict[tuple[str, str], list[CompiledPolicy]] | None = None):
        self.policies = policies
        self.bundle_hash = bundle_hash
        self._earlier = earlier or {}  # by (policy, version): its earlier revisions, oldest first
        self._schemas = {name: self._schema(name) for name in policies}
        self._lists = {name: self._list_schema(name) for name in policies}
        self._request_names = {name: self._reachable_names(name) for name in policies}
        self._accepted = {name: self._accepted_specs(name) for name in policies}
        self._declared = {name: self._declarations(name) for name in policies}

    def revision(self, policy: str, version: str, content_hash: str) -> CompiledPolicy | None:
        """The loaded revision of a version with this content hash (current or earlier), if any."""
        current = self.policies.get(policy, {}).get(version)
        if current is not None and current.content_hash == content_hash:
            return current
        return next((c for c in self._earlier.get((policy, version), ()) if c.content_hash == content_hash), None)

    def earlier_revisions(self, policy: str, version: str) -> list[CompiledPolicy]:
        return list(self._earlier.get((policy, version), ()))

    def versions(self, policy: str) -> list[CompiledPolicy]:
        return sorted(self.policies.get(policy, {}).values(),
                      key=lambda c: (c.version.effective_from or dt.date.max, c.version.version))

    def in_force(self, policy: str, day: dt.date) -> CompiledPolicy | None:
        """The enacted version in force on `day`: of those started by then and not ended, the latest
        to start (one with no effective_to is superseded by the next)."""
        return next((c for c in reversed(self.versions(policy)) if c.version.in_force_on(day)), None)

    def latest_enacted(self, policy: str) -> str:
        enacted = [c for c in self.versions(policy) if c.version.status is Status.ENACTED]
        return enacted[-1].version.version if enacted else ""

    def as_at_fact(self, policy: str) -> str | None:
        return next((c.version.as_at_fact for c in self.versions(policy)), None)

    def fact_schema(self, policy: str) -> dict:
        """Every fact any version of `policy` declares (they agree on types)."""
        return self._schemas.get(policy, {})

    def list_schema(self, policy: str) -> dict[str, dict]:
        """Every list any version of `policy` declares, with every item fact any version declares."""
        return self._lists.get(policy, {})

    def request_names(self, policy: str) -> set[str]:
        """Every fact a request for `policy` may carry: its own (any version) and those of the
        policies it uses (any version, recursively)."""
        return self._request_names.get(policy, set())

    def accepted(self, policy: str) -> tuple[dict, dict]:
        """What any fact a request for `policy` may carry must be, whichever version decides it:
        (facts by name, lists by name -> item facts by name), each a Fact allowing every value
        some version (of `policy` or a policy it uses) allows. None where two policies disagree
        on its type (no value can suit both: the version deciding it says what is wrong)."""
        return self._accepted.get(policy, ({}, {}))

    def declared(self, policy: str) -> dict[str, list[tuple]]:
        """Every fact and list a request for `policy` may carry, each with every declaration of it
        (any version of `policy` or of a policy it uses) as (spec, subject fact): the subject fact
        names the parent a used policy's `subject` is (None: the request's own subject)."""
        return self._declared.get(policy, {})

    def _declarations(self, policy: str) -> dict[str, list[tuple]]:
        out: dict[str, list[tuple]] = {}
        todo, seen = [(policy, None)], set()
        while todo:
            name, subject_fact = todo.pop()
            if (name, subject_fact) in seen:
                continue
            seen.add((name, subject_fact))
            for c in self.versions(name):
                for spec in (*c.version.facts, *c.version.lists):
                    out.setdefault(spec.name, []).append((spec, subject_fact))
                todo += [(u.policy, u.subject or subject_fact) for u in c.version.uses]
        return out

    def _reachable(self, policy: str) -> list[str]:
        """`policy` and every policy it uses, recursively."""
        out, todo = [], [policy]
        while todo:
            name = todo.pop()
            if name in out:
                continue
            out.append(name)
            todo += [u.policy for c in self.versions(name) for u in c.version.uses]
        return out

    def _reachable_names(self, policy: str) -> set[str]:
        names = set()
        for name in self._reachable(policy):
            names |= set(self.fact_schema(name)) | set(self.list_schema(name))
        return names

    def _accepted_specs(self, policy: str) -> tuple[dict, dict]:
        facts: dict = {}
        lists: dict[str, dict] = {}
        for c in (c for name in self._reachable(policy) for c in self.versions(name)):
            for fact in c.version.facts:
                _merge_spec(facts, fact)
            for lst in c.version.lists:
                for fact in lst.facts:
                    _merge_spec(lists.setdefault(lst.name, {}), fact)
        return facts, lists

    def _schema(self, policy: str) -> dict:
        schema = {}
        for c in self.versions(policy):
            for fact in c.version.facts:
                schema.setdefault(fact.name, fact)
        return schema

    def _list_schema(self, policy: str) -> dict[str, dict]:
        lists: dict[str, dict] = {}
        for c in self.versions(policy):
            for lst in c.version.lists:
                for fact in lst.facts:
                    lists.setdefault(lst.name, {}).setdefault(fact.name, fact)
        return lists


def _merge_spec(specs: dict, fact) -> None:
    if fact.name not in specs:
        specs[fact.name] = fact
        return
    known = specs[fact.name]
    if known is None:
        return
    if known.type != fact.type:
        specs[fact.name] = None
    elif fact.allowed:
        specs[fact.name] = known.model_copy(update={"allowed": tuple(dict.fromkeys(known.allowed + fact.allowed))})


def load_bundle(directory: Path = DEFAULT_POLICY_DIR) -> Bundle:
    directory = Path(directory)
    errors: list[LoadError] = []
    parsed: list[tuple[str, PolicyVersion, str]] = []
    sources: dict[str, Located] = {}  # where each value is, by shown path
    files = sorted(directory.glob("*/*.yaml"))
    if not files:
        raise PolicyLoadError([LoadError(str(directory), 0, "no policy files (<policy>/<version>.yaml) found")])
    for path in files:
        shown = shown_path(path, directory)
        result = _parse(path, shown, errors, sources)
        if result is not None:
            parsed.append((shown, *result))
    earlier_files: list[tuple[str, PolicyVersion, str]] = []
    for path in sorted(directory.glob("*/revisions/*.yaml")):
        shown = shown_path(path, directory)
        result = _parse(path, shown, errors, sources)
        if result is not None:
            earlier_files.append((shown, *result))
    errors += _cross_version(parsed, sources)
    errors += _cross_policy(parsed)
    errors += _revisions(parsed, earlier_files)
    if errors:
        raise PolicyLoadError(errors)

    policies: dict[str, dict[str, CompiledPolicy]] = {}
    for shown, pv, digest in parsed:
        try:
            policies.setdefault(pv.policy, {})[pv.version] = compile_policy(pv, digest)
        except EngineError as exc:  # a capacity of the engine that the checks do not foresee
            errors.append(LoadError(shown, sources[shown].line_of(("rules",)), str(exc)))
    earlier: dict[tuple[str, str], list[CompiledPolicy]] = {}
    for shown, pv, digest in sorted(earlier_files, key=lambda f: f[1].revision):
        try:
            earlier.setdefault((pv.policy, pv.version), []).append(compile_policy(pv, digest))
        except EngineError as exc:
            errors.append(LoadError(shown, sources[shown].line_of(("rules",)), str(exc)))
    if errors:
        raise PolicyLoadError(errors)
    # By policy, version and revision, not by path: the same files give the same hash wherever they are mounted.
    bundle_hash = hashlib.sha256("".join(sorted(f"{_key(pv)}:{d}\n" for _, pv, d in parsed + earlier_files)
                                         ).encode()).hexdigest()
    return Bundle(policies, bundle_hash, earlier)


def _key(pv: PolicyVersion) -> str:
    """policy/version, and .r<N> after a correction (an uncorrected bundle keeps the hash it had)."""
    return f"{pv.policy}/{pv.version}" + (f".r{pv.revision}" if pv.revision > 1 else "")


def shown_path(path: Path, directory: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _parse(path: Path, shown: str, errors: list[LoadError], sources: dict[str, Located]) -> tuple[PolicyVersion, str] | None:
    try:  # the size is checked before reading: a huge file (or a device) is never read into memory
        if not path.is_file():
            errors.append(LoadError(shown, 1, "not a regular file"))
            return None
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        errors.append(LoadError(shown, 1, f"cannot be read: {exc.strerror or type(exc).__name__}"))
        return None
    if len(raw) > MAX_BYTES:
        errors.append(LoadError(shown, 1, f"file is larger than {MAX_BYTES} bytes"))
        return None
    try:
        located = read_yaml(raw.decode("utf-8"))
    except UnicodeDecodeError:
        errors.append(LoadError(shown, 1, "file is not UTF-8 text"))
        return None
    except YamlSourceError as exc:
        errors.append(LoadError(shown, exc.line, exc.message))
        return None
    sources[shown] = located
    if not isinstance(located.data, dict):
        errors.append(LoadError(shown, located.line_of(()), "a policy file is a mapping (policy:, version:, rules: ...)"))
        return None
    try:
        pv = PolicyVersion.model_validate(located.data)
    except ValidationError as exc:
        errors.extend(_validation_errors(exc, located, shown))
        return None
    found = [LoadError(shown, located.line_of(p), m) for p, m in check(pv)]
    if path.parent.name == "revisions":  # <policy>/revisions/<version>.r<N>.yaml
        version, _, number = path.stem.rpartition(".r")
        expected, declared = (path.parent.parent.name, version, number), (pv.policy, pv.version, str(pv.revision))
        where = f"{expected[0]}/revisions/{version}.r{number}.yaml"
        says = f"{pv.policy}/{pv.version} revision {pv.revision}"
    else:
        expected, declared = (path.parent.name, path.stem), (pv.policy, pv.version)
        where, says = f"{expected[0]}/{expected[1]}.yaml", f"{pv.policy}/{pv.version}"
    if declared != expected:
        found.append(LoadError(shown, located.line_of(("policy",)), f"file declares {says} but lives at {where}"))
    errors.extend(found)
    return None if found else (pv, content_hash(raw))


def _revisions(parsed: list[tuple[str, PolicyVersion, str]], earlier: list[tuple[str, PolicyVersion, str]]
               ) -> list[LoadError]:
    """Each earlier revision is of a version that is loaded, and earlier than its current revision."""
    current = {(pv.policy, pv.version): pv.revision for _, pv, _ in parsed}
    errors = []
    for shown, pv, _ in earlier:
        now = current.get((pv.policy, pv.version))
        if now is None:
            errors.append(LoadError(shown, 1, f"an earlier revision of {pv.policy}/{pv.version}, which is not loaded"))
        elif pv.revision >= now:
            errors.append(LoadError(shown, 1, f"revision {pv.revision} is not earlier than the current revision "
                                              f"({now}) of {pv.policy}/{pv.version}"))
    return errors


def _validation_errors(exc: ValidationError, located: Located, shown: str) -> list[LoadError]:
    out, seen = [], set()
    for err in exc.errors():
        path = tuple(p for p in err["loc"] if isinstance(p, (int, str)) and _is_data_key(p))
        where = ".".join(str(p) for p in path) or "(top level)"
        msg = re.sub(r"^(Tuple|List|Dictionary) should", "should", err["msg"].removeprefix("Value error, "))
        key = (path, msg)
        if key not in seen:
            seen.add(key)
            out.append(LoadError(shown, located.line_of(path), f"{where}: {msg}"))
    return out


def _is_data_key(part) -> bool:
    # pydantic adds union member names (e.g. "AllOf", "tagged-union[...]") to error locations
    return isinstance(part, int) or not (part[:1].isupper() or "[" in part)


def _cross_policy(parsed: list[tuple[str, PolicyVersion, str]]) -> list[LoadError]:
    """Every used policy and version exists, its fixed facts are its facts, and no policy uses
    itself through others."""
    errors: list[LoadError] = []
    versions: dict[str, dict[str, PolicyVersion]] = {}
    for _, pv, _ in parsed:
        versions.setdefault(pv.policy, {})[pv.version] = pv
    graph: dict[str, set[str]] = {}
    for shown, pv, _ in parsed:
        for use in pv.uses:
            graph.setdefault(pv.policy, set()).add(use.policy)
            others = versions.get(use.policy)
            if others is None:
                errors.append(LoadError(shown, 1, f"uses unknown policy '{use.policy}'"))
                continue
            if use.version not in ("in_force", "latest_enacted") and use.version not in others:
                errors.append(LoadError(shown, 1, f"uses {use.policy}/{use.version}, which does not exist"))
            known = {f.name for v in others.values() for f in v.facts}
            for name in sorted(set(use.set) - known):
                errors.append(LoadError(shown, 1, f"sets '{name}', which is not a fact of {use.policy}"))

    def cyclic(start: str) -> bool:
        todo, seen = list(graph.get(start, ())), set()
        while todo:
            name = todo.pop()
            if name == start:
                return True
            if name not in seen:
                seen.add(name)
                todo += graph.get(name, ())
        return False
    errors += [LoadError(next(s for s, pv, _ in parsed if pv.policy == name), 1, f"{name} uses itself through other policies")
               for name in sorted(graph) if cyclic(name)]
    return errors


def _cross_version(parsed: list[tuple[str, PolicyVersion, str]], sources: dict[str, Located]) -> list[LoadError]:
    errors: list[LoadError] = []

    def line(shown: str, path: tuple) -> int:
        return sources[shown].line_of(path) if shown in sources else 1

    by_policy: dict[str, list[tuple[str, PolicyVersion]]] = {}
    for shown, pv, _ in parsed:
        by_policy.setdefault(pv.policy, []).append((shown, pv))
    for versions in by_policy.values():
        types: dict[str, tuple[FactType, str]] = {}
        for shown, pv in versions:
            named = ([(f.name, f, ("facts", i)) for i, f in enumerate(pv.facts)]
                     + [(f"{lst.name}.{f.name}", f, ("lists", i, "facts", j))
                        for i, lst in enumerate(pv.lists) for j, f in enumerate(lst.facts)])
            for name, fact, at in named:
                first = types.setdefault(name, (fact.type, shown))
                if first[0] != fact.type:
                    errors.append(LoadError(shown, line(shown, at + ("type",)), f"fact '{name}' is a {fact.type.value} here but a {first[0].value} in {first[1]}"))
        if len({pv.as_at_fact for _, pv in versions}) > 1:
            errors.append(LoadError(versions[0][0], 1, f"versions of {versions[0][1].policy} disagree on 'as_at_fact'"))
        # An enacted version with no effective_to is in force until the next one starts, so a new
        # law never needs its predecessor's file (and content hash) changed; an explicit end may not
        # overlap the next start.
        enacted = sorted((pv.effective_from, pv.effective_to, shown, pv.version)
                         for shown, pv in versions if pv.status is Status.ENACTED)
        for (first, end, _, a), (start, _, shown, b) in itertools.pairwise(enacted):
            if start == first:
                errors.append(LoadError(shown, line(shown, ("effective_from",)), f"enacted versions {a} and {b} both start on {start}"))
            elif end is not None and start <= end:
                errors.append(LoadError(shown, line(shown, ("effective_from",)), f"enacted versions {a} and {b} are both in force on {start}"))
    return errors
