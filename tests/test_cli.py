"""diffusion-explain: saved runs reload exactly, resume after kill -9, and bad input exits 2 leaving nothing."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from captum_diffusion.cli import main
from captum_diffusion.runs import RunConfig, explain_run, load_run
from captum_diffusion.runs.store import MANIFEST

PROMPT = "a red circle"
METHODS = ("shap-exact", "lime", "captum-feature_ablation")
SETTINGS = dict(seeds=(0, 1), words=(*METHODS, "interactions"), lime_samples=20, faithfulness=True)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One small ShapesWorld run: 1 prompt, 2 seeds, three methods, DAAM maps, SLIC segment table, word pairs and
    the deletion curve in the report."""
    out = tmp_path_factory.mktemp("run") / "run"
    config = RunConfig(prompts=(PROMPT,), segments="slic", **SETTINGS)
    return explain_run(config, out, command=["test"], progress=False), out


def test_saved_run_reloads_equal(saved):
    run, out = saved
    again = load_run(out)
    assert len(again) == 1 and again[0].status == "done"
    first, second = run[0], again[0]
    assert second.words == ["a", "red", "circle"] and second.seeds == [0, 1]
    assert second.methods == list(METHODS)
    for method in METHODS:
        np.testing.assert_array_equal(first.values[method], second.values[method])
        for seed in (None, 0, 1):
            a, b = first.explanation(method, seed), second.explanation(method, seed)
            np.testing.assert_array_equal(a.values, b.values)
            assert a.base_values == b.base_values and list(a.feature_names) == list(b.feature_names)
            assert list(a.data) == list(b.data)
    np.testing.assert_array_equal(first.attention, second.attention)
    assert second.attention.shape == (2, 3, 64, 64) and second.attention_labels == ["a", "red", "circle"]
    for s in range(2):
        np.testing.assert_array_equal(first.segments[s], second.segments[s])
        np.testing.assert_array_equal(first.segment_tables[s], second.segment_tables[s])
        assert np.array_equal(np.asarray(first.images[s]), np.asarray(second.images[s]))
    masks = [entry.mask for entry in second.subprompts[0]]
    assert masks == sorted(masks) and len(masks) == 8 and masks[0] == "000" and masks[-1] == "111"


def test_saved_values_are_the_in_memory_explanations(saved):
    """What the run saved is what the Python API computes on the same model, seed and settings."""
    import shap_adapters
    from captum_diffusion.attention import DAAM
    from captum_diffusion.generation import TextToImage
    from captum_diffusion.scoring import PromptScore
    from captum_diffusion.shapes_world import DEFAULT_GENERATION, load_shapes_world

    run, _ = saved
    pipe, scorer = load_shapes_world()
    for row, seed in enumerate((0, 1)):
        generator = TextToImage(pipe, seed=seed, progress=False, **DEFAULT_GENERATION.pipeline_kwargs())
        f = PromptScore(generator, scorer, PROMPT)
        explanation = shap_adapters.explain_prompt(PROMPT, f, algorithm="exact", progress=False)
        np.testing.assert_array_equal(run[0].values["shap-exact"][row], explanation.values)
        assert run[0].base_values["shap-exact"][row] == explanation.base_values == f([""])[0]
        np.testing.assert_allclose(explanation.values.sum() + explanation.base_values, 1.0, atol=1e-6)  # efficiency
        maps = DAAM(pipe).explain(PROMPT, progress=False, **generator.pipeline_kwargs(1))
        np.testing.assert_array_equal(run[0].attention[row], maps.heatmaps[0].numpy())
        traced, stored = np.asarray(maps.images[0], dtype=int), np.asarray(run[0].images[row], dtype=int)
        assert np.abs(traced - stored).max() <= 1      # the same generation (alone vs in a batch of 8: rounding)
    manifest = run.manifest
    assert manifest["versions"]["torch"] and manifest["model"]["scheduler"]["class"]
    assert manifest["prompts"][0]["status"] == "done" and manifest["command"] == ["test"]
    assert manifest["counts"]["images_generated"] == 16        # 2**3 sub-prompts x 2 seeds, each once


