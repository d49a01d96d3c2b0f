"""Shapley estimators per image budget: error against exact values on word games played once, exactly.

Games (every sub-prompt generated once, images in ``<cache-dir>/images``, the table of payoffs in
``<cache-dir>/games/*.json``, so a rerun generates nothing and runs the estimators only):

- ``shapes-world``: the shipped ShapesWorld pipeline at ``DEFAULT_GENERATION`` (image seed 0) and its CLIP, the
  Gupta & Kanoria image payoff (``PromptScore``), on the longest prompts the world has: two 6-word position prompts
  and two 7-word two-object prompts.
- ``tiny``: the random-weight SD 1.x of ``captum_diffusion.testing`` (``tiny_stable_diffusion("sd1", seed=0)``,
  2 DDIM steps, guidance 30, image seed 0; at guidance 1 its images hardly depend on the prompt, payoffs within
  3e-4 of each other) scored by the ShapesWorld CLIP (image payoff), on the first ``d`` words of one 12-word prompt,
  ``d = 6..12`` (2**6 + ... + 2**12 = 8128 sub-prompts).
- ``shapes-world-sum``: longer games made from cached ShapesWorld games: two prompts side by side (the second
  prompt's words tagged ``_2``), ``v(S) = v_1(S n words_1) + v_2(S n words_2)``. A sum of games on disjoint players,
  so its exact Shapley values are those of each prompt, side by side. One coalition of it counts as one image
  (it stands for one generation of a longer prompt). d = 10 (7 + 3 words) and 12 (6 + 6).

Exact values: ``shap_adapters.text.explain_prompt(algorithm="exact")`` over the table.

Estimators (each through the project's adapters where they expose it, the library itself otherwise): shap
permutation / partition (``shap_adapters.text.explain_prompt``), shap ``KernelExplainer`` (on the ``WordGame``),
captum ShapleyValueSampling / KernelShap / Lime (``WordAttribution``), lime ``LimeTextExplainer``
(``lime_adapters.text``), shapiq KernelSHAP, UnbiasedKernelSHAP, SVARM, permutation / stratified sampling and
KernelSHAP-IQ of order 1 (on the ``WordGame``), shapiq's paired ("pairing trick") variants beside the unpaired ones.

Budget = distinct sub-prompts (images) the estimator asks for, the full prompt and ``""`` included: the game
counts them, and for each estimator, budget and seed the benchmark searches the largest setting of the estimator's
own knob (``max_evals``, ``n_samples``, ``num_samples``, ``budget``) that stays within the images (to 2%).
*Payoff calls* are the coalitions the estimator asks for at that setting, in its own accounting (shap's
``max_evals``, captum's ``n_samples`` times ``d`` plus one for ShapleyValueSampling, ...), repeats included;
``images / call`` says how many of them were new sub-prompts.

Metrics per run, against the exact values: normalised RMSE (``metrics.rmse``: both normalised to sum to 1, the
paper's metric; runs whose values sum to ~0 are left out and counted), percent of ranks aligned
(``metrics.percent_ranks_aligned``), top-1 word agreement; mean over ``--seeds`` (estimator seeds).

Cost (1 CPU thread, shared machine): building the games once ~15 min (8128 tiny-model and 536 ShapesWorld images);
the estimators ~35 min (each 12-word game ~10 min: 15 estimators x 4 budgets x 5 seeds x ~5 runs of the knob
search). The output of 2026-11-30 is ``benchmarks/estimators.md``.

    python benchmarks/estimators.py --markdown /tmp/estimators.md          # everything
    python benchmarks/estimators.py --games "d=10 " "d=12 "                # the rows behind auto's rule
    python benchmarks/estimators.py --games "d=7 " --seeds 0 1 --estimators "shapiq KernelSHAP paired"
"""
from __future__ import annotations

import argparse
import json
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from captum.attr import KernelShap, Lime, ShapleyValueSampling

SHAPES_WORLD_PROMPTS = ["a red circle on the left", "a green square on the top",
                        "a red circle and a blue square", "a green triangle and a yellow circle"]
