"""Word attribution cost: exact SHAP + LIME(200) through the adapters vs the paper's naive loop, in one run.

Both sides explain the same 4-word prompt on the same pipeline, seed and CLIP payoff:

- adapters: ``TextToImage`` (seeded, batched, cached) -> ``PromptScore`` -> ``shap_adapters.explain_prompt(
  algorithm="exact")`` then ``lime_adapters.explain_prompt(num_samples=200)``, sharing one cache;
- naive (how the Gupta & Kanoria code worked): each explainer calls the pipeline once per sub-prompt it asks
  for, one prompt at a time, no cache, no batching; SHAP by the brute-force Shapley sum over all 2**d
  subsets, LIME on lime's own 200 perturbations (same sampler, same seed), scoring each image with CLIP alone.

Prints wall time and images generated for each side, their ratios, the adapters' overhead over the time
spent inside the pipeline, and how far the two sides' attributions are apart (they play the same game).
Uses the ShapesWorld model when its weights are present, else a tiny random-weight Stable Diffusion.

    python benchmarks/token_attribution.py            # --steps, --batch-size, --threads, --prompt
"""
from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompt", default="a green triangle right", help="a 4-word prompt")
    parser.add_argument("--steps", type=int, default=None, help="inference steps (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lime-samples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: stable timings here)")
    parser.add_argument("--tiny", action="store_true", help="use the tiny random-weight SD even if ShapesWorld is there")
    return parser.parse_args(argv)


def load_models(tiny: bool):
    """(pipeline, CLIPSimilarity, generation settings dict, description)."""
    from captum_diffusion import shapes_world
    from captum_diffusion.scoring.clip import CLIPSimilarity
    from captum_diffusion.testing import tiny_clip, tiny_stable_diffusion

    if not tiny and shapes_world.weights_available():
        pipe, clip = shapes_world.load_shapes_world()
        s = shapes_world.DEFAULT_GENERATION
        settings = dict(seed=s.seed, **s.pipeline_kwargs())
        return pipe, clip, settings, "ShapesWorld (trained tiny SD, shipped weights)"
    pipe = tiny_stable_diffusion("sd1", seed=0)
    settings = dict(seed=0, num_inference_steps=10, guidance_scale=7.5, height=32, width=32)
    return pipe, CLIPSimilarity(*tiny_clip(seed=0)), settings, "tiny random-weight SD 1.x (captum_diffusion.testing)"


class Timer:
    """Wrap a callable, accumulating its wall time and call count."""

    def __init__(self, function):
        self.function, self.seconds, self.calls = function, 0.0, 0

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1


def run_adapters(pipe, clip, settings, prompt, batch_size, lime_samples):
    import lime_adapters.text as lime_text
    import shap_adapters.text as shap_text
    from captum_diffusion.generation import TextToImage
    from captum_diffusion.scoring import PromptScore

    generator = TextToImage(pipe, batch_size=batch_size, progress=False, **settings)
    generator.generate = pipeline_timer = Timer(generator.generate)  # instrument: time in the pipeline
    scorer_timer = Timer(clip.image_similarity)
    started = time.perf_counter()
    shap_values = shap_text.explain_prompt(prompt, PromptScore(generator, scorer_timer, prompt), algorithm="exact",
                                           progress=False).values
    lime_weights = lime_text.word_weights(lime_text.explain_prompt(prompt, PromptScore(generator, scorer_timer, prompt),
                                                                   num_samples=lime_samples))
    seconds = time.perf_counter() - started
    return dict(seconds=seconds, images=generator.n_generated, pipeline_calls=pipeline_timer.calls,
                pipeline_seconds=pipeline_timer.seconds, scoring_seconds=scorer_timer.seconds,
                shap=np.asarray(shap_values), lime=lime_weights)


