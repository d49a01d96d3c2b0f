"""End to end on real diffusers pipelines: TextToImage -> PromptScore -> shap / lime / captum adapters.

The tiny random-weight pipeline checks the plumbing exactly (Shapley values against a brute-force sum, the
shared cache); the trained ShapesWorld model, when its weights are present, checks that the right word wins.
"""
from __future__ import annotations

import numpy as np
import pytest

import lime_adapters.text as lime_text
import shap_adapters.text as shap_text
from captum_diffusion.words.attribution import WordAttribution, shapley_from_values
from captum_diffusion.generation import TextToImage
from captum_diffusion.scoring import CLIPSimilarity, LatentSimilarity, PromptScore
from captum_diffusion.testing import tiny_clip, tiny_stable_diffusion
from captum_diffusion.words import WordGame

PROMPT = "a red circle above square"  # d = 5 words, 32 sub-prompts



@pytest.fixture(scope="module")
def pipe():
    return tiny_stable_diffusion("sd1", seed=0)


@pytest.fixture(scope="module")
def clip():
    return CLIPSimilarity(*tiny_clip(seed=0))


@pytest.mark.parametrize("payoff", ["clip", "latent"])
def test_exact_shap_equals_brute_force_shapley_on_a_real_pipeline(pipe, clip, payoff):
    generator = TextToImage(pipe, num_inference_steps=2, batch_size=8, progress=False)
    scorer = clip if payoff == "clip" else LatentSimilarity(generator)
    f = PromptScore(generator, scorer, PROMPT)
    explanation = shap_text.explain_prompt(PROMPT, f, algorithm="exact", progress=False)
    words = PROMPT.split()
    assert list(explanation.feature_names) == words
    expected = shapley_from_values(*WordGame(f, words).all_coalitions())  # checked against d! orderings in test_attribution
    np.testing.assert_allclose(explanation.values, expected, atol=1e-9)
    full, empty = f([PROMPT, ""])
    assert full == pytest.approx(1.0, abs=1e-6)
    assert explanation.base_values == pytest.approx(empty, abs=1e-12)  # the base value is f("")
    assert explanation.values.sum() == pytest.approx(full - empty, abs=1e-6)  # efficiency
    assert generator.n_generated == 2 ** len(words)


def test_shapley_values_do_not_depend_on_batching(pipe, clip):
    prompt = "a red circle above"
    values = []
    for batch_size in (1, 16):
        generator = TextToImage(pipe, num_inference_steps=2, batch_size=batch_size, progress=False)
        values.append(shap_text.explain_prompt(prompt, PromptScore(generator, clip, prompt), algorithm="exact",
                                               progress=False).values)
    np.testing.assert_allclose(values[0], values[1], atol=1e-6)
    assert np.abs(values[0]).max() > 1e-6  # the values themselves are not all ~0


def test_shap_then_lime_then_captum_generate_each_subprompt_once(pipe, clip):
    prompt = "a blue square"  # d = 3
    generator = TextToImage(pipe, num_inference_steps=2, batch_size=4, progress=False)
    f = PromptScore(generator, clip, prompt)
    shap_values = shap_text.explain_prompt(prompt, f, algorithm="exact", progress=False).values
    assert generator.n_generated == 2**3
    lime_explanation = lime_text.explain_prompt(prompt, f, num_samples=200)
    assert generator.n_generated == 2**3  # LIME's 200 samples are all cached sub-prompts
    lime_weights = lime_text.word_weights(lime_explanation)
    assert lime_weights.shape == (3,) and np.isfinite(lime_weights).all()
    captum_values = WordAttribution(f, method="shapley_values", progress=False).attribute(prompt)
    assert generator.n_generated == 2**3
    np.testing.assert_allclose(captum_values.seq_attr.numpy(), shap_values, atol=1e-6)
    assert captum_values.input_tokens == prompt.split() and captum_values.base_value == pytest.approx(f([""])[0])
    assert generator.n_generated == 2**3


def test_d5_shap_then_lime_generate_exactly_2_to_the_d_images(pipe, clip):
    """Each explainer gets its own PromptScore: the images are shared through the TextToImage cache."""
    generator = TextToImage(pipe, num_inference_steps=2, batch_size=8, progress=False)
    shap_text.explain_prompt(PROMPT, PromptScore(generator, clip, PROMPT), algorithm="exact", progress=False)
    assert generator.n_generated == 2**5
    lime_text.explain_prompt(PROMPT, PromptScore(generator, clip, PROMPT), num_samples=200)
    assert generator.n_generated == 2**5 and generator.n_from_cache >= 1


def _shapes_world_generators(seeds):
    """The shipped ShapesWorld pipeline at its default settings, one ``TextToImage`` per seed, and its CLIP."""
    from captum_diffusion import shapes_world

    if not shapes_world.weights_available():
        pytest.skip("ShapesWorld weights are not present (captum_diffusion/shapes_world/weights/)")
    pipe, clip = shapes_world.load_shapes_world()
    return [TextToImage(pipe, seed=seed, batch_size=8, progress=False, **shapes_world.DEFAULT_GENERATION.pipeline_kwargs())
            for seed in seeds], clip


@pytest.mark.parametrize("payoff", ["clip", "latent"])
def test_shapes_world_the_colour_or_shape_wins(payoff):
    """On the trained model the colour and the shape decide what the image shows. CLIP image payoff: the top
    word is one of them, never the article "a". VAE-latent payoff (layout more than meaning): "a" alone does
    carry meaning here ("" often draws several objects, "a" one), so it may outrank either word on its own
    (measured: 0.26 for "a" against 0.20 and 0.19 on "a red circle"), but colour and shape together outweigh it.
    One seed's image is one sample, so the explanation is averaged over seeds 0..3; Shapley values are linear
    in the game, so this is the Shapley value of the seed-averaged payoff."""
    generators, clip = _shapes_world_generators(range(4))
    for prompt in ("a red circle", "a blue square", "a yellow triangle"):
        values = np.mean([shap_text.explain_prompt(
            prompt, PromptScore(g, clip if payoff == "clip" else LatentSimilarity(g), prompt), algorithm="exact",
            progress=False).values for g in generators], axis=0)  # (article, colour, shape)
        if payoff == "clip":
            assert np.argmax(values) in (1, 2), (prompt, values)
        else:
            assert values[1] + values[2] > values[0], (prompt, values)