TINY_PROMPT = "a small red circle left of a big blue square on green"  # 12 words; d = 6..12 use its prefixes
SUM_GAMES = [("a red circle and a blue square", "a green triangle"),       # d = 10
             ("a red circle on the left", "a green square on the top")]    # d = 12
TAG = "_2"
BUDGETS = (0.05, 0.10, 0.25, 0.50)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", default="/tmp/estimator_games", help="images and game tables (kept)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="estimator seeds")
    parser.add_argument("--budgets", nargs="+", type=float, default=list(BUDGETS), help="fractions of 2**d images")
    parser.add_argument("--games", nargs="+", default=None, help="only the games whose name contains one of these")
    parser.add_argument("--estimators", nargs="+", default=None, help="only these estimators (names as printed)")
    parser.add_argument("--markdown", default=None, help="also write the table there")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--tolerance", type=float, default=0.03, help="search precision of the estimator's knob")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------------ games

class TableScore:
    """``f(prompts) -> (n,)`` read from a table of every sub-prompt's payoff; remembers the distinct sub-prompts
    asked for (``asked``: the images an estimator would have generated)."""

    def __init__(self, scores: dict[str, float], prompt: str):
        self.scores, self.prompt = scores, prompt
        self.asked: set[str] = set()

    def __call__(self, prompts):
        self.asked.update(prompts)
        return np.array([self.scores[p] for p in prompts], dtype=np.float64)


@dataclass
class ExactGame:
    name: str
    source: str
    words: list[str]
    scores: dict[str, float]  # every sub-prompt (with "") -> payoff

    @property
    def prompt(self) -> str:
        return " ".join(self.words)

    @property
    def d(self) -> int:
        return len(self.words)

    def f(self) -> TableScore:
        return TableScore(self.scores, self.prompt)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _played(cache_dir: Path, source: str, prompt: str, make_score) -> dict[str, float]:
    """Every sub-prompt's payoff, from ``games/<source>-<prompt>.json`` or played now (``make_score()`` -> a
    ``PromptScore``) and saved there."""
    from captum_diffusion.words import WordGame

    path = cache_dir / "games" / f"{source}-{_slug(prompt)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    started = time.perf_counter()
    score = make_score()
    before = score.generator.n_generated
    WordGame(score, prompt).all_coalitions()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(score.scores))
    print(f"  played {source} {prompt!r}: {len(score.scores)} sub-prompts, "
          f"{score.generator.n_generated - before} generated, {time.perf_counter() - started:.0f} s", flush=True)
    return score.scores


def build_games(cache_dir: Path, wanted) -> list[ExactGame]:
    from captum_diffusion.generation import TextToImage
    from captum_diffusion.scoring import PromptScore
    from captum_diffusion.shapes_world import DEFAULT_GENERATION, load_shapes_world
    from captum_diffusion.testing import tiny_stable_diffusion

    images = str(cache_dir / "images")
    pipe, scorer = load_shapes_world()
    world = TextToImage(pipe, seed=0, batch_size=32, progress=False, cache_dir=images,
                        **DEFAULT_GENERATION.pipeline_kwargs())
    tiny_pipe = None

    def world_game(prompt):
        return _played(cache_dir, "shapes-world", prompt, lambda: PromptScore(world, scorer, prompt))

    def tiny_game(prompt):
        nonlocal tiny_pipe
        if tiny_pipe is None:
            tiny_pipe = tiny_stable_diffusion("sd1", seed=0)
        tiny = TextToImage(tiny_pipe, seed=0, batch_size=64, progress=False, cache_dir=images,
                           num_inference_steps=2, guidance_scale=30.0)
        return _played(cache_dir, "tiny", prompt, lambda: PromptScore(tiny, scorer, prompt))

    games = []
    for prompt in SHAPES_WORLD_PROMPTS:
        name = f"shapes-world d={len(prompt.split())} '{prompt}'"
        if wanted(name):
            games.append(ExactGame(name, "shapes-world", prompt.split(), world_game(prompt)))
    words = TINY_PROMPT.split()
    for d in range(6, len(words) + 1):
        prompt = " ".join(words[:d])
        name = f"tiny d={d} '{prompt}'"
        if wanted(name):
            games.append(ExactGame(name, "tiny", words[:d], tiny_game(prompt)))
    for first, second in SUM_GAMES:
        words = first.split() + [w + TAG for w in second.split()]
        name = f"shapes-world-sum d={len(words)} '{first}' + '{second}'"
        if wanted(name):
            games.append(ExactGame(name, "shapes-world-sum", words, _sum_table(world_game(first), world_game(second),
                                                                              first.split(), second.split())))
    return games