def run_naive(pipe, clip, settings, prompt, lime_samples):
    from captum_diffusion.words.attribution import shapley_from_values
    from captum_diffusion.words import WordGame, subprompt
    from lime_adapters.text import WordClassifierFn, word_explainer, word_weights

    kwargs = {k: v for k, v in settings.items() if k != "seed"}
    counter = {"images": 0, "pipeline_seconds": 0.0}

    def generate(text: str):  # one pipeline call per sub-prompt, seeded, nothing cached
        started = time.perf_counter()
        image = pipe(text, generator=torch.Generator("cpu").manual_seed(settings["seed"]), **kwargs).images[0]
        counter["pipeline_seconds"] += time.perf_counter() - started
        counter["images"] += 1
        return image

    words = prompt.split()
    d = len(words)
    started = time.perf_counter()
    # SHAP: the Shapley formula over every subset (the empty one included), one image per subset
    reference = generate(prompt)
    masks = np.array(list(itertools.product((False, True), repeat=d)))
    values = np.array([clip.image_similarity([generate(subprompt(words, m))], reference)[0] for m in masks])
    shap_values = shapley_from_values(masks, values)
    # LIME: lime's own 200 perturbations, one image each
    reference = generate(prompt)
    to_mask = WordClassifierFn(WordGame(lambda prompts: np.zeros(len(prompts)), prompt))

    def classifier_fn(texts):
        images = [generate(subprompt(words, to_mask.mask_of(text))) for text in texts]
        return np.array([clip.image_similarity([image], reference)[0] for image in images])[:, None]

    explanation = word_explainer(seed=0, kernel_width=25, feature_selection="none").explain_instance(
        prompt, classifier_fn, labels=(0,), num_features=d, num_samples=lime_samples)

    seconds = time.perf_counter() - started
    return dict(seconds=seconds, images=counter["images"], pipeline_calls=counter["images"],
                pipeline_seconds=counter["pipeline_seconds"], shap=shap_values, lime=word_weights(explanation))


def warm_up(pipe, clip, settings) -> float:
    """One-time costs, paid before timing either side: the first pipeline / CLIP call and shap's numba JIT
    compilation of its maskers (first explanation in a process). Returns the seconds spent."""
    import lime_adapters.text as lime_text
    import shap_adapters.text as shap_text

    started = time.perf_counter()
    pipe(["warm up"], num_inference_steps=2, height=settings["height"], width=settings["width"])
    clip.image_similarity([np.zeros((8, 8, 3), np.uint8)], np.zeros((8, 8, 3), np.uint8))
    shap_text.explain_prompt("w x y z", lambda prompts: np.zeros(len(prompts)), algorithm="exact", progress=False)
    lime_text.explain_prompt("w x y z", lambda prompts: np.arange(len(prompts), dtype=float), num_samples=20)
    return time.perf_counter() - started


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe, clip, settings, description = load_models(args.tiny)
    if args.steps is not None:
        settings["num_inference_steps"] = args.steps
    if len(args.prompt.split()) != 4:
        raise SystemExit(f"--prompt must have 4 words, got {args.prompt!r}")
    warm_up_seconds = warm_up(pipe, clip, settings)

    ours = run_adapters(pipe, clip, settings, args.prompt, args.batch_size, args.lime_samples)
    naive = run_naive(pipe, clip, settings, args.prompt, args.lime_samples)

    print(f"pipeline: {description}; {type(pipe).__name__}, {settings}, torch threads {args.threads}")
    print(f"prompt {args.prompt!r} (d = 4): exact SHAP (2**4 sub-prompts) + LIME ({args.lime_samples} samples)\n")
    print(f"{'':<34}{'wall s':>9}{'images':>8}{'pipeline calls':>16}{'s in pipeline':>15}")
    for name, r in (("adapters (cached, batched)", ours), ("naive loop (paper's code path)", naive)):
        print(f"{name:<34}{r['seconds']:>9.2f}{r['images']:>8d}{r['pipeline_calls']:>16d}{r['pipeline_seconds']:>15.2f}")
    print(f"(excluded from both: one-time warm-up {warm_up_seconds:.1f} s, mostly shap's numba JIT on the first "
          "explanation in a process)")
    print(f"\nratio naive / adapters: wall time {naive['seconds'] / ours['seconds']:.1f}x, "
          f"images {naive['images'] / ours['images']:.1f}x")
    outside = ours["seconds"] - ours["pipeline_seconds"]
    bookkeeping = outside - ours["scoring_seconds"]
    print(f"adapters' overhead over time in the pipeline: {outside:.2f} s = {outside / ours['pipeline_seconds']:.1%} "
          f"of {ours['pipeline_seconds']:.2f} s (CLIP scoring {ours['scoring_seconds']:.2f} s, "
          f"shap + lime + adapters + cache {bookkeeping:.2f} s = {bookkeeping / ours['pipeline_seconds']:.1%})")
    print(f"per image in the pipeline: adapters {ours['pipeline_seconds'] / ours['images']:.3f} s (batches of "
          f"{args.batch_size}), naive {naive['pipeline_seconds'] / naive['images']:.3f} s")
    print(f"same game, same answers: max |SHAP adapters - naive| = {np.abs(ours['shap'] - naive['shap']).max():.2e}, "
          f"max |LIME adapters - naive| = {np.abs(ours['lime'] - naive['lime']).max():.2e}")
    print(f"SHAP values {np.round(ours['shap'], 4).tolist()}, LIME weights {np.round(ours['lime'], 4).tolist()}")


if __name__ == "__main__":
    main()
