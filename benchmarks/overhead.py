"""Fixed overhead of ``diffusion-explain explain`` against the raw diffusers pipeline, and torch threads on the CPU.

    python benchmarks/overhead.py threads                  # 1 vs 2 torch threads, ShapesWorld batch of 8, interleaved
    python benchmarks/overhead.py one                      # a cold 6-word run vs the raw pipeline, side by side
    python benchmarks/overhead.py file --steps 2           # a 20-prompt file vs the raw pipeline (few steps)

1. ``threads``: one process loads the embedded ShapesWorld UNet pipeline and generates a batch of 8 images (its
   default 10 steps, guidance 5, 64x64) with 1 and with 2 torch threads in turn, ``--repeats`` times each,
   interleaved (1, 2, 1, 2, ...) so both settings see the same load from other processes. It prints every time,
   the medians and the ratio. This is what chose the default of ``--threads``.
2. ``one`` / ``file``: side by side, in fresh subprocesses, alternating:
   (a) ``python -m captum_diffusion explain PROMPT(S) --seeds 0 --quiet --threads T --out FRESH`` (a fresh
       ``--out``: its image cache, ``FRESH/cache``, is cold too), timed from before the process starts to its
       exit; its manifest's breakdown (start-up, load, plan, generate, explain, write) is printed;
   (b) a fresh ``python`` process that imports diffusers, loads the same pipeline with ``from_pretrained`` and
       makes the same images (every sub-prompt of each prompt, the same count, steps, guidance, batch size and
       threads), timed the same way, its import and load included.
   The ratio (a) / (b) is the overhead; goals: <= 1.3x for one 6-word prompt, <= 1.1x for 20 prompts.
   shap's compiled helpers are kept on disk after the first run (``shap_adapters.text.cache_shap_compilation``);
   ``--cold-numba`` gives (a) an empty numba cache folder each time, i.e. a user's very first run.

Other processes share the CPU: the load average is printed with each figure.

Measured on this 2-core machine shared with other jobs (2026-12-03, 1 thread on both sides):
- ``threads --repeats 5`` (load 6.5-9.3): 1 thread 6.4 s, 2 threads 64.9 s per batch of 8 (medians): 10.2x slower;
- ``one --repeats 3`` (load 1.5-1.9): 23.2 s against 16.0 s, 1.44x (breakdown: start-up 4.4, load 2.4, plan 0.0,
  generate 9.0, explain 5.0, write 0.5; process exit about 1.9 s more); ``--cold-numba``: 1.66x (explain 8.9 s);
- ``file --repeats 1`` (20 prompts, 432 distinct images, 10 steps; load 1.6-2.0): 98.2 s against 75.0 s, 1.31x
  (start-up 4.4, load 2.4, generate 63.0, explain 15.1, write 11.1).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red circle on the left"  # 6 words: 64 sub-prompts
#: The 20 prompts of ``file``: 6-word ShapesWorld prompts (64 sub-prompts each, some shared between prompts).
FILE_PROMPTS = [f"a {colour} {shape} on the {side}" for side in ("left", "right")
                for colour in ("red", "blue", "green", "yellow", "purple") for shape in ("circle", "square")]

#: The raw pipeline's script: import, load, every distinct sub-prompt of the prompts in batches (the images the run
#: makes; prints how many).
RAW = """
import itertools, sys, time, json
import torch
from diffusers import StableDiffusionPipeline
torch.set_num_threads(int(sys.argv[2]))
prompts, steps, batch = json.loads(sys.argv[1]), int(sys.argv[3]), int(sys.argv[4])
pipe = StableDiffusionPipeline.from_pretrained(sys.argv[5], safety_checker=None, requires_safety_checker=False)
pipe.set_progress_bar_config(disable=True)
subs = []
for prompt in prompts:
    words = prompt.split()
    for mask in itertools.product((0, 1), repeat=len(words)):
        subs.append(" ".join(w for w, keep in zip(words, mask) if keep))
subs = list(dict.fromkeys(subs))  # each distinct sub-prompt once, as the run's plan makes them
for start in range(0, len(subs), batch):
    pipe(subs[start:start + batch], num_inference_steps=steps, guidance_scale=5.0, height=64, width=64,
         generator=torch.Generator().manual_seed(0))
