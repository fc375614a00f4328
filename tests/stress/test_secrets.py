"""Secrets never reach the disk: a corpus of real-looking credential forms, each made unique for
each place it is put (environment, argv of a script and of ``reprokit run``, params, git remotes,
an installed package's URL, replay's ``--param``), then every byte of the store and of an archive
of its runs is searched for each of them.
"""

from __future__ import annotations

import hashlib
import json
import string
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from reprokit._store.store import Store
from tests.conftest import clean_env, cli, git, make_repo, run_python

pytestmark = pytest.mark.stress

ALNUM = string.ascii_letters + string.digits
UPPER = string.ascii_uppercase + string.digits


def _chars(tag: str, n: int, alphabet: str = ALNUM) -> str:
    """``n`` characters that depend only on ``tag``: unique per form and place, reproducible."""
    out, counter = [], 0
    while len(out) < n:
        block = hashlib.sha256(f"{tag}/{counter}".encode()).digest()
        out.extend(alphabet[b % len(alphabet)] for b in block)
        counter += 1
    return "".join(out[:n])


class Form:
    """A credential form: ``make(tag)`` gives (value, needle); the needle is the part that must
    never be found on disk (for URLs and headers, the password or token inside)."""

    def __init__(self, name: str, make: Callable[[str], tuple[str, str]], by_value: bool) -> None:
        self.name, self.make, self.by_value = name, make, by_value


def _whole(fn: Callable[[str], str]) -> Callable[[str], tuple[str, str]]:
    def make(tag: str) -> tuple[str, str]:
        value = fn(tag)
        return value, value

    return make


def _inner(fn: Callable[[str], str]) -> Callable[[str], tuple[str, str]]:
    def make(tag: str) -> tuple[str, str]:
        core = "Zq" + _chars(tag, 18)
        return fn(core), core

    return make


def _jwt(t: str) -> str:
    return f"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ{_chars(t, 30)}.{_chars(t + 's', 43)}"


def _pem(core: str) -> str:
    return f"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg{core}\n-----END PRIVATE KEY-----\n"


FORMS = [
    Form("AWS access key id", _whole(lambda t: "AKIA" + _chars(t, 16, UPPER)), True),
    Form(
        "AWS secret access key",
        _whole(lambda t: _chars(t, 12) + "/" + _chars(t + "b", 14) + "+" + _chars(t + "c", 12)),
        False,
    ),
    Form("GitHub classic token", _whole(lambda t: "ghp_" + _chars(t, 36)), True),
    Form(
        "GitHub fine-grained token",
        _whole(lambda t: f"github_pat_11{_chars(t, 20, UPPER)}_{_chars(t + 'b', 59)}"),
        True,
    ),
    Form("GitLab token", _whole(lambda t: "glpat-" + _chars(t, 20)), True),
    Form(
        "Slack bot token",
        _whole(lambda t: f"xoxb-{_chars(t, 12, string.digits)}-{_chars(t + 'b', 24)}"),
        True,
    ),
    Form("OpenAI key", _whole(lambda t: "sk-" + _chars(t, 48)), True),
    Form("OpenAI project key", _whole(lambda t: "sk-proj-" + _chars(t, 56)), True),
    Form("Hugging Face token", _whole(lambda t: "hf_" + _chars(t, 34)), True),
    Form("Google API key", _whole(lambda t: "AIza" + _chars(t, 35)), True),
    Form("Stripe secret key", _whole(lambda t: "sk_live_" + _chars(t, 24)), True),
    Form("JWT", _whole(_jwt), True),
    Form("PEM private key", _inner(_pem), True),
    Form("database URL", _inner(lambda c: f"postgresql://trainer:{c}@db.internal:5432/runs"), True),
    Form("https userinfo", _inner(lambda c: f"https://alice:{c}@git.example.com/team/x.git"), True),
    Form(
        "URL query token",
        _inner(lambda c: f"https://data.example.com/d.tar?access_token={c}"),
        True,
    ),
    Form("libpq DSN", _inner(lambda c: f"host=db.internal user=trainer password={c}"), True),
    Form("bearer header", _inner(lambda c: f"Authorization: Bearer {c}"), True),
    Form("plain password", _whole(lambda t: "Pw-" + _chars(t, 20)), False),
    Form("generic API key", _whole(lambda t: _chars(t, 32, "0123456789abcdef")), False),
    Form("generic token", _whole(lambda t: "tk" + _chars(t, 30)), False),
    Form("generic secret", _whole(lambda t: "sec" + _chars(t, 29)), False),
]
VALUE_FORMS = [f for f in FORMS if f.by_value]
NAME_FORMS = [f for f in FORMS if not f.by_value]
SINGLE_LINE = [f for f in FORMS if "\n" not in f.make("x")[0]]
F = {f.name: f for f in FORMS}


