"""Every refusal before the first image: exit 2, one line naming the option, nothing generated, nothing written;
the lock on --out between two processes; a full disk; small CLI and prompt-file rules."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from captum_diffusion.cli import main

PROMPT = "a red circle"
FORTY_WORDS = " ".join(f"w{i}" for i in range(40))
LONG_PROMPT = " ".join(["red circle"] * 50)            # 102 CLIP tokens


@pytest.mark.parametrize("prompt, arguments, message", [
    (PROMPT, ["--seeds", str(2**32)], "below 2**32"),
    (FORTY_WORDS, ["--words", "shap-exact"], "limited to 12 words"),
    (PROMPT, ["--segments", "sam:/no/such/sam.pth"], "SAM checkpoint '/no/such/sam.pth' is not a file"),
    (PROMPT, ["--segments", "daam-kmeans", "--attention", "none"], "needs --attention daam"),
    (PROMPT, ["--words", "lime", "--lime-samples", "3"], "at least d + 1 = 4"),
    (PROMPT, ["--words", "shap-permutation", "--max-evals", "6"], "at least 2*d + 1 = 7"),
    (PROMPT, ["--steps", "1000000000"], "steps must be at most 1000"),
    (PROMPT, ["--resume", "--force"], "--resume and --force contradict"),
    (PROMPT, ["--resume"], "holds no run to resume"),
    (LONG_PROMPT, ["--words", "shap-permutation"], "is 102 tokens long"),     # needs the model: loaded, then refused
    (PROMPT, ["--size", "100"], "multiple of 8"),                             # likewise
])
def test_refused_before_anything_is_written(tmp_path, capsys, prompt, arguments, message):
    out = tmp_path / "out"
    assert main(["explain", prompt, "--out", str(out), "--quiet", *arguments]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1, error
    assert not out.exists()                                   # no folder: no manifest, no cache, no image


def test_config_errors_come_at_once(tmp_path):
    """A mistake that needs no model is reported in well under the 2 s goal (no heavy import first)."""
    tick = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "captum_diffusion", "explain", PROMPT, "--words", "shap-magic",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True)
    seconds = time.perf_counter() - tick
    assert done.returncode == 2 and "shap-magic" in done.stderr and not (tmp_path / "o").exists()
    assert seconds < 10, seconds                              # generous for a loaded machine; measured in the report


def test_out_file_with_force_names_the_file(tmp_path, capsys):
    a_file = tmp_path / "results.txt"
    a_file.write_text("mine")
    assert main(["explain", PROMPT, "--out", str(a_file), "--force", "--quiet"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err and a_file.read_text() == "mine"


def test_prompt_files_and_toml_types(tmp_path, capsys):
    from captum_diffusion.runs.config import read_prompt_file

    bom = tmp_path / "bom.jsonl"
    bom.write_bytes('\ufeff{"prompt": "a red circle", "seed": 3}\n'.encode())
    assert [(p.prompt, p.seeds) for p in read_prompt_file(bom)] == [("a red circle", (3,))]
    array = tmp_path / "array.txt"
    array.write_text('["a red circle", "a blue square"]\n')
    assert main(["explain", "--prompts", str(array), "--out", str(tmp_path / "o")]) == 2
    assert f"{array}:1: a JSON array of 2 entries is not one prompt" in capsys.readouterr().err
    for text, message in [("out = 5\n", "out must be a string"),
                          ("prompts_file = 5\n", "prompts_file must be a string"),
                          ("prompts = 'a red circle'\n", "prompts must be a list")]:
        toml = tmp_path / "run.toml"
        toml.write_text(text)
        assert main(["explain", PROMPT, "--config", str(toml), "--out", str(tmp_path / "o")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_show_top_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["show", str(tmp_path), "--top", "-2"])
    assert stopped.value.code == 2 and "--top must be a positive int" in capsys.readouterr().err


def test_prune_takes_a_duration_and_only_a_cache(tmp_path):
    from captum_diffusion.generation.cache import MARKER, ImageCache

    cache = ImageCache(tmp_path / "cache")
    assert (tmp_path / "cache" / MARKER).is_file() and cache.prune(older_than="30d") == []
    user = tmp_path / "mine"
    (user / "ab").mkdir(parents=True)
    keep = user / "ab" / f"ab{'0' * 62}.png"                  # named like an entry, beside a file of the user's
    keep.write_bytes(b"not an image")
    (user / "notes.txt").write_text("mine")
    assert main(["cache", "prune", str(user), "--max-size", "0"]) == 2
    assert keep.exists() and not (user / MARKER).exists()


def _explain(out: Path, *options: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "captum_diffusion", "explain", "red circle", "--attention", "none", "--quiet",
               "--out", str(out), *options]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_on_one_folder_do_not_mix(tmp_path, monkeypatch, capsys):
    """While a run writes --out, a run with other settings is refused naming it; the same command waits for it and
    resumes the finished run (exit 0, nothing computed twice); the folder holds the first run's settings."""
    out = tmp_path / "run"
    first = _explain(out)
    deadline = time.time() + 300
    while not (out / ".lock.json").exists() and time.time() < deadline:
        assert first.poll() is None, first.communicate()
        time.sleep(0.2)
    holder = json.loads((out / ".lock.json").read_text())
    other, same = _explain(out, "--seeds", "0", "2"), _explain(out)
    _, error = other.communicate(timeout=300)
    assert other.returncode == 2 and "being written by another run" in error and f"process {holder['pid']}" in error
    assert first.wait(timeout=600) == 0 and same.wait(timeout=600) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["seeds"] == [0] and manifest["counts"]["prompts_resumed"] == 1
    assert main(["verify", str(out)]) == 0
    _report_on_a_full_disk(out, monkeypatch, capsys)


