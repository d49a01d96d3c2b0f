"""Cost of explaining image segments per word: one LIME explanation (500 samples) and exact shap over 10 segments.

Prints wall time, the masked images each explainer asked for, how many of them were distinct, and how many
CLIP image forward passes were run, with deduplication on and off side by side (same image, same segments).
Uses the embedded ShapesWorld CLIP when its weights are present, else the tiny random CLIP (marked in the output).

    OMP_NUM_THREADS=1 python benchmarks/image_explain.py [--repeats 1] [--figures DIR]

``--figures DIR`` also saves the figures of one explanation of each kind (LIME word maps, shap image plot,
segment-by-word table, Captum saliency maps) for the same picture.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

PROMPT = "a red circle and a blue square"


def scene():
    """A ShapesWorld picture of PROMPT and a 10-segment label map: the 2 objects + 8 background tiles."""
    from captum_diffusion.shapes_world import render

    rendering = render(PROMPT, generator=0)
    rows, cols = np.mgrid[0:64, 0:64]
    segments = 2 + (rows // 32) * 4 + cols // 16            # 8 tiles: labels 2..9
    for label, mask in enumerate(rendering.object_masks):
        segments[mask] = label
    return np.asarray(rendering.image), segments


def load_scorer():
    from captum_diffusion import shapes_world

    if shapes_world.weights_available():
        return shapes_world.load_shapes_world()[1], "ShapesWorld CLIP (embedded)"
    from captum_diffusion.scoring.clip import CLIPSimilarity
    from captum_diffusion.testing import tiny_clip

    return CLIPSimilarity(*tiny_clip()), "tiny random CLIP (ShapesWorld weights absent)"


def run(name, explain, **kwargs):
    start = time.perf_counter()
    explanation = explain(**kwargs)
    seconds = time.perf_counter() - start
    seg = explanation.segment_scorer
    return {"name": name, "seconds": seconds, "requested": seg.n_requested, "distinct": seg.n_distinct,
            "clip_passes": seg.n_embedded}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--figures", default=None, help="directory to save example figures into")
    args = parser.parse_args()
    from lime_adapters.image import explain_image as lime_explain
    from shap_adapters.image import explain_image as shap_explain

    scorer, label = load_scorer()
    image, segments = scene()
    common = dict(image=image, prompt=PROMPT, scorer=scorer, segments=segments, progress=False)
    # warm-up (numba compiles shap's exact code path once; torch first-call overheads)
    shap_explain(image, "a red circle", scorer, segments=(segments > 1).astype(np.int64), progress=False)
    print(f"model: {label}; image 64x64, {segments.max() + 1} segments, {len(PROMPT.split())} words")
    rows = []
    # hide="background" paints hidden segments white: hiding a white tile changes nothing, so masks collapse;
    # hide="gray" makes every mask a different picture
    for _ in range(args.repeats):
        for hide in ("background", "gray"):
            for dedup in (True, False):
                rows.append(run(("LIME", hide, dedup), lime_explain, num_samples=500, deduplicate=dedup,
                                hide_color=hide, **common))
                rows.append(run(("shap", hide, dedup), shap_explain, algorithm="exact", deduplicate=dedup,
                                hide_color=hide, **common))
    print("LIME: 500 samples; shap: exact over 10 segments (2**10 coalitions)")
    print(f"{'explainer':6s} {'hide':>10s} {'dedup':>6s} {'wall s':>8s} {'requested':>10s} {'distinct':>9s} "
          f"{'CLIP passes':>12s}")
    for r in rows:
        kind, hide, dedup = r["name"]
        print(f"{kind:6s} {hide:>10s} {str(dedup):>6s} {r['seconds']:8.2f} {r['requested']:10d} {r['distinct']:9d} "
              f"{r['clip_passes']:12d}")
    for kind in ("LIME", "shap"):
        for hide in ("background", "gray"):
            pick = lambda d: [r["seconds"] for r in rows if r["name"] == (kind, hide, d)]  # noqa: E731
            print(f"{kind} hide={hide}: dedup speed-up {np.median(pick(False)) / np.median(pick(True)):.2f}x "
                  f"(median of {args.repeats})")
    if args.figures:
        save_figures(args.figures, scorer)


def save_figures(directory, scorer):
    """One figure per explainer for PROMPT's picture with its objects + background as segments."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    from captum_diffusion.image.saliency import CLIPSaliency, plot_attributions
    from captum_diffusion.image.segment_scores import segment_word_table
    from lime_adapters.image import explain_image as lime_explain
    from lime_adapters.image import word_weight_maps
    from shap_adapters.image import explain_image as shap_explain
    from shap_adapters.image import image_explanation

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    image, tiles = scene()
    segments = np.where(tiles > 1, 0, tiles + 1)                      # 0 background, 1 circle, 2 square
    words = [w for w in PROMPT.split() if w not in ("a", "and")]
    # the ShapesWorld CLIP saw two-object captions only: embed each word in a caption-shaped template
    common = dict(segments=segments, words=words, text_template="a {} and a", progress=False)
    lime = lime_explain(image, PROMPT, scorer, num_samples=500, **common)
    plot_attributions(image, word_weight_maps(lime), words, sign="all").savefig(out / "lime_word_maps.png", dpi=120)
    shap.plots.image(image_explanation(shap_explain(image, PROMPT, scorer, **common)), show=False)
    plt.gcf().savefig(out / "shap_image.png", dpi=120)
    table = segment_word_table(image, PROMPT, scorer, segments=segments, words=words, text_template="a {} and a")
    table.plot().savefig(out / "segment_word_table.png", dpi=120)
    for method in ("integrated_gradients", "gradcam"):
        saliency = CLIPSaliency(scorer.model, scorer.processor, method, baseline=0.5)
        saliency.plot(image, saliency.attribute(image, words), words).savefig(out / f"saliency_{method}.png", dpi=120)
    plt.close("all")
    print(f"figures saved under {out}")


if __name__ == "__main__":
    main()
