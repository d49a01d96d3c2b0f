"""Word interactions and faithfulness on ShapesWorld two-object prompts, one exactly played game per prompt.

For each prompt ``"a {c1} {s1} and a {c2} {s2}"`` (7 words, 124 distinct sub-prompts per seed) and each seed, a
``PromptScore`` (shipped ShapesWorld pipeline at ``DEFAULT_GENERATION``, shipped CLIP, image reference: the
Gupta & Kanoria payoff) plays the word game; the payoff studied is the mean over seeds. Then, all from the same
cached sub-prompts (no image is generated after the first 2**7 coalitions of each seed):

- interactions (``captum_diffusion.words.explain_interactions``, exact, order 2): the *binding margin* = mean of
  the same-object colour-shape pairs (c1-s1, c2-s2) minus mean of the cross pairs (c1-s2, c2-s1), per seed and
  for the seed-averaged game (equal to the mean of the per-seed margins: the indices are linear in the payoff),
  for k-SII, STII and FSII; and the strongest k-SII pairs;
- faithfulness (``captum_diffusion.metrics.faithfulness_scores``) on the seed-averaged game of exact SHAP, LIME
  (``--lime-samples``), captum's feature ablation, and the sampling estimators at ``--sample-budget`` payoff calls
  (shap permutation and partition ``max_evals``, captum ShapleyValueSampling ``n_samples`` permutations of ``d``
  calls, captum KernelShap and Lime ``n_samples``, shapiq KernelSHAP with pairing ``budget``; seed 0): AOPC of
  the deletion and insertion curves (normalised by d+1), comprehensiveness and sufficiency of the top ``--k``
  words, each beside random word orderings (``--n-random``, seeded): mean +- std and the fraction of random
  orderings the method beats.

    python benchmarks/faithfulness.py                       # 4 prompts x seeds 0 1, ~4-5 min on 1 CPU thread
    python benchmarks/faithfulness.py --seeds 0 1 2 3 --prompts "a red circle and a blue square"
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from captum.attr import FeatureAblation, KernelShap, Lime, ShapleyValueSampling

PROMPTS = ["a red circle and a blue square", "a green triangle and a yellow circle",
           "a blue square and a red triangle", "a yellow triangle and a green square"]
SAME = [(1, 2), (5, 6)]   # colour-shape of the same object
CROSS = [(1, 6), (5, 2)]  # colour of one object with the shape of the other
INDICES = ("k-SII", "STII", "FSII")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", nargs="+", default=PROMPTS, help="ShapesWorld two-object prompts (7 words)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--k", type=int, default=2, help="top-k words for comprehensiveness / sufficiency")
    parser.add_argument("--n-random", type=int, default=500, help="random word orderings per score")
    parser.add_argument("--lime-samples", type=int, default=200)
    parser.add_argument("--sample-budget", type=int, default=64,
                        help="payoff calls of the sampling estimators (64: half of the 2**7 coalitions)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: stable on a shared machine)")
    parser.add_argument("--cache-dir", default=None, help="keep generated images there (reruns generate nothing)")
    return parser.parse_args(argv)


class SeedMean:
    """``f(prompts)``: the mean of several per-seed ``PromptScore`` of one prompt (each caches its scores)."""

    def __init__(self, scores):
        self.scores = list(scores)
        self.prompt = self.scores[0].prompt

    def __call__(self, prompts):
        return np.mean([score(prompts) for score in self.scores], axis=0)


def margin(iv) -> float:
    return float(np.mean([iv[p] for p in SAME]) - np.mean([iv[p] for p in CROSS]))


def sampled(prompt, f, budget: int) -> dict:
    """Attributions of the sampling estimators at ``budget`` payoff calls (seed 0), by name."""
    import shapiq

    import shap_adapters.text as shap_text
    from captum_diffusion.words import WordAttribution, WordGame

    d = len(prompt.split())
    game = WordGame(f, prompt)
    kernel = shapiq.KernelSHAP(d, pairing_trick=True, random_state=0).approximate(budget=budget, game=game)
    return {
        f"shap permutation ({budget})": shap_text.explain_prompt(prompt, f, "permutation", max_evals=budget,
                                                                 progress=False),
        f"shap partition ({budget})": shap_text.explain_prompt(prompt, f, "partition", max_evals=budget,
                                                               progress=False),
        f"captum ShapleyValueSampling ({budget // d} perm.)": WordAttribution(
            ShapleyValueSampling(f), progress=False).attribute(prompt, n_samples=max(1, budget // d)),
        f"captum KernelShap ({budget})": WordAttribution(KernelShap(f), progress=False).attribute(
            prompt, n_samples=budget),
        f"captum Lime ({budget})": WordAttribution(Lime(f), progress=False).attribute(prompt, n_samples=budget),
        f"shapiq KernelSHAP paired ({budget})": [kernel[(i,)] for i in range(d)],
    }


def run_prompt(pipe, scorer, prompt, args):
    import lime_adapters.text as lime_text
    import shap_adapters.text as shap_text
    from captum_diffusion.generation import TextToImage
    from captum_diffusion.metrics import faithfulness_scores
    from captum_diffusion.scoring import PromptScore
    from captum_diffusion.shapes_world import DEFAULT_GENERATION, parse_prompt
    from captum_diffusion.words import WordAttribution, WordGame, explain_interactions, strongest_pairs, word_labels

    if len(parse_prompt(prompt)) != 2:
        raise SystemExit(f"{prompt!r} is not a two-object prompt 'a {{colour}} {{shape}} and a {{colour}} {{shape}}'")
    generators, per_seed = [], []
    for seed in args.seeds:
        generator = TextToImage(pipe, seed=seed, batch_size=args.batch_size, progress=False, cache_dir=args.cache_dir,
                                **DEFAULT_GENERATION.pipeline_kwargs())
        generators.append(generator)
        per_seed.append(PromptScore(generator, scorer, prompt))
    f = SeedMean(per_seed)
    started = time.perf_counter()
    game = WordGame(f, prompt)
    game.all_coalitions()  # every sub-prompt at every seed: the only images generated for this prompt
    generation_s = time.perf_counter() - started
    images = sum(g.n_generated for g in generators)

    started = time.perf_counter()
    margins = {index: [margin(explain_interactions(prompt, score, index)) for score in per_seed] for index in INDICES}
    averaged = {index: explain_interactions(prompt, game, index) for index in INDICES}
    pairs = {index: ([averaged[index][p] for p in SAME], [averaged[index][p] for p in CROSS]) for index in INDICES}
    for index in INDICES:  # linearity: the averaged game's margin is the mean of the per-seed margins
        assert abs(margin(averaged[index]) - np.mean(margins[index])) < 1e-9
    labels = word_labels(game.words)
    top = strongest_pairs(averaged["k-SII"], labels, k=3)

    attributions = {
        "exact SHAP": shap_text.explain_prompt(prompt, f, algorithm="exact", progress=False),
        f"LIME ({args.lime_samples})": lime_text.word_weights(
            lime_text.explain_prompt(prompt, f, num_samples=args.lime_samples, seed=0)),
        "feature ablation": WordAttribution(FeatureAblation(f), progress=False).attribute(prompt),
        **sampled(prompt, f, args.sample_budget),
    }
    scores = {name: faithfulness_scores(game, None, a, k=args.k, n_random=args.n_random, seed=0)
              for name, a in attributions.items()}
    explain_s = time.perf_counter() - started
    assert sum(g.n_generated for g in generators) == images, "explainers generated images: the cache was missed"
    return dict(margins=margins, pairs=pairs, top=top, scores=scores, images=images, generation_s=generation_s,
                explain_s=explain_s)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from captum_diffusion.shapes_world import HELD_OUT_PROMPTS, load_shapes_world

    started = time.perf_counter()
    pipe, scorer = load_shapes_world()
    results = {prompt: run_prompt(pipe, scorer, prompt, args) for prompt in args.prompts}
    total = time.perf_counter() - started

    seeds = " ".join(map(str, args.seeds))
    print(f"ShapesWorld, CLIP image payoff averaged over seeds {seeds}; torch threads {args.threads}\n")
    print("binding margin = mean(same-object colour-shape pairs) - mean(cross pairs); per seed, then the mean")
    print(f"{'prompt':<40}{'index':<7}{'per seed':>24}{'mean':>9}   same pairs / cross pairs (seed-averaged game)")
    all_margins = {index: [] for index in INDICES}
    for prompt, r in results.items():
        for index in INDICES:
            m = r["margins"][index]
            all_margins[index].extend(m)
            name = prompt + (" (held out)" if prompt in HELD_OUT_PROMPTS else "")
            same, cross = (" ".join(f"{x:+.3f}" for x in values) for values in r["pairs"][index])
            print(f"{name if index == 'k-SII' else '':<40}{index:<7}{' '.join(f'{x:+.3f}' for x in m):>24}"
                  f"{np.mean(m):>+9.3f}   {same} / {cross}")
        print(f"{'':<47}strongest k-SII pairs: " + ", ".join(f"{a}-{b} {v:+.3f}" for a, b, v in r["top"]))
    for index in INDICES:
        m = np.array(all_margins[index])
        print(f"all prompts x seeds, {index}: mean margin {m.mean():+.3f} (std {m.std():.3f}), "
              f"positive in {(m > 0).sum()}/{m.size}")

    print(f"\nfaithfulness on the seed-averaged game (k = {args.k}; random: {args.n_random} orderings, seed 0): "
          "value | random mean +- std | beats random")
    metrics = ("aopc_deletion", "aopc_insertion", "comprehensiveness", "sufficiency")
    print(f"{'prompt / method':<40}" + "".join(f"{m:>34}" for m in metrics))
    summary: dict[str, dict[str, list]] = {}
    for prompt, r in results.items():
        print(prompt)
        for method, scores in r["scores"].items():
            cells = []
            for m in metrics:
                s = scores[m]
                summary.setdefault(method, {}).setdefault(m, []).append((s.value, s.random_mean, s.beats_random))
                cells.append(f"{s.value:>8.3f} | {s.random_mean:.3f} +- {s.random_std:.3f} | {s.beats_random:>4.0%}")
            print(f"  {method:<38}" + "".join(f"{c:>34}" for c in cells))
    print("mean over prompts (value vs random mean, beats random):")
    for method, by_metric in summary.items():
        cells = []
        for m in metrics:
            v = np.array(by_metric[m])
            cells.append(f"{v[:, 0].mean():>8.3f} vs {v[:, 1].mean():.3f}, {v[:, 2].mean():>4.0%}")
        print(f"  {method:<38}" + "".join(f"{c:>34}" for c in cells))
    images = sum(r["images"] for r in results.values())
    print(f"\n{images} images generated ({sum(r['generation_s'] for r in results.values()):.0f} s), explainers and "
          f"metrics {sum(r['explain_s'] for r in results.values()):.0f} s with no new image; total {total:.0f} s "
          "(model loading and shap's first-call JIT included)")


if __name__ == "__main__":
    main()
