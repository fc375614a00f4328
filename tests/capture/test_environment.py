"""Environment capture: distributions read from real site folders, numerics variables, imports."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from reprokit._capture import environment
from reprokit._capture.environment import (
    capture_environment,
    imported_distributions,
    module_distributions,
    numerics_variables,
)
from reprokit._model.redact import REDACTED

REPO_ROOT = Path(__file__).resolve().parents[2]
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _dist_info(site: Path, folder: str, name: str, version: str, **files: str) -> Path:
    """A dist-info folder as an installer leaves it; ``files`` maps file names to contents."""
    path = site / folder
    _write(path / "METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nBody\n")
    for file_name, text in files.items():
        _write(path / file_name.replace("__", "."), text)
    return path


def _run(code: str, pythonpath: list[Path | str], cwd: Path, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter with ``pythonpath`` and return the JSON it prints."""
    full_env = dict(os.environ)
    full_env.update(env)
    # The repo root goes last so reprokit imports even when it is not installed in the venv.
    full_env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), str(REPO_ROOT)])
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fake_sites(tmp_path: Path) -> tuple[Path, Path]:
    """Two site folders; the second shadows nothing because the first comes first on sys.path."""
    first, second = tmp_path / "site1", tmp_path / "site2"
    _dist_info(first, "alpha-1.0.dist-info", "Alpha", "1.0", RECORD="alpha/__init__.py,,\n")
    _write(first / "alpha" / "__init__.py", "")
    # No version in the folder name: the version must come from the METADATA header block only,
    # never from the body after the first blank line.
    _write(
        first / "oddname.dist-info" / "METADATA",
        "Metadata-Version: 2.1\nName: Odd-Name\nVersion: 2.5\n\nVersion: 9.9\n",
    )
    _dist_info(
        first,
        "editable_pkg-0.3.dist-info",
        "editable-pkg",
        "0.3",
        RECORD="__editable__.editable_pkg-0.3.pth,,\n__editable___editable_pkg_0_3_finder.py,,\n",
        direct_url__json=json.dumps({"url": "file:///some/where", "dir_info": {"editable": True}}),
    )
    _dist_info(
        first,
        "vcs_pkg-4.2.dist-info",
        "vcs-pkg",
        "4.2",
        direct_url__json=json.dumps(
            {
                "url": "https://user:tok@github.com/o/r.git",
                "vcs_info": {"vcs": "git", "commit_id": COMMIT},
            }
        ),
    )
    signed = "https://b.s3.amazonaws.com/a.whl?X-Amz-Credential=AKIAXYZ&X-Amz-Signature=beef&v=1"
    _dist_info(
        first,
        "archive_pkg-1.1.dist-info",
        "archive-pkg",
        "1.1",
        direct_url__json=json.dumps({"url": signed, "archive_info": {}}),
    )
    _dist_info(first, "broken_direct-1.0.dist-info", "broken-direct", "1.0")
    _write(first / "broken_direct-1.0.dist-info" / "direct_url.json", "{not json")
    _dist_info(first, "dup-1.0.dist-info", "dup", "1.0")
    _write(first / "legacy-0.9-py3.11.egg-info" / "PKG-INFO", "Name: legacy\nVersion: 0.9\n")
    _write(first / "legacy-0.9-py3.11.egg-info" / "top_level.txt", "legacy_mod\n")
    _write(first / "eggfile.egg-info", "Metadata-Version: 1.0\nName: EggFile\nVersion: 0.1\n")
    _write(first / "nameless.dist-info" / "METADATA", "Metadata-Version: 2.1\n")
    _write(first / "notadir-1.0.dist-info", "a file, not a folder\n")
    # Two distributions sharing the namespace package "nsp".
    _dist_info(first, "ns_one-1.0.dist-info", "ns-one", "1.0", RECORD="nsp/one/__init__.py,,\n")
    _dist_info(first, "ns_two-2.0.dist-info", "ns-two", "2.0", RECORD="nsp/two/__init__.py,,\n")
    _write(first / "nsp" / "one" / "__init__.py", "")
    _write(first / "nsp" / "two" / "__init__.py", "")

    _dist_info(second, "dup-2.0.dist-info", "dup", "2.0")
    _dist_info(second, "alpha-9.9.dist-info", "Alpha", "9.9", RECORD="alpha/__init__.py,,\n")
    return first, second


