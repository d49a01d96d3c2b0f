"""The image side's caption template on ShapesWorld: how often exact shap over segments puts each colour / shape
word's own object first, and how often the background, with bare words ("{}") vs the scorer's own template.

    python benchmarks/text_template.py
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from captum_diffusion.shapes_world import load_shapes_world, render
from test_image_explain import PAIR_PROMPTS
from shap_adapters.image import explain_image
from test_image_explain import object_segments, word_objects
pipe, scorer = load_shapes_world()
for template in ("{}", None):
    hits, background = [], []
    for p in PAIR_PROMPTS:
        for seed in range(2):
            image = np.asarray(render(p, generator=seed).image)
            seg = object_segments(image, p)
            values = explain_image(image, p, scorer, segments=seg, text_template=template, progress=False).values
            for word, obj in word_objects(p):
                top = int(np.argmax(values[:, word]))
                hits.append(top == obj); background.append(top == 0)
    print(template, "right object", np.mean(hits), "background on top", np.mean(background), len(hits))
