"""GAN vs diffusion: do the two ShapesWorld generators rely on the same words, and does Grad-CAM find the word's
object on the GAN's images?

Part 1, word attributions. For each prompt, exact Shapley values of its words for each model (the shipped UNet at
DEFAULT_GENERATION, the shipped GAN), with the Gupta & Kanoria payoff (``PromptScore``: CLIP image cosine between a
sub-prompt's image and the full prompt's image at the same seed), averaged over ``--seeds`` seeds (Shapley values
are linear in the game, so this is the Shapley value of the seed-averaged payoff). Same prompts, same seeds, same
scorer (the shipped CLIP). Printed per prompt and on average: percent of ranks aligned and RMSE (the paper's
metrics, ``captum_diffusion.metrics.ranking``; both vectors normalised to sum to 1, RMSE = root of the mean) between
the GAN's and the UNet's values, and each model's share of the (normalised) attribution per word kind (colour,
shape, position, function word) per template.

Part 2, Grad-CAM localisation (``CLIPSaliency(scorer, "gradcam")``, the shipped CLIP, second-to-last layer; plain
input-gradient saliency beside it). On images whose analysed objects are exactly the prompt's (single-object and
two-object held-out prompts x seeds; rendered images as the control), for each colour / shape word: pointing game
(the map's maximum falls in the word's object, dilated by 2 px) and the map's mass per pixel inside the object over
that outside. The same for the UNet's images.

Command: ``OMP_NUM_THREADS=1 python benchmarks/gan_vs_diffusion.py`` (about 10 CPU minutes, the UNet's images
dominate; ``--seeds 1 --n-pair 2`` for a quick look; ``--cache-dir DIR`` keeps the UNet's images for reruns).
"""
from __future__ import annotations

import argparse
import itertools
import os

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import shap_adapters.text as shap_text  # noqa: E402
from captum_diffusion.generation import TextToImage  # noqa: E402
from captum_diffusion.image.saliency import CLIPSaliency  # noqa: E402
from captum_diffusion.metrics.ranking import normalize_scores, percent_ranks_aligned, rmse  # noqa: E402
from captum_diffusion.scoring import PromptScore  # noqa: E402
from captum_diffusion.shapes_world import (COLOURS, DEFAULT_GENERATION, FUNCTION_WORDS, HELD_OUT_PROMPTS,  # noqa: E402
                                           PAIR_PROMPTS, POSITION_PROMPTS, POSITIONS, SHAPES, SINGLE_PROMPTS, analyse,
                                           load_shapes_world, parse_prompt, render)
from captum_diffusion.shapes_world.gan import load_shapes_world_gan  # noqa: E402

KINDS = {"colour": set(COLOURS), "shape": set(SHAPES), "position": set(POSITIONS), "function": set(FUNCTION_WORDS)}


def kind_of(word: str) -> str:
    return next(kind for kind, words in KINDS.items() if word in words)


def template_of(prompt: str) -> str:
    return "single" if prompt in SINGLE_PROMPTS else "position" if prompt in POSITION_PROMPTS else "pair"


def shapley(generators, scorer, prompt: str) -> np.ndarray:
    """Exact Shapley values ``(d,)`` of the prompt's words, averaged over the generators (one per seed)."""
    return np.mean([shap_text.explain_prompt(prompt, PromptScore(g, scorer, prompt), algorithm="exact",
                                             progress=False).values for g in generators], axis=0)


def word_attributions(args, gan, unet, scorer, prompts):
    gans = [TextToImage(gan, seed=s, batch_size=64, progress=False) for s in range(args.seeds)]
    unets = [TextToImage(unet, seed=s, batch_size=16, progress=False, cache_dir=args.cache_dir,
                         **DEFAULT_GENERATION.pipeline_kwargs()) for s in range(args.seeds)]
    aligned, errors = [], []
    shares = {name: {} for name in ("gan", "unet")}
    print(f"exact Shapley values of the words, CLIP image payoff, mean over seeds 0..{args.seeds - 1}")
    for prompt in prompts:
        words = prompt.split()
        values = {"gan": shapley(gans, scorer, prompt), "unet": shapley(unets, scorer, prompt)}
        try:
            norm = {k: normalize_scores(v) for k, v in values.items()}
        except ValueError as error:  # a game whose values sum to ~0 cannot be normalised
            print(f"  {prompt!r}: skipped ({error})")
            continue
        aligned.append(percent_ranks_aligned(norm["gan"], norm["unet"]))
        errors.append(rmse(norm["gan"], norm["unet"], normalize=False))
        for name, v in norm.items():
            for word, share in zip(words, v):
                shares[name].setdefault((template_of(prompt), kind_of(word)), []).append(share)
        print(f"  {prompt!r}: ranks aligned {aligned[-1]:.0%}, RMSE {errors[-1]:.3f}")
        for name in ("gan", "unet"):
            print(f"    {name:4s} " + "  ".join(f"{w} {v:+.3f}" for w, v in zip(words, values[name])))
    print(f"GAN vs UNet over {len(aligned)} prompts: percent of ranks aligned {100 * np.mean(aligned):.1f}%, "
          f"RMSE {np.mean(errors):.3f} (normalised attributions, mean over prompts)")
    print("share of the normalised attribution per word (mean per word of that kind), GAN / UNet:")
    for template in ("single", "position", "pair"):
        cells = []
        for kind in KINDS:
            g, u = shares["gan"].get((template, kind)), shares["unet"].get((template, kind))
            if g:
                cells.append(f"{kind} {np.mean(g):.2f} / {np.mean(u):.2f}")
        print(f"  {template:8s} " + "; ".join(cells))


