"""Payoffs: CLIPSimilarity, LatentSimilarity and the PromptScore black box."""
from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from captum_diffusion.generation import TextToImage
from captum_diffusion.scoring import CLIPSimilarity, LatentSimilarity, PromptScore
from captum_diffusion.testing import tiny_clip, tiny_stable_diffusion



@pytest.fixture(scope="module")
def clip():
    return CLIPSimilarity(*tiny_clip(seed=0), batch_size=2)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(4)]
    arrays.append(np.zeros((40, 56, 3), np.uint8))
    return [PIL.Image.fromarray(a) for a in arrays]


@pytest.fixture(scope="module")
def generator():
    return TextToImage(tiny_stable_diffusion("sd1", seed=0), num_inference_steps=2, progress=False)


# ------------------------------------------------------------------------------------------------------ CLIP


def test_clip_embeddings_are_unit_norm_with_shapes(clip, images):
    image_embeddings = clip.embed_images(images)
    text_embeddings = clip.embed_texts(["a red circle", "a blue square", "dog"])
    assert image_embeddings.shape == (5, 32) and text_embeddings.shape == (3, 32)
    assert image_embeddings.dtype == torch.float32 and not image_embeddings.requires_grad
    assert torch.allclose(image_embeddings.norm(dim=1), torch.ones(5), atol=1e-5)
    assert torch.allclose(text_embeddings.norm(dim=1), torch.ones(3), atol=1e-5)
    assert clip.embed_images([]).shape == (0, 32)


def test_clip_image_similarity_identity_symmetry_and_batching(clip, images):
    values = clip.image_similarity(images, images[0])
    assert values.shape == (5,) and values.dtype == np.float64
    assert values[0] == pytest.approx(1.0, abs=1e-6)
    assert np.all(values[1:] < 1.0 - 1e-4) and np.all(np.abs(values) <= 1.0)
    assert clip.image_similarity([images[0]], images[3])[0] == pytest.approx(values[3], abs=1e-6)  # symmetric
    one_at_a_time = CLIPSimilarity(clip.model, clip.processor, batch_size=1).image_similarity(images, images[0])
    np.testing.assert_allclose(one_at_a_time, values, atol=1e-5)


