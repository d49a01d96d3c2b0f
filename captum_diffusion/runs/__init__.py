"""Runs a team can keep.

- ``config``: what a run is asked to do (``RunConfig``, prompt files, TOML); the CLI's options are its fields;
- ``methods``: the word-attribution methods, one registry (runner, planned or not and why, seeded, cost);
- ``multifidelity``: ``shap-multifidelity`` (cheap proxy images for every sub-prompt, full images for a few, with
  standard errors); ``cost``: the manifest's cost in full-image equivalents beside exact's;
- ``models``: the model and scorer a run loads, and the generation settings they give;
- ``plan``: the images a run needs, deduplicated and packed in batches (each with its generation settings);
- ``fill``: filling the image cache with the plan, split between the processes;
- ``prompt``: one prompt explained at every seed from the cache;
- ``execute``: ``explain_run``, the run's phases; ``distributed``: the processes and their meeting points;
- ``store``: the saved folder and ``load_run``; ``render``: the HTML report of a saved run.
- ``verify``: ``checksums.json`` and ``verify_run`` (what is damaged in a saved run, naming each file); ``lock``:
  one writer per run folder; ``limits``: settings that cannot run, refused before the first image.
- across a saved run and between runs: ``summary`` (``summarize``: word and class values across prompts, what the
  model neglects, the least seed-stable prompts), ``compare`` (``compare_runs`` / ``write_comparison``: two runs of
  the same prompts), ``export`` (``export_run`` / ``read_table``: one long table, parquet or CSV; ``Run.to_pandas``)
  and ``tracking`` (``log_run``: an MLflow run).

The command line (``captum_diffusion.cli``) is a thin layer over these.
"""
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
    "WordMethod": "methods",
    "summarize": "summary",
    "Summary": "summary",
    "compare_runs": "compare",
    "write_comparison": "compare",
    "Comparison": "compare",
    "export_run": "export",
    "read_table": "export",
    "log_run": "tracking",
    "verify_run": "verify",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
