"""OpenCLIPSimilarity: the open_clip scorer (embeddings as open_clip computes them, the differentiable image path,
every explainer through it) and load_scorer's spec parsing. A tiny random-weight open_clip CLIP built in-process
(``captum_diffusion.testing.tiny_open_clip``); nothing is downloaded."""
from __future__ import annotations

import re

import numpy as np
import PIL.Image
import pytest
import torch

from captum_diffusion.image.saliency import METHODS, CLIPSaliency
from captum_diffusion.protocols import GradientScorer, Scorer
from captum_diffusion.scoring import CLIPSimilarity, OpenCLIPSimilarity, PromptScore, load_scorer
from captum_diffusion.scoring.load import parse_scorer_spec
from captum_diffusion.shapes_world import render
from captum_diffusion.testing import tiny_open_clip

open_clip = pytest.importorskip("open_clip")

PROMPT = "a red circle and a blue square"
WORDS = ["red", "square"]
PIXEL = 1 / 255  # PIL rounds each of its two resize passes to 8 bits: up to ~1.1 levels apart in all


@pytest.fixture(scope="module")
def scorer():
    return tiny_open_clip(seed=0)


@pytest.fixture(scope="module")
def picture():
    return np.asarray(render(PROMPT, generator=0).image)


@pytest.fixture(scope="module")
def images(picture):
    rng = np.random.default_rng(0)
    arrays = [picture, rng.integers(0, 256, (40, 56, 3), dtype=np.uint8), rng.integers(0, 256, (96, 70, 3), np.uint8),
              np.zeros((64, 64, 3), np.uint8)]
    return [PIL.Image.fromarray(a) for a in arrays]


def _pixels(image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float().div(255)


def _open_clip_image_embedding(scorer, image) -> torch.Tensor:
    """What an open_clip user computes: ``encode_image(preprocess(image))``, normalised."""
    with torch.no_grad():
        return torch.nn.functional.normalize(scorer.model.encode_image(scorer.preprocess(image)[None]), dim=-1)[0]


# ------------------------------------------------------------------------------------------ embeddings

def test_embeddings_are_open_clips_own(scorer, images):
    embeddings = scorer.embed_images(images)
    assert embeddings.shape == (4, 32) and embeddings.dtype == torch.float32 and not embeddings.requires_grad
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(4), atol=1e-5)
    expected = torch.stack([_open_clip_image_embedding(scorer, image) for image in images])
    torch.testing.assert_close(embeddings, expected, atol=1e-5, rtol=0)

    texts = ["red", "a red circle", "a blue square on the left " * 30]  # the last one past 77 tokens: truncated
    with torch.no_grad():
        expected = torch.nn.functional.normalize(scorer.model.encode_text(scorer.tokenizer(texts)), dim=-1)
    torch.testing.assert_close(scorer.embed_texts(texts), expected, atol=1e-5, rtol=0)
    assert scorer.embed_texts([]).shape == (0, 32) and scorer.embed_images([]).shape == (0, 32)

    one_at_a_time = OpenCLIPSimilarity(scorer.model, preprocess=scorer.preprocess, tokenizer=scorer.tokenizer,
                                       batch_size=1)
    torch.testing.assert_close(one_at_a_time.embed_images(images), embeddings, atol=1e-5, rtol=0)
    # arrays and other modes go through captum_diffusion.convert
    torch.testing.assert_close(scorer.embed_images([np.asarray(images[1]), images[1].convert("RGBA")]),
                               embeddings[[1, 1]], atol=1e-6, rtol=0)


def test_similarities_shapes_ranges_and_logit_scale(scorer, images):
    self_similarity = scorer.image_similarity(images, images[0])
    assert self_similarity.shape == (4,) and self_similarity.dtype == np.float64
    assert self_similarity[0] == pytest.approx(1.0, abs=1e-6) and np.all(np.abs(self_similarity) <= 1)
    assert np.all(self_similarity[1:] < 1 - 1e-4)
    texts = ["red", "a blue square", "dog"]
    table = scorer.text_similarity(images, texts)
    assert table.shape == (4, 3) and table.dtype == np.float64 and np.all(np.abs(table) <= 1)
    cosines = scorer.embed_images(images) @ scorer.embed_texts(texts).T
    np.testing.assert_allclose(table, cosines.double().numpy(), atol=1e-6)
    assert scorer.logit_scale == pytest.approx(float(scorer.model.logit_scale.detach().exp()))  # 1 / 0.07 at init
    assert isinstance(scorer, Scorer) and isinstance(scorer, GradientScorer)