def test_clip_text_similarity_matches_transformers_logits(clip, images):
    texts = ["a red circle", "a blue square", "dog"]
    values = clip.text_similarity(images, texts)
    assert values.shape == (5, 3)
    inputs = clip.processor(text=texts, images=images, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = (clip.model(**inputs).logits_per_image / clip.model.logit_scale.exp()).numpy()
    np.testing.assert_allclose(values, expected, atol=1e-5)
    assert clip.text_similarity(images[0], "dog").shape == (1, 1)


def test_clip_accepts_arrays_and_converts_modes(clip, images):
    reference = clip.embed_images([images[1]])
    assert torch.allclose(clip.embed_images([np.asarray(images[1])]), reference, atol=1e-6)
    assert torch.allclose(clip.embed_images([images[1].convert("RGBA")]), reference, atol=1e-6)
    gray = images[2].convert("L")
    assert torch.allclose(clip.embed_images([gray]), clip.embed_images([gray.convert("RGB")]), atol=1e-6)


def test_clip_loads_a_local_directory(clip, tmp_path, images):
    clip.model.save_pretrained(tmp_path)
    clip.processor.save_pretrained(tmp_path)
    loaded = CLIPSimilarity(str(tmp_path), device="cpu")
    np.testing.assert_allclose(loaded.image_similarity(images, images[0]), clip.image_similarity(images, images[0]),
                               atol=1e-6)
    assert loaded.device.type == "cpu"


def test_clip_bad_input(clip, images):
    with pytest.raises(TypeError, match=r"images\[0\]"):
        clip.embed_images([torch.zeros(3, 8, 8)])
    with pytest.raises(TypeError, match="uint8"):
        clip.image_similarity([np.zeros((8, 8, 3), np.int32)], images[0])
    with pytest.raises(TypeError, match="reference_image"):
        clip.image_similarity(images, "a red circle")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        clip.embed_texts(["a", 2])
    with pytest.raises(ValueError, match="processor is required"):
        CLIPSimilarity(clip.model)
    with pytest.raises(TypeError, match="CLIPModel"):
        CLIPSimilarity(42)
    with pytest.raises(ValueError, match="batch_size"):
        CLIPSimilarity(clip.model, clip.processor, batch_size=0)


# ---------------------------------------------------------------------------------------------------- latents


def test_latent_similarity_is_cosine_of_vae_means(generator, images):
    latent = LatentSimilarity(generator)
    vae = generator.pipeline.vae
    assert LatentSimilarity(generator.pipeline).vae is vae and LatentSimilarity(vae).vae is vae
    small = [image.resize((32, 32), resample=PIL.Image.BICUBIC) for image in images]
    values = latent.image_similarity(small, small[0])
    assert values.shape == (5,) and values[0] == pytest.approx(1.0, abs=1e-6) and np.all(values[1:] < 1.0)
    x = torch.from_numpy(np.stack([np.asarray(im) for im in small[:2]])).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        means = vae.encode(x).latent_dist.mean.flatten(1)
    expected = torch.nn.functional.cosine_similarity(means[1], means[0], dim=0).item()
    assert values[1] == pytest.approx(expected, abs=1e-5)
    # images are resized to the reference's size
    assert latent.image_similarity(images[:1], small[0])[0] == pytest.approx(1.0, abs=1e-6)
    assert latent.embed_images(small).shape == (5, 4 * 16 * 16)


def test_latent_similarity_bad_source():
    with pytest.raises(TypeError, match="AutoencoderKL"):
        LatentSimilarity(TextToImage(lambda prompts: prompts))


# --------------------------------------------------------------------------------------------------- PromptScore


def test_prompt_score_is_clip_similarity_to_the_full_prompt_image(generator, clip):
    f = PromptScore(generator, clip, "a red circle")
    subprompts = ["a red circle", "", "red", "a circle", "red circle"]
    values = f(subprompts)
    assert values.shape == (5,) and values.dtype == np.float64
    assert values[0] == pytest.approx(1.0, abs=1e-6)  # the full prompt reproduces its own image
    direct = clip.image_similarity(generator(subprompts), generator(["a red circle"])[0])
    np.testing.assert_allclose(values, direct, atol=1e-12)
    made = generator.n_generated
    np.testing.assert_array_equal(f(subprompts[::-1]), values[::-1])
    assert generator.n_generated == made  # second call: all from the cache


def test_prompt_score_text_reference_and_latent_payoff(generator, clip):
    text = PromptScore(generator, clip, "a red circle", reference="text")
    np.testing.assert_allclose(text(["red", ""]), clip.text_similarity(generator(["red", ""]), ["a red circle"])[:, 0])
    latent = PromptScore(generator, LatentSimilarity(generator), "a red circle")
    values = latent(["a red circle", "", "red"])
    assert values[0] == pytest.approx(1.0, abs=1e-6) and np.all(values[1:] < 1.0)


def test_prompt_score_accepts_a_plain_scoring_callable(generator):
    def mean_brightness_gap(images, reference):
        return np.array([-abs(np.mean(image) - np.mean(reference)) for image in images])

    f = PromptScore(generator, mean_brightness_gap, "a red circle")
    assert f(["a red circle"])[0] == 0.0 and f(["", "red"]).shape == (2,)


def test_prompt_score_bad_input(generator, clip):
    def nan_for_second(images, reference):
        return np.array([0.5, np.nan, 0.5][: len(images)])

    with pytest.raises(ValueError, match=r"NaN or inf for sub-prompt\(s\) \['red'\]"):
        PromptScore(generator, nan_for_second, "a red circle")(["", "red", "circle"])
    with pytest.raises(ValueError, match=r"NaN or inf for sub-prompt\(s\) \['circle'\]"):  # inf, as NaN
        PromptScore(generator, lambda images, ref: np.full(len(images), np.inf), "a red circle")(["circle"])
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        PromptScore(generator, lambda images, ref: np.zeros((2, 2)), "a red circle")(["", "red"])
    with pytest.raises(ValueError, match="reference"):
        PromptScore(generator, clip, "a red circle", reference="caption")
    with pytest.raises(ValueError, match="empty"):
        PromptScore(generator, clip, "   ")
    with pytest.raises(TypeError, match="TextToImage"):
        PromptScore(generator.pipeline, clip, "a red circle")
    with pytest.raises(TypeError, match="text_similarity"):
        PromptScore(generator, LatentSimilarity(generator), "a red circle", reference="text")
    with pytest.raises(TypeError, match="single str"):
        PromptScore(generator, clip, "a red circle")("red")


def test_prompt_score_scores_in_chunks(generator, clip):
    sizes = []

    def recording(images, reference):
        sizes.append(len(images))
        return clip.image_similarity(images, reference)

    subprompts = ["", "a", "red", "circle", "a red", "red circle", "a circle"]
    chunked = PromptScore(generator, recording, "a red circle", chunk_size=3)(subprompts)
    assert sizes == [3, 3, 1]
    np.testing.assert_allclose(chunked, PromptScore(generator, clip, "a red circle")(subprompts), atol=1e-6)
