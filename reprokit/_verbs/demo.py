"""The demo's material: a small repository with an uncommitted change and one recorded run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from reprokit._capture.git import git
from reprokit._model.errors import GitError, ReprokitError
from reprokit._model.protocol import variable
from reprokit._verbs.templates import templates_dir

_IDENTITY = {
    "GIT_AUTHOR_NAME": "demo",
    "GIT_AUTHOR_EMAIL": "demo@example.com",
    "GIT_COMMITTER_NAME": "demo",
    "GIT_COMMITTER_EMAIL": "demo@example.com",
}


def prepare_demo(say: Callable[[str], None] = lambda text: None) -> tuple[Path, str]:
    """Make the demo repository and record one run in it: (its folder, what train() printed).

    The repository has one commit and an uncommitted change, which the manifest must capture.
    """
    if shutil.which("git") is None:
        raise ReprokitError("the demo needs git, which is not on PATH")
    folder = Path(tempfile.mkdtemp(prefix="reprokit-demo-"))
    shutil.copyfile(templates_dir() / "demo" / "train.py", folder / "train.py")
    try:
        git(["init", "-q"], folder)
        git(["add", "train.py"], folder)
        git(
            ["commit", "-q", "-m", "demo: a tiny training loop"],
            folder,
            env={**os.environ, **_IDENTITY},
        )
    except GitError as exc:
        raise ReprokitError(f"could not set up the demo repository: {exc}") from None
    text = (folder / "train.py").read_text().replace("lr: float = 0.05", "lr: float = 0.1")
    (folder / "train.py").write_text(text)
    say(f"reprokit demo: example repository in {folder}")
    say("reprokit demo: running `python train.py` (one tracked call of train())")
    env = {k: v for k, v in os.environ.items() if k != variable("store")}
    proc = subprocess.run(
        [sys.executable, "train.py"], cwd=folder, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise ReprokitError(
            f"the demo training script failed: {proc.stderr.strip().splitlines()[-1:]}"
        )
    return folder, proc.stdout.strip()
