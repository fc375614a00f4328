"""Tolerances reach every output (issue 16, item 3): large checkpoints keep their numbers
(compressed) up to a documented size and a bounded summary beyond it, which proves
"different" with the size of the difference and says when it cannot prove "close"."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import pytest

import reprokit
from reprokit._model import numbers
from tests.conftest import clean_env, cli, run_python

np = pytest.importorskip("numpy")

# JITTER is an ordinary variable (not a numerics one): the replay inherits the shell's value,
# which is how these tests make a replay that is close to, but not bitwise, the record.
PROGRAM = """
import os, numpy as np, reprokit
@reprokit.track
def train(size={size}, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(size)
    for step in range(3):
        w = w * (1.0 + float(os.environ.get("JITTER", "0"))) + 0.01 * step
        reprokit.checkpoint("w", w)
    return float(w[:10].sum())
train()
"""


def record(repo, size: int):
    proc = run_python(repo, PROGRAM.format(size=size))
    assert proc.returncode == 0, proc.stderr
    return reprokit.load("latest", store=repo / ".reprokit")


def replay(repo, m, *args: str, jitter: str):
    return cli(repo, "replay", m.id, "--json", *args, env=clean_env(JITTER=jitter))


def test_numbers_pack_and_summaries_bound_a_difference():
    values = [0.1 * i - 3 for i in range(1000)]
    assert numbers.unpack(numbers.pack(values)) == values
    for n in (0, 1, 65, 3000, 70_000):  # windows sized to the data: zlib's defaults read them
        some = [1.0 / (i + 1) for i in range(n)]
        assert numbers.unpack(numbers.pack(some)) == some
        raw = zlib.decompress(base64.b64decode(numbers.pack(some)))
        assert raw == struct.pack(f"<{n}d", *some)
    kept = numbers.keep(values)
    assert "packed" in kept and kept["stats"]["count"] == 1000
    assert "packed" not in numbers.keep(values, limit=10)
    shifted = numbers.summary([v + 0.5 for v in values])
    proven, lower = numbers.summary_bounds(kept["stats"], shifted, 1e-9, 0.0)
    assert proven and lower == pytest.approx(0.5)
    close = numbers.summary([v * (1 + 1e-13) for v in values])
    assert numbers.summary_bounds(kept["stats"], close, 1e-9, 0.0) == (
        False,
        pytest.approx(0, abs=1e-9),
    )


def test_a_checkpoint_larger_than_64_numbers_is_compared_with_the_tolerance(repo):
    m = record(repo, 1000)
    exact = replay(repo, m, jitter="1e-12")
    assert exact.returncode == 1, exact.stderr
    ckpt = json.loads(exact.stdout)["runs"][0]["outputs"]["checkpoints"]
    assert ckpt["verdict"] == "different"
    assert 0 < ckpt["first_divergence"]["max_abs"] < 1e-9
    tolerant = replay(repo, m, "--rtol", "1e-9", jitter="1e-12")
    assert tolerant.returncode == 0, tolerant.stdout + tolerant.stderr
    data = json.loads(tolerant.stdout)
    assert data["verdict"] == "within_tolerance"
    assert data["runs"][0]["outputs"]["checkpoints"]["verdict"] == "within_tolerance"


def test_beyond_the_kept_size_a_summary_proves_different_and_is_honest_about_close(repo):
    m = record(repo, numbers.KEPT + 1)
    line = (repo / ".reprokit" / "runs" / m.id / "checkpoints.jsonl").read_text().splitlines()[0]
    assert "packed" not in json.loads(line) and len(line) < 2000  # bounded
    far = replay(repo, m, "--rtol", "1e-9", jitter="1e-3")
    assert far.returncode == 1, far.stderr
    div = json.loads(far.stdout)["runs"][0]["outputs"]["checkpoints"]["first_divergence"]
    assert div["index"] == 0 and div["max_abs_at_least"] > 1e-4
    near = cli(repo, "replay", m.id, "--rtol", "1e-9", env=clean_env(JITTER="1e-13"))
    assert near.returncode == 2, near.stdout + near.stderr
    assert "cannot tell within the tolerance" in near.stderr
    assert "undetermined" in near.stdout


FILES = """
import json, os
import numpy as np
j = float(os.environ.get("JITTER", "0"))
x = np.linspace(-1.0, 1.0, 200) * (1.0 + j)
os.makedirs("out", exist_ok=True)
with open("out/metrics.json", "w") as fh:
    json.dump({"acc": 0.9 * (1.0 + j), "name": "run", "curve": x[:5].tolist()}, fh)
with open("out/table.csv", "w") as fh:
    fh.write("step,loss\\n" + "".join(f"{i},{float(v)!r}\\n" for i, v in enumerate(x[:50])))
np.save("out/weights.npy", x)
"""


def test_numbers_in_declared_json_csv_npy_outputs_are_compared_with_the_tolerance(repo):
    (repo / "make.py").write_text(FILES)
    rec = cli(repo, "run", "--output", "out", "--", "python", "make.py")
    assert rec.returncode == 0, rec.stderr
    m = reprokit.load("latest", store=repo / ".reprokit")
    exact = replay(repo, m, jitter="1e-12")
    assert exact.returncode == 1, exact.stdout + exact.stderr
    files = json.loads(exact.stdout)["runs"][0]["outputs"]
    assert {
        files[f"file out/{n}"]["verdict"] for n in ("metrics.json", "table.csv", "weights.npy")
    } == {"different"}
    tolerant = replay(repo, m, "--rtol", "1e-9", jitter="1e-12")
    assert tolerant.returncode == 0, tolerant.stdout + tolerant.stderr
    outputs = json.loads(tolerant.stdout)["runs"][0]["outputs"]
    for name in ("metrics.json", "table.csv", "weights.npy"):
        result = outputs[f"file out/{name}"]
        assert result["verdict"] == "within_tolerance", (name, result)
        assert 0 < result["max_abs"] < 1e-9
    far = replay(repo, m, "--rtol", "1e-9", jitter="1e-3")
    assert far.returncode == 1
    result = json.loads(far.stdout)["runs"][0]["outputs"]["file out/metrics.json"]
    assert result["verdict"] == "different" and result["max_abs"] > 1e-4


def test_float32_checkpoints_are_kept_exactly_in_half_the_bytes(tmp_path):
    from reprokit._model.compare import numbers_of

    x = np.linspace(-1, 1, 1000, dtype=np.float32)
    with reprokit.run("f32", store=tmp_path / "store") as r:
        r.checkpoint("w", x)
    line = (tmp_path / "store" / "runs" / r.id / "checkpoints.jsonl").read_text()
    rec = json.loads(line)
    assert rec["packed_dtype"] == "<f4"
    values, mode = numbers_of(rec)
    assert mode == "values" and values == x.astype(float).tolist()


def test_a_numeric_file_too_large_to_keep_is_undetermined_under_a_tolerance(tmp_path):
    from reprokit._model.compare import compare_files
    from reprokit._record.file_numbers import MAX_FILE_BYTES
    from reprokit._record.outputs import describe_output

    def described(shift: float):
        path = tmp_path / "big.csv"
        rows = MAX_FILE_BYTES // 6  # every row is longer than 6 bytes
        path.write_text("".join(f"{i},{i * 0.5 + shift!r}\n" for i in range(rows)))
        return [describe_output(path, tmp_path)]

    a, b = described(0.0), described(1e-13)
    assert a[0]["numbers"] == {"skipped": "larger than 1 MB"}
    assert compare_files(a, b)["big.csv"]["verdict"] == "different"  # exact: bytes decide
    judged = compare_files(a, b, rtol=1e-9)["big.csv"]
    assert judged["verdict"] == "undetermined" and "too large" in judged["detail"]
