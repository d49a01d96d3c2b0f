"""Diffusion transformers (SD3, FLUX.1, PixArt-Σ) through TextToImage, the payoffs and the word explainers.

On the tiny random-weight pipelines of ``captum_diffusion.testing``: the seeded noise is each family's own layout
(the image equals the one the pipeline draws itself from the same generator), an image does not depend on its
batch, every text encoder's token limit is checked before anything is made, and exact SHAP / LIME / captum over
words play the same cached game on each family.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import T5TokenizerFast

import lime_adapters.text as lime_text
import shap_adapters.text as shap_text
from captum_diffusion.generation import TextToImage, families
from captum_diffusion.scoring import LatentSimilarity, PromptScore
from captum_diffusion.testing import (T5_SPLIT_WORDS, TRANSFORMER_FAMILIES, tiny_stable_diffusion,
                                      tiny_t5_tokenizer, tiny_transformer_pipeline)
from captum_diffusion.words import WordGame
from captum_diffusion.words.attribution import WordAttribution, shapley_from_values

STEPS = 2
PROMPTS = ["a red circle", "a blue square", "a green triangle on the left", ""]


@pytest.fixture(scope="module", params=TRANSFORMER_FAMILIES)
def family_pipe(request):
    return request.param, tiny_transformer_pipeline(request.param, seed=0)


def t2i(pipe, **kwargs):
    kwargs = {"num_inference_steps": STEPS, "height": 32, "width": 32, "progress": False, **kwargs}
    return TextToImage(pipe, **kwargs)


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


# ------------------------------------------------------------------------------------------ families and layout


def test_family_by_pipeline_class_and_noise_layout(family_pipe):
    family, pipe = family_pipe
    assert families.pipeline_family(pipe) == family and families.describe(pipe).name == family
    expected_shape = {"sd3": (16, 16, 16), "flux": (16, 16, 16), "pixart": (4, 16, 16)}[family]
    assert families.describe(pipe).noise_shape(32, 32) == expected_shape
    latents = t2i(pipe).pipeline_kwargs(3)["latents"]
    expected_latents = {"sd3": (3, 16, 16, 16), "flux": (3, 64, 64), "pixart": (3, 4, 16, 16)}[family]
    assert tuple(latents.shape) == expected_latents
    assert torch.equal(latents[0], latents[2])  # every prompt starts from the seed's noise
    noise = torch.randn((1, *expected_shape), generator=torch.Generator().manual_seed(0))
    if family == "flux":  # packed 2x2: token (i, j) holds noise[:, 2i:2i+2, 2j:2j+2], channels (C, dy, dx)
        assert torch.equal(latents[0, 8 * 3 + 5], noise[0, :, 6:8, 10:12].reshape(-1))
    else:
        assert torch.equal(latents[:1], noise)


def test_one_registered_class_describes_each_family_whole(family_pipe):
    """Generation and attention read one object: the registry's class, an AttentionFamily (so a PipelineFamily)."""
    from captum_diffusion.attention import attention_family, registry
    from captum_diffusion.attention.families import AttentionFamily
    from captum_diffusion.generation.pipeline_family import PipelineFamily

    family, pipe = family_pipe
    described = families.describe(pipe)
    assert type(described) in registry.FAMILIES and isinstance(described, AttentionFamily)
    assert isinstance(described, PipelineFamily) and type(attention_family(pipe)) is type(described)
    assert [f.name for f in registry.FAMILIES] == ["sd3", "flux", "pixart", "unet"]
    assert t2i(pipe).family.name == family
    # where each encoder's tokens lie in the text the denoiser attends to: SD3 [CLIP 77 | T5], FLUX / PixArt T5 only
    expected = {"sd3": {"clip": ("text_encoder", 0, 77), "t5": ("text_encoder_3", 77, 20)},
                "flux": {"t5": ("text_encoder_2", 0, 20)}, "pixart": {"t5": ("text_encoder", 0, 20)}}[family]
    keys = attention_family(pipe).text_keys(20)
    assert {kind: (e.name, e.offset, e.limit) for kind, e in keys.items()} == expected
    assert {e.name for e in described.text_encoders(20)} == set(t2i(pipe, max_sequence_length=20).token_limits)