def _fill_the_disk(monkeypatch) -> None:
    """Make the one atomic writer fail as a full disk does (a real small tmpfs needs root and mount, which the test
    machines do not all allow; ENOSPC raised from the write is what a full tmpfs gives)."""
    import errno

    from captum_diffusion import files

    def full(final, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "write_temporary", full)


def test_disk_full_is_one_line_and_loses_nothing(tmp_path, capsys, monkeypatch):
    """A full disk as a run starts writing: one line naming the folder, the file and how to resume; exit 3."""
    _fill_the_disk(monkeypatch)
    out = tmp_path / "run"
    code = main(["explain", PROMPT, "--attention", "none", "--out", str(out), "--quiet"])
    error = capsys.readouterr().err
    assert code == 3 and len(error.strip().splitlines()) == 1, error
    assert "no space left" in error and str(out) in error and "rerun the same command" in error


def _report_on_a_full_disk(out: Path, monkeypatch, capsys) -> None:
    """``report`` on a full disk: one line, exit 3, the old report intact."""
    old = (out / "report.html").read_bytes()
    capsys.readouterr()
    with monkeypatch.context() as patch:
        _fill_the_disk(patch)
        code = main(["report", str(out)])
    error = capsys.readouterr().err
    assert code == 3 and len(error.strip().splitlines()) == 1 and "report.html" in error, error
    assert (out / "report.html").read_bytes() == old


def test_a_permutation_budget_past_every_permutation_is_capped_and_said():
    """max_evals=10**9 on 3 words (6 permutations): capped at 3 forward-and-back passes of 7 evaluations, with a
    warning; it used to run for minutes."""
    import shap_adapters

    def f(prompts):
        return np.array([len(p) for p in prompts], dtype=np.float64)

    with pytest.warns(UserWarning, match="capped at 21"):
        explanation = shap_adapters.explain_prompt("a red circle", f, algorithm="permutation", max_evals=10**9,
                                                   seed=0, progress=False)
    assert explanation.values.shape == (3,)
    assert explanation.values.sum() == pytest.approx(f(["a red circle"])[0] - f([""])[0])   # still efficient


def test_a_pipeline_keyword_typo_is_refused_not_ignored():
    """DAAM.explain(p, num_inference_step=2) used to run the pipeline's 50-step default without a word."""
    from captum_diffusion.attention import DAAM
    from captum_diffusion.runs.models import load_model

    daam = DAAM(load_model("shapes-world").pipeline)
    with pytest.raises(TypeError, match="num_inference_step'.*did you mean 'num_inference_steps'"):
        daam.explain(PROMPT, num_inference_step=2)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs (root and mount needed: skipped, saying so, where the machine does not allow it)."""
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip() or 'not root'}): the full "
                    "disk is tested by raising ENOSPC through the atomic writer instead")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def test_a_real_full_disk_exits_3_and_the_rerun_resumes(small_tmpfs):
    """On a 64 KiB tmpfs the run fills the disk: one line, exit 3, what was written stays; with room made the same
    command resumes and the run verifies."""
    out = small_tmpfs / "run"
    command = [sys.executable, "-m", "captum_diffusion", "explain", "red circle", "--attention", "none", "--quiet",
               "--out", str(out)]
    full = subprocess.run(command, capture_output=True, text=True)
    lines = full.stderr.strip().splitlines()
    assert full.returncode == 3 and len(lines) == 1, full.stderr
    assert "no space left" in lines[0] and str(out) in lines[0] and "rerun the same command" in lines[0]
    kept = sorted(p.relative_to(out) for p in out.rglob("*.png"))
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_tmpfs)], check=True)
    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert set(kept) <= {p.relative_to(out) for p in out.rglob("*.png")}        # nothing written was lost
    assert main(["verify", str(out)]) == 0
