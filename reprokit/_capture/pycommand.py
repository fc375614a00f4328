"""Is a command a Python program, and which one: ``python train.py``, ``python -m pkg``, or an
installed console script whose shebang names a Python interpreter."""

from __future__ import annotations

import os
import re

from reprokit._capture import which

TYPE_CHECKING = False  # importing typing costs ~2 ms; annotations alone don't need it
if TYPE_CHECKING:
    from typing import Any

_PYTHON_NAME = re.compile(r"^python(\d+(\.\d+)*)?[a-z]?(\.exe)?$")
# Interpreter options that take a value (the value may also be glued on: -Wignore).
_WITH_VALUE = frozenset("WX")
# Launchers: Python programs whose Python children are the program (its workers, one a rank).
# Console scripts by name, modules by name; accelerate only through its "launch" command.
_LAUNCHER_SCRIPTS = {"torchrun": "torchrun", "accelerate": "accelerate"}
_LAUNCHER_MODULES = {
    "torch.distributed.run": "torchrun",
    "torch.distributed.launch": "torchrun",
    "accelerate.commands.launch": "accelerate",
    "accelerate.commands.accelerate_cli": "accelerate",
}


def _shebang_is_python(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            first = fh.readline(256)
    except OSError:
        return False
    if not first.startswith(b"#!"):
        return False
    words = first[2:].decode("utf-8", "replace").split()
    # "#!/usr/bin/env python3" or "#!/venv/bin/python"; a shell trampoline ("#!/bin/sh" plus
    # "exec python ...") is not followed.
    return any(_PYTHON_NAME.match(os.path.basename(w)) for w in words[:2])


def python_program(argv: list[str]) -> dict[str, Any] | None:
    """What a Python command runs, or None for a command that is not a Python program.

    ``{"how": "script", "script": PATH, "args": [...]}``, ``{"how": "module", "module": NAME,
    ...}``, ``{"how": "console-script", "script": PATH, ...}``, or ``{"how": "code"|"stdin"}``
    (``-c``, ``-`` or no program: nothing on disk to capture). ``args_at`` is the index in argv
    of the program's first own argument. A launcher that starts the program as Python workers
    (torchrun, ``python -m torch.distributed.run``, ``accelerate launch``) adds ``"launcher":
    "torchrun"|"accelerate"``.
    """
    if not argv:
        return None
    exe = argv[0]
    if _PYTHON_NAME.match(os.path.basename(exe)):
        found = _interpreter_args(argv)
        launcher = _LAUNCHER_MODULES.get(found.get("module") or "")
    else:
        path = exe if os.sep in exe else which(exe)
        if not (path and os.path.isfile(path) and _shebang_is_python(path)):
            return None
        found = {"how": "console-script", "script": path, "args_at": 1}
        launcher = _LAUNCHER_SCRIPTS.get(os.path.basename(exe))
    if launcher == "accelerate" and found.get("module") != "accelerate.commands.launch":
        # `accelerate config`, `accelerate env`, ...: only `launch` starts workers.
        launcher = launcher if argv[found["args_at"] : found["args_at"] + 1] == ["launch"] else None
    if launcher is not None:
        found["launcher"] = launcher
    return found


def _interpreter_args(argv: list[str]) -> dict[str, Any]:
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "-" or not arg.startswith("-"):
            break
        if arg == "--":
            i += 1
            break
        if arg.startswith("--"):  # --version, --help: no program runs
            i += 1
            continue
        letters = arg[1:]
        for j, ch in enumerate(letters):
            rest = letters[j + 1 :]
            if ch == "c":
                return {"how": "code", "args_at": i + (1 if rest else 2)}
            if ch == "m":
                if rest:
                    return {"how": "module", "module": rest, "args_at": i + 1}
                if i + 1 < len(argv):
                    return {"how": "module", "module": argv[i + 1], "args_at": i + 2}
                return {"how": "stdin", "args_at": len(argv)}
            if ch in _WITH_VALUE:
                if not rest:
                    i += 1  # the value is the next word
                break
        i += 1
    if i >= len(argv) or argv[i] == "-":
        return {"how": "stdin", "args_at": min(i + 1, len(argv))}
    return {"how": "script", "script": argv[i], "args_at": i + 1}