def test_the_earlier_module_functions_warn_and_still_answer(family_pipe):
    family, pipe = family_pipe
    with pytest.warns(DeprecationWarning, match="noise_shape"):
        assert families.noise_shape(pipe, 32, 32) == families.describe(pipe).noise_shape(32, 32)
    with pytest.warns(DeprecationWarning, match="CALL_KEYWORDS"):
        assert families.CALL_KEYWORDS == {"pixart": {"use_resolution_binning": False, "clean_caption": False}}
    with pytest.warns(DeprecationWarning, match="T5_FAMILIES"):
        assert set(families.T5_FAMILIES) == {"sd3", "flux", "pixart"}


def test_unet_pipelines_and_callables_keep_their_family():
    assert families.pipeline_family(tiny_stable_diffusion("sd1")) == "unet"
    assert families.pipeline_family(lambda prompts: prompts) is None


def test_seeded_noise_is_the_pipelines_own_draw(family_pipe):
    """The latents TextToImage passes are exactly what the pipeline draws itself from the same generator: the
    family layout (channels, FLUX's packing) is the pipeline's, not a look-alike."""
    family, pipe = family_pipe
    generator = t2i(pipe, seed=3)
    extra = families.describe(pipe).call_keywords
    own = pipe("a red circle", num_inference_steps=STEPS, height=32, width=32, max_sequence_length=256,
               generator=[torch.Generator().manual_seed(3)], **extra).images[0]
    ours = t2i(pipe, seed=3, max_sequence_length=256)(["a red circle"])[0]
    assert np.abs(pixels(own) - pixels(ours)).max() <= 1
    assert generator(["a red circle"])[0].size == (32, 32)


@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_image_is_the_same_alone_in_any_batch_and_with_num_images_per_prompt(family_pipe, guidance):
    """Measured on these models: bit-identical; up to one grey level is allowed for kernels that round batched
    rows differently (see TextToImage)."""
    family, pipe = family_pipe
    batched = t2i(pipe, batch_size=4, guidance_scale=guidance)(PROMPTS)
    reversed_batch = t2i(pipe, batch_size=3, guidance_scale=guidance)(PROMPTS[::-1])[::-1]
    alone = t2i(pipe, batch_size=1, guidance_scale=guidance)
    for prompt, image, other in zip(PROMPTS, batched, reversed_batch):
        single = pixels(alone([prompt])[0])
        assert np.abs(single - pixels(image)).max() <= 1, (family, prompt)
        assert np.abs(single - pixels(other)).max() <= 1, (family, prompt)
    # a tool that calls the pipeline itself (DAAM) with num_images_per_prompt gets the same image k times
    kwargs = alone.pipeline_kwargs(2)
    twice = pipe(prompt=PROMPTS[1], num_images_per_prompt=2, **kwargs).images
    for image in twice:
        assert np.abs(pixels(image) - pixels(batched[1])).max() <= 1
    assert np.abs(pixels(batched[0]) - pixels(batched[1])).max() > 0  # prompts do change the image


def test_guidance_is_classifier_free_for_sd3_and_pixart_and_embedded_for_flux(family_pipe):
    """SD3 and PixArt run the transformer on 2n rows (unconditional + conditional) above guidance 1 and on n at 1;
    FLUX.1 always on n rows, its guidance fed to the transformer as a number."""
    family, pipe = family_pipe
    rows, images = {}, {}

    def count_rows(module, args, kwargs):
        rows.setdefault(guidance, (args[0] if args else kwargs["hidden_states"]).shape[0])

    hook = pipe.transformer.register_forward_pre_hook(count_rows, with_kwargs=True)
    try:
        for guidance in (1.0, 4.0):
            images[guidance] = pixels(t2i(pipe, guidance_scale=guidance, batch_size=2)(PROMPTS[:2])[0])
    finally:
        hook.remove()
    assert rows == ({1.0: 2, 4.0: 2} if family == "flux" else {1.0: 2, 4.0: 4})
    assert np.abs(images[1.0] - images[4.0]).max() > 0  # guidance changes the image in every family


# --------------------------------------------------------------------------------------------------- token limits