print(len(subs))
"""


def load() -> str:
    """The 1-minute load average, as text."""
    return f"{os.getloadavg()[0]:.1f}"


def threads_benchmark(repeats: int, batch_size: int) -> dict:
    """Seconds per batch of ``batch_size`` ShapesWorld images with 1 and 2 torch threads, interleaved.

    Parameters
    ----------
    repeats : int
        Timed batches per setting (one untimed warm-up batch each first).
    batch_size : int
        Images per pipeline call.

    Returns
    -------
    dict
        ``{1: [seconds, ...], 2: [seconds, ...]}``.
    """
    import torch

    from captum_diffusion.shapes_world import DEFAULT_GENERATION, load_shapes_world

    pipe, _ = load_shapes_world()
    prompts = [f"a red circle on the left {i}" for i in range(batch_size)]
    times: dict[int, list[float]] = {1: [], 2: []}
    for round_ in range(repeats + 1):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            tick = time.perf_counter()
            pipe(prompts, generator=torch.Generator().manual_seed(0), **DEFAULT_GENERATION.pipeline_kwargs())
            if round_:  # round 0 warms both up
                times[threads].append(time.perf_counter() - tick)
                print(f"  {threads} thread(s): {times[threads][-1]:6.2f} s   (load {load()})", flush=True)
    return times


def timed(command: list[str], env: dict | None = None) -> tuple[float, str]:
    """Wall seconds of ``command`` in a fresh process, from before it starts to its exit (it must succeed), and
    its output."""
    tick = time.perf_counter()
    done = subprocess.run(command, check=True, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    return time.perf_counter() - tick, done.stdout


def cli_run(prompts: list[str], folder: Path, args) -> tuple[float, dict, int]:
    """(a): a cold ``diffusion-explain explain`` in a fresh process; its seconds, its manifest's breakdown and the
    images it generated."""
    prompt_file = folder / "prompts.txt"
    prompt_file.write_text("\n".join(prompts) + "\n")
    env = dict(os.environ)
    if args.cold_numba:
        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba-", dir=folder)
    out = folder / "run"
    seconds, _ = timed([sys.executable, "-m", "captum_diffusion", "explain", "--prompts", str(prompt_file), "--seeds",
                     "0", "--quiet", "--threads", str(args.threads), "--batch-size", str(args.batch_size),
                     "--steps", str(args.steps), "--out", str(out)], env)
    manifest = json.loads((out / "manifest.json").read_text())
    return seconds, manifest["timings"].get("breakdown", {}), manifest["counts"]["images_generated"]


def raw_run(prompts: list[str], args) -> tuple[float, int]:
    """(b): the raw pipeline making the same images in a fresh process, import and load included; its seconds and
    the images it made."""
    pipeline = ROOT / "captum_diffusion" / "shapes_world" / "weights" / "pipeline"
    seconds, output = timed([sys.executable, "-c", RAW, json.dumps(prompts), str(args.threads), str(args.steps),
                             str(args.batch_size), str(pipeline)])
    return seconds, int(output.split()[-1])


def side_by_side(prompts: list[str], args) -> None:
    """Run (a) and (b) ``args.repeats`` times, alternating, and print the times, the breakdowns and the ratios."""
    ratios = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
            cli_seconds, breakdown, cli_images = cli_run(prompts, Path(tmp), args)
        raw_seconds, raw_images = raw_run(prompts, args)
        ratios.append(cli_seconds / raw_seconds)
        print(f"repeat {repeat}: diffusion-explain {cli_seconds:7.1f} s ({cli_images} images), raw pipeline "
              f"{raw_seconds:7.1f} s ({raw_images} images), ratio {ratios[-1]:.2f}x (load {load()})", flush=True)
        print("  breakdown (s): " + ", ".join(f"{k} {v:.1f}" for k, v in breakdown.items()), flush=True)
    print(f"median ratio {statistics.median(ratios):.2f}x over {len(ratios)} repeat(s)")


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("threads", "one", "file"))
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each setting (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of (a) and (b) (default 1)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per pipeline call (default 8)")
    parser.add_argument("--steps", type=int, default=10, help="denoising steps (default 10, the model's)")
    parser.add_argument("--cold-numba", action="store_true", help="an empty numba cache for each (a)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    """Run the part asked for and print its figures."""
    args = parse_args(argv)
    print(f"{os.cpu_count()} CPU(s), load {load()}, {args}", flush=True)
    if args.part == "threads":
        times = threads_benchmark(args.repeats, args.batch_size)
        one, two = statistics.median(times[1]), statistics.median(times[2])
        print(f"median: 1 thread {one:.2f} s, 2 threads {two:.2f} s per batch of {args.batch_size}; "
              f"2 threads take {two / one:.2f}x the time of 1")
        return
    side_by_side([PROMPT] if args.part == "one" else FILE_PROMPTS, args)


if __name__ == "__main__":
    main()
