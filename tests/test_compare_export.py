"""diffusion-explain compare and export: the ShapesWorld UNet against the ShapesWorld GAN on the same short prompts,
and a run's long table read back exactly."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from captum_diffusion.metrics.ranking import normalize_scores, percent_ranks_aligned, rmse
from captum_diffusion.runs import RunConfig, explain_run, load_run
from captum_diffusion.runs.compare import compare_runs, write_comparison
from captum_diffusion.runs.export import COLUMNS, export_run, read_table, run_table

SHARED = ("a red circle", "a blue square", "a green triangle")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The UNet on :data:`SHARED` at seed 0 (4 denoising steps: 20 images, kept cheap), and the GAN on them plus one
    more prompt at seeds 0 and 1."""
    root = tmp_path_factory.mktemp("compare")
    explain_run(RunConfig(prompts=SHARED, seeds=(0,), steps=4), root / "unet", command=["test"], progress=False,
                report=False)
    explain_run(RunConfig(prompts=(*SHARED, "a yellow square"), model="shapes-world-gan", seeds=(0, 1)),
                root / "gan", command=["test"], progress=False, report=False)
    return load_run(root / "unet", images=False), load_run(root / "gan", images=False)


def test_unet_against_gan_on_shared_prompts_and_seeds(runs, tmp_path):
    unet, gan = runs
    comparison = compare_runs(unet, gan)
    assert [p.prompt for p in comparison.prompts] == list(SHARED)
    assert comparison.only_a == [] and comparison.only_b == ["a yellow square"]
    assert comparison.seeds_left_out == [{"prompt": p, "only_a": [], "only_b": [1]} for p in SHARED]
    assert comparison.method == "shap-exact" and not comparison.forced
    for entry, a, b in zip(comparison.prompts, unet.prompts, gan.prompts):
        assert entry.seeds == [0]
        np.testing.assert_array_equal(entry.values_a, a.values["shap-exact"][0])
        np.testing.assert_array_equal(entry.values_b, b.values["shap-exact"][0])  # seed 0 only: seed 1 left out
        assert entry.percent_ranks_aligned == 100 * percent_ranks_aligned(entry.values_a, entry.values_b)
        assert entry.rmse == pytest.approx(rmse(entry.values_a, normalize_scores(entry.values_b)))
        changes = np.abs(np.subtract(entry.values_b, entry.values_a))
        assert abs(entry.moved[0]["change"]) == pytest.approx(changes.max())
    overall = comparison.overall
    assert overall["n_prompts"] == 3
    assert overall["percent_ranks_aligned"]["mean"] == pytest.approx(
        np.mean([p.percent_ranks_aligned for p in comparison.prompts]))
    assert {row["word"] for row in overall["moved"]} == {"a", "red", "circle", "blue", "square", "green", "triangle"}

    page = write_comparison(comparison, tmp_path / "cmp")
    text = page.read_text()
    assert page.name == "compare.html" and text.count('src="data:image/png;base64,') == 6  # 3 prompts x 2 runs
    assert "shapes-world-gan" in text and "a yellow square" in text and "<script>" in text
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="--out .*is a file"):
        write_comparison(comparison, tmp_path / "file")
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["overall"]["n_prompts"] == 3 and data["only_b"] == ["a yellow square"]


def test_different_payoffs_are_refused_unless_forced(runs, tmp_path):
    unet, gan = runs
    other = tmp_path / "other"
    shutil.copytree(gan.directory, other, ignore=shutil.ignore_patterns("cache"))
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["scorer"]["text_template"] = "a photo of {}"
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="different payoffs.*--force"):
        compare_runs(unet, other)
    assert compare_runs(unet, other, force=True).forced
    with pytest.raises(ValueError, match="method"):
        compare_runs(unet, gan, method="lime")
    with pytest.raises(ValueError, match="holds no saved run"):
        compare_runs(unet, tmp_path / "nothing")


def test_export_round_trips_exactly(runs, tmp_path):
    pytest.importorskip("pyarrow", reason="pyarrow is not installed: pip install 'diffusion-explain[parquet]'")
    unet, gan = runs
    table = gan.to_pandas()
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == 4 * 2 * 3  # prompts x seeds x words (one method)
    for fmt in ("parquet", "csv"):
        path = export_run(gan.directory, tmp_path / f"values.{fmt}")
        back = read_table(path)
        pd.testing.assert_frame_equal(back, table, check_exact=True)
    loaded = load_run(gan.directory, images=False)
    for result in loaded.prompts:
        for row, seed in enumerate(result.seeds):
            rows = table[(table.prompt_index == result.number) & (table.seed == seed)].sort_values("position")
            assert rows.value.tolist() == result.values["shap-exact"][row].tolist()  # exactly, no tolerance
            assert rows.standard_error.tolist() == result.standard_errors["shap-exact"].tolist()
            assert set(rows.base_value) == {result.base_values["shap-exact"][row]}
            assert rows.label.tolist() == result.labels and rows.word.tolist() == result.words


def test_export_defaults_and_bad_input(runs, tmp_path):
    unet, _ = runs
    assert export_run(unet, format="csv") == unet.directory / "values.csv"
    assert len(read_table(unet.directory / "values.csv")) == 3 * 3 and run_table(unet).seed.unique().tolist() == [0]
    with pytest.raises(ValueError, match="--format"):
        export_run(unet, tmp_path / "values.xlsx")
    with pytest.raises(ValueError, match="--format must be one of"):
        export_run(unet, format="xlsx")


def test_compare_and_export_commands(runs, tmp_path, capsys):
    from captum_diffusion.cli import main

    unet, gan = runs
    assert main(["compare", str(unet.directory), str(gan.directory), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "3 shared prompt(s)" in out and "1 only in B" in out and (tmp_path / "cmp" / "compare.html").is_file()
    assert main(["export", str(gan.directory), "--format", "csv", "--out", str(tmp_path / "t.csv")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "t.csv")
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.csv"), gan.to_pandas(), check_exact=True)
    assert main(["export", str(gan.directory), "--out", str(tmp_path / "t.xlsx")]) == 2
    assert "--format" in capsys.readouterr().err
    assert main(["compare", str(unet.directory), str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "holds no saved run" in capsys.readouterr().err