def test_report_pairs_and_deletion_curve_read_the_saved_subprompts(saved):
    """--words interactions / --faithfulness: exact k-SII pairs and the deletion curve of the seed-averaged game,
    read from the saved sub-prompt payoffs (the run generated only exact SHAP's 16 images: see above)."""
    import re

    from captum_diffusion.metrics import deletion_curve
    from captum_diffusion.runs import render
    from captum_diffusion.words import explain_interactions

    run = load_run(saved[1])
    result = run[0]
    game = render.played_game(result)
    assert game.n_calls == 0
    full = np.mean([[e.payoff for e in seed if e.prompt == PROMPT][0] for seed in result.subprompts])
    base = result.base_values["shap-exact"].mean()
    values = explain_interactions(result.words, game, "k-SII", order=2)
    singles = [values[(i,)] for i in range(3)]
    pairs = {key: values[key] for key in [(0, 1), (0, 2), (1, 2)]}
    np.testing.assert_allclose(sum(singles) + sum(pairs.values()), full - base, atol=1e-12)  # k-SII efficiency
    # the pair of words 1 and 2 in closed form (3 players): k-SII = SII for the pairs of the top order
    v = lambda *kept: game.value([i in kept for i in range(3)])  # noqa: E731
    sii_12 = 0.5 * (v(1, 2) - v(1) - v(2) + v()) + 0.5 * (v(0, 1, 2) - v(0, 1) - v(0, 2) + v(0))
    np.testing.assert_allclose(pairs[(1, 2)], sii_12, atol=1e-12)
    page = render.render(run)
    table = page.split('<table class="values interactions">')[1].split("</table>")[0]
    shown = re.findall(r'<tr><th>([^<]+)</th><th>([^<]+)</th><td class="num"[^>]*>([-0-9.]+)</td></tr>', table)
    labels = ["a", "red", "circle"]
    ranked = sorted(pairs, key=lambda key: -abs(pairs[key]))
    assert [(a, b, float(x)) for a, b, x in shown] == [(labels[i], labels[j], round(pairs[i, j], 3)) for i, j in ranked]
    curve = deletion_curve(game, None, result.values["shap-exact"].mean(0))
    np.testing.assert_allclose([curve[0], curve[-1]], [full, base], atol=1e-12)
    assert "Deletion curve of shap-exact" in page and 'alt="deletion curve"' in page


def test_interactions_and_faithfulness_run_exact_shap_when_they_can():
    config = RunConfig(prompts=(PROMPT,), words=("lime", "interactions"))
    assert config.methods_for(3) == ("shap-exact", "lime")
    assert RunConfig(prompts=(PROMPT,), words=("interactions",)).methods_for(12) == ("shap-exact",)
    assert RunConfig(prompts=(PROMPT,), faithfulness=True, words=("lime",)).methods_for(13) == ("lime",)
    assert RunConfig(prompts=(PROMPT,), words=("lime",)).methods_for(3) == ("lime",)
    with pytest.raises(TypeError, match="faithfulness must be a bool"):
        RunConfig(prompts=(PROMPT,), faithfulness="yes")


def test_default_methods_follow_the_measured_auto_rule():
    """Exact SHAP up to 12 words, permutation above: shap_adapters' auto rule (benchmarks/estimators.py)."""
    from captum_diffusion.runs.config import DEFAULT_EXACT_WORDS
    from shap_adapters.text import AUTO_EXACT_WORDS, resolve_algorithm

    config = RunConfig(prompts=(PROMPT,))
    assert DEFAULT_EXACT_WORDS == AUTO_EXACT_WORDS == 12
    for n_words in (1, 11, 12, 13, 20):
        assert config.methods_for(n_words) == (f"shap-{resolve_algorithm('auto', n_words)}",)
    assert config.methods_for(12) == ("shap-exact",) and config.methods_for(13) == ("shap-permutation",)


def test_rerun_resumes_without_generating(saved, capsys):
    _, out = saved
    config = RunConfig(prompts=(PROMPT,), segments="slic", **SETTINGS)
    again = explain_run(config, out, progress=False, report=False)
    assert again.manifest["counts"]["images_generated"] == 0 and again.manifest["counts"]["prompts_resumed"] == 1
    assert len(again.manifest["history"]) == 1
    assert main(["show", str(out)]) == 0
    table = capsys.readouterr().out
    assert "a red circle" in table and "shap-exact" in table and "red (+" in table


