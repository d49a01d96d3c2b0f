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


# ------------------------------------------------------------------------------------------------ games

def payoff_table(cache_dir: Path, steps: int, prompt: str) -> np.ndarray:
    """``(2**d, n_seeds)``: cosine of each sub-prompt's image embedding with the full prompt's, per seed."""
    columns = []
    for seed in SEEDS:
        embeddings = np.load(embeddings_path(cache_dir, steps, seed, prompt))
        columns.append(embeddings @ embeddings[-1])  # rows are unit-norm; the last row is the full prompt
    return np.stack(columns, axis=1).astype(np.float64)


def sum_table(table_1: np.ndarray, table_2: np.ndarray) -> np.ndarray:
    """The side-by-side game: coalition ``i1 + (i2 << d1)`` pays ``v_1(i1) + v_2(i2)``, per seed."""
    n_1, n_2 = len(table_1), len(table_2)
    return (table_1[None, :, :] + table_2[:, None, :]).reshape(n_1 * n_2, -1)


def games(cache_dir: Path) -> list[dict]:
    """Name, words and payoff tables (full and per proxy step count) of every benchmark game."""
    tables = {steps: {p: payoff_table(cache_dir, steps, p) for p in PROMPTS} for steps in (FULL_STEPS, *PROXY_STEPS)}
    result = [{"name": f"d={len(p.split())} '{p}'", "words": p.split(),
               "tables": {steps: tables[steps][p] for steps in tables}} for p in PROMPTS if p not in
              ("a green triangle",)]
    for first, second in SUM_GAMES:
        words = first.split() + [w + "_2" for w in second.split()]
        result.append({"name": f"d={len(words)} sum '{first}' + '{second}'", "words": words,
                       "tables": {steps: sum_table(tables[steps][first], tables[steps][second]) for steps in tables}})
    return result


def table_game(table: np.ndarray, n_words: int, counter: set | None = None):
    """masks ``(n, d)`` -> payoffs ``(n, n_seeds)`` from a table; ``counter`` collects the coalitions asked."""
    powers = 1 << np.arange(n_words)

    def game(masks):
        index = np.asarray(masks, dtype=np.int64) @ powers
        if counter is not None:
            counter.update(index.tolist())
        return table[index]
    return game


def exact_values(table: np.ndarray, n_words: int) -> np.ndarray:
    from captum_diffusion.words.multifidelity import coalition_masks, shapley_weights

    return shapley_weights(coalition_masks(np.arange(2**n_words), n_words)).T @ table.mean(1)


# ------------------------------------------------------------------------------------------------ estimators

def run_multifidelity(full, proxy, n_words, budget, seed, **options):
    from captum_diffusion.words.multifidelity import multifidelity_shapley

    try:
        result = multifidelity_shapley(full, proxy, budget, n_words=n_words, seed=seed, **options)
    except ValueError as err:
        if "too small" in str(err):
            return None
        raise
    return {"values": result.values, "intervals": result.intervals(seeds=False),
            "fraction": result.cost.fraction_of_exact, "stopped": result.stopped}


def run_shapiq(table, n_words, budget, seed):
    """shapiq KernelSHAP with its pairing trick on the seed-averaged game, ``budget * 2**d`` coalitions."""
    import shapiq

    mean = table.mean(1)
    asked: set = set()
    game = table_game(mean[:, None], n_words, asked)
    coalitions = int(budget * 2**n_words)
    approximator = shapiq.KernelSHAP(n_words, pairing_trick=True, random_state=seed)
    values = approximator.approximate(budget=coalitions, game=lambda m: game(m)[:, 0])
    return {"values": np.array([values[(i,)] for i in range(n_words)]), "intervals": None,
            "fraction": len(asked) / 2**n_words, "stopped": ""}


