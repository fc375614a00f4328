"""Recording never raises into, hangs or drops the run of the user's code: every hostile param,
return value, metric and artifact below is recorded (by type and a bounded repr where it is not
plain data) with a warning, and the run is sealed."""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest

from tests.conftest import clean_env, cli, run_python

pytestmark = pytest.mark.stress

# Each case: (name, python expression building the value). The same value is passed as a
# param of a tracked function, returned by it, and given to log_params.
VALUES = {
    "cyclic dict": "(lambda d: (d.__setitem__('self', d), d)[1])({})",
    "cyclic list": "(lambda l: (l.append(l), l)[1])([1])",
    "very deep dict": "deep(5000)",
    "very deep list": "deep_list(5000)",
    "set whose items raise in __repr__": "{BadRepr(), BadRepr()}",
    "object whose __repr__ raises": "BadRepr()",
    "object whose __repr__ is 10 MB": "HugeRepr()",
    "object whose __repr__ never returns (a loop)": "LoopRepr()",
    "object whose __repr__ never returns (a lock)": "LockRepr()",
    "set whose items' __repr__ never returns": "{LoopRepr(), LoopRepr()}",
    "key whose __str__ never returns": "{LoopRepr(): 1}",
    "object whose __str__ raises, as a key": "{BadRepr(): 1}",
    "huge int": "10**5000",
    "huge negative int": "-(2**70000)",
    "bool dict keys": "{True: 1, False: 2}",
    "tuple and None keys": "{(1, 2): 3, None: 4}",
    "mixed int and str keys": "{1: 'a', '1': 'b'}",
    "NaN and infinities": "[float('nan'), float('inf'), -float('inf')]",
    "str subclass whose __str__ raises": "BadStr('x')",
    "config whose to_dict raises": "BadConfig()",
    "mapping whose items() raises": "BadMapping()",
    "generator": "(i for i in range(3))",
    "open file": "open(__file__)",
    "100,000-item list": "list(range(100_000))",
}


PRELUDE = """
import collections.abc, sys, warnings, json
import reprokit

class BadRepr:
    def __repr__(self): raise RuntimeError("repr")
    def __str__(self): raise RuntimeError("str")
    def __hash__(self): return id(self)
class HugeRepr:
    def __repr__(self): return "x" * 10_000_000
class LoopRepr:
    def __repr__(self):
        while True:
            pass
    __str__ = __repr__
    def __hash__(self): return id(self)
class LockRepr:
    def __repr__(self):
        import threading
        threading.Event().wait()
class BadStr(str):
    def __str__(self): raise RuntimeError("str")
    def __repr__(self): raise RuntimeError("repr")
class BadConfig:
    def to_dict(self): raise RuntimeError("to_dict")
class BadMapping(collections.abc.Mapping):
    def __getitem__(self, k): raise KeyError(k)
    def __iter__(self): raise RuntimeError("iter")
    def __len__(self): return 1
    def items(self): raise RuntimeError("items")
def deep(n):
    d = cur = {}
    for _ in range(n):
        cur["a"] = {}
        cur = cur["a"]
    return d
def deep_list(n):
    l = cur = []
    for _ in range(n):
        cur.append([])
        cur = cur[0]
    return l
"""

SCRIPT = (
    PRELUDE
    + """
results = {}
for name, expr in json.loads(sys.argv[1]).items():
    value = eval(expr)

    @reprokit.track(name="hostile", seed=0)
    def train(x):
        reprokit.log_params(extra=x)
        return x

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            back = train(value)
            ok = back is value
        except BaseException as exc:
            ok = f"raised {type(exc).__name__}: {exc}"[:200]
    results[name] = {"ok": ok, "warned": [str(w.message)[:300] for w in caught]}
print(json.dumps(results))
"""
)


