"""Lazy attribute export for package ``__init__`` modules (keeps ``import captum_diffusion`` cheap)."""
from __future__ import annotations

import importlib


def lazy_getattr(package: str, exports: dict[str, str]):
    """A module ``__getattr__`` that imports ``package.<exports[name]>`` on first access to ``name``.

    An exported name may not also be a submodule's name: importing the submodule would set the package attribute
    to the module and hide the export (``metrics.clip_score`` once became a module that way)."""
    clashes = sorted(set(exports) & set(exports.values()))
    if clashes:
        raise ImportError(f"{package} exports {clashes}, which are also its submodules' names; rename the modules")

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return __getattr__
