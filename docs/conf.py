"""Sphinx configuration of the diffusion-explain API reference.

Build (warnings are errors, as in ``.ci/run``)::

    python -m pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The reference documents modules directly, not the lazy ``__all__`` of the packages: each module page shows the
public names defined in that module. ``write_api_page`` below lists every public module of the three packages in
``api.rst`` (generated, not kept in git), so a new module is documented without editing the docs;
``check_docstring_style`` turns a Google-style section header (``Args:``) anywhere in the packages into a warning.
"""
from __future__ import annotations

import importlib.metadata
import pkgutil
import re
from pathlib import Path

from sphinx.util import logging

ROOT = Path(__file__).resolve().parent.parent
#: The public packages documented; ``__main__`` modules (they run the command line on import) are left out.
PACKAGES = ("captum_diffusion", "shap_adapters", "lime_adapters")

project = "diffusion-explain"
author = "diffusion-explain contributors"
release = importlib.metadata.version("diffusion-explain")
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "numpydoc",
]

templates_path = ["_templates"]
exclude_patterns = ["_build"]
html_theme = "alabaster"

autosummary_generate = True
autodoc_default_options = {"members": True, "ignore-module-all": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# Signatures name the protocol alias instead of spelling out its Callable[...] type.
autodoc_type_aliases = {"PromptFunction": "captum_diffusion.protocols.PromptFunction"}
# numpydoc renders the sections; the class pages list members through autodoc, not a second numpydoc table.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# numpydoc checks that hold for the whole package (see numpydoc's validation table): an unknown section name
# (a Google-style "Args:" turned into a heading), sections out of order, a documented parameter the signature lacks.
numpydoc_validation_checks = {"GL06", "GL07", "PR02"}


def imported_names(modules) -> set[str]:
    """``module.name`` for every public class / function a module imports from elsewhere. autodoc reads their
    docstrings too before it drops them, and numpydoc would report a docstring once per importing module."""
    import importlib
    import inspect

    names = set()
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if (not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
                    and getattr(value, "__module__", module_name) != module_name):
                names.add(f"{module_name}.{name}")
    return names


def public_modules() -> list[str]:
    """Every public module of ``PACKAGES`` (no part of its dotted name starts with an underscore)."""
    names = []
    for package in PACKAGES:
        names.append(package)
        for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            if not any(part.startswith("_") for part in info.name.split(".")):
                names.append(info.name)
    return sorted(names)


def write_api_page(app, config) -> None:
    """Write ``api.rst``: one autosummary table per package (the root, each subpackage, the two adapters), each
    module a page. Run at ``config-inited`` so the page exists before Sphinx looks for sources; written only when
    its text changes, so an unchanged tree rebuilds incrementally. Stub pages of modules that no longer exist are
    removed (autosummary writes the stubs into ``generated/`` and never deletes one)."""
    modules = public_modules()
    packages = [name for name in modules if (ROOT / name.replace(".", "/") / "__init__.py").is_file()]
    lines = ["API reference", "=============", "",
             "One page per module, showing the public names that module defines. Packages export their main names",
             "lazily (``from captum_diffusion import TextToImage`` works); the objects are documented in the module",
             "that defines them. This page is written by ``docs/conf.py`` from the package tree.", ""]
    for package in packages:
        members = [package] + [name for name in modules if name.rpartition(".")[0] == package
                               and name not in packages]
        lines += [package, "-" * len(package), "", ".. autosummary::", "   :toctree: generated", "",
                  *(f"   {name}" for name in members), ""]
    text = "\n".join(lines)
    for stub in (Path(app.srcdir) / "generated").glob("*.rst"):  # pages of modules that are gone
        if stub.stem not in modules:
            stub.unlink()
    page = Path(app.srcdir) / "api.rst"
    if not page.is_file() or page.read_text(encoding="utf-8") != text:
        page.write_text(text, encoding="utf-8")


#: A Google-style section header ("Args:", "Returns:", ... alone on a line): numpydoc reads it as prose.
GOOGLE_SECTION = re.compile(r"^\s+(Args|Arguments|Keyword Args|Returns|Raises|Yields|Attributes|Examples?|Notes?):\s*$")


def check_docstring_style(app) -> None:
    """Warn (an error under ``-W``) at every Google-style section header in the packages: the project writes
    numpydoc sections (``Parameters`` over a line of dashes), and numpydoc renders a Google header as prose."""
    logger = logging.getLogger(__name__)
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                match = GOOGLE_SECTION.match(line)
                if match:
                    logger.warning("Google-style section %r: write it as a numpydoc section (%s, then a line of "
                                   "dashes)", match.group(1), NUMPYDOC_SECTIONS.get(match.group(1), match.group(1)),
                                   location=f"{path}:{number}")


NUMPYDOC_SECTIONS = {"Args": "Parameters", "Arguments": "Parameters", "Keyword Args": "Other Parameters",
                     "Example": "Examples", "Note": "Notes"}


def exclude_imported_from_validation(app, config) -> None:
    """Validate each docstring once, where its object is defined (see ``imported_names``)."""
    config.numpydoc_validation_exclude = {rf"^{re.escape(name)}$" for name in imported_names(public_modules())}
    # numpydoc's validator looks for a ``def`` line in an object's source and fails (StopIteration) on properties
    # made by a factory (``text_to_image._setting``): their docstrings are one-line prose, nothing to validate.
    config.numpydoc_validation_exclude.add(
        r"^captum_diffusion\.generation\.text_to_image\.TextToImage\.(num_inference_steps|guidance_scale|height|"
        r"width|max_sequence_length)$")


def setup(app):
    app.connect("config-inited", write_api_page)
    app.connect("config-inited", exclude_imported_from_validation, priority=400)  # before numpydoc reads it
    app.connect("builder-inited", check_docstring_style)
