"""The image side's caption template on ShapesWorld: how often exact shap over segments puts each colour / shape
word's own object first, and how often the background, with bare words ("{}") vs the scorer's own template.

    python benchmarks/text_template.py

Scenes: the two-object prompts of tests/test_image_explain.py rendered at seeds 0-1 (exact ground truth); segments:
background, object 1, object 2 (the test's ``object_segments``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    from test_image_explain import PAIR_PROMPTS, object_segments, word_objects

    from captum_diffusion.shapes_world import load_shapes_world, render
    from shap_adapters.image import explain_image

    _, scorer = load_shapes_world()
    for template in ("{}", None):
        hits, background = [], []
        for prompt in PAIR_PROMPTS:
            for seed in range(2):
                image = np.asarray(render(prompt, generator=seed).image)
                segments = object_segments(image, prompt)
                values = explain_image(image, prompt, scorer, segments=segments, text_template=template,
                                       progress=False).values
                for word, obj in word_objects(prompt):
                    top = int(np.argmax(values[:, word]))
                    hits.append(top == obj)
                    background.append(top == 0)
        name = repr(template) if template else f"scorer's own ({scorer.text_template!r})"
        print(f"template {name}: right object first {np.mean(hits):.0%}, background first {np.mean(background):.0%} "
              f"of {len(hits)} words")


if __name__ == "__main__":
    main()
