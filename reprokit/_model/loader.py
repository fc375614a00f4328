"""A module loader wrapped so that something happens once the module has run.

Both the seed-on-import hook (``_seeding``) and the start-up hook of ``reprokit run``'s Python
children (``_record/bootstrap``) put one in front of a module's real loader. The real loader is
handed back before the module runs: code that inspects ``__loader__`` or ``__spec__.loader``
(``importlib.resources``, ``inspect``, ``isinstance`` checks) sees the one it expects. Anything
else is asked of the real loader.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # (importing typing costs milliseconds: this runs in every hooked child)
    from typing import Any


class WrappedLoader:
    """``loader`` for the module ``name``; subclasses say what :meth:`execute` adds."""

    def __init__(self, loader: Any, name: str) -> None:
        self.loader = loader
        self.name = name

    def create_module(self, spec: Any) -> Any:
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: Any) -> None:
        try:
            if module.__dict__.get("__loader__") is self:
                module.__loader__ = self.loader
            spec = module.__dict__.get("__spec__")
            if spec is not None and spec.loader is self:
                spec.loader = self.loader
        except Exception:
            pass
        self.execute(module)

    def execute(self, module: Any) -> None:
        """Run the module with the real loader (and, in a subclass, what follows it)."""
        self.loader.exec_module(module)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.loader, attr)
