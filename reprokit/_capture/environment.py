"""The Python environment a run sees: interpreter, installed distributions, numerics variables.

Everything here is read from the file system and ``os.environ`` without importing the packages it
describes, and nothing raises into the caller: a part that cannot be read is recorded as
``unavailable(reason)`` instead.
"""

from __future__ import annotations

import os
import re
import sys
from _thread import get_ident

from reprokit._capture import unavailable
from reprokit._model.redact import REDACTED, is_secret_name, is_secret_value, strip_url_credentials

TYPE_CHECKING = False  # the typing module costs ~2 ms to import; annotations alone don't need it
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

__all__ = [
    "capture_environment",
    "imported_distributions",
    "module_distributions",
    "numerics_variables",
]

# -- environment variables ---------------------------------------------------------------------

# Variables that change what a run computes (thread counts, determinism switches, device
# visibility, distributed layout). Everything else in the environment is left out: it is mostly
# personal (paths, shells, credentials) and recording it would leak more than it explains.
_EXACT_VARIABLES = frozenset(
    {
        "PYTHONHASHSEED",
        "RANK",
        "LOCAL_RANK",
        "GROUP_RANK",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "NODE_RANK",
        "SLURM_JOB_ID",
        "SLURM_ARRAY_JOB_ID",
        "SLURM_ARRAY_TASK_ID",
        "SLURM_PROCID",
        "SLURM_LOCALID",
        "SLURM_NODEID",
        "SLURM_NTASKS",
        "CUDA_VISIBLE_DEVICES",
        "HIP_VISIBLE_DEVICES",
        "ROCR_VISIBLE_DEVICES",
        "OMP_NUM_THREADS",
    }
)
_PREFIX_VARIABLES = (
    "CUDA_",
    "CUBLAS_",
    "CUBLASLT_",
    "CUDNN_",
    "NCCL_",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "TF_",
    "XLA_",
    "JAX_",
    "TORCH_",
    "PYTORCH_",
    "NVIDIA_TF32_",
    "KMP_",
    "BLIS_",
    "VECLIB_",
)
# Inside the allowed prefixes, still leave out what says where machines are rather than how they
# compute (JAX_COORDINATOR_ADDRESS, NCCL_COMM_ID...), and Terraform's settings, which share
# TensorFlow's TF_ prefix; its TF_VAR_* inputs routinely carry secrets under harmless names.
_EXCLUDED_PREFIXES = (
    "TF_VAR_",
    "TF_CLI_",
    "TF_TOKEN_",
    "TF_LOG",
    "TF_DATA_DIR",
    "TF_WORKSPACE",
    "TF_IN_AUTOMATION",
    "TF_INPUT",
    "TF_PLUGIN_CACHE",
    "TF_REGISTRY_",
    "TF_STATE_",
    "TF_IGNORE",
    "TF_APPEND_USER_AGENT",
)
_EXCLUDED_SUFFIXES = ("_ADDR", "_ADDRESS", "_HOST", "_HOSTS", "_HOSTNAME", "_PORT", "_COMM_ID")


# Numerics variables that libraries set in their own process at import (scikit-learn and
# Intel's OpenMP: KMP_*; torch: CUDA_MODULE_LOADING). A run that imported them has them, a process
# that did not lacks them: that is no drift of the machine.
SET_AT_IMPORT = frozenset({"KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK", "CUDA_MODULE_LOADING"})


def is_numerics_variable(name: str) -> bool:
    """Whether ``name`` is one of the environment variables that change numerics."""
    return _allowed_variable(name)


def _allowed_variable(name: str) -> bool:
    if name in _EXACT_VARIABLES:
        return True
    if not name.startswith(_PREFIX_VARIABLES):
        return False
    return not (name.startswith(_EXCLUDED_PREFIXES) or name.endswith(_EXCLUDED_SUFFIXES))