class Planted:
    """Every secret put somewhere: needle -> (form, place)."""

    def __init__(self) -> None:
        self.where: dict[str, tuple[str, str]] = {}
        self.places: set[str] = set()

    def value(self, form: Form, place: str, slot: str = "") -> str:
        value, needle = form.make(f"{form.name}|{place}|{slot}")
        assert needle not in self.where, "secrets must be unique"
        self.where[needle] = (form.name, place)
        self.places.add(place)
        return value

    def leaks(self, data: bytes, label: str) -> list[str]:
        found = []
        for needle, (form, place) in self.where.items():
            for text in {needle, quote(needle, safe="")}:
                if text.encode() in data:
                    found.append(f"{form} from {place} in {label}")
        return found


TRAINLIB = """
import reprokit

@reprokit.track(seed=0)
def train(lr=0.1, api_key=None, db_password=None, token=None, **extra):
    reprokit.log_metric("loss", 1.0 - lr, step=0)
    return {"acc": lr * 2}

@reprokit.track(seed=0)
def keyed(lr=0.1, api_key=None):
    if not api_key:
        raise RuntimeError("an API key is needed")
    reprokit.log_metric("loss", 1.0 - lr, step=0)
    return {"acc": lr * 2}
"""

DRIVER = """
import json, os, sys
import trainlib
with open(os.environ["RPK_SECRETS_FILE"]) as fh:
    data = json.load(fh)
trainlib.train(**data["params"])
trainlib.keyed(lr=0.5, api_key=data["keyed"])
"""

WITH_RUN = """
import reprokit
with reprokit.run("with-block", params={"lr": 0.1}) as run:
    run.log_metric("x", 1.0, step=0)
"""

CHILD = """
import sys, trainlib
trainlib.train(lr=0.3)
"""


def _argv(planted: Planted, place: str) -> list[str]:
    """Every form on a command line, in the forms people write."""
    argv: list[str] = []
    name_flags = [
        ("--api-key=", "generic API key"),
        ("--token", "generic token"),
        ("--password", "plain password"),
        ("password=", "plain password"),
        ("--aws-secret-access-key", "AWS secret access key"),
        ("--client-secret=", "generic secret"),
        ("DB_PASSWORD=", "plain password"),
        ("--auth-token", "generic token"),
    ]
    by_name = F
    for i, (flag, form) in enumerate(name_flags):
        value = planted.value(by_name[form], place, f"flag{i}")
        argv += [flag + value] if flag.endswith("=") else [flag, value]
    for i, form in enumerate(VALUE_FORMS):
        value = planted.value(form, place, "arg")
        style = i % 3
        argv += [value] if style == 0 else [f"--note{i}={value}"] if style == 1 else ["-x", value]
    return ["--lr", "0.1", *argv]


def _environment(planted: Planted) -> tuple[dict[str, str], list[str]]:
    """(extra environment, the allowlisted names whose values must be redacted)."""
    env: dict[str, str] = {}
    secret_names = ["_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD"]
    real = {
        "AWS access key id": "AWS_ACCESS_KEY_ID",
        "AWS secret access key": "AWS_SECRET_ACCESS_KEY",
        "GitHub classic token": "GITHUB_TOKEN",
        "OpenAI key": "OPENAI_API_KEY",
        "Hugging Face token": "HF_TOKEN",
        "database URL": "DATABASE_URL",
        "plain password": "PGPASSWORD",
        "Slack bot token": "SLACK_BOT_TOKEN",
    }
    for i, form in enumerate(FORMS):
        # names that say "secret" (never allowlisted: must simply never be recorded)
        env[real.get(form.name, f"RPK{i}{secret_names[i % 4]}")] = planted.value(
            form, "environment (secret names)"
        )
    allowlisted = []
    for i, form in enumerate(FORMS):
        # numerics-allowlisted prefixes: innocent names for forms known by their value,
        # secret-looking ones for forms known only by their name
        if form.by_value:
            name = f"CUDA_RPK_SETTING_{i}"
        else:
            prefix = ("TORCH_", "XLA_", "NCCL_", "OMP_")[i % 4]
            name = f"{prefix}RPK{i}{secret_names[i % 4]}"
        env[name] = planted.value(form, "environment (allowlisted prefixes)")
        allowlisted.append(name)
    env["TORCH_HUB_TOKEN"] = planted.value(
        F["Hugging Face token"], "environment (allowlisted prefixes)", "hub"
    )
    env["CUDA_SOMETHING"] = planted.value(
        F["database URL"], "environment (allowlisted prefixes)", "cuda"
    )
    allowlisted += ["TORCH_HUB_TOKEN", "CUDA_SOMETHING"]
    return env, allowlisted


