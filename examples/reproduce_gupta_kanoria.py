r"""Reproduce Gupta & Kanoria, section 5.1: exact Shapley values of prompt words over their 10-prompt dataset.

For each prompt, every sub-prompt (the empty one included: an unconditional generation) is generated at one
seed, scored by CLIP image-image cosine to the full prompt's image, and the exact Shapley values of the words
are computed through ``shap_adapters`` (2**d sub-prompts, d <= 4). The values are normalised to sum to 1 and
compared with the hand-assigned ground truth, printing both of the paper's tables beside its reported numbers:
percent of ranks aligned (5.1.1) and RMSE (5.1.2).

The paper used Stable Diffusion v1-4 and open_clip ViT-B-16-plus-240 (laion400m_e32); this script takes any
diffusers checkpoint and any scorer ``captum_diffusion.scoring.load_scorer`` reads: ``open_clip:NAME:PRETRAINED``
(an open_clip model and its tag or checkpoint file) or a transformers CLIP hub id / local directory::

    # the paper's setup
    python examples/reproduce_gupta_kanoria.py --model CompVis/stable-diffusion-v1-4 \
        --clip open_clip:ViT-B-16-plus-240:laion400m_e32 --device cuda --out outputs/gupta_kanoria
    # transformers CLIP instead
    python examples/reproduce_gupta_kanoria.py --model CompVis/stable-diffusion-v1-4 \
        --clip openai/clip-vit-base-patch32 --device cuda --out outputs/gupta_kanoria_openai
    # a local checkpoint folder (save_pretrained layout) and a local CLIP directory
    python examples/reproduce_gupta_kanoria.py --model ~/models/sd-v1-4 --clip ~/models/clip-vit-base-patch32 \
        --device cuda --out outputs/gupta_kanoria_local
    # offline, on the embedded ShapesWorld model with its own scorer, steps and guidance (its vocabulary lacks most
    # of these words: plumbing only)
    python examples/reproduce_gupta_kanoria.py --model shapes-world --clip "" --device cpu --out outputs/gk_shapes

Images are cached on disk under ``<out>/cache`` (lossless PNG), so a second run re-scores without generating.
Results go to ``<out>/results.json`` and the full-prompt images to ``<out>/images/``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="CompVis/stable-diffusion-v1-4",
                        help="diffusers text-to-image checkpoint: hub id or local directory (save_pretrained layout), "
                             "or shapes-world (the embedded model)")
    parser.add_argument("--clip", default="openai/clip-vit-base-patch32",
                        help="scorer: open_clip:NAME:PRETRAINED (e.g. open_clip:ViT-B-16-plus-240:laion400m_e32, "
                             "the paper's; PRETRAINED is a tag or checkpoint file), open_clip:hf-hub:ORG/REPO, or a "
                             "transformers CLIP hub id / directory; \"\" = the model's own scorer (shapes-world)")
    parser.add_argument("--seed", type=int, default=0, help="one seed for every sub-prompt (default 0)")
    parser.add_argument("--steps", type=int, default=None, help="inference steps (default: the model's own where it "
                                                                  "ships them, else the pipeline's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's own where "
                                                                     "it ships one, else the pipeline's)")
    parser.add_argument("--size", type=int, default=None, help="image height = width in pixels (default: the pipeline's)")
    parser.add_argument("--batch-size", type=int, default=8, help="sub-prompts per pipeline call")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                        help="model dtype (default: float16 on cuda, float32 otherwise)")
    parser.add_argument("--out", type=Path, default=Path("outputs/gupta_kanoria"), help="output directory")
    parser.add_argument("--no-safety-checker", action="store_true",
                        help="load SD 1.x without its safety checker (its false positives turn images black)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def explain_dataset(generator, clip, dataset) -> list[dict]:
    """Exact Shapley values for every prompt of ``dataset``; one dict per prompt."""
    import shap_adapters.text as shap_text
    from captum_diffusion.metrics import normalize_scores, percent_ranks_aligned, rmse
    from captum_diffusion.metrics.ranking import ranks
    from captum_diffusion.scoring import PromptScore

    rows = []
    for record in dataset:
        f = PromptScore(generator, clip, record.prompt)
        explanation = shap_text.explain_prompt(record.prompt, f, algorithm="exact", progress=False)
        values = np.asarray(explanation.values, dtype=np.float64)
        normalised = normalize_scores(values)
        truth = record.ground_truth
        rows.append({
            "prompt": record.prompt, "words": list(record.words),
            "shapley": values.tolist(), "base_value": float(explanation.base_values),
            "full_value": float(f([record.prompt])[0]), "normalised": normalised.tolist(),
            "ground_truth": truth.tolist(),
            "ranks": ranks(values).tolist(), "ground_truth_ranks": ranks(truth).tolist(),
            "paper_ranks": record.reported_shapley_ranks.tolist(),
            "aligned": percent_ranks_aligned(values, truth),
            "paper_aligned": float(np.mean(record.reported_shapley_ranks == ranks(truth))),
            "squared_errors": ((normalised - truth) ** 2).tolist(),
            "rmse": rmse(values, truth, reduction="mean"), "rmse_root_of_sum": rmse(values, truth, reduction="sum"),
            "paper_rmse": record.reported_rmse,
        })
    return rows


def _cells(values, fmt: str) -> str:
    return " ".join(format(v, fmt) for v in values)


def print_tables(rows: list[dict], dataset) -> dict:
    """Print the paper's two tables with our numbers beside its reported ones; return the averages."""
    name = max(len(r["prompt"]) for r in rows)
    n_words = sum(len(r["words"]) for r in rows)
    ours = sum(r["aligned"] * len(r["words"]) for r in rows) / n_words
    paper = sum(r["paper_aligned"] * len(r["words"]) for r in rows) / n_words
    print("\nTable 5.1.1  Percent of ranks aligned (rank 1 = most important word)")
    print("  (ours: our Shapley ranks vs the ground truth; paper: the paper's printed ranks vs the same ground truth)")
    print(f"{'prompt':<{name}}  {'truth ranks':<11}  {'our ranks':<11}  {'paper ranks':<11}  ours   paper")
    for r in rows:
        print(f"{r['prompt']:<{name}}  {_cells(r['ground_truth_ranks'], 'd'):<11}  {_cells(r['ranks'], 'd'):<11}  "
              f"{_cells(r['paper_ranks'], 'd'):<11}  {r['aligned']:>4.0%}   {r['paper_aligned']:>4.0%}")
    print(f"{'all words':<{name}}  {'':<11}  {'':<11}  {'':<11}  {ours:>4.0%}   {paper:>4.0%} "
          f"(reported: {dataset.reported_percent_ranks_aligned:.0%})")

    mean_rmse = float(np.mean([r["rmse"] for r in rows]))
    mean_root_sum = float(np.mean([r["rmse_root_of_sum"] for r in rows]))
    mean_paper = float(np.mean([r["paper_rmse"] for r in rows]))
    print("\nTable 5.1.2  RMSE of Shapley values normalised to sum to 1 vs ground truth")
    print("  (RMSE: the paper's formula, root of the mean; root-sum: how its printed rows were computed)")
    print(f"{'prompt':<{name}}  {'normalised Shapley':<27}  {'squared errors':<27}  RMSE   root-sum  paper")
    for r in rows:
        print(f"{r['prompt']:<{name}}  {_cells(r['normalised'], '6.3f'):<27}  {_cells(r['squared_errors'], '6.4f'):<27}  "
              f"{r['rmse']:.3f}  {r['rmse_root_of_sum']:.3f}     {r['paper_rmse']:.2f}")
    print(f"{'average':<{name}}  {'':<27}  {'':<27}  {mean_rmse:.3f}  {mean_root_sum:.3f}     {mean_paper:.4f} "
          f"(reported: {dataset.reported_mean_rmse:.4f})")
    return {"percent_ranks_aligned": ours, "paper_ranks_percent_aligned": paper, "mean_rmse": mean_rmse,
            "mean_rmse_root_of_sum": mean_root_sum, "reported_percent_ranks_aligned": dataset.reported_percent_ranks_aligned,
            "reported_mean_rmse": dataset.reported_mean_rmse}


