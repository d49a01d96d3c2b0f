"""Scale-out benchmark: images per second with 1 and 2 processes, and what deduplication saves.

    python benchmarks/scale_out.py                       # both parts (2-3 minutes on 2 CPU cores)
    python benchmarks/scale_out.py --skip-speed          # deduplication only (planning, no image)
    python benchmarks/scale_out.py --repeats 3 --threads-baseline   # best of 3, and 1 process x 2 threads
    python benchmarks/scale_out.py --prompt "..." --seeds 0 1 2 --batch-size 8

1. Speed: the same cache fill (``captum_diffusion.runs.fill.fill_cache``: every sub-prompt of one ShapesWorld
   prompt, exact SHAP, at each seed) on ShapesWorld, run side by side in fresh cache folders
   - by 1 process with 1 torch thread (plain ``python``),
   - by 2 processes with 1 torch thread each (``accelerate launch --multi_gpu --num_processes 2``: torchrun; on a
     machine without GPUs each process runs on the CPU and they talk over gloo),
   - with ``--threads-baseline``, by 1 process with 2 torch threads (the second core without scale-out).
   Timed from a barrier after the model is loaded and the plan built to the barrier that ends the fill (so the
   slower process counts), images generated over those seconds. Goal: 2 processes >= 1.7x 1 process.
2. Deduplication: the plan alone (no model, no image) for exact SHAP at one seed over the Gupta & Kanoria prompts
   (``captum_diffusion.datasets.load_gupta_kanoria()``) and over every ShapesWorld prompt
   (``captum_diffusion.shapes_world.ALL_PROMPTS``): unique generations vs the sum of 2^d over the prompts.

Other work on the machine takes cores from the processes: the load average is printed with the figures, and each
process's CPU time over its wall time ("CPU used": 100% = it had a core to itself, more with 2 threads).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PROMPT = "a red circle and a blue square"  # 7 words: 116 distinct sub-prompts per seed


def worker(args) -> None:
    """One process of a timed fill (run by ``main`` under python or accelerate launch)."""
    import torch

    torch.set_num_threads(args.threads)
    from captum_diffusion.runs.config import RunConfig
    from captum_diffusion.runs.distributed import Ranks
    from captum_diffusion.runs.models import load_model
    from captum_diffusion.runs.fill import fill_cache
    from captum_diffusion.runs.plan import plan_run

    ranks = Ranks()
    config = RunConfig(prompts=(args.prompt,), seeds=tuple(args.seeds), words=("shap-exact",),
                       batch_size=args.batch_size, attention="none")
    model = load_model(config.model)
    plan = plan_run(config, model=model)
    ranks.exchange("ready", None)
    started = time.perf_counter()
    filled = fill_cache(plan, Path(args.out) / "cache", model=model, ranks=ranks, progress=False)
    seconds = time.perf_counter() - started
    if ranks.is_main:
        Path(args.out, "result.json").write_text(json.dumps({
            "processes": ranks.size, "threads": torch.get_num_threads(), "images": filled["total"]["generated"],
            "unique": plan.unique, "seconds": seconds, "per_rank": filled["ranks"]}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed_fill(processes: int, threads: int, args, folder: Path) -> dict:
    out = folder / f"p{processes}-t{threads}"  # a fresh, empty cache
    command = [__file__, "--worker", "--out", str(out), "--threads", str(threads), "--prompt", args.prompt,
               "--batch-size", str(args.batch_size), "--seeds", *map(str, args.seeds)]
    if processes == 1:
        command = [sys.executable, *command]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                   str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(_free_port()), *command]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(ROOT),
               TRANSFORMERS_VERBOSITY="error", DIFFUSERS_VERBOSITY="error", HF_HUB_OFFLINE="1")
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    result = json.loads((out / "result.json").read_text())
    result["rate"] = result["images"] / result["seconds"]
    return result


def speed(args) -> None:
    print(f"1. Speed: exact SHAP sub-prompts of {args.prompt!r} at seeds {args.seeds} (ShapesWorld, 64x64, "
          f"batch {args.batch_size}); {os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}")
    setups = [("1 process x 1 thread", 1, 1), ("2 processes x 1 thread", 2, 1)]
    if args.threads_baseline:
        setups.append(("1 process x 2 threads", 1, 2))
    runs = {name: [] for name, _, _ in setups}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):  # interleaved, so a burst of other work hits every setup alike
            for name, processes, threads in setups:
                runs[name].append(timed_fill(processes, threads, args, Path(tmp) / str(repeat)))
    rows = [(name, max(found, key=lambda r: r["rate"])) for name, found in runs.items()]
    base = rows[0][1]["rate"]
    best = " (best of each)" if args.repeats > 1 else ""
    print(f"   {'':24} {'images':>7} {'seconds':>8} {'images/s':>9} {'vs 1x1':>7}   per process: images in s (CPU used){best}")
    for name, r in rows:
        ranks = ", ".join(f"{p['generated']} in {p['seconds']:.1f} ({p['cpu_seconds'] / p['seconds']:.0%} CPU)"
                          for p in r["per_rank"])
        print(f"   {name:24} {r['images']:7d} {r['seconds']:8.2f} {r['rate']:9.2f} {r['rate'] / base:6.2f}x   {ranks}")
    if args.repeats > 1:
        for name, found in runs.items():
            rates = ", ".join(f"{r['rate']:.2f}" for r in found)
            print(f"   {name}: every repeat {rates} images/s")
    assert all(r["images"] == r["unique"] for _, r in rows), "every unique image generated exactly once"
    print(f"   2 processes / 1 process: {rows[1][1]['rate'] / base:.2f}x (goal >= 1.7x); load average after "
          f"{os.getloadavg()[0]:.2f}")


def dedup() -> None:
    from captum_diffusion.datasets import load_gupta_kanoria
    from captum_diffusion.runs.plan import plan_prompts
    from captum_diffusion.shapes_world import ALL_PROMPTS

    plan_prompts(["a red circle"], words=("shap-exact",))  # imports shap etc. once, outside the timings
    print("2. Deduplication: exact SHAP at one seed, the plan alone (no model, no image)")
    print(f"   {'prompt set':22} {'prompts':>7} {'sum 2^d':>8} {'requested':>9} {'unique':>7} {'saved':>7} "
          f"{'unique/sum':>10} {'plan s':>7}")
    for name, prompts in (("Gupta & Kanoria", [r.prompt for r in load_gupta_kanoria()]),
                          ("ShapesWorld (all)", list(ALL_PROMPTS))):
        started = time.perf_counter()
        plan = plan_prompts(prompts, seeds=(0,), words=("shap-exact",))
        seconds = time.perf_counter() - started
        print(f"   {name:22} {len(prompts):7d} {plan.subsets:8d} {plan.requested:9d} {plan.unique:7d} "
              f"{plan.deduplicated:7d} {plan.unique / plan.subsets:10.1%} {seconds:7.1f}")
    print("   (requested: distinct sub-prompts per prompt, a repeated word makes some subsets equal; saved: "
          "requested - unique, generated once for all the prompts that share them)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="the prompt whose sub-prompts are generated")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="seeds (default 0 1)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1, help="timed fills per setup, interleaved; the best is "
                                                                   "shown (default 1)")
    parser.add_argument("--threads-baseline", action="store_true",
                        help="also time 1 process with 2 torch threads (the second core without scale-out)")
    parser.add_argument("--skip-speed", action="store_true", help="deduplication figures only")
    parser.add_argument("--skip-dedup", action="store_true", help="speed figures only")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if not args.skip_speed:
        speed(args)
    if not args.skip_dedup:
        dedup()


if __name__ == "__main__":
    main()
