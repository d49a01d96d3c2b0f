"""Segmenters: label maps 0..n-1 covering the image; SAM ranking / cap / overlaps on the real SAM architecture."""
from __future__ import annotations

from functools import partial

import numpy as np
import PIL.Image
import pytest
import torch

from captum_diffusion.image.segmenters import (DAAMKMeansSegmenter, SAMSegmenter, SuperpixelSegmenter, check_label_map,
                                           masks_to_label_map, relabel, to_rgb_array)
from captum_diffusion.shapes_world import render

PROMPT = "a red circle and a blue square"


def assert_label_map(labels, shape):
    assert labels.shape == tuple(shape) and labels.dtype == np.int64
    present = np.unique(labels)
    np.testing.assert_array_equal(present, np.arange(len(present)))  # 0..n-1, none missing, every pixel labelled


@pytest.fixture(scope="module")
def picture():
    return np.asarray(render(PROMPT, generator=0).image)


def tiny_sam(seed: int = 0, img_size: int = 64, dim: int = 32):
    """The real SAM architecture (ViT image encoder, prompt encoder, two-way mask decoder), tiny and random."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = Sam(
            image_encoder=ImageEncoderViT(img_size=img_size, patch_size=8, embed_dim=dim, depth=2, num_heads=2,
                                          mlp_ratio=2, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True,
                                          use_rel_pos=True, global_attn_indexes=[1], window_size=4, out_chans=dim),
            prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(img_size // 8, img_size // 8),
                                         input_image_size=(img_size, img_size), mask_in_chans=4),
            mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
                depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2), transformer_dim=dim, iou_head_depth=2,
                iou_head_hidden_dim=32),
            pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    return sam.eval()


# ------------------------------------------------------------------------------------------ superpixels

@pytest.mark.parametrize("method", ["slic", "quickshift", "felzenszwalb"])
def test_superpixels_label_maps_cover_the_image(method, picture):
    labels = SuperpixelSegmenter(method)(picture)
    assert_label_map(labels, picture.shape[:2])
    assert labels.max() >= 1
    # flat objects on white: the red circle's centre and the blue square's centre land in different segments
    circle, square = render(PROMPT, generator=0).object_masks
    centre = lambda m: tuple(np.round(np.argwhere(m).mean(0)).astype(int))  # noqa: E731
    assert labels[centre(circle)] != labels[centre(square)]


def test_slic_starts_at_zero_and_kwargs_pass_through(picture):
    few = SuperpixelSegmenter("slic", n_segments=3)(picture)
    many = SuperpixelSegmenter("slic", n_segments=40)(picture)
    assert few.min() == 0 and many.max() > few.max()


def test_grayscale_and_rgba_inputs_are_converted(picture):
    gray = picture.mean(2).astype(np.uint8)
    labels = SuperpixelSegmenter("felzenszwalb")(gray)
    np.testing.assert_array_equal(labels, SuperpixelSegmenter("felzenszwalb")(np.repeat(gray[..., None], 3, 2)))
    rgba = PIL.Image.fromarray(picture).convert("RGBA")
    rgba.putalpha(0)  # fully transparent: composited onto white -> a blank white image
    np.testing.assert_array_equal(to_rgb_array(rgba), np.full_like(picture, 255))
    as_float = picture.astype(np.float32) / 255                          # float images in [0, 1] are scaled
    np.testing.assert_array_equal(SuperpixelSegmenter()(as_float), SuperpixelSegmenter()(picture))
    with pytest.raises(TypeError, match="uint8"):
        SuperpixelSegmenter()(picture.astype(np.int64))
    with pytest.raises(ValueError, match="method must be one of"):
        SuperpixelSegmenter("watershed")


# ------------------------------------------------------------------------------------------ label maps

def test_relabel_and_check_label_map():
    np.testing.assert_array_equal(relabel(np.array([[5, 5], [9, 2]])), [[1, 1], [2, 0]])
    good = np.array([[0, 1], [1, 2]])
    assert check_label_map(good, (2, 2, 3)).dtype == np.int64
    with pytest.raises(ValueError, match=r"shape \(2, 2\) but the image is \(3, 2\)"):
        check_label_map(good, (3, 2))
    with pytest.raises(ValueError, match="relabel"):
        check_label_map(np.array([[1, 2], [2, 3]]), (2, 2))
    with pytest.raises(ValueError, match="1 segment"):
        check_label_map(np.zeros((2, 2), int), (2, 2))
    with pytest.raises(ValueError, match="integer"):
        check_label_map(np.zeros((2, 2)), (2, 2))


def _record(mask, iou, stability=0.9):
    return {"segmentation": mask, "area": int(mask.sum()), "predicted_iou": iou, "stability_score": stability}


def test_masks_to_label_map_ranks_resolves_overlaps_and_caps():
    big = np.zeros((10, 10), bool); big[:, :6] = True           # area 60
    small = np.zeros((10, 10), bool); small[:, 4:9] = True      # area 50, overlaps big on columns 4-5
    inside = np.zeros((10, 10), bool); inside[:, :6] = True     # same pixels as big: nothing left once big is in
    records = [_record(small, 0.99), _record(big, 0.9), _record(inside, 0.5)]
    labels = masks_to_label_map(records, (10, 10))
    assert_label_map(labels, (10, 10))
    # iou x area: big 54 > small 49.5 -> big is label 0 and wins the overlap; "inside" keeps no pixel: dropped
    assert (labels[big] == 0).all()
    assert (labels[:, 6:9] == 1).all()
    assert (labels[:, 9] == 2).all() and labels.max() == 2      # the uncovered column is the background, last
    by_iou = masks_to_label_map(records, (10, 10), rank_by="predicted_iou")
    assert (by_iou[small] == 0).all()                            # ranked by quality alone, small comes first
    # cap: 15 disjoint one-column... masks -> at most max_segments labels, best-ranked first
    stripes = [np.zeros((15, 15), bool) for _ in range(15)]
    for i, m in enumerate(stripes):
        m[:, i] = True
    records = [_record(m, 0.5 + 0.03 * i) for i, m in enumerate(stripes)]
    capped = masks_to_label_map(records, (15, 15), max_segments=10)
    assert_label_map(capped, (15, 15))
    assert capped.max() == 9
    for rank, column in enumerate(range(14, 5, -1)):            # the 9 best stripes, best first
        assert (capped[:, column] == rank).all()
    assert (capped[:, :6] == 9).all()                           # the rest is one background segment
    with pytest.raises(ValueError, match="rank_by"):
        masks_to_label_map(records, (15, 15), rank_by="size")
    with pytest.raises(ValueError, match="max_segments"):
        masks_to_label_map(records, (15, 15), max_segments=1)


def test_sam_segmenter_on_the_real_architecture(picture):
    sam = tiny_sam()
    # random weights: keep every mask (no quality / stability filtering, no NMS) so ranking has work to do
    kwargs = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    segmenter = SAMSegmenter(sam, max_segments=5, **kwargs)
    records = segmenter.generate(picture)
    assert len(records) >= 5 and all(r["segmentation"].shape == (64, 64) for r in records)
    labels = segmenter(picture)
    assert_label_map(labels, (64, 64))
    assert labels.max() + 1 <= 5
    ranked = sorted(records, key=lambda r: -r["predicted_iou"] * r["area"])
    np.testing.assert_array_equal(labels == 0, ranked[0]["segmentation"])  # the best mask is kept whole as label 0
    # every object label sits inside one generator mask, and labels follow the ranking
    positions = []
    for label in range(labels.max()):
        region = labels == label
        owners = [i for i, r in enumerate(ranked) if r["segmentation"][region].all()]
        if owners:
            positions.append(owners[0])
    assert positions == sorted(positions) and len(positions) >= labels.max() - 1
    assert SAMSegmenter(sam, max_segments=2, **kwargs)(picture).max() == 1
    np.testing.assert_array_equal(labels, masks_to_label_map(records, (64, 64), max_segments=5))


def test_sam_segmenter_bad_input(tmp_path):
    with pytest.raises(TypeError, match="Sam"):
        SAMSegmenter(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="checkpoint"):
        SAMSegmenter()
    with pytest.raises(FileNotFoundError, match="not found"):
        SAMSegmenter(checkpoint=tmp_path / "sam_vit_b.pth")
    with pytest.raises(ValueError, match="model_type"):
        SAMSegmenter(checkpoint=tmp_path / "x.pth", model_type="vit_s")


# ------------------------------------------------------------------------------------------ DAAM + k-means

def test_daam_kmeans_groups_pixels_by_word_maps():
    maps = torch.zeros(2, 16, 16)
    maps[0, 2:7, 2:7] = 1.0      # word 0 lives top-left
    maps[1, 9:14, 8:14] = 1.0    # word 1 lives bottom-right
    segmenter = DAAMKMeansSegmenter(maps, n_clusters=3, spatial_weight=0.0)
    labels = segmenter(np.zeros((64, 64, 3), np.uint8))       # maps are upsampled to the image
    assert_label_map(labels, (64, 64))
    assert labels.max() == 2
    a, b, background = labels[18, 18], labels[46, 44], labels[62, 2]
    assert len({a, b, background}) == 3
    assert (labels[10:26, 10:26] == a).all() and (labels[38:54, 34:54] == b).all()
    flat = DAAMKMeansSegmenter(torch.ones(2, 8, 8), n_clusters=3, spatial_weight=0.0)(np.zeros((8, 8), np.uint8))
    assert (flat == 0).all()                                   # nothing to separate: one segment
    with pytest.raises(ValueError, match="n_words, h, w"):
        DAAMKMeansSegmenter(torch.ones(8, 8))
    with pytest.raises(ValueError, match="n_clusters"):
        DAAMKMeansSegmenter(maps, n_clusters=1)


def test_daam_kmeans_from_a_real_daam_result():
    from captum_diffusion.attention.daam import DAAM
    from captum_diffusion.testing import tiny_stable_diffusion

    pipe = tiny_stable_diffusion()
    result = DAAM(pipe).explain("a red circle", generator=torch.Generator().manual_seed(0), num_inference_steps=2)
    segmenter = DAAMKMeansSegmenter.from_daam(result, words=["red", "circle"], n_clusters=3)
    np.testing.assert_allclose(segmenter.heat_maps, torch.stack([result.heatmap("red"), result.heatmap("circle")]))
    labels = segmenter(result.images[0])
    assert_label_map(labels, np.asarray(result.images[0]).shape[:2])
    assert labels.max() >= 1
    with pytest.raises(TypeError, match="DAAMResult"):
        DAAMKMeansSegmenter.from_daam({"red": np.ones((4, 4))})
    maps = DAAM(pipe).attribute("a red circle", generator=torch.Generator().manual_seed(0), num_inference_steps=2)
    from_tensor = DAAMKMeansSegmenter.from_daam(maps, words=[1, 2], n_clusters=3)  # red, circle by index
    np.testing.assert_allclose(from_tensor.heat_maps, segmenter.heat_maps)
    np.testing.assert_array_equal(from_tensor(result.images[0]), labels)
    with pytest.raises(ValueError, match="indices"):
        DAAMKMeansSegmenter.from_daam(maps, words=["red"])
    with pytest.raises(ValueError, match="n_images, n_words, H, W"):
        DAAMKMeansSegmenter.from_daam(maps[0])


# ------------------------------------------------------------------------------------------ as LIME's segmentation_fn

def test_every_segmenter_plugs_into_stock_lime(picture):
    """Stock ``LimeImageExplainer.explain_instance`` takes each segmenter as ``segmentation_fn`` unchanged."""
    from lime.lime_image import LimeImageExplainer

    maps = torch.zeros(2, 8, 8)
    maps[0, :4, :4] = maps[1, 4:, 4:] = 1.0
    segmenters = [SuperpixelSegmenter("felzenszwalb"),
                  SAMSegmenter(tiny_sam(), max_segments=4, points_per_side=4, pred_iou_thresh=0.0,
                               stability_score_thresh=0.0, box_nms_thresh=1.0),
                  DAAMKMeansSegmenter(maps, n_clusters=3)]

    def colour_share(images):  # (n, H, W, 3) -> (n, 3): each channel's share of the brightness, a plain function
        sums = images.reshape(len(images), -1, 3).astype(np.float64).sum(1)
        return sums / sums.sum(1, keepdims=True)

    for segmenter in segmenters:
        explanation = LimeImageExplainer(random_state=0).explain_instance(
            picture, colour_share, labels=(0, 2), top_labels=None, hide_color=128, num_samples=30,
            segmentation_fn=segmenter)
        np.testing.assert_array_equal(explanation.segments, segmenter(picture))
        n_segments = explanation.segments.max() + 1
        assert sorted(explanation.local_exp) == [0, 2]
        assert sorted(s for s, _ in explanation.local_exp[0]) == list(range(n_segments))
