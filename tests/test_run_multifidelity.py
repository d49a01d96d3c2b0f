"""shap-multifidelity in a run: the CLI runs it on ShapesWorld, its images are planned and cached by their own
settings, its cost adds up in the manifest, a resumed run spends nothing, bad flags exit 2 before anything."""
from __future__ import annotations

import json

import numpy as np
import pytest

from captum_diffusion.cli import main
from captum_diffusion.runs import RunConfig, explain_run, load_run
from captum_diffusion.runs.multifidelity import combine_seeds, parse_until, proxy_for
from captum_diffusion.runs.store import MANIFEST

LONG = "a small red circle above"     # 5 words: proxy for 2**5 sub-prompts, 4 full pairs within budget 0.6
SHORT = "blue square on left"         # 4 words: budget 0.6 cannot pay the proxy and two pairs per size -> exact
FLAGS = ["--words", "shap-multifidelity", "--budget", "0.6", "--steps", "4", "--proxy-steps", "1", "--attention", "none",
         "--quiet"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One CLI run: LONG at seeds 0 and 1, SHORT at seed 0; the proxy at 1 of 4 steps."""
    folder = tmp_path_factory.mktemp("mf")
    prompts = folder / "prompts.txt"
    prompts.write_text(f'{LONG}\n{{"prompt": "{SHORT}", "seed": 0}}\n')
    out = folder / "run"
    command = ["explain", "--prompts", str(prompts), "--seeds", "0", "1", "--out", str(out), *FLAGS]
    assert main(command) == 0
    return out, command, json.loads((out / MANIFEST).read_text())


def test_the_cli_runs_it_with_its_standard_errors(cli_run):
    out, _, manifest = cli_run
    run = load_run(out)
    long, short = run[0], run[1]
    assert long.status == short.status == "done"
    assert long.values["shap-multifidelity"].shape == (2, 5) and short.values["shap-multifidelity"].shape == (1, 4)
    errors = long.standard_errors["shap-multifidelity"]
    assert errors.shape == (5,) and np.all(np.isfinite(errors)) and np.all(errors > 0)
    assert long.error_sources["shap-multifidelity"] == "estimator"
    assert np.all(short.standard_errors["shap-multifidelity"] == 0)          # exact for its one seed
    assert short.certainty("shap-multifidelity").startswith("exact for seed 0")
    used = manifest["cost"]["prompts"]
    assert used["0"]["shap-multifidelity"]["stopped"] == ["budget spent"] * 2
    assert used["1"]["shap-multifidelity"]["stopped"][0].startswith("exact: budget 0.6 is too small for 4 words")
    assert manifest["counts"]["images_generated_while_explaining"] == 0     # everything was planned


def test_the_manifest_cost_adds_up(cli_run):
    _, _, manifest = cli_run
    cost = manifest["cost"]
    proxy_key = json.dumps({"num_inference_steps": 1})
    ratio = cost["proxy_cost"][proxy_key]["ratio"]
    assert cost["proxy_cost"][proxy_key]["source"].startswith("measured: ") and 0 < ratio < 1
    long, short = cost["prompts"]["0"]["shap-multifidelity"], cost["prompts"]["1"]["shap-multifidelity"]
    # LONG, per seed: the 2 ends and 4 pairs in full, 30 proxy sub-prompts and the proxy's reference image
    assert (long["full_images"], long["proxy_images"], long["exact_images"]) == (2 * 10, 2 * 31, 2 * 32)
    assert (short["full_images"], short["proxy_images"], short["exact_images"]) == (16, 0, 16)
    for row in (long, short):
        assert row["full_image_equivalents"] == pytest.approx(row["full_images"] + ratio * row["proxy_images"])
        assert row["fraction_of_exact"] == pytest.approx(row["full_image_equivalents"] / row["exact_images"])
    total = cost["total"]["shap-multifidelity"]
    for name in ("full_images", "proxy_images", "full_image_equivalents", "exact_images"):
        assert total[name] == pytest.approx(long[name] + short[name])
    assert total["fraction_of_exact"] == pytest.approx(total["full_image_equivalents"] / 80)
    timings = cost["timings"]
    assert timings[proxy_key]["images"] == 62 and timings["run"]["images"] == 20 + 16 - 1
    # the images counted are the images made: "" at seed 0 is one image for both prompts
    assert manifest["counts"]["images_generated"] == total["full_images"] + total["proxy_images"] - 1


def test_a_resumed_run_spends_nothing_twice(cli_run):
    out, command, manifest = cli_run
    assert main(command) == 0
    again = json.loads((out / MANIFEST).read_text())
    assert again["counts"]["images_generated"] == 0 and again["counts"]["prompts_resumed"] == 2
    assert again["cost"]["total"] == manifest["cost"]["total"]


def test_at_budget_1_it_is_exact_shap(tmp_path):
    config = RunConfig(prompts=(SHORT,), seeds=(3,), steps=4, attention="none",
                       words=("shap-exact", "shap-multifidelity"), budget=1.0)
    result = explain_run(config, tmp_path / "run", progress=False, report=False)[0]
    np.testing.assert_allclose(result.values["shap-multifidelity"], result.values["shap-exact"], rtol=0, atol=1e-12)
    manifest = json.loads((tmp_path / "run" / MANIFEST).read_text())
    assert manifest["cost"]["total"]["shap-multifidelity"]["fraction_of_exact"] == 1.0
    assert manifest["counts"]["images_generated"] == 16                   # shared with shap-exact, made once


def test_planning_records_what_does_not_depend_on_the_payoffs():
    """Without --until every image is planned; with it, the rounds chosen from the payoffs are not."""
    from captum_diffusion.runs.plan import plan_prompts

    options = dict(seeds=(0,), steps=4, proxy_steps=1, words=("shap-multifidelity",), budget=0.6)
    plan = plan_prompts([LONG], **options).prompts[0]
    proxy = [items for (seed, settings), items in plan.items_at.items()]
    assert len(plan.items[0]) == 10 and [len(p) for p in proxy] == [31]
    options["budget"] = 0.9  # 9 full pairs per seed; with --until the first round is 4 (the least: 2 per size)
    plan = plan_prompts([LONG], **options).prompts[0]
    adaptive = plan_prompts([LONG], until="top-1", **options).prompts[0]
    assert len(plan.items[0]) == 2 + 2 * 9 and len(adaptive.items[0]) == 2 + 2 * 4
    assert set(adaptive.items[0]) < set(plan.items[0])
    assert [len(p) for p in adaptive.items_at.values()] == [31]
    # 6 words at 0.25: the proxy (62 images at 1/4) leaves too little for two full pairs per size, so the full
    # game is sampled alone: 16 of its 64 sub-prompts, no proxy image
    cheap = plan_prompts(["a small red circle above squares"], **(options | {"budget": 0.25})).prompts[0]
    assert len(cheap.items[0]) == 16 and sum(len(p) for p in cheap.items_at.values()) == 0


@pytest.mark.parametrize("arguments, message", [
    (["--budget", "0"], "budget (--budget) must lie in (0.0, 1.0]"),
    (["--budget", "1.5"], "budget (--budget) must lie in (0.0, 1.0]"),
    (["--until", "top3"], "until (--until) must be 'top-K'"),
    (["--proxy-steps", "0"], "proxy_steps (--proxy-steps) must be a positive int"),
    (["--proxy-steps", "4"], "proxy_steps (--proxy-steps) must be below steps"),
    (["--proxy-cost", "2"], "proxy_cost (--proxy-cost) must lie in (0.0, 1.0]"),
])
def test_bad_flags_exit_2_before_anything_is_written(tmp_path, capsys, arguments, message):
    out = tmp_path / "out"
    assert main(["explain", LONG, "--out", str(out), *FLAGS, *arguments]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_its_flags_without_the_method_are_refused(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", LONG, "--out", str(out), "--words", "lime", "--budget", "0.5", "--quiet"]) == 2
    assert "--budget set shap-multifidelity, which this run does not use" in capsys.readouterr().err
    assert not out.exists()


def test_auto_picks_it_below_a_budget_of_1():
    assert RunConfig(prompts=(LONG,), budget=0.5).methods_for(5) == ("shap-multifidelity",)
    assert RunConfig(prompts=(LONG,), budget=1.0).methods_for(5) == ("shap-exact",)
    assert RunConfig(prompts=(LONG,)).methods_for(5) == ("shap-exact",)
    assert RunConfig(prompts=(LONG,), budget=0.5).methods_for(17) == ("shap-permutation",)


def test_proxy_settings_and_their_estimated_cost():
    from captum_diffusion.generation.settings import GenerationSettings

    run = GenerationSettings(num_inference_steps=20, height=64, width=64)
    # no proxy unless asked for (benchmarks/cost.md: few-step proxies did not pay on ShapesWorld)
    assert proxy_for(RunConfig(prompts=(LONG,), words=("shap-multifidelity",)), run)[:2] == (None, 0.0)
    config = RunConfig(prompts=(LONG,), words=("shap-multifidelity",), proxy_steps=5, proxy_size=32)
    settings, cost, source = proxy_for(config, run)
    assert settings == GenerationSettings(num_inference_steps=5, height=32, width=32)
    assert cost == pytest.approx(5 / 20 * 0.25) and source.startswith("estimate: 5/20 steps x 32x32/64x64")
    only_size = RunConfig(prompts=(LONG,), words=("shap-multifidelity",), proxy_size=32)
    assert proxy_for(only_size, run)[:2] == (GenerationSettings(height=32, width=32), pytest.approx(0.25))
    assert proxy_for(RunConfig(prompts=(LONG,), words=("shap-multifidelity",), proxy_steps=5, proxy_cost=0.3),
                     run)[1:] == (0.3, "--proxy-cost")
    with pytest.raises(ValueError, match="pass --steps or --proxy-cost"):
        proxy_for(config, GenerationSettings())
    assert parse_until("top-3") == 3 and parse_until(None) is None


def test_combined_standard_errors_over_seeds():
    from captum_diffusion.runs.methods import SeedEstimate

    a = SeedEstimate(np.array([1.0, 0.0]), 0.0, np.array([0.3, 0.4]), np.inf)
    b = SeedEstimate(np.array([3.0, 0.0]), 0.0, np.array([0.4, 0.3]), np.inf)
    errors, df, source = combine_seeds([a, b])
    # sampling: (0.09 + 0.16) / 4 each; between seeds: var([1, 3]) / 2 = 1 and 0
    np.testing.assert_allclose(errors, np.sqrt([0.0625 + 1.0, 0.0625]))
    assert source == "estimator" and df[1] == np.inf and 1 < df[0] < np.inf
    one, df_one, source_one = combine_seeds([a])
    np.testing.assert_allclose(one, [0.3, 0.4])
    assert source_one == "estimator"
    exact = [SeedEstimate(np.array([1.0, 2.0]), 0.0, np.zeros(2), np.inf, exact=True),
             SeedEstimate(np.array([2.0, 2.0]), 0.0, np.zeros(2), np.inf, exact=True)]
    errors, df, source = combine_seeds(exact)
    np.testing.assert_allclose(errors, [0.5, 0.0])
    assert source == "seeds" and list(df) == [1.0, 1.0]
