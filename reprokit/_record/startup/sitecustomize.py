"""reprokit's start-up hook for a Python program that ``reprokit run`` started.

This folder is put first on the program's PYTHONPATH, and on no one else's. Python imports
``sitecustomize`` while it starts; this one takes its folder back out of ``sys.path`` and
``PYTHONPATH`` (the program sees the paths it would have had), runs the ``sitecustomize`` it
shadowed, if there is one, then hands over to ``reprokit._record.bootstrap``. Nothing here may
raise into the program: if reprokit cannot be imported by this interpreter, the program runs
as it would have without us.
"""

import os
import sys


def _forget_this_folder() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    shown = os.environ.get("PYTHONPATH")
    if shown is not None:
        # An empty entry means the current folder: it is kept, as the user wrote it.
        kept = [p for p in shown.split(os.pathsep) if not p or os.path.abspath(p) != here]
        if kept:
            os.environ["PYTHONPATH"] = os.pathsep.join(kept)
        else:
            del os.environ["PYTHONPATH"]


def _run_shadowed() -> None:
    """Run the sitecustomize this file shadows (a distribution's, a virtualenv's)."""
    # Looked for by hand first: importing importlib.machinery costs more than these stats.
    names = ("sitecustomize.py", "sitecustomize", "sitecustomize.pyc")
    if not any(os.path.exists(os.path.join(p or ".", n)) for p in sys.path for n in names):
        return
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec("sitecustomize", sys.path)
    if spec is None or spec.loader is None:
        return
    module = type(sys)("sitecustomize")
    module.__file__ = spec.origin
    module.__spec__ = spec
    module.__loader__ = spec.loader
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


def _reprokit_startup() -> None:
    try:
        _forget_this_folder()
        _run_shadowed()
    except Exception:
        pass
    try:
        from reprokit._record.bootstrap import start
    except Exception:
        return
    start()


_reprokit_startup()
