"""The shipped ShapesWorld transformer (SD3-style MMDiT): loads offline like the UNet, generates 64x64 images
that depend on the seed and the prompt only, through ``TextToImage`` too, and draws the asked colours."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from captum_diffusion.generation import TextToImage
from captum_diffusion.shapes_world import (IMAGE_SIZE, TRANSFORMER_GENERATION, analyse, load_shapes_world,
                                           parse_prompt, weights_available)

needs_weights = pytest.mark.skipif(not weights_available("transformer"),
                                   reason="ShapesWorld transformer weights not trained/shipped yet")


@pytest.fixture(scope="module")
def transformer():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_shapes_world(family="transformer")
    torch.set_num_threads(threads)


def t2i(pipe, **kwargs) -> TextToImage:
    return TextToImage(pipe, seed=TRANSFORMER_GENERATION.seed, progress=False,
                       **TRANSFORMER_GENERATION.pipeline_kwargs(), **kwargs)


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_unknown_family_is_named():
    with pytest.raises(ValueError, match="family"):
        load_shapes_world(family="dit")
    with pytest.raises(ValueError, match="family"):
        weights_available("dit")


@needs_weights
def test_loads_as_an_sd3_pipeline_with_the_shapes_world_clip_and_no_t5(transformer):
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    pipe, scorer = transformer
    assert isinstance(pipe, StableDiffusion3Pipeline) and isinstance(pipe.transformer, SD3Transformer2DModel)
    assert isinstance(pipe.text_encoder, CLIPTextModelWithProjection)
    assert isinstance(pipe.text_encoder_2, CLIPTextModelWithProjection)
    assert pipe.text_encoder_3 is None and pipe.tokenizer_3 is None
    assert pipe.vae.config.shift_factor is not None and pipe.transformer.config.in_channels == 4
    # its text tower is the scorer's CLIP text tower
    ids = pipe.tokenizer(["a red circle"], return_tensors="pt").input_ids
    with torch.no_grad():
        clip = scorer.model.text_projection(scorer.model.text_model(ids).pooler_output)
        assert torch.allclose(pipe.text_encoder(ids).text_embeds, clip, atol=1e-5)


@needs_weights
def test_generates_64px_images_that_depend_on_seed_and_prompt_only(transformer):
    pipe, _ = transformer
    prompts = ["a red circle", "a blue square on the left", ""]
    batched = t2i(pipe, batch_size=3)(prompts)
    alone = t2i(pipe, batch_size=1)
    assert batched[0].size == (IMAGE_SIZE, IMAGE_SIZE) and batched[0].mode == "RGB"
    for prompt, image in zip(prompts, batched):
        assert np.abs(pixels(alone([prompt])[0]) - pixels(image)).max() <= 1, prompt
    again = pipe(prompts[:1], generator=torch.Generator().manual_seed(3), **TRANSFORMER_GENERATION.pipeline_kwargs())
    same = pipe(prompts[:1], generator=torch.Generator().manual_seed(3), **TRANSFORMER_GENERATION.pipeline_kwargs())
    other = pipe(prompts[:1], generator=torch.Generator().manual_seed(4), **TRANSFORMER_GENERATION.pipeline_kwargs())
    assert np.array_equal(pixels(again.images[0]), pixels(same.images[0]))
    assert np.abs(pixels(again.images[0]) - pixels(other.images[0])).max() > 0
    assert np.abs(pixels(batched[0]) - pixels(batched[1])).max() > 0


@needs_weights
def test_generated_single_objects_have_the_asked_colour(transformer):
    pipe, _ = transformer
    prompts = ["a red circle", "a green square", "a blue triangle", "a yellow circle"]
    images = t2i(pipe, batch_size=4)(prompts)
    right = [any(o.colour == parse_prompt(p)[0].colour for o in analyse(im)) for p, im in zip(prompts, images)]
    assert sum(right) >= 3, right
