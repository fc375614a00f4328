"""Paper archives: runs, exact source, pinned environment, outputs, RO-Crate and REPRODUCE.md
in one deterministic file that anyone can verify and replay on a clean machine.

Layout inside the archive (under one top folder)::

    REPRODUCE.md              how to verify and replay; runs, claims, expected results
    ro-crate-metadata.json    RO-Crate 1.1, Process Run Crate profile
    report.html               the runs at a glance (``reprokit report`` of the archived runs)
    requirements.lock         pinned distributions, Python version and platform
    store/                    the runs' sealed folders, the objects they use, the ledger
    source/<tree>/            each distinct source tree the runs ran from
    outputs/<run>/<path>      output artifacts up to --max-artifact-size
    inputs/<path>             with --with-inputs: the runs' inputs, up to --max-input-size each
    CITATION.cff              when the repository has one
    history.bundle            with --with-history
    CHECKSUMS.sha256          sha256 of every other member (written last)

Archiving the same runs twice gives byte-identical files: members are sorted, times, owners and
modes fixed, and gzip's own timestamp zeroed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from reprokit._capture.git import git
from reprokit._model.digest import sha256_file
from reprokit._model.errors import (
    ArgumentError,
    ManifestError,
    NotReplayable,
    ReprokitError,
    TamperedError,
    UnsafeArchive,
)
from reprokit._model.manifest import Manifest, as_mapping
from reprokit._model.report import Report, json_name
from reprokit._model.version import __version__
from reprokit._reexec.sandbox import available as sandbox_available
from reprokit._reexec.sandbox import wrap as sandbox_wrap
from reprokit._reexec.source import check_source_dir, rebuild_source
from reprokit._store.store import Store, referenced_objects
from reprokit._verbs.archive_inputs import (
    DEFAULT_MAX_INPUT,
    INPUTS_DIR,
    check_archived_inputs,
    input_rows,
    pack_inputs,
    packable,
)
from reprokit._verbs.audit import results_of
from reprokit._verbs.executors import LocalExecutor
from reprokit._verbs.parallel import replay_many
from reprokit._verbs.replay import replay as replay_run
from reprokit._verbs.report import generator_of, render_report
from reprokit._verbs.signing import sign_file, verify_signature
from reprokit._verbs.templates import templates_dir
from reprokit._verbs.wheel import (
    DIST_NAME,
    is_reprokit,
    own_wheel,
    requirement_name,
    source_tree,
)

DEFAULT_MAX_ARTIFACT = 100 * 1024 * 1024
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1 << 20
PROCESS_RUN_CRATE = "https://w3id.org/ro/wfrun/process/0.5"
RO_CRATE_11 = "https://w3id.org/ro/crate/1.1"


class Limits:
    """What safe extraction accepts: member count, total unpacked size, and how much larger
    than the archive file its content may be (``max_ratio``, applied once the content passes
    ``ratio_floor`` bytes: small archives of repetitive text compress well and are harmless)."""

    def __init__(
        self,
        max_members: int = 500_000,
        max_bytes: int = 64 * 1024**3,
        max_ratio: float = 200.0,
        ratio_floor: int = 64 * 1024**2,
    ) -> None:
        self.max_members = max_members
        self.max_bytes = max_bytes
        self.max_ratio = max_ratio
        self.ratio_floor = ratio_floor

    def check(self, total: int, packed: int) -> None:
        """Raise UnsafeArchive when ``total`` unpacked bytes break the caps for an archive
        file of ``packed`` bytes; called as the member headers stream by, before writing."""
        if total > self.max_bytes:
            raise UnsafeArchive(
                f"archive unpacks to more than {self.max_bytes} bytes (decompression bomb?)"
            )
        if total > self.ratio_floor and total > self.max_ratio * max(packed, 1):
            raise UnsafeArchive(
                f"archive of {packed} bytes unpacks to more than {total} bytes, over "
                f"{self.max_ratio:g} times its size (decompression bomb?)"
            )


# -- writing -------------------------------------------------------------------------------------


class _Hashing(io.RawIOBase):
    """A reader that hashes (and reports progress of) what passes through it."""

    def __init__(self, fh: BinaryIO, progress: Callable[[int], None] | None) -> None:
        self.fh = fh
        self.h = hashlib.sha256()
        self.progress = progress

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.h.update(data)
        if self.progress is not None and data:
            self.progress(len(data))
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class _Writer:
    """Deterministic tar.gz or zip writing, collecting every member's sha256."""

    def __init__(self, path: str, top: str, as_zip: bool) -> None:
        self.path = path
        self.top = top
        self.digests: dict[str, str] = {}
        self.zip = as_zip
        self._raw = open(path, "wb")  # noqa: SIM115 - closed in close()
        if self.zip:
            self._zf = zipfile.ZipFile(self._raw, "w", compression=zipfile.ZIP_DEFLATED)
        else:
            # filename="" and mtime=0: the gzip header carries neither a name nor a time.
            # Level 6: what `tar czf` (gzip -6) uses; 9 costs ~2x the time for ~1 % in size.
            self._gz = gzip.GzipFile(
                filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6
            )
            self._tf = tarfile.open(fileobj=self._gz, mode="w", format=tarfile.GNU_FORMAT)  # noqa: SIM115

    def _name(self, rel: str) -> str:
        return f"{self.top}/{rel}"

    def _tarinfo(self, rel: str, size: int, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(self._name(rel))
        info.size, info.mode, info.mtime = size, mode, 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def _zipinfo(self, rel: str, mode: int) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(self._name(rel), date_time=_ZIP_EPOCH)
        info.create_system = 3  # unix, so the mode below is honoured
        info.external_attr = mode << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        return info

    def add_bytes(self, rel: str, data: bytes, mode: int = 0o644) -> None:
        self.digests[rel] = hashlib.sha256(data).hexdigest()
        if self.zip:
            self._zf.writestr(self._zipinfo(rel, stat.S_IFREG | mode), data)
        else:
            self._tf.addfile(self._tarinfo(rel, len(data), mode), io.BytesIO(data))

    def add_file(
        self, rel: str, path: str, mode: int | None = None, progress: Callable | None = None
    ) -> str:
        st = os.stat(path)
        if mode is None:
            mode = 0o755 if st.st_mode & 0o111 else 0o644
        with open(path, "rb") as fh:
            reader = _Hashing(fh, progress)
            if self.zip:
                with self._zf.open(self._zipinfo(rel, stat.S_IFREG | mode), "w") as out:
                    shutil.copyfileobj(reader, out, _CHUNK)
            else:
                self._tf.addfile(self._tarinfo(rel, st.st_size, mode), reader)
        self.digests[rel] = reader.h.hexdigest()
        return self.digests[rel]

    def add_symlink(self, rel: str, target: str) -> None:
        self.digests[rel] = hashlib.sha256(("symlink:" + target).encode()).hexdigest()
        if self.zip:
            self._zf.writestr(self._zipinfo(rel, stat.S_IFLNK | 0o777), target)
        else:
            info = self._tarinfo(rel, 0, 0o777)
            info.type, info.linkname = tarfile.SYMTYPE, target
            self._tf.addfile(info)

    def close(self) -> None:
        if self.zip:
            self._zf.close()
        else:
            self._tf.close()
            self._gz.close()
        self._raw.close()


# -- what goes in --------------------------------------------------------------------------------


def _source_key(m: Manifest) -> str:
    """The folder name under ``source/`` of a run's source tree."""
    return str(m.code.get("tree") or m.code.get("digest") or m.id).split(":")[-1][:16]


def _derived_crate(top: str, runs: list[Manifest]) -> str:
    """ro-crate-metadata.json as ``archive`` writes it for these runs and the members present
    in the extracted folder ``top``: what an archive's crate must be, byte for byte."""
    sources = {m.id: f"source/{_source_key(m)}" for m in runs}
    outputs: dict[str, list[dict[str, Any]]] = {}
    for m in runs:
        for rec in _output_files(m):
            rel = f"outputs/{m.id}/{rec['path']}"
            if os.path.isfile(os.path.join(top, *rel.split("/"))):
                item = {"path": rel, "size": rec.get("size"), "sha256": rec.get("sha256")}
                outputs.setdefault(m.id, []).append(item)
    files = sorted(
        n
        for n in os.listdir(top)
        if n != "ro-crate-metadata.json" and not os.path.isdir(os.path.join(top, n))
    )
    inputs = input_rows(runs)
    for row in inputs:  # packed inputs lie under inputs/<path>
        packed = os.path.join(top, INPUTS_DIR, *row["path"].split("/"))
        row["included"] = os.path.lexists(packed) and packable(row["path"])
    crate = _crate(os.path.basename(top), runs, sources, outputs, files, inputs)
    return json.dumps(crate, indent=2, sort_keys=True) + "\n"


def _archive_report(runs: list[Manifest], store: Store) -> bytes:
    """report.html of an archive: the archived runs, with the verdicts the archived runs hold
    (nothing from outside the archive, so that ``verify`` can derive it again)."""
    ordered = sorted(runs, key=lambda m: m.id)
    return render_report(ordered, store, ordered).html.encode("utf-8")


def _check_report(top: str, runs: list[Manifest]) -> None:
    """report.html, when written by this reprokit, must be what the sealed runs give. One
    written by another version (its template differs) is covered by the checksums only."""
    page = os.path.join(top, "report.html")
    if not runs or not os.path.isfile(page) or os.path.islink(page):
        return
    with open(page, "rb") as fh:
        actual = fh.read()
    if generator_of(actual) != __version__:
        return
    if actual != _archive_report(runs, Store(os.path.join(top, "store"))):
        raise TamperedError(
            "report.html does not match what the sealed runs give (edited?)", path="report.html"
        )


def _check_generated(top: str, runs: list[Manifest]) -> list[str]:
    """The members generated from the sealed runs (requirements.lock, the RO-Crate,
    REPRODUCE.md, the report) are derived again and compared: an edit, even with CHECKSUMS.sha256
    recomputed, is caught. Returns notes on what could not be derived again."""
    notes = _check_reproduce(top, runs)
    _check_report(top, runs)
    for member, expected in (
        ("requirements.lock", _lock_lines(runs)),
        ("ro-crate-metadata.json", _derived_crate(top, runs)),
    ):
        try:
            with open(os.path.join(top, member), "rb") as fh:
                actual = fh.read()
        except OSError:
            raise TamperedError(f"{member} is missing", path=member) from None
        if actual != expected.encode():
            raise TamperedError(
                f"{member} does not match what the sealed runs give (edited?)", path=member
            )
    # CITATION.cff comes from the runs' source when it holds one: it must be that file.
    cited = os.path.join(top, "CITATION.cff")
    for m in runs:
        recorded = os.path.join(top, "source", _source_key(m), "CITATION.cff")
        if os.path.isfile(recorded) and not os.path.islink(recorded):
            if not os.path.isfile(cited) or _sha(cited) != _sha(recorded):
                raise TamperedError(
                    "CITATION.cff differs from the one in the runs' source (edited?)",
                    path="CITATION.cff",
                )
            break
    return notes


def _settings_of(text: str, runs: list[Manifest]) -> dict[str, Any]:
    """The settings REPRODUCE.md's last line carries, checked field by field; TamperedError
    when the line is missing or does not hold what ``archive`` writes there."""
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    bad = TamperedError(
        "REPRODUCE.md's last line does not hold the settings archive writes (edited?)",
        path="REPRODUCE.md",
    )
    if not (last.startswith(SETTINGS_LINE) and last.endswith(" -->")):
        raise bad
    try:
        settings = json.loads(last[len(SETTINGS_LINE) : -len(" -->")])
    except ValueError:
        raise bad from None
    keys = {"format", "filename", "version", "wheel_note", "claims", "rtol", "atol",
            "max_artifact_size", "inputs_why"}  # fmt: skip
    if not isinstance(settings, dict) or set(settings) != keys or settings["format"] != 1:
        raise bad
    ids = {m.id for m in runs}

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    claims = settings["claims"]
    why = settings["inputs_why"]
    ok = (
        all(isinstance(settings[k], str) for k in ("filename", "version", "wheel_note"))
        and number(settings["rtol"])
        and number(settings["atol"])
        and isinstance(settings["max_artifact_size"], int)
        and not isinstance(settings["max_artifact_size"], bool)
        and isinstance(claims, list)
        and all(
            isinstance(c, dict)
            and set(c) == {"claim", "run", "result"}
            and isinstance(c["claim"], str)
            and c["run"] in ids
            and (c["result"] is None or isinstance(c["result"], str))
            for c in claims
        )
        and isinstance(why, list)
        and len(why) == len(input_rows(runs))
        and all(w is None or isinstance(w, str) for w in why)
    )
    if not ok:
        raise bad
    return settings


def _check_reproduce(top: str, runs: list[Manifest]) -> list[str]:
    """REPRODUCE.md derived again from the sealed runs, the members present and the settings
    on its last line, compared byte for byte. An archive written by another reprokit version
    (another template) is not derived again: a note says so."""
    try:
        with open(os.path.join(top, "REPRODUCE.md"), "rb") as fh:
            data = fh.read()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        raise TamperedError("REPRODUCE.md is missing or not UTF-8", path="REPRODUCE.md") from None
    settings = _settings_of(text, runs)
    if settings["version"] != __version__:
        return [
            f"REPRODUCE.md was written by reprokit {settings['version']}, whose template this "
            f"version ({__version__}) does not have: it is pinned by its checksum and the root "
            "digest only"
        ]
    wheels = os.path.join(top, "wheels")
    names = sorted(os.listdir(wheels)) if os.path.isdir(wheels) else []
    packed = set()
    for m in runs:
        for rec in _output_files(m):
            rel = f"outputs/{m.id}/{rec['path']}"
            if os.path.isfile(os.path.join(top, *rel.split("/"))):
                packed.add(rel)
    expected = reproduce_md(
        os.path.basename(top),
        runs,
        settings,
        wheel=f"wheels/{names[0]}" if names else None,
        citation=os.path.isfile(os.path.join(top, "CITATION.cff")),
        history=os.path.isfile(os.path.join(top, "history.bundle")),
        packed=packed,
        included=[
            os.path.lexists(os.path.join(top, INPUTS_DIR, *row["path"].split("/")))
            and packable(row["path"])
            for row in input_rows(runs)
        ],
    )
    if expected.encode() != data:
        raise TamperedError(
            "REPRODUCE.md does not match what the sealed runs and its settings give (edited?)",
            path="REPRODUCE.md",
        )
    return []


def _lock_lines(runs: list[Manifest]) -> str:
    """requirements.lock: pins of every run's distributions (URL + commit for direct installs)."""
    pins: dict[str, str] = {}
    notes: list[str] = []
    pythons = set()
    for m in runs:
        env = m.environment
        py = env.get("python") or {}
        pythons.add(f"{py.get('implementation', '?')} {py.get('version', '?')}")
        direct = env.get("direct") or {}
        for name, version in sorted((env.get("packages") or {}).items()):
            if is_reprokit(name):
                continue  # installed on its own, from the wheel in the archive
            d = direct.get(name) if isinstance(direct, Mapping) else None
            if isinstance(d, Mapping) and d.get("vcs") and d.get("commit"):
                line = f"{name} @ {d['vcs']}+{d['url']}@{d['commit']}"
            elif isinstance(d, Mapping) and d.get("url"):
                notes.append(
                    f"# {name}=={version} was installed from {d['url']}"
                    f"{' (editable)' if d.get('editable') else ''}: install it from its source"
                )
                continue
            else:
                line = f"{name}=={version}"
            if name in pins and pins[name] != line:
                notes.append(f"# {name}: runs differ ({pins[name]} / {line}); the first is pinned")
                continue
            pins[name] = line
    hw = runs[0].hardware if runs and isinstance(runs[0].hardware, Mapping) else {}
    os_info = as_mapping(hw.get("os"))
    header = [
        "# requirements.lock written by reprokit archive",
        f"# python: {', '.join(sorted(pythons))}",
        f"# platform: {os_info.get('system', '?')} {os_info.get('machine', '?')}",
    ]
    return "\n".join(header + sorted(set(notes)) + [pins[k] for k in sorted(pins)]) + "\n"


def recorded_with(runs: list[Manifest], writer: str = __version__) -> list[str]:
    """The reprokit versions that recorded ``runs`` other than ``writer`` (the one archiving)."""
    found = set()
    for m in runs:
        packages = m.environment.get("packages") or {}
        if isinstance(packages, Mapping):
            for name, version in packages.items():
                if is_reprokit(str(name)) and version and str(version) != writer:
                    found.add(str(version))
    return sorted(found)


def _fmt_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _short_params(params: Mapping[str, Any]) -> str:
    text = ", ".join(f"{k}={v}" for k, v in params.items() if not isinstance(v, (dict, list)))
    return text if len(text) <= 80 else text[:77] + "..."


def _key_results(m: Manifest) -> str:

    parts = [f"{k}={v:.6g}" for k, v in results_of(m).items()]
    text = ", ".join(parts)
    return text if len(text) <= 100 else text[:97] + "..."


def _hardware(m: Manifest) -> str:
    hw = m.hardware if isinstance(m.hardware, Mapping) else {}
    cpu = as_mapping(hw.get("cpu"))
    gpus = hw.get("gpus") if isinstance(hw.get("gpus"), list) else []
    text = str(cpu.get("model") or "?")
    if gpus:
        text += " + " + ", ".join(str(g.get("name")) for g in gpus if isinstance(g, Mapping))
    return text


def _load_claims(path: str | None, runs: list[Manifest]) -> list[dict[str, Any]]:
    if path is None:
        return []
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ReprokitError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ReprokitError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    items = data.get("claims") if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise ReprokitError(f"{path}: expected a list of {{claim, run, result}} entries")

    out = []
    for item in items:
        if not isinstance(item, Mapping) or "claim" not in item or "run" not in item:
            raise ReprokitError(f"{path}: every entry needs 'claim' and 'run', got {item!r}")
        ref = str(item["run"])
        matches = [m for m in runs if m.id == ref] or [
            m for m in runs if m.id.startswith(ref) or m.id.endswith(ref)
        ]
        if len(matches) != 1:
            raise ReprokitError(
                f"{path}: claim {item['claim']!r} names run {item['run']!r}, "
                "which is not (uniquely) among the archived runs"
            )
        result = item.get("result")
        result = None if result in (None, "") else str(result)  # as verify reads it back
        value = _claim_value(matches[0], result)
        out.append(
            {"claim": str(item["claim"]), "run": matches[0].id, "result": result, "value": value}
        )
    return out


def _claim_value(m: Manifest, result: Any) -> float | None:
    """The recorded value of a claim's ``result`` in run ``m``."""
    if not result:
        return None
    value = results_of(m).get(str(result))
    return results_of(m).get(f"return.{result}") if value is None else value


SETTINGS_LINE = "<!-- reprokit archive settings: "


def reproduce_md(
    top: str,
    runs: list[Manifest],
    settings: Mapping[str, Any],
    *,
    wheel: str | None,
    citation: bool,
    history: bool,
    packed: set[str],
    included: list[bool],
) -> str:
    """REPRODUCE.md for ``runs``: everything in it comes from the sealed runs, from which
    members the archive holds, and from ``settings`` (what the author chose when archiving:
    the file name, the claims, the tolerance...), which its last line carries so that
    ``verify`` can derive the document again and compare it byte for byte."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    max_size = int(settings["max_artifact_size"])
    large, missing = [], []
    for m in runs:
        for rec in _output_files(m):
            entry = _output_entry(m, rec)
            if rec.get("size") is not None and rec["size"] > max_size:
                large.append(entry)
            elif f"outputs/{m.id}/{rec['path']}" not in packed:
                missing.append(entry)
    inputs = input_rows(runs)
    for row, inc, why in zip(inputs, included, settings["inputs_why"], strict=True):
        row["included"], row["why"] = inc, why
    by_id = {m.id: m for m in runs}
    claims = [dict(c, value=_claim_value(by_id[c["run"]], c["result"])) for c in settings["claims"]]
    first_py = (runs[0].environment.get("python") or {}).get("version", "?")
    hw0 = runs[0].hardware if isinstance(runs[0].hardware, Mapping) else {}
    os0 = as_mapping(hw0.get("os"))
    total = sum(float(m.run.get("duration_s") or 0) for m in runs)
    env = Environment(
        loader=FileSystemLoader(str(templates_dir())),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - Markdown, not HTML
    )
    text = env.get_template("REPRODUCE.md.j2").render(
        name=top,
        top=top,
        version=settings["version"],
        dist_name=DIST_NAME,
        wheel=wheel,
        wheel_note=settings["wheel_note"],
        recorded_with=recorded_with(runs, str(settings["version"])),
        filename=settings["filename"],
        runs=[
            {
                "id": m.id,
                "name": m.run.get("name"),
                "status": m.run.get("status"),
                "params": _short_params(m.params),
                "results": _key_results(m),
                "hardware": _hardware(m),
                "duration": _fmt_duration(float(m.run.get("duration_s") or 0)),
            }
            for m in runs
        ],
        claims=claims,
        tolerance={"rtol": settings["rtol"], "atol": settings["atol"]},
        total_duration=_fmt_duration(total),
        max_artifact_size=f"{max_size / 1024 / 1024:g} MB",
        large=large,
        missing=missing,
        inputs=inputs,
        inputs_included=any(included),
        citation=citation,
        history=history,
        python=first_py,
        platform=f"{os0.get('system', '?')} {os0.get('machine', '?')}",
    )
    # JSON inside an HTML comment: ">" is escaped so that no value can close the comment.
    block = json.dumps(dict(settings), sort_keys=True, ensure_ascii=True).replace(">", "\\u003e")
    return text.rstrip("\n") + "\n\n" + SETTINGS_LINE + block + " -->\n"


def _crate(
    name: str,
    runs: list[Manifest],
    sources: Mapping[str, str],
    outputs: Mapping[str, list[dict[str, Any]]],
    files: list[str],
    inputs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """RO-Crate 1.1 metadata with the Process Run Crate profile: one CreateAction per run;
    its inputs (data it read) are part of its ``object`` with their sha256."""
    graph: list[dict[str, Any]] = [
        {
            "@id": "ro-crate-metadata.json",
            "@type": "CreativeWork",
            "conformsTo": {"@id": RO_CRATE_11},
            "about": {"@id": "./"},
        }
    ]
    published = max((str(m.run.get("ended") or m.run.get("started")) for m in runs), default="")
    root: dict[str, Any] = {
        "@id": "./",
        "@type": "Dataset",
        "name": name,
        "description": f"{len(runs)} run(s) recorded with reprokit: source, environment, outputs",
        "datePublished": published[:10] if published else "1970-01-01",
        "conformsTo": [{"@id": PROCESS_RUN_CRATE}],
        "hasPart": [{"@id": f} for f in files]
        + [{"@id": o["path"]} for m in runs for o in outputs.get(m.id, [])],
        "mentions": [{"@id": f"#run-{m.id}"} for m in runs],
    }
    graph.append(root)
    graph.append(
        {
            "@id": PROCESS_RUN_CRATE,
            "@type": "CreativeWork",
            "name": "Process Run Crate",
            "version": "0.5",
        }
    )
    entities: dict[str, dict[str, Any]] = {}
    for m in runs:
        code = m.code
        entry = m.run.get("entry") or {}
        tool_id = f"#code-{m.id}"
        remotes = code.get("remotes") or {}
        tool: dict[str, Any] = {
            "@id": tool_id,
            "@type": "SoftwareApplication",
            "name": entry.get("qualname") or " ".join(map(str, entry.get("argv") or [])) or m.id,
            "version": code.get("commit") or code.get("digest"),
            "hasPart": {"@id": sources[m.id] + "/"} if m.id in sources else None,
        }
        if isinstance(remotes, Mapping) and remotes:
            tool["url"] = next(iter(remotes.values()))
        graph.append({k: v for k, v in tool.items() if v is not None})
        params = []
        for key, value in m.params.items():
            pid = f"#param-{m.id}-{key}"
            params.append({"@id": pid})
            graph.append(
                {
                    "@id": pid,
                    "@type": "PropertyValue",
                    "name": str(key),
                    "value": value
                    if isinstance(value, (int, float, str, bool))
                    else json.dumps(value),
                }
            )
        results = []
        for out in outputs.get(m.id, []):
            results.append({"@id": out["path"]})
            entities[out["path"]] = {
                "@id": out["path"],
                "@type": "File",
                "contentSize": str(out["size"]),
                "sha256": out["sha256"],
            }
        for row in inputs or []:
            if m.id in row["runs"]:
                params.append({"@id": _input_entity(row, entities, root)})
        status = m.run.get("status")
        action = {
            "@id": f"#run-{m.id}",
            "@type": "CreateAction",
            "name": f"run {m.id} ({m.run.get('name') or '-'})",
            "instrument": {"@id": tool_id},
            "object": params,
            "result": results,
            "startTime": m.run.get("started"),
            "endTime": m.run.get("ended"),
            "actionStatus": {
                "@id": "http://schema.org/CompletedActionStatus"
                if status == "completed"
                else "http://schema.org/FailedActionStatus"
            },
        }
        if status != "completed" and m.run.get("error"):
            action["error"] = str((m.run.get("error") or {}).get("message"))
        graph.append(action)
    for f in files:
        if f not in entities:
            entities[f] = {"@id": f, "@type": "File"}
    graph.extend(entities[k] for k in sorted(entities))
    for src in sorted(set(sources.values())):
        graph.append({"@id": src + "/", "@type": "Dataset", "name": f"source tree {src}"})
    root["hasPart"] += [{"@id": s + "/"} for s in sorted(set(sources.values()))]
    return {"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": graph}


def _input_entity(
    row: dict[str, Any], entities: dict[str, dict[str, Any]], root: dict[str, Any]
) -> str:
    """The crate entity of an input: a file or folder in the crate when packed, else a
    description (path, size, sha256, source) of what a reviewer must fetch."""
    folder = row["kind"] == "folder"
    if row["included"]:
        eid = f"inputs/{row['path']}" + ("/" if folder else "")
        entity: dict[str, Any] = {"@id": eid, "@type": "Dataset" if folder else "File"}
        if eid not in entities:
            root["hasPart"].append({"@id": eid})
    else:
        eid = f"#input-{(row['sha256'] or 'unhashed')[:16]}-{row['path']}"
        entity = {"@id": eid, "@type": "CreativeWork", "name": row["path"]}
    if row.get("size") is not None:
        entity["contentSize"] = str(row["size"])
    if row.get("sha256"):
        entity["sha256"] = row["sha256"]
    if row.get("source"):
        entity["url"] = str(row["source"])
    entities[eid] = entity
    return eid


@dataclass(frozen=True)
class ArchiveReport(Report):
    """What ``archive`` wrote."""

    path: str
    runs: list[str] = field(default_factory=list)
    members: int = 0
    size: int = 0
    sha256: str = ""  # the root digest: every byte of the file (the value to cite)
    signature: str | None = None
    large: list[dict[str, Any]] = json_name("not_included", default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    wheel: str | None = None  # wheels/<file>: the reprokit that wrote the archive
    wheel_note: str = ""  # how the wheel was obtained, or why there is none


class _ArchiveDraft:
    def __init__(self, path: str) -> None:
        self.path = path
        self.runs: list[str] = []
        self.members = 0
        self.size = 0
        self.sha256 = ""
        self.signature: str | None = None
        self.large: list[dict[str, Any]] = []
        self.missing: list[dict[str, Any]] = []
        self.inputs: list[dict[str, Any]] = []
        self.wheel: str | None = None  # wheels/<file>: the reprokit that wrote the archive
        self.wheel_note = ""  # how the wheel was obtained, or why there is none

    def freeze(self) -> ArchiveReport:
        return ArchiveReport(**vars(self))


def archive(
    refs: Iterable[str],
    path: str | os.PathLike[str],
    *,
    store: Store | Path | str | None = None,
    all_runs: bool = False,
    name: str | None = None,
    claims: str | None = None,
    max_artifact_size: int = DEFAULT_MAX_ARTIFACT,
    with_history: bool = False,
    rtol: float = 0.0,
    atol: float = 0.0,
    progress: Callable[[str, int], Callable[[int], None] | None] | None = None,
    with_inputs: bool = False,
    max_input_size: int = DEFAULT_MAX_INPUT,
    sign: str | None = None,
) -> ArchiveReport:
    """Pack runs for a paper into one ``.tar.gz`` or ``.zip`` file (chosen by extension).

    Every run must verify first. Every input the runs read is listed in REPRODUCE.md with its
    digest, size and source; ``with_inputs`` packs those that still match their record, up to
    ``max_input_size`` bytes each, under ``inputs/``. ``progress(label, total_bytes)`` may
    return a callback that is told how many bytes were processed (the CLI draws a bar with it).
    ``sign`` (an SSH private key file) writes ``FILE.sig`` beside the archive with
    ``ssh-keygen -Y sign``.
    """
    out_path = os.fspath(path)
    if not out_path.endswith((".tar.gz", ".tgz", ".zip")):
        raise ReprokitError(f"archive name must end in .tar.gz, .tgz or .zip: {out_path!r}")
    parent = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(parent):
        raise ReprokitError(f"cannot write {out_path}: folder {parent} does not exist")
    st = Store.at(store)
    ids = [st.resolve(r) for r in refs]
    if all_runs:
        ids += [e.id for e in st.entries() if e.manifest is not None]
    ids = sorted(set(ids))
    if not ids:
        raise ArgumentError("refs", "names no run: name the runs to archive, or ask for all")
    for rid in ids:
        st.verify(rid)
    runs = [st.load(rid) for rid in ids]
    top = name or f"reprokit-{ids[-1]}"
    if not all(c.isalnum() or c in "-_." for c in top) or top.startswith("."):
        raise ArgumentError("name", f"may use letters, digits, '-', '_' and '.', got {top!r}")
    report = _ArchiveDraft(out_path)
    report.runs = ids
    repo_root = str(st.root.parent)
    scratch = tempfile.mkdtemp(prefix="reprokit-archive-")
    tmp_out = out_path + f".{os.getpid()}.partial"
    writer = _Writer(tmp_out, top, as_zip=out_path.endswith(".zip"))
    try:
        # store/: sealed folders byte for byte, the objects they use, the ledger.
        objects: set[str] = set()
        for m in runs:
            folder = st.runs / m.id
            for f in sorted(p for p in folder.rglob("*") if p.is_file()):
                rel = f.relative_to(folder).as_posix()
                writer.add_file(f"store/runs/{m.id}/{rel}", str(f), mode=0o444)
            objects.update(referenced_objects(m))
        for digest in sorted(objects):
            writer.add_file(
                f"store/objects/{digest[:2]}/{digest}", str(st.object_path(digest)), mode=0o444
            )
        for ledger in ("ledger", "remote-ledger"):  # a remote store's copy vouches too
            if (st.root / ledger).exists():
                writer.add_file(f"store/{ledger}", str(st.root / ledger), mode=0o644)

        # source/: each distinct tree once.
        sources: dict[str, str] = {}
        built: set[str] = set()
        for m in runs:
            key = _source_key(m)
            sources[m.id] = f"source/{key}"
            if key in built:
                continue
            built.add(key)
            dest = os.path.join(scratch, "src", key)
            rebuild_source(m, st, dest, scratch)
            for dirpath, dirs, names in os.walk(dest):
                dirs.sort()
                for n in sorted(names):
                    full = os.path.join(dirpath, n)
                    rel = os.path.relpath(full, dest).replace(os.sep, "/")
                    if os.path.islink(full):
                        writer.add_symlink(f"source/{key}/{rel}", os.readlink(full))
                    else:
                        writer.add_file(f"source/{key}/{rel}", full)

        # outputs/: artifacts and declared outputs, copied when small enough.
        crate_outputs: dict[str, list[dict[str, Any]]] = {}
        for m in runs:
            for rec in _output_files(m):
                entry = _output_entry(m, rec)
                if rec.get("size") is not None and rec["size"] > max_artifact_size:
                    report.large.append(entry)
                    continue
                candidates = []
                if rec.get("copy"):
                    candidates.append(str(st.runs / m.id / rec["copy"]))
                candidates.append(os.path.join(repo_root, *rec["path"].split("/")))
                src = next(
                    (c for c in candidates if os.path.isfile(c) and _sha(c) == rec.get("sha256")),
                    None,
                )
                if src is None:
                    report.missing.append(entry)
                    continue
                rel = f"outputs/{m.id}/{rec['path']}"
                cb = progress("packing " + rec["path"], rec["size"]) if progress else None
                writer.add_file(rel, src, progress=cb)
                crate_outputs.setdefault(m.id, []).append(
                    {"path": rel, "size": rec["size"], "sha256": rec["sha256"]}
                )

        report.inputs = input_rows(runs)
        if with_inputs:
            pack_inputs(report.inputs, st, repo_root, writer.add_file, max_input_size)
        else:
            for row in report.inputs:
                row["why"] = "not asked for (--with-inputs)"

        writer.add_bytes("requirements.lock", _lock_lines(runs).encode())
        wheel = own_wheel(scratch)
        report.wheel_note = wheel.how
        if wheel.path is not None:
            report.wheel = f"wheels/{wheel.name}"
            writer.add_file(report.wheel, str(wheel.path))
        # The citation the runs' own source holds (so verify can check it), else the
        # repository's current one.
        recorded_citations = [
            os.path.join(scratch, "src", _source_key(m), "CITATION.cff") for m in runs
        ]
        citation = next(
            (c for c in recorded_citations if os.path.isfile(c) and not os.path.islink(c)),
            os.path.join(repo_root, "CITATION.cff"),
        )
        has_citation = os.path.isfile(citation)
        if has_citation:
            writer.add_file("CITATION.cff", citation)
        has_history = False
        if with_history:
            commits = sorted({m.code["commit"] for m in runs if m.code.get("commit")})
            if commits:
                bundle = os.path.join(scratch, "history.bundle")
                # A bundle carries refs, not bare commits: name each commit for the moment.
                refs = [f"refs/reprokit/bundle/{c}" for c in commits]
                try:
                    for ref, c in zip(refs, commits, strict=True):
                        git(["update-ref", ref, c], repo_root)
                    git(["bundle", "create", "-q", bundle, *refs], repo_root)
                finally:
                    for ref in refs:
                        try:
                            git(["update-ref", "-d", ref], repo_root)
                        except Exception:
                            pass
                writer.add_file("history.bundle", bundle)
                has_history = True

        claim_rows = _load_claims(claims, runs)
        settings = {
            "format": 1,
            "filename": os.path.basename(out_path),
            "version": __version__,
            # Said only when there is no wheel (how a wheel was obtained varies between calls).
            "wheel_note": "" if report.wheel else report.wheel_note,
            "claims": [{k: c[k] for k in ("claim", "run", "result")} for c in claim_rows],
            "rtol": float(rtol),
            "atol": float(atol),
            "max_artifact_size": int(max_artifact_size),
            "inputs_why": [row.get("why") for row in report.inputs],
        }
        text = reproduce_md(
            top,
            runs,
            settings,
            wheel=report.wheel,
            citation=has_citation,
            history=has_history,
            packed={o["path"] for outs in crate_outputs.values() for o in outs},
            included=[bool(row["included"]) for row in report.inputs],
        )
        writer.add_bytes("REPRODUCE.md", text.encode())
        writer.add_bytes("report.html", _archive_report(runs, st))
        files = sorted(set(writer.digests) | {"REPRODUCE.md", "CHECKSUMS.sha256"})
        crate = _crate(
            top, runs, sources, crate_outputs, [f for f in files if "/" not in f], report.inputs
        )
        writer.add_bytes(
            "ro-crate-metadata.json", (json.dumps(crate, indent=2, sort_keys=True) + "\n").encode()
        )
        sums = "".join(f"{d}  {p}\n" for p, d in sorted(writer.digests.items()))
        writer.add_bytes("CHECKSUMS.sha256", sums.encode())
        report.members = len(writer.digests)
        writer.close()
        os.replace(tmp_out, out_path)
        report.size = os.path.getsize(out_path)
        report.sha256 = _sha(out_path)
        if sign is not None:
            report.signature = sign_file(out_path, sign)
        return report.freeze()
    except BaseException:
        writer.close()
        if os.path.exists(tmp_out):
            os.unlink(tmp_out)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _sha(path: str) -> str:

    return sha256_file(path)[0]


def _output_entry(m: Manifest, rec: Mapping[str, Any]) -> dict[str, Any]:
    """How REPRODUCE.md and the archive's report name one output file of run ``m``."""
    return {"run": m.id, "path": rec["path"], "size": rec.get("size"), "sha256": rec.get("sha256")}


def _output_files(m: Manifest) -> list[dict[str, Any]]:
    """Every output file a run recorded (artifacts and declared outputs, folders expanded)."""
    out = []
    for rec in list(m.outputs.get("artifacts") or []) + list(m.outputs.get("declared") or []):
        if not isinstance(rec, Mapping) or rec.get("missing"):
            continue
        if rec.get("kind") == "folder":
            for f in rec.get("files") or []:
                copy = f"{rec['copy']}/{f['path']}" if rec.get("copy") else None
                out.append(dict(f, path=f"{rec['path']}/{f['path']}", copy=copy))
        else:
            out.append(dict(rec))
    return sorted(out, key=lambda r: r["path"])


# -- reading -------------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    """A member name as a safe relative POSIX path, or UnsafeArchive naming it."""
    if not name or "\x00" in name:
        raise UnsafeArchive("archive member with an empty or NUL name", name)
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"archive member {name!r} has an absolute path", name)
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        raise UnsafeArchive(f"archive member {name!r} climbs out with '..'", name)
    return "/".join(p for p in parts if p not in ("", "."))


