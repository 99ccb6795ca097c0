"""Which policy files are being written right now: modified and not yet closed by their writer.

A file's content cannot say whether its writer has finished: a prefix of a policy file can itself
be a valid policy (21 of the 268 line-prefixes of application_fee/2017.yaml load, as issue 27
found), and a copy that pauses looks settled however long the watcher waits. The kernel knows:
every write is an inotify IN_MODIFY, and the writer's close is IN_CLOSE_WRITE. A `.yaml` file
modified since its last close is still being written, and nothing is loaded while one is.

Linux only; where inotify is unavailable (another OS, or the per-user limit of inotify instances
reached) `in_progress` is always empty and reloads rely on the settle interval alone, which is
logged once at start. A writer killed mid-write is closed by the kernel too: its half file is then
checked and loaded like any other, which is why deployments should swap a whole directory (README).
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from inotify_simple import INotify, flags

log = logging.getLogger("cms_policy.reload")

_MASK = (flags.MODIFY | flags.CLOSE_WRITE | flags.CREATE | flags.DELETE | flags.MOVED_FROM | flags.MOVED_TO
         | flags.DELETE_SELF)


class Writes:
    """Files under `directory` (followed through symlinks, so a Kubernetes ConfigMap volume and a
    symlinked release directory are watched where their files really are) being written now."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._lock = threading.Lock()  # the watcher thread and ReloadPolicies both ask
        self._dirs: dict[int, Path] = {}  # watch descriptor -> directory it watches
        self._open: set[tuple[int, str]] = set()  # (watch descriptor, file name) modified and not closed
        self._root: Path | None = None
        try:
            self._inotify: INotify | None = INotify(nonblocking=True)
        except OSError as exc:
            self._inotify = None
            log.warning("cannot watch policy files being written (%s): a change is loaded once it has settled",
                        exc.strerror, extra={"error": exc.strerror})
            return
        self._watch_all()

    def in_progress(self) -> list[str]:
        """The policy files (relative to the directory) modified and not yet closed by their writer."""
        if self._inotify is None:
            return []
        with self._lock:
            if self.directory.resolve() != self._root:  # a symlink swapped to another directory
                self._watch_all()
            for event in self._inotify.read(timeout=0):
                self._take(event)
            assert self._root is not None  # set by _watch_all
            return sorted(str((self._dirs[wd] / name).relative_to(self._root))
                          for wd, name in self._open if wd in self._dirs)

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()

    def _take(self, event) -> None:
        if event.mask & flags.Q_OVERFLOW:  # events were lost: what was open is unknown, so start afresh
            log.warning("too many policy file events at once; watching afresh")
            self._watch_all()
            return
        if event.mask & flags.IGNORED:  # its directory is gone
            self._dirs.pop(event.wd, None)
            self._open = {key for key in self._open if key[0] != event.wd}
            return
        key = (event.wd, event.name)
        if event.mask & flags.ISDIR:
            if event.mask & (flags.CREATE | flags.MOVED_TO) and event.wd in self._dirs:
                self._watch_tree(self._dirs[event.wd] / event.name)
        elif not event.name.endswith(".yaml"):
            return  # an editor's swap file stays open while it edits; only policy files count
        elif event.mask & flags.MODIFY:
            self._open.add(key)
        elif event.mask & (flags.CLOSE_WRITE | flags.DELETE | flags.MOVED_FROM):
            self._open.discard(key)

    def _watch_all(self) -> None:
        assert self._inotify is not None  # called only with inotify
        for wd in list(self._dirs):
            try:
                self._inotify.rm_watch(wd)
            except OSError:
                pass
        self._dirs.clear()
        self._open.clear()
        self._root = self.directory.resolve()
        self._watch_tree(self._root)

    def _watch_tree(self, top: Path) -> None:
        assert self._inotify is not None  # called only with inotify
        seen: set[str] = set()
        for here, subdirs, _ in os.walk(top, followlinks=True):
            real = os.path.realpath(here)
            if real in seen:  # a symlink back up the tree would walk for ever
                subdirs.clear()
                continue
            seen.add(real)
            try:
                self._dirs[self._inotify.add_watch(here, _MASK)] = Path(here)
            except OSError:  # removed as we walked, or the watch limit reached: settling still applies
                continue