def run_shap_permutation(table, n_words, budget, seed):
    """shap's PermutationExplainer (antithetic permutations) on the seed-averaged game, its ``max_evals`` the
    largest (by bisection) whose distinct coalitions stay within ``budget * 2**d``."""
    import shap

    mean = table.mean(1)
    limit = int(budget * 2**n_words)

    def run(max_evals):
        asked: set = set()
        game = table_game(mean[:, None], n_words, asked)
        explainer = shap.explainers.Permutation(lambda m: game(m)[:, 0], shap.maskers.Independent(
            np.zeros((1, n_words)), max_samples=1), seed=seed)
        values = explainer(np.ones((1, n_words)), max_evals=max_evals, silent=True).values[0]
        return values, len(asked)

    low, high = 2 * n_words + 1, max(2 * n_words + 2, 8 * limit)
    best = None
    while high - low > max(1, low // 20):
        middle = (low + high) // 2
        values, used = run(middle)
        if used <= limit:
            low, best = middle, (values, used)
        else:
            high = middle
    if best is None:
        values, used = run(low)
        if used > limit:
            return None
        best = (values, used)
    return {"values": best[0], "intervals": None, "fraction": best[1] / 2**n_words, "stopped": ""}


def metrics(run, exact: np.ndarray) -> dict:
    from captum_diffusion.metrics.ranking import normalize_scores, percent_ranks_aligned, rmse

    top = set(np.argsort(-exact)[:3])
    values = run["values"]
    out = {"ranks": percent_ranks_aligned(values, exact), "top3": float(set(np.argsort(-values)[:3]) == top),
           "fraction": run["fraction"]}
    try:
        out["rmse"] = rmse(values, normalize_scores(exact))
    except ValueError:
        out["rmse"] = np.nan
    if run["intervals"] is not None:
        low, high = run["intervals"].T
        out["coverage"] = float(np.mean((low <= exact + 1e-12) & (exact - 1e-12 <= high)))
    out["stopped_top"] = float(run["stopped"].startswith("top-"))
    return out


def report(args) -> None:
    cache_dir = Path(args.cache_dir)
    timing = json.loads((cache_dir / "timing.json").read_text())
    ratio = {int(s): r for s, r in timing["cost_ratio"].items()}
    lines = [f"# The cost of an explanation: multi-fidelity Shapley values ({time.strftime('%Y-%m-%d')})", "",
             "Printed by `python benchmarks/cost.py report --markdown benchmarks/cost.md` (after `time` and "
             "`generate`; see the module docstring). Games: " + ", ".join(f"'{p}'" for p in PROMPTS[:4])
             + f" ({len(SEEDS)} image seeds each) and the sum games "
             + ", ".join(f"'{a}' + '{b}'" for a, b in SUM_GAMES) + ".", "",
             f"Cost ratio of a proxy image to a full one (ShapesWorld UNet, {FULL_STEPS} DPM-Solver++ steps, 64x64, "
             f"{timing['threads']} torch thread, generation + CLIP, median of {timing['repeats']} interleaved "
             f"rounds of {timing['images_per_batch']} images):", "",
             "| steps | s / image | cost ratio |", "|---|---|---|"]
    lines += [f"| {s} | {timing['seconds_per_image'][str(s)]:.3f} | {ratio[s]:.2f} |"
              for s in sorted(ratio, reverse=True)]
    all_games = games(cache_dir)

    lines += ["", "Proxy against full game (seed-averaged payoffs over all coalitions: Pearson r; the proxy's own "
              "exact Shapley values against the full game's: Pearson r, % ranks aligned, top-3 set equal):", "",
              "| game | " + " | ".join(f"{s} steps: payoff r / phi r / ranks / top-3" for s in PROXY_STEPS) + " |",
              "|---|" + "---|" * len(PROXY_STEPS)]
    from captum_diffusion.metrics.ranking import percent_ranks_aligned
    for game in all_games:
        d = len(game["words"])
        full_table = game["tables"][FULL_STEPS]
        exact = exact_values(full_table, d)
        cells = []
        for steps in PROXY_STEPS:
            proxy_table = game["tables"][steps]
            proxy_phi = exact_values(proxy_table, d)
            payoff_r = np.corrcoef(full_table.mean(1), proxy_table.mean(1))[0, 1]
            phi_r = np.corrcoef(exact, proxy_phi)[0, 1]
            same_top = set(np.argsort(-exact)[:3]) == set(np.argsort(-proxy_phi)[:3])
            cells.append(f"{payoff_r:.3f} / {phi_r:.3f} / {100 * percent_ranks_aligned(proxy_phi, exact):.0f}% / "
                         f"{'yes' if same_top else 'no'}")
        lines.append(f"| {game['name']} | " + " | ".join(cells) + " |")

    methods = {}
    for steps in sorted(PROXY_STEPS):
        methods[f"multi-fidelity, proxy {steps} steps, fitted weight"] = ("mf", steps, {"proxy_weight": "fit"})
    methods["multi-fidelity, proxy 1 steps, weight 1"] = ("mf", 1, {"proxy_weight": 1.0})
    methods["adaptive until top-3, proxy 1 steps, fitted weight"] = ("mf", 1, {"until_top_k": 3, "proxy_weight": "fit"})
    methods["stratified paired + additive control, no proxy"] = ("mf", None, {})
    methods["stratified paired, no proxy, no additive control"] = ("mf", None, {"additive_control": False})
    methods["adaptive until top-3, no proxy"] = ("mf", None, {"until_top_k": 3})
    methods["shapiq KernelSHAP paired"] = ("shapiq", None, {})
    methods["shap permutation"] = ("shap", None, {})

    lines += ["", f"Against exact seed-averaged values ({len(SEEDS)} seeds), mean over {len(args.seeds)} sampler "
              f"seeds ({args.baseline_seeds} for shapiq and shap). Cells: % ranks aligned / % runs with the exact "
              "top-3 set / normalised RMSE / coverage of the stated 95% intervals (sampling error, against the exact "
              "values of the seed-averaged game) / cost spent (fraction of exact, full-image equivalents). '-': the "
              "budget does not pay the proxy plus two "
              "pairs per coalition size.", ""]
    header = "| game | method | " + " | ".join(f"budget {b:.0%}" for b in args.budgets) + " |"
    lines += [header, "|---|---|" + "---|" * len(args.budgets)]
    summary = []
    for game in all_games:
        d = len(game["words"])
        full_table = game["tables"][FULL_STEPS]
        exact = exact_values(full_table, d)
        started = time.perf_counter()
        for name, (kind, steps, options) in methods.items():
            cells = []
            for budget in args.budgets:
                rows = []
                for seed in (args.seeds if kind == "mf" else args.seeds[:args.baseline_seeds]):
                    if kind == "mf":
                        proxy = table_game(game["tables"][steps], d) if steps is not None else None
                        cost = {"proxy_cost": ratio[steps]} if steps is not None else {}
                        run = run_multifidelity(table_game(full_table, d), proxy, d, budget, seed, **cost, **options)
                    elif kind == "shapiq":
                        run = run_shapiq(full_table, d, budget, seed)
                    else:
                        run = run_shap_permutation(full_table, d, budget, seed)
                    if run is None:
                        break
                    rows.append(metrics(run, exact))
                if not rows:
                    cells.append("-")
                    continue
                mean = {key: np.nanmean([r[key] for r in rows]) for key in rows[0]}
                coverage = f"{100 * mean['coverage']:.0f}%" if "coverage" in mean else "-"
                cells.append(f"{100 * mean['ranks']:.0f} / {100 * mean['top3']:.0f} / {mean['rmse']:.3f} / "
                             f"{coverage} / {mean['fraction']:.2f}")
                summary.append({"game": game["name"], "d": d, "method": name, "budget": budget, **mean})
            lines.append(f"| {game['name']} | {name} | " + " | ".join(cells) + " |")
        print(f"  {game['name']}: {time.perf_counter() - started:.0f} s", flush=True)

    lines += ["", "Goals (met when every game of that length meets them): d = 10-12: >= 90% ranks aligned and "
              ">= 95% top-3 at <= 25% of exact's cost; d = 6-7: the same at <= 50%; coverage 90-97%.", "",
              "| method | d | smallest budget meeting the goal | at the goal's budget: ranks / top-3 / coverage |",
              "|---|---|---|---|"]
    for name in methods:
        for group, goal in (((6, 7), 0.50), ((10, 12), 0.25)):
            rows = [r for r in summary if r["method"] == name and r["d"] in group]
            met = []
            for budget in args.budgets:
                at = [r for r in rows if r["budget"] == budget]
                if at and min(r["ranks"] for r in at) >= 0.9 and min(r["top3"] for r in at) >= 0.95:
                    met.append(budget)
            at_goal = [r for r in rows if r["budget"] == goal]
            cell = "-"
            if at_goal:
                coverage = [r["coverage"] for r in at_goal if "coverage" in r and np.isfinite(r["coverage"])]
                cell = (f"{100 * min(r['ranks'] for r in at_goal):.0f}% (worst game) / "
                        f"{100 * min(r['top3'] for r in at_goal):.0f}% / "
                        + (f"{100 * min(coverage):.0f}-{100 * max(coverage):.0f}%" if coverage else "-"))
            smallest = f"{min(met):.0%}" if met else "none of those tried"
            lines.append(f"| {name} | {'-'.join(map(str, group))} | {smallest} | {cell} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", nargs="?", default="report", choices=("time", "generate", "report"))
    parser.add_argument("--cache-dir", default="/tmp/cost-cache", help="images, embeddings, timing (kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds (time)")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(12)), help="estimator seeds (report)")
    parser.add_argument("--baseline-seeds", type=int, default=5,
                        help="of those, how many shapiq and shap run (each takes seconds)")
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
