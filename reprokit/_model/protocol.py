"""The parent/child protocol: what one reprokit process tells the processes it starts.

A replay, an audit or ``reprokit run`` starts the user's program in a child process; the
child's runs learn where to seal, which seed to take, which run they re-execute and where to
list what they sealed from ``REPROKIT_*`` environment variables. Those variables are defined
here once, as the fields of :class:`ChildProtocol`, which writes them (parent side) and reads
them (child side). Nothing else in the package spells a ``REPROKIT_*`` name.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, MutableMapping

# field -> environment variable
VARIABLES = {
    "store": "REPROKIT_STORE",  # the store the child's runs seal into
    "seed": "REPROKIT_SEED",  # the seed the child's runs take unless given one
    "seed_override": "REPROKIT_SEED_OVERRIDE",  # a seed sweep: wins over a given seed
    "parent": "REPROKIT_PARENT",  # the run the child's top-level runs are nested in
    "replay_of": "REPROKIT_REPLAY_OF",  # the recorded run the child re-executes
    "group": "REPROKIT_GROUP",  # the audit or sweep the child's runs belong to
    "run_log": "REPROKIT_RUN_LOG",  # a file the child appends the ids it sealed to
    "deterministic": "REPROKIT_DETERMINISTIC",  # "1": ask for deterministic mode
    "replay_code": "REPROKIT_REPLAY_CODE",  # JSON: the verified code identity of the source
    "replay_spec": "REPROKIT_REPLAY_SPEC",  # JSON: the function call a replay re-executes
    # A Python program started by `reprokit run` (or its replay): the file its start-up hook
    # reports to (what it seeded, its parsed command line, its own source files).
    "child_report": "REPROKIT_CHILD_REPORT",
    # ... when that program is a launcher (torchrun, accelerate launch): the folder its Python
    # children, the program's workers, report to (one file each).
    "worker_reports": "REPROKIT_WORKER_REPORTS",
    "test_execution": "REPROKIT_TEST_EXECUTION",  # the pytest node id a child executes as a run
    "cache": "REPROKIT_CACHE",  # the folder holding this machine's copies of remote stores
    # For tests only: a file read instead of /etc/machine-id, so that a test can record runs as
    # another machine would (runs "not made here" replay in the sandbox by default).
    "machine_id_file": "REPROKIT_MACHINE_ID_FILE",
}
_INTS = ("seed", "seed_override")
_SEEN: list = [None]  # (os.environ's dict as last read, what it said)


class ChildProtocol:
    """The ``REPROKIT_*`` variables as typed fields; ``None`` means "not set"."""

    __slots__ = tuple(VARIABLES)

    store: str | None
    seed: int | None
    seed_override: int | None
    parent: str | None
    replay_of: str | None
    group: str | None
    run_log: str | None
    deterministic: bool
    replay_code: str | None
    replay_spec: str | None
    child_report: str | None
    worker_reports: str | None
    test_execution: str | None
    cache: str | None
    machine_id_file: str | None

    def __init__(self, **fields: object) -> None:
        unknown = set(fields) - set(VARIABLES)
        if unknown:
            raise TypeError(f"ChildProtocol has no field {sorted(unknown)[0]!r}")
        for name in VARIABLES:
            value = fields.get(name)
            setattr(self, name, bool(value) if name == "deterministic" else value)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ChildProtocol:
        """What this process's parent told it (values that do not parse read as unset).

        Read from ``os.environ`` (the default), the answer is kept until ``os.environ``
        changes: comparing its own dict costs a microsecond, reading 17 variables through the
        mapping (most of them unset) ten. Each call returns a copy of its own."""
        if environ is None:
            data = getattr(os.environ, "_data", None)
            if isinstance(data, dict):
                seen = _SEEN[0]
                if seen is None or seen[0] != data:
                    seen = _SEEN[0] = (dict(data), cls._parse(os.environ))
                return seen[1].copy()
        return cls._parse(os.environ if environ is None else environ)

    def copy(self) -> ChildProtocol:
        new = ChildProtocol.__new__(ChildProtocol)
        for name in VARIABLES:
            setattr(new, name, getattr(self, name))
        return new

    @classmethod
    def _parse(cls, env: Mapping[str, str]) -> ChildProtocol:
        fields: dict[str, object] = {}
        for name, var in VARIABLES.items():
            raw = env.get(var)
            if not raw:
                continue
            if name in _INTS:
                if raw.isdigit():
                    fields[name] = int(raw)
            elif name == "deterministic":
                fields[name] = raw == "1"
            else:
                fields[name] = raw
        return cls(**fields)

    def apply(self, env: MutableMapping[str, str], unset: Iterable[str] = ()) -> None:
        """Write the fields that are set into ``env``; remove the variables of the fields named
        in ``unset`` that are not set (so a child does not inherit them from this process)."""
        clear = set(unset)
        for name, var in VARIABLES.items():
            value = getattr(self, name)
            if name == "deterministic":
                value = "1" if value else None
            if value is not None:
                env[var] = str(value)
            elif name in clear:
                env.pop(var, None)

    def child_env(
        self, base: Mapping[str, str] | None = None, unset: Iterable[str] = ()
    ) -> dict[str, str]:
        """A copy of ``base`` (default: this process's environment) with the protocol applied."""
        env = dict(os.environ if base is None else base)
        self.apply(env, unset)
        return env

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{n}={getattr(self, n)!r}" for n in VARIABLES if getattr(self, n) not in (None, False)
        )
        return f"ChildProtocol({shown})"


def getenv(name: str) -> str | None:
    """``os.environ.get(name)``, without the mapping's decoding and exception for a variable that
    is not set (a run reads a dozen of them, most unset: ~1 µs each through the mapping)."""
    data = getattr(os.environ, "_data", None)
    if os.name == "posix" and type(data) is dict:
        raw = data.get(name.encode("utf-8", "surrogateescape"))
        return None if raw is None else os.fsdecode(raw)
    return os.environ.get(name)


def variable(name: str) -> str:
    """The environment variable of protocol field ``name``."""
    return VARIABLES[name]
