"""A saved run as one long table that pandas, duckdb or a spreadsheet reads: one row per prompt, seed, method and
word (:meth:`Run.to_pandas`; written to a file by ``runs.export``).

Columns (:data:`COLUMNS`):

==================  ========  ==========================================================================================
prompt              str       the prompt's text
prompt_index        int64     its place in the run (``manifest.json``'s ``prompts``, from 0)
seed                int64     the seed of this row's values
method              str       the word-attribution method (``shap-exact``, ``lime``, ...)
word                str       the word (a player of the word game)
label               str       its label (``a#0`` / ``a#1`` where a word repeats)
position            int64     the word's place in the prompt, from 0
value               float64   the word's value at this seed, payoff units
standard_error      float64   standard error of the word's *seed-averaged* value (the same on every seed's row;
                              NaN where not known: a sampled method at one seed), payoff units
base_value          float64   the method's base value at this seed (the empty prompt's payoff)
payoff              float64   the full prompt's payoff at this seed
==================  ========  ==========================================================================================

Prompts that failed or are not explained yet have no rows. Parquet needs ``pyarrow`` (the ``parquet`` extra:
``pip install diffusion-explain[parquet]``); CSV needs nothing more. Values are written exactly: parquet stores
float64, CSV the shortest repr that reads back to the same float (read it with :func:`read_table`, or
``pandas.read_csv(path, float_precision="round_trip")``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["COLUMNS", "column_dtype", "run_table", "explained_prompts"]

#: The table's columns, in order.
COLUMNS = ("prompt", "prompt_index", "seed", "method", "word", "label", "position", "value", "standard_error",
           "base_value", "payoff")
_INTEGERS = ("prompt_index", "seed", "position")
_TEXTS = ("prompt", "method", "word", "label")


def _rows(result, index: int) -> dict[str, list]:
    """The columns of one prompt's rows: every (seed, method, word), in that order."""
    columns: dict[str, list] = {name: [] for name in COLUMNS}
    result.fill_standard_errors()
    payoffs = result.payoffs if result.payoffs is not None else np.full(len(result.seeds), np.nan)
    for row, seed in enumerate(result.seeds):
        for method, values in result.values.items():
            errors = result.standard_errors.get(method, np.full(len(result.words), np.nan))
            for position, (word, label) in enumerate(zip(result.words, result.labels)):
                cells = (result.prompt, index, seed, method, word, label, position, values[row, position],
                         errors[position], result.base_values[method][row], payoffs[row])
                for name, cell in zip(COLUMNS, cells):
                    columns[name].append(cell)
    return columns


def run_table(run):
    """The long table of a loaded run.

    Parameters
    ----------
    run : Run
        A run from :func:`captum_diffusion.runs.load_run` (``images=False`` is enough).

    Returns
    -------
    pandas.DataFrame
        One row per (prompt, seed, method, word) of every explained prompt, columns :data:`COLUMNS` (see the module
        docstring for their meaning, dtypes and units); an empty frame with those columns when nothing is explained.
    """
    import pandas as pd

    columns: dict[str, list] = {name: [] for name in COLUMNS}
    for index, result in explained_prompts(run):
        for name, cells in _rows(result, index).items():
            columns[name].extend(cells)
    return pd.DataFrame({name: pd.Series(cells, dtype=column_dtype(name)) for name, cells in columns.items()})


def column_dtype(column: str) -> str:
    """A column's dtype: ``int64``, ``float64`` or ``str`` (pandas' string dtype; ``object`` before pandas 3)."""
    return "int64" if column in _INTEGERS else "str" if column in _TEXTS else "float64"


def explained_prompts(run) -> list[tuple[int, object]]:
    """The explained prompts of a run, with their numbers.

    Parameters
    ----------
    run : Run
        A loaded run, whole or partial (an interrupted run leaves prompts out).

    Returns
    -------
    list of tuple of (int, PromptRun)
        ``(number, result)`` per prompt whose status is ``"done"``, in run order; ``number`` is the prompt's place in
        the run (``PromptRun.number``, else its place among the loaded prompts).
    """
    return [(result.number if getattr(result, "number", None) is not None else position, result)
            for position, result in enumerate(run.prompts) if result.status == "done"]