def test_run_saved_before_a_setting_existed_still_resumes(saved, tmp_path):
    """A manifest written before a setting was added (here ``faithfulness``) resumes when the run uses its default."""
    _, out = saved
    copy = tmp_path / "older"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    del manifest["config"]["faithfulness"]
    (copy / MANIFEST).write_text(json.dumps(manifest))
    settings = {**SETTINGS, "faithfulness": False}  # the default, which the older manifest implies
    again = explain_run(RunConfig(prompts=(PROMPT,), segments="slic", **settings), copy, progress=False, report=False)
    assert again.manifest["counts"]["images_generated"] == 0 and again.manifest["counts"]["prompts_resumed"] == 1
    with pytest.raises(ValueError, match="other settings"):
        explain_run(RunConfig(prompts=(PROMPT,), segments="slic", **SETTINGS), copy, progress=False, report=False)


def test_other_settings_in_the_same_folder_are_refused(saved, capsys):
    _, out = saved
    before = sorted(p.name for p in out.iterdir())
    assert main(["explain", PROMPT, "--seeds", "3", "--out", str(out), "--quiet"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.parametrize("arguments, message", [
    (["--model", "/no/such/folder"], "no diffusers pipeline folder"),
    (["--words", "shap-magic"], "words (a word-attribution method) must be one of"),
    (["--seeds", "-1"], "seeds must be a non-negative int"),
    (["--segments", "watershed"], "segments must be one of"),
    (["--size", "0"], "size must be a positive int"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, arguments, message):
    out = tmp_path / "out"
    assert main(["explain", PROMPT, "--out", str(out), "--quiet", *arguments]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_bad_files_name_the_line_and_key(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text('a red circle\n{"prompt": "a blue square", "seed": 1}\n{"prompt": 3}\n')
    assert main(["explain", "--prompts", str(prompts), "--out", str(tmp_path / "o")]) == 2
    assert f"{prompts}:3:" in capsys.readouterr().err
    config = tmp_path / "run.toml"
    config.write_text('seeds = [0, 1]\nguidanse = 5\n')
    assert main(["explain", PROMPT, "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    assert "unknown key(s) ['guidanse']" in capsys.readouterr().err
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder")
    assert main(["explain", PROMPT, "--out", str(a_file / "run")]) == 2
    assert "cannot be written" in capsys.readouterr().err
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):                     # root can write anywhere: then only the file case
            assert main(["explain", PROMPT, "--out", str(locked / "run")]) == 2
            assert "cannot be written" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)
    assert not (tmp_path / "o").exists()


def test_config_file_and_flags_merge(tmp_path):
    from captum_diffusion.cli import build_parser, config_from_args

    config = tmp_path / "run.toml"
    config.write_text('prompts = ["a blue square", {prompt = "a red circle", seeds = [2]}]\nseeds = [0, 1]\n'
                      'words = ["lime"]\nsteps = 7\nout = "elsewhere"\n')
    args = build_parser().parse_args(["explain", "a green triangle", "--config", str(config), "--steps", "9"])
    run_config, out = config_from_args(args)
    assert [p.prompt for p in run_config.prompts] == ["a green triangle", "a blue square", "a red circle"]
    assert run_config.steps == 9 and run_config.seeds == (0, 1) and run_config.words == ("lime",)
    assert run_config.seeds_for(run_config.prompts[2]) == (2,) and out == "elsewhere"
    assert RunConfig.from_settings(run_config.settings()) == run_config and not run_config.faithfulness
    config.write_text('words = ["lime", "interactions"]\nfaithfulness = true\n')
    args = build_parser().parse_args(["explain", "a green triangle", "--config", str(config)])
    run_config, _ = config_from_args(args)  # --faithfulness absent: the file's true stays
    assert run_config.words == ("lime", "interactions") and run_config.faithfulness is True
    args = build_parser().parse_args(["explain", "a green triangle", "--words", "interactions", "--faithfulness"])
    run_config, _ = config_from_args(args)
    assert run_config.words == ("interactions",) and run_config.faithfulness is True
    assert run_config.methods_for(3) == ("shap-exact",)
    assert RunConfig.from_settings(run_config.settings()) == run_config


def test_killed_run_resumes_to_the_same_results(tmp_path):
    """kill -9 half way through, rerun: no image generated twice, results equal to an uninterrupted run."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\na green triangle\n")
    common = ["--prompts", str(prompts), "--attention", "none", "--quiet"]
    command = [sys.executable, "-m", "captum_diffusion", "explain", *common]
    killed = tmp_path / "killed"
    process = subprocess.Popen([*command, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (killed / "prompts" / "000" / "result.json").exists() and time.time() < deadline:
        time.sleep(0.2)
        assert process.poll() is None, process.stderr.read().decode()
    time.sleep(1.0)                                            # somewhere inside the second prompt
    process.send_signal(signal.SIGKILL)
    process.wait()
    on_disk = len(list((killed / "cache").rglob("*.png")))
    unique = 20                              # 3 prompts x 2**3 sub-prompts, "" and "a" shared by all three
    assert 8 <= on_disk < unique and not (killed / "prompts" / "002" / "result.json").exists()
    subprocess.run([*command, "--out", str(killed)], check=True, capture_output=True)
    fresh = tmp_path / "fresh"
    quiet = subprocess.run([*command, "--out", str(fresh)], check=True, capture_output=True, text=True)
    assert quiet.stdout == f"{fresh / 'report.html'}\n"       # --quiet: the report's path alone
    assert quiet.stderr == ""                                  # no bars, no loading messages, no warnings
    resumed, reference = load_run(killed), load_run(fresh)
    generated = resumed.manifest["counts"]["images_generated"]
    assert generated + on_disk == reference.manifest["counts"]["images_generated"] == unique
    assert len(list((killed / "cache").rglob("*.png"))) == unique
    for a, b in zip(resumed.prompts, reference.prompts):
        np.testing.assert_array_equal(a.values["shap-exact"], b.values["shap-exact"])
        assert a.base_values["shap-exact"] == b.base_values["shap-exact"]
    assert json.loads((killed / "manifest.json").read_text())["prompts"][2]["status"] == "done"


def test_module_entry_point_prints_help():
    out = subprocess.run([sys.executable, "-m", "captum_diffusion", "explain", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--seeds" in out and "shap-exact" in out and "open_clip:NAME" in out


def test_report_of_a_saved_run_in_chromium(saved):
    """The CLI's report.html of a real ShapesWorld run, opened from disk in headless Chromium."""
    from test_report_browser import browser_available, chromium, css_rgba, full_page_screenshot, open_in_browser

    if not browser_available():
        pytest.skip("chromium and/or chromedriver are not installed (apt-get install chromium chromium-driver)")
    import io

    import PIL.Image

    _, out = saved
    assert main(["report", str(out)]) == 0
    with chromium() as driver:
        logs = open_in_browser(driver, out / "report.html")
        assert [entry for entry in logs if entry["level"] == "SEVERE"] == []
        widths = driver.execute_script("return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        # 2 seeds, deletion curve, 8 sub-prompts, maps, segments (the bars and the waterfall are HTML)
        assert len(widths) == 13 and min(widths) > 0
        errors = driver.find_elements("css selector", "section#prompt-0 .bars .err")
        assert len(errors) == 3 * len(METHODS)  # 2 seeds: between-seed 95% error bars for every method and word
        pairs = driver.find_elements("css selector", "section#prompt-0 table.interactions tbody tr")
        assert len(pairs) == 3  # every pair of the 3 words
        words = driver.find_elements("css selector", "section#prompt-0 .shap-words")[0]
        assert words.get_attribute("innerText").strip() == PROMPT
        spans = driver.find_elements("css selector", "section#prompt-0 .shap-words .shap-word")
        for span in spans:
            r, g, b, a = css_rgba(span.value_of_css_property("background-color"))
            value = float(span.get_attribute("data-value"))
            assert a > 0 and (r, g, b) != (0, 0, 0)
            assert (r > b) if value > 0 else (b > r)
        shot = np.asarray(PIL.Image.open(io.BytesIO(full_page_screenshot(driver))).convert("RGB"))
        assert shot.std() > 20


def test_max_sequence_length_sets_the_t5_limit_of_a_run(tmp_path, capsys):
    """--max-sequence-length reaches generation and the token check of a T5 pipeline (a prompt over it is refused
    before anything is written, naming the whole prompt); a pipeline without T5 refuses it before writing too."""
    from captum_diffusion.testing import tiny_clip, tiny_pixart

    tiny_pixart().save_pretrained(tmp_path / "pixart")
    clip, processor = tiny_clip()
    clip.save_pretrained(tmp_path / "clip")
    processor.save_pretrained(tmp_path / "clip")
    short, long = "a red circle", "a red circle and a blue square"  # 4 and 9 T5 tokens with the end token
    out = tmp_path / "run"
    pixart = ["--model", str(tmp_path / "pixart"), "--clip", str(tmp_path / "clip"), "--max-sequence-length", "6",
              "--attention", "none", "--steps", "2", "--size", "32", "--out", str(out), "--quiet"]
    capsys.readouterr()
    assert main(["explain", short, long, *pixart]) == 2 and not out.exists()
    error = capsys.readouterr().err
    assert f"prompt {long!r} is 9 tokens long" in error and "at most 6 (max_sequence_length)" in error
    assert main(["explain", short, *pixart]) == 0
    assert json.loads((out / MANIFEST).read_text())["config"]["max_sequence_length"] == 6
    assert load_run(out)[0].values["shap-exact"].shape == (1, 3)
    unet_out = tmp_path / "unet"
    assert main(["explain", short, "--max-sequence-length", "20", "--out", str(unet_out), "--quiet"]) == 2
    assert "has no T5 encoder" in capsys.readouterr().err and not unet_out.exists()


def test_every_run_option_is_a_cli_flag_with_its_help():
    """The CLI's explain options are RunConfig's fields (same names, help from the field): they cannot drift."""
    import dataclasses

    from captum_diffusion.cli import build_parser, config_from_args, config_options

    fields = [f for f in dataclasses.fields(RunConfig) if f.name != "prompts"]
    flags = dict(config_options())
    assert list(flags) == ["--" + f.name.replace("_", "-") for f in fields]
    assert all(flags["--" + f.name.replace("_", "-")]["help"] == f.metadata["help"] for f in fields)
    args = build_parser().parse_args(["explain", "a red circle", "--size", "32x48", "--seeds", "1", "2",
                                      "--guidance", "2.5", "--faithfulness", "--dtype", "float16"])
    config, _ = config_from_args(args)
    assert config.size == (32, 48) and config.seeds == (1, 2) and config.guidance == 2.5 and config.faithfulness
    assert config.dtype == "float16" and config.batch_size == 8          # an option not given keeps its default
    with pytest.raises(SystemExit):
        build_parser().parse_args(["explain", "a red circle", "--size", "big"])


def test_prompt_entries_read_the_same_from_files_and_tables(tmp_path):
    from captum_diffusion.runs.config import PromptSpec, read_prompt_file

    entry = {"prompt": "a red circle", "seed": [2, 1], "words": ["red"]}
    spec = PromptSpec.from_mapping(entry)
    assert spec == PromptSpec("a red circle", (2, 1), ("red",)) and PromptSpec.from_mapping(spec) is spec
    assert PromptSpec.from_mapping({"prompt": "a b", "seeds": 3}).seeds == (3,)
    assert PromptSpec.from_mapping("a b") == PromptSpec("a b")
    path = tmp_path / "prompts.txt"
    path.write_text(json.dumps(entry) + "\n# a comment\na b\n")
    assert read_prompt_file(path) == [spec, PromptSpec("a b")]
    for bad, message in [({"prompt": "a", "colour": 1}, "got \\['colour', 'prompt'\\]"), ({"seed": 1}, "'prompt'"),
                         (3, "strings or tables")]:
        with pytest.raises(ValueError, match=message):
            PromptSpec.from_mapping(bad)


def test_the_cache_command_moved_beside_the_cli(tmp_path):
    from captum_diffusion import cli_cache
    from captum_diffusion.generation import cache

    with pytest.warns(DeprecationWarning, match="moved to captum_diffusion.cli_cache"):
        assert cache.cache_command is cli_cache.cache_command
    (tmp_path / "cache").mkdir()
    assert cli_cache.cache_folder(tmp_path) == tmp_path / "cache"
