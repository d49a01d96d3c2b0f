"""Log a saved run to an MLflow tracking server or store (``diffusion-explain explain --mlflow [URI]``,
:func:`log_run`).

What is logged, in one MLflow run of the experiment ``diffusion-explain``:

- params: the run's settings (``manifest.json``'s ``config`` but the prompts; lists joined by spaces), the model
  (``model.spec``, ``model.class``), the scorer (``scorer.class``, ``scorer.spec``) and ``n_prompts``;
- metrics (:func:`run_metrics`): the summary figures of :func:`captum_diffusion.runs.summary.summarize` (each word's
  and word class's mean value across prompts, ``word.<w>.mean`` / ``class.<c>.mean``, how many are neglected, the mean
  seed agreement) and the run's counts and time;
- artifacts: the run folder under ``run/`` (manifest, report, per-prompt results and images), without its image
  cache (``cache/``: it only speeds up a resumed run and can be large) and hidden files (a lock).

It needs the ``mlflow`` client (the ``mlflow`` extra: ``pip install 'diffusion-explain[mlflow]'``). The default URI
is the local file store ``./mlruns``, so it works offline (``mlflow ui --backend-store-uri ./mlruns`` shows it);
MLflow 3 keeps file stores in maintenance mode and refuses them unless ``MLFLOW_ALLOW_FILE_STORE=true``, which
:func:`log_run` sets while it writes to a ``file:`` URI. A database URI such as ``sqlite:///mlflow.db`` or a
server's ``http://host:5000`` works too. The client is used directly: MLflow's global state (active run, tracking
URI) is left as it was.
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_TRACKING_URI", "EXPERIMENT", "tracking_uri", "check_tracking", "run_params", "run_metrics",
           "log_run"]

#: ``--mlflow`` with no URI: a file store in the current folder.
DEFAULT_TRACKING_URI = "./mlruns"
#: The MLflow experiment runs are logged to.
EXPERIMENT = "diffusion-explain"
#: The run folder's entries not logged as artifacts (hidden entries, such as a lock file, are skipped too).
SKIPPED = ("cache",)


def tracking_uri(uri: str | os.PathLike | None = None) -> str:
    """The tracking URI of ``--mlflow [URI]``.

    Parameters
    ----------
    uri : str or os.PathLike, optional
        A URI with a scheme (``http://``, ``sqlite://``, ``file:``), or a local folder; default
        :data:`DEFAULT_TRACKING_URI`.

    Returns
    -------
    str
        ``uri`` as given when it has a scheme, else the folder as an absolute ``file:`` URI.

    Raises
    ------
    ValueError
        For an empty ``uri``, naming ``--mlflow``.
    """
    uri = DEFAULT_TRACKING_URI if uri is None else uri
    if not isinstance(uri, (str, os.PathLike)) or not str(uri).strip():
        raise ValueError(f"--mlflow must be a tracking URI or a folder, got {uri!r}")
    text = str(uri)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", text) and not re.match(r"^[A-Za-z]:[\\/]", text):
        return text
    return Path(text).expanduser().resolve().as_uri()


def check_tracking(uri: str | os.PathLike | None = None) -> str:
    """Check, before a run starts, that it can be logged: the URI is valid and the mlflow client is installed.

    Parameters
    ----------
    uri : str or os.PathLike, optional
        As for :func:`tracking_uri`.

    Returns
    -------
    str
        The tracking URI (:func:`tracking_uri`).

    Raises
    ------
    ValueError
        For an empty ``uri``.
    ImportError
        When ``mlflow`` is not installed (naming the extra to install).
    """
    import importlib.util

    uri = tracking_uri(uri)
    if importlib.util.find_spec("mlflow") is None:
        raise ImportError("--mlflow needs the mlflow client: pip install 'diffusion-explain[mlflow]'")
    return uri


def run_params(run) -> dict[str, str]:
    """The run's settings as MLflow params.

    Parameters
    ----------
    run : Run
        The run whose manifest is read.

    Returns
    -------
    dict of str to str
        The manifest's ``config`` but the prompts (lists joined by spaces), ``model.spec`` / ``model.class``,
        ``scorer.spec`` / ``scorer.class`` and ``n_prompts``.
    """
    manifest = run.manifest
    params = {}
    for key, value in (manifest.get("config") or {}).items():
        if key != "prompts":
            params[key] = " ".join(map(str, value)) if isinstance(value, list) else str(value)
    for part in ("model", "scorer"):
        for key in ("spec", "class"):
            params[f"{part}.{key}"] = str((manifest.get(part) or {}).get(key))
    params["n_prompts"] = str(len(manifest.get("prompts", [])))
    return params


def _metric_name(name: str) -> str:
    """A name MLflow accepts (letters, digits, ``_ - . /`` and spaces)."""
    return re.sub(r"[^\w\-. /]", "_", name)


def run_metrics(run, summary=None) -> dict[str, float]:
    """The run's summary figures as MLflow metrics (finite floats).

    Parameters
    ----------
    run : Run
        A loaded run.
    summary : Summary, optional
        Its summary (default :func:`captum_diffusion.runs.summary.summarize`); ``None`` when no prompt was explained.

    Returns
    -------
    dict of str to float
        ``prompts_done``, ``prompts_failed``, ``word.<w>.mean`` / ``class.<c>.mean`` (payoff units),
        ``neglected_words`` / ``neglected_classes`` (counts), ``seed_agreement.percent_ranks_aligned`` (0..100, mean
        over prompts with two or more seeds), and ``images_generated``, ``images_from_cache``, ``seconds`` where the
        manifest has them.
    """
    statuses = [entry.get("status") for entry in run.manifest.get("prompts", [])]
    metrics = {"prompts_done": float(statuses.count("done")), "prompts_failed": float(statuses.count("failed"))}
    if summary is not None:
        metrics.update({_metric_name(f"word.{row['word']}.mean"): row["mean"] for row in summary.words})
        metrics.update({_metric_name(f"class.{row['word_class']}.mean"): row["mean"] for row in summary.classes})
        metrics["neglected_words"] = float(sum(row["status"] == "neglected" for row in summary.words))
        metrics["neglected_classes"] = float(sum(row["status"] == "neglected" for row in summary.classes))
        if summary.unstable:
            from captum_diffusion.runs.summary import least_seed_agreement

            every = least_seed_agreement(run, summary.method, k=len(run.prompts))
            metrics["seed_agreement.percent_ranks_aligned"] = float(np.mean([r["percent_ranks_aligned"]
                                                                             for r in every]))
    counts, timings = run.manifest.get("counts") or {}, run.manifest.get("timings") or {}
    for key, value in (("images_generated", counts.get("images_generated")),
                       ("images_from_cache", counts.get("images_from_cache")), ("seconds", timings.get("seconds"))):
        if isinstance(value, (int, float)):
            metrics[key] = float(value)
    return {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}


@contextlib.contextmanager
def _file_store_allowed(uri: str):
    """Let MLflow 3 write a ``file:`` store (``MLFLOW_ALLOW_FILE_STORE=true``) for the duration, then restore."""
    if not uri.startswith("file:"):
        yield
        return
    before = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = before


def _log_artifacts(client, run_id: str, directory: Path) -> None:
    """The run folder under ``run/``, without :data:`SKIPPED` and hidden entries."""
    for entry in sorted(directory.iterdir()):
        if entry.name in SKIPPED or entry.name.startswith("."):
            continue
        if entry.is_dir():
            client.log_artifacts(run_id, str(entry), f"run/{entry.name}")
        else:
            client.log_artifact(run_id, str(entry), "run")


def log_run(run, uri: str | os.PathLike | None = None, *, experiment: str = EXPERIMENT,
            run_name: str | None = None) -> str:
    """Log a saved run to MLflow: settings as params, summary figures as metrics, the folder as artifacts.

    Parameters
    ----------
    run : Run or str or os.PathLike
        A loaded run, or its folder.
    uri : str or os.PathLike, optional
        Tracking URI or local folder (:func:`tracking_uri`; default ``./mlruns``).
    experiment : str, optional
        The MLflow experiment (created when missing).
    run_name : str, optional
        The MLflow run's name (default: the run folder's name).

    Returns
    -------
    str
        The MLflow run id.

    Raises
    ------
    ImportError
        When ``mlflow`` is not installed.
    """
    from captum_diffusion.runs.store import load_run
    from captum_diffusion.runs.summary import summarize

    try:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ImportError("--mlflow needs the mlflow client: pip install 'diffusion-explain[mlflow]'") from None
    run = load_run(run, images=False) if isinstance(run, (str, Path)) else run
    uri = tracking_uri(uri)
    summary = summarize(run) if any(p.status == "done" for p in run.prompts) else None
    params, metrics = run_params(run), run_metrics(run, summary)
    with _file_store_allowed(uri):
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
        run_id = client.create_run(experiment_id, run_name=run_name or Path(run.directory).name,
                                   tags={"diffusion-explain.directory": str(Path(run.directory).resolve())}).info.run_id
        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run_id, params=items[start:start + 100])
        client.log_batch(run_id, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
        _log_artifacts(client, run_id, Path(run.directory))
        client.set_terminated(run_id)
    return run_id