def numerics_variables(
    environ: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """The allowlisted numerics variables of ``environ`` (default ``os.environ``), sorted, and the
    names whose values were replaced by ``REDACTED`` because the name or value looks secret."""
    source = os.environ if environ is None else environ
    variables: dict[str, str] = {}
    redacted: list[str] = []
    for name in sorted(n for n in source if isinstance(n, str) and _allowed_variable(n)):
        value = source.get(name)
        if value is None:
            continue  # removed by another thread since the listing
        if is_secret_name(name) or is_secret_value(value):
            variables[name] = REDACTED
            redacted.append(name)
        else:
            variables[name] = str(value)
    return variables, redacted


# -- installed distributions -------------------------------------------------------------------

_NORMALIZE = re.compile(r"[-_.]+")


def _canonical(name: str) -> str:
    """PEP 503 normalized form, the key two spellings of one distribution name share."""
    return _NORMALIZE.sub("-", name).lower()


class _Dist:
    """One metadata folder (or egg-info file) found on sys.path."""

    __slots__ = ("name", "key", "version", "path", "kind")

    def __init__(self, name: str, version: str, path: str, kind: str) -> None:
        self.name = name
        self.key = _canonical(name)
        self.version = version
        self.path = path
        self.kind = kind  # "dist-info", "egg-info" (a folder) or "egg-info-file"


# The last scan, kept so module_distributions() describes the same distributions that
# capture_environment() listed without walking sys.path again, and what it was made of: a new
# scan is made only when sys.path or the listing of one of its folders changed (installing or
# removing a distribution adds or removes its metadata folder, which changes the folder's mtime).
_SCAN: list[_Dist] | None = None
_SCAN_KEY: tuple | None = None
_ENV_SEEN: dict | None = None
_ENV_GENERATION = 0


_HELD: dict[int, tuple | None] = {}  # thread -> inside ``one_look()``: its paths_key then


class one_look:
    """While inside, ``paths_key`` answers this thread what it found at its first call: a run's
    seal asks twice (the distributions, the environment) and gets one snapshot of sys.path's
    folders."""

    def __enter__(self) -> None:
        _HELD[get_ident()] = None

    def __exit__(self, *exc: object) -> None:
        _HELD.pop(get_ident(), None)


def paths_key() -> tuple:
    """sys.path with each entry's mtime: changes when an entry is added or removed and when a
    distribution is installed into or removed from one of its folders."""
    if not _HELD:
        return _paths_key()
    me = get_ident()
    if me not in _HELD:
        return _paths_key()
    key = _HELD[me]
    if key is None:
        key = _HELD[me] = _paths_key()
    return key


def _paths_key() -> tuple:
    out: list[tuple[str, int | None]] = []
    for entry in sys.path:
        try:
            out.append((entry, os.stat(entry or ".").st_mtime_ns))
        except (OSError, TypeError, ValueError):
            out.append((entry, None))
    return tuple(out)


def environ_generation() -> int:
    """A number that changes whenever ``os.environ`` changed since the last call."""
    global _ENV_SEEN, _ENV_GENERATION
    # os.environ's own dict: comparing it is a few microseconds, reading every variable through
    # the mapping's decoding is tens.
    data = getattr(os.environ, "_data", None)
    if not isinstance(data, dict):
        data = dict(os.environ)
    if data != _ENV_SEEN:
        _ENV_SEEN = dict(data)
        _ENV_GENERATION += 1
    return _ENV_GENERATION


def environment_key() -> tuple:
    """What :func:`capture_environment`'s answer depends on that can change inside a process."""
    return paths_key(), environ_generation()


def _distributions() -> list[_Dist]:
    """The distributions on sys.path: the last scan while sys.path and its folders are as they
    were, else a new one (and a new module resolver)."""
    global _SCAN, _SCAN_KEY, _RESOLVER
    key = paths_key()
    if _SCAN is None or key != _SCAN_KEY:
        _SCAN, _SCAN_KEY, _RESOLVER = _scan_distributions(), key, None
    return _SCAN


def _read_headers(path: str) -> tuple[str | None, str | None]:
    """Name and Version from a METADATA/PKG-INFO file, reading only its header block."""
    name = version = None
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                break  # the body (long description) follows the first blank line
            if name is None and line[:5].lower() == "name:":
                name = line[5:].strip()
            elif version is None and line[:8].lower() == "version:":
                version = line[8:].strip()
            if name is not None and version is not None:
                break
    return name, version


def _dist_from_entry(directory: str, entry_name: str, is_dir: bool) -> _Dist | None:
    path = os.path.join(directory, entry_name)
    if entry_name.endswith(".dist-info"):
        if not is_dir:
            return None
        kind, stem, metadata = "dist-info", entry_name[: -len(".dist-info")], "METADATA"
        parts = stem.split("-")
        # Installers escape "-" to "_" in both name and version, so exactly one "-" is the norm.
        if len(parts) == 2 and parts[0] and parts[1]:
            return _Dist(parts[0], parts[1], path, kind)
    elif entry_name.endswith(".egg-info"):
        kind = "egg-info" if is_dir else "egg-info-file"
        stem = entry_name[: -len(".egg-info")]
        metadata = "PKG-INFO"
        parts = stem.split("-")  # Name-Version[-pyX.Y]; "Name.egg-info" for develop installs
        if len(parts) >= 2 and parts[0] and parts[1][:1].isdigit():
            return _Dist(parts[0], parts[1], path, kind)
    else:
        return None
    # An odd folder name: only now pay for opening this one distribution's metadata.
    header_file = os.path.join(path, metadata) if is_dir else path
    name, version = _read_headers(header_file)
    if not name:
        return None  # importlib.metadata would not report a nameless distribution either
    return _Dist(name, version or unavailable("no Version in metadata"), path, kind)


def _scan_distributions(paths: Iterable[Any] | None = None) -> list[_Dist]:
    """Every distribution visible on ``paths`` (default sys.path), first occurrence winning."""
    found: dict[str, _Dist] = {}
    seen_dirs: set[str] = set()
    for entry in list(sys.path if paths is None else paths):
        try:
            directory = os.fspath(entry)
        except TypeError:
            continue
        if not isinstance(directory, str):
            continue
        directory = directory or "."  # "" on sys.path is the current directory
        if directory in seen_dirs:
            continue
        seen_dirs.add(directory)
        try:
            # Missing folders, zip files and other non-directories are normal sys.path entries.
            with os.scandir(directory) as entries:
                candidates = [
                    (item.name, item.is_dir())
                    for item in entries
                    if item.name.endswith((".dist-info", ".egg-info"))
                ]
        except OSError:
            continue
        for entry_name, is_dir in candidates:
            try:
                dist = _dist_from_entry(directory, entry_name, is_dir)
            except Exception:  # one unreadable entry must not hide the others
                continue
            if dist is not None and dist.key not in found:
                found[dist.key] = dist
    return sorted(found.values(), key=lambda d: d.key)


def _clean_url(url: str) -> str:
    """The URL without userinfo, and with secret-looking query parameters (signed URLs) redacted."""
    url = strip_url_credentials(url)
    base, sep, rest = url.partition("?")
    if not sep:
        return REDACTED if is_secret_value(url) else url
    query, hash_sep, fragment = rest.partition("#")
    params = []
    for param in query.split("&"):
        key, eq, value = param.partition("=")
        if eq and (is_secret_name(key) or is_secret_value(value)):
            param = f"{key}={REDACTED}"
        params.append(param)
    cleaned = f"{base}?{'&'.join(params)}{hash_sep}{fragment}"
    return REDACTED if is_secret_value(cleaned) else cleaned


def _direct_url(dist: _Dist) -> dict[str, Any] | None:
    """The PEP 610 record of how ``dist`` was installed, or None for an ordinary index install."""
    if dist.kind != "dist-info":
        return None
    path = os.path.join(dist.path, "direct_url.json")
    if not os.path.isfile(path):
        return None
    import json  # only paid by environments that have direct installs

    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    dir_info = data.get("dir_info") or {}
    vcs_info = data.get("vcs_info") or {}
    return {
        "url": _clean_url(str(data.get("url", ""))),
        "editable": bool(dir_info.get("editable", False)),
        "vcs": vcs_info.get("vcs"),
        "commit": vcs_info.get("commit_id"),
    }


def _python() -> dict[str, Any]:
    # What platform.python_version()/python_implementation() say, without importing platform.
    v = sys.version_info
    version = f"{v.major}.{v.minor}.{v.micro}"
    if v.releaselevel != "final":
        version += {"alpha": "a", "beta": "b", "candidate": "rc"}.get(v.releaselevel, "") + str(
            v.serial
        )
    names = {"cpython": "CPython", "pypy": "PyPy", "ironpython": "IronPython", "jython": "Jython"}
    return {
        "version": version,
        "implementation": names.get(sys.implementation.name, sys.implementation.name),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "virtualenv": sys.prefix != getattr(sys, "base_prefix", sys.prefix),
    }


def capture_environment() -> dict[str, Any]:
    """The per-process environment record: python, packages, direct installs, numerics variables.

    Keys: ``python``, ``packages`` ({name: version}), ``direct`` ({name: {url, editable, vcs,
    commit}}), ``variables`` and, only when something was hidden, ``redacted_variables``. Any part
    that fails is recorded as ``unavailable(reason)``; the function itself never raises.
    """
    result: dict[str, Any] = {}
    try:
        result["python"] = _python()
    except Exception as exc:
        result["python"] = unavailable(exc)

    dists: list[_Dist] | None = None
    try:
        dists = _distributions()
        result["packages"] = {d.name: d.version for d in dists}
    except Exception as exc:
        result["packages"] = unavailable(exc)

    if dists is None:
        result["direct"] = unavailable("packages could not be listed")
    else:
        direct: dict[str, Any] = {}
        for dist in dists:
            info: dict[str, Any] | str | None
            try:
                info = _direct_url(dist)
            except Exception as exc:  # one unreadable direct_url.json spoils only its own entry
                info = unavailable(exc)
            if info is not None:
                direct[dist.name] = info
        result["direct"] = direct

    try:
        variables, redacted = numerics_variables()
        result["variables"] = variables
        if redacted:
            result["redacted_variables"] = redacted
    except Exception as exc:
        result["variables"] = unavailable(exc)
    return result


# -- which distribution provides which module --------------------------------------------------

_EXTENSION_SUFFIXES = (".so", ".pyd")
_NOT_MODULES = ("__pycache__", "__init__")


def _module_name(component: str, is_dir: bool) -> str | None:
    """The importable name a RECORD path component stands for, or None if it is not a module."""
    if is_dir:
        name = component
    elif component.endswith(".py"):
        name = component[:-3]
    elif component.endswith(_EXTENSION_SUFFIXES):
        name = component.split(".", 1)[0]  # foo.cpython-311-x86_64-linux-gnu.so -> foo
    else:
        return None
    # __editable__ finders are imported by a .pth at startup for every editable install; keying
    # them would make each such distribution look imported by every program.
    if not name.isidentifier() or name in _NOT_MODULES or name.startswith("__editable__"):
        return None
    return name


# The first one or two path components of each RECORD line ("pkg/" or "mod.py", optionally
# CSV-quoted). findall + set runs in C, ~2.5x faster than a Python loop over lines, which
# matters for RECORDs with tens of thousands of lines (torch). Kept as strings so importing
# reprokit does not compile them; re caches them on first use.
_RECORD_TOP = r'(?m)^"?([^/,"\r\n]+)(/?)'
_RECORD_CHILD = r'(?m)^"?([^/,"\r\n]+)/([^/,"\r\n]+)(/?)'


def _read_record(dist: _Dist) -> str:
    if dist.kind != "dist-info":
        return ""  # egg-info has installed-files.txt at best, with paths relative to itself
    with open(os.path.join(dist.path, "RECORD"), "rb") as handle:
        return handle.read().decode("utf-8", "replace")


def _record_tops(dist: _Dist) -> set[str]:
    """Top-level modules and packages listed in ``dist``'s RECORD."""
    tops = set()
    for first, slash in set(re.findall(_RECORD_TOP, _read_record(dist))):
        name = _module_name(first, bool(slash))
        if name is not None:
            tops.add(name)
    return tops


def _record_children(dist: _Dist, top: str) -> set[str]:
    """Modules and packages directly inside package ``top`` according to ``dist``'s RECORD."""
    children = set()
    for first, second, slash in set(re.findall(_RECORD_CHILD, _read_record(dist))):
        if first == top:
            name = _module_name(second, bool(slash))
            if name is not None:
                children.add(name)
    return children


def _top_level_txt(dist: _Dist) -> set[str] | None:
    if dist.kind == "egg-info-file":
        return None
    try:
        with open(os.path.join(dist.path, "top_level.txt"), encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    names = {line.strip().split("/", 1)[0] for line in lines}
    return {name for name in names if name.isidentifier()}


class _Resolver:
    """Finds which distribution provides an imported top-level module, reading as little as it
    can: a distribution named like the module first, then top_level.txt files (those whose names
    contain the module's first), RECORD files last. Every answer is cached for the process."""

    def __init__(self, dists: list[_Dist]) -> None:
        self.dists = dists
        self.by_module_name = {d.key.replace("-", "_"): d for d in dists}
        self.tops: dict[_Dist, set[str] | None] = {}  # what each examined dist provides
        self.answers: dict[tuple[str, bool], tuple[str, ...]] = {}
        self.complete = False

    def provided_by(self, dist: _Dist) -> set[str]:
        tops = self.tops.get(dist)
        if tops is None:
            key = _dist_key(dist)
            known = DISK_CACHE.get(dist.path, key)
            if known is not None:
                tops = set(known)
            else:
                try:
                    tops = _top_level_txt(dist) or _record_tops(dist)
                except Exception:
                    tops = set()
                if not tops:
                    tops = {_NORMALIZE.sub("_", dist.name).lower()}
                DISK_CACHE.put(dist.path, key, sorted(tops))
            self.tops[dist] = tops
        return tops

    def providers(self, module: str, every: bool = False) -> tuple[str, ...]:
        """The distribution providing ``module`` (``every``: all of them, for namespaces)."""
        key = (module, every)
        cached = self.answers.get(key)
        if cached is not None:
            return cached
        named = self.by_module_name.get(module.lower())
        if not every and named is not None and module in self.provided_by(named):
            found: tuple[str, ...] = (named.name,)
        else:
            lowered = module.lower()
            ordered = sorted(self.dists, key=lambda d: lowered not in d.key)
            hits = (d.name for d in ordered if module in self.provided_by(d))
            first = next(hits, None)
            found = tuple(hits) if every else ((first,) if first else ())
            if every and first:
                found = (first, *found)
        self.answers[key] = found
        return found


def _dist_key(dist: _Dist) -> list[int] | None:
    """What changes when a distribution is installed again over the same folder name: the
    folder's inode and mtime, RECORD's mtime and size (None where they cannot be read)."""
    try:
        folder = os.stat(dist.path)
        record = os.stat(os.path.join(dist.path, "RECORD")) if dist.kind == "dist-info" else None
    except OSError:
        return None
    out = [folder.st_ino, folder.st_mtime_ns]
    if record is not None:
        out += [record.st_mtime_ns, record.st_size]
    return out


class _DiskCache:
    """What each distribution provides, kept across processes (reading RECORD files is most of
    the scan's cost: tens of milliseconds with PyTorch installed). An entry counts only while
    its distribution's folder and RECORD are the ones it was read from; the file is rewritten
    (atomically) by a process that learned something new. Best effort: any error means no
    cache. The file lives in ``$XDG_CACHE_HOME/reprokit`` (default ``~/.cache/reprokit``)."""

    def __init__(self) -> None:
        self.entries: dict[str, Any] | None = None
        self.dirty = False

    def path(self) -> str | None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        if not os.path.isabs(base):
            return None
        tag = f"{sys.implementation.cache_tag}-{_prefix_tag()}"
        return os.path.join(base, "reprokit", f"distributions-{tag}.json")

    def _load(self) -> dict[str, Any]:
        if self.entries is None:
            self.entries = {}
            path = self.path()
            if path is not None:
                try:
                    import json

                    with open(path, encoding="utf-8") as fh:
                        data = json.load(fh)
                    if isinstance(data, dict):
                        self.entries = data
                except (OSError, ValueError):
                    pass
        return self.entries

    def get(self, dist_path: str, key: list[int] | None) -> list[str] | None:
        if key is None:
            return None
        entry = self._load().get(dist_path)
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == key:
            tops = entry[1]
            if isinstance(tops, list) and all(isinstance(t, str) for t in tops):
                return tops
        return None

    def put(self, dist_path: str, key: list[int] | None, tops: list[str]) -> None:
        if key is not None:
            self._load()[dist_path] = [key, tops]
            self.dirty = True

    def save(self) -> None:
        """Write the cache if this process added to it."""
        if not self.dirty:
            return
        self.dirty = False
        path = self.path()
        if path is None:
            return
        try:
            import json

            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(self._load(), fh, separators=(",", ":"))
            os.replace(tmp, path)
        except OSError:
            pass


def _prefix_tag() -> str:
    """A short stable name for this interpreter's environment (one cache file each)."""
    import hashlib

    return hashlib.sha256(sys.prefix.encode("utf-8", "replace")).hexdigest()[:12]


DISK_CACHE = _DiskCache()
_RESOLVER: _Resolver | None = None


def _resolver() -> _Resolver:
    global _RESOLVER
    dists = _distributions()  # drops the resolver when the distributions changed
    if _RESOLVER is None:
        _RESOLVER = _Resolver(dists)
    return _RESOLVER


def module_distributions() -> dict[str, str]:
    """{top-level import name: distribution name} for every distribution on sys.path.

    Reads every distribution's top_level.txt or RECORD (milliseconds): use
    ``imported_distributions`` on the recording path, which looks up only what is imported.
    Where several distributions share a top-level name (namespace packages), that key names
    the first one on sys.path and ``"top.child"`` keys name the provider of each child package.
    """
    res = _resolver()
    owners: dict[str, list[_Dist]] = {}
    for dist in res.dists:
        for top in res.provided_by(dist):
            owners.setdefault(top, []).append(dist)
    DISK_CACHE.save()
    mapping = {top: providers[0].name for top, providers in owners.items()}
    for top, providers in owners.items():
        if len(providers) > 1:
            for dist in providers:
                try:
                    children = _record_children(dist, top)
                except Exception:
                    continue
                for child in sorted(children):
                    mapping.setdefault(f"{top}.{child}", dist.name)
    return mapping


def _shared_children(top: str, providers: tuple[str, ...]) -> dict[str, str]:
    res = _resolver()
    out: dict[str, str] = {}
    for dist in res.dists:
        if dist.name in providers:
            try:
                for child in sorted(_record_children(dist, top)):
                    out.setdefault(child, dist.name)
            except Exception:
                continue
    return out


def imported_distributions(modules: Iterable[str] | None = None) -> list[str]:
    """Sorted names of the distributions whose modules are imported (or among ``modules``)."""
    global _IMPORTED
    try:
        res = _resolver()
        if modules is None:
            # Asked once per run: the same modules and distributions give the same answer.
            if _IMPORTED is not None and _IMPORTED[0] is res and sys.modules.keys() == _IMPORTED[1]:
                return list(_IMPORTED[2])
            keys = frozenset(sys.modules)
            found_now = _imported(res, None)
            _IMPORTED = (res, keys, tuple(found_now))
            DISK_CACHE.save()
            return found_now
        return _imported(res, modules)
    except Exception:
        return []


_IMPORTED: tuple[_Resolver, frozenset[str], tuple[str, ...]] | None = None


def _imported(res: _Resolver, modules: Iterable[str] | None) -> list[str]:
    if modules is None:
        names: Iterable[str] = tuple(sys.modules)  # a copy: other threads may import meanwhile
        present: Mapping[str, object] | set[str] = sys.modules
    else:
        given = [m for m in modules if isinstance(m, str)]
        present = {".".join(m.split(".", 2)[:2]) for m in given}
        names = {m.partition(".")[0] for m in given}
    found: set[str] = set()
    for name in names:
        if "." in name or name.startswith("_") or name in _BUILTIN_NAMES:
            continue  # submodules, private helpers and the standard library: no distribution
        if modules is None and not _from_site(sys.modules.get(name)):
            continue
        module = sys.modules.get(name) if modules is None else None
        namespace = module is None or getattr(module, "__file__", None) is None
        providers = res.providers(name, every=namespace)
        if len(providers) == 1:
            found.add(providers[0])
        elif providers:
            # A shared namespace: credit the providers of the imported children; if none
            # match, the name itself was provided twice, so list every provider.
            children = _shared_children(name, providers)
            matched = {d for child, d in children.items() if f"{name}.{child}" in present}
            found.update(matched or providers)
    return sorted(found, key=str.lower)


_BUILTIN_NAMES = frozenset(sys.builtin_module_names) | frozenset(
    getattr(sys, "stdlib_module_names", ())
)


def _from_site(module: object) -> bool:
    """Whether a module was loaded from outside the standard library (so may be installed)."""
    if module is None:
        return False
    file = getattr(module, "__file__", None)
    if file is None:
        path = getattr(module, "__path__", None)  # a namespace package
        return bool(path)
    return not file.startswith(_STDLIB_PREFIXES) or "-packages" in file


_STDLIB_PREFIXES = tuple(
    {os.path.join(p, "lib") for p in (sys.base_prefix, sys.base_exec_prefix) if p}
)