def _within(base: str, path: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def _inside(base: str, rel_dir: str, target: str) -> bool:
    if target.startswith("/") or target.startswith("\\"):
        return False
    joined = os.path.normpath(os.path.join(base, rel_dir, target))
    return joined == base or joined.startswith(base.rstrip(os.sep) + os.sep)


def safe_extract(path: str, dest: str, limits: Limits | None = None) -> list[str]:
    """Extract an archive into ``dest`` after checking every member; return the member names.

    Refuses (UnsafeArchive, nothing written) absolute paths, '..', links pointing outside,
    device files and FIFOs, duplicate names, and more members or bytes than ``limits`` allow.
    """
    limits = limits or Limits()
    dest = os.path.abspath(dest)
    os.makedirs(dest, exist_ok=True)
    if zipfile.is_zipfile(path):
        return _extract_zip(path, dest, limits)
    try:
        tf = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as exc:
        raise ReprokitError(f"{path} is not a tar or zip archive: {exc}") from None
    packed = os.path.getsize(path)
    with tf:
        try:
            members = []
            # Streamed header by header: a bomb is refused as soon as its headers say so,
            # before the rest is decompressed and before anything is written.
            total = 0
            for member in tf:
                members.append(member)
                if len(members) > limits.max_members:
                    raise UnsafeArchive(f"archive has more than {limits.max_members} members")
                total += max(member.size, 0)
                limits.check(total, packed)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise ReprokitError(f"{path} is a damaged archive: {exc}") from None
        names: set[str] = set()
        total = 0
        if len(members) > limits.max_members:
            raise UnsafeArchive(f"archive has {len(members)} members (limit {limits.max_members})")
        for m in members:
            rel = _check_name(m.name)
            if rel in names:
                raise UnsafeArchive(f"archive member {m.name!r} appears twice", m.name)
            names.add(rel)
            if m.ischr() or m.isblk() or m.isfifo() or m.isdev():
                raise UnsafeArchive(f"archive member {m.name!r} is a device or FIFO", m.name)
            if m.issym() and not _inside(dest, os.path.dirname(rel), m.linkname):
                raise UnsafeArchive(
                    f"archive member {m.name!r} links outside the archive ({m.linkname})", m.name
                )
            if m.islnk() and not _inside(dest, "", _check_name(m.linkname)):
                raise UnsafeArchive(f"archive member {m.name!r} hard-links outside", m.name)
            total += max(m.size, 0)
            limits.check(total, packed)
        if hasattr(tarfile, "data_filter"):
            try:
                tf.extractall(dest, filter="data")
            except tarfile.FilterError as exc:  # e.g. a chain of links leading outside
                raise UnsafeArchive(f"archive refused by the extraction filter: {exc}") from None
        else:  # pragma: no cover - Python without the extraction filters
            tf.extractall(dest)
        return sorted(names)


def _extract_zip(path: str, dest: str, limits: Limits) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise UnsafeArchive(f"archive has {len(infos)} members (limit {limits.max_members})")
        names: set[str] = set()
        total = 0
        plan: list[tuple[zipfile.ZipInfo, str, str, str | None]] = []
        for info in infos:
            rel = _check_name(info.filename)
            if rel in names:
                raise UnsafeArchive(f"archive member {info.filename!r} appears twice", rel)
            names.add(rel)
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
                raise UnsafeArchive(f"archive member {info.filename!r} is a device or FIFO", rel)
            if kind == stat.S_IFLNK:
                if info.file_size > 4096:
                    raise UnsafeArchive(f"archive member {info.filename!r}: bad link", rel)
                target = zf.read(info).decode("utf-8", "replace")
                if not _inside(dest, os.path.dirname(rel), target):
                    raise UnsafeArchive(
                        f"archive member {info.filename!r} links outside the archive ({target})",
                        rel,
                    )
                plan.append((info, rel, "link", target))
                continue
            total += info.file_size
            limits.check(total, os.path.getsize(path))
            plan.append((info, rel, "dir" if info.is_dir() else "file", None))
        real_dest = os.path.realpath(dest)
        for info, rel, what, link in plan:
            out_path = os.path.join(dest, *rel.split("/"))
            # Resolve through the links created so far: a chain of links inside the archive
            # must not lead a later member outside.
            parent = os.path.realpath(os.path.dirname(out_path))
            if not _within(real_dest, parent) or os.path.islink(out_path):
                raise UnsafeArchive(f"archive member {rel!r} would be written outside", rel)
            if (
                what == "link"
                and link is not None
                and not _within(real_dest, os.path.realpath(os.path.join(parent, link)))
            ):
                raise UnsafeArchive(f"archive member {rel!r} links outside ({link})", rel)
            if what == "dir":
                os.makedirs(out_path, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(out_path), exist_ok=True)
            if what == "link" and link is not None:
                os.symlink(link, out_path)
                continue
            written = 0
            with zf.open(info) as src, open(out_path, "wb") as fh:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    if written > info.file_size:  # the header lied about the size
                        raise UnsafeArchive(f"archive member {rel!r} is larger than declared", rel)
                    fh.write(chunk)
            perms = (info.external_attr >> 16) & 0o777
            if perms:
                os.chmod(out_path, perms & 0o755 | 0o600)
        return sorted(names)


@dataclass(frozen=True)
class ArchiveVerifyReport(Report):
    """What ``verify`` of an archive checked and, with ``replay``, each run's verdict."""

    JSON_PROPERTIES = ("ok",)

    path: str = field(metadata={"json": "archive"})
    intact: bool = True
    members: int = 0
    sha256: str = ""  # the root digest: every byte of the file
    signed_by: str | None = None  # the principal whose signature verified, when asked
    runs: list[str] = field(default_factory=list)
    replays: list[dict[str, Any]] = field(default_factory=list)
    # What could not be checked as fully as usual (a REPRODUCE.md by another reprokit version).
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.intact and all(
            r["verdict"] in ("identical", "within_tolerance") for r in self.replays
        )


class _ArchiveVerifyDraft:
    def __init__(self, path: str) -> None:
        self.path = path
        self.members = 0
        self.runs: list[str] = []
        self.replays: list[dict[str, Any]] = []
        self.intact = True
        self.sha256 = ""
        self.signed_by: str | None = None
        self.notes: list[str] = []

    def freeze(self) -> ArchiveVerifyReport:
        return ArchiveVerifyReport(**vars(self))


def is_archive(ref: str) -> bool:
    return ref.endswith((".tar.gz", ".tgz", ".zip")) and os.path.isfile(ref)


def verify_archive(
    path: str | os.PathLike[str],
    *,
    replay: bool = False,
    venv: bool = False,
    rtol: float = 0.0,
    atol: float = 0.0,
    limits: Limits | None = None,
    on_event: Callable[[str, Any], None] | None = None,
    stdout: Any = None,
    data_root: str | os.PathLike[str] | None = None,
    allowed_signers: str | None = None,
    sandbox: bool = True,
    trust: bool = False,
    jobs: int = 1,
) -> ArchiveVerifyReport:
    """Check every checksum and every run of an archive; optionally replay every run
    (``jobs`` at once, in worker processes, when more than 1).

    Replays find the runs' inputs in the archive's ``inputs/`` folder, else below ``data_root``
    (default: the current folder), at their recorded paths.

    Raises TamperedError naming the first bad member, UnsafeArchive for hostile archives.
    Works anywhere: no repository and no store are needed.
    """

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ReprokitError(f"no such archive: {path}")
    emit = on_event or (lambda kind, data: None)
    report = _ArchiveVerifyDraft(path)
    report.sha256 = _sha(path)
    if allowed_signers is not None:
        report.signed_by = verify_signature(path, allowed_signers)
    scratch = tempfile.mkdtemp(prefix="reprokit-verify-")
    try:
        dest = os.path.join(scratch, "x")
        names = safe_extract(path, dest, limits)
        tops = {n.split("/", 1)[0] for n in names}
        if len(tops) != 1:
            raise TamperedError(f"{path}: expected one top folder, found {len(tops)}")
        top = os.path.join(dest, tops.pop())
        _check_sums(top)
        report.members = len(names)
        store = Store(os.path.join(top, "store"))
        for rid in store.run_ids():
            try:
                store.verify(rid)
            except (ManifestError, TamperedError) as exc:
                raise TamperedError(f"store/runs/{rid}: {exc}", rid) from None
            report.runs.append(rid)
        # CHECKSUMS.sha256 can be recomputed by anyone: sources, outputs and the generated
        # members are also checked against the sealed manifests, which the ledger vouches for.
        # Where each run's source lies comes from its manifest, never from the crate's paths.
        sealed = [store.load(rid) for rid in report.runs]
        report.notes = _check_generated(top, sealed)
        for note in report.notes:
            emit("note", note)
        crate_sources = {m.id: os.path.join(top, "source", _source_key(m)) for m in sealed}
        for m in sealed:
            _check_run_files(m, top, crate_sources.get(m.id), scratch)
        check_archived_inputs(top, sealed, store)
        emit("verified", report)
        if not replay:
            return report.freeze()
        # Replaying runs the archive's code: inside bubblewrap by default; without a sandbox
        # only when the caller says it trusts the archive (or opted out of the sandbox).
        writable: list[str] | None = None
        if sandbox:
            bwrap, why = sandbox_available()
            if bwrap is not None:
                writable = [scratch]
            elif not trust:
                raise ReprokitError(
                    f"replaying runs the code inside {path}, and there is no sandbox here "
                    f"({why}): trust it explicitly (trust=True) or install bubblewrap"
                )
            else:
                emit("sandbox", f"no sandbox ({why}): running the archive's code as trusted")
        emit("sandbox", "bubblewrap: no network, host read-only" if writable else "none")
        python = _make_venv(top, scratch, emit, sandboxed=writable is not None) if venv else None
        roots = [os.path.join(top, INPUTS_DIR)]
        roots.append(os.path.abspath(os.fspath(data_root)) if data_root else os.getcwd())
        if jobs > 1:
            _replay_in_parallel(
                report, store, crate_sources, python, rtol, atol, jobs, emit, roots, writable
            )
            return report.freeze()
        for rid in report.runs:
            m = store.load(rid)
            if m.run.get("replay_of") or (m.run.get("entry") or {}).get("kind") == "replay":
                continue
            src = crate_sources.get(rid)
            emit("replaying", rid)
            try:
                r = replay_run(
                    rid,
                    store=store,
                    rtol=rtol,
                    atol=atol,
                    source_dir=src,
                    python=python,
                    stdout=stdout,
                    data_root=roots,
                    sandbox=writable if writable is not None else False,
                )
                # The whole report, as ``replay`` gives it: drift, per-output verdicts, first
                # divergence and causes travel with the verdict.
                entry = {"run": rid, "verdict": r.verdict, "causes": r.causes, "report": r}
            except ReprokitError as exc:
                entry = {"run": rid, "verdict": "not replayable", "reason": str(exc)}
            report.replays.append(entry)
            emit("replayed", entry)
        return report.freeze()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _replay_in_parallel(
    report: _ArchiveVerifyDraft,
    store: Store,
    sources: dict[str, str],
    python: str | None,
    rtol: float,
    atol: float,
    jobs: int,
    emit: Callable[[str, Any], None],
    roots: list[str] | None = None,
    sandbox: list[str] | None = None,
) -> None:
    """Replay the archive's runs ``jobs`` at once, each as the sequential path does (inside
    the sandbox when one is asked for, with the archive's inputs)."""
    todo = []
    for rid in report.runs:
        m = store.load(rid)
        if m.run.get("replay_of") or (m.run.get("entry") or {}).get("kind") == "replay":
            continue
        todo.append(
            {
                "run": rid,
                "store": store.address,
                "rtol": rtol,
                "atol": atol,
                "source_dir": sources.get(rid),
                "python": python,
                "data_root": roots,
                "sandbox": sandbox if sandbox is not None else False,
            }
        )
    emit("replaying", f"{len(todo)} runs, {jobs} at once")
    many = replay_many(todo, LocalExecutor(jobs), on_result=lambda r: emit("replayed", r))
    for r in many.results:
        if r["verdict"] in ("not_replayable", "error", "tampered"):
            entry = {"run": r["run"], "verdict": "not replayable", "reason": r.get("reason")}
        else:
            entry = {"run": r["run"], "verdict": r["verdict"], "causes": r.get("causes", [])}
        report.replays.append(entry)


def _check_sums(top: str) -> None:
    sums_path = os.path.join(top, "CHECKSUMS.sha256")
    try:
        with open(sums_path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError):
        raise TamperedError(
            "CHECKSUMS.sha256 is missing or unreadable", path="CHECKSUMS.sha256"
        ) from None
    expected: dict[str, str] = {}
    for line in lines:
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            raise TamperedError(f"CHECKSUMS.sha256 has a malformed line: {line[:60]!r}")
        expected[rel] = digest
    present: dict[str, str] = {}
    for dirpath, _dirs, files in os.walk(top):
        for n in files:
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, top).replace(os.sep, "/")
            if rel != "CHECKSUMS.sha256":
                present[rel] = full
        for d in _dirs:
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                present[os.path.relpath(full, top).replace(os.sep, "/")] = full
    for rel in sorted(set(expected) | set(present)):
        if rel not in expected:
            raise TamperedError(f"{rel} is not listed in CHECKSUMS.sha256 (added?)", path=rel)
        if rel not in present:
            raise TamperedError(f"{rel} is listed in CHECKSUMS.sha256 but missing", path=rel)
        full = present[rel]
        if os.path.islink(full):
            actual = hashlib.sha256(("symlink:" + os.readlink(full)).encode()).hexdigest()
        else:
            actual = _sha(full)
        if actual != expected[rel]:
            raise TamperedError(f"{rel} does not match its checksum", path=rel)