def _sum_table(scores_1, scores_2, words_1, words_2) -> dict[str, float]:
    """Payoffs of the side-by-side game over every coalition: ``v_1(part 1) + v_2(part 2)``."""
    from captum_diffusion.words import WordGame

    masks, _ = WordGame(lambda prompts: np.zeros(len(prompts)), words_1 + words_2).all_coalitions()
    table = {}
    for mask in masks:
        part_1 = [w for w, keep in zip(words_1, mask[:len(words_1)]) if keep]
        part_2 = [w for w, keep in zip(words_2, mask[len(words_1):]) if keep]
        key = " ".join(part_1 + [w + TAG for w in part_2])
        table[key] = scores_1[" ".join(part_1)] + scores_2[" ".join(part_2)]
    return table


# ------------------------------------------------------------------------------------------------ estimators

@dataclass
class Estimator:
    """``run(f, prompt, setting, seed) -> (d,)``; ``least(d)``: the smallest setting; ``calls(setting, d)``: payoff
    calls it makes at that setting; ``knob``: the setting's name."""
    run: object
    least: object
    calls: object
    knob: str


def _shap(algorithm):
    import shap_adapters.text as shap_text

    def run(f, prompt, setting, seed):
        return shap_text.explain_prompt(prompt, f, algorithm, max_evals=setting, seed=seed, progress=False).values
    return run


def _shap_kernel(f, prompt, setting, seed):
    import shap

    from captum_diffusion.words import WordGame

    game = WordGame(f, prompt)
    np.random.seed(seed)  # shap's KernelExplainer draws from numpy's global RNG
    explainer = shap.KernelExplainer(game, np.zeros((1, game.n_words)))
    return explainer.shap_values(np.ones((1, game.n_words)), nsamples=setting, silent=True)[0]


def _captum(method):
    """A runner of the captum attribution class ``method`` over the word game (``WordAttribution`` wraps it)."""
    from captum_diffusion.words import WordAttribution

    def run(f, prompt, setting, seed):
        attribution = WordAttribution(method(f), progress=False, seed=seed)
        return attribution.attribute(prompt, n_samples=setting, perturbations_per_eval=256).numpy()
    return run


def _lime(f, prompt, setting, seed):
    import lime_adapters.text as lime_text

    return lime_text.word_weights(lime_text.explain_prompt(prompt, f, num_samples=setting, seed=seed))


def _shapiq(cls, **kwargs):
    import shapiq

    from captum_diffusion.words import WordGame

    def run(f, prompt, setting, seed):
        game = WordGame(f, prompt)
        approximator = getattr(shapiq, cls)(game.n_words, random_state=seed, **kwargs)
        values = approximator.approximate(budget=setting, game=game)
        return np.array([values[(i,)] for i in range(game.n_words)])
    return run


def _evaluations(setting, d):
    return setting