def test_every_text_encoder_and_its_limit(family_pipe):
    family, pipe = family_pipe
    expected = {"sd3": {"text_encoder": 77, "text_encoder_2": 77, "text_encoder_3": 256},
                "flux": {"text_encoder": 77, "text_encoder_2": 512},
                "pixart": {"text_encoder": 300}}[family]
    generator = t2i(pipe)
    assert generator.token_limits == expected and generator.token_limit == min(expected.values())
    assert t2i(pipe, max_sequence_length=64).settings["max_sequence_length"] == 64
    assert t2i(pipe, max_sequence_length=64).key("a") != generator.key("a")  # the limit is in the cache key


def test_sd3_loaded_without_t5_checks_only_its_clips():
    """SD3 loaded with ``text_encoder_3=None`` feeds zeros for T5: no T5 limit applies, a long T5 prompt is fine."""
    pipe = tiny_transformer_pipeline("sd3")
    pipe.text_encoder_3 = pipe.tokenizer_3 = None
    generator = t2i(pipe, max_sequence_length=8)
    assert generator.token_limits == {"text_encoder": 77, "text_encoder_2": 77}
    assert generator(["a yellow triangle on the left"])[0].size == (32, 32)


def test_a_prompt_the_t5_encoder_would_cut_is_an_error_before_anything_is_made(family_pipe):
    """"triangle" is one CLIP token but two T5 pieces: 30 of them fit CLIP's 77 and not a T5 limit of 40."""
    family, pipe = family_pipe
    assert tiny_t5_tokenizer().tokenize("triangle") == list(T5_SPLIT_WORDS["triangle"])
    t5_name = {"sd3": "text_encoder_3", "flux": "text_encoder_2", "pixart": "text_encoder"}[family]
    generator = t2i(pipe, max_sequence_length=40)
    with pytest.raises(ValueError, match=rf"is 61 tokens long for {t5_name} \(T5.*at most 40 \(max_sequence_length\)"):
        generator(["a red circle", "triangle " * 30])
    assert generator.n_generated == 0
    generator(["triangle " * 19 + "a"])  # 38 pieces + "▁a" + </s> = 40: allowed, and made
    assert generator.n_generated == 1


def test_tokens_are_counted_as_the_pipeline_tokenizes_the_prompt():
    """PixArt lower-cases the prompt before T5: "RED" is then 2 T5 tokens ("▁red" "</s>"), not 5 ("▁" "R" "E" "D"
    "</s>") as FLUX's T5 sees it."""
    assert t2i(tiny_transformer_pipeline("pixart"), max_sequence_length=2)(["RED"])[0].size == (32, 32)
    with pytest.raises(ValueError, match="is 5 tokens long for text_encoder_2 \\(T5"):
        t2i(tiny_transformer_pipeline("flux"), max_sequence_length=2)(["RED"])


def test_a_sub_prompt_past_clip_77_is_an_error_naming_the_clip_encoder(family_pipe):
    family, pipe = family_pipe
    if family == "pixart":
        pytest.skip("PixArt has no CLIP encoder")
    generator = t2i(pipe)
    with pytest.raises(ValueError, match=r"is 82 tokens long for text_encoder \(CLIP.*at most 77 .*model_max_length"):
        generator(["red " * 80])
    assert generator.n_generated == 0


def test_max_sequence_length_is_checked():
    with pytest.raises(ValueError, match="max_sequence_length must be a positive int"):
        t2i(tiny_transformer_pipeline("pixart"), max_sequence_length=0)
    with pytest.raises(ValueError, match="max_sequence_length is the T5 token limit.*StableDiffusionPipeline"):
        TextToImage(tiny_stable_diffusion("sd1"), max_sequence_length=64, progress=False)


@pytest.mark.parametrize("family, size, multiple", [("sd3", 34, 4), ("flux", 34, 4), ("pixart", 30, 4)])
def test_sizes_must_fit_the_vae_and_the_patches(family, size, multiple):
    with pytest.raises(ValueError, match=f"height must be a multiple of {multiple} .*got {size}"):
        t2i(tiny_transformer_pipeline(family), height=size)


def test_default_size_is_the_pipelines():
    assert t2i(tiny_transformer_pipeline("sd3"), height=None, width=None).height == 32  # sample_size 16 x VAE 2
    assert t2i(tiny_transformer_pipeline("pixart"), height=None, width=None).width == 32
    assert t2i(tiny_transformer_pipeline("flux"), height=None, width=None).height == 256  # default_sample_size 128 x 2


# ------------------------------------------------------------------------------------------------- explainers


