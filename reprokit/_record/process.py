"""This process: its code, environment and hardware, captured once and rendered once.

A run re-captures code only when a module file it depends on changed on disk, or the
repository's index or HEAD moved. The process-wide state of recording (the run counter per
name, the seed sweep in progress, where the last run was sealed) lives here too.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from reprokit._capture import unavailable
from reprokit._capture.environment import capture_environment, environ_generation, environment_key
from reprokit._capture.git import CodeCapture, capture_code
from reprokit._capture.hardware import blas_numerics, machine_hardware, torch_numerics
from reprokit._model.protocol import ChildProtocol
from reprokit._model.yaml import dump as dump_yaml
from reprokit._model.yaml import dump_section

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from typing import Any


class ProcessCapture:
    """Code, environment and hardware of this process, captured once and rendered once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.code: dict[str, CodeCache] = {}  # start folder -> capture
        self.env: dict[str, Any] | None = None
        self.env_text: str | None = None
        self._env_key: tuple | None = None
        self._imported: tuple[list[str], str] | None = None
        self.machine: Any = None  # a dict, or the unavailable marker
        self.hardware_text: str | None = None
        self._libraries: dict[str, Any] | None = None
        self._blas: tuple[tuple, dict[str, Any]] | None = None
        self._module_count = -1
        self._modules_under: dict[str, list[str]] = {}
        self._replay_code: tuple[Any, CodeCache] | None = None
        self._inherited: list[dict[str, CodeCache]] = []  # a forked child's parent's captures

    def forget_after_fork(self) -> None:
        """In a forked child: fresh locks, and no code capture shared with the parent (a patch
        still being written belongs to the parent's git process and pipe). The parent's captures
        are parked, not released: releasing one here could close its pipe (I/O, and a lock
        another thread of the parent may have held at the fork)."""
        self.lock = threading.Lock()
        self._inherited.append(self.code)
        self.code = {}

    # Environment and hardware are captured and rendered once, and again exactly when what they
    # describe can have changed: sys.path or the folders on it (an install, an uninstall),
    # os.environ (the numerics variables), the imported modules (which distributions are
    # used; whether torch and numpy are loaded), torch's settings (read on every run).

    def environment(self) -> dict[str, Any]:
        key = environment_key()
        if self.env is None or key != self._env_key:
            try:
                self.env = capture_environment()
            except Exception as exc:
                self.env = {"error": unavailable(exc)}
            self._env_key = key
            self.env_text = None
        return self.env

    def environment_text(self, imported: list[str]) -> str:
        env = self.environment()
        if self.env_text is None:
            self.env_text = dump_section("environment", env)
        if self._imported is None or self._imported[0] != imported:
            extra = dump_yaml({"imported": imported}) if imported else "imported: []\n"
            self._imported = (imported, "".join(f"  {line}\n" for line in extra.splitlines()))
        return self.env_text + self._imported[1]

    def hardware(self) -> str:
        if self.machine is None:
            try:
                self.machine = machine_hardware()
            except Exception as exc:
                self.machine = unavailable(exc)
        libraries = {**torch_numerics(), **self._blas_numerics()}
        if self.hardware_text is None or libraries != self._libraries:
            hw = {**self.machine, **libraries} if isinstance(self.machine, dict) else self.machine
            self.hardware_text = dump_section("hardware", hw)
            self._libraries = libraries
        return self.hardware_text

    def _blas_numerics(self) -> dict[str, Any]:
        """BLAS pools (milliseconds to read): again when modules were imported or removed or
        os.environ changed (thread-count variables), else the last answer. (A thread count
        changed through threadpoolctl's limits inside the process is not seen until then.)"""
        if "numpy" not in sys.modules:
            return {}
        key = (len(sys.modules), environ_generation())
        if self._blas is None or self._blas[0] != key:
            self._blas = (key, blas_numerics())
        return self._blas[1]

    def _module_files(self, root: str) -> list[str]:
        """Files of imported modules under ``root``; recomputed only when more were imported."""
        if len(sys.modules) != self._module_count or root not in self._modules_under:
            prefix = root + os.sep
            files = []
            for mod in list(sys.modules.values()):
                f = getattr(mod, "__file__", None)
                if f and f.startswith(prefix):
                    files.append(f)
            self._module_count = len(sys.modules)
            self._modules_under = {root: files}
        return self._modules_under[root]

    def _changed(self, cached: CodeCache) -> tuple[bool, bool]:
        """(anything changed, a module file changed) since ``cached`` was captured."""
        if cached.cap.root is None:
            return False, False
        root = cached.cap.root
        module_changed = False
        for f in self._module_files(root):
            try:
                st = os.stat(f)
            except OSError:
                continue
            known = cached.stats.get(f)
            if known is None:
                # Imported after the capture: it changed only if written after it.
                if st.st_mtime_ns > cached.when_ns:
                    module_changed = True
                else:
                    cached.stats[f] = (st.st_mtime_ns, st.st_size)
            elif known != (st.st_mtime_ns, st.st_size):
                module_changed = True
        if module_changed:
            return True, True
        return git_state(root) != cached.git_state, False

    def _replayed_code(self) -> tuple[Any, CodeCache] | None:
        """In a process re-executing a recorded run from its verified source: that run's code.

        Its tree was checked against the recorded digest before the process started, so the
        code identity carries over (with where it was rebuilt), rather than a snapshot of a
        temporary folder that would differ in name only.
        """
        raw = ChildProtocol.from_env().replay_code
        if not raw:
            return None
        if self._replay_code is None:
            import json

            try:
                data = json.loads(raw)
                section = dict(data["code"])
                section["rebuilt_in"] = data["source"]
                section["verified_before_running"] = True
                cap = CodeCapture(section=section, root=data["source"])
                text = dump_section("code", section)
                self._replay_code = (cap, CodeCache(cap, text, 0, {}, None))
            except (ValueError, KeyError, TypeError):
                return None
        return self._replay_code

    def code_for(self, start: str, entry: str | None) -> tuple[Any, CodeCache]:
        """(CodeCapture, its cache entry) for code started from ``start``; captured once per
        process, again only when a module file or the repository's index/HEAD changed.

        The portable patch may still be being written: ``code_text`` completes it."""
        replayed = self._replayed_code()
        if replayed is not None:
            return replayed
        cached = self.code.get(start)
        module_changed = False
        if cached is not None:
            changed, module_changed = self._changed(cached)
            if not changed:
                return cached.cap, cached
        when = time.time_ns()
        cap = capture_code(start, entry, wait=False)
        if module_changed:
            cap.section["changed_during_process"] = (
                "a source file changed on disk after this process imported it: the code that ran "
                "may differ from the recorded tree"
            )
        stats = {}
        if cap.root is not None:
            for f in self._module_files(cap.root):
                try:
                    st = os.stat(f)
                    stats[f] = (st.st_mtime_ns, st.st_size)
                except OSError:
                    pass
        state = git_state(cap.root) if cap.root is not None else None
        entry_cache = CodeCache(cap, None, when, stats, state)
        self.code[start] = entry_cache
        return cap, entry_cache

    def code_text(self, cache: CodeCache) -> str:
        """The rendered code block, once the capture (and its patch) is complete."""
        if cache.text is None:
            cache.cap.complete()
            cache.text = dump_section("code", cache.cap.section)
        return cache.text


