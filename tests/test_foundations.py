"""The layout and the contracts shared by every side: imports, adapters' common names, one label scheme,
one prompt per game."""
from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import numpy as np
import pytest

import lime_adapters
import shap_adapters
from captum_diffusion.words import word_labels


def test_clip_score_is_the_function_after_its_module_is_imported():
    """The lazy export once turned into the submodule of the same name ('module' object is not callable)."""
    code = ("import captum_diffusion.metrics as m, importlib; importlib.import_module('captum_diffusion.metrics.clip');"
            "from captum_diffusion.metrics import clip_score; print(callable(clip_score), type(clip_score).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "function"]


def test_old_module_paths_still_import_the_same_objects():
    import captum_diffusion

    for old, new in captum_diffusion.MOVED_MODULES.items():
        moved = importlib.import_module(f"captum_diffusion.{old}")
        target = importlib.import_module(f"captum_diffusion.{new}")
        public = [n for n in dir(target) if not n.startswith("_") and inspect.getmodule(getattr(target, n)) is target]
        for name in public or getattr(target, "__all__", []):
            assert getattr(moved, name) is getattr(target, name), (old, name)
    from captum_diffusion.scores import CLIPSimilarity, PromptScore  # noqa: F401 - the paths users wrote


def test_every_public_name_resolves():
    import captum_diffusion
    import captum_diffusion.metrics

    for package in (captum_diffusion, captum_diffusion.metrics, shap_adapters, lime_adapters):
        for name in package.__all__:
            assert getattr(package, name) is not None, (package.__name__, name)


def test_no_private_name_is_imported_across_modules():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    pattern = re.compile(r"^\s*from (captum_diffusion|shap_adapters|lime_adapters)[\w.]* import .*\b_[a-z]\w*",
                         re.M)
    offenders = [str(p.relative_to(root)) for folder in ("captum_diffusion", "shap_adapters", "lime_adapters")
                 for p in (root / folder).rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_adapters_take_the_same_names_with_the_same_defaults():
    def options(function):
        return {name: p.default for name, p in inspect.signature(function).parameters.items()
                if p.kind is p.KEYWORD_ONLY}

    shap_text, lime_text = options(shap_adapters.explain_prompt), options(lime_adapters.explain_prompt)
    assert shap_text["seed"] == lime_text["seed"] == 0
    assert shap_text["batch_size"] is lime_text["batch_size"] is None
    shap_image, lime_image = options(shap_adapters.explain_image), options(lime_adapters.explain_image)
    shared = ("segments", "words", "hide_color", "text_template", "deduplicate", "output", "batch_size", "seed",
              "progress")
    assert {k: shap_image[k] for k in shared} == {k: lime_image[k] for k in shared}


def test_repeated_words_get_one_label_scheme_everywhere():
    from captum_diffusion.testing import tiny_tokenizer
    from captum_diffusion.words.tokens import resolve_words

    prompt = "a red circle and a blue square"
    labels = word_labels(prompt.split())
    assert labels == ["a#0", "red", "circle", "and", "a#1", "blue", "square"]
    assert [t.label for t in resolve_words(prompt, tiny_tokenizer())] == labels                 # DAAM's maps

    def f(prompts):
        return np.array([len(p.split()) + 0.5 * ("red" in p.split()) for p in prompts], dtype=float)

    assert list(shap_adapters.explain_prompt(prompt, f, progress=False).feature_names) == labels
    lime = lime_adapters.explain_prompt(prompt, f, num_samples=50)
    assert sorted(name for name, _ in lime.as_list(label=0)) == sorted(labels)
    assert list(shap_adapters.word_explanation(np.zeros(7), prompt).feature_names) == labels


def test_a_prompt_score_plays_only_its_own_prompt(tiny_generator):
    from captum_diffusion.scoring import PromptScore

    scorer = lambda images, reference: np.zeros(len(images))  # noqa: E731
    f = PromptScore(tiny_generator, scorer, "a red  circle\n")
    assert f.prompt == "a red circle"                          # the full coalition's sub-prompt: same image, same key
    assert tiny_generator.key(f.prompt) == tiny_generator.key(" ".join("a red circle".split()))
    with pytest.raises(ValueError, match="differs from the prompt of f"):
        shap_adapters.explain_prompt("a blue square", f)
    with pytest.raises(ValueError, match="differs from the prompt of f"):
        lime_adapters.explain_prompt("a red", f)
    assert shap_adapters.explain_prompt("a red circle", f, progress=False).values.shape == (3,)


def test_result_types_declare_their_fields():
    from lime.lime_image import ImageExplanation

    from lime_adapters.image import WordImageExplanation
    from shap_adapters.image import SegmentExplanation

    assert issubclass(WordImageExplanation, ImageExplanation)
    assert {"words", "segment_scorer"} <= set(WordImageExplanation.__annotations__)
    assert "segment_scorer" in inspect.signature(SegmentExplanation.__init__).parameters


@pytest.fixture(scope="module")
def tiny_generator():
    from captum_diffusion.generation import TextToImage

    return TextToImage(lambda prompts: [np.zeros((8, 8, 3), np.uint8) for _ in prompts], progress=False)
