"""Quality of the shipped ShapesWorld model, measured with the analyser (the world's ground truth).

Figures (issue 3 targets in brackets), on prompts the UNet training never saw (HELD_OUT_PROMPTS):
- single object "a {colour} {shape} on the {position}", 12 held-out prompts x ``--single-seeds`` seeds:
  right colour [>= 90%], right shape [>= 75%], right position [>= 75%] of the largest object found;
- two objects "a {c1} {s1} and a {c2} {s2}", 36 held-out prompts x ``--pair-seeds`` seeds: both present with
  the right colours [>= 70%] (an object of colour c1 and one of colour c2, distinct; also reported with the
  layout: c1 in the left half and c2 in the right half, and with both shapes right);
- CLIP top-1 among the 12 "a {colour} {shape}" prompts on rendered single objects [>= 90%];
- seconds per image at the model's default settings (one prompt per call, median of ``--repeats``, with 1 and 2 torch
  threads) [<= 0.5 s].
For comparison the same single/pair figures on as many training prompts are printed too.

- CLIP score (CS, RATLIP's metric: 100 x cosine of the shipped CLIP's image and prompt embeddings, not clamped)
  of the held-out images, single and pair together.

Command: ``python benchmarks/shapes_world_quality.py`` (default 10 x 12 single + 4 x 36 pair = 264 held-out
images); ``--model gan`` measures the shipped GAN (``load_shapes_world_gan``), ``--model transformer`` the shipped
SD3-style transformer (``load_shapes_world(family="transformer")`` at TRANSFORMER_GENERATION), on the same prompts
and seeds.
Each generation uses its own ``torch.Generator().manual_seed(seed)``; seeds are 1000 + index.
"""
from __future__ import annotations

import argparse
import functools
import os
import time

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from captum_diffusion.metrics.clip import clip_score
from captum_diffusion.shapes_world import (FAMILY_GENERATION, HELD_OUT_PROMPTS, PAIR_PROMPTS, POSITION_PROMPTS,
                                           SINGLE_PROMPTS, TRAIN_PROMPTS, analyse, load_shapes_world, parse_prompt,
                                           render)
from captum_diffusion.shapes_world.gan import load_shapes_world_gan

LOADERS = {"unet": load_shapes_world, "gan": load_shapes_world_gan,
           "transformer": functools.partial(load_shapes_world, family="transformer")}


def generate(pipe, prompt_seed_pairs, batch_size=16):
    """One image per (prompt, seed), batched, each from its own seeded generator (a diffusers pipeline, or the
    GAN: a ``prompts -> images`` callable taking ``generator=``)."""
    images = []
    for i in range(0, len(prompt_seed_pairs), batch_size):
        chunk = prompt_seed_pairs[i:i + batch_size]
        prompts, generators = [p for p, _ in chunk], [torch.Generator().manual_seed(s) for _, s in chunk]
        if hasattr(pipe, "unet") or hasattr(pipe, "transformer"):
            settings = FAMILY_GENERATION["unet" if hasattr(pipe, "unet") else "transformer"]
            images += pipe(prompts, generator=generators, **settings.pipeline_kwargs()).images
        else:
            images += pipe(prompts, generator=generators)
    return images


def single_scores(prompt, image) -> tuple[bool, bool, bool]:
    spec = parse_prompt(prompt)[0]
    found = analyse(image)
    if not found:
        return False, False, False
    main = max(found, key=lambda o: o.area)
    return main.colour == spec.colour, main.shape == spec.shape, spec.region is None or main.in_region(spec.region)


def pair_scores(prompt, image) -> tuple[bool, bool, bool]:
    """(both colours present as distinct objects, ... with c1 left and c2 right, ... and both shapes right)."""
    (a, b), found = parse_prompt(prompt), analyse(image)
    present = any(o.colour == a.colour and p.colour == b.colour for o in found for p in found if o is not p)
    left = [o for o in found if o.horizontal == "left"]
    right = [o for o in found if o.horizontal == "right"]
    laid = any(o.colour == a.colour for o in left) and any(o.colour == b.colour for o in right)
    shaped = (any((o.colour, o.shape) == (a.colour, a.shape) for o in left)
              and any((o.colour, o.shape) == (b.colour, b.shape) for o in right))
    return present, laid, shaped


