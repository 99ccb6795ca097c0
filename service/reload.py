"""Hot reload: the policy bundle the service answers from, replaced whole between requests.

Each request takes the current `Snapshot` once and works on it to the end, so a decision
under way finishes on the bundle it started with while the next request gets the new one.
A bundle that fails to load is refused with its errors logged (`path:line: reason`; policy
files hold no personal data) and the last good one keeps serving.

A bundle is taken only whole: never while a policy file is still being written (`Writes`: modified
and not yet closed, however long its writer pauses), never if any file changed while it was read,
and through a symlinked directory as it was when the load began, so that swapping the symlink is
an atomic deployment.

Reloads come from the `Watcher` (polls the directory and reloads once a change has settled),
from SIGHUP (`Watcher.poke`) and from the admin RPC (`LiveBundle.reload`).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rules.decide.evaluator import Evaluator
from rules.engine.loader import Bundle, LoadError, PolicyLoadError, load_bundle

from .writes import Writes

log = logging.getLogger("cms_policy.reload")


@dataclass(frozen=True)
class Snapshot:
    bundle: Bundle
    evaluator: Evaluator


@dataclass(frozen=True)
class Reload:
    changed: bool
    bundle_hash: str  # the bundle served after the reload
    previous_bundle_hash: str
    versions: int
    errors: tuple[LoadError, ...] = ()  # why the new files were refused (then nothing changed)

    @property
    def refused(self) -> bool:
        return bool(self.errors)


class LiveBundle:
    def __init__(self, bundle: Bundle, directory: Path | None = None, on_reload: Callable[[Reload], None] | None = None,
                 writes: Writes | None = None):
        self.directory = directory  # None: nothing to reload from
        self.writes = writes  # which of its files are being written (None: not known, settling only)
        self._current = Snapshot(bundle, Evaluator(bundle))
        self._reloading = threading.Lock()  # one load at a time; requests never wait for it
        self.on_reload = on_reload  # told every reload's result (the metrics count them)

    @property
    def current(self) -> Snapshot:
        return self._current

    def reload(self) -> Reload:
        result = self._reload()
        if self.on_reload is not None:
            self.on_reload(result)
        return result

    def _reload(self) -> Reload:
        with self._reloading:
            served = self._current.bundle
            if self.directory is None:
                return self._result(False, served, served)
            try:
                bundle = self._load_whole()
            except PolicyLoadError as exc:
                log.error("policy files refused (%d errors); still serving bundle %s", len(exc.errors),
                          served.bundle_hash[:12], extra={"errors": len(exc.errors), "bundle": served.bundle_hash[:12]})
                for error in exc.errors:  # policy files hold no personal data: their errors may be shown
                    log.error("policy file error: %s", error, extra={"error": str(error)})
                return self._result(False, served, served, tuple(exc.errors))
            if bundle.bundle_hash == served.bundle_hash:
                return self._result(False, served, served)
            self._current = Snapshot(bundle, Evaluator(bundle))  # one reference swap: atomic between requests
            log.info("policy bundle %s replaces %s (%d versions)", bundle.bundle_hash[:12], served.bundle_hash[:12],
                     _versions(bundle), extra={"bundle": bundle.bundle_hash[:12], "previous_bundle": served.bundle_hash[:12],
                                               "versions": _versions(bundle)})
            return self._result(True, bundle, served)

    def writing(self) -> list[str]:
        """The policy files being written now, as `path` under the directory."""
        return self.writes.in_progress() if self.writes is not None else []

    def _load_whole(self) -> Bundle:
        """The directory's bundle, only if no file is being written and none changed while it was read."""
        assert self.directory is not None  # a LiveBundle without a directory has no watcher to load it
        directory = self.directory.resolve()  # one target for the whole load, even if the symlink is swapped
        busy = self.writing()
        if busy:
            raise PolicyLoadError([LoadError(str(directory / path), 0, "still being written (modified and not yet "
                                             "closed): it is loaded once its writer closes it") for path in busy])
        before = _signature(directory)
        bundle = load_bundle(directory)
        if _signature(directory) != before or self.writing():
            raise PolicyLoadError([LoadError(str(directory), 0, "policy files changed while they were read: "
                                             "they are loaded once they have settled")])
        return bundle

    @staticmethod
    def _result(changed: bool, now: Bundle, before: Bundle, errors: tuple[LoadError, ...] = ()) -> Reload:
        return Reload(changed, now.bundle_hash, before.bundle_hash, _versions(now), errors)


def _versions(bundle: Bundle) -> int:
    return sum(len(v) for v in bundle.policies.values())


def _signature(directory: Path) -> tuple:
    """What the policy files look like on disk: a change here means "load them again"."""
    files: list[tuple] = [("->", str(directory.resolve()))]  # a symlinked directory swapped for another
    for path in sorted(directory.rglob("*")):
        try:
            stat = path.stat()
        except OSError:  # removed while we looked: the next poll sees it
            continue
        if path.is_file():
            files.append((str(path.relative_to(directory)), stat.st_mtime_ns, stat.st_size))
    return tuple(files)


class Watcher:
    """Reloads `live` when its directory changes (once unchanged for one more poll, so that a
    copy or checkout in progress is not loaded half-done) or when poked (SIGHUP). With no
    `interval` it only reloads when poked."""

    def __init__(self, live: LiveBundle, interval: float | None = 2.0):
        if live.directory is None:
            raise ValueError("nothing to watch: the bundle has no directory")
        self.live = live
        self.interval = interval
        self._poked = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="policy-watcher", daemon=True)
        self._settled = _signature(live.directory)  # as the files are now: a change from here reloads

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def poke(self) -> None:
        """Reload now (safe to call from a signal handler)."""
        self._poked.set()

    def stop(self) -> None:
        self._stopped.set()
        self._poked.set()
        self._thread.join()

    def _run(self) -> None:
        seen = settled = self._settled
        deferred, waited_for = False, list[str]()  # a poke that came while a file was being written, and which
        while not self._stopped.is_set():
            # While a file is being written, look again soon: its close is what we wait for.
            poked = self._poked.wait(self.interval if not waited_for else min(self.interval or 0.5, 0.5))
            self._poked.clear()
            if self._stopped.is_set():
                return
            assert self.live.directory is not None  # a Watcher refuses a bundle without one
            now = _signature(self.live.directory)
            wanted = poked or deferred or (self.interval is not None and now == seen != settled)
            busy = self.live.writing()  # asked every poll: keeps the kernel's queue of file events short
            if wanted and busy and busy != waited_for:
                log.info("waiting for %s to be closed by its writer before loading the policy files",
                         ", ".join(busy), extra={"writing": busy})
            waited_for = busy if wanted else []
            deferred = bool(busy) and (poked or deferred)
            if wanted and not busy:
                settled = now
                try:
                    self.live.reload()
                except Exception:  # never let the watcher die: the bundle served is untouched
                    log.exception("policy reload failed; still serving bundle %s",
                                  self.live.current.bundle.bundle_hash[:12])
            seen = now