ESTIMATORS = {
    "shap permutation": Estimator(_shap("permutation"), lambda d: 2 * d + 1, _evaluations, "max_evals"),
    "shap partition": Estimator(_shap("partition"), lambda d: 2 * d + 1, _evaluations, "max_evals"),
    "shap kernel": Estimator(_shap_kernel, lambda d: d + 2, lambda s, d: s + 2, "nsamples"),
    "captum ShapleyValueSampling": Estimator(_captum(ShapleyValueSampling), lambda d: 1, lambda s, d: s * d + 1,
                                             "n_samples (permutations)"),
    "captum KernelShap": Estimator(_captum(KernelShap), lambda d: d + 1, _evaluations, "n_samples"),
    "captum Lime": Estimator(_captum(Lime), lambda d: d + 1, _evaluations, "n_samples"),
    "lime LimeTextExplainer": Estimator(_lime, lambda d: d + 1, _evaluations, "num_samples"),
    "shapiq KernelSHAP": Estimator(_shapiq("KernelSHAP"), lambda d: d + 2, _evaluations, "budget"),
    "shapiq KernelSHAP paired": Estimator(_shapiq("KernelSHAP", pairing_trick=True), lambda d: d + 2, _evaluations,
                                          "budget"),
    "shapiq UnbiasedKernelSHAP": Estimator(_shapiq("UnbiasedKernelSHAP"), lambda d: d + 2, _evaluations, "budget"),
    "shapiq SVARM": Estimator(_shapiq("SVARM"), lambda d: 2 * d + 2, _evaluations, "budget"),
    "shapiq SVARM paired": Estimator(_shapiq("SVARM", pairing_trick=True), lambda d: 2 * d + 2, _evaluations,
                                     "budget"),
    "shapiq PermutationSamplingSV": Estimator(_shapiq("PermutationSamplingSV"), lambda d: d + 2, _evaluations,
                                              "budget"),
    "shapiq StratifiedSamplingSV": Estimator(_shapiq("StratifiedSamplingSV"), lambda d: d + 2, _evaluations,
                                             "budget"),
    "shapiq KernelSHAPIQ order 1": Estimator(_shapiq("KernelSHAPIQ", max_order=1, index="k-SII"),
                                             lambda d: 2 * (d + 1), _evaluations, "budget"),
}


class Runner:
    """Runs one estimator on one game, remembering each (setting, seed): values and distinct images asked."""

    def __init__(self, estimator: Estimator, game: ExactGame):
        self.estimator, self.game = estimator, game
        self.memo: dict[tuple[int, int], tuple[np.ndarray | None, int]] = {}

    def __call__(self, setting: int, seed: int) -> tuple[np.ndarray | None, int]:
        if (setting, seed) not in self.memo:
            f = self.game.f()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    values = np.asarray(self.estimator.run(f, self.game.prompt, setting, seed), dtype=np.float64)
            except ValueError:  # the estimator refuses this setting
                values = None
            self.memo[setting, seed] = (values, len(f.asked))
        return self.memo[setting, seed]

    def largest_setting(self, images: int, seed: int, guess: int, tolerance: float) -> int | None:
        """The largest setting (to ``tolerance``) whose distinct images stay within ``images``; None if even the
        smallest exceeds them. Steps by 10% from ``guess`` until the answer is bracketed, then bisects."""
        least, cap = self.estimator.least(self.game.d), 16 * 2 ** self.game.d

        def fits(setting):
            return self(setting, seed)[1] <= images

        if not fits(least):
            return None
        setting = min(max(least, guess), cap)
        if fits(setting):
            low, high = setting, None
            while high is None and low < cap:
                setting = min(cap, int(low * 1.1) + 1)
                low, high = (setting, None) if fits(setting) else (low, setting)
            if high is None:
                return low  # the sampler repeats coalitions: the largest setting tried stays within the images
        else:
            high = setting
            while True:
                setting = int(high / 1.1)
                if setting <= least or fits(setting):
                    low = max(least, setting)
                    break
                high = setting
        while high - low > max(1, tolerance * low):
            middle = (low + high) // 2
            low, high = (middle, high) if fits(middle) else (low, middle)
        return low


def score(values: np.ndarray, exact: np.ndarray) -> tuple[float, float, float]:
    """(normalised RMSE or NaN when ``values`` sum to ~0, fraction of ranks aligned, top-1 agreement)."""
    from captum_diffusion.metrics import normalize_scores, percent_ranks_aligned, rmse

    try:
        error = rmse(values, normalize_scores(exact))
    except ValueError:
        error = float("nan")
    return error, percent_ranks_aligned(values, exact), float(np.argmax(values) == np.argmax(exact))


