"""Tamper evidence under attack: every edit of a sealed run, its source object, the ledger or an
archive must make ``verify`` fail (TamperedError in Python, exit 1 on the command line).

One run is recorded for real (a tracked function with metrics, checkpoints and a copied artifact,
in a git repository with an uncommitted change so that a source patch object exists); every
attack works on a fresh copy of its store.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import os
import re
import shutil
import tarfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from reprokit._model.errors import TamperedError
from reprokit._store.store import MANIFEST, Store, _chain
from reprokit._verbs.archive import verify_archive
from tests.conftest import cli, make_repo, run_python

pytestmark = pytest.mark.stress

TRAIN = """
import pathlib, reprokit

@reprokit.track(seed=0)
def train(lr=0.1, epochs=5):
    w = 0.0
    for i in range(epochs):
        w += lr * (i + 1)
        reprokit.log_metric("loss", 1.0 / (1.0 + w), step=i)
        reprokit.checkpoint("w", [w, i])
    out = pathlib.Path("model.bin")
    out.write_bytes(bytes(range(256)) * 8)
    reprokit.log_artifact(out, copy=True)
    return {"w": w}

train(lr=0.1)
train(lr=0.2)
"""

SAMPLES = 40  # byte positions per file


# -- the recorded store --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(repo, store, run id): two sealed runs; the attacks target the second (newest) one."""
    repo = make_repo(
        tmp_path_factory.mktemp("tamper") / "repo",
        {"train.py": TRAIN, "model.py": "W = 1\n", ".gitignore": "model.bin\n"},
    )
    (repo / "model.py").write_text("W = 2  # an uncommitted change: a source patch object\n")
    proc = run_python(repo, TRAIN, script="train.py")
    assert proc.returncode == 0, proc.stderr
    store = Store(repo / ".reprokit")
    ids = store.run_ids()
    assert len(ids) == 2
    rid = ids[-1]
    m = store.load(rid)
    assert m.code["patch"]["sha256"] and m.outputs["artifacts"][0]["copy"]
    assert set(m.digests) == {"metrics.jsonl", "checkpoints.jsonl", "artifacts/model.bin"}
    store.verify(rid)
    return repo, store.root, rid


class Attempts:
    """Fresh store copies, in-process verification and the tally."""

    def __init__(self, src: Path, rid: str, work: Path) -> None:
        self.src, self.rid, self.work = src, rid, work
        self.tried = self.detected = 0
        self.missed: list[str] = []
        self.cli_cases: list[tuple[str, Path, str]] = []  # (label, store copy, ref)
        self._n = 0

    def fresh(self) -> Path:
        self._n += 1
        dest = self.work / f"s{self._n}"
        # what verify reads: the run's folder, the objects, the ledger (other runs left out)
        shutil.copytree(self.src / "runs" / self.rid, dest / "runs" / self.rid)
        shutil.copytree(self.src / "objects", dest / "objects")
        shutil.copy2(self.src / "ledger", dest / "ledger")
        return dest

    def check(self, label: str, store: Path, ref: str | None = None, cli_too: bool = False) -> None:
        ref = ref or self.rid
        self.tried += 1
        try:
            Store(store).verify(ref)
        except TamperedError:
            self.detected += 1
        else:
            self.missed.append(label)
        if cli_too:
            self.cli_cases.append((label, store, ref))

    def run_cli(self, cwd: Path) -> list[str]:
        """Each kept case through ``reprokit verify``: exit 1 and a ``tampered:`` line."""

        def one(case: tuple[str, Path, str]) -> str | None:
            label, store, ref = case
            proc = cli(cwd, "verify", ref, "--store", str(store))
            ok = proc.returncode == 1 and proc.stderr.startswith("tampered: ")
            return None if ok else f"{label}: exit {proc.returncode} {proc.stderr.strip()}"

        with ThreadPoolExecutor(4) as pool:
            return [r for r in pool.map(one, self.cli_cases) if r]


def positions(size: int, n: int = SAMPLES) -> list[int]:
    """Up to ``n`` byte offsets spread over a file, always the first and the last."""
    if size <= n:
        return list(range(size))
    return sorted({round(i * (size - 1) / (n - 1)) for i in range(n)})


def edit(path: Path, change: Callable[[bytes], bytes]) -> None:
    """Rewrite a (read-only) file, then restore its permission bits and times."""
    st = path.stat()
    os.chmod(path, st.st_mode | 0o200)
    path.write_bytes(change(path.read_bytes()))
    os.chmod(path, st.st_mode & 0o7777)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def flip(data: bytes, pos: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ (1 << (pos % 8))]) + data[pos + 1 :]


def resign(run_dir: Path) -> None:
    """Rewrite every digest inside the manifest so it matches the files as they are now."""
    manifest = run_dir / MANIFEST
    text = manifest.read_text()
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file() and p.name != MANIFEST):
        rel = path.relative_to(run_dir).as_posix()
        found = re.findall(rf'\n  {re.escape(rel)}: "?([0-9a-f]{{64}})', text)
        assert len(found) == 1, rel
        # every mention (the digests section, an artifact's sha256) gets the new digest
        text = text.replace(found[0], hashlib.sha256(path.read_bytes()).hexdigest())
    edit(manifest, lambda _: text.encode())


