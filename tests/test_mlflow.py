"""--mlflow: a ShapesWorld run logged to a real local MLflow store (settings, summary figures, the run folder)."""
from __future__ import annotations

import os

import pytest

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed here (pip install 'diffusion-explain[mlflow]'); "
                                              "the --mlflow test needs the real client")

from captum_diffusion.runs import RunConfig, explain_run, load_run  # noqa: E402
from captum_diffusion.runs.summary import summarize  # noqa: E402
from captum_diffusion.runs.tracking import EXPERIMENT, log_run, tracking_uri  # noqa: E402


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


def test_tracking_uris_and_bad_input(tmp_path):
    assert tracking_uri(tmp_path / "store") == (tmp_path / "store").resolve().as_uri()
    assert tracking_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"
    assert tracking_uri("http://localhost:5000") == "http://localhost:5000"
    with pytest.raises(ValueError, match="--mlflow"):
        tracking_uri("  ")
