"""Secret values in every place a value can be stored: params at any depth (keys included),
Path values, numpy string arrays, reprs of unrecordable objects, exception text, argv in every
flag form, URLs whose user name is the token, environment variables, secret-named settings.
Each is planted once, then every byte of the store is searched for it."""

from __future__ import annotations

import hashlib
import json
import string
import sys

import pytest

from tests.conftest import clean_env, cli, run_python

pytestmark = pytest.mark.stress
ALNUM = string.ascii_letters + string.digits


def token(tag: str, n: int = 24) -> str:
    digest = hashlib.sha256(tag.encode()).digest() * 4
    return "".join(ALNUM[b % len(ALNUM)] for b in digest[:n])


# name -> (needle, where it is planted)
S = {name: token(name) for name in [
    "path", "key", "repr", "nparray", "urluser", "exc", "pw", "pass", "wandb", "listpw",
    "envkey", "argv-wandb", "argv-p", "argv-dbpass", "argv-key", "argv-u", "nested",
]}  # fmt: skip

SCRIPT = """
import json, os, sys
from pathlib import Path
import numpy as np
import reprokit

S = json.loads(os.environ["PLANT"])

class Client:
    def __init__(self, key):
        self.key = key
    def __repr__(self):
        return f"Client(api_key='sk-{self.key}')"

@reprokit.track(seed=0)
def train(cache, table, client, names, remote, pw, pass_, cfg, cmd, deep):
    if os.environ.get("FAIL"):
        raise RuntimeError(f"login to db failed: password '{S['exc']}' rejected")
    return 1

train(
    cache=Path(f"/cache/hf_{S['path']}"),
    table={f"ghp_{S['key']}": 1},
    client=Client(S["repr"]),
    names=np.array([f"hf_{S['nparray']}", "plain"]),
    remote=f"https://{S['urluser']}@github.com/me/x.git",
    pw=S["pw"],
    pass_=S["pass"],
    cfg={"wandb": {"key": S["wandb"]}},
    cmd=["train.py", "--password", S["listpw"]],
    deep={"a": {"b": {"c": [{"d": f"xoxb-1234-{S['nested']}"}]}}},
)
"""


def test_secret_values_in_every_place_are_never_stored(tmp_path, figure):
    pytest.importorskip("numpy")
    store = tmp_path / "store"
    env = clean_env(REPROKIT_STORE=str(store), PLANT=json.dumps(S), TF_SERVING_KEY=S["envkey"])
    res = run_python(tmp_path, SCRIPT, env=env)
    assert res.returncode == 0, res.stderr
    res = run_python(tmp_path, SCRIPT, env=dict(env, FAIL="1"))
    assert res.returncode == 1
    argv = [
        "--wandb-key", S["argv-wandb"], "-p", S["argv-p"], "--db-pass", S["argv-dbpass"],
        "--key", S["argv-key"], "-u", f"bob:{S['argv-u']}",
    ]  # fmt: skip
    res = cli(tmp_path, "run", "--", sys.executable, "-c", "pass", *argv, env=env)
    assert res.returncode == 0, res.stderr
    data = b"".join(p.read_bytes() for p in store.rglob("*") if p.is_file())
    leaked = sorted(name for name, needle in S.items() if needle.encode() in data)
    assert not leaked, leaked
    listed = cli(tmp_path, "--store", str(store), "ls", "--json", env=env)
    assert len(json.loads(listed.stdout)["runs"]) == 3
    figure(
        "secret values in every place (params keys/paths/arrays/reprs, exception text, argv "
        "flag forms, token URLs, env)",
        f"{len(S)} planted / {len(leaked)} stored",
    )