def test_hostile_params_and_returns_never_break_the_users_function(tmp_path, figure):
    work = tmp_path / "w"
    work.mkdir()
    env = clean_env(REPROKIT_STORE=str(tmp_path / "store"))
    res = run_python(work, SCRIPT, json.dumps(VALUES), env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads(res.stdout.strip().splitlines()[-1])
    broke = {n: r["ok"] for n, r in results.items() if r["ok"] is not True}
    assert not broke
    dropped = {
        n: r["warned"] for n, r in results.items() if any("not recorded" in w for w in r["warned"])
    }
    assert not dropped
    # every warning is bounded
    assert all(len(w) <= 300 for r in results.values() for w in r["warned"])
    ls = cli(work, "--store", str(tmp_path / "store"), "ls", "--json")
    runs = json.loads(ls.stdout)["runs"]
    sealed = [r for r in runs if r["status"] == "completed"]
    assert len(sealed) == len(VALUES)
    # each run verifies and shows
    for r in sealed:
        assert cli(work, "--store", str(tmp_path / "store"), "verify", r["id"]).returncode == 0
    figure(
        "hostile params/returns survived",
        f"{len(VALUES) - len(broke)} / {len(VALUES)} (each sealed, none raised, hung or dropped)",
    )


def test_log_metric_of_a_huge_int_warns_and_keeps_training(tmp_path):
    code = """
import warnings, reprokit
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with reprokit.run("m", seed=0) as run:
        run.log_metric("loss", 10**5000)
        run.log_metric("loss", 2**80)
        run.log_metric("loss", 0.5)
print([str(w.message) for w in caught])
"""
    res = run_python(tmp_path, code, env=clean_env(REPROKIT_STORE=str(tmp_path / "s")))
    assert res.returncode == 0, res.stderr
    assert "not a float-sized number" in res.stdout
    show = json.loads(
        cli(tmp_path, "--store", str(tmp_path / "s"), "show", "latest", "--json").stdout
    )
    assert show["outputs"]["metrics"]["loss"]["last"] == 0.5


ARTIFACTS = """
import os, sys, warnings, reprokit
kind = sys.argv[1]
os.makedirs("out", exist_ok=True)
with open("out/real.bin", "wb") as fh:
    fh.write(b"weights")
if kind == "dangling":
    os.symlink("does-not-exist", "out/broken")
elif kind == "fifo":
    os.mkfifo("out/pipe")
elif kind == "loop":
    os.symlink(".", "out/loop")
    os.symlink("b", "out/a")
    os.symlink("a", "out/b")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with reprokit.run("art", seed=0) as run:
        rec = run.log_artifact("out", copy=True)
        if kind == "fifo":
            run.log_artifact("out/pipe")
print(sorted(s["path"] for s in rec.get("skipped", [])))
print([f["path"] for f in rec["files"]])
"""


@pytest.mark.parametrize("kind", ["dangling", "fifo", "loop"])
def test_log_artifact_of_a_folder_with_links_or_fifos_never_raises_or_hangs(tmp_path, kind):
    res = run_python(tmp_path, ARTIFACTS, kind, env=clean_env(REPROKIT_STORE=str(tmp_path / "s")))
    assert res.returncode == 0, res.stderr
    skipped, files = (eval(line) for line in res.stdout.strip().splitlines()[-2:])
    assert files == ["real.bin"]
    assert skipped == {"dangling": ["broken"], "fifo": ["pipe"], "loop": ["a", "b", "loop"]}[kind]
    assert cli(tmp_path, "--store", str(tmp_path / "s"), "verify", "latest").returncode == 0


def test_log_artifact_copy_on_a_full_disk_warns_and_keeps_training(tmp_path):
    code = """
import os, resource, signal, warnings, reprokit
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
with open("big.bin", "wb") as fh:
    fh.write(os.urandom(1 << 20))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with reprokit.run("full", seed=0) as run:
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
        rec = run.log_artifact("big.bin", copy=True)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
print("copy" in rec, any("not copied" in str(w.message) for w in caught))
"""
    env = clean_env(REPROKIT_STORE=str(tmp_path / "s"), PYTHONDONTWRITEBYTECODE="1")
    res = run_python(tmp_path, code, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "True"]


def test_reprokit_run_output_with_a_dangling_symlink_passes_the_exit_code_through(tmp_path):
    (tmp_path / "out").mkdir()
    os.symlink("nowhere", tmp_path / "out" / "broken")
    (tmp_path / "out" / "ok.txt").write_text("1\n")
    env = clean_env(REPROKIT_STORE=str(tmp_path / "s"))
    res = cli(tmp_path, "run", "--output", "out", "--", sys.executable, "-c", "pass", env=env)
    assert res.returncode == 0, res.stderr
    show = json.loads(
        cli(tmp_path, "--store", str(tmp_path / "s"), "show", "latest", "--json", env=env).stdout
    )
    declared = show["outputs"]["declared"][0]
    assert [f["path"] for f in declared["files"]] == ["ok.txt"]
    assert declared["skipped"] == [{"path": "broken", "reason": "symbolic link (not followed)"}]


def test_secret_text_in_the_repr_of_an_unrecordable_param_is_redacted(tmp_path):
    code = textwrap.dedent(
        """
        import reprokit
        class Client:
            def __repr__(self):
                return "Client(api_key='sk-" + "Q" * 40 + "')"
        @reprokit.track(seed=0)
        def train(client=None):
            return 1
        train(Client())
        """
    )
    res = run_python(tmp_path, code, env=clean_env(REPROKIT_STORE=str(tmp_path / "s")))
    assert res.returncode == 0, res.stderr
    data = b"".join(p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file())
    assert b"QQQQQQQQQQQQQQQQQQQQ" not in data


def test_a_repr_that_never_returns_is_given_up_with_a_warning_and_the_type_kept(tmp_path):
    code = (
        PRELUDE
        + """
@reprokit.track(name="stuck", seed=0)
def train(model):
    return 3

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    print(json.dumps({"back": train(LoopRepr()), "warned": [str(w.message) for w in caught]}))
"""
    )
    env = clean_env(REPROKIT_STORE=str(tmp_path / "store"))
    res = run_python(tmp_path, code, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result["back"] == 3
    assert any("repr() of a __main__.LoopRepr timed out" in w for w in result["warned"])
    shown = cli(tmp_path, "--store", str(tmp_path / "store"), "show", "latest", "--json")
    model = json.loads(shown.stdout)["params"]["model"]
    assert model == {
        "unrecorded": "__main__.LoopRepr",
        "repr": "<LoopRepr object (repr timed out)>",
    }