def test_exact_shap_lime_and_captum_over_words(family_pipe):
    """The three explainers on one cached game: 2^3 images, exact SHAP equal to the brute-force Shapley sum and
    to captum's exact Shapley values, efficiency, LIME from the same images. The payoff is the family's own VAE
    latents (16 channels with a shift for SD3 / FLUX)."""
    family, pipe = family_pipe
    prompt = "a yellow triangle"  # both colour and shape are two T5 pieces
    generator = t2i(pipe, batch_size=8, guidance_scale=1.0 if family == "flux" else 3.0)
    f = PromptScore(generator, LatentSimilarity(generator), prompt)
    explanation = shap_text.explain_prompt(prompt, f, algorithm="exact", progress=False)
    assert generator.n_generated == 2**3
    expected = shapley_from_values(*WordGame(f, prompt.split()).all_coalitions())
    np.testing.assert_allclose(explanation.values, expected, atol=1e-9)
    full, empty = f([prompt, ""])
    assert full == pytest.approx(1.0, abs=1e-6)
    assert explanation.values.sum() == pytest.approx(full - empty, abs=1e-6)
    assert np.abs(explanation.values).max() > 1e-4  # the words do change the image
    captum_values = WordAttribution(f, method="shapley_values", progress=False).attribute(prompt)
    np.testing.assert_allclose(captum_values.seq_attr.numpy(), explanation.values, atol=1e-6)
    lime_weights = lime_text.word_weights(lime_text.explain_prompt(prompt, f, num_samples=100))
    assert lime_weights.shape == (3,) and np.isfinite(lime_weights).all()
    assert generator.n_generated == 2**3  # captum and LIME played the cached game


# ------------------------------------------------------------------------------------------------ VAE latents


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_latent_similarity_uses_16_channels_and_the_shift(family):
    pipe = tiny_transformer_pipeline(family)
    generator = t2i(pipe)
    latent = LatentSimilarity(generator)
    config = pipe.vae.config
    assert (latent.shift_factor, latent.scaling_factor) == (config.shift_factor, config.scaling_factor) != (0.0, 1.0)
    generated = generator(["a red circle", "a blue square"])
    assert latent.embed_images(generated).shape == (2, 16 * 16 * 16)
    assert latent.image_similarity(generated, generated[0])[0] == pytest.approx(1.0, abs=1e-6)
    halves = np.zeros((32, 32, 3), np.uint8)
    halves[:, :16] = (255, 0, 0)
    framed = np.full((32, 32, 3), 255, np.uint8)
    framed[8:24, 8:24] = (0, 0, 255)
    values = latent.image_similarity([halves, framed], halves)
    x = torch.from_numpy(np.stack([halves, framed])).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        means = pipe.vae.encode(x).latent_dist.mean.flatten(1)
    shifted = (means - config.shift_factor) * config.scaling_factor
    expected = torch.nn.functional.cosine_similarity(shifted[1], shifted[0], dim=0).item()
    unshifted = torch.nn.functional.cosine_similarity(means[1], means[0], dim=0).item()
    assert values[1] == pytest.approx(expected, abs=1e-5) and abs(expected - unshifted) > 1e-4


# ---------------------------------------------------------------------------------------------- cache identity


def test_identity_covers_the_t5_encoder_its_tokenizer_and_the_transformer():
    pipe = tiny_transformer_pipeline("sd3")
    generator = t2i(pipe)
    before = generator.identity
    with torch.no_grad():
        pipe.text_encoder_3.shared.weight[5, 0] += 1.0
    assert generator.identity != before
    after_t5 = generator.identity
    with torch.no_grad():
        pipe.transformer.proj_out.weight[0, 0] += 1.0
    assert generator.identity != after_t5
    # the same pieces with other Unigram scores split words differently: another tokenizer
    tokenizer = pipe.tokenizer_3
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    rescored = [(piece, -50.0 if piece == "▁tri" else score) for piece, score in state["model"]["vocab"]]
    other = T5TokenizerFast(vocab=rescored, extra_ids=0, model_max_length=512)
    assert other.get_vocab() == tokenizer.get_vocab() and other.tokenize("triangle") != tokenizer.tokenize("triangle")
    before_tokenizer = generator.identity
    pipe.tokenizer_3 = other
    assert generator.identity != before_tokenizer