FAKE_SITE_SCRIPT = """
import json, pathlib, sys
from reprokit._capture import environment as e
sys.path[len(sys.path):] = [pathlib.Path(sys.argv[0]).parent, b"/bytes/entry", 123, None]
env = e.capture_environment()
before = e.imported_distributions()
import alpha, nsp.one
print(json.dumps({
    "env": env,
    "modules": e.module_distributions(),
    "before": before,
    "after": e.imported_distributions(),
    "given": e.imported_distributions(["nsp.two.sub", "alpha"]),
}))
"""


def test_fake_sites_in_a_real_interpreter(tmp_path: Path) -> None:
    first, second = _fake_sites(tmp_path)
    a_file = tmp_path / "plain.txt"
    a_file.write_text("not a folder")
    a_zip = tmp_path / "bundle.zip"
    with zipfile.ZipFile(a_zip, "w") as bundle:
        bundle.writestr("zipped-1.0.dist-info/METADATA", "Name: zipped\nVersion: 1.0\n")
    odd_entries = [a_file, a_zip, tmp_path / "missing"]

    out = _run(
        FAKE_SITE_SCRIPT,
        [first, *odd_entries, second],
        tmp_path,
        TORCH_HUB_TOKEN=GITHUB_TOKEN,
        OMP_NUM_THREADS="3",
    )
    env = out["env"]
    packages = env["packages"]
    assert {
        "alpha": "1.0",  # site1 wins over site2's 9.9
        "Odd-Name": "2.5",
        "editable_pkg": "0.3",
        "vcs_pkg": "4.2",
        "archive_pkg": "1.1",
        "broken_direct": "1.0",
        "dup": "1.0",  # site1 wins over site2's 2.0
        "legacy": "0.9",
        "EggFile": "0.1",
        "ns_one": "1.0",
        "ns_two": "2.0",
    }.items() <= packages.items()
    assert not {"nameless", "notadir"} & {_canonical(name) for name in packages}
    assert list(packages) == sorted(packages, key=_canonical)

    direct = env["direct"]
    assert direct["editable_pkg"] == {
        "url": "file:///some/where",
        "editable": True,
        "vcs": None,
        "commit": None,
    }
    assert direct["vcs_pkg"] == {
        "url": "https://github.com/o/r.git",
        "editable": False,
        "vcs": "git",
        "commit": COMMIT,
    }
    archive_url = direct["archive_pkg"]["url"]
    assert "AKIAXYZ" not in archive_url and "beef" not in archive_url
    assert archive_url.endswith(f"X-Amz-Signature={REDACTED}&v=1")
    assert direct["broken_direct"].startswith("unavailable: ")
    assert not {"alpha", "dup", "legacy", "EggFile"} & set(direct)
    assert "tok@" not in json.dumps(env)

    assert env["variables"]["OMP_NUM_THREADS"] == "3"
    assert env["variables"]["TORCH_HUB_TOKEN"] == REDACTED
    assert "TORCH_HUB_TOKEN" in env["redacted_variables"]
    assert GITHUB_TOKEN not in json.dumps(env)
    assert env["python"]["executable"] == sys.executable

    modules = out["modules"]
    assert modules["alpha"] == "alpha"
    assert modules["odd_name"] == "Odd-Name"  # no RECORD: named like the distribution
    assert modules["legacy_mod"] == "legacy"
    assert modules["editable_pkg"] == "editable_pkg"  # guessed: RECORD only lists a .pth
    assert not any(name.startswith("__editable__") for name in modules)
    assert modules["nsp.one"] == "ns_one" and modules["nsp.two"] == "ns_two"

    assert not {"alpha", "ns_one", "ns_two"} & set(out["before"])
    assert {"alpha", "ns_one"} <= set(out["after"])
    assert "ns_two" not in out["after"]  # only nsp.one was imported from the shared namespace
    assert out["given"] == ["alpha", "ns_two"]


def test_real_venv_packages_match_importlib_metadata() -> None:
    env = capture_environment()
    assert env["python"]["version"] == platform.python_version()
    assert env["python"]["prefix"] == sys.prefix
    assert env["python"]["virtualenv"] is (sys.prefix != sys.base_prefix)

    ours = {_canonical(name): version for name, version in env["packages"].items()}
    theirs: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            theirs.setdefault(_canonical(name), dist.version)  # first on sys.path wins there too
    for name in ("PyYAML", "psutil", "Jinja2", "pytest"):
        assert ours[_canonical(name)] == importlib.metadata.version(name)
    assert set(theirs) <= set(ours)
    assert {key: ours[key] for key in theirs} == theirs


