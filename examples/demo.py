"""Demo: generate an image with the shipped ShapesWorld Stable Diffusion and explain its words with exact SHAP.

    python examples/demo.py                                   # "a red circle on the left" -> outputs/demo
    python examples/demo.py --prompt "a blue square and a yellow triangle" --out outputs/pair

The payoff of a sub-prompt is the CLIP image-image cosine between its image and the full prompt's image
(Gupta & Kanoria), every image from the same seed. Writes to ``--out``:
``image.png`` (the prompt's image, 64x64), ``subprompts/NN_<words>.png`` (all 2^d sub-prompt images,
``NN_EMPTY.png`` for the empty prompt), ``shap_text.html``, ``shap_bar.png``, ``shap_waterfall.png`` (stock
shap plots) and ``values.json`` (words, Shapley values, base value, what the analyser finds in the image).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt", default="a red circle on the left")
    ap.add_argument("--out", default="outputs/demo", help="output folder (created)")
    ap.add_argument("--seed", type=int, default=None, help="generation seed (default: the model's default)")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's default)")
    ap.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's default)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    import matplotlib.pyplot as plt
    import shap
    import torch

    import shap_adapters
    from captum_diffusion.generation import TextToImage
    from captum_diffusion.scoring import PromptScore
    from captum_diffusion.shapes_world import DEFAULT_GENERATION, analyse, load_shapes_world
    from captum_diffusion.words import split_words, subprompt

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    (out / "subprompts").mkdir(parents=True, exist_ok=True)
    pipe, scorer = load_shapes_world()
    generator = TextToImage(
        pipe, seed=DEFAULT_GENERATION.seed if args.seed is None else args.seed,
        num_inference_steps=args.steps or DEFAULT_GENERATION.num_inference_steps,
        guidance_scale=DEFAULT_GENERATION.guidance_scale if args.guidance is None else args.guidance,
        progress=not args.no_progress)
    f = PromptScore(generator, scorer, args.prompt, reference="image")
    explanation = shap_adapters.explain_prompt(args.prompt, f, algorithm="exact", progress=not args.no_progress)

    f.reference_image.save(out / "image.png")
    words = split_words(args.prompt)
    for i, mask in enumerate(itertools.product([0, 1], repeat=len(words))):
        sub = subprompt(words, mask)
        generator([sub])[0].save(out / "subprompts" / f"{i:02d}_{sub.replace(' ', '-') or 'EMPTY'}.png")
    (out / "shap_text.html").write_text(shap.plots.text(explanation, display=False))
    for name, plot in (("bar", shap.plots.bar), ("waterfall", shap.plots.waterfall)):
        plot(explanation, show=False)
        plt.gcf().savefig(out / f"shap_{name}.png", bbox_inches="tight", dpi=120)
        plt.close("all")
    found = [dict(colour=o.colour, shape=o.shape, centroid=[round(c, 1) for c in o.centroid], area=o.area)
             for o in analyse(f.reference_image)]
    summary = dict(prompt=args.prompt, words=words, shapley_values=[float(v) for v in explanation.values],
                   base_value=float(explanation.base_values), full_value=float(f([args.prompt])[0]),
                   analysed_objects=found, images_generated=generator.n_generated)
    (out / "values.json").write_text(json.dumps(summary, indent=2))
    for word, value in zip(words, explanation.values):
        print(f"{word:>10s} {value:+.4f}")
    print(f"image objects: {found}\nwrote {out}/ (image.png, subprompts/, shap_text.html, shap_bar.png, "
          f"shap_waterfall.png, values.json)")
    return out


if __name__ == "__main__":
    main()