# -- the store -----------------------------------------------------------------------------------


def test_every_edit_of_a_sealed_run_is_detected(recorded, tmp_path, figure):
    repo, src, rid = recorded
    t = Attempts(src, rid, tmp_path)
    run_rel = Path("runs") / rid
    files = sorted(
        p.relative_to(src / run_rel).as_posix() for p in (src / run_rel).rglob("*") if p.is_file()
    )
    patch = Store(src).load(rid).code["patch"]["sha256"]
    patch_rel = Path("objects") / patch[:2] / patch

    # 1. one bit flipped at up to 40 positions of every file of the run folder, and of the patch
    for rel in [*(run_rel / f for f in files), patch_rel]:
        size = (src / rel).stat().st_size
        for i, pos in enumerate(positions(size)):
            s = t.fresh()
            edit(s / rel, lambda d, pos=pos: flip(d, pos))
            t.check(f"flip {rel}@{pos}", s, cli_too=i == 0)

    # 2. every file deleted (the run's own, the patch object, the ledger)
    for rel in [*(run_rel / f for f in files), patch_rel, Path("ledger")]:
        s = t.fresh()
        (s / rel).unlink()
        t.check(f"delete {rel}", s, cli_too=True)

    # 3. a file added: top level, inside artifacts/, hidden, empty
    for rel, data in [
        ("extra.txt", b"added\n"),
        ("artifacts/model2.bin", b"\0" * 64),
        (".hidden", b"x"),
        ("artifacts/empty", b""),
    ]:
        s = t.fresh()
        (s / run_rel / rel).write_bytes(data)
        t.check(f"add {rel}", s, cli_too=True)

    # 4. the run folder renamed (to another id-shaped name), verified under its new name
    s = t.fresh()
    new = rid[:-6] + "abcdef"
    (s / run_rel).rename(s / "runs" / new)
    t.check("rename run folder", s, ref=new, cli_too=True)

    # 5. the manifest edited, then "re-signed": every digest inside it rewritten to match
    s = t.fresh()
    edit(s / run_rel / MANIFEST, lambda d: d.replace(b"lr: 0.2", b"lr: 0.3", 1))
    resign(s / run_rel)
    t.check("edited + re-signed manifest", s, cli_too=True)

    # 6. a file edited and its digest rewritten in the manifest (a consistent-looking run)
    for rel in files:
        s = t.fresh()
        edit(s / run_rel / rel, lambda d: d[:-1] + bytes([d[-1] ^ 1]))
        resign(s / run_rel)
        t.check(f"edit {rel} + its digest", s, cli_too=rel == "metrics.jsonl")

    # 7. the manifest re-serialised with the same meaning (reordered, re-indented)
    s = t.fresh()
    edit(s / run_rel / MANIFEST, lambda d: d.replace(b"\n", b"  \n"))
    t.check("manifest whitespace only", s)

    # 8. the ledger: truncated to nothing, by its last line, by half a line; two lines swapped;
    #    one line's manifest digest replaced by the edited manifest's
    ledger_lines = (src / "ledger").read_bytes().splitlines(keepends=True)
    assert len(ledger_lines) == 2
    for label, change in [
        ("ledger truncated to 0 bytes", lambda d: b""),
        ("ledger truncated by one line", lambda d: b"".join(ledger_lines[:-1])),
        ("ledger truncated mid-line", lambda d: d[:-40]),
        ("ledger lines swapped", lambda d: b"".join(reversed(ledger_lines))),
    ]:
        s = t.fresh()
        edit(s / "ledger", change)
        t.check(label, s, cli_too=True)
    for i, pos in enumerate(positions((src / "ledger").stat().st_size)):
        s = t.fresh()
        data = (src / "ledger").read_bytes()
        if data[pos : pos + 1] == b"\n":
            continue  # \n -> \x0b is still a line break: the same ledger
        edit(s / "ledger", lambda d, pos=pos: flip(d, pos))
        t.check(f"flip ledger@{pos}", s, cli_too=i == 1)
    s = t.fresh()
    edit(s / run_rel / MANIFEST, lambda d: d.replace(b"lr: 0.2", b"lr: 0.3", 1))
    new_digest = hashlib.sha256((s / run_rel / MANIFEST).read_bytes()).hexdigest()
    edit(s / "ledger", lambda d: d.replace(d.split()[-2], new_digest.encode()))
    t.check("edited manifest + its ledger digest (chain not recomputed)", s, cli_too=True)

    # 9. the patch object grown by one line (a still-applicable patch)
    s = t.fresh()
    edit(s / patch_rel, lambda d: d + b"\n")
    t.check("patch object appended to", s, cli_too=True)

    cli_failures = t.run_cli(repo)
    assert not t.missed, f"not detected: {t.missed}"
    assert not cli_failures, cli_failures
    assert t.detected == t.tried
    figure("tampering detected / tried (store)", f"{t.detected} / {t.tried}")


