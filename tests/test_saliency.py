"""CLIPSaliency: Captum gradient maps of CLIP image-word similarity, per word, at the image's resolution."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from captum_diffusion.image.saliency import METHODS, CLIPSaliency, SaliencyResult, plot_attributions  # noqa: E402
from captum_diffusion.scoring import CLIPSimilarity  # noqa: E402
from captum_diffusion.shapes_world import render  # noqa: E402

PROMPT = "a red circle and a blue square"
WORDS = ["red", "square"]


@pytest.fixture(scope="module")
def clip():
    from captum_diffusion.testing import tiny_clip

    return tiny_clip()


@pytest.fixture(scope="module")
def picture():
    return np.asarray(render(PROMPT, generator=0).image)


def test_explained_score_is_clip_similarity(clip, picture):
    model, processor = clip
    ours = CLIPSaliency(model, processor).similarity(picture, WORDS).numpy()
    np.testing.assert_allclose(ours, CLIPSimilarity(model, processor).text_similarity([picture], WORDS)[0], atol=2e-4)
    assert CLIPSaliency(CLIPSimilarity(model, processor)).model is model   # a CLIPSimilarity is accepted too


def test_probability_output_is_clips_zero_shot_classification(clip, picture):
    model, processor = clip
    words = ["red", "circle", "red"]
    probs = CLIPSaliency(model, processor, output="probability").similarity(picture, words)
    assert probs[0] == probs[2] and float(probs[:2].sum()) == pytest.approx(1.0, abs=1e-5)
    log_maps = CLIPSaliency(model, processor, "integrated_gradients", output="log_probability", n_steps=64)
    maps = log_maps.attribute(picture, words)
    white = np.full_like(picture, 255)
    expected = log_maps.similarity(picture, words) - log_maps.similarity(white, words)
    torch.testing.assert_close(maps.sum((1, 2)), expected, rtol=0.05, atol=1e-3)
    with pytest.raises(ValueError, match="output"):
        CLIPSaliency(model, processor, output="logits")


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_one_map_per_word(method, clip, picture):
    model, processor = clip
    maps = CLIPSaliency(model, processor, method, n_steps=8, nt_samples=4).attribute(picture, WORDS)
    assert maps.shape == (2, 64, 64) and maps.dtype == torch.float32 and torch.isfinite(maps).all()
    assert (maps.abs().sum((1, 2)) > 0).all()
    if method in ("saliency", "smoothgrad", "gradcam"):
        assert (maps >= 0).all()


def test_saliency_is_the_input_gradient(clip, picture):
    model, processor = clip
    saliency = CLIPSaliency(model, processor)
    maps = saliency.attribute(picture, WORDS)
    x = torch.from_numpy(picture.copy()).permute(2, 0, 1)[None].float().div(255).requires_grad_(True)
    scorer = saliency.scorer                                  # the gradient path of the scorer protocol
    cosine = scorer.embed_image_input(scorer.image_input(x)) @ scorer.embed_texts(WORDS).T
    (grad,) = torch.autograd.grad(cosine[0, 1], x)
    torch.testing.assert_close(maps[1], grad[0].abs().sum(0), rtol=1e-4, atol=1e-7)


def test_integrated_gradients_completeness(clip, picture):
    model, processor = clip
    ig = CLIPSaliency(model, processor, "integrated_gradients", n_steps=64)
    maps = ig.attribute(picture, WORDS)
    white = np.full_like(picture, 255)                                    # the "background" baseline
    expected = ig.similarity(picture, WORDS) - ig.similarity(white, WORDS)
    torch.testing.assert_close(maps.sum((1, 2)), expected, rtol=0.05, atol=2e-4)


def test_guided_backprop_changes_gradients_and_restores_the_model(clip, picture):
    model, processor = clip
    activations = [type(layer.mlp.activation_fn) for layer in model.vision_model.encoder.layers]
    guided = CLIPSaliency(model, processor, "guided_backprop").attribute(picture, WORDS)
    plain = CLIPSaliency(model, processor, "saliency")
    assert not torch.allclose(guided.abs(), plain.attribute(picture, WORDS), atol=1e-6)
    assert [type(layer.mlp.activation_fn) for layer in model.vision_model.encoder.layers] == activations


def test_gradcam_hook_is_removed_and_map_lives_on_the_image(clip, picture):
    model, processor = clip
    plain_similarity = CLIPSaliency(model, processor).similarity(picture, WORDS)
    cams = CLIPSaliency(model, processor, "gradcam").attribute(picture, WORDS)
    assert (cams >= 0).all() and cams.shape == (2, 64, 64)
    layer = model.vision_model.encoder.layers[-2]
    assert not layer._forward_hooks
    torch.testing.assert_close(CLIPSaliency(model, processor).similarity(picture, WORDS), plain_similarity)


def test_non_square_images_map_back_to_the_original_pixels(clip):
    model, processor = clip
    wide = np.full((48, 80, 3), 255, np.uint8)
    wide[10:30, 30:50] = (220, 30, 30)
    for method in ("saliency", "gradcam"):
        maps = CLIPSaliency(model, processor, method).attribute(wide, "red")
        assert maps.shape == (1, 48, 80)
        # CLIP sees the centre 48x48 crop: the 16 columns either side get no attribution
        assert maps[:, :, :8].abs().max() == 0 and maps[:, :, -8:].abs().max() == 0
        assert maps[:, :, 24:56].abs().sum() > 0


def test_plot_returns_a_figure_and_survives_all_zero_maps(clip, picture):
    model, processor = clip
    saliency = CLIPSaliency(model, processor)
    maps = saliency.attribute(picture, WORDS)
    figure = saliency.plot(picture, maps, WORDS)
    assert isinstance(figure, Figure) and len(figure.axes) >= 3
    zero = plot_attributions(picture, torch.zeros(2, 64, 64), WORDS)
    assert [ax.get_title() for ax in zero.axes[1:3]] == ["red (all zero)", "square (all zero)"]
    with pytest.raises(ValueError, match="attributions must be"):
        plot_attributions(picture, torch.zeros(2, 32, 32), WORDS)
    matplotlib.pyplot.close("all")


def test_explain_gives_the_attribute_maps_with_image_words_and_scores(clip, picture):
    import captum.attr
    from PIL import Image

    model, processor = clip
    ig = CLIPSaliency(model, processor, "integrated_gradients", n_steps=16)
    assert isinstance(ig, captum.attr.Attribution) and ig.forward_func == ig.similarity
    result = ig.explain(Image.fromarray(picture), WORDS)
    maps = ig.attribute(picture, WORDS)
    assert isinstance(result, SaliencyResult) and result.method == "integrated_gradients" and len(result) == 2
    torch.testing.assert_close(result.heatmaps, maps, rtol=0, atol=0)  # deterministic: the same maps
    torch.testing.assert_close(result.scores, ig.similarity(picture, WORDS), rtol=0, atol=0)
    np.testing.assert_array_equal(result.image, picture)
    assert result.words == WORDS and torch.equal(result.heatmap("square"), maps[1]) and torch.equal(result.heatmap(0), maps[0])
    with pytest.raises(ValueError, match=r"'dog' has no map; the words are \['red', 'square'\]"):
        result.heatmap("dog")
    figure = result.plot()
    assert isinstance(figure, Figure) and [ax.get_title() for ax in figure.axes[1:3]] == WORDS
    matplotlib.pyplot.close("all")


def test_bad_arguments(clip, picture):
    model, processor = clip
    with pytest.raises(ValueError, match="method must be one of"):
        CLIPSaliency(model, processor, "lrp")
    with pytest.raises(ValueError, match="layer"):
        CLIPSaliency(model, processor, "gradcam", layer=5)
    with pytest.raises(TypeError, match="CLIPModel"):
        CLIPSaliency(torch.nn.Linear(2, 2), processor)
    with pytest.raises(ValueError, match="words"):
        CLIPSaliency(model, processor).attribute(picture, [])
    with pytest.raises(ValueError, match="baseline"):
        CLIPSaliency(model, processor, "integrated_gradients", baseline="blurred").attribute(picture, "red")


# ------------------------------------------------------------------------------------------ ShapesWorld

@pytest.fixture(scope="module")
def shapes_world():
    from captum_diffusion import shapes_world

    if not shapes_world.weights_available():
        pytest.skip("ShapesWorld weights not present yet")
    return shapes_world.load_shapes_world()


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "smoothgrad", "guided_backprop"])
def test_shapes_world_maps_concentrate_on_the_words_object(method, shapes_world):
    """Mass per pixel inside the word's object exceeds mass per pixel outside it (objects cover ~6% of the image).

    IG runs from a mid-grey baseline here: from the default white ("background") baseline the white background
    gets exactly zero attribution, which would make the check hold by construction.
    """
    _, scorer = shapes_world
    saliency = CLIPSaliency(scorer.model, scorer.processor, method, baseline=0.5)
    for seed, prompt in enumerate(["a red circle and a blue square", "a green triangle and a yellow circle"]):
        rendering = render(prompt, generator=seed)
        words = prompt.split()
        maps = saliency.attribute(rendering.image, words).abs()
        for i, mask in enumerate(rendering.word_masks):
            if mask is None:
                continue
            inside, outside = maps[i][torch.from_numpy(mask)].mean(), maps[i][~torch.from_numpy(mask)].mean()
            assert inside > outside, (method, prompt, words[i], float(inside), float(outside))
