"""@track and run(): the user's function is unchanged, and every call is a sealed run."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import reprokit
from reprokit._store.store import Store
from tests.conftest import clean_env, run_python


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def only_run(store: Path) -> reprokit.Manifest:
    ids = Store(store).run_ids()
    assert len(ids) == 1, ids
    return reprokit.load(ids[0], store=store)


def test_public_names_are_pinned():
    assert reprokit.__all__ == sorted(reprokit.__all__)
    assert set(reprokit.__all__) == {
        "AmbiguousRun",
        "ArchiveReport",
        "ArchiveVerifyReport",
        "CheckReport",
        "DiffReport",
        "GitError",
        "Manifest",
        "ManifestError",
        "NotReplayable",
        "ReplayReport",
        "ReprokitError",
        "ReprokitWarning",
        "Run",
        "RunNotFound",
        "SeedReport",
        "StoreError",
        "TamperedError",
        "UnsafeArchive",
        "VerifyReport",
        "__version__",
        "across_seeds",
        "archive",
        "check",
        "checkpoint",
        "current_run",
        "derive_seed",
        "diff",
        "fingerprint",
        "jax_key",
        "load",
        "log_artifact",
        "log_input",
        "log_metric",
        "log_params",
        "replay",
        "run",
        "seed_everything",
        "track",
        "verify",
        "worker_init_fn",
    }
    for name in reprokit.__all__:  # every public name resolves
        assert getattr(reprokit, name) is not None


def test_import_is_light():
    code = (
        "import sys, reprokit\n"
        "heavy = [m for m in ('git', 'yaml', 'psutil', 'numpy', 'torch', 'jinja2', 'tqdm')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "[]", proc.stderr


def test_track_returns_the_value_and_records_params_with_defaults(store):
    @reprokit.track(store=store)
    def train(lr, epochs=3, *, tag="x"):
        return [lr * epochs, tag]

    assert train(0.5) == [1.5, "x"]
    m = only_run(store)
    assert dict(m.params) == {"lr": 0.5, "epochs": 3, "tag": "x"}
    assert m.outputs["return"]["value"] == [1.5, "x"]
    assert m.outputs["return"]["fingerprint"] == reprokit.fingerprint([1.5, "x"])
    assert m.status == "completed" and m.run["replayable"] is False  # defined in a function


def test_track_keeps_the_functions_identity():
    def train(lr=0.1):
        """Docstring."""

    wrapped = reprokit.track(train)
    assert wrapped.__name__ == "train" and wrapped.__doc__ == "Docstring."
    assert wrapped.__wrapped__ is train


def test_the_users_exception_is_reraised_unchanged_and_the_run_sealed_failed(store):
    boom = ValueError("diverged at step 3")

    @reprokit.track(store=store)
    def train():
        raise boom

    with pytest.raises(ValueError) as err:
        train()
    assert err.value is boom
    m = only_run(store)
    assert m.status == "failed"
    assert m.run["error"]["type"] == "builtins.ValueError"
    assert m.run["error"]["message"] == "diverged at step 3"
    assert "raise boom" in m.run["error"]["traceback"]
    assert reprokit.verify(m.id, store=store).intact


def test_keyboard_interrupt_seals_the_run_as_interrupted(store):
    @reprokit.track(store=store)
    def train():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train()
    assert only_run(store).status == "interrupted"


def test_methods_leave_self_out_and_are_marked_not_replayable(store):
    class Trainer:
        @reprokit.track(store=store)
        def fit(self, lr=0.2):
            return lr

    assert Trainer().fit() == 0.2
    m = only_run(store)
    assert dict(m.params) == {"lr": 0.2}
    assert any("method" in r for r in m.run["not_replayable_because"])


def test_async_functions_are_tracked(store):
    @reprokit.track(store=store)
    async def train(n=2):
        await asyncio.sleep(0)
        return n * 2

    assert asyncio.run(train()) == 4
    assert only_run(store).outputs["return"]["value"] == 4


def test_nested_tracked_calls_become_child_runs(store):
    @reprokit.track(store=store)
    def inner(x):
        return x + 1

    @reprokit.track(store=store)
    def outer():
        return inner(1) + inner(2)

    assert outer() == 5
    st = Store(store)
    manifests = [reprokit.load(i, store=store) for i in st.run_ids()]
    parents = {m.run["name"]: m.run["parent"] for m in manifests if m.run["name"] == "outer"}
    outer_id = next(m.id for m in manifests if m.run["name"] == "outer")
    children = [m for m in manifests if m.run["name"] == "inner"]
    assert parents == {"outer": None}
    assert len(children) == 2 and all(c.run["parent"] == outer_id for c in children)


def test_run_context_records_metrics_artifacts_and_checkpoints(store, tmp_path):
    model = tmp_path / "model.bin"
    model.write_bytes(b"\x00weights")
    with reprokit.run("exp", params={"lr": 0.1}, seed=7, store=store) as r:
        assert reprokit.current_run() is r
        for step in range(3):
            r.log_metric("loss", 1.0 / (step + 1), step=step)
        reprokit.log_metric("acc", 0.5)
        r.log_artifact(model, copy=True)
        r.checkpoint("w", [1.0, 2.0])
        reprokit.log_params(batch=32)
    assert reprokit.current_run() is None
    m = only_run(store)
    assert m.seeds["seed"] == 7 and dict(m.params) == {"lr": 0.1, "batch": 32}
    assert m.outputs["metrics"]["loss"] == {"count": 3, "last": 1 / 3, "last_step": 2}
    [art] = m.outputs["artifacts"]
    import hashlib

    assert art["sha256"] == hashlib.sha256(b"\x00weights").hexdigest() and art["size"] == 8
    copy = Path(store) / "runs" / m.id / art["copy"]
    assert copy.read_bytes() == b"\x00weights"
    lines = (Path(store) / "runs" / m.id / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["value"] for x in lines][:3] == [1.0, 0.5, 1 / 3]
    ckpt = json.loads((Path(store) / "runs" / m.id / "checkpoints.jsonl").read_text())
    assert ckpt["fingerprint"] == reprokit.fingerprint([1.0, 2.0]) and ckpt["index"] == 0
    assert reprokit.verify(m.id, store=store).intact


def test_a_stream_another_writer_appended_to_is_hashed_as_it_is_at_the_seal(store):
    # The seal takes a stream's digest from what the run wrote, unless the file's size says
    # someone else wrote to it too: then it reads the file, so the manifest never vouches for
    # bytes that are not there.
    import hashlib

    with reprokit.run("exp", store=store) as r:
        r.log_metric("loss", 0.5)
        r.flush_metrics()
        path = Path(store) / "runs" / r.id / "metrics.jsonl"
        path.chmod(0o644)
        with open(path, "a") as fh:
            fh.write('{"name": "extra"}\n')
        r.log_metric("loss", 0.25)
    m = only_run(store)
    data = (Path(store) / "runs" / m.id / "metrics.jsonl").read_bytes()
    assert b'"extra"' in data
    assert m.digests["metrics.jsonl"] == hashlib.sha256(data).hexdigest()
    assert reprokit.verify(m.id, store=store).intact


def test_run_context_reraises_and_seals_failed(store):
    with pytest.raises(RuntimeError, match="nan loss"), reprokit.run("exp", store=store):
        raise RuntimeError("nan loss")
    assert only_run(store).status == "failed"


def test_a_seed_is_always_recorded_and_applied(store):
    import random

    @reprokit.track(store=store)
    def draw():
        return random.random()

    value = draw()
    m = only_run(store)
    seed = m.seeds["seed"]
    assert m.seeds["source"] == "drawn" and isinstance(seed, int)
    random.seed(seed)
    assert random.random() == value


def test_a_seed_parameter_of_the_function_becomes_the_run_seed(store):
    import random

    @reprokit.track(store=store)
    def draw(seed=5):
        return random.random()

    draw(seed=11)
    m = only_run(store)
    random.seed(11)
    assert m.seeds["seed"] == 11 and m.outputs["return"]["value"] == random.random()


def test_an_unrecordable_param_warns_and_marks_the_run_not_replayable(store, tmp_path):
    @reprokit.track(store=store)
    def train(handle):
        return 1

    with (
        open(tmp_path / "f.txt", "w") as fh,
        pytest.warns(reprokit.ReprokitWarning, match="handle"),
    ):
        assert train(fh) == 1
    m = only_run(store)
    assert m.params["handle"]["unrecorded"].endswith("TextIOWrapper")
    assert any("handle" in r for r in m.run["not_replayable_because"])


def test_secret_named_params_are_redacted_and_named(store):
    @reprokit.track(store=store)
    def train(api_key="sk-live-abcdefghijklmnopqrstuvwx", lr=0.1):
        return lr

    train()
    m = only_run(store)
    assert m.params["api_key"] == "<redacted>" and m.run["redacted_params"] == ["api_key"]
    text = (Path(store) / "runs" / m.id / "manifest.yaml").read_text()
    assert "abcdefghijklmnop" not in text


def test_an_unwritable_store_still_returns_the_value(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")

    @reprokit.track(store=blocker / "store")
    def train():
        return "ok"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert train() == "ok"
    assert any("not recorded" in str(w.message) for w in caught)


def test_a_sweep_captures_code_once_and_notices_a_changed_module(repo):
    code = (
        "import pathlib, time, reprokit, helper\n"
        "@reprokit.track\n"
        "def train(i):\n"
        "    return helper.f(i)\n"
        "for i in range(5):\n"
        "    train(i)\n"
        "time.sleep(0.01)\n"
        "pathlib.Path('helper.py').write_text('def f(i):\\n    return -i\\n')\n"
        "train(99)\n"
    )
    (repo / "helper.py").write_text("def f(i):\n    return i\n")
    proc = run_python(repo, code)
    assert proc.returncode == 0, proc.stderr
    st = Store(repo / ".reprokit")
    manifests = [reprokit.load(i, store=st) for i in st.run_ids()]
    assert len(manifests) == 6
    first = manifests[0].code["digest"]
    assert all(m.code["digest"] == first for m in manifests[:5])
    assert manifests[5].code["digest"] != first
    assert "changed_during_process" in manifests[5].code
    assert "changed_during_process" not in manifests[4].code


def test_reprokit_seed_from_the_environment_is_used(repo):
    code = "import reprokit\n@reprokit.track\ndef f():\n    return 1\nf()\n"
    proc = run_python(repo, code, env=clean_env(REPROKIT_SEED="1234"))
    assert proc.returncode == 0, proc.stderr
    assert reprokit.load("latest", store=repo / ".reprokit").seeds["seed"] == 1234


def test_script_runs_record_argv_with_secrets_redacted(repo):
    code = "import reprokit\nwith reprokit.run('s'):\n    pass\n"
    proc = run_python(repo, code, "--lr", "0.1", "--api-key=hunter2", "--token", "tok123")
    assert proc.returncode == 0, proc.stderr
    m = reprokit.load("latest", store=repo / ".reprokit")
    assert m.run["entry"]["argv"][1:] == [
        "--lr",
        "0.1",
        "--api-key=<redacted>",
        "--token",
        "<redacted>",
    ]
    raw = (repo / ".reprokit" / "runs" / m.id / "manifest.yaml").read_text()
    assert "hunter2" not in raw and "tok123" not in raw


def test_a_run_from_python_dash_c_is_not_replayable(repo):
    code = "import reprokit\nwith reprokit.run('c'):\n    pass\n"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, env=clean_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    m = reprokit.load("latest", store=repo / ".reprokit")
    assert m.run["replayable"] is False
    assert "python -c" in m.run["not_replayable_because"][0]


def test_numpy_is_seeded_when_imported(store):
    np = pytest.importorskip("numpy")

    @reprokit.track(store=store, seed=3)
    def train():
        return float(np.random.rand())

    value = train()
    np.random.seed(3)
    assert value == float(np.random.rand())
    # Seeded as the run started, or as the function first loaded numpy's RNG (numpy 2 loads
    # numpy.random on first use: which one depends on what this process ran before).
    seeds = only_run(store).seeds
    assert "numpy" in {**seeds["seeded"], **(seeds.get("seeded_on_import") or {})}


def test_manifest_records_environment_and_hardware(store):
    @reprokit.track(store=store)
    def train():
        import yaml  # noqa: F401

        return 0

    train()
    m = only_run(store)
    assert m.environment["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert "pyyaml" in m.environment["imported"]
    assert m.hardware["cpu"]["logical_cores"] >= 1
    assert list(m.data)[0] == "schema" and m.data["schema"] == 1


def test_a_library_imported_during_the_run_is_seeded_and_recorded(tmp_path):
    pytest.importorskip("numpy")
    code = (
        "import sys, reprokit\n"
        "assert 'numpy' not in sys.modules\n"
        "@reprokit.track(seed=11)\n"
        "def train():\n"
        "    import numpy as np\n"
        "    return float(np.random.rand())\n"
        "print(train())\n"
    )
    proc = run_python(tmp_path, code)
    assert proc.returncode == 0, proc.stderr
    import numpy as np

    np.random.seed(11)
    assert float(proc.stdout) == float(np.random.rand())
    m = reprokit.load("latest", store=tmp_path / ".reprokit")
    assert m.seeds["seeded_on_import"]["numpy"]["seed"] == 11


def test_metric_points_carry_the_wall_clock_time_they_were_logged(store):
    import time

    before = time.time()
    with reprokit.run("exp", store=store) as r:
        r.log_metric("loss", 0.5, step=3)
    after = time.time()
    (line,) = (Path(store) / "runs" / r.id / "metrics.jsonl").read_text().splitlines()
    point = json.loads(line)
    assert {k: point[k] for k in ("name", "step", "value")} == {
        "name": "loss",
        "step": 3,
        "value": 0.5,
    }
    assert before <= point["ts"] <= after


def test_a_nested_run_without_a_store_seals_beside_its_parent(tmp_path):
    elsewhere = tmp_path / "parent-store"

    @reprokit.track
    def inner(x=1):
        return x

    with reprokit.run("outer", store=elsewhere) as outer:
        inner()
    ids = Store(elsewhere).run_ids()
    assert len(ids) == 2
    child = next(reprokit.load(i, store=elsewhere) for i in ids if i != outer.id)
    assert child.run["parent"] == outer.id and child.name == "inner"


def test_an_abandoned_run_closes_its_streams_and_leaves_no_folder(tmp_path: Path) -> None:
    # A run's streams are plain descriptors: dropping the run must close them (nothing else
    # would), and its folder goes.
    import os

    from reprokit._record.run import Run

    def open_in(folder: Path) -> list[str]:
        found = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith(str(folder)):
                found.append(target)
        return found

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("no /proc/self/fd here")
    store = tmp_path / "store"
    r = Run("dropped", store=str(store)).start()
    r.log_metric("loss", 0.5)
    r.flush_metrics()
    r.checkpoint("w", [0.5, 0.25])
    assert r.dir is not None
    run_dir = r.dir
    assert len(open_in(run_dir)) == 2  # metrics.jsonl and checkpoints.jsonl
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r.abandon()
    assert open_in(run_dir) == []
    assert Store(store).run_ids() == [] and not run_dir.exists()


def test_a_stream_closed_keeping_its_descriptor_takes_no_more_writes(tmp_path: Path) -> None:
    import os

    from reprokit._store.store import Stream

    fd = os.open(tmp_path / "s.jsonl", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    s = Stream(fd, 0)
    s.write("a\n")
    s.close(keep_descriptor=True)
    with pytest.raises(ValueError):
        s.write("b\n")
    assert os.fstat(fd).st_size == 2  # still open: no other file can be given its number
    os.close(fd)
    assert s.written() == (2, __import__("hashlib").sha256(b"a\n").hexdigest())
