"""A one-pass CLIP-conditioned GAN generator behind the same adapters as diffusion, and RATLIP's CLIP score."""
from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from captum_diffusion.generation.gan import AffineGenerator, CLIPConditionedGenerator
from captum_diffusion.generation import TextToImage
from captum_diffusion.metrics.clip import clip_score
from captum_diffusion.scoring import CLIPSimilarity, PromptScore

PROMPT = "a red circle"


@pytest.fixture(scope="module")
def clip():
    from captum_diffusion.testing import tiny_clip

    return tiny_clip()


@pytest.fixture(scope="module")
def gan(clip):
    model, processor = clip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = AffineGenerator(cond_dim=model.config.projection_dim, z_dim=16, channels=16, image_size=32).eval()
    return CLIPConditionedGenerator(net, model, processor.tokenizer, seed=0)


def test_one_image_per_prompt_one_forward_pass_each(gan):
    before = gan.n_forward
    images = gan(["a red circle", "a blue square", ""])
    assert gan.n_forward - before == 3                                  # RATLIP mixes a batch: never batch prompts
    assert all(isinstance(im, PIL.Image.Image) and im.mode == "RGB" and im.size == (32, 32) for im in images)
    alone = gan(["a blue square"])[0]
    np.testing.assert_array_equal(np.asarray(alone), np.asarray(images[1]))   # independent of batch neighbours
    assert not np.array_equal(np.asarray(images[0]), np.asarray(images[1]))   # the text steers the image


def test_seeding_follows_torch_generators(gan):
    a = gan([PROMPT], generator=[torch.Generator().manual_seed(5)])[0]
    b = gan([PROMPT], generator=torch.Generator().manual_seed(5))[0]
    c = gan([PROMPT], generator=[torch.Generator().manual_seed(6)])[0]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    with pytest.raises(ValueError, match="one per prompt"):
        gan([PROMPT, PROMPT], generator=[torch.Generator()])
    # TextToImage hands the callable one generator per prompt seeded with its own seed
    text_to_image = TextToImage(gan, seed=5, progress=False)
    np.testing.assert_array_equal(np.asarray(text_to_image([PROMPT])[0]), np.asarray(a))


def test_bad_arguments(clip):
    model, processor = clip
    net = AffineGenerator(cond_dim=32, z_dim=8, image_size=16)
    with pytest.raises(ValueError, match="tokenizer"):
        CLIPConditionedGenerator(net, model)
    with pytest.raises(ValueError, match="z_dim"):
        CLIPConditionedGenerator(lambda z, s: z, lambda texts: torch.zeros(len(texts), 4))
    with pytest.raises(TypeError, match="generator must be callable"):
        CLIPConditionedGenerator(3, model, processor.tokenizer)
    with pytest.raises(ValueError, match="power of two"):
        AffineGenerator(cond_dim=4, image_size=24)


def test_plain_callable_text_encoder_like_galip(clip):
    model, processor = clip
    scorer = CLIPSimilarity(model, processor)

    def encode(texts):  # GALIP's CLIP_TXT_ENCODER returns (sentence, words)
        return scorer.embed_texts(texts), None

    net = AffineGenerator(cond_dim=32, z_dim=8, image_size=16)
    generator = CLIPConditionedGenerator(lambda z, s: net(z, s), encode, z_dim=8, normalize=True)
    images = generator(["a red circle", "a green square"])
    assert [im.size for im in images] == [(16, 16), (16, 16)]


def test_word_level_adapters_explain_the_gan(gan, clip):
    from shap_adapters import explain_prompt

    model, processor = clip
    scorer = CLIPSimilarity(model, processor)
    text_to_image = TextToImage(gan, seed=0, progress=False)
    f = PromptScore(text_to_image, scorer, PROMPT)
    explanation = explain_prompt(PROMPT, f, algorithm="exact", progress=False)
    assert list(explanation.feature_names) == PROMPT.split()
    full, empty = f([PROMPT, ""])
    assert full == pytest.approx(1.0, abs=1e-5)                         # the full prompt's image is the reference
    np.testing.assert_allclose(explanation.values.sum(), full - empty, atol=1e-6)   # efficiency
    assert text_to_image.n_generated == 2 ** 3                          # every sub-prompt generated once


def test_image_side_explains_a_gan_image(gan, clip):
    from captum_diffusion.image.segmenters import SuperpixelSegmenter
    from shap_adapters.image import explain_image

    model, processor = clip
    scorer = CLIPSimilarity(model, processor)
    image = gan([PROMPT])[0]
    explanation = explain_image(image, PROMPT, scorer, SuperpixelSegmenter("slic", n_segments=6), progress=False)
    seg = explanation.segment_scorer
    n = seg.n_segments
    assert 2 <= n <= 12 and explanation.values.shape == (n, 3)
    full, empty = seg(np.ones((1, n), bool))[0], seg(np.zeros((1, n), bool))[0]
    np.testing.assert_allclose(explanation.values.sum(0), full - empty, atol=1e-9)


def test_clip_score_is_100_cosine(clip):
    model, processor = clip
    scorer = CLIPSimilarity(model, processor)
    images = [np.full((64, 64, 3), c, np.uint8) for c in (0, 128, 255)]
    prompts = ["a red circle", "a blue square", "a green triangle"]
    per_image = clip_score(images, prompts, scorer, reduction="none")
    expected = 100 * np.diag(scorer.text_similarity(images, prompts))
    np.testing.assert_allclose(per_image, expected, atol=1e-4)
    assert clip_score(images, prompts, scorer) == pytest.approx(expected.mean())
    clamped = clip_score(images, prompts, scorer, reduction="none", clamp=True)
    np.testing.assert_allclose(clamped, np.maximum(per_image, 0))
    np.testing.assert_allclose(clip_score(images, "a red circle", scorer, reduction="none"),
                               100 * scorer.text_similarity(images, ["a red circle"])[:, 0], atol=1e-4)
    with pytest.raises(ValueError, match="one prompt per image"):
        clip_score(images, prompts[:2], scorer)
    with pytest.raises(ValueError, match="reduction"):
        clip_score(images, prompts, scorer, reduction="sum")
