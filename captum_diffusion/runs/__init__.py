"""Runs a team can keep: a configuration (``config``), its execution over prompts and seeds (``execute``), the saved
folder and ``load_run`` (``store``), and the HTML report of a saved run (``render``). The command line
(``captum_diffusion.cli``) is a thin layer over these."""
from __future__ import annotations

from captum_diffusion.lazy import lazy_getattr

_EXPORTS = {
    "RunConfig": "config",
    "PromptSpec": "config",
    "read_prompt_file": "config",
    "explain_run": "execute",
    "load_run": "store",
    "Run": "store",
    "PromptRun": "store",
    "write_report": "render",
    "plan_run": "plan",
    "fill_cache": "fill",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