def evaluate(pipe, prompts, seeds, score, scorer=None):
    """Mean of ``score(prompt, image)`` over prompts x seeds, the image count and (with ``scorer``) the CLIP
    scores ``(n,)`` of the images against their prompts."""
    pairs = [(p, 1000 + s) for p in prompts for s in range(seeds)]
    images = generate(pipe, pairs)
    scores = np.array([score(p, im) for (p, _), im in zip(pairs, images)], dtype=float).mean(0)
    cs = None if scorer is None else clip_score(images, [p for p, _ in pairs], scorer, reduction="none")
    return scores, len(pairs), cs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(LOADERS), default="unet",
                    help="the shipped UNet pipeline (default) or the shipped GAN")
    ap.add_argument("--single-seeds", type=int, default=10)
    ap.add_argument("--pair-seeds", type=int, default=4)
    ap.add_argument("--clip-renders", type=int, default=25, help="renders per prompt for the CLIP top-1")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the quality part")
    ap.add_argument("--device", default="cpu", help="device for the quality part (the timing is always on CPU)")
    ap.add_argument("--no-timing", action="store_true", help="skip the seconds-per-image part")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe, scorer = LOADERS[args.model](device=args.device)
    print(f"model: {args.model}" + (f"; default generation: {FAMILY_GENERATION[args.model]}"
                                    if args.model in FAMILY_GENERATION else ""))

    held_single = [p for p in HELD_OUT_PROMPTS if p in POSITION_PROMPTS]
    held_pair = [p for p in HELD_OUT_PROMPTS if p in PAIR_PROMPTS]
    rng = np.random.default_rng(0)
    train_single = [p for p in TRAIN_PROMPTS if p in POSITION_PROMPTS]
    train_single = list(rng.choice(train_single, len(held_single), replace=False))
    train_pair = list(rng.choice([p for p in TRAIN_PROMPTS if p in PAIR_PROMPTS], len(held_pair), replace=False))

    for name, single, pair in (("held-out", held_single, held_pair), ("training", train_single, train_pair)):
        (colour, shape, position), n1, cs1 = evaluate(pipe, single, args.single_seeds, single_scores, scorer)
        (present, laid, shaped), n2, cs2 = evaluate(pipe, pair, args.pair_seeds, pair_scores, scorer)
        print(f"[{name}] single object ({len(single)} prompts x {args.single_seeds} seeds = {n1} images): "
              f"right colour {colour:.1%} (>= 90%), right shape {shape:.1%} (>= 75%), "
              f"right position {position:.1%} (>= 75%)")
        print(f"[{name}] two objects ({len(pair)} prompts x {args.pair_seeds} seeds = {n2} images): "
              f"both present with the right colours {present:.1%} (>= 70%); "
              f"also left/right as stated {laid:.1%}; also both shapes right {shaped:.1%}")
        print(f"[{name}] CLIP score CS (100 x cosine, shipped CLIP) over the {n1 + n2} images: "
              f"{np.concatenate([cs1, cs2]).mean():.2f} (single {cs1.mean():.2f}, pairs {cs2.mean():.2f})")
    (colour, shape, _), n, _ = evaluate(pipe, SINGLE_PROMPTS, args.single_seeds, single_scores)
    print(f"[training] 'a {{colour}} {{shape}}' ({n} images): right colour {colour:.1%}, right shape {shape:.1%}")

    truth = np.repeat(np.arange(len(SINGLE_PROMPTS)), args.clip_renders)
    images = [render(p, rng).image for p in SINGLE_PROMPTS for _ in range(args.clip_renders)]
    top1 = (scorer.text_similarity(images, SINGLE_PROMPTS).argmax(1) == truth).mean()
    print(f"CLIP top-1 among the 12 'a {{colour}} {{shape}}' prompts on {len(images)} rendered images: "
          f"{top1:.1%} (>= 90%)")

    if args.no_timing:
        return
    if pipe.device.type != "cpu":
        pipe, _ = LOADERS[args.model]()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        generate(pipe, [("a red circle", 0)])  # warm-up
        times = []
        for r in range(args.repeats):
            start = time.perf_counter()
            generate(pipe, [("a blue square on the left", r)])
            times.append(time.perf_counter() - start)
        default = FAMILY_GENERATION.get(args.model)
        settings = (f"{default.num_inference_steps} steps, guidance {default.guidance_scale}" if default
                    else "one forward pass")
        print(f"seconds per image at the default settings ({settings}, {threads} torch thread(s)): median "
              f"{np.median(times):.3f} s, min {min(times):.3f} s over {args.repeats} (<= 0.5 s)")


if __name__ == "__main__":
    main()
