"""Runs split across processes: the plan (deduplicated, packed, independent of the number of processes), and the
same `diffusion-explain explain` command under `accelerate launch` with 2 CPU processes (gloo): results equal to one
process bit for bit, each unique image generated once, a killed rank resumes, a failing rank stops the job.

CPU processes are launched with ``accelerate launch --multi_gpu --num_processes 2`` (torchrun): on a machine without
GPUs each process then runs on the CPU over gloo. (``accelerate launch --cpu --num_processes 2`` starts a single
process unless mpirun is used; see ``runs.distributed.single_process_cpu_launch``.) Every process uses one torch
thread, the single-process reference too: the thread count changes float rounding (one grey level on a few pixels).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from captum_diffusion.runs import load_run
from captum_diffusion.runs.config import WORD_METHODS, RunConfig
from captum_diffusion.runs.fill import split_batches
from captum_diffusion.runs.plan import PLANNED_METHODS, UNPLANNED_METHODS, RecordingPayoff, plan_prompts

PROMPTS = ["a red circle", "a blue circle", "a red square"]  # share "", "a", "circle", "a circle", "red", "a red"
UNIQUE = 2 * 16                                              # 8 + 4 + 4 sub-prompts per seed, seeds 0 and 1
METHODS = ("shap-exact", "shap-partition", "lime")
OPTIONS = ["--seeds", "0", "1", "--words", *METHODS, "--lime-samples", "16", "--attention", "none", "--quiet"]


def _config() -> RunConfig:
    """What OPTIONS say, as a RunConfig."""
    return RunConfig(prompts=tuple(PROMPTS), seeds=(0, 1), words=METHODS, lime_samples=16, attention="none")


# ------------------------------------------------------------------------------------------------ the plan
def test_every_method_is_planned_or_left_to_the_explaining_process():
    assert set(PLANNED_METHODS) | set(UNPLANNED_METHODS) == set(WORD_METHODS)
    assert not set(PLANNED_METHODS) & set(UNPLANNED_METHODS)


@pytest.mark.parametrize("method", WORD_METHODS)
def test_planned_methods_ask_for_the_same_subprompts_whatever_the_payoffs(method):
    """Recording a sampler on placeholder payoffs is valid only if its choices ignore the values: three unrelated
    payoffs must give the same sub-prompts in the same order. shap-partition does not (so it is not planned)."""
    from captum_diffusion.runs.execute import word_values

    prompt = "a small red circle above squares"  # 6 words (captum's shapley_values walks all 720 orderings)
    config = RunConfig(prompts=(prompt,), lime_samples=30, max_evals=60)
    recorded = []
    for salt in (0, 1, 2):
        f = RecordingPayoff(prompt, salt=salt)
        word_values(method, f, config, seed=3)
        recorded.append(list(f.items))
    assert len(recorded[0]) > 1
    same = recorded[0] == recorded[1] == recorded[2]
    assert same == (method in PLANNED_METHODS), method


def test_the_plan_deduplicates_across_prompts_and_does_not_depend_on_the_processes():
    plan = plan_prompts(PROMPTS, seeds=(0, 1), batch_size=5)
    assert (plan.subsets, plan.requested, plan.unique, plan.deduplicated) == (48, 48, UNIQUE, 16)
    pairs = [(b.seed, p) for b in plan.batches for p in b.prompts]
    assert len(pairs) == len(set(pairs)) == UNIQUE                     # each (sub-prompt, seed) in one batch
    assert all(1 <= len(b) <= 5 for b in plan.batches)
    for prompt in plan.prompts:                                          # every image a prompt needs is planned
        for seed, items in prompt.items.items():
            assert set((seed, p) for p in items) <= set(pairs) and len(items) == 8
    assert [p.deduplicated for p in plan.prompts] == [0, 8, 8]
    again = plan_prompts(PROMPTS, seeds=(0, 1), batch_size=5)
    assert again.digest() == plan.digest() and again.batches == plan.batches
    costs = {b.index: len(b) for b in plan.batches}
    for n in (1, 2, 3, 8):
        shares = split_batches(costs, n)
        assert sorted(i for share in shares for i in share) == sorted(costs)  # every batch once
        loads = [sum(costs[i] for i in share) for share in shares]
        assert max(loads) - min(loads) <= max(costs.values())
    for size in (1, 2, 3):
        waves = plan.waves(range(3), size)
        assert sorted(i for w in waves for i in w.batches) == sorted(costs)
        for w, wave in enumerate(waves):                                # a prompt's batches are filled by its wave
            filled = {i for earlier in waves[:w + 1] for i in earlier.batches}
            assert all(b.index in filled for b in plan.batches for n in wave.prompts if n in b.needed_by)
    assert [w.batches for w in plan.waves([2], 1)] == [tuple(b.index for b in plan.batches if 2 in b.needed_by)]


def test_exact_shap_is_planned_without_shap_in_the_order_shap_asks():
    """Planning shap-exact enumerates every subset itself; the recording is the one shap's exact explainer makes
    (same sub-prompts, same order, so the same batches), repeated words included."""
    from captum_diffusion.runs.methods import REGISTRY, every_subset, word_values

    assert REGISTRY["shap-exact"].recorder() is every_subset
    for prompt in ("a", "a red circle", "a red a circle a", "one two three four five six seven"):
        config = RunConfig(prompts=(prompt,))
        by_shap, by_enumeration = RecordingPayoff(prompt), RecordingPayoff(prompt)
        word_values("shap-exact", by_shap, config, seed=0)
        every_subset(by_enumeration)
        assert list(by_enumeration.items) == list(by_shap.items)
        assert len(by_enumeration.items) == len(set(by_enumeration.items)) and "" in by_enumeration.items
    with pytest.raises(ValueError, match="limited to 12 words"):
        every_subset(RecordingPayoff(" ".join(f"w{i}" for i in range(13))))


def test_the_registry_says_what_each_method_costs():
    from captum_diffusion.runs.methods import REGISTRY

    config = RunConfig(prompts=("a red circle",), lime_samples=30, max_evals=60)
    prompt = "a small red circle above squares"
    for method in REGISTRY.values():                   # the stated cost bounds what the method asks for
        f = RecordingPayoff(prompt)
        method.run(f, config, 3, None)
        assert len(f.items) <= method.cost(6, config), method.name
    assert REGISTRY["shap-exact"].cost(6, config) == 64 and REGISTRY["captum-feature_ablation"].cost(6, config) == 8
    assert REGISTRY["lime"].cost(6, config) == 31 and REGISTRY["shap-permutation"].cost(3, config) == 8


def test_a_method_at_other_generation_settings_gets_its_own_batches(monkeypatch):
    """The slot a proxy game uses: sub-prompts asked through payoff_at(settings) are planned per settings,
    deduplicated across prompts like the others and packed into batches that carry those settings."""
    from captum_diffusion.generation.settings import GenerationSettings
    from captum_diffusion.runs import methods

    cheap = GenerationSettings(num_inference_steps=2)

    def proxy(f, config, seed, payoff_at):
        words = f.prompt.split()
        payoff_at(cheap)([" ".join(words[:k]) for k in range(len(words) + 1)])
        f([""])
        return np.zeros(len(words)), 0.0

    monkeypatch.setitem(methods.REGISTRY, "proxy-test", methods.WordMethod(
        "proxy-test", proxy, planned=True, why="prefixes, whatever the payoffs", seeded=False,
        cost=lambda d, config: 2 * d + 2))
    plan = plan_prompts(["a red circle", "a red square"], seeds=(0,), words=("proxy-test",), batch_size=3)
    first = plan.prompts[0]
    assert first.items[0] == ("", "a red circle")
    assert first.items_at[0, cheap] == ("", "a", "a red", "a red circle")
    proxied = [b for b in plan.batches if b.settings == cheap]
    assert sorted(p for b in proxied for p in b.prompts) == sorted(
        ["", "a", "a red", "a red circle", "a red square"])       # "", "a", "a red" made once at 2 steps
    assert all(b.settings is None for b in plan.batches if b not in proxied)
    assert plan.prompts[1].deduplicated == 1 + 3                   # "" at full settings, 3 prefixes at 2 steps
    run = GenerationSettings(num_inference_steps=10, guidance_scale=5.0, height=64, width=64)
    assert proxied[0].generation_settings(run) == run.replace(num_inference_steps=2)
    assert plan.batches[0].generation_settings(run) == run
    plain = plan_prompts(["a red circle", "a red square"], seeds=(0,), words=("captum-feature_ablation",),
                         batch_size=3)
    assert plan.digest() != plain.digest() and plain.summary()["unique"] == plain.unique


def test_accelerate_cpu_without_mpirun_is_recognised(monkeypatch):
    from captum_diffusion.runs.distributed import launched_ranks, single_process_cpu_launch

    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert launched_ranks() == 1 and single_process_cpu_launch()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launched_ranks() == 2 and not single_process_cpu_launch()


def test_fill_cache_api_fills_once(tmp_path):
    """The notebook path: fill_cache(config, cache_dir) on the current (one-process) state; again: nothing to do."""
    from captum_diffusion.runs.fill import fill_cache

    config = RunConfig(prompts=("a red circle", "a red square"), words=("captum-feature_ablation",))
    first = fill_cache(config, tmp_path / "cache", progress=False)
    # feature ablation: the prompt, each one-word deletion and "" (the baseline); "a red" and "" are shared
    assert first["total"]["generated"] == first["checked"] == 2 * 5 - 2 and first["cached"] == 0
    assert first["ranks"] == [first["rank"]] and first["rank"]["batches"] == 1
    again = fill_cache(config, tmp_path / "cache", progress=False)
    assert again["total"]["generated"] == 0 and again["cached"] == 8
    assert len(list((tmp_path / "cache").rglob("*.png"))) == 8


# ------------------------------------------------------------------------------------- launched processes
def _environment(tmp: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", HF_HOME=str(tmp / "hf"),
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(n: int, *arguments: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(_free_port()), *arguments]


def _explain(prompts: Path, out: Path) -> list[str]:
    return ["-m", "captum_diffusion", "explain", "--prompts", str(prompts), "--out", str(out), *OPTIONS]


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same job in this process (one rank, no launcher, one torch thread: see conftest)."""
    import torch

    from captum_diffusion.runs import explain_run

    assert torch.get_num_threads() == 1
    return explain_run(_config(), tmp_path_factory.mktemp("one") / "run", progress=False, report=False)


