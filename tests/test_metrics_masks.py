import math

import numpy as np
import pytest
import torch

from captum_diffusion.metrics import iod, ioh, iou, miou


def _box(top, left, bottom, right, size=(10, 10)):
    mask = np.zeros(size, dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def test_iou_of_overlapping_boxes_is_intersection_over_union():
    a, b = _box(0, 0, 4, 4), _box(2, 2, 6, 6)  # 16 px each, 4 px shared, 28 px in the union
    assert iou(a, b) == pytest.approx(4 / 28)
    assert iou(a, a) == 1.0
    assert iou(a, _box(6, 6, 8, 8)) == 0.0


def test_iod_and_ioh_measure_containment_as_in_daam_appendix_b():
    head, dependent = _box(0, 0, 8, 8), _box(2, 2, 4, 4)  # the head's map contains the dependent's
    assert iod(dependent, head) == 1.0  # all of the dependent is covered: the head dominates
    assert ioh(dependent, head) == pytest.approx(4 / 64)
    assert iod(dependent, head) > ioh(dependent, head)
    assert iod(head, dependent) == ioh(dependent, head)  # swapping roles swaps the two measures


def test_masks_accept_torch_bool_and_01_arrays_and_stacks():
    a, b = _box(0, 0, 4, 4), _box(2, 2, 6, 6)
    assert iou(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(4 / 28)
    assert iou(a.astype(np.uint8), b.astype(np.float32)) == pytest.approx(4 / 28)
    stacked = iou(np.stack([a, a]), np.stack([b, a]))
    np.testing.assert_allclose(stacked, [4 / 28, 1.0])
    np.testing.assert_allclose(iod(np.stack([a, a]), np.stack([b, a])), [4 / 16, 1.0])


def test_undefined_ratios_are_nan_and_miou_skips_them():
    empty = np.zeros((10, 10), dtype=bool)
    a, b = _box(0, 0, 4, 4), _box(2, 2, 6, 6)
    assert math.isnan(iou(empty, empty))
    assert iou(empty, a) == 0.0
    assert math.isnan(iod(empty, a)) and ioh(empty, a) == 0.0
    assert miou([a, empty, a], [b, empty, a]) == pytest.approx((4 / 28 + 1.0) / 2)
    with pytest.raises(ValueError, match="non-empty"):
        miou([empty], [empty])


def test_miou_pairs_masks_of_different_sizes():
    a, b = _box(0, 0, 4, 4), _box(0, 0, 4, 2)
    big = _box(0, 0, 32, 32, size=(64, 64))
    assert miou([a, big], [b, big]) == pytest.approx((0.5 + 1.0) / 2)


@pytest.mark.parametrize("call", [
    lambda: iou(np.zeros((4, 4), bool), np.zeros((4, 5), bool)),
    lambda: iou(np.full((4, 4), 0.5), np.zeros((4, 4), bool)),
    lambda: iou(np.zeros(4, bool), np.zeros(4, bool)),
    lambda: miou([np.zeros((4, 4), bool)], []),
])
def test_bad_masks_are_clear_errors(call):
    with pytest.raises(ValueError, match="shape|binary|pair|mask"):
        call()