def _check_run_files(m: Manifest, top: str, source: str | None, scratch: str) -> None:
    """The run's archived source matches its recorded digest; its outputs their sha256."""

    if source is None or not os.path.isdir(source):
        if m.code.get("tree") or m.code.get("files"):
            raise TamperedError(f"the source of run {m.id} is missing", m.id)
    else:
        rel = os.path.relpath(source, top).replace(os.sep, "/")
        try:
            check_source_dir(m, source, scratch)
        except NotReplayable:
            raise TamperedError(
                f"{rel} does not match run {m.id}'s recorded source", m.id, rel
            ) from None
    recorded = {rec["path"]: rec.get("sha256") for rec in _output_files(m)}
    folder = os.path.join(top, "outputs", m.id)
    for dirpath, _dirs, files in os.walk(folder):
        for n in files:
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, folder).replace(os.sep, "/")
            member = f"outputs/{m.id}/{rel}"
            if rel not in recorded:
                raise TamperedError(f"{member} is not an output run {m.id} recorded", m.id, member)
            if _sha(full) != recorded[rel]:
                raise TamperedError(f"{member} does not match the run's record", m.id, member)


def _make_venv(
    top: str, scratch: str, emit: Callable[[str, Any], None], sandboxed: bool = True
) -> str:
    """A fresh virtualenv with requirements.lock and reprokit installed; its python. With
    ``sandboxed``, pip runs inside the sandbox (building a package runs its code), with the
    network (the index) but the host read-only: it writes only in ``scratch``."""
    import venv as venv_mod

    home = os.path.join(scratch, "venv")
    emit("venv", f"creating a virtualenv in {home}")
    venv_mod.EnvBuilder(with_pip=True, clear=True).create(home)
    python = os.path.join(home, "Scripts" if os.name == "nt" else "bin", "python")
    lock = os.path.join(top, "requirements.lock")
    steps = [[python, "-m", "pip", "install", "-q", "-r", lock]]
    steps.append([python, "-m", "pip", "install", "-q", *_reprokit_requirement(top)])
    for cmd in steps:
        said = " ".join(os.path.basename(c) if c == python else c for c in cmd)
        emit("venv", f"running{' in the sandbox (with network)' if sandboxed else ''}: {said}")
        proc = install_step(cmd, scratch, sandboxed)
        if proc.returncode != 0:
            last = proc.stdout.strip().splitlines()[-1:] or ["pip failed"]
            raise ReprokitError(f"building the virtualenv failed: {last[0]}")
    return python


def install_step(cmd: list[str], scratch: str, sandboxed: bool) -> Any:
    """Run one step of building a replay's virtualenv (a pip install), inside the sandbox
    when ``sandboxed``: the network kept, the host read-only, writes only under ``scratch``
    (the virtualenv and pip's temporary files). The finished process, output in ``stdout``."""
    import subprocess

    env = None
    if sandboxed:
        try:
            cmd = sandbox_wrap(cmd, scratch, [scratch], network=True)
        except OSError as exc:
            raise ReprokitError(f"the sandbox is unavailable: {exc}") from None
        # pip's cache in the home folder is read-only there: it goes without one
        env = dict(os.environ, PIP_NO_CACHE_DIR="1")
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _reprokit_requirement(top: str) -> list[str]:
    """How to install reprokit into a fresh virtualenv: the wheel the archive carries, else the
    running reprokit's source tree, else the same release by the distribution's own name."""
    wheels = sorted(Path(top, "wheels").glob(DIST_NAME.replace("-", "_") + "-*.whl"))
    if wheels:
        return [str(wheels[0])]
    here = source_tree()
    if here is not None:
        return [str(here)]
    return [requirement_name()]