def test_tiny_open_clip_is_seeded_and_leaves_the_global_rng(scorer):
    state = torch.random.get_rng_state()
    again, other = tiny_open_clip(seed=0), tiny_open_clip(seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(again.model.visual.proj, scorer.model.visual.proj)
    assert not torch.equal(other.model.visual.proj, scorer.model.visual.proj)


# ------------------------------------------------------------------------------------------ differentiable path

@pytest.mark.parametrize("image_size, shape", [(64, (64, 64)), (64, (96, 128)), (64, (40, 56)), (64, (65, 99)),
                                               (240, (64, 64))])
def test_differentiable_path_reproduces_open_clips_preprocess(scorer, picture, image_size, shape):
    """``image_input`` vs open_clip's PIL transform: within PIL's 8-bit rounding (measured max 1/255 + 1e-6 in pixel
    units over these cases; without the two clipped passes a 64 -> 240 upscale differed by 0.12). Embeddings of the
    random tiny model then agree within 5e-4 (measured max 2.4e-4; exact, 1e-7, when no resize is needed)."""
    model = scorer if image_size == 64 else tiny_open_clip(image_size=image_size)   # 240: ViT-B-16-plus-240's size
    image = PIL.Image.fromarray(picture).resize(shape[::-1], PIL.Image.BICUBIC)
    x = model.image_input(_pixels(image))
    expected = model.preprocess(image)[None]
    assert x.shape == expected.shape == (1, 3, image_size, image_size)
    std = torch.tensor(model.preprocessing.std).view(1, 3, 1, 1)
    assert float(((x - expected) * std).abs().max()) <= 1.25 * PIXEL
    embedding = model.embed_image_input(x).detach()
    resized = shape != (image_size, image_size) and min(shape) != image_size
    tolerance = 5e-4 if resized else 1e-6
    torch.testing.assert_close(embedding, model.embed_images([image]), atol=tolerance, rtol=0)


def test_crop_box_follows_torchvision(scorer):
    # shortest edge -> 64, long edge int(64 * long / short), centre crop at round((resized - 64) / 2) (half to even)
    assert scorer.crop_box(64, 64) == (64, 64, 0, 0, 64, 64)
    assert scorer.crop_box(96, 128) == (64, 85, 0, 10, 64, 64)     # 85 - 64 = 21: round(10.5) = 10
    assert scorer.crop_box(65, 99) == (64, 97, 0, 16, 64, 64)      # round(16.5) = 16
    assert scorer.crop_box(200, 50) == (256, 64, 96, 0, 64, 64)
    with pytest.raises(ValueError, match=r"pixels must be"):
        scorer.image_input(torch.zeros(3, 64, 64))


def test_preprocess_from_the_model_config_and_other_resize_modes(scorer, images):
    from open_clip.transform import PreprocessCfg, image_transform_v2

    derived = OpenCLIPSimilarity(scorer.model, tokenizer=scorer.tokenizer)   # preprocess from visual.preprocess_cfg
    assert derived.preprocessing == scorer.preprocessing
    torch.testing.assert_close(derived.embed_images(images), scorer.embed_images(images), atol=1e-6, rtol=0)
    opaque = OpenCLIPSimilarity(scorer.model, preprocess=lambda image: scorer.preprocess(image),
                                tokenizer=scorer.tokenizer)                   # not a Compose: read off the model
    assert opaque.preprocessing == scorer.preprocessing

    squash = OpenCLIPSimilarity(scorer.model, tokenizer=scorer.tokenizer, preprocess=image_transform_v2(
        PreprocessCfg(size=64, resize_mode="squash"), is_train=False))
    assert squash.crop_box(40, 56) == (64, 64, 0, 0, 64, 64)
    x = squash.image_input(_pixels(images[1]))
    std = torch.tensor(squash.preprocessing.std).view(1, 3, 1, 1)
    assert float(((x - squash.preprocess(images[1])[None]) * std).abs().max()) <= 1.25 * PIXEL

    fit = OpenCLIPSimilarity(scorer.model, tokenizer=scorer.tokenizer, preprocess=image_transform_v2(
        PreprocessCfg(size=(48, 64)), is_train=False))                # non-square: open_clip's ResizeKeepRatio
    assert fit.preprocessing.resize == ("fit", (48, 64)) and fit.crop_box(96, 70) == (88, 64, 20, 0, 48, 64)
    x = fit.image_input(_pixels(images[2]))
    assert x.shape == (1, 3, 48, 64)
    assert float(((x - fit.preprocess(images[2])[None]) * std).abs().max()) <= 1.25 * PIXEL

    longest = OpenCLIPSimilarity(scorer.model, tokenizer=scorer.tokenizer, preprocess=image_transform_v2(
        PreprocessCfg(size=64, resize_mode="longest"), is_train=False))
    assert longest.embed_images(images[:1]).shape == (1, 32)        # embedding works; the gradient path does not
    with pytest.raises(ValueError, match="longest"):
        longest.image_input(_pixels(images[1]))


def test_vision_tower_layout_is_what_gradcam_expects(scorer, picture):
    blocks = scorer.vision_blocks
    assert blocks == list(scorer.model.visual.transformer.resblocks) and scorer.model.visual.transformer.batch_first
    assert scorer.patch_grid == (4, 4)
    assert [(owner, name) for owner, name in scorer.vision_activations()] == [(b.mlp, "gelu") for b in blocks]
    shapes = []
    handle = blocks[-2].register_forward_hook(lambda _m, _i, output: shapes.append(tuple(output.shape)))
    try:
        scorer.embed_image_input(scorer.image_input(_pixels(picture).repeat(2, 1, 1, 1)))
    finally:
        handle.remove()
    assert shapes == [(2, 1 + 4 * 4, 32)]   # batch first, class token then the 4x4 patch grid


# ------------------------------------------------------------------------------------------ saliency

@pytest.mark.parametrize("method", METHODS)
def test_every_saliency_method_gives_one_map_per_word(method, scorer, picture):
    maps = CLIPSaliency(scorer, method=method, n_steps=8, nt_samples=4).attribute(picture, WORDS)
    assert maps.shape == (2, 64, 64) and maps.dtype == torch.float32 and torch.isfinite(maps).all()
    assert (maps.abs().sum((1, 2)) > 0).all()
    if method in ("saliency", "smoothgrad", "gradcam"):
        assert (maps >= 0).all()


def test_saliency_is_the_input_gradient_through_the_protocol(scorer, picture):
    wide = np.asarray(PIL.Image.fromarray(picture).resize((96, 72), PIL.Image.BICUBIC))  # through resize and crop
    for image in (picture, wide):
        maps = CLIPSaliency(scorer).attribute(image, WORDS)
        x = _pixels(image).requires_grad_(True)
        cosine = scorer.embed_image_input(scorer.image_input(x)) @ scorer.embed_texts(WORDS).T
        (grad,) = torch.autograd.grad(cosine[0, 1], x)
        torch.testing.assert_close(maps[1], grad[0].abs().sum(0), rtol=1e-4, atol=1e-7)
    # the 72x96 image is resized to 64x85 and cropped to the centre 64 columns: the outer columns get nothing
    assert maps.shape == (2, 72, 96) and maps[:, :, :6].abs().max() == 0 and maps[:, :, 24:72].abs().sum() > 0


def test_integrated_gradients_completeness(scorer, picture):
    """Measured: within 4e-7 of the similarity change, also through the resize (and its clipping) of a 72x96 image."""
    ig = CLIPSaliency(scorer, method="integrated_gradients", n_steps=64)
    wide = np.asarray(PIL.Image.fromarray(picture).resize((96, 72), PIL.Image.BICUBIC))
    for image in (picture, wide):
        maps = ig.attribute(image, WORDS)
        white = np.full_like(image, 255)                                  # the "background" baseline
        expected = ig.similarity(image, WORDS) - ig.similarity(white, WORDS)
        torch.testing.assert_close(maps.sum((1, 2)), expected, rtol=0.01, atol=1e-5)


def test_guided_backprop_and_gradcam_restore_the_model(scorer, picture):
    activations = [type(b.mlp.gelu) for b in scorer.vision_blocks]
    before = CLIPSaliency(scorer).similarity(picture, WORDS)
    guided = CLIPSaliency(scorer, method="guided_backprop").attribute(picture, WORDS)
    assert not torch.allclose(guided.abs(), CLIPSaliency(scorer).attribute(picture, WORDS), atol=1e-6)
    CLIPSaliency(scorer, method="gradcam").attribute(picture, WORDS)
    assert [type(b.mlp.gelu) for b in scorer.vision_blocks] == activations
    assert not any(b._forward_hooks for b in scorer.vision_blocks)
    torch.testing.assert_close(CLIPSaliency(scorer).similarity(picture, WORDS), before)
    np.testing.assert_allclose(before.numpy(), scorer.text_similarity([picture], WORDS)[0], atol=1e-6)


def test_a_resnet_tower_embeds_but_has_no_vision_blocks():
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIP(embed_dim=32, vision_cfg=CLIPVisionCfg(layers=(1, 1, 1, 1), width=8, head_width=8, image_size=64),
                     text_cfg=CLIPTextCfg(width=32, heads=2, layers=1)).eval()
    resnet = OpenCLIPSimilarity(model, tokenizer="RN50")          # a model name as tokenizer: open_clip's BPE
    assert resnet.embed_images([np.zeros((64, 64, 3), np.uint8)]).shape == (1, 32)
    with pytest.raises(TypeError, match="VisionTransformer"):
        CLIPSaliency(resnet)


# ------------------------------------------------------------------------------------------ explainers

@pytest.fixture(scope="module")
def generator():
    from captum_diffusion.generation import TextToImage
    from captum_diffusion.testing import tiny_stable_diffusion

    return TextToImage(tiny_stable_diffusion("sd1", seed=0), num_inference_steps=2, progress=False)


def test_exact_shap_over_words_with_an_open_clip_payoff(generator, scorer):
    from shap_adapters import explain_prompt

    prompt = "red circle"                                              # 4 sub-prompts: 4 tiny generations
    f = PromptScore(generator, scorer, prompt)
    explanation = explain_prompt(prompt, f, algorithm="exact", progress=False)
    full, empty = f([prompt, ""])
    assert full == pytest.approx(1.0, abs=1e-6)                          # the reference image against itself
    assert explanation.values.shape == (2,) and np.isfinite(explanation.values).all()
    assert explanation.base_values == pytest.approx(empty, abs=1e-12)
    assert explanation.values.sum() == pytest.approx(full - empty, abs=1e-6)   # efficiency
    text = PromptScore(generator, scorer, prompt, reference="text")
    np.testing.assert_allclose(text([prompt]), scorer.text_similarity(generator([prompt]), [prompt])[:, 0])


def test_lime_and_shap_over_segments(scorer, picture):
    from captum_diffusion.image.segmenters import SuperpixelSegmenter
    from lime_adapters.image import explain_image as lime_explain
    from lime_adapters.image import segment_weights
    from shap_adapters.image import explain_image as shap_explain

    rendering = render(PROMPT, generator=0)
    segments = np.zeros((64, 64), np.int64)
    for label, mask in enumerate(rendering.object_masks, start=1):
        segments[mask] = label
    words = ["red", "circle", "blue", "square"]
    shap_values = shap_explain(picture, PROMPT, scorer, segments=segments, words=words, algorithm="exact",
                               progress=False)
    assert shap_values.values.shape == (3, 4) and shap_values.base_values.shape == (4,)
    full = shap_values.segment_scorer(np.ones((1, 3), bool))[0]            # the whole image's scores
    np.testing.assert_allclose(shap_values.values.sum(0) + shap_values.base_values, full, atol=1e-9)   # additivity
    np.testing.assert_allclose(full, scorer.text_similarity([picture], words)[0], atol=1e-6)  # (other batch: 4e-8)
    empty = shap_values.segment_scorer(np.zeros((1, 3), bool))[0]
    np.testing.assert_allclose(shap_values.base_values, empty, atol=1e-12)   # base value: every segment hidden

    lime = lime_explain(picture, PROMPT, scorer, SuperpixelSegmenter("slic", n_segments=6), words=words,
                        num_samples=40, progress=False)
    weights = segment_weights(lime)
    assert weights.shape == (int(lime.segments.max()) + 1, 4) and np.isfinite(weights).all()
    assert lime.segments.shape == (64, 64) and lime.words == words


def test_clip_score_with_open_clip(scorer, images):
    from captum_diffusion.metrics import clip_score

    prompts = ["a red circle", "noise", "more noise", "black"]
    scores = clip_score(images, prompts, scorer, reduction="none")
    expected = 100 * np.diag(scorer.text_similarity(images, prompts))
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    assert clip_score(images, prompts, scorer) == pytest.approx(expected.mean(), abs=1e-4)


# ------------------------------------------------------------------------------------------ loading, errors

def test_the_module_imports_the_installed_open_clip():
    import captum_diffusion.scoring.open_clip as module

    assert module.open_clip is open_clip and module.open_clip.__name__ == "open_clip"


def test_bad_arguments(scorer):
    with pytest.raises(ValueError, match="pretrained is required.*laion400m_e32"):
        OpenCLIPSimilarity("ViT-B-16-plus-240")                      # random weights: refused
    with pytest.raises(ValueError, match="not an open_clip model name"):
        OpenCLIPSimilarity("ViT-Nonexistent-7", "laion400m_e32")
    with pytest.raises(ValueError, match="neither a tag.*laion400m_e31"):
        OpenCLIPSimilarity("ViT-B-16-plus-240", "no_such_tag")       # refused before any download
    with pytest.raises(TypeError, match="model must be"):
        OpenCLIPSimilarity(torch.nn.Linear(2, 2), tokenizer=scorer.tokenizer)
    with pytest.raises(TypeError, match="model must be"):
        OpenCLIPSimilarity(3)
    with pytest.raises(ValueError, match="tokenizer is required"):
        OpenCLIPSimilarity(scorer.model)
    with pytest.raises(TypeError, match="tokenizer must be"):
        OpenCLIPSimilarity(scorer.model, tokenizer=5)
    with pytest.raises(TypeError, match="preprocess must be"):
        OpenCLIPSimilarity(scorer.model, tokenizer=scorer.tokenizer, preprocess="bicubic")
    with pytest.raises(ValueError, match="pretrained is only used"):
        OpenCLIPSimilarity(scorer.model, "laion400m_e32", tokenizer=scorer.tokenizer)
    with pytest.raises(TypeError, match="dtype"):
        OpenCLIPSimilarity(scorer.model, tokenizer=scorer.tokenizer, dtype="float16")
    with pytest.raises(ValueError, match="batch_size"):
        OpenCLIPSimilarity(scorer.model, tokenizer=scorer.tokenizer, batch_size=0)
    with pytest.raises(ValueError, match="text_template"):
        OpenCLIPSimilarity(scorer.model, tokenizer=scorer.tokenizer, text_template="a photo")


@pytest.fixture(scope="module")
def named_checkpoint(scorer, tmp_path_factory):
    """The tiny model registered as an open_clip config (a name no built-in uses) with its weights in a file."""
    import json

    folder = tmp_path_factory.mktemp("open_clip_config")
    name = "captum-diffusion-tiny-test"
    config = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 2, "width": 32, "head_width": 16,
                                              "patch_size": 16},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
    (folder / f"{name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder / f"{name}.json")
    checkpoint = folder / "weights.pt"
    torch.save(scorer.model.state_dict(), checkpoint)
    return name, str(checkpoint)


def test_a_named_model_loads_a_local_checkpoint(scorer, images, named_checkpoint):
    name, checkpoint = named_checkpoint
    loaded = OpenCLIPSimilarity(name, checkpoint, text_template="a photo of a {}")
    assert repr(loaded) == f"OpenCLIPSimilarity({name!r}, pretrained={checkpoint!r})"
    assert loaded.text_template == "a photo of a {}" and loaded.preprocessing == scorer.preprocessing
    torch.testing.assert_close(loaded.embed_images(images), scorer.embed_images(images), atol=1e-6, rtol=0)
    torch.testing.assert_close(loaded.embed_texts(WORDS), scorer.embed_texts(WORDS), atol=1e-6, rtol=0)
    via_spec = load_scorer(f"open_clip:{name}:{checkpoint}", device="cpu", text_template="a {}")
    assert isinstance(via_spec, OpenCLIPSimilarity) and via_spec.text_template == "a {}"
    torch.testing.assert_close(via_spec.embed_texts(WORDS), scorer.embed_texts(WORDS), atol=1e-6, rtol=0)


def test_load_scorer_parses_specs(tmp_path):
    assert parse_scorer_spec("open_clip:ViT-B-16-plus-240:laion400m_e32") == (
        "open_clip", "ViT-B-16-plus-240", "laion400m_e32")
    assert parse_scorer_spec("open_clip:ViT-B-32:C:/weights/x.pt") == ("open_clip", "ViT-B-32", "C:/weights/x.pt")
    assert parse_scorer_spec("open_clip:hf-hub:laion/CLIP-ViT-B-32") == ("open_clip", "hf-hub:laion/CLIP-ViT-B-32",
                                                                        None)
    assert parse_scorer_spec("openai/clip-vit-base-patch32") == ("transformers", "openai/clip-vit-base-patch32", None)
    for bad in ("open_clip:", "open_clip::laion400m_e32", "open_clip:ViT-B-32", "open_clip:ViT-B-32:",
                "open_clip:hf-hub:", " "):
        with pytest.raises(ValueError, match=re.escape(repr(bad)) if bad.strip() else "empty"):
            load_scorer(bad)
    with pytest.raises(TypeError, match="spec must be a str"):
        load_scorer(None)
    with pytest.raises(ValueError, match="neither a tag"):                   # open_clip's own check, no download
        load_scorer("open_clip:ViT-B-16-plus-240:no_such_tag")

    from captum_diffusion.testing import tiny_clip

    model, processor = tiny_clip()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    transformers_scorer = load_scorer(str(tmp_path), text_template="a photo of a {}")
    assert isinstance(transformers_scorer, CLIPSimilarity) and transformers_scorer.text_template == "a photo of a {}"
