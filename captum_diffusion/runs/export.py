"""A saved run as one long table that pandas, duckdb or a spreadsheet reads: one row per prompt, seed, method and
word (``diffusion-explain export RUN --format parquet|csv``, :meth:`Run.to_pandas`).

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

from pathlib import Path

import numpy as np

__all__ = ["COLUMNS", "FORMATS", "run_table", "export_run", "read_table"]

#: The table's columns, in order.
COLUMNS = ("prompt", "prompt_index", "seed", "method", "word", "label", "position", "value", "standard_error",
           "base_value", "payoff")
#: ``--format`` choices and their file suffix.
FORMATS = {"parquet": ".parquet", "csv": ".csv"}
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

    from captum_diffusion.runs.summary import explained_prompts

    columns: dict[str, list] = {name: [] for name in COLUMNS}
    for index, result in explained_prompts(run):
        for name, cells in _rows(result, index).items():
            columns[name].extend(cells)
    return pd.DataFrame({name: pd.Series(cells, dtype=_dtype(name)) for name, cells in columns.items()})


def _dtype(column: str) -> str:
    """A column's dtype: ``int64``, ``float64`` or ``str`` (pandas' string dtype; ``object`` before pandas 3)."""
    return "int64" if column in _INTEGERS else "str" if column in _TEXTS else "float64"


def _format(format: str | None, out: Path | None) -> str:
    """The table format: ``format``, else ``out``'s suffix."""
    if format is None and out is not None:
        format = next((name for name, suffix in FORMATS.items() if out.suffix == suffix), None)
        if format is None:
            raise ValueError(f"--out {str(out)!r}: give --format ({' or '.join(FORMATS)}) or a file ending in "
                             f"{' or '.join(FORMATS.values())}")
    if format not in FORMATS:
        raise ValueError(f"--format must be one of {list(FORMATS)}, got {format!r}")
    return format


def export_run(run, out=None, *, format: str | None = None) -> Path:
    """Write a run's long table (:func:`run_table`) as parquet or CSV.

    Parameters
    ----------
    run : Run or str or os.PathLike
        A loaded run, or its folder.
    out : str or os.PathLike, optional
        The file to write (missing folders are created); default ``RUN/values.parquet`` or ``RUN/values.csv``.
    format : {"parquet", "csv"}, optional
        Default: from ``out``'s suffix; ``"parquet"`` when ``out`` is not given either.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        For an unknown format, or a folder that holds no run.
    ImportError
        For parquet without ``pyarrow`` (install the ``parquet`` extra, or use ``--format csv``).
    """
    from captum_diffusion.runs.store import load_run

    run = load_run(run, images=False) if isinstance(run, (str, Path)) else run
    out = None if out is None else Path(out)
    format = _format(format if format is not None or out is not None else "parquet", out)
    out = Path(run.directory) / f"values{FORMATS[format]}" if out is None else out
    frame = run_table(run)
    out.parent.mkdir(parents=True, exist_ok=True)
    if format == "csv":
        frame.to_csv(out, index=False)
        return out
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError("--format parquet needs pyarrow: pip install 'diffusion-explain[parquet]' (or use "
                          "--format csv)") from None
    frame.to_parquet(out, index=False)
    return out


def read_table(path):
    """Read a table written by :func:`export_run` back, values exactly as written.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.parquet`` or ``.csv`` file.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS` with their dtypes.
    """
    import pandas as pd

    path = Path(path)
    format = _format(None, path)
    if format == "parquet":
        return pd.read_parquet(path)
    floats = [name for name in COLUMNS if _dtype(name) == "float64"]  # a word "NA" stays a word: only floats are NaN
    return pd.read_csv(path, float_precision="round_trip", keep_default_na=False,
                       na_values={name: [""] for name in floats}, dtype={name: _dtype(name) for name in COLUMNS})