def test_numerics_variables_keeps_only_the_allowlist_and_redacts_secrets() -> None:
    aws_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    variables, redacted = numerics_variables(
        {
            "OMP_NUM_THREADS": "8",
            "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
            "TF_DETERMINISTIC_OPS": "1",
            "PYTHONHASHSEED": "0",
            "HOME": "/home/someone",
            "AWS_SECRET_ACCESS_KEY": aws_secret,
            "GITHUB_TOKEN": GITHUB_TOKEN,
            "TORCH_HUB_TOKEN": GITHUB_TOKEN,
            "CUDA_X": "https://u:p@h",
            "MASTER_ADDR": "10.0.0.1",
            "JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234",
            "TF_VAR_db_pass": "hunter2",
        }
    )
    assert variables == {
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "CUDA_X": REDACTED,
        "OMP_NUM_THREADS": "8",
        "PYTHONHASHSEED": "0",
        "TF_DETERMINISTIC_OPS": "1",
        "TORCH_HUB_TOKEN": REDACTED,
    }
    assert list(variables) == sorted(variables)
    assert redacted == ["CUDA_X", "TORCH_HUB_TOKEN"]
    text = repr((variables, redacted))
    for secret in (aws_secret, GITHUB_TOKEN, "u:p@", "hunter2", "10.0.0.1"):
        assert secret not in text


def test_no_redacted_key_when_nothing_is_hidden() -> None:
    assert numerics_variables({"OMP_NUM_THREADS": "1"}) == ({"OMP_NUM_THREADS": "1"}, [])


IMPORT_YAML_SCRIPT = """
import json, sys
from reprokit._capture import environment as e
imported_before = "yaml" in sys.modules
before = e.imported_distributions()
import yaml
print(json.dumps({
    "imported_before": imported_before,
    "before": before,
    "after": e.imported_distributions(),
    "modules": {k: v for k, v in e.module_distributions().items() if k == "yaml"},
}))
"""


def test_imported_distributions_sees_pyyaml_only_after_import(tmp_path: Path) -> None:
    out = _run(IMPORT_YAML_SCRIPT, [], tmp_path)
    assert out["imported_before"] is False, "importing reprokit must not import yaml"
    assert "pyyaml" not in {_canonical(name) for name in out["before"]}
    assert "pyyaml" in {_canonical(name) for name in out["after"]}
    assert _canonical(out["modules"]["yaml"]) == "pyyaml"


def test_module_distributions_maps_yaml_and_returns_a_copy() -> None:
    first = module_distributions()
    assert _canonical(first["yaml"]) == "pyyaml"
    first["yaml"] = "changed"  # callers get a copy, not the cache
    assert _canonical(module_distributions()["yaml"]) == "pyyaml"
    given = imported_distributions(["yaml.constructor", "no_such_module"])
    assert [_canonical(name) for name in given] == ["pyyaml"]


def test_imported_distributions_reads_only_what_it_needs(tmp_path: Path) -> None:
    # 60 distributions, one of them imported: finding it must not open every RECORD.
    site = tmp_path / "site"
    site.mkdir()
    for i in range(60):
        info = site / f"pkg{i}-1.0.dist-info"
        info.mkdir()
        (info / "RECORD").write_text(f"pkg{i}/__init__.py,,\n")
        (site / f"pkg{i}").mkdir()
        (site / f"pkg{i}" / "__init__.py").write_text("")
    resolver = environment._Resolver(environment._scan_distributions([str(site)]))
    assert resolver.providers("pkg7") == ("pkg7",)
    assert len(resolver.tops) == 1


# The package __init__ is bypassed (an empty stand-in) so only this module and what it needs
# are measured, not the rest of reprokit.
LIGHT_IMPORT_SCRIPT = """
import sys, types
package = types.ModuleType("reprokit")
package.__path__ = [sys.argv[1]]
sys.modules["reprokit"] = package
before = set(sys.modules)
import reprokit._capture.environment
added = sorted(set(sys.modules) - before)
import json
print(json.dumps(added))
"""


def test_importing_the_module_stays_light(tmp_path: Path) -> None:
    code = LIGHT_IMPORT_SCRIPT.replace("sys.argv[1]", repr(str(REPO_ROOT / "reprokit")))
    added = set(_run(code, [], tmp_path))
    assert "reprokit._capture.environment" in added
    assert not added & {"json", "email", "importlib.metadata", "platform", "zipfile", "csv"}