def evaluate(game: ExactGame, names, fractions, seeds, tolerance) -> dict:
    """``{(estimator, fraction): summary}`` for one game."""
    import shap_adapters.text as shap_text

    exact = shap_text.explain_prompt(game.prompt, game.f(), "exact", progress=False).values
    results = {}
    for name in names:
        runner = Runner(ESTIMATORS[name], game)
        guess, previous = None, None
        for fraction in fractions:
            images = int(fraction * 2 ** game.d)
            if guess is None:  # as many payoff calls as images (a permutation makes d calls)
                guess = images // game.d if "permutations" in ESTIMATORS[name].knob else images
            else:  # the last answer (the previous seed's, or the previous budget's scaled to this one)
                guess = int(guess * fraction / previous)
            previous = fraction
            rows = []
            for seed in seeds:
                setting = runner.largest_setting(images, seed, guess, tolerance)
                if setting is None:
                    break
                guess = setting
                values, used = runner(setting, seed)
                if values is None:
                    continue
                calls = ESTIMATORS[name].calls(setting, game.d)
                rows.append((*score(values, exact), used, calls, setting))
            results[name, fraction] = np.array(rows) if rows else None
    return results


# ------------------------------------------------------------------------------------------------ report

def cell(rows) -> str:
    if rows is None:
        return "n/a"
    error = rows[:, 0]
    shown = f"{np.nanmean(error):.3f}" if np.isfinite(error).any() else "-"
    return f"{shown} / {100 * rows[:, 1].mean():.0f} / {100 * rows[:, 2].mean():.0f}"


def table(games, all_results, names, fractions) -> list[str]:
    head = "| game | d | estimator | " + " | ".join(f"{f:.0%} of 2^d" for f in fractions) + \
        " | images / payoff call at the largest budget |"
    lines = [head, "|" + "---|" * (len(fractions) + 4)]
    for game in games:
        results = all_results[game.name]
        for name in names:
            cells = [cell(results[name, f]) for f in fractions]
            last = next((results[name, f] for f in reversed(fractions) if results[name, f] is not None), None)
            ratio = "n/a" if last is None else f"{last[:, 3].mean():.0f} / {last[:, 4].mean():.0f} = " \
                                               f"{last[:, 3].mean() / last[:, 4].mean():.2f}"
            lines.append(f"| {game.name.split(' ', 2)[0]} {game.name.split(' ', 2)[2]} | {game.d} | {name} | "
                         + " | ".join(cells) + f" | {ratio} |")
    return lines


def needed(all_results, games, names, fractions, d, target=0.9) -> list[str]:
    """Per estimator: the smallest budget fraction reaching ``target`` ranks aligned on every game of ``d``
    words (mean over seeds)."""
    lines = []
    chosen = [g for g in games if g.d == d]
    for name in names:
        for fraction in fractions:
            rows = [all_results[g.name][name, fraction] for g in chosen]
            if all(r is not None and len(r) and r[:, 1].mean() >= target for r in rows):
                lines.append(f"  {name}: {fraction:.0%} of 2^{d}")
                break
        else:
            lines.append(f"  {name}: not within {fractions[-1]:.0%} of 2^{d}")
    return lines


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    names = args.estimators or list(ESTIMATORS)
    unknown = sorted(set(names) - set(ESTIMATORS))
    if unknown:
        raise SystemExit(f"unknown estimators {unknown}; choose from {list(ESTIMATORS)}")
    fractions = sorted(args.budgets)
    started = time.perf_counter()
    games = build_games(Path(args.cache_dir), lambda name: not args.games or any(g in name for g in args.games))
    built = time.perf_counter()
    all_results = {}
    for game in games:
        all_results[game.name] = evaluate(game, names, fractions, args.seeds, args.tolerance)
        print(f"  {game.name}: estimators done ({time.perf_counter() - built:.0f} s so far)", flush=True)
    lines = [f"Estimators vs exact Shapley values; cells: normalised RMSE / % ranks aligned / % top-1 word agreement, "
             f"mean over estimator seeds {' '.join(map(str, args.seeds))}; the budget counts distinct sub-prompts "
             f"(images); n/a: the estimator cannot run within it", ""]
    lines += table(games, all_results, names, fractions)
    for d in sorted({g.d for g in games if g.d >= 10}):
        lines += ["", f"budget needed for >= 90% ranks aligned on every d={d} game:"]
        lines += needed(all_results, games, names, fractions, d)
    lines += ["", f"games built or loaded in {built - started:.0f} s, estimators {time.perf_counter() - built:.0f} s"]
    print("\n".join(lines))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