def _params(planted: Planted) -> tuple[dict, list[str]]:
    by_name = F
    p = "params"
    params: dict = {
        "lr": 0.1,
        "api_key": planted.value(by_name["generic API key"], p, "api_key"),
        "db_password": planted.value(by_name["plain password"], p, "db_password"),
        "token": planted.value(by_name["generic token"], p, "token"),
        "dbPassword": planted.value(by_name["plain password"], p, "camel"),
        "awsSecretAccessKey": planted.value(by_name["AWS secret access key"], p, "camel"),
        "client_secret": planted.value(by_name["generic secret"], p, "client_secret"),
        "creds": {
            "password": planted.value(by_name["plain password"], p, "nested"),
            "aws_secret_access_key": planted.value(by_name["AWS secret access key"], p, "nested"),
        },
    }
    expected = ["api_key", "db_password", "token", "dbPassword", "awsSecretAccessKey"]
    for i, form in enumerate(VALUE_FORMS):
        name = f"setting_{i}"  # an innocent name: the value gives it away
        params[name] = planted.value(form, p, name)
        expected.append(name)
    params["list_of_things"] = ["a", planted.value(VALUE_FORMS[0], p, "list")]
    return params, expected


def _remotes(repo: Path, planted: Planted) -> None:
    for i, form in enumerate(SINGLE_LINE):
        value = planted.value(form, "git remotes")
        if "://" in value:
            url = value  # already a URL with credentials in it
        else:
            url = f"https://x-access-token:{quote(value, safe='')}@git.example.com/team/r{i}.git"
        git(repo, "remote", "add", f"r{i}", url)


def _fake_distribution(site: Path, planted: Planted) -> None:
    """A distribution installed from URLs with credentials in them (PEP 610 direct_url.json)."""
    for name, form, url in [
        ("rpkfake", F["GitHub classic token"], "git+https://{v}@github.com/org/rpkfake.git"),
        ("rpkfake2", F["URL query token"], "{v}"),
        ("rpkfake3", F["https userinfo"], "{v}"),
    ]:
        info = site / f"{name}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        value = planted.value(form, "installed package URL", name)
        direct = {"url": url.format(v=value)}
        if url.startswith("git+"):
            direct["vcs_info"] = {"vcs": "git", "commit_id": "0" * 40}
        (info / "direct_url.json").write_text(json.dumps(direct))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    base = tmp_path_factory.mktemp("secrets")
    planted = Planted()
    repo = make_repo(
        base / "repo",
        {
            "trainlib.py": TRAINLIB,
            "driver.py": DRIVER,
            "with_run.py": WITH_RUN,
            "child.py": CHILD,
            "README.md": "x\n",
        },
    )
    (repo / "README.md").write_text("an uncommitted change\n")
    _remotes(repo, planted)
    site = base / "site"
    _fake_distribution(site, planted)
    extra, allowlisted = _environment(planted)
    params, redacted_params = _params(planted)
    secrets_file = base / "secrets.json"
    keyed = planted.value(F["generic API key"], "params", "keyed")
    secrets_file.write_text(json.dumps({"params": params, "keyed": keyed}))
    env = clean_env(**extra, PYTHONPATH=str(site), RPK_SECRETS_FILE=str(secrets_file))

    script_argv = _argv(planted, "argv of a with-run script")
    proc = run_python(repo, WITH_RUN, *script_argv, env=env, script="with_run.py")
    assert proc.returncode == 0, proc.stderr
    command_argv = _argv(planted, "argv of reprokit run")
    proc = cli(repo, "run", "--", sys.executable, "child.py", *command_argv, env=env)
    assert proc.returncode == 0, proc.stderr
    proc = run_python(repo, DRIVER, env=env, script="driver.py")
    assert proc.returncode == 0, proc.stderr
    return {
        "repo": repo,
        "env": env,
        "planted": planted,
        "allowlisted": allowlisted,
        "redacted_params": redacted_params,
        "base": base,
    }


