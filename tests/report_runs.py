"""Saved runs made in seconds for report tests: ShapesWorld's ground-truth renderer draws the images (a deterministic
prompt -> image function, about 0.2 ms an image, no model), values are drawn from a seeded generator, and the run is
written with the store's own ``save_prompt`` and manifest, so ``load_run`` and the report read it as a real run.

    from report_runs import synthetic_run
    directory = synthetic_run(tmp_path / "run", n_prompts=1000, seeds=(0, 1))
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from captum_diffusion.runs.store import MANIFEST, PromptRun, SubPrompt, save_prompt, write_json
from captum_diffusion.shapes_world import render
from captum_diffusion.shapes_world.world import COLOURS, POSITIONS, SHAPES
from captum_diffusion.words import word_labels

PAYOFF = "synthetic payoff (values drawn at random; images from ShapesWorld's renderer)"


def prompt_list(n: int) -> list[str]:
    """``n`` ShapesWorld prompts of 3, 6 and 7 words, in a fixed order (the 204 prompts of the world, repeated once
    they run out: a prompt set may repeat a prompt)."""
    forms = ["a {c} {s} and a {c2} {s2}", "a {c} {s} on the {p}", "a {c} {s}"]
    combos = itertools.product(forms, COLOURS, SHAPES, POSITIONS, COLOURS, SHAPES)
    prompts = list(dict.fromkeys(f.format(c=c, s=s, p=p, c2=c2, s2=s2) for f, c, s, p, c2, s2 in combos))
    return [prompts[i % len(prompts)] for i in range(n)]


def synthetic_prompt(prompt: str, seeds, rng: np.random.Generator, *, subprompt_images: bool = False,
                     methods=("shap-exact", "lime")) -> PromptRun:
    """One prompt's result: per-seed values of ``methods`` (a strong first content word, noise per seed), base
    values, payoffs of 1, every sub-prompt's payoff (images only when ``subprompt_images``) and the full images."""
    words = prompt.split()
    d = len(words)
    truth = rng.normal(0, 0.05, d)
    truth[1 % d] += 0.25
    result = PromptRun(prompt, words, word_labels(words), list(seeds), payoff=PAYOFF)
    for k, method in enumerate(methods):
        result.values[method] = truth + rng.normal(0, 0.02 * (k + 1), (len(seeds), d))
        result.base_values[method] = 1.0 - result.values[method].sum(1)
    result.payoffs = np.ones(len(seeds))
    result.images = [render(prompt, generator=seed).image for seed in seeds]
    for seed in seeds:
        entries = []
        for mask in itertools.product("01", repeat=d):
            kept = " ".join(w for w, m in zip(words, mask) if m == "1")
            image = render(prompt, generator=1000 * seed + len(entries)).image if subprompt_images else None
            entries.append(SubPrompt("".join(mask), kept, float(rng.uniform(0.3, 1.0)), image))
        result.subprompts.append(entries)
    return result


def synthetic_run(directory, n_prompts: int, seeds=(0, 1), *, subprompt_images: int = 3, failed=(),
                  prompts=None, methods=("shap-exact", "lime")) -> Path:
    """Write a saved run of ``n_prompts`` synthetic prompts to ``directory`` (see the module docstring); the first
    ``subprompt_images`` prompts keep their sub-prompt images, the numbers in ``failed`` are saved as failed."""
    directory = Path(directory)
    prompts = prompt_list(n_prompts) if prompts is None else list(prompts)
    rng = np.random.default_rng(0)
    entries = []
    for number, prompt in enumerate(prompts):
        if number in failed:
            words = prompt.split()
            result = PromptRun(prompt, words, word_labels(words), list(seeds), status="failed",
                               error="RuntimeError: synthetic failure")
        else:
            result = synthetic_prompt(prompt, seeds, rng, subprompt_images=number < subprompt_images,
                                      methods=methods)
        save_prompt(directory, number, result)
        entries.append({"prompt": prompt, "status": result.status, "error": result.error})
    write_json(directory / MANIFEST, {
        "model": {"spec": "shapes-world-renderer", "class": "synthetic"},
        "scorer": {"class": "synthetic", "spec": None},
        "config": {"seeds": list(seeds), "words": list(methods)},
        "counts": {"images_generated": 0, "images_from_cache": 0},
        "timings": {"seconds": 0.0},
        "command": ["diffusion-explain", "explain", "a red circle", "--words", "shap-exact", "lime", "--out",
                    "my run"],
        "versions": {"captum_diffusion": "test"},
        "prompts": entries,
    })
    return directory
