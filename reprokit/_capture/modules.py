"""Which imported modules are the program's own: files under its folder, outside any installed
prefix. Kept apart from the git collector so that a program's start-up hook can ask cheaply."""

from __future__ import annotations

import os
import sys


def own_module_files(base: str) -> list[str]:
    """Absolute paths of the ``.py`` files of imported modules under the folder ``base``."""
    prefixes = tuple(
        os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix} if p
    )
    base = os.path.realpath(base)
    found: list[str] = []
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if not isinstance(f, str) or not f.endswith(".py") or not os.path.isabs(f):
            # A relative __file__ is a module's own fiction (torch._ops says "_ops.py"), not a
            # file in the current folder.
            continue
        f = os.path.abspath(f)
        if (
            f.startswith(base + os.sep)
            and not f.startswith(prefixes)
            and ("site-packages" not in f)
        ):
            found.append(f)
    return found