@pytest.fixture(scope="module")
def launched(prompts_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("two") / "run"
    done = subprocess.run(_launch(2, *_explain(prompts_file, out)), capture_output=True, text=True, timeout=300,
                          env=_environment(out.parent))
    assert done.returncode == 0, done.stderr[-3000:]
    return load_run(out), done


def _assert_same_results(a, b) -> None:
    assert [p.prompt for p in a.prompts] == [p.prompt for p in b.prompts] == PROMPTS
    for x, y in zip(a.prompts, b.prompts):
        assert x.status == y.status == "done" and x.methods == y.methods == list(METHODS)
        for method in x.methods:
            np.testing.assert_array_equal(x.values[method], y.values[method])
            np.testing.assert_array_equal(x.base_values[method], y.base_values[method])
        np.testing.assert_array_equal(x.payoffs, y.payoffs)
        for i, j in zip(x.images, y.images):
            assert np.array_equal(np.asarray(i), np.asarray(j))
        for s, t in zip(x.subprompts, y.subprompts):
            assert [(e.mask, e.prompt, e.payoff) for e in s] == [(e.mask, e.prompt, e.payoff) for e in t]
            assert all(np.array_equal(np.asarray(e.image), np.asarray(f.image)) for e, f in zip(s, t))


def test_two_processes_give_the_results_of_one_and_generate_each_image_once(reference, launched):
    run, done = launched
    _assert_same_results(run, reference)
    counts, plan = run.manifest["counts"], run.manifest["plan"]
    assert (plan["requested"], plan["unique"], plan["deduplicated"]) == (48, UNIQUE, 16)
    assert plan["unplanned_methods"].keys() == {"shap-partition"}
    assert counts["images_generated"] == counts["images_planned"] == UNIQUE   # across both processes
    assert counts["images_generated_while_explaining"] == counts["images_recomputed"] == counts["images_cached"] == 0
    ranks = counts["per_rank"]
    assert [r["rank"] for r in ranks] == [0, 1] and run.manifest["launch"]["processes"] == 2
    assert sum(r["generated"] for r in ranks) == UNIQUE and all(r["generated"] == UNIQUE // 2 for r in ranks)
    assert sorted(r["prompts"] for r in ranks) == [1, 2]                  # prompts explained on both processes
    assert sum(r["deduplicated"] for r in ranks) == counts["images_deduplicated"] == 16
    assert len(list((run.directory / "cache").rglob("*.png"))) == UNIQUE   # no image stored twice
    assert reference.manifest["counts"]["images_generated"] == UNIQUE
    assert (run.directory / "report.html").is_file() and "Traceback" not in done.stderr


def _descendants(pid: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _rank_pid(launcher: int, rank: int) -> int | None:
    for pid in _descendants(launcher):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and b"captum_diffusion" in cmdline:
            return pid
    return None


def test_a_killed_rank_resumes_to_the_same_results(reference, prompts_file, tmp_path):
    """kill -9 one process while the images are being made: the launcher stops the other (no hang). Running the
    job again (here in this process: a run resumes with any number of processes) finishes it: no image generated
    twice, results equal to an uninterrupted run."""
    from captum_diffusion.runs import explain_run

    out = tmp_path / "run"
    launcher = subprocess.Popen(_launch(2, *_explain(prompts_file, out)), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=_environment(tmp_path))
    deadline = time.time() + 240
    while not list((out / "cache").rglob("*.png")) and time.time() < deadline:
        assert launcher.poll() is None, launcher.stderr.read().decode()[-3000:]
        time.sleep(0.05)
    rank = _rank_pid(launcher.pid, 1)
    assert rank is not None
    os.kill(rank, signal.SIGKILL)
    assert launcher.wait(timeout=120) != 0                               # the job stops, it does not hang
    launcher.stderr.close()
    on_disk = len(list((out / "cache").rglob("*.json")))                  # complete entries (JSON written last)
    assert on_disk < UNIQUE and not (out / "prompts" / "002" / "result.json").exists()
    resumed = explain_run(_config(), out, progress=False, report=False)
    _assert_same_results(resumed, reference)
    counts = resumed.manifest["counts"]
    assert counts["images_generated"] + on_disk == UNIQUE                 # nothing generated twice
    assert counts["images_cached"] == on_disk
    assert len(list((out / "cache").rglob("*.png"))) == UNIQUE
    assert len(resumed.manifest["history"]) == 1 and resumed.manifest["launch"]["processes"] == 1


FAILING = """
import os, sys
from captum_diffusion.runs import fill

def run(self, share, missing):
    if os.environ["RANK"] == "1":
        raise RuntimeError(" ".join(["injected", "failure"]))
    return original(self, share, missing)

original, fill._Filler.run = fill._Filler.run, run
from captum_diffusion.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_failing_rank_stops_every_rank_and_its_error_is_shown_once(prompts_file, tmp_path):
    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    out = tmp_path / "run"
    begun = time.time()
    done = subprocess.run(_launch(2, str(script), "explain", "--prompts", str(prompts_file), "--out", str(out),
                                  *OPTIONS), capture_output=True, text=True, timeout=240, env=_environment(tmp_path))
    assert done.returncode != 0 and time.time() - begun < 200
    assert done.stderr.count("RuntimeError: injected failure") == 1, done.stderr[-3000:]
    assert done.stderr.count("[rank1]: Traceback") == 1 and "[rank0]:" not in done.stderr  # rank 0 leaves quietly
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["timings"]["finished"] is None and not (out / "prompts").exists()
