"""--mlflow: a ShapesWorld run logged to a real local MLflow store (settings, summary figures, the run folder)."""
from __future__ import annotations

import os

import pytest

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed here (pip install 'diffusion-explain[mlflow]'); "
                                              "the --mlflow test needs the real client")

from captum_diffusion.runs import RunConfig, explain_run, load_run  # noqa: E402
from captum_diffusion.runs.summary import summarize  # noqa: E402
from captum_diffusion.runs.tracking import EXPERIMENT, check_tracking, log_run, tracking_uri  # noqa: E402


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mlflow") / "gan"
    explain_run(RunConfig(prompts=("a red circle", "a blue square"), model="shapes-world-gan", seeds=(0, 1)), out,
                command=["test"], progress=False, report=False)
    return load_run(out, images=False)


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # reading the file store back (MLflow 3 refuses it otherwise)
    return MlflowClient(tracking_uri=uri)


def test_a_run_is_logged_to_a_local_file_store(gan_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    run_id = log_run(gan_run)  # default: ./mlruns
    assert (tmp_path / "mlruns").is_dir() and "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # restored
    client = _client(tracking_uri(None))
    logged = client.get_run(run_id)
    assert client.get_experiment(logged.info.experiment_id).name == EXPERIMENT
    params, metrics = logged.data.params, logged.data.metrics
    assert params["model"] == "shapes-world-gan" and params["seeds"] == "0 1" and params["n_prompts"] == "2"
    summary = summarize(gan_run)
    colour = next(row for row in summary.classes if row["word_class"] == "colour")
    assert metrics["class.colour.mean"] == pytest.approx(colour["mean"])
    assert metrics["word.red.mean"] == pytest.approx(next(r["mean"] for r in summary.words if r["word"] == "red"))
    assert metrics["prompts_done"] == 2 and 0 <= metrics["seed_agreement.percent_ranks_aligned"] <= 100
    files = {f.path for f in client.list_artifacts(run_id, "run")}
    assert {"run/manifest.json", "run/prompts"} <= files
    assert not {"run/cache", "run/.lock"} & files  # the image cache and the lock file are left out
    inner = {f.path for f in client.list_artifacts(run_id, "run/prompts/000")}
    assert "run/prompts/000/result.json" in inner and "run/prompts/000/image-seed-0.png" in inner
    assert logged.info.status == "FINISHED"


def test_tracking_uris_and_bad_input(tmp_path, monkeypatch):
    assert tracking_uri(tmp_path / "store") == (tmp_path / "store").resolve().as_uri()
    assert tracking_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"
    assert tracking_uri("http://localhost:5000") == "http://localhost:5000"
    with pytest.raises(ValueError, match="--mlflow"):
        tracking_uri("  ")
    assert check_tracking(tmp_path) == tmp_path.resolve().as_uri()
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ImportError, match=r"--mlflow.*diffusion-explain\[mlflow\]"):
        check_tracking(tmp_path)


def test_explain_logs_with_the_mlflow_option(tmp_path, monkeypatch):
    from captum_diffusion.cli import main

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert main(["explain", "a red circle", "--model", "shapes-world-gan", "--out", str(out), "--mlflow"]) == 0
    client = _client(tracking_uri(None))  # the default ./mlruns
    [experiment] = [e for e in client.search_experiments() if e.name == EXPERIMENT]
    [logged] = client.search_runs([experiment.experiment_id])
    assert logged.data.params["model"] == "shapes-world-gan" and logged.data.metrics["prompts_done"] == 1
    assert logged.data.tags["diffusion-explain.directory"] == str(out.resolve())
    store = tmp_path / "elsewhere"
    assert main(["explain", "a red circle", "--model", "shapes-world-gan", "--out", str(out), "--mlflow",
                 store.as_uri()]) == 0  # resumed: nothing generated, logged again to the given store
    other = _client(store.as_uri())
    [again] = other.search_runs([other.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert again.data.params["n_prompts"] == "1" and again.info.run_id != logged.info.run_id


def test_explain_refuses_mlflow_without_the_client_before_generating(tmp_path, monkeypatch, capsys):
    import importlib.util

    from captum_diffusion.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    out = tmp_path / "run"
    assert main(["explain", "a red circle", "--model", "shapes-world-gan", "--out", str(out), "--mlflow"]) == 2
    assert "--mlflow needs the mlflow client" in capsys.readouterr().err and not out.exists()
