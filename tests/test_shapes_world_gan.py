"""The RATLIP-style GAN: ``RATGenerator`` (tiny, random weights: shapes, save/load, batch independence, bad
input) and the shipped ShapesWorld GAN (skipped until its weights exist): it loads offline, ``TextToImage`` over
it gives an image that is identical alone or in any batch, and every explainer runs on it with the right word
winning: exact SHAP / LIME / captum over words, LIME and shap over segments, the segment-by-word table, CLIP
saliency and Grad-CAM on its images.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lime_adapters.text as lime_text
import shap_adapters.text as shap_text
from captum_diffusion.generation import CLIPConditionedGenerator, TextToImage
from captum_diffusion.generation.ratgan import RATGenerator, ShuffleAttention
from captum_diffusion.scoring import CLIPSimilarity, PromptScore
from captum_diffusion.shapes_world import COLOURS, SHAPES, analyse, parse_prompt
from captum_diffusion.shapes_world.gan import gan_weights_available
from captum_diffusion.testing import tiny_clip

TINY = dict(cond_dim=32, z_dim=8, channels=(16, 16, 8), lstm_hidden=8, shuffle_groups=2)


# ------------------------------------------------------------------------------------ RATGenerator (random)

@pytest.fixture(scope="module")
def tiny_generator():
    torch.manual_seed(0)
    return RATGenerator(**TINY).eval()


def test_images_have_the_configured_size_and_range(tiny_generator):
    with torch.no_grad():
        images = tiny_generator(torch.randn(3, 8), torch.randn(3, 32))
    assert images.shape == (3, 3, 16, 16) and tiny_generator.image_size == 16
    assert images.abs().max() <= 1


def test_an_image_does_not_depend_on_its_batch(tiny_generator):
    noise, sentence = torch.randn(4, 8), torch.randn(4, 32)
    with torch.no_grad():
        batch = tiny_generator(noise, sentence)
        alone = torch.cat([tiny_generator(noise[i:i + 1], sentence[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=0)


def test_the_noise_and_the_sentence_both_change_the_image(tiny_generator):
    """The noise seeds the LSTM state and the 4x4 seed; the sentence drives every affine layer (once trained:
    the affines start as the identity, so give the text path random weights to see it)."""
    torch.manual_seed(1)
    model = RATGenerator(**TINY).eval()
    for block in model.blocks:
        for layer in block.affine:
            torch.nn.init.normal_(layer.weight, std=0.5)
    noise, sentence = torch.randn(1, 8), torch.randn(1, 32)
    with torch.no_grad():
        base = model(noise, sentence)
        assert (model(torch.randn(1, 8), sentence) - base).abs().max() > 1e-3
        assert (model(noise, torch.randn(1, 32)) - base).abs().max() > 1e-3


def test_save_and_load_pretrained_round_trip(tiny_generator, tmp_path):
    tiny_generator.save_pretrained(tmp_path / "gan")
    assert sorted(p.name for p in (tmp_path / "gan").iterdir()) == ["config.json", "model.safetensors"]
    loaded = RATGenerator.from_pretrained(tmp_path / "gan")
    noise, sentence = torch.randn(2, 8), torch.randn(2, 32)
    with torch.no_grad():
        assert torch.equal(loaded(noise, sentence), tiny_generator(noise, sentence))
    assert loaded.config == tiny_generator.config and not loaded.training
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        RATGenerator.from_pretrained(tmp_path)


def test_shuffle_attention_keeps_the_shape_and_shuffles_channels():
    attention = ShuffleAttention(8, groups=2)
    x = torch.randn(2, 8, 5, 5)
    assert attention(x).shape == x.shape
    with torch.no_grad():  # gates fixed at sigmoid(large) ~ 1: the output is the input with channels permuted
        attention.channel_bias.fill_(50.0)
        attention.spatial_bias.fill_(50.0)
    out = attention(x)
    assert sorted(out.flatten(2).sum(-1)[0].tolist()) == pytest.approx(sorted(x.flatten(2).sum(-1)[0].tolist()))
    assert not torch.allclose(out, x)


@pytest.mark.parametrize("kwargs, match", [
    (dict(channels=(16,)), "channels"),
    (dict(channels=(16, 16, 12), shuffle_groups=4), "divisible"),
    (dict(cond_dim=0), "cond_dim"),
    (dict(z_dim=1.5), "z_dim"),
    (dict(shuffle_groups=-1), "shuffle_groups"),
])
def test_bad_configurations_are_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        RATGenerator(**{**TINY, **kwargs})


def test_text_to_image_over_a_rat_generator_is_batch_independent(tiny_generator):
    """One forward pass per prompt with its own seeded noise: the same image alone, first or last in a batch."""
    model, processor = tiny_clip()
    gan = CLIPConditionedGenerator(tiny_generator, model, processor.tokenizer, normalize=True)
    prompts = ["a red circle", "a blue square", "a green triangle"]
    batched = TextToImage(gan, seed=3, batch_size=3, progress=False)(prompts)
    for i, prompt in enumerate(prompts):
        alone = TextToImage(gan, seed=3, batch_size=1, progress=False)([prompt])[0]
        assert np.array_equal(np.asarray(alone), np.asarray(batched[i]))
    other_seed = TextToImage(gan, seed=4, progress=False)(prompts[:1])[0]
    assert not np.array_equal(np.asarray(other_seed), np.asarray(batched[0]))


# ------------------------------------------------------------------------------------ the shipped GAN

needs_weights = pytest.mark.skipif(not gan_weights_available(), reason="ShapesWorld GAN weights not shipped yet")


@pytest.fixture(scope="module")
def shapes_world_gan():
    """The shipped GAN and CLIP, on one torch thread (see tests/test_shapes_world.py for why)."""
    from captum_diffusion.shapes_world.gan import load_shapes_world_gan

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_shapes_world_gan()
    torch.set_num_threads(threads)


def generators(gan, seeds=range(4)):
    return [TextToImage(gan, seed=seed, batch_size=64, progress=False) for seed in seeds]


@needs_weights
def test_shipped_gan_loads_and_an_image_is_the_same_alone_or_in_any_batch(shapes_world_gan):
    from captum_diffusion.generation.ratgan import RATGenerator as Loaded
    from captum_diffusion.shapes_world import load_shapes_world_gan

    for bad, match in ((dict(device=3), "device"), (dict(dtype="half"), "dtype"), (dict(seed=-1), "seed")):
        with pytest.raises((TypeError, ValueError), match=match):
            load_shapes_world_gan(**bad)

    gan, scorer = shapes_world_gan
    assert isinstance(gan, CLIPConditionedGenerator) and isinstance(gan.generator, Loaded)
    assert isinstance(scorer, CLIPSimilarity) and gan.text_encoder is scorer.model
    prompt, others = "a yellow square on the left", ["a red circle", "a blue triangle and a green circle"]
    alone = np.asarray(TextToImage(gan, seed=5, progress=False)([prompt])[0])
    assert alone.shape == (64, 64, 3) and alone.dtype == np.uint8
    for batch in ([prompt] + others, others + [prompt], [others[0], prompt, others[1]]):
        images = TextToImage(gan, seed=5, batch_size=len(batch), progress=False)(batch)
        assert np.array_equal(np.asarray(images[batch.index(prompt)]), alone)
    before = gan.n_forward
    gan(others)
    assert gan.n_forward == before + 2  # one forward pass per prompt
    other_seed = np.asarray(TextToImage(gan, seed=6, progress=False)([prompt])[0])
    assert not np.array_equal(other_seed, alone)


@needs_weights
def test_shipped_gan_draws_the_asked_colour(shapes_world_gan):
    from captum_diffusion.shapes_world import SINGLE_PROMPTS

    gan, _ = shapes_world_gan
    images = gan(SINGLE_PROMPTS, generator=[torch.Generator().manual_seed(0) for _ in SINGLE_PROMPTS])
    right = [any(o.colour == parse_prompt(p)[0].colour for o in analyse(im)) for p, im in zip(SINGLE_PROMPTS, images)]
    assert sum(right) >= 10, right


WORD_PROMPTS = ["a red circle", "a yellow triangle"]


@needs_weights
def test_exact_shap_lime_and_captum_over_words_put_colour_or_shape_first(shapes_world_gan):
    """CLIP image payoff (the Gupta & Kanoria game), each explainer's values averaged over seeds 0..3 (one seed's
    image is one sample of the model). The top word is the colour or the shape, never the article "a"; exact
    SHAP is also efficient on the seed-averaged game."""
    from captum_diffusion.words.attribution import WordAttribution

    gan, scorer = shapes_world_gan
    gens = generators(gan)
    for prompt in WORD_PROMPTS:
        scores = [PromptScore(g, scorer, prompt) for g in gens]
        shap_values = np.mean([shap_text.explain_prompt(prompt, f, algorithm="exact", progress=False).values
                               for f in scores], axis=0)
        full = np.mean([f([prompt])[0] - f([""])[0] for f in scores])
        assert shap_values.sum() == pytest.approx(full, abs=1e-6)
        lime_values = np.mean([lime_text.word_weights(lime_text.explain_prompt(prompt, f, num_samples=50))
                               for f in scores], axis=0)
        captum_values = np.mean([WordAttribution(f, "feature_ablation", progress=False).attribute(prompt)
                                 .seq_attr.numpy() for f in scores], axis=0)
        for name, values in (("shap", shap_values), ("lime", lime_values), ("captum", captum_values)):
            assert int(np.argmax(values)) in (1, 2), (name, prompt, values)


def exact_objects(image, prompt):
    """Label map 0 background, k = the prompt's k-th object (dilated 1 px), or None unless the analysed objects
    are one per prompted colour and nothing else."""
    from scipy import ndimage

    specs, found = parse_prompt(prompt), analyse(image)
    colours = [s.colour for s in specs]
    if sorted(o.colour for o in found) != sorted(colours) or len(set(colours)) < len(colours):
        return None
    segments = np.zeros((64, 64), np.int64)
    for label, spec in enumerate(specs, start=1):
        (match,) = [o for o in found if o.colour == spec.colour]
        segments[ndimage.binary_dilation(match.mask, iterations=1) & (segments == 0)] = label
    return segments


def word_objects(prompt):
    """(word index, object label) for the colour and shape words of a ShapesWorld prompt."""
    pairs, obj = [], 0
    for i, word in enumerate(prompt.split()):
        obj += word in COLOURS
        if word in COLOURS or word in SHAPES:
            pairs.append((i, obj))
    return pairs


@pytest.fixture(scope="module")
def gan_scenes(shapes_world_gan):
    """GAN images (seeds 0, 1) of the held-out "a {colour} {shape} on the {position}" prompts that show one object of
    the prompted colour and nothing else, with their label maps (0 background, 1 the object). Single objects: the
    shipped GAN seldom draws both objects of a two-object prompt (see benchmarks/shapes_world_quality.py)."""
    from captum_diffusion.shapes_world import HELD_OUT_PROMPTS, POSITION_PROMPTS

    gan, _ = shapes_world_gan
    scenes = []
    for prompt in [p for p in HELD_OUT_PROMPTS if p in POSITION_PROMPTS]:
        for seed in range(2):
            image = np.asarray(gan([prompt], generator=[torch.Generator().manual_seed(seed)])[0])
            segments = exact_objects(image, prompt)
            if segments is not None:
                scenes.append((prompt, image, segments))
    return scenes


@needs_weights
def test_lime_shap_and_the_table_over_segments_pick_the_words_object(shapes_world_gan, gan_scenes):
    """On the GAN's own images of held-out prompts: per colour / shape word, the segment LIME and shap rank first,
    and the segment whose image alone scores highest in the segment-by-word table, is the word's object and not
    the background (segments: background, the object)."""
    from captum_diffusion.image.segment_scores import segment_word_table
    from lime_adapters.image import explain_image as lime_explain
    from lime_adapters.image import top_segments
    from shap_adapters.image import explain_image as shap_explain

    _, scorer = shapes_world_gan
    assert len(gan_scenes) >= 6, len(gan_scenes)
    hits = {}
    for prompt, image, segments in gan_scenes[:6]:
        lime = lime_explain(image, prompt, scorer, segments=segments, num_samples=100, progress=False)
        shap_values = shap_explain(image, prompt, scorer, segments=segments, progress=False).values
        table = segment_word_table(image, prompt, scorer, segments=segments)
        for word, obj in word_objects(prompt):
            kind = "colour" if prompt.split()[word] in COLOURS else "shape"
            for name, top in (("lime", top_segments(lime, word, k=1)[0][0]),
                              ("shap", int(np.argmax(shap_values[:, word]))),
                              ("table", table.best_segment(word))):
                hits.setdefault((name, kind), []).append(top == obj)
    rates = {key: float(np.mean(v)) for key, v in hits.items()}
    for name in ("lime", "shap", "table"):
        assert rates[(name, "colour")] >= 0.9 and rates[(name, "shape")] >= 0.75, rates


@needs_weights
@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "guided_backprop", "gradcam"])
def test_clip_saliency_on_gan_images(method, shapes_world_gan, gan_scenes):
    """Mass per pixel of the colour and shape words' maps inside their object over that outside, median over the
    GAN's single-object images: above 1 for every method (IG from mid-grey, see tests/test_saliency.py); Grad-CAM's
    maps are also non-negative. On two-object images Grad-CAM finds the objects but not the word's own one
    (measured in benchmarks/gan_vs_diffusion.py, on rendered images as well: the CLIP's limit)."""
    from captum_diffusion.image.saliency import CLIPSaliency

    _, scorer = shapes_world_gan
    saliency = CLIPSaliency(scorer, method=method, baseline=0.5)
    ratios = []
    for prompt, image, segments in gan_scenes[:4]:
        words = prompt.split()
        maps = saliency.attribute(image, words)
        assert maps.shape == (len(words), 64, 64) and torch.isfinite(maps).all()
        if method == "gradcam":  # ReLU'd class activation maps, upsampled from the patch grid
            assert (maps >= 0).all() and (maps.flatten(1).sum(1) > 0).any()
        maps = maps.abs()
        for word, obj in word_objects(prompt):
            inside = torch.from_numpy(segments == obj)
            ratios.append(float(maps[word][inside].mean() / maps[word][~inside].mean().clamp_min(1e-12)))
    assert np.median(ratios) > 1, (method, ratios)


@needs_weights
def test_cli_runs_the_gan_and_saves_what_the_python_api_computes(shapes_world_gan, tmp_path):
    """``diffusion-explain explain --model shapes-world-gan``: exact SHAP per seed equals the in-memory value, and
    a rerun resumes from the saved run without generating."""
    from captum_diffusion.cli import main
    from captum_diffusion.runs import load_run

    out = tmp_path / "run"
    arguments = ["explain", "a red circle", "--model", "shapes-world-gan", "--seeds", "0", "1", "--words",
                 "shap-exact", "--out", str(out), "--quiet"]
    assert main(arguments) == 0
    run = load_run(out)
    assert run.manifest["model"]["class"] == "CLIPConditionedGenerator"
    assert run.manifest["counts"]["images_generated"] == 16  # 2**3 sub-prompts x 2 seeds, each once
    gan, scorer = shapes_world_gan
    for row, seed in enumerate((0, 1)):
        f = PromptScore(TextToImage(gan, seed=seed, progress=False), scorer, "a red circle")
        values = shap_text.explain_prompt("a red circle", f, algorithm="exact", progress=False).values
        np.testing.assert_allclose(run[0].values["shap-exact"][row], values, atol=1e-6)
    assert main(arguments) == 0
    assert load_run(out).manifest["counts"]["images_generated"] == 0