class CodeCache:
    __slots__ = ("cap", "text", "when_ns", "stats", "git_state")

    def __init__(
        self, cap: Any, text: str | None, when_ns: int, stats: dict, git_state: Any
    ) -> None:
        self.cap, self.text, self.when_ns, self.stats, self.git_state = (
            cap,
            text,
            when_ns,
            stats,
            git_state,
        )


def git_state(root: str) -> tuple:
    """Stat data of the files a commit, checkout or ``git add`` rewrites."""
    out: list[tuple[int, int] | None] = []
    for name in ("index", "HEAD"):
        try:
            st = os.stat(os.path.join(root, ".git", name))
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


class ProcessState:
    """What the runs of one process share."""

    def __init__(self) -> None:
        # Runs of one process share this token; "ordinal" counts runs of one name within the
        # process, so a replayed script's runs can be matched to the recorded ones by name
        # and order.
        self.token = os.urandom(6).hex()
        self.ordinals: dict[str | None, int] = {}
        self.lock = threading.RLock()
        self.last_store_root: str | None = None  # where this process last sealed a run
        # While across_seeds() calls a function: {"seed": s, "group": g, "sealed": [ids]}.
        self.sweep: dict[str, Any] = {}

    def forget_after_fork(self) -> None:
        """In a forked child: a process of its own (new token, its own count of runs)."""
        self.token = os.urandom(6).hex()
        self.ordinals = {}
        self.lock = threading.RLock()
        self.sweep = {}

    def next_ordinal(self, name: str | None) -> int:
        with self.lock:
            n = self.ordinals.get(name, 0)
            self.ordinals[name] = n + 1
            return n


CAPTURE = ProcessCapture()
STATE = ProcessState()