def main(argv=None) -> dict:
    args = parse_args(argv)
    from captum_diffusion.datasets import load_gupta_kanoria
    from captum_diffusion.generation import TextToImage
    from captum_diffusion.runs.models import load_model

    dtype = args.dtype or ("float16" if str(args.device).startswith("cuda") else "float32")
    started = time.perf_counter()
    if args.no_safety_checker and args.model != "shapes-world":
        from diffusers import DiffusionPipeline

        from captum_diffusion.scoring import load_scorer

        pipe = DiffusionPipeline.from_pretrained(str(args.model), dtype=DTYPES[dtype], safety_checker=None,
                                                 requires_safety_checker=False).to(args.device)
        clip, defaults = load_scorer(str(args.clip), device=args.device, dtype=DTYPES[dtype]), {}
    else:
        loaded = load_model(str(args.model), args.clip or None, device=args.device, dtype=dtype)
        pipe, clip, defaults = loaded.pipeline, loaded.scorer, loaded.defaults
    steps = args.steps if args.steps is not None else defaults.get("steps")
    guidance = args.guidance if args.guidance is not None else defaults.get("guidance")
    args.out.mkdir(parents=True, exist_ok=True)
    generator = TextToImage(pipe, seed=args.seed, num_inference_steps=steps, guidance_scale=guidance,
                            height=args.size, width=args.size, batch_size=args.batch_size,
                            cache_dir=args.out / "cache", progress=not args.quiet)
    print(f"model {args.model} ({type(pipe).__name__}), CLIP {args.clip}, {generator}")
    dataset = load_gupta_kanoria()
    rows = explain_dataset(generator, clip, dataset)
    averages = print_tables(rows, dataset)
    seconds = time.perf_counter() - started
    print(f"\n{generator.n_generated} images generated, {generator.n_from_cache} from the cache, {seconds:.1f} s")

    images = args.out / "images"
    images.mkdir(exist_ok=True)
    for i, image in enumerate(generator(dataset.prompts)):
        image.save(images / f"{i:02d}_{dataset.prompts[i].replace(' ', '_').replace(chr(39), '')}.png")
    summary = {"model": str(args.model), "clip": str(args.clip), "seed": args.seed, "steps": steps,
               "guidance": guidance, "device": str(args.device), "dtype": str(dtype), "seconds": seconds,
               "images_generated": generator.n_generated, "averages": averages, "prompts": rows}
    (args.out / "results.json").write_text(json.dumps(summary, indent=1))
    print(f"results: {args.out / 'results.json'}")
    return summary


if __name__ == "__main__":
    main()
