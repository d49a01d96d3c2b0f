"""Fixed overhead of a run: --threads chosen and recorded, the time breakdown in the manifest, lazy start-up, and
shap's compiled helpers kept on disk. No assertion on speed: what is checked is what a user reads and relies on."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from captum_diffusion.cli import main
from captum_diffusion.runs.config import DEFAULT_THREADS, RunConfig
from captum_diffusion.runs.execute import BREAKDOWN, apply_threads, breakdown, seconds_since_process_start
from captum_diffusion.runs.store import MANIFEST

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red circle"


@pytest.fixture
def keep_threads():
    """Restore torch's thread count after the test (the suite runs on one thread)."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_follow_the_flag_then_the_environment_then_the_default(keep_threads, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert apply_threads(2) == {"torch": 2, "source": "--threads", "cpus": apply_threads(2)["cpus"]}
    assert torch.get_num_threads() == 2
    chosen = apply_threads(None)
    assert chosen["source"] == "default" and chosen["torch"] == min(DEFAULT_THREADS, chosen["cpus"])
    torch.set_num_threads(2)
    assert apply_threads(None, processes=2)["torch"] == 1  # one per process under a launcher
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)
    assert apply_threads(None, processes=2) == {"torch": 2, "source": "OMP_NUM_THREADS",
                                                "cpus": chosen["cpus"]}  # left as the user set it
    assert apply_threads(1, processes=2)["torch"] == 1  # the flag wins


def test_threads_is_an_option_but_not_a_setting_of_the_results():
    config = RunConfig(prompts=(PROMPT,), threads=3)
    assert config.threads == 3 and "threads" not in config.settings()
    assert config.settings() == RunConfig(prompts=(PROMPT,)).settings()  # a run resumes under other threads
    with pytest.raises(ValueError, match="threads"):
        RunConfig(prompts=(PROMPT,), threads=0)


def test_breakdown_adds_up():
    parts = {"startup": 2.0, "load": 1.0, "plan": 0.25, "generate": 3.0, "explain": 1.5, "write": 0.2}
    found = breakdown(parts, run_seconds=6.5)
    assert list(found) == [*BREAKDOWN, "other", "total"]
    assert found["other"] == pytest.approx(6.5 - 5.95) and found["total"] == pytest.approx(8.5)
    assert breakdown({"load": 1.0}, 1.0) == {"startup": None, "load": 1.0, "plan": None, "generate": None,
                                            "explain": None, "write": None, "other": 0.0, "total": 1.0}


def test_process_age_counts_from_the_process_start():
    if not Path("/proc/self/stat").exists():
        pytest.skip("Linux /proc only")
    first = seconds_since_process_start()
    time.sleep(0.05)
    second = seconds_since_process_start()
    assert 0 < first and second - first == pytest.approx(0.05, abs=0.03)


def test_cli_run_records_threads_and_breakdown_and_resumes_under_other_threads(tmp_path, keep_threads):
    out = tmp_path / "run"
    common = ["explain", PROMPT, "--seeds", "0", "--steps", "2", "--attention", "none", "--out", str(out), "--quiet"]
    assert main([*common, "--threads", "1"]) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["launch"]["threads"]["torch"] == 1 and manifest["launch"]["threads"]["source"] == "--threads"
    parts = manifest["timings"]["breakdown"]
    assert list(parts) == [*BREAKDOWN, "other", "total"]
    assert all(parts[name] >= 0 for name in parts) and parts["generate"] > 0 and parts["startup"] > 0
    run_parts = sum(parts[name] for name in (*BREAKDOWN[1:], "other"))
    assert run_parts == pytest.approx(manifest["timings"]["seconds"], abs=0.01)  # the report's time is in "write"
    assert parts["total"] == pytest.approx(parts["startup"] + run_parts, abs=0.01)
    assert main([*common, "--threads", "2"]) == 0  # the same run: resumed, nothing generated
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["counts"]["prompts_resumed"] == 1 and manifest["counts"]["images_generated"] == 0
    assert manifest["launch"]["threads"]["torch"] == 2


def test_reading_the_options_imports_no_model_library():
    """``--help`` and bad input are answered before torch, diffusers, transformers, captum or shap load."""
    code = ("import sys; from captum_diffusion import cli; args = cli.build_parser().parse_args(['explain', 'a b', "
            "'--threads', '1']); cli.config_from_args(args); print(sorted(m for m in ('torch', 'diffusers', "
            "'transformers', 'captum', 'shap', 'accelerate') if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


def test_the_run_and_its_report_import_explainers_only_when_used():
    """A run imports shap, captum, shapiq (word pairs) or lime when a method or section it shows needs them."""
    code = ("import sys, captum_diffusion.runs.execute, captum_diffusion.runs.render; print(sorted(m for m in ("
            "'torch', 'diffusers', 'captum', 'shap', 'shapiq', 'lime', 'matplotlib.pyplot') if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


def test_every_captum_method_is_registered_without_importing_captum():
    from captum_diffusion.runs.methods import REGISTRY, captum_methods

    assert {f"captum-{name}" for name in captum_methods()} <= set(REGISTRY)


def test_shap_compiled_helpers_are_kept_in_the_cache_folder(tmp_path):
    """A first exact explanation in a fresh process writes shap's compiled helpers to the cache folder (numba's
    index files), and a second process reads them back and gives the same values; the partition explainer (whose
    recursive helper is left uncached: read back, it crashed) runs in both."""
    code = ("import numpy as np, shap_adapters.text as t; f = lambda p: np.array([len(s) for s in p], float); "
            "print(t.SHAP_COMPILATION_CACHE); print([t.explain_prompt('a red circle', f, algorithm=a, "
            "progress=False).values.tolist() for a in ('exact', 'partition')][0])")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    runs = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                           check=True).stdout.splitlines() for _ in range(2)]
    assert runs[0] == runs[1] and runs[0][0] == str(tmp_path / "numba")
    # the payoff is the sub-prompt's length: each word its letters, plus a third of the 2 spaces
    assert json.loads(runs[0][1]) == pytest.approx([1 + 2 / 3, 3 + 2 / 3, 6 + 2 / 3])
    indexes = sorted(p.name for p in (tmp_path / "numba").rglob("*.nbi"))
    assert any("_exact." in name for name in indexes) and any("_tabular." in name for name in indexes)
    assert len(list((tmp_path / "numba").rglob("*.nbc"))) == len(indexes)  # the second process added nothing
