"""Write a saved run's long table to a file: ``diffusion-explain export RUN --format parquet|csv``.

The table and its columns are :mod:`captum_diffusion.runs.table`'s. Parquet needs ``pyarrow`` (the ``parquet``
extra: ``pip install diffusion-explain[parquet]``); CSV needs nothing more. Values are written exactly: parquet stores
float64, CSV the shortest repr that reads back to the same float (read it with :func:`read_table`, or
``pandas.read_csv(path, float_precision="round_trip")``).
"""
from __future__ import annotations

from pathlib import Path

from captum_diffusion.runs.table import COLUMNS, column_dtype, run_table

__all__ = ["COLUMNS", "FORMATS", "run_table", "export_run", "read_table"]

#: ``--format`` choices and their file suffix.
FORMATS = {"parquet": ".parquet", "csv": ".csv"}


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
    floats = [name for name in COLUMNS if column_dtype(name) == "float64"]  # a word "NA" stays a word: only floats are NaN
    return pd.read_csv(path, float_precision="round_trip", keep_default_na=False,
                       na_values={name: [""] for name in floats}, dtype={name: column_dtype(name) for name in COLUMNS})
