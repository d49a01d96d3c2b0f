"""The cost of an explanation: multi-fidelity Shapley values against exact, per budget in full-image equivalents.

Steps (each resumable; everything kept under ``--cache-dir``, default ``/tmp/cost-cache``):

- ``time``: how long one ShapesWorld image takes on this machine at the default 10 steps and at fewer steps,
  measured side by side (interleaved repetitions, one torch thread): the cost ratio of a proxy image to a full
  one, written to ``timing.json``.
- ``generate``: every sub-prompt of the benchmark's prompts, at 4 image seeds, at the full steps and at each proxy
  step count, generated for real through ``TextToImage`` (its disk cache in ``images/``), embedded with the
  ShapesWorld CLIP; the embeddings go to ``embeddings/<steps>-<seed>-<prompt>.npy`` (rows in
  ``WordGame.all_coalitions`` order), so payoffs of any game are computed later without a model.
- ``report`` (the default): games from the embeddings, the estimators at each budget, the tables.

Games: ShapesWorld prompts of 6-7 words (those of ``benchmarks/estimators.py``, not chosen for this method), the
Gupta & Kanoria image payoff ``v_seed(S) = cos(CLIP(image(S)), CLIP(image(full prompt)))`` per seed, averaged
over the 4 seeds; the proxy game is the same payoff with every image (the reference included) generated at fewer
steps. The 10- and 12-word sum games of ``benchmarks/estimators.py`` (two prompts side by side,
``v(S) = v_1(S n words_1) + v_2(S n words_2)``), for the full and for the proxy game.

    python benchmarks/cost.py time
    nohup python benchmarks/cost.py generate > /tmp/cost-cache/generate.log 2>&1 &
    python benchmarks/cost.py report --markdown benchmarks/cost.md
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

PROMPTS = ["a red circle on the left", "a green square on the top",            # 6 words
           "a red circle and a blue square", "a green triangle and a yellow circle",  # 7 words
           "a green triangle"]                                                  # for the 10-word sum game
SUM_GAMES = [("a red circle and a blue square", "a green triangle"),           # d = 10
             ("a red circle on the left", "a green square on the top")]        # d = 12
SEEDS = (0, 1, 2, 3)
FULL_STEPS = 10
PROXY_STEPS = (2, 1, 4)
BUDGETS = (0.10, 0.25, 0.50)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def embeddings_path(cache_dir: Path, steps: int, seed: int, prompt: str) -> Path:
    return cache_dir / "embeddings" / f"{steps}-{seed}-{slug(prompt)}.npy"


def load_world(threads: int):
    import torch

    torch.set_num_threads(threads)
    from captum_diffusion.shapes_world import load_shapes_world

    return load_shapes_world()


def measure_time(args) -> None:
    """Seconds per image (generation + CLIP embedding) at each step count, interleaved, ``--repeats`` rounds."""
    import torch

    from captum_diffusion.shapes_world import DEFAULT_GENERATION

    pipe, scorer = load_world(args.threads)
    prompts = ["a red circle on the left", "a green square", "red circle on", "a blue", "the top square",
               "a green triangle and", "circle", ""] * 2
    settings = DEFAULT_GENERATION.pipeline_kwargs()
    steps_list = (FULL_STEPS, *PROXY_STEPS)
    pipe(prompts[:2], **{**settings, "num_inference_steps": 1})  # warm-up
    seconds = {steps: [] for steps in steps_list}
    for _ in range(args.repeats):
        for steps in steps_list:
            started = time.perf_counter()
            images = pipe(prompts, generator=torch.Generator().manual_seed(0),
                          **{**settings, "num_inference_steps": steps}).images
            scorer.embed_images(images)
            seconds[steps].append((time.perf_counter() - started) / len(prompts))
    per_image = {steps: float(np.median(values)) for steps, values in seconds.items()}
    result = {"threads": args.threads, "repeats": args.repeats, "images_per_batch": len(prompts),
              "seconds_per_image": {str(s): v for s, v in per_image.items()},
              "cost_ratio": {str(s): per_image[s] / per_image[FULL_STEPS] for s in steps_list}}
    path = Path(args.cache_dir) / "timing.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def generate(args) -> None:
    """Every sub-prompt of every prompt at every seed and step count, embedded; skips what is on disk."""
    from captum_diffusion.generation import TextToImage
    from captum_diffusion.shapes_world import DEFAULT_GENERATION
    from captum_diffusion.words import WordGame

    cache_dir = Path(args.cache_dir)
    pipe, scorer = load_world(args.threads)
    for steps in (FULL_STEPS, *PROXY_STEPS):
        for prompt in PROMPTS:
            for seed in SEEDS:
                path = embeddings_path(cache_dir, steps, seed, prompt)
                if path.is_file():
                    continue
                started = time.perf_counter()
                generator = TextToImage(pipe, seed=seed, batch_size=32, progress=False,
                                        cache_dir=str(cache_dir / "images"),
                                        **{**DEFAULT_GENERATION.pipeline_kwargs(), "num_inference_steps": steps})
                masks, _ = WordGame(lambda p: np.zeros(len(p)), prompt).all_coalitions()
                words = prompt.split()
                sub_prompts = [" ".join(w for w, keep in zip(words, row) if keep) for row in masks]
                embeddings = scorer.embed_images(generator(sub_prompts)).numpy()
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, embeddings)
                print(f"steps={steps} seed={seed} {prompt!r}: {len(sub_prompts)} images "
                      f"({generator.n_generated} generated), {time.perf_counter() - started:.0f} s", flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", nargs="?", default="report", choices=("time", "generate", "report"))
    parser.add_argument("--cache-dir", default="/tmp/cost-cache", help="images, embeddings, timing (kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds (time)")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(20)), help="estimator seeds (report)")
    parser.add_argument("--budgets", nargs="+", type=float, default=list(BUDGETS), help="fractions of exact's cost")
    parser.add_argument("--markdown", default=None, help="also write the tables there (report)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.step == "time":
        measure_time(args)
    elif args.step == "generate":
        generate(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
