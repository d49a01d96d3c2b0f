"""ShapesWorld: the renderer's ground truth, the analyser, and the meaning of the shipped trained model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from captum_diffusion.shapes_world import (ALL_PROMPTS, COLOURS, DEFAULT_GENERATION, HELD_OUT_PROMPTS, IMAGE_SIZE,
                                           PAIR_PROMPTS, POSITION_PROMPTS, SINGLE_PROMPTS, TRAIN_PROMPTS, analyse,
                                           parse_prompt, render, weights_available)
from captum_diffusion.words.attribution import shapley_from_values
from captum_diffusion.words import WordGame, split_words

HALF = IMAGE_SIZE // 2
REGION = {"left": (slice(None), slice(0, HALF)), "right": (slice(None), slice(HALF, None)),
          "top": (slice(0, HALF), slice(None)), "bottom": (slice(HALF, None), slice(None))}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


# ------------------------------------------------------------------------------------------ world + prompts

def test_prompt_sets_partition_and_held_out_rule():
    assert len(SINGLE_PROMPTS) == 12 and len(POSITION_PROMPTS) == 48 and len(PAIR_PROMPTS) == 144
    assert sorted(TRAIN_PROMPTS + HELD_OUT_PROMPTS) == sorted(ALL_PROMPTS) == sorted(set(ALL_PROMPTS))
    assert not set(TRAIN_PROMPTS) & set(HELD_OUT_PROMPTS)
    held = set(HELD_OUT_PROMPTS)
    assert len(held & set(POSITION_PROMPTS)) == 12 and len(held & set(PAIR_PROMPTS)) == 36
    assert not held & set(SINGLE_PROMPTS)
    # every colour-shape keeps 3 of its 4 positions in training, so each held-out one is a new combination
    for prompt in SINGLE_PROMPTS:
        assert sum(p.startswith(prompt + " on") for p in TRAIN_PROMPTS) == 3


@pytest.mark.parametrize("prompt", ["a red circle", "a blue triangle on the top", "a yellow square on the right",
                                    "a green triangle and a red square", "a blue circle and a blue circle"])
def test_render_masks_are_the_objects(prompt):
    specs = parse_prompt(prompt)
    for seed in range(5):
        image, object_masks, word_masks = render(prompt, seed)
        pixels = np.asarray(image)
        assert image.mode == "RGB" and image.size == (IMAGE_SIZE, IMAGE_SIZE)
        assert len(object_masks) == len(specs)
        union = np.zeros((IMAGE_SIZE, IMAGE_SIZE), bool)
        for spec, mask in zip(specs, object_masks):
            assert mask.dtype == bool and mask.shape == (IMAGE_SIZE, IMAGE_SIZE) and mask.sum() > 60
            assert (pixels[mask] == COLOURS[spec.colour]).all()
            if spec.region is not None:  # the object lies entirely inside its stated half
                outside = np.ones_like(mask)
                outside[REGION[spec.region]] = False
                assert not (mask & outside).any()
            assert not (union & mask).any()
            union |= mask
        assert (pixels[~union] == 255).all()
        # word masks: colour and shape words -> their object's mask, every other word -> None
        words = split_words(prompt)
        assert len(word_masks) == len(words)
        obj = -1
        for word, mask in zip(words, word_masks):
            obj += word in COLOURS
            if word in COLOURS or word in ("circle", "square", "triangle"):
                assert mask is object_masks[obj]
            else:
                assert mask is None
    assert np.array_equal(np.asarray(render(prompt, 3).image), np.asarray(render(prompt, 3).image))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert np.array_equal(np.asarray(render(prompt, g1).image), np.asarray(render(prompt, g2).image))


def test_render_sizes_and_places_vary():
    boxes = {tuple(np.argwhere(render("a red square", s).object_masks[0]).min(0)) for s in range(20)}
    assert len(boxes) > 10


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="not a ShapesWorld prompt"):
        parse_prompt("a purple circle")
    with pytest.raises(ValueError, match="not a ShapesWorld prompt"):
        render("a red circle on the middle", 0)
    with pytest.raises(TypeError, match="generator"):
        render("a red circle", generator="seed")
    with pytest.raises(TypeError, match="image"):
        analyse(np.zeros((8, 8, 2)))  # (grayscale (H, W) is an image, as everywhere: captum_diffusion.convert)
    with pytest.raises(ValueError, match="image"):
        analyse(np.full((8, 8, 3), 2.0))  # floats must lie in [0, 1]


def test_analyser_recovers_renderer_ground_truth():
    rng = np.random.default_rng(0)
    for prompt in [ALL_PROMPTS[i] for i in rng.integers(0, len(ALL_PROMPTS), 120)]:
        rendering = render(prompt, rng)
        specs = parse_prompt(prompt)
        found = analyse(rendering.image)
        assert len(found) == len(specs), prompt
        for spec, mask, obj in zip(specs, rendering.object_masks, found):  # both ordered left to right
            assert (obj.colour, obj.shape) == (spec.colour, spec.shape), prompt
            assert iou(obj.mask, mask) >= 0.95
            if spec.region is not None:
                assert obj.in_region(spec.region)
    # arrays in [0, 1] floats work the same as PIL images
    rendering = render("a green circle", 5)
    floats = np.asarray(rendering.image, dtype=np.float32) / 255
    assert iou(analyse(floats)[0].mask, rendering.object_masks[0]) == 1.0


# --------------------------------------------------------------------------------------------- trained model

needs_weights = pytest.mark.skipif(not weights_available(), reason="ShapesWorld weights not trained/shipped yet")


@pytest.fixture(scope="module")
def shapes_world():
    """The shipped model, run on one torch thread: on this shared 2-core machine two threads under load
    spin-wait on each other and run ~5-10x slower (measured: 55 s vs 6 s for the determinism test)."""
    from captum_diffusion.shapes_world import load_shapes_world

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_shapes_world()
    torch.set_num_threads(threads)


def generate(pipe, prompts, seed=DEFAULT_GENERATION.seed):
    """One image per prompt, each from its own seeded generator (independent of batch-mates)."""
    generators = [torch.Generator().manual_seed(seed) for _ in prompts]
    return pipe(list(prompts), generator=generators, **DEFAULT_GENERATION.pipeline_kwargs()).images


@needs_weights
def test_pipeline_generates_64px_images_deterministically(shapes_world):
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

    pipe, _ = shapes_world
    assert isinstance(pipe, StableDiffusionPipeline)
    assert isinstance(pipe.text_encoder, CLIPTextModel) and isinstance(pipe.tokenizer, CLIPTokenizer)
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    a, b = generate(pipe, ["a red circle", "a blue square"]), generate(pipe, ["a blue square"])
    assert a[0].size == (IMAGE_SIZE, IMAGE_SIZE) and a[0].mode == "RGB"
    assert np.abs(np.asarray(a[1], float) - np.asarray(b[0], float)).max() <= 1  # batch-independent
    assert not np.array_equal(np.asarray(a[0]), np.asarray(a[1]))


@needs_weights
def test_clip_picks_the_right_prompt_for_rendered_objects(shapes_world):
    _, scorer = shapes_world
    rng = np.random.default_rng(1)
    images = [render(p, rng).image for p in SINGLE_PROMPTS for _ in range(4)]
    sims = scorer.text_similarity(images, SINGLE_PROMPTS)
    accuracy = (sims.argmax(1) == np.repeat(np.arange(12), 4)).mean()
    assert accuracy >= 0.9


@needs_weights
def test_generated_single_objects_have_the_asked_colour(shapes_world):
    pipe, _ = shapes_world
    images = generate(pipe, SINGLE_PROMPTS)
    right = [any(o.colour == parse_prompt(p)[0].colour for o in analyse(im)) for p, im in zip(SINGLE_PROMPTS, images)]
    assert sum(right) >= 10, right


@needs_weights
@pytest.mark.parametrize("prompt", ["a red circle", "a blue square", "a yellow triangle"])
def test_exact_shapley_ranks_colour_and_shape_above_a(shapes_world, prompt):
    """The game is v(S) = mean over seeds 0..3 of the CLIP image cosine between the sub-prompt's image and the
    full prompt's image at that seed (the seed-averaged Gupta & Kanoria payoff): one seed's image is one
    sample of the model, and a single seed can make a word look useless by chance."""
    pipe, scorer = shapes_world
    words, seeds = split_words(prompt), range(4)
    references = [generate(pipe, [prompt], seed)[0] for seed in seeds]

    def value(prompts):
        return np.mean([scorer.image_similarity(generate(pipe, prompts, seed), ref)
                        for seed, ref in zip(seeds, references)], axis=0)

    masks, v = WordGame(value, words).all_coalitions()  # row 0: no word, last row: every word
    phi = shapley_from_values(masks, v)
    assert phi.sum() == pytest.approx(v[-1] - v[0], abs=1e-9)  # efficiency
    assert phi[1] > phi[0] and phi[2] > phi[0], dict(zip(words, phi.round(3)))