def _append_ledger(store: Path, rid: str, manifest: Path) -> None:
    """What anyone with write access can do: append a correctly chained line for ``rid``."""
    lines = (store / "ledger").read_text().splitlines()
    seq, _, _, prev = lines[-1].split()
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
    line = f"{int(seq) + 1} {rid} {digest} {_chain(prev, rid, digest)}\n"
    edit(store / "ledger", lambda d: d + line.encode())


def test_a_resealed_run_appended_to_the_ledger_is_detected(recorded, tmp_path):
    repo, src, rid = recorded
    s = tmp_path / "s"
    shutil.copytree(src, s)
    run_dir = s / "runs" / rid
    edit(run_dir / MANIFEST, lambda d: d.replace(b"lr: 0.2", b"lr: 0.3", 1))
    edit(run_dir / "metrics.jsonl", lambda d: d.replace(b"0.", b"0.9", 1))
    resign(run_dir)
    _append_ledger(s, rid, run_dir / MANIFEST)
    with pytest.raises(TamperedError):
        Store(s).verify(rid)


# -- archives ------------------------------------------------------------------------------------


def _members(path: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(path) as tf:
        return [(m, tf.extractfile(m).read() if m.isfile() else None) for m in tf.getmembers()]


def _write(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for info, data in members:
            info = copy.copy(info)
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    path.write_bytes(gzip.compress(buf.getvalue(), mtime=0))
    return path


def _new(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    return info, data


@pytest.fixture(scope="module")
def archived(recorded, tmp_path_factory):
    repo, store, rid = recorded
    out = tmp_path_factory.mktemp("archive") / "paper.tar.gz"
    proc = cli(repo, "archive", rid, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert cli(repo, "verify", str(out)).returncode == 0
    return out


def test_every_edit_of_an_archive_is_detected(archived, tmp_path, figure):
    members = _members(archived)
    files = [i for i, (m, d) in enumerate(members) if d]
    top = members[0][0].name.split("/", 1)[0]
    names = {m.name for m, _ in members}
    assert any("/source/" in n for n in names) and any("/outputs/" in n for n in names)
    cases: list[tuple[str, Path]] = []
    n = 0

    def variant(label: str, new: list) -> None:
        nonlocal n
        n += 1
        cases.append((label, _write(tmp_path / f"a{n}.tar.gz", new)))

    for k, i in enumerate(files):
        info, data = members[i]
        assert data is not None
        # one bit flipped: at the first, the middle and the last byte, in turn
        pos = (0, len(data) // 2, len(data) - 1)[k % 3]
        changed = list(members)
        changed[i] = (info, flip(data, pos))
        variant(f"flip {info.name}@{pos}", changed)
        variant(f"delete {info.name}", members[:i] + members[i + 1 :])
    rid_dir = next(n for n in sorted(names) if "/store/runs/" in n).rsplit("/", 1)[0]
    src_dir = next(n for n in sorted(names) if "/source/" in n).rsplit("/", 1)[0]
    for extra in (f"{top}/notes.txt", f"{rid_dir}/extra.txt", f"{src_dir}/evil.py"):
        variant(f"add {extra}", [*members, _new(extra, b"print('added')\n")])

    def one(case: tuple[str, Path]) -> str | None:
        label, path = case
        try:
            verify_archive(path)
        except TamperedError:
            pass
        else:
            return f"{label}: verify_archive passed"
        proc = cli(tmp_path, "verify", str(path))
        if proc.returncode != 1 or not proc.stderr.startswith("tampered: "):
            return f"{label}: exit {proc.returncode} {proc.stderr.strip()}"
        return None

    with ThreadPoolExecutor(4) as pool:
        missed = [r for r in pool.map(one, cases) if r]
    assert not missed, missed
    figure("tampering detected / tried (archive)", f"{len(cases) - len(missed)} / {len(cases)}")


@pytest.mark.parametrize("where", ["source", "outputs"])
def test_an_edited_source_or_output_with_recomputed_checksums_is_detected(
    archived, tmp_path, where
):
    members = _members(archived)
    suffix = "/train.py" if where == "source" else "/model.bin"
    i = next(
        k for k, (m, _) in enumerate(members) if f"/{where}/" in m.name and m.name.endswith(suffix)
    )
    info, data = members[i]
    top, rel = info.name.split("/", 1)
    new = data.replace(b"lr", b"LR") if where == "source" else flip(data, 0)
    assert new != data
    changed = list(members)
    changed[i] = (info, new)
    j = next(k for k, (m, _) in enumerate(members) if m.name.endswith("/CHECKSUMS.sha256"))
    sums = members[j][1].decode()
    sums = sums.replace(
        f"{hashlib.sha256(data).hexdigest()}  {rel}\n",
        f"{hashlib.sha256(new).hexdigest()}  {rel}\n",
    )
    changed[j] = (members[j][0], sums.encode())
    bad = _write(tmp_path / "bad.tar.gz", changed)
    with pytest.raises(TamperedError):
        verify_archive(bad)