def exact_scene(image, prompt: str):
    """Per colour/shape word of ``prompt``, its object's mask, or None unless the image shows exactly the prompt."""
    from scipy import ndimage

    specs, found = parse_prompt(prompt), analyse(image)
    if sorted((o.colour, o.shape) for o in found) != sorted((s.colour, s.shape) for s in specs):
        return None
    if len(set(specs)) < len(specs):  # two identical objects: which is which is not defined
        return None
    objects = [next(o for o in found if (o.colour, o.shape) == (s.colour, s.shape)) for s in specs]
    masks, obj = [], -1
    for word in prompt.split():
        if word in COLOURS:
            obj += 1
        if word in COLOURS or word in SHAPES:
            masks.append((word, ndimage.binary_dilation(objects[obj].mask, iterations=2)))
    return masks


def localisation(saliency: CLIPSaliency, scenes) -> tuple[float, float, int]:
    """(pointing-game hit rate, median inside/outside mass-per-pixel ratio, number of words) over ``scenes``."""
    hits, ratios = [], []
    for image, masks in scenes:
        words = [w for w, _ in masks]
        maps = saliency.attribute(image, words).abs().numpy()
        for m, (_, mask) in zip(maps, masks):
            hits.append(bool(mask.flat[int(np.argmax(m))]))
            ratios.append(m[mask].mean() / max(m[~mask].mean(), 1e-12))
    return float(np.mean(hits)), float(np.median(ratios)), len(hits)


def gradcam(args, gan, unet, scorer):
    kinds = {"single": [p for p in HELD_OUT_PROMPTS if p in POSITION_PROMPTS],
             "pair": [p for p in HELD_OUT_PROMPTS if p in PAIR_PROMPTS][: args.n_cam]}
    sources = {"rendered": lambda p, s: render(p, generator=s).image,
               "GAN": lambda p, s: gan([p], generator=[torch.Generator().manual_seed(s)])[0],
               "UNet": lambda p, s: unet([p], generator=[torch.Generator().manual_seed(s)],
                                         **DEFAULT_GENERATION.pipeline_kwargs()).images[0]}
    methods = {"gradcam": CLIPSaliency(scorer, method="gradcam"), "saliency": CLIPSaliency(scorer, method="saliency")}
    print(f"localisation of colour/shape words on images of held-out prompts ({len(kinds['single'])} single-object "
          f"with a position, {len(kinds['pair'])} two-object) x {args.seeds} seeds that show exactly the prompt "
          f"(pointing game: the map's maximum on the word's object, dilated 2 px; ratio: mass per pixel inside / "
          f"outside, median)")
    for (kind, prompts), (name, make) in itertools.product(kinds.items(), sources.items()):
        scenes = []
        for p in prompts:
            for s in range(args.seeds):
                image = np.asarray(make(p, s))
                masks = exact_scene(image, p)
                if masks is not None:
                    scenes.append((image, masks))
        line = f"  {kind:6s} {name:8s} {len(scenes):3d} images"
        for method, saliency in methods.items():
            if scenes:
                hit, ratio, n = localisation(saliency, scenes)
                line += f" | {method}: pointing {hit:.0%}, ratio {ratio:.2f} ({n} words)"
        print(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=2, help="seeds per prompt (0..n-1)")
    ap.add_argument("--n-single", type=int, default=4, help="'a {colour} {shape}' prompts")
    ap.add_argument("--n-position", type=int, default=4, help="held-out position prompts")
    ap.add_argument("--n-pair", type=int, default=3, help="held-out two-object prompts (7 words: 128 sub-prompts)")
    ap.add_argument("--n-cam", type=int, default=12, help="held-out two-object prompts for Grad-CAM")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache-dir", help="keep the UNet's images there (a rerun with new GAN weights reuses them)")
    ap.add_argument("--skip-words", action="store_true", help="only the Grad-CAM part")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    unet, scorer = load_shapes_world()
    gan, _ = load_shapes_world_gan()
    rng = np.random.default_rng(0)
    prompts = (list(rng.choice(SINGLE_PROMPTS, args.n_single, replace=False))
               + list(rng.choice([p for p in HELD_OUT_PROMPTS if p in POSITION_PROMPTS], args.n_position,
                                 replace=False))
               + list(rng.choice([p for p in HELD_OUT_PROMPTS if p in PAIR_PROMPTS], args.n_pair, replace=False)))
    if not args.skip_words:
        word_attributions(args, gan, unet, scorer, [str(p) for p in prompts])
    gradcam(args, gan, unet, scorer)


if __name__ == "__main__":
    main()