def _manifests(repo: Path) -> dict[str, object]:
    store = Store(repo / ".reprokit")
    return {rid: store.load(rid) for rid in store.run_ids()}


def _keyed(repo: Path) -> list[str]:
    """The recorded run of ``keyed`` (not its replays)."""
    return [
        rid
        for rid, m in _manifests(repo).items()
        if m.run["entry"].get("qualname") == "keyed" and not m.run.get("replay_of")
    ]


def test_no_secret_reaches_the_store_or_an_archive(recorded, figure):
    repo, planted = recorded["repo"], recorded["planted"]
    manifests = _manifests(repo)
    kinds = sorted(str(m.run["entry"].get("kind")) for m in manifests.values())
    assert kinds.count("function") >= 3 and "script" in kinds and "command" in kinds

    # the manifests name what they hid
    remotes = argv_checked = params_checked = 0
    for m in manifests.values():
        env = m.environment
        assert set(recorded["allowlisted"]) <= set(env.get("redacted_variables") or []), m.id
        assert all(env["variables"][n] == "<redacted>" for n in recorded["allowlisted"])
        entry = m.run["entry"]
        named = entry.get("kind") in ("script", "command") or entry.get("qualname") == "train"
        if named and len(entry.get("argv") or []) > 2:
            assert {"api-key", "token", "password", "client-secret", "auth-token"} <= set(
                entry.get("redacted") or []
            ), m.id
            argv_checked += 1
        if entry.get("qualname") == "train" and "setting_0" in m.params:
            assert set(recorded["redacted_params"]) <= set(m.run["redacted_params"])
            assert "creds.password" in m.run["redacted_params"]
            params_checked += 1
        if m.code.get("kind") == "git" and "remotes" in m.code:
            assert "git.example.com" in json.dumps(m.to_dict()["code"]["remotes"])
            remotes += 1
    assert remotes >= 4 and argv_checked == 3 and params_checked == 1

    # every byte of every file of the store
    store_root = repo / ".reprokit"
    files = [p for p in sorted(store_root.rglob("*")) if p.is_file()]
    leaks: list[str] = []
    for path in files:
        leaks += planted.leaks(path.read_bytes(), str(path.relative_to(store_root)))

    # every member of an archive of all of them, decompressed
    out = recorded["base"] / "all.tar.gz"
    proc = cli(repo, "archive", "--all", "-o", str(out), env=recorded["env"])
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(out) as tf:
        members = [m for m in tf.getmembers() if m.isfile()]
        for m in members:
            leaks += planted.leaks(tf.extractfile(m).read(), f"archive:{m.name}")
    assert len(files) > 10 and len(members) > 10
    assert not leaks, "\n".join(leaks)
    forms = {form for form, _ in planted.where.values()}
    assert len(forms) >= 20
    figure(
        "secrets tried / leaked",
        f"{len(forms)} forms in {len(planted.places)} places "
        f"({len(planted.where)} values) / {len(leaks)}",
    )


def test_a_run_with_redacted_params_replays_only_with_them_supplied(recorded):
    repo, env = recorded["repo"], recorded["env"]
    [rid] = _keyed(repo)
    proc = cli(repo, "replay", rid, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--param api_key=" in proc.stderr and proc.stderr.count("\n") == 1
    proc = cli(repo, "replay", rid, "--param", "api_key=not-the-recorded-one", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "identical" in proc.stdout


def test_a_secret_given_to_replay_is_not_recorded(recorded):
    repo, env = recorded["repo"], recorded["env"]
    [rid] = _keyed(repo)
    key = "Zq" + _chars("replay --param", 30)
    proc = cli(repo, "replay", rid, "--param", f"api_key={key}", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for path in (repo / ".reprokit").rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def test_a_secret_in_an_exception_message_is_not_recorded(tmp_path):
    repo = make_repo(tmp_path / "repo")
    secret = "Zq" + _chars("exception", 18)
    code = (
        "import os, reprokit\n"
        "with reprokit.run('fails'):\n"
        "    raise ConnectionError('cannot reach ' + os.environ['RPK_DB'])\n"
    )
    env = clean_env(RPK_DB=f"postgresql://trainer:{secret}@db.internal/runs")
    proc = run_python(repo, code, env=env)
    assert proc.returncode == 1
    for path in (repo / ".reprokit").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
