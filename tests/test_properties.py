"""Bad input, property-based (hypothesis): prompts, numbers, images and label maps thrown at every public entry point.

The property, for every call: it raises ``ValueError`` / ``TypeError`` whose message names the argument that was
fuzzed, or it returns a correct result (shapes right, no NaN, values in range). Any other exception (IndexError,
KeyError, AttributeError, RuntimeError, ZeroDivisionError, numpy / torch / sklearn / captum internals) fails.
Everything runs on tiny random models built once for the module (``captum_diffusion.testing``), tiny images and
two denoising steps. ``EXAMPLES`` / ``CALLS`` count what hypothesis tried; ``test_zz_cases_tried`` prints them.
The examples are derandomised (the same every run, about a minute on two cores); ``PROPERTY_FUZZ_SCALE=10`` runs ten
times as many, freshly random, for a deeper search.

The plain tests at the end pin each bad-input bug this suite found (one per class of input), so they stay fixed.
"""
from __future__ import annotations

import collections
import itertools
import math
import os
import numbers as numbers_
import zlib

import numpy as np
import PIL.Image
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lime_adapters
import shap_adapters
from captum_diffusion import (DAAM, AffineGenerator, CLIPConditionedGenerator, CLIPSaliency, CLIPSimilarity,
                              DAAMKMeansSegmenter, LatentSimilarity, PromptScore, SAMSegmenter, SegmentScorer,
                              SuperpixelSegmenter, TextToImage, WordAttribution, WordGame, evaluate_masks,
                              masks_to_label_map, segment_word_table, split_words, subprompt, threshold_maps)
from captum_diffusion import convert, metrics
from captum_diffusion.image import check_label_map, plot_attributions, relabel
from captum_diffusion.image.segment_scores import fill_color
from captum_diffusion.scoring import load_scorer, word_scores
from captum_diffusion.testing import tiny_clip, tiny_open_clip, tiny_stable_diffusion, tiny_tokenizer
from captum_diffusion.words import (as_mask_matrix, as_words, evaluate_prompts, resolve_words, shapley_from_values,
                                    word_key, word_labels, word_token_positions)

EXAMPLES: collections.Counter = collections.Counter()  # hypothesis examples run, per test
CALLS: collections.Counter = collections.Counter()  # public calls made, per function
ACCEPTED: collections.Counter = collections.Counter()  # of those, the calls that returned (and were checked)
BAD_INPUT = (ValueError, TypeError)


#: ``PROPERTY_FUZZ_SCALE=10 pytest tests/test_properties.py`` runs ten times the examples with fresh random draws
#: (a deeper search); unset, the suite is reproducible (derandomised) and sized to run in about a minute.
FUZZ_SCALE = float(os.environ.get("PROPERTY_FUZZ_SCALE", "0") or 0)


def fuzz(examples: int):
    """Hypothesis settings: ``examples`` cases, no deadline, reproducible (derandomised, no database)."""
    return settings(max_examples=max(1, int(examples * (FUZZ_SCALE or 1))), deadline=None,
                    derandomize=not FUZZ_SCALE, database=None, print_blob=bool(FUZZ_SCALE),
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much])


def attempt(names, function, *args, **kwargs):
    """``(True, result)``, or ``(False, None)`` after a ``ValueError`` / ``TypeError`` whose message contains one of
    ``names`` (the fuzzed arguments). Anything else propagates and fails the test."""
    names = (names,) if isinstance(names, str) else tuple(names)
    label = (f"{function.__module__}.{function.__qualname__}" if hasattr(function, "__qualname__")
             else f"{type(function).__module__}.{type(function).__qualname__}.__call__")
    CALLS[label] += 1
    try:
        result = function(*args, **kwargs)
    except BAD_INPUT as error:
        message = str(error)
        assert any(name in message for name in names), (
            f"{type(error).__name__} from {getattr(function, '__qualname__', function)} names none of {names}: "
            f"{message}")
        return False, None
    ACCEPTED[label] += 1
    return True, result


def finite(values) -> bool:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return bool(np.isfinite(np.asarray(values, dtype=np.float64)).all())


def weight(word: str) -> float:
    return (zlib.crc32(word.encode("utf-8", "replace")) % 1000) / 1000.0 + 0.01


def additive_f(prompts):
    """An additive game: each word adds its own weight, so exact Shapley values are the weights."""
    return np.array([sum(weight(w) for w in p.split()) for p in prompts], dtype=np.float64)


def tiny_generator(prompts, seed=0):
    """A deterministic callable generator: 8x8 RGB images, colour from the prompt."""
    out = []
    for p in prompts:
        code = zlib.crc32(p.encode("utf-8", "replace"))
        image = np.zeros((8, 8, 3), np.uint8)
        image[:, :4] = (code % 256, (code >> 8) % 256, (code >> 16) % 256)
        image[:, 4:] = 255 - image[:, :4]
        out.append(image)
    return out


# ------------------------------------------------------------------------------------------------------ strategies
# An argument is drawn from ``mix(valid, bad)``. Alone (``data.draw``, nested) it is valid three times in four; as an
# argument of ``given_args`` it is bad in 0, 1 or 2 of a call's arguments (chosen at random), so that a call with many
# fuzzed arguments still often reaches its result (which is then checked) and bad input comes alone or in company.
WORDS = ["a", "red", "circle", "blue", "square", "on", "the", "left", "Dog,", "dog", "ünïcødé", "猫", "🐱", "a"]
NAN, INF = float("nan"), float("inf")


def mix(valid, bad, valid_weight: int = 3):
    """``valid`` ``valid_weight`` times in ``valid_weight + 1``, else ``bad`` (see ``given_args``)."""
    strategy = st.one_of(*([valid] * valid_weight), bad)
    strategy.valid_and_bad = (valid, bad)
    return strategy


@st.composite
def _faulty_arguments(draw, mixed: dict):
    names = sorted(mixed)
    n_bad = min(draw(st.sampled_from([0, 0, 1, 1, 1, 2])), len(names))
    bad = set(draw(st.permutations(names))[:n_bad])
    return {name: draw(mixed[name].valid_and_bad[1 if name in bad else 0]) for name in names}


def given_args(**strategies):
    """``hypothesis.given`` where the ``mix`` arguments are drawn together: at most two of them bad at once."""
    import functools
    import inspect

    mixed = {name: s for name, s in strategies.items() if hasattr(s, "valid_and_bad")}
    plain = {name: s for name, s in strategies.items() if name not in mixed}

    def decorate(test):
        signature = inspect.signature(test)

        @functools.wraps(test)
        def run(*args, _mixed, **kwargs):
            bound = outer.bind(*args, **kwargs)  # hypothesis may pass its arguments by position
            return test(**bound.arguments, **_mixed)

        parameters = [p for p in signature.parameters.values() if p.name not in mixed]
        outer = signature.replace(parameters=parameters)
        run.__signature__ = signature.replace(
            parameters=parameters + [inspect.Parameter("_mixed", inspect.Parameter.KEYWORD_ONLY)])
        del run.__wrapped__
        return given(**plain, _mixed=_faulty_arguments(mixed))(run)

    return decorate


good_prompts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join)
prompt_texts = st.one_of(
    st.sampled_from(["", " ", "\t\n ", "\u3000", "\u200b", "a", "a red circle", "red red red", " a  red\tcircle\n",
                     "a\x00b", "0\x1f", "{}", "{0} {name}"]),
    good_prompts,
    st.text(max_size=16),
)
long_prompts = st.lists(st.sampled_from(WORDS), min_size=60, max_size=90).map(" ".join)  # past 77 tokens
not_text = st.one_of(
    st.none(), st.binary(max_size=8), st.integers(-2, 5), st.sampled_from([NAN, 1.5, True, False]),
    st.lists(st.sampled_from(WORDS), max_size=3), st.tuples(st.sampled_from(WORDS)), st.just(["a", None]),
    st.just({"a": 1}), st.just(b"a red circle"), st.just(np.array(["a", "red"])))
bad_prompts = st.one_of(prompt_texts, not_text, long_prompts)
prompts = st.one_of(prompt_texts, not_text)  # every kind, with equal weight
short_prompts = mix(good_prompts, prompts)  # a prompt argument: valid and short (cheap) three times in four
any_prompts = st.one_of(prompts, long_prompts)

good_word_lists = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4)
bad_word_lists = st.one_of(
    st.just([]), st.sampled_from(WORDS), st.none(), st.binary(max_size=5),
    st.lists(st.one_of(st.sampled_from(WORDS), st.none(), st.integers(-3, 3), st.just(""), st.just("two words"),
                       st.just(b"red")), min_size=1, max_size=4),
    st.just(("a", "red")), st.just(np.array(["a", "red"])))
word_lists = st.one_of(good_word_lists, bad_word_lists)

SPECIAL_NUMBERS = [0, -1, 1, 2, 3, 0.0, 0.5, 1.0, 2.5, -0.5, True, False, NAN, INF, -INF, 1e300, 5e-324,
                   np.int64(2), np.float32(0.5), np.float64(NAN), "3", None, [2], 2 + 0j, -10**6]
bad_numbers = st.one_of(st.sampled_from(SPECIAL_NUMBERS), st.floats(allow_nan=True, allow_infinity=True, width=64),
                        st.integers(-10**6, 0))


def numbers(low: int = -3, high: int = 8):
    """Numbers and near-numbers, every kind with equal weight: small ints, every float (NaN, inf, huge, tiny),
    bools, numpy scalars, str, None, lists, complex."""
    return st.one_of(st.integers(low, high), bad_numbers)


def count(low: int, high: int):
    """An int argument: in ``low..high`` three times in four, else any number or near-number."""
    return mix(st.integers(low, high), bad_numbers)


def real(low: float, high: float):
    """A float argument: in ``[low, high]`` three times in four, else any number or near-number."""
    return mix(st.floats(low, high), bad_numbers)


def seeds():
    return mix(st.one_of(st.integers(0, 2**32 - 1), st.none()), bad_numbers)


PIL_MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "I;16", "I", "F", "CMYK", "YCbCr", "HSV", "LAB", "PA", "RGBX"]
ARRAY_DTYPES = [np.uint8, np.uint16, bool, np.float32, np.float64, np.float16, np.int64, np.int8, np.int32]


@st.composite
def bad_images(draw, max_side: int = 10, min_side: int = 0):
    """PIL images of every mode, numpy arrays of many dtypes / shapes / ranges (NaN too), 0x0 .. max_side, and
    things that are not images."""
    height, width = draw(st.integers(min_side, max_side)), draw(st.integers(min_side, max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(["pil", "array", "array", "other"]))
    if kind == "pil":
        mode = draw(st.sampled_from(PIL_MODES))
        if height == 0 or width == 0:
            return PIL.Image.new(mode, (width, height))
        if mode == "I;16":
            return PIL.Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
        if mode == "I":
            return PIL.Image.fromarray(rng.integers(0, 65536, (height, width)).astype(np.int32))
        if mode == "F":
            return PIL.Image.fromarray(rng.random((height, width)).astype(np.float32))
        return PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)
    if kind == "array":
        dtype = draw(st.sampled_from(ARRAY_DTYPES))
        shape = draw(st.sampled_from([(height, width, 3), (height, width, 3), (height, width), (height, width, 1),
                                      (height, width, 4), (height, width, 2), (height,), (1, height, width, 3)]))
        if dtype == bool:
            return rng.random(shape) > 0.5
        if np.issubdtype(dtype, np.floating):
            scale = draw(st.sampled_from([1.0, 1.0, 255.0, -1.0]))
            values = (rng.random(shape) * scale).astype(dtype)
            if values.size and draw(st.booleans()) and draw(st.booleans()):
                values.flat[0] = draw(st.sampled_from([NAN, INF]))
            return values
        high = {np.uint16: 65536, np.int8: 128}.get(dtype, 256)
        return rng.integers(0, high, shape).astype(dtype)
    return draw(st.sampled_from([None, "image.png", b"\x89PNG", torch.rand(3, 4, 4), [[0, 1], [1, 0]], 3.0,
                                 np.array(5), np.zeros((2, 2, 3), dtype=object)]))


@st.composite
def good_images(draw, max_side: int = 10, min_side: int = 1):
    """Valid images of every accepted kind: PIL (RGB, L, 1, P, RGBA, I;16, F) or uint8 / uint16 / bool / float
    [0, 1] arrays shaped (H, W), (H, W, 1), (H, W, 3), (H, W, 4); 1x1 and non-square included."""
    height, width = draw(st.integers(min_side, max_side)), draw(st.integers(min_side, max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    kind = draw(st.sampled_from(["rgb", "rgb", "pil", "uint16", "bool", "float", "gray", "rgba"]))
    if kind == "pil":
        mode = draw(st.sampled_from(["RGB", "L", "1", "P", "RGBA", "I;16", "F"]))
        if mode == "I;16":
            return PIL.Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
        if mode == "F":
            return PIL.Image.fromarray(rng.random((height, width)).astype(np.float32))
        return PIL.Image.fromarray(rgb).convert(mode)
    if kind == "uint16":
        return rng.integers(0, 65536, (height, width, 3)).astype(np.uint16)
    if kind == "bool":
        return rng.random((height, width)) > 0.5
    if kind == "float":
        return rng.random((height, width, 3)).astype(draw(st.sampled_from([np.float32, np.float64])))
    if kind == "gray":
        return rgb[:, :, :1] if draw(st.booleans()) else rgb[:, :, 0]
    if kind == "rgba":
        return np.concatenate([rgb, rng.integers(0, 256, (height, width, 1), dtype=np.uint8)], axis=2)
    return rgb


def images(max_side: int = 10, min_side: int = 0):
    """An image argument: valid three times in four (``good_images``), else anything (``bad_images``)."""
    return mix(good_images(max_side, max(min_side, 1)), bad_images(max_side, min_side))


def rgb_size(image) -> tuple[int, int] | None:
    """``(H, W)`` the project should read off ``image`` if it is a valid image, else ``None``."""
    if isinstance(image, PIL.Image.Image):
        return (image.height, image.width) if image.width and image.height else None
    if isinstance(image, np.ndarray) and image.ndim in (2, 3) and image.shape[0] and image.shape[1]:
        if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
            return None
        if image.dtype in (np.uint8, np.uint16, bool):
            return image.shape[:2]
        if np.issubdtype(image.dtype, np.floating) and np.isfinite(image).all() and image.min() >= 0 \
                and image.max() <= 1:
            return image.shape[:2]
    return None


LABEL_DTYPES = [np.int64, np.int64, np.int32, np.uint8, np.int8, np.uint16, np.float64, bool]


@st.composite
def bad_label_maps(draw, height: int, width: int):
    """Label maps for an image of ``(height, width)``: every dtype, wrong shapes, gaps, one label, negatives."""
    dtype = draw(st.sampled_from(LABEL_DTYPES))
    shape = draw(st.sampled_from([(height, width)] * 4 + [(height, width + 1), (height,), (1, height, width),
                                                          (0, 0)]))
    kind = draw(st.sampled_from(["halves", "contiguous", "gaps", "one", "negative"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    n = draw(st.integers(2, 4))
    labels = rng.integers(0, n, shape)
    if kind == "halves" and len(shape) == 2 and shape[1] >= 2:
        labels = np.zeros(shape, int)
        labels[:, shape[1] // 2:] = 1
    elif kind == "contiguous" and labels.size >= n:
        labels.flat[:n] = np.arange(n)  # every label present
    elif kind == "gaps":
        labels = labels * 2
    elif kind == "one":
        labels = np.zeros(shape, int)
    elif kind == "negative":
        labels = labels - 1
    return labels.astype(dtype)


@st.composite
def good_label_maps(draw, height: int, width: int):
    """A valid label map 0..k-1 (k >= 2 where the image has two pixels or more), int64 / int32 / uint8."""
    k = min(draw(st.integers(2, 4)), height * width)
    labels = np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, k, height * width)
    labels[:k] = np.arange(k)
    return labels.reshape(height, width).astype(draw(st.sampled_from([np.int64, np.int32, np.uint8])))


def label_maps(height: int, width: int):
    return mix(good_label_maps(height, width), bad_label_maps(height, width))


def label_map_valid(labels, height: int, width: int, min_segments: int = 2) -> bool:
    labels = np.asarray(labels)
    if labels.shape != (height, width) or not np.issubdtype(labels.dtype, np.integer) or labels.size == 0:
        return False
    present = np.unique(labels)
    return present[0] == 0 and present[-1] == len(present) - 1 and len(present) >= min_segments


@st.composite
def bad_masks(draw, n_columns: int):
    """0/1 masks ``(n, n_columns)`` and near-misses: 2, -1, 0.5, NaN, wrong widths, ragged lists, tensors, str."""
    rows = draw(st.integers(0, 4))
    width = draw(st.sampled_from([n_columns] * 4 + [n_columns + 1, max(n_columns - 1, 0)]))
    values = st.sampled_from([0, 1, 0, 1, True, False, 2, -1, 0.5, NAN])
    matrix = [[draw(values) for _ in range(width)] for _ in range(rows)]
    form = draw(st.sampled_from(["list", "array", "bool", "tensor", "row", "ragged", "other"]))
    if form == "array":
        return np.array(matrix, dtype=np.float64).reshape(rows, width)
    if form == "bool":
        return np.array(matrix, dtype=np.float64).reshape(rows, width) > 0
    if form == "tensor":
        return torch.tensor(np.array(matrix, dtype=np.float64).reshape(rows, width))
    if form == "row":
        return [draw(values) for _ in range(width)]
    if form == "ragged" and rows >= 2:
        return [matrix[0], matrix[1][:-1] if matrix[1] else [1, 0]]
    if form == "other":
        return draw(st.sampled_from([None, "0101", b"\x00\x01", 1, np.array([["1", "0"]])]))
    return matrix


@st.composite
def good_masks(draw, n_columns: int, rows: bool = True):
    """Valid 0/1 masks: a matrix ``(n, n_columns)`` (``rows``) or one row, as list / int array / bool / tensor."""
    n = draw(st.integers(1, 4)) if rows else 1
    matrix = np.array([[draw(st.sampled_from([0, 1])) for _ in range(n_columns)] for _ in range(n)])
    matrix = matrix if rows else matrix[0]
    form = draw(st.sampled_from(["list", "array", "bool", "tensor"]))
    return {"list": matrix.tolist(), "array": matrix, "bool": matrix > 0, "tensor": torch.tensor(matrix)}[form]


def masks_like(n_columns: int, rows: bool = True):
    return mix(good_masks(n_columns, rows), bad_masks(n_columns))


# ------------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def pipe():
    return tiny_stable_diffusion("sd1")


@pytest.fixture(scope="module")
def clip():
    model, processor = tiny_clip()
    return CLIPSimilarity(model, processor)


@pytest.fixture(scope="module")
def oclip():
    return tiny_open_clip()


@pytest.fixture(scope="module")
def picture():
    """16x16: a red left half, a white right half."""
    image = np.full((16, 16, 3), 255, np.uint8)
    image[:, :8] = (200, 30, 30)
    return image


@pytest.fixture(scope="module")
def halves():
    segments = np.zeros((16, 16), np.int64)
    segments[:, 8:] = 1
    return segments


@pytest.fixture(scope="module")
def daam_result(pipe):
    return DAAM(pipe).explain(["a red circle", "a blue square on the left"], num_inference_steps=2,
                              generator=[torch.Generator().manual_seed(0) for _ in range(2)])


@pytest.fixture(scope="module")
def lime_image_explanation(picture, halves, clip):
    return lime_adapters.explain_image(picture, "a red circle", clip, segments=halves, num_samples=10, progress=False)


@pytest.fixture(scope="module")
def shap_image_explanation(picture, halves, clip):
    return shap_adapters.explain_image(picture, "a red", clip, segments=halves, progress=False)


@pytest.fixture(scope="module")
def lime_text_explanation():
    return lime_adapters.explain_prompt("a red circle", additive_f, 20)


# ------------------------------------------------------------------------------------------------------ words
@fuzz(150)
@given_args(prompt=any_prompts, words=word_lists)
def test_words_and_prompts(prompt, words):
    EXAMPLES["words"] += 1
    ok, out = attempt("prompt", split_words, prompt)
    if ok:
        assert out == prompt.split() and out and all(w and not any(c.isspace() for c in w) for w in out)
    ok, out = attempt("prompt", as_words, prompt)
    if ok:
        assert out and all(isinstance(w, str) and w.split() == [w] for w in out)
    ok, labels = attempt("words", word_labels, words)
    if ok:
        assert len(labels) == len(words) and len(set(labels)) == len(labels)
    word = words[0] if isinstance(words, list) and words else words
    ok, key = attempt("word", word_key, word)
    if ok:
        assert isinstance(key, str) and key == key.lower()


@fuzz(120)
@given_args(words=mix(good_word_lists, bad_word_lists), data=st.data())
def test_subprompt_and_masks(words, data):
    EXAMPLES["masks"] += 1
    n = len(words) if isinstance(words, list) else 3
    mask = data.draw(masks_like(n, rows=False))
    ok, out = attempt(("words", "mask"), subprompt, words, mask)
    if ok:
        kept = [w for w, keep in zip(words, np.asarray(mask).ravel()) if keep]
        assert out == " ".join(kept)
    matrix_masks = data.draw(masks_like(n))
    n_words = data.draw(mix(st.just(n), bad_numbers))
    ok, matrix = attempt(("masks", "n_words"), as_mask_matrix, matrix_masks, n_words)
    if ok:
        assert matrix.dtype == bool and matrix.ndim == 2 and matrix.shape[1] == n_words


@fuzz(120)
@given_args(prompt=mix(good_prompts, any_prompts, 2), data=st.data())
def test_word_game(prompt, data):
    EXAMPLES["game"] += 1
    ok, game = attempt("prompt", WordGame, additive_f, prompt)
    if not ok:
        return
    masks = data.draw(masks_like(game.n_words))
    ok, values = attempt("masks", game, masks)
    if ok:
        rows = as_mask_matrix(masks, game.n_words)
        expected = [sum(weight(w) for w, keep in zip(game.words, row) if keep) for row in rows]
        np.testing.assert_allclose(values, expected)
    sub_prompts = data.draw(mix(st.lists(prompt_texts, max_size=3), prompts))
    ok, values = attempt("prompts", evaluate_prompts, additive_f, sub_prompts)
    if ok:
        np.testing.assert_allclose(values, additive_f(sub_prompts))
    words = data.draw(mix(st.lists(st.sampled_from(WORDS), min_size=2, max_size=2), word_lists))
    ok, values = attempt(("words", "masks"), evaluate_masks, additive_f, words, [[1, 0]])
    if ok:
        assert values.shape == (1,) and values[0] == pytest.approx(weight(words[0]))


@fuzz(60)
@given_args(d=st.integers(0, 3), data=st.data())
def test_shapley_from_values(d, data):
    EXAMPLES["shapley_from_values"] += 1
    table = np.array(list(itertools.product((False, True), repeat=d)), dtype=bool).reshape(2**d, d)
    weights = np.arange(1, d + 1, dtype=float)
    masks = data.draw(mix(st.just(table), st.sampled_from([table[:-1], table.ravel(), table.astype(float) * 2,
                                                           [[0, 1]], None, "masks"])))
    values = data.draw(mix(st.just(table @ weights if d else np.zeros(1)),
                           st.sampled_from([np.arange(2**d + 1, dtype=float), np.full(2**d, NAN),
                                            np.array(["a"] * 2**d), None, 3.0])))
    ok, phi = attempt(("masks", "values"), shapley_from_values, masks, values)
    if ok:
        np.testing.assert_allclose(phi, weights)  # additive: each word's Shapley value is its weight


WORD_SPECS = mix(st.one_of(st.none(), st.sampled_from(["red", "a", 0, -1, ("a", 0), "a#0"]),
                           st.lists(st.sampled_from(["a", "red"]), min_size=1, max_size=2)),
                 st.one_of(st.sampled_from(WORDS), st.integers(-6, 6),
                           st.sampled_from([("red", 0), ("a", 1), ("red", -1), ("red", True), ("red",), "red#1",
                                            "a#7", 1.5, True, b"red", ["red", 2], ["zzz"], [], [None],
                                            [("a", 0), 0]]),
                           st.lists(st.sampled_from(WORDS), max_size=3)), 2)


@fuzz(120)
@given_args(prompt=mix(st.sampled_from(["a red circle", "a red a", "Dog, dog a red"]), any_prompts, 2),
            words=WORD_SPECS)
def test_word_tokens(tok, prompt, words):
    EXAMPLES["tokens"] += 1
    ok, aligned = attempt("prompt", word_token_positions, prompt, tok)
    if ok:
        assert [w for w, _ in aligned] == prompt.split()
        assert all(0 < p < tok.model_max_length for _, positions in aligned for p in positions)
    ok, targets = attempt(("prompt", "words"), resolve_words, prompt, tok, words)
    if ok:
        assert targets and all(t.positions and t.word_indices for t in targets)


# ------------------------------------------------------------------------------------------------------ explainers
METHOD_NAMES = mix(st.sampled_from(["feature_ablation", "shapley_sampling", "shapley_values", "kernel_shap", "lime"]),
                   st.sampled_from(["bogus", None, 1, "Lime"]))
FEATURE_MASKS = st.sampled_from([torch.tensor([[0, 1, 2]]), torch.tensor([[0, 0, 1]]), torch.tensor([0, 2, 1]),
                                 torch.tensor([[0, 1]]), torch.tensor([[0, 5, 1]]), [[0, 1, 2]], "abc",
                                 torch.tensor([[0.5, 1, 2]]), torch.tensor([[-1, 0, 1]])])


@fuzz(50)
@given_args(prompt=short_prompts, method=METHOD_NAMES, n_samples=count(2, 6), per_eval=count(1, 6), seed=seeds(),
       data=st.data())
def test_word_attribution(prompt, method, n_samples, per_eval, seed, data):
    EXAMPLES["WordAttribution"] += 1
    ok, attribution = attempt(("method", "seed"), WordAttribution, additive_f, method, progress=False, seed=seed)
    if not ok:
        return
    options = {}
    if method in ("shapley_sampling", "kernel_shap", "lime") and data.draw(st.booleans()):
        options["n_samples"] = n_samples
    if data.draw(st.booleans()):
        options["perturbations_per_eval"] = per_eval
    if data.draw(st.integers(0, 3)) == 0:
        options["feature_mask"] = data.draw(FEATURE_MASKS)
    ok, result = attempt(("prompt", "n_samples", "perturbations_per_eval", "feature_mask", "words"),
                         attribution.attribute, prompt, **options)
    if ok:
        words = as_words(prompt)
        assert result.seq_attr.shape == (len(words),) and finite(result.seq_attr)
        if method in ("shapley_values", "shapley_sampling", "feature_ablation") and "feature_mask" not in options:
            # an additive game: these methods give each word its weight exactly
            np.testing.assert_allclose(result.seq_attr.numpy(), [weight(w) for w in words], atol=1e-5)


@fuzz(40)
@given_args(prompt=short_prompts, algorithm=mix(st.sampled_from(["auto", "exact", "permutation", "partition"]),
                                           st.sampled_from(["kernel", None, "Exact"])),
       max_evals=mix(st.one_of(st.none(), st.integers(1, 80)), bad_numbers), batch_size=mix(st.none(), count(1, 8)),
       seed=seeds())
def test_shap_explain_prompt(prompt, algorithm, max_evals, batch_size, seed):
    EXAMPLES["shap.explain_prompt"] += 1
    ok, explanation = attempt(("prompt", "algorithm", "max_evals", "batch_size", "seed", "words"),
                              shap_adapters.explain_prompt, prompt, additive_f, algorithm, max_evals,
                              batch_size=batch_size, seed=seed, progress=False)
    if ok:
        words = as_words(prompt)
        values = np.asarray(explanation.values)
        assert values.shape == (len(words),) and finite(values)
        if algorithm != "partition":  # an additive game: exact and permutation sampling give the weights
            np.testing.assert_allclose(values, [weight(w) for w in words], atol=1e-6)
        else:  # Owen values with a budget: still efficient
            assert values.sum() == pytest.approx(additive_f([" ".join(words)])[0], abs=1e-6)


@fuzz(60)
@given_args(n=count(1, 6), words=word_lists, data=st.data())
def test_shap_word_helpers(n, words, data):
    EXAMPLES["shap.helpers"] += 1
    ok, linkage = attempt("n_words", shap_adapters.word_clustering, n)
    if ok:
        assert linkage.shape == (n - 1, 4) and finite(linkage) and (linkage[-1:, 3] == n).all()
    clustering = data.draw(mix(st.none(), st.sampled_from([np.array([[0, 1, 1, 2]]), np.full((1, 4), NAN),
                                                           np.array([[0, 5, 1, 2]]), np.array([[0, 0, 1, 2]]),
                                                           [[0, 1, 1, 2]], "x", np.array([[0, 1, -1, 2]])])))
    ok, masker = attempt(("words", "clustering"), shap_adapters.WordPartitionMasker, words, clustering)
    if ok:
        assert masker.words == as_words(words, "words")
    values = data.draw(mix(st.just([0.1, 0.2]), st.sampled_from([[NAN, 1.0], ["x", "y"], None, [1.0], [[0.1, INF]]])))
    base = data.draw(mix(st.floats(-1, 1), st.sampled_from([NAN, INF, "0", None, True])))
    ok, explanation = attempt(("values", "prompt", "base_value"), shap_adapters.word_explanation, values, "a red",
                              base)
    if ok:
        assert explanation.values.shape == (2,) and finite(explanation.values) and finite(explanation.base_values)


@fuzz(30)
@given_args(prompt=short_prompts, num_samples=count(2, 30), batch_size=mix(st.none(), count(1, 8)), seed=seeds(),
       kernel_width=real(0.1, 100), selection=mix(st.sampled_from(["none", "auto", "lasso_path"]),
                                                   st.sampled_from(["bogus", None])))
def test_lime_explain_prompt(prompt, num_samples, batch_size, seed, kernel_width, selection):
    EXAMPLES["lime.explain_prompt"] += 1
    ok, explanation = attempt(("prompt", "num_samples", "batch_size", "seed", "kernel_width", "feature_selection",
                               "words"),
                              lime_adapters.explain_prompt, prompt, additive_f, num_samples, batch_size=batch_size,
                              seed=seed, kernel_width=kernel_width, feature_selection=selection)
    if ok:
        weights = lime_adapters.word_weights(explanation)
        assert weights.shape == (len(as_words(prompt)),) and finite(weights)


@fuzz(60)
@given_args(label=mix(st.just(0), numbers(-1, 2), 1),
       mask_string=mix(st.sampled_from(["␀", "MASK"]), st.sampled_from(["", " ", "x y", None, 5, "red"])),
       texts=mix(st.lists(st.sampled_from(["a red circle", "a ␀ circle", "␀ ␀ ␀"]), max_size=3),
                 st.one_of(prompts, st.lists(st.sampled_from(["a red", "", "a MASK circle"]), max_size=2))),
       seed=seeds(), kernel_width=real(0.1, 100))
def test_lime_text_helpers(lime_text_explanation, label, mask_string, texts, seed, kernel_width):
    EXAMPLES["lime.text helpers"] += 1
    ok, weights = attempt("label", lime_adapters.word_weights, lime_text_explanation, label)
    if ok:
        assert weights.shape == (3,) and finite(weights)
    ok, classifier = attempt("mask_string", lime_adapters.WordClassifierFn, WordGame(additive_f, "a red circle"),
                             mask_string)
    if ok:
        ok, scores = attempt("texts", classifier, texts)
        if ok:
            expected = [additive_f([" ".join(w for w in t.split() if w != mask_string)])[0] for t in texts]
            assert scores.shape == (len(texts), 1) and np.allclose(scores[:, 0], expected)
    attempt(("seed", "kernel_width"), lime_adapters.word_explainer, seed=seed, kernel_width=kernel_width)


# ------------------------------------------------------------------------------------------------------ metrics
SCORES = st.one_of(
    st.lists(st.floats(0.01, 1.0), min_size=1, max_size=4),
    st.lists(st.floats(0.01, 1.0), min_size=1, max_size=4),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=4),
    st.sampled_from([None, "abc", [[0.2, 0.8]], [[0.2], [0.8]], np.zeros((2, 2)), torch.tensor([0.3, 0.7]), [True, 1],
                     {"a": 1}, [], 3.0]))


@fuzz(100)
@given_args(scores=SCORES, truth=SCORES,
            reduction=mix(st.sampled_from(["mean", "sum"]), st.sampled_from(["none", None])),
       normalize=st.booleans())
def test_ranking_metrics(scores, truth, reduction, normalize):
    EXAMPLES["ranking"] += 1
    ok, value = attempt(("scores", "ground_truth"), metrics.percent_ranks_aligned, scores, truth)
    if ok:
        assert 0.0 <= value <= 1.0
    ok, value = attempt(("scores", "ground_truth", "reduction", "sum to"), metrics.rmse, scores, truth,
                        normalize=normalize, reduction=reduction)
    if ok:
        assert not math.isnan(value) and value >= 0  # inf only where the true value exceeds float64
    ok, value = attempt(("scores", "sum to"), metrics.normalize_scores, scores)
    if ok:
        assert finite(value) and abs(value.sum() - 1) < 1e-6


@fuzz(80)
@given_args(attributions=SCORES, prompt=mix(st.sampled_from(["a a", "a red", "a b c", "red"]), prompts),
       atol=real(0, 1), game_atol=real(0, 1e-6), full=mix(st.floats(-5, 5), bad_numbers),
       base=mix(st.floats(-5, 5), bad_numbers),
       pairs=mix(st.sampled_from([None, [(0, 1)]]), st.sampled_from([[(0, 1.5)], [(0,)], [(0, 0)], [(0, 9)], "01",
                                                                     [(True, 1)], [(-1, 0)], 5])))
def test_axioms(attributions, prompt, atol, game_atol, full, base, pairs):
    EXAMPLES["axioms"] += 1
    names = ("attributions", "prompt", "atol", "game_atol", "full_value", "base_value", "pairs", "words", "symmetric")
    ok, check = attempt(names, metrics.check_efficiency, attributions, full_value=full, base_value=base, atol=atol)
    if ok:
        assert not math.isnan(check.gap) and check.passed == (check.gap <= check.atol)
    for function in (metrics.check_null_player, metrics.check_symmetry):
        kwargs = {"pairs": pairs} if function is metrics.check_symmetry else {}
        ok, check = attempt(names, function, attributions, additive_f, prompt, atol=atol, game_atol=game_atol,
                            **kwargs)
        if ok:
            assert not math.isnan(check.gap) and check.gap >= 0 and check.passed == (check.gap <= check.atol)


MASK_VALUES = st.sampled_from([np.zeros((3, 3), bool), np.ones((3, 3), bool), np.eye(3), np.eye(3) > 0,
                               np.eye(3) * 2, np.full((3, 3), NAN), np.zeros((2, 3, 3)), np.zeros(3), np.zeros((0, 0)),
                               np.array([["a"]]), None, "mask", torch.eye(3) > 0, [[1, 0], [0, 1]],
                               np.zeros((4, 4), bool)])


@fuzz(80)
@given_args(a=MASK_VALUES, b=MASK_VALUES)
def test_mask_metrics(a, b):
    EXAMPLES["mask metrics"] += 1
    for function, names in ((metrics.iou, ("a", "b")), (metrics.iod, ("dependent", "head")),
                            (metrics.ioh, ("dependent", "head"))):
        ok, value = attempt(names, function, a, b)
        if ok:  # NaN is the documented value of an undefined ratio (empty denominator), never of bad input
            values = np.atleast_1d(value)
            assert ((values >= 0) & (values <= 1) | np.isnan(values)).all()
    ok, value = attempt(("predictions", "targets", "miou"), metrics.miou, [a] if isinstance(a, np.ndarray) else a,
                        [b] if isinstance(b, np.ndarray) else b)
    if ok:
        assert 0.0 <= value <= 1.0


# ------------------------------------------------------------------------------------------------------ images
@fuzz(250)
@given_args(image=st.one_of(good_images(), bad_images()))
def test_convert_images(image):
    EXAMPLES["convert"] += 1
    size = rgb_size(image)
    ok, rgb = attempt("image", convert.as_rgb_image, image)
    assert ok == (size is not None)
    if ok:
        assert rgb.mode == "RGB" and (rgb.height, rgb.width) == size
    ok, array = attempt("image", convert.to_rgb_array, image)
    if ok:
        assert array.dtype == np.uint8 and array.shape == (*size, 3)
    ok, batch = attempt("images", convert.as_rgb_images, image)
    if ok:
        assert all(im.mode == "RGB" and im.width and im.height for im in batch)


@fuzz(150)
@given_args(data=st.data(), height=st.integers(0, 6), width=st.integers(0, 6), min_segments=count(1, 3))
def test_label_map_checks(data, height, width, min_segments):
    EXAMPLES["label maps"] += 1
    labels = data.draw(label_maps(height, width))
    ok, checked = attempt(("segments", "min_segments", "image_shape"), check_label_map, labels, (height, width, 3),
                          min_segments=min_segments)
    valid_min = isinstance(min_segments, numbers_.Integral) and not isinstance(min_segments, bool) \
        and min_segments >= 1
    assert ok == (valid_min and label_map_valid(labels, height, width, min_segments))
    if ok:
        assert checked.dtype == np.int64 and checked.shape == (height, width) and (checked == labels).all()
    ok, relabelled = attempt("labels", relabel, labels)
    if ok:
        present = np.unique(relabelled)
        assert relabelled.shape == labels.shape and (present == np.arange(len(present))).all()


SAM_RECORD = {"segmentation": np.eye(4, dtype=bool), "area": 4, "predicted_iou": 0.9, "stability_score": 0.8}
SAM_RECORD_2 = {"segmentation": np.triu(np.ones((4, 4), bool), 1), "area": 6, "predicted_iou": 0.5,
                "stability_score": 0.9}
BAD_RECORDS = st.sampled_from([{**SAM_RECORD, "predicted_iou": NAN}, {"segmentation": np.ones((4, 4), bool)},
                               {**SAM_RECORD, "area": "big"}, {**SAM_RECORD, "segmentation": np.ones((3, 3), bool)},
                               {**SAM_RECORD, "segmentation": np.full((4, 4), 2)}, None, "mask"])


@fuzz(80)
@given_args(records=mix(st.lists(st.sampled_from([SAM_RECORD, SAM_RECORD_2]), max_size=3),
                   st.one_of(st.lists(BAD_RECORDS, min_size=1, max_size=2), st.sampled_from([None, "masks",
                                                                                              SAM_RECORD]))),
       shape=mix(st.sampled_from([(4, 4), (4, 4, 3)]), st.sampled_from([(0, 0), (-1, 4), (4.0, 4), None, (4,), "44",
                                                                        (3, 3)])),
       max_segments=count(2, 5), rank_by=mix(st.sampled_from(["iou_area", "area", "predicted_iou", "stability_area"]),
                                             st.just("bogus")),
       min_area=count(0, 5))
def test_masks_to_label_map(records, shape, max_segments, rank_by, min_area):
    EXAMPLES["masks_to_label_map"] += 1
    ok, labels = attempt(("masks", "shape", "max_segments", "rank_by", "min_area"), masks_to_label_map, records, shape,
                         max_segments=max_segments, rank_by=rank_by, min_area=min_area)
    if ok:
        present = np.unique(labels)
        assert labels.shape == tuple(shape[:2]) and (present == np.arange(len(present))).all()
        assert 1 <= len(present) <= max_segments


@fuzz(60)
@given_args(image=images(max_side=12), method=mix(st.sampled_from(["slic", "quickshift", "felzenszwalb"]),
                                             st.sampled_from(["watershed", None])),
       option=mix(st.sampled_from([{}, {"n_segments": 3}, {"scale": 50}, {"kernel_size": 2}]),
                  st.sampled_from([{"n_segments": 0}, {"n_segments": NAN}, {"compactness": -1.0}, {"kernel_size": 0},
                                   {"scale": NAN}, {"min_size": -1}, {"bogus": 1}, {"sigma": -1}])))
def test_superpixels(image, method, option):
    EXAMPLES["SuperpixelSegmenter"] += 1
    ok, segmenter = attempt(("method", *option), SuperpixelSegmenter, method, **option)
    if not ok:
        return
    size = rgb_size(image)
    ok, labels = attempt("image", segmenter, image)
    assert ok == (size is not None)
    if ok:
        present = np.unique(labels)
        assert labels.dtype == np.int64 and labels.shape == size and (present == np.arange(len(present))).all()


HEAT_MAPS = mix(st.sampled_from([torch.rand(2, 4, 4), np.random.default_rng(0).random((3, 2, 5)), torch.zeros(2, 4, 4),
                                 torch.rand(1, 1, 1) > 0.5]),
                st.sampled_from([torch.full((2, 4, 4), NAN), torch.rand(2, 0, 4), torch.rand(4, 4), np.array([[["a"]]]),
                                 None, torch.rand(0, 4, 4), torch.tensor([[[INF]]])]))


@fuzz(50)
@given_args(heat_maps=HEAT_MAPS, k=count(2, 5), spatial_weight=real(0, 10), seed=seeds(), image=images(max_side=8))
def test_daam_kmeans(heat_maps, k, spatial_weight, seed, image):
    EXAMPLES["DAAMKMeansSegmenter"] += 1
    ok, segmenter = attempt(("heat_maps", "n_clusters", "spatial_weight", "seed"), DAAMKMeansSegmenter, heat_maps, k,
                            spatial_weight=spatial_weight, seed=seed)
    if not ok:
        return
    ok, labels = attempt("image", segmenter, image)
    assert ok == (rgb_size(image) is not None)
    if ok:
        present = np.unique(labels)
        assert labels.shape == rgb_size(image) and (present == np.arange(len(present))).all() and len(present) <= k


HIDE_COLORS = mix(st.sampled_from(["background", "mean", "gray", 0, 255, (1, 2, 3), (1.5, 2, 3)]),
                  st.sampled_from(["white", 300, -1, NAN, (1, 2), True, None, [0, 0, INF], "  "]))
OUTPUTS = mix(st.sampled_from(["cosine", "probability", "log_probability"]), st.sampled_from(["logits", None]))


@fuzz(60)
@given_args(data=st.data(), image=images(max_side=6, min_side=1), texts=word_lists, hide_color=HIDE_COLORS,
       output=OUTPUTS)
def test_segment_scorer(clip, data, image, texts, hide_color, output):
    EXAMPLES["SegmentScorer"] += 1
    size = rgb_size(image) or (4, 4)
    segments = data.draw(label_maps(*size))
    ok, scorer = attempt(("image", "segments", "texts", "hide_color", "output"), SegmentScorer, image, segments, texts,
                         clip, hide_color=hide_color, output=output)
    if not ok:
        return
    assert rgb_size(image) is not None and label_map_valid(segments, *size)
    keep = data.draw(masks_like(scorer.n_segments))
    ok, scores = attempt("keep", scorer, keep)
    if ok:
        assert scores.shape == (len(as_mask_matrix(keep, scorer.n_segments)), len(texts)) and finite(scores)
        low, high = {"cosine": (-1, 1), "probability": (0, 1), "log_probability": (-np.inf, 0)}[output]
        assert ((scores >= low - 1e-9) & (scores <= high + 1e-9)).all()
    batch = data.draw(st.sampled_from(["uint8", "float", "float255", "int64", "wrong"]))
    pixels = np.repeat(scorer.image[None], 2, 0)
    pixels = {"uint8": pixels, "float": pixels / 255.0, "float255": pixels + 2.0, "int64": pixels.astype(int),
              "wrong": pixels[..., :2]}[batch]
    ok, scores = attempt("images", scorer.score_images, pixels)
    assert ok == (batch in ("uint8", "float"))
    if ok:
        np.testing.assert_allclose(scores, scorer(np.ones((2, scorer.n_segments))), atol=1e-6)


@fuzz(40)
@given_args(image=images(max_side=8, min_side=1), prompt=short_prompts,
       words=mix(st.one_of(st.none(), st.just(["red"])), bad_word_lists),
       template=mix(st.sampled_from([None, "{}", "a photo of a {}"]), st.sampled_from(["{} {}", "{0}", "{name}", "{",
                                                                                      5, ""])),
       word=mix(st.sampled_from(["red", 0, -1]), st.one_of(st.sampled_from(WORDS), numbers(-3, 4))))
def test_segment_word_table(clip, image, prompt, words, template, word):
    EXAMPLES["segment_word_table"] += 1
    segmenter = SuperpixelSegmenter("slic", n_segments=3)
    ok, table = attempt(("image", "prompt", "words", "text_template", "segments"), segment_word_table, image, prompt,
                        clip, segmenter=segmenter, words=words, text_template=template)
    if not ok:
        return
    assert table.values.shape == (table.segments.max() + 1, len(table.words)) and finite(table.values)
    ok, best = attempt("word", table.best_segment, word)
    if ok:
        column = table.words.index(word) if isinstance(word, str) else word
        assert best == int(np.argmax(table.values[:, column]))


@fuzz(40)
@given_args(image=images(max_side=8), texts=mix(st.lists(prompt_texts, max_size=3), st.one_of(prompts, long_prompts)),
       which=st.booleans())
def test_scorers_embed(clip, oclip, image, texts, which):
    EXAMPLES["scorer embeddings"] += 1
    scorer = clip if which else oclip
    ok, embeddings = attempt("image", scorer.embed_images, image)
    if ok:
        n = 1 if isinstance(image, (PIL.Image.Image, np.ndarray)) and np.ndim(image) < 4 else len(image)
        assert embeddings.shape[0] == n and finite(embeddings)
        assert torch.allclose(embeddings.norm(dim=-1), torch.ones(n), atol=1e-4)
    ok, embeddings = attempt("texts", scorer.embed_texts, texts)
    if ok:
        n = 1 if isinstance(texts, str) else len(texts)
        assert embeddings.shape[0] == n and finite(embeddings)
        assert torch.allclose(embeddings.norm(dim=-1), torch.ones(n), atol=1e-4)
    ok, similarity = attempt(("image", "reference_image"), scorer.image_similarity, [np.zeros((4, 4, 3), np.uint8)],
                             image)
    if ok:
        assert similarity.shape == (1,) and finite(similarity) and (np.abs(similarity) <= 1).all()


@fuzz(25)
@given_args(image=images(max_side=8), size=mix(st.sampled_from([None, (8, 8), (4, 6)]),
                                           st.sampled_from([(0, 0), (-1, 4), (1.5, 4), (1, 1), "88", (8,)])))
def test_latent_similarity(pipe, image, size):
    EXAMPLES["LatentSimilarity"] += 1
    scorer = LatentSimilarity(pipe)
    ok, latents = attempt(("image", "size"), scorer.embed_images, image, size=size)
    if ok:
        assert latents.shape[0] == 1 and finite(latents)
    ok, similarity = attempt(("image", "reference_image"), scorer.image_similarity, [np.zeros((8, 8, 3), np.uint8)],
                             image)
    if ok:
        assert similarity.shape == (1,) and finite(similarity) and (np.abs(similarity) <= 1 + 1e-9).all()


@fuzz(80)
@given_args(cosines=mix(st.sampled_from([torch.zeros(2, 3), torch.rand(1, 3) * 2 - 1, np.zeros((2, 3))]),
                   st.sampled_from([torch.zeros(3), torch.full((1, 3), NAN), "x", torch.zeros(2, 2)])),
       texts=mix(st.just(["a", "b", "a"]), word_lists), output=OUTPUTS, logit_scale=real(0.5, 200))
def test_word_scores(cosines, texts, output, logit_scale):
    EXAMPLES["word_scores"] += 1
    ok, scores = attempt(("cosines", "texts", "output", "logit_scale"), word_scores, cosines, texts, output,
                         logit_scale)
    if ok:
        assert scores.shape == torch.as_tensor(cosines).shape and finite(scores)
        if output == "probability":
            assert ((scores >= 0) & (scores <= 1)).all()
            for i, j in itertools.combinations(range(len(texts)), 2):  # a repeated text is one class
                if texts[i] == texts[j]:
                    assert torch.equal(scores[:, i], scores[:, j])


@fuzz(40)
@given_args(batch_size=count(1, 4), template=mix(st.sampled_from(["{}", "a {}"]),
                                            st.sampled_from(["{} {}", "{x}", "}{", None, 3, "no slot"])),
       device=mix(st.sampled_from([None, "cpu", torch.device("cpu")]),
                  st.sampled_from(["nonsense", 3.5, "cuda:x", True, "cuda:7"])),
       dtype=mix(st.sampled_from([None, torch.float32]), st.sampled_from(["float16", np.float32, 5])))
def test_scorer_arguments(batch_size, template, device, dtype):
    EXAMPLES["scorer arguments"] += 1
    model, processor = tiny_clip()
    ok, scorer = attempt(("batch_size", "text_template", "device", "dtype"), CLIPSimilarity, model, processor,
                         batch_size=batch_size, text_template=template, device=device, dtype=dtype)
    if ok:
        assert scorer.captions(["dog"]) == [template.format("dog")] and scorer.batch_size == batch_size


@fuzz(30)
@given_args(image=images(max_side=8),
            prompts_=mix(st.one_of(good_prompts, st.lists(good_prompts, min_size=1, max_size=1)),
                                              st.one_of(prompts, st.lists(prompt_texts, min_size=2, max_size=2))),
       reduction=mix(st.sampled_from(["mean", "none"]), st.sampled_from(["sum", None])), clamp=st.booleans())
def test_clip_score(clip, image, prompts_, reduction, clamp):
    EXAMPLES["clip_score"] += 1
    ok, score = attempt(("image", "prompts", "reduction"), metrics.clip_score, image, prompts_, clip,
                        reduction=reduction, clamp=clamp)
    if ok:
        score = np.asarray(score)
        assert finite(score) and (score >= (0 if clamp else -100)).all() and (score <= 100).all()


@fuzz(30)
@given_args(method=mix(st.sampled_from(["saliency", "integrated_gradients", "smoothgrad", "guided_backprop",
                                        "gradcam"]),
                  st.just("x")),
       layer=count(-2, 1), baseline=mix(st.sampled_from(["background", "black", 0.5]),
                                        st.sampled_from(["white", 1.5, NAN, True, None, torch.zeros(3, 4, 4),
                                                         torch.full((3, 4, 4), NAN), torch.zeros(4, 4)])),
       n_steps=count(1, 4), stdevs=real(0, 0.5), output=OUTPUTS, image=images(max_side=8),
       words=mix(good_word_lists, bad_word_lists))
def test_saliency(clip, method, layer, baseline, n_steps, stdevs, output, image, words):
    EXAMPLES["CLIPSaliency"] += 1
    ok, saliency = attempt(("method", "layer", "baseline", "n_steps", "stdevs", "output"), CLIPSaliency, clip,
                           method=method, layer=layer, baseline=baseline, n_steps=n_steps, nt_samples=2,
                           stdevs=stdevs, output=output)
    if not ok:
        return
    ok, maps = attempt(("image", "words", "baseline"), saliency.attribute, image, words)
    if ok:
        n = 1 if isinstance(words, str) else len(words)
        assert maps.shape == (n, *rgb_size(image)) and finite(maps)
    ok, scores = attempt(("image", "words"), saliency.similarity, image, words)
    if ok:
        assert scores.shape == (1 if isinstance(words, str) else len(words),) and finite(scores)


@fuzz(8)
@given_args(image=images(max_side=6, min_side=1),
       attributions=mix(st.just(np.ones((1, 6, 6))),
                        st.sampled_from([np.full((1, 6, 6), NAN), np.ones((2, 6, 6)), "map", None])),
       words=mix(st.just(["a"]), word_lists), method=mix(st.just("blended_heat_map"), st.sampled_from(["heat_map",
                                                                                                        "bogus"])),
       sign=mix(st.sampled_from(["absolute_value", "all"]), st.just("bogus")), alpha=real(0, 1))
def test_plot_attributions(image, attributions, words, method, sign, alpha):
    import matplotlib.pyplot as plt

    EXAMPLES["plot_attributions"] += 1
    ok, figure = attempt(("image", "attributions", "words", "method", "sign", "alpha_overlay"), plot_attributions,
                         image, attributions, words, method=method, sign=sign, alpha_overlay=alpha)
    if ok:
        assert len(figure.axes) >= 2
        plt.close(figure)


@fuzz(15)
@given_args(data=st.data(), image=images(max_side=6, min_side=1),
       algorithm=mix(st.sampled_from(["auto", "exact", "permutation"]), st.just("bogus")),
       max_evals=mix(st.one_of(st.none(), st.integers(1, 30)), bad_numbers), seed=seeds(), batch_size=count(1, 4),
       prompt=mix(st.sampled_from(["a red", "red red"]), st.sampled_from(["", None, b"red"])))
def test_shap_explain_image(clip, data, image, algorithm, max_evals, seed, batch_size, prompt):
    EXAMPLES["shap.explain_image"] += 1
    segments = data.draw(label_maps(*(rgb_size(image) or (4, 4))))
    ok, explanation = attempt(("image", "segments", "algorithm", "max_evals", "seed", "batch_size", "prompt"),
                              shap_adapters.explain_image, image, prompt, clip, segments=segments,
                              algorithm=algorithm, max_evals=max_evals, seed=seed, batch_size=batch_size,
                              progress=False)
    if ok:
        n = segments.max() + 1
        assert explanation.values.shape == (n, len(prompt.split())) and finite(explanation.values)
        if algorithm in ("auto", "exact"):  # exact Shapley values are efficient
            full = SegmentScorer(image, segments, prompt.split(), clip)(np.ones((1, n)))[0]
            np.testing.assert_allclose(explanation.values.sum(0) + explanation.base_values, full, atol=1e-6)


@fuzz(15)
@given_args(data=st.data(), image=images(max_side=6, min_side=1), num_samples=count(2, 12), kernel_width=real(0.05, 5),
       seed=seeds(), batch_size=count(1, 4))
def test_lime_explain_image(clip, data, image, num_samples, kernel_width, seed, batch_size):
    EXAMPLES["lime.explain_image"] += 1
    segments = data.draw(label_maps(*(rgb_size(image) or (4, 4))))
    ok, explanation = attempt(("image", "segments", "num_samples", "kernel_width", "seed", "batch_size"),
                              lime_adapters.explain_image, image, "a red", clip, segments=segments,
                              num_samples=num_samples, kernel_width=kernel_width, seed=seed, batch_size=batch_size,
                              progress=False)
    if ok:
        weights = lime_adapters.segment_weights(explanation)
        assert weights.shape == (segments.max() + 1, 2) and finite(weights)
        assert lime_adapters.word_weight_maps(explanation).shape == (2, *segments.shape)


@fuzz(80)
@given_args(word=mix(st.sampled_from(["a", "red", "circle", 0, 2, -1]),
                st.one_of(st.sampled_from(["zzz", "", None, b"red"]), numbers(-4, 4))),
       k=mix(st.one_of(st.none(), st.integers(1, 3)), bad_numbers),
       fill=mix(st.sampled_from([0, 128, (1, 2, 3), "background"]), st.sampled_from([300, -1, NAN, "x", None, (1, 2)])),
       other=mix(st.just("the explanation"), st.sampled_from([None, "explanation", np.zeros(3)])), data=st.data())
def test_image_explanation_helpers(lime_image_explanation, shap_image_explanation, picture, halves, word, k, fill,
                                   other, data):
    EXAMPLES["image explanation helpers"] += 1
    ok, top = attempt(("word", "k"), lime_adapters.top_segments, lime_image_explanation, word, k)
    if ok:
        assert len(top) == (2 if k is None else min(k, 2)) and all(0 <= s < 2 and math.isfinite(w) for s, w in top)
        assert [w for _, w in top] == sorted((w for _, w in top), reverse=True)
    other = lime_image_explanation if isinstance(other, str) and other == "the explanation" else other
    ok, weights = attempt("explanation", lime_adapters.segment_weights, other)
    if ok:
        assert weights.shape == (2, 3) and finite(weights)
    ok, maps = attempt("explanation", lime_adapters.word_weight_maps, other)
    if ok:
        assert maps.shape == (3, 16, 16) and finite(maps)
    ok, masker = attempt(("fill", "hide_color"), shap_adapters.SegmentMasker, picture, halves, fill)
    if ok:
        (masked,) = masker(np.array([True, False]), np.ones(2))
        assert masked.shape == (1, 16, 16, 3) and masked.dtype == np.uint8
        assert (masked[0][halves == 0] == picture[halves == 0]).all()
    segments = data.draw(mix(st.just(halves), bad_label_maps(16, 16), 1))
    ok, pixels = attempt(("segments", "explanation", "image"), shap_adapters.image_explanation,
                         shap_image_explanation, None, segments)
    if ok:
        assert pixels.values.shape == (1, 16, 16, 3, 2) and finite(pixels.values)


# ------------------------------------------------------------------------------------------------------ generation
@fuzz(60)
@given_args(seed=count(0, 5), steps=mix(st.one_of(st.none(), st.integers(1, 3)), bad_numbers),
       guidance=mix(st.one_of(st.none(), st.floats(0, 10)), bad_numbers), height=mix(st.sampled_from([None, 8, 16]),
                                                                                     bad_numbers),
       width=mix(st.sampled_from([None, 8, 32]), bad_numbers), batch_size=count(1, 4),
       device=mix(st.sampled_from([None, "cpu"]), st.sampled_from(["nonsense", 3.5, True, "cuda:7"])),
       dtype=mix(st.sampled_from([None, torch.float32]), st.sampled_from(["float32", np.float32])),
       cache_key=mix(st.sampled_from([None, "tiny"]), st.sampled_from(["", 5, b"k"])),
       progress=mix(st.just(False), st.sampled_from(["no", None, 1])), which=st.booleans())
def test_text_to_image_arguments(pipe, seed, steps, guidance, height, width, batch_size, device, dtype, cache_key,
                                 progress, which):
    EXAMPLES["TextToImage arguments"] += 1
    source = pipe if which else tiny_generator
    if not which and (device is not None or dtype is not None):
        device = dtype = None  # device / dtype are for pipelines and modules (a ValueError naming both otherwise)
    ok, generator = attempt(("seed", "num_inference_steps", "guidance_scale", "height", "width", "batch_size",
                             "device", "dtype", "cache_key", "progress"),
                            TextToImage, source, seed=seed, num_inference_steps=steps, guidance_scale=guidance,
                            height=height, width=width, batch_size=batch_size, device=device, dtype=dtype,
                            cache_key=cache_key, progress=progress)
    if ok:
        assert generator.seed == seed and generator.batch_size == batch_size
        assert generator.guidance_scale is None or math.isfinite(generator.guidance_scale)
        if which:
            assert generator.height == (height or 32) and generator.width == (width or 32)


@fuzz(60)
@given_args(prompts_=mix(st.lists(prompt_texts, max_size=3), st.one_of(prompts, st.lists(long_prompts, max_size=1))))
def test_text_to_image_call(prompts_):
    EXAMPLES["TextToImage call"] += 1
    generator = TextToImage(tiny_generator, progress=False)
    ok, images_ = attempt("prompts", generator, prompts_)
    if ok:
        assert len(images_) == len(prompts_) and all(im.mode == "RGB" and im.size == (8, 8) for im in images_)
        assert [np.asarray(im).tolist() for im in images_] == [im.tolist() for im in tiny_generator(prompts_)]


@fuzz(10)
@given_args(prompts_=mix(st.lists(good_prompts, max_size=2), st.one_of(prompts, st.lists(long_prompts, max_size=1))),
       n=count(1, 3))
def test_text_to_image_pipeline_call(pipe, prompts_, n):
    EXAMPLES["TextToImage pipeline call"] += 1
    generator = TextToImage(pipe, num_inference_steps=2, progress=False)
    ok, images_ = attempt("prompt", generator, prompts_)
    if ok:
        assert len(images_) == len(prompts_) and all(im.size == (32, 32) and im.mode == "RGB" for im in images_)
    ok, kwargs = attempt("n", generator.pipeline_kwargs, n)
    if ok:
        assert kwargs["latents"].shape[0] == n and len(kwargs["generator"]) == n


@fuzz(40)
@given_args(cond_dim=mix(st.just(8), st.one_of(bad_numbers, st.integers(1, 16))), z_dim=count(1, 4),
            image_size=mix(st.sampled_from([8, 16]), bad_numbers),
       value_range=mix(st.sampled_from([(-1.0, 1.0), (0, 1)]),
                       st.sampled_from([(1, 1), (1, -1), (NAN, 1), (0, INF), 5, "01", (0, 1, 2)])),
       seed=count(0, 5), prompts_=mix(st.one_of(good_prompts, st.lists(prompt_texts, max_size=2)), prompts),
       noise_generator=mix(st.sampled_from([None, "one", "list"]), st.sampled_from([5, "short"])))
def test_gan_generators(cond_dim, z_dim, image_size, value_range, seed, prompts_, noise_generator):
    EXAMPLES["GAN generators"] += 1
    ok, network = attempt(("cond_dim", "z_dim", "image_size"), AffineGenerator, cond_dim, z_dim=z_dim, channels=4,
                          image_size=image_size)
    if not ok:
        return

    def encoder(texts):
        return torch.stack([torch.full((8,), weight(t)) for t in texts]) if texts else torch.zeros(0, 8)

    ok, generator = attempt(("value_range", "seed"), CLIPConditionedGenerator, network, encoder,
                            value_range=value_range, seed=seed)
    if not ok:
        return
    texts = [prompts_] if isinstance(prompts_, str) or not hasattr(prompts_, "__iter__") else list(prompts_)
    noise = {"one": torch.Generator(), "list": [torch.Generator() for _ in texts], "short": [torch.Generator()] * 5,
             None: None, 5: 5}[noise_generator]
    ok, out = attempt(("prompts", "generator", "text_encoder"), generator, prompts_, generator=noise)
    if ok:
        assert len(out) == len(texts) and all(im.mode == "RGB" and im.size == (image_size,) * 2 for im in out)


@fuzz(40)
@given_args(prompt=short_prompts, reference=mix(st.sampled_from(["image", "text"]), st.sampled_from(["both", None])),
       chunk_size=count(1, 4),
       sub_prompts=mix(st.lists(st.sampled_from(["", "a", "red", "a red", "blue"]), max_size=3), prompts))
def test_prompt_score(clip, prompt, reference, chunk_size, sub_prompts):
    EXAMPLES["PromptScore"] += 1
    generator = TextToImage(tiny_generator, progress=False)
    ok, f = attempt(("prompt", "reference", "chunk_size"), PromptScore, generator, clip, prompt, reference=reference,
                    chunk_size=chunk_size)
    if not ok:
        return
    ok, scores = attempt("prompts", f, sub_prompts)
    if ok:
        assert scores.shape == (len(sub_prompts),) and finite(scores) and (np.abs(scores) <= 1).all()
        if reference == "image":
            assert f([f.prompt])[0] == pytest.approx(1.0, abs=1e-5)  # the full prompt's image against itself


# ------------------------------------------------------------------------------------------------------ DAAM
@fuzz(30)
@given_args(prompts_=mix(st.one_of(good_prompts, st.lists(st.sampled_from(["a red", "a blue circle"]), min_size=1,
                                                     max_size=2)), prompts),
       words=WORD_SPECS, steps=count(1, 2), guidance=mix(st.one_of(st.none(), st.floats(0, 8)), bad_numbers),
       size=mix(st.sampled_from([None, 16, 24]), bad_numbers),
       step_indices=mix(st.sampled_from([None, 0, [0, 1]]), st.sampled_from([[5], [-1], 1.5, "0", [True]])),
       layers=mix(st.sampled_from([None, "up_blocks", ["down_blocks.1"]]),
                  st.sampled_from(["nowhere", [1], [], b"up"])),
       resolutions=mix(st.sampled_from([None, 8, [(8, 8)]]), st.sampled_from([3, [1.5], "8", [], [(8, 8, 1)]])),
       per_prompt=count(1, 2), noise=mix(st.sampled_from([None, "one"]), st.sampled_from(["list", "wrong", 5])))
def test_daam_explain(pipe, prompts_, words, steps, guidance, size, step_indices, layers, resolutions, per_prompt,
                      noise):
    EXAMPLES["DAAM.explain"] += 1
    noise = {None: None, 5: 5, "one": torch.Generator().manual_seed(0),
             "list": [torch.Generator().manual_seed(0) for _ in range(2)], "wrong": ["g"]}[noise]
    if isinstance(size, numbers_.Integral) and size > 64:
        return  # keep generation tiny
    ok, result = attempt(("prompt", "words", "num_inference_steps", "guidance_scale", "height", "width", "steps",
                          "layers", "resolutions", "num_images_per_prompt", "generator"),
                         DAAM(pipe).explain, prompts_, words=words, num_inference_steps=steps,
                         guidance_scale=guidance, height=size, width=size, steps=step_indices, layers=layers,
                         resolutions=resolutions, num_images_per_prompt=per_prompt, generator=noise)
    if ok:
        n_prompts = 1 if isinstance(prompts_, str) else len(prompts_)
        assert len(result) == n_prompts * per_prompt
        for maps, labels, picture in zip(result.heatmaps, result.words, result.images):
            assert maps.shape == (len(labels), size or 32, size or 32) and finite(maps) and (maps >= -1e-3).all()
            assert picture.size == (size or 32, size or 32)


@fuzz(120)
@given_args(word=mix(st.sampled_from(["a", "red", "circle", 0, -1, 2]),
                st.one_of(st.sampled_from(["square", "zzz", "", None, b"red"]), numbers(-5, 5))),
       image=mix(st.sampled_from([0, 1, -1]), numbers(-3, 3)), tau=real(0, 1),
       normalization=mix(st.sampled_from(["minmax", "max"]), st.sampled_from(["bogus", None])),
       words=mix(st.one_of(st.none(), st.lists(st.sampled_from([0, 1, 2, -1]), min_size=1, max_size=3)),
                 st.one_of(word_lists, st.lists(st.integers(-4, 7), max_size=3))))
def test_daam_result(daam_result, word, image, tau, normalization, words):
    EXAMPLES["DAAMResult"] += 1
    ok, heat = attempt(("word", "image"), daam_result.heatmap, word, image)
    if ok:
        assert heat.shape == (32, 32) and finite(heat)
    ok, masks = attempt(("tau", "normalization"), daam_result.threshold, tau, normalization)
    if ok:
        assert [m.shape for m in masks] == [h.shape for h in daam_result.heatmaps] and masks[0].dtype == torch.bool
    ok, segmenter = attempt(("result", "image", "words", "word"), DAAMKMeansSegmenter.from_daam, daam_result, image,
                            words)
    if ok:
        assert segmenter.heat_maps.ndim == 3 and finite(segmenter.heat_maps)
        assert len(segmenter.heat_maps) == (len(words) if words is not None else len(daam_result.words[image]))
    stacked = torch.stack([daam_result.heatmaps[0], daam_result.heatmaps[0]])
    ok, segmenter = attempt(("image", "words"), DAAMKMeansSegmenter.from_daam, stacked, image, words)
    if ok:
        assert segmenter.heat_maps.ndim == 3


@fuzz(6)
@given_args(image=mix(st.sampled_from([0, 1]), numbers(-2, 2)),
            words=mix(st.just(["red"]), st.one_of(st.none(), word_lists)),
       alpha=real(0, 1))
def test_daam_plot(daam_result, image, words, alpha):
    import matplotlib.pyplot as plt

    EXAMPLES["DAAMResult.plot"] += 1
    ok, figure = attempt(("image", "words", "word", "alpha"), daam_result.plot, image, words, alpha=alpha)
    if ok:
        assert len(figure.axes) == 1 + (len(daam_result.words[image]) if words is None else len(words))
        plt.close(figure)


@fuzz(80)
@given_args(maps=mix(st.sampled_from([torch.rand(2, 4, 4), np.random.default_rng(1).random((3, 3)), torch.ones(2, 2),
                                 np.array([[True, False]]), [[0.1, 0.9]]]),
                st.sampled_from([torch.zeros(0, 0), torch.full((2, 3, 3), NAN), torch.zeros(3), "maps", None,
                                 torch.tensor([[INF, 0.0]])])),
       tau=real(0, 1), normalization=mix(st.sampled_from(["minmax", "max"]), st.just("bogus")))
def test_threshold_maps(maps, tau, normalization):
    EXAMPLES["threshold_maps"] += 1
    ok, masks = attempt(("maps", "tau", "normalization"), threshold_maps, maps, tau, normalization)
    if ok:
        assert masks.dtype == torch.bool and tuple(masks.shape) == tuple(np.shape(maps))


@fuzz(20)
@given_args(spec=st.sampled_from(["", "  ", "open_clip:", "open_clip::", "open_clip:ViT-B-32", "open_clip:x:",
                             "open_clip:hf-hub:", None, 5, b"openai/clip", ["a"]]),
       device=st.sampled_from(["nonsense", 3.5, True, "cuda:x", "cuda:7"]),
       dtype=st.sampled_from(["float16", 5, np.float32]))
def test_loaders_refuse_bad_arguments(spec, device, dtype):
    from captum_diffusion.shapes_world import load_shapes_world

    EXAMPLES["loaders"] += 1
    ok, _ = attempt("spec", load_scorer, spec)
    assert not ok
    ok, _ = attempt(("device", "dtype"), load_shapes_world, device=device)
    assert not ok
    ok, _ = attempt(("device", "dtype"), load_shapes_world, dtype=dtype)
    assert not ok


# ------------------------------------------------------------------------------------------------------ regressions
# One plain test per bad-input bug the suite found: (call, exception type, a word the message must contain).
def _daam_regressions(pipe, daam_result):
    daam = DAAM(pipe)
    return [
        ("NaN guidance silently ignored", lambda: daam.explain("a red", num_inference_steps=2, guidance_scale=NAN),
         ValueError, "guidance_scale"),
        ("inf guidance gave NaN heat maps", lambda: daam.explain("a red", num_inference_steps=2, guidance_scale=INF),
         ValueError, "guidance_scale"),
        ("negative guidance accepted", lambda: daam.explain("a red", num_inference_steps=2, guidance_scale=-3.0),
         ValueError, "guidance_scale"),
        ("guidance 1e21: the latents overflowed into NaN heat maps",
         lambda: daam.explain("a red", num_inference_steps=2, guidance_scale=1e21), ValueError, "guidance_scale"),
        ("0 steps: ZeroDivisionError", lambda: daam.explain("a red", num_inference_steps=0), ValueError,
         "num_inference_steps"),
        ("2.5 steps: IndexError", lambda: daam.explain("a red", num_inference_steps=2.5), ValueError,
         "num_inference_steps"),
        ("layers=[1]: AttributeError", lambda: daam.explain("a red", num_inference_steps=1, layers=[1]), TypeError,
         "layers"),
        ("resolutions=[1.5]: not iterable", lambda: daam.explain("a red", num_inference_steps=1, resolutions=[1.5]),
         TypeError, "resolutions"),
        ("generator=5: AttributeError", lambda: daam.explain("a red", num_inference_steps=1, generator=5), TypeError,
         "generator"),
        ("words=b'red': byte values as word indices", lambda: daam.explain("a red", words=b"red"), TypeError,
         "words"),
        ("steps=1.5: not iterable", lambda: daam.explain("a red", num_inference_steps=1, steps=1.5), TypeError,
         "steps"),
        ("heatmap(image=99): IndexError", lambda: daam_result.heatmap("red", image=99), ValueError, "image"),
        ("heatmap(image=1.5): TypeError from list", lambda: daam_result.heatmap("red", image=1.5), ValueError,
         "image"),
        ("plot(image=0.0): list index", lambda: daam_result.plot(0.0), ValueError, "image"),
        ("from_daam(image=9): IndexError", lambda: DAAMKMeansSegmenter.from_daam(daam_result, 9), ValueError,
         "image"),
        ("from_daam(words='red'): split into characters", lambda: DAAMKMeansSegmenter.from_daam(daam_result, 0, "red"),
         TypeError, "words"),
        ("threshold_maps(array): numpy flatten", lambda: threshold_maps(np.zeros((3, 4, 4))), None, None),
        ("threshold_maps(0x0): IndexError", lambda: threshold_maps(torch.zeros(0, 0)), ValueError, "maps"),
        ("threshold_maps(NaN): all-false masks", lambda: threshold_maps(torch.full((2, 3, 3), NAN)), ValueError,
         "maps"),
    ]


def test_daam_regressions(pipe, daam_result):
    for description, call, error, word in _daam_regressions(pipe, daam_result):
        if error is None:
            call()  # now accepted
            continue
        with pytest.raises(error, match=word):
            call()
        CALLS["regressions"] += 1


def test_words_regressions(tok):
    cases = [
        (lambda: subprompt("abc", [1, 0, 1]), TypeError, "words"),  # was 'a c': a str split into characters
        (lambda: subprompt(["a", "b"], [2, NAN]), ValueError, "mask"),  # was 'a b'
        (lambda: subprompt(["a"], None), ValueError, "mask"),  # was: object of type 'NoneType' has no len()
        (lambda: as_words(None), TypeError, "prompt"),  # was: 'NoneType' object is not iterable
        (lambda: as_words(b"ab"), TypeError, "prompt"),  # was: each word must be ..., got 97
        (lambda: word_key(5), TypeError, "word"),  # was AttributeError
        (lambda: word_labels("abc"), TypeError, "words"),  # was ['a', 'b', 'c']
        (lambda: evaluate_prompts(additive_f, "ab"), TypeError, "prompts"),  # was: scores of 'a' and 'b'
        (lambda: evaluate_prompts(5, ["ab"]), TypeError, "f"),  # was: 'int' object is not callable
        (lambda: evaluate_prompts(additive_f, ["ab"], memo=[1]), TypeError, "memo"),  # was AttributeError
        (lambda: evaluate_masks(additive_f, "abc", [[1, 0, 1]]), TypeError, "words"),  # was f('a c')
        (lambda: as_mask_matrix([[1, 0], [1]], 2), TypeError, "masks"),  # was numpy's inhomogeneous-shape error
        (lambda: as_mask_matrix([[1, 0]], 2.0), ValueError, "n_words"),  # was accepted
        (lambda: shapley_from_values(np.array([[0], [1]], bool), np.array([1.0])), ValueError, "values"),  # IndexError
        (lambda: shapley_from_values(np.array([0, 1], bool), np.array([1.0, 2.0])), ValueError, "masks"),  # unpack
        (lambda: shapley_from_values(np.array([[0], [1]], bool), np.array([1.0, NAN])), ValueError, "values"),  # NaN
        (lambda: resolve_words("a red", tok, b"red"), TypeError, "words"),  # was: word index 114 out of range
        (lambda: resolve_words("a red", None), TypeError, "tokenizer"),  # was: 'NoneType' object is not callable
        (lambda: WordAttribution(additive_f, "feature_ablation", progress=False).attribute(
            "a red circle", feature_mask=torch.tensor([[0, 1]])), ValueError, "feature_mask"),  # RuntimeError
        (lambda: WordAttribution(additive_f, "shapley_sampling", progress=False).attribute(
            "a red circle", feature_mask=torch.tensor([[0, 1]])), ValueError, "feature_mask"),  # AssertionError
        (lambda: WordAttribution(additive_f, "lime", progress=False).attribute(None), TypeError, "prompt"),
        (lambda: WordAttribution(additive_f, "kernel_shap", progress=False).attribute("a red", n_samples=2),
         ValueError, "n_samples"),  # was one value spread evenly over the two words
        (lambda: evaluate_masks(additive_f, ["", "a"], [[1, 1]]), ValueError, "words"),  # was f(' a')
        (lambda: word_token_positions("0\x1f", tok), ValueError, "prompt"),  # said the tokenizer merges tokens
    ]
    for call, error, word in cases:
        with pytest.raises(error, match=word):
            call()
        CALLS["regressions"] += 1


def test_explainer_regressions(clip, picture, halves, lime_image_explanation, lime_text_explanation):
    game = WordGame(additive_f, "a b")
    cases = [
        (lambda: shap_adapters.explain_prompt("a red circle on left", additive_f, "partition", 2, progress=False),
         ValueError, "max_evals"),  # was: one value spread evenly over the five words
        (lambda: shap_adapters.explain_prompt("a red circle", additive_f, "permutation", 3, progress=False),
         ValueError, "max_evals"),
        (lambda: shap_adapters.explain_image(picture, "a red", clip, segments=halves, algorithm="permutation",
                                             max_evals=3, progress=False), ValueError, "max_evals"),
        (lambda: shap_adapters.explain_prompt("a red", additive_f, "permutation", 50, seed=-1, progress=False),
         ValueError, "seed"),  # numpy's 'Seed must be between 0 and 2**32 - 1'
        (lambda: shap_adapters.explain_prompt("a red", additive_f, "permutation", 50, seed=1.5, progress=False),
         ValueError, "seed"),  # numpy's cast error
        (lambda: shap_adapters.WordPartitionMasker(["a", "b", "c"], np.full((2, 4), NAN)), ValueError, "clustering"),
        (lambda: shap_adapters.word_explanation([NAN, 1.0], "a b"), ValueError, "values"),  # NaN in the output
        (lambda: shap_adapters.word_explanation([0.0, 1.0], "a b", NAN), ValueError, "base_value"),
        (lambda: shap_adapters.word_explanation(["x", "y"], "a b"), TypeError, "values"),
        (lambda: shap_adapters.SegmentMasker(picture, halves, 300), ValueError, "fill"),  # OverflowError
        (lambda: shap_adapters.SegmentMasker(picture, halves, NAN), ValueError, "fill"),
        (lambda: shap_adapters.image_explanation(None), TypeError, "explanation"),
        (lambda: lime_adapters.explain_prompt("a red", additive_f, 20, seed=-1), ValueError, "seed"),
        (lambda: lime_adapters.explain_prompt("a red", additive_f, 20, seed="x"), ValueError, "seed"),
        (lambda: lime_adapters.word_weights(lime_text_explanation, False), TypeError, "label"),  # was label 0
        (lambda: lime_adapters.word_weights(None), TypeError, "explanation"),  # AttributeError
        (lambda: lime_adapters.WordClassifierFn(None), TypeError, "game"),  # AttributeError
        (lambda: lime_adapters.WordClassifierFn(game, mask_string=""), ValueError, "mask_string"),
        (lambda: lime_adapters.WordClassifierFn(game)("a b"), TypeError, "texts"),
        (lambda: lime_adapters.word_explainer(kernel_width=-1), ValueError, "kernel_width"),  # accepted before
        (lambda: lime_adapters.explain_image(picture, "a red", clip, segments=halves, seed=1.5, num_samples=4,
                                             progress=False), ValueError, "seed"),
        (lambda: lime_adapters.top_segments(lime_image_explanation, 99), ValueError, "word"),  # IndexError
        (lambda: lime_adapters.top_segments(lime_image_explanation, 1.5), ValueError, "word"),  # was int(1.5) = 1
        (lambda: lime_adapters.top_segments(lime_image_explanation, 0, k=-1), ValueError, "k"),  # was k-1 segments
        (lambda: lime_adapters.segment_weights(None), TypeError, "explanation"),  # AttributeError
        (lambda: lime_adapters.explain_prompt("a red circle on the left", additive_f, 3), ValueError,
         "num_samples"),  # a regression over 6 words from 3 samples
        (lambda: lime_adapters.explain_image(picture, "a red", clip, segments=halves, num_samples=2, progress=False),
         ValueError, "num_samples"),
    ]
    for call, error, word in cases:
        with pytest.raises(error, match=word):
            call()
        CALLS["regressions"] += 1


def test_metric_regressions():
    np.testing.assert_allclose(metrics.normalize_scores([1e308, 1e308]), [0.5, 0.5])
    assert metrics.check_efficiency([1e308, 1e308], full_value=1e308, base_value=-1e308).gap == 0.0  # was NaN
    cases = [
        (lambda: metrics.check_efficiency([1.0, 2.0], full_value=NAN, base_value=0.0), ValueError, "full_value"),
        (lambda: metrics.check_efficiency([1.0, 2.0], full_value=5, base_value=0.0, atol=INF), ValueError, "atol"),
        (lambda: metrics.check_symmetry([0.5, 0.5], additive_f, "a a", game_atol=NAN), ValueError, "game_atol"),
        (lambda: metrics.check_symmetry([0.5, 0.5], additive_f, "a a", game_atol=-1), ValueError, "game_atol"),
        (lambda: metrics.check_symmetry([0.5, 0.5], additive_f, "a a", pairs=[(0, 1.5)]), ValueError, "pairs"),
        (lambda: metrics.check_symmetry([0.5, 0.5], additive_f, "a a", pairs=[(0,)]), ValueError, "pairs"),
        (lambda: metrics.check_symmetry([0.5, 0.5], additive_f, "a a", atol="x"), ValueError, "atol"),
        (lambda: metrics.miou(None, None), TypeError, "predictions"),
        (lambda: metrics.clip_score(np.zeros((4, 4, 3), np.uint8), None, None), TypeError, "scorer"),
        (lambda: metrics.normalize_scores([1e308, 1e308]), None, None),  # was [0, 0] (the sum overflowed to inf)
    ]
    for call, error, word in cases:
        if error is None:
            call()
            continue
        with pytest.raises(error, match=word):
            call()
        CALLS["regressions"] += 1


def test_image_side_regressions(clip, pipe, picture, halves):
    from captum_diffusion.shapes_world import analyse, render

    white = np.full((64, 64, 3), 255, np.uint8)
    white[10:30, 10:30] = (255, 0, 0)
    # a bool image was read as levels 0..1 of 0..255 (all black: nothing found); now as False = black, True = white
    assert [o.colour for o in analyse(white > 0)] == [o.colour for o in analyse(white)] == ["red"]
    table = segment_word_table(picture, "a red", clip, segments=halves)
    cases = [
        (lambda: check_label_map(np.zeros((0, 0), int), (0, 0)), ValueError, "segments"),  # IndexError
        (lambda: check_label_map(halves, None), TypeError, "image_shape"),  # not subscriptable
        (lambda: check_label_map(halves, (16, 16), min_segments=1.5), ValueError, "min_segments"),
        (lambda: masks_to_label_map([{"segmentation": np.ones((2, 2), bool)}], (2, 2)), ValueError, "masks"),  # KeyErr
        (lambda: masks_to_label_map([], (0, 0)), ValueError, "shape"),  # was an empty label map
        (lambda: masks_to_label_map([], None), TypeError, "shape"),
        (lambda: masks_to_label_map([SAM_RECORD], (4, 4), min_area=NAN), ValueError, "min_area"),  # dropped all masks
        (lambda: masks_to_label_map(None, (2, 2)), TypeError, "masks"),
        (lambda: SuperpixelSegmenter(n_segments=0), ValueError, "n_segments"),  # ZeroDivisionError when called
        (lambda: SuperpixelSegmenter(bogus=1), TypeError, "bogus"),  # raised by skimage only when called
        (lambda: DAAMKMeansSegmenter(torch.rand(2, 4, 4), spatial_weight=NAN), ValueError, "spatial_weight"),
        (lambda: DAAMKMeansSegmenter(torch.rand(2, 4, 4), seed=-1), ValueError, "seed"),  # sklearn's error
        (lambda: DAAMKMeansSegmenter(torch.full((2, 4, 4), NAN)), ValueError, "heat_maps"),  # sklearn's error
        (lambda: DAAMKMeansSegmenter(torch.rand(2, 0, 3)), ValueError, "heat_maps"),  # torch's interpolate error
        (lambda: DAAMKMeansSegmenter(np.array([[["a"]]])), TypeError, "heat_maps"),
        (lambda: SegmentScorer(picture, halves, "red", clip), TypeError, "texts"),  # was the texts 'r', 'e', 'd'
        (lambda: SegmentScorer(picture, halves, ["red"], clip)(np.array([[2, NAN]])), ValueError, "keep"),
        (lambda: SegmentScorer(picture, halves, ["red"], clip).score_images(np.full((1, 16, 16, 3), 200.0)),
         ValueError, "images"),  # was cast to uint8 without a word
        (lambda: fill_color(picture, NAN), ValueError, "hide_color"),  # was black
        (lambda: segment_word_table(picture, "a red", clip, segments=halves, words=b"red"), TypeError, "words"),
        (lambda: table.best_segment(99), ValueError, "word"),  # IndexError
        (lambda: table.best_segment("zz"), ValueError, "word"),  # list.index's message
        (lambda: table.best_segment(1.5), ValueError, "word"),  # was int(1.5)
        (lambda: segment_word_table(picture, "a red", clip, segmenter=lambda image: np.zeros((3, 3), int)),
         ValueError, "segmenter"),
        (lambda: word_scores(np.zeros((1, 2)), ["a", "b"], "probability"), None, None),  # numpy now accepted
        (lambda: word_scores(torch.zeros(1, 2), ["a", "b"], "probability", NAN), ValueError, "logit_scale"),  # NaN out
        (lambda: word_scores(torch.zeros(1, 2), ["a"], "probability"), ValueError, "cosines"),  # silently 1 column
        (lambda: word_scores(torch.zeros(1, 2), "ab", "probability"), TypeError, "texts"),  # characters
        (lambda: CLIPSimilarity(*tiny_clip(), device="nonsense"), ValueError, "device"),  # RuntimeError
        (lambda: CLIPSimilarity(*tiny_clip(), dtype="float16"), TypeError, "dtype"),
        (lambda: LatentSimilarity(pipe).embed_images([picture], size=(1.5, 4)), ValueError, "size"),
        (lambda: LatentSimilarity(pipe).embed_images([np.zeros((1, 1, 3), np.uint8)]), ValueError, "images"),
        (lambda: metrics.clip_score(picture, None, clip), TypeError, "prompts"),  # 'NoneType' is not iterable
        (lambda: metrics.clip_score(picture, b"abc", clip), TypeError, "prompts"),  # was 3 prompts 97, 98, 99
        (lambda: CLIPSaliency(clip, method="integrated_gradients", baseline=NAN), ValueError, "baseline"),
        (lambda: CLIPSaliency(clip, method="integrated_gradients", baseline=torch.full((3, 16, 16), NAN)),
         ValueError, "baseline"),  # was NaN maps
        (lambda: plot_attributions(picture, torch.zeros(3, 16, 16), "abc"), ValueError, "attributions"),  # 3 words
        (lambda: plot_attributions(picture, torch.ones(1, 16, 16), ["a"], sign="bogus"), ValueError, "sign"),  # KeyErr
        (lambda: plot_attributions(picture, torch.full((1, 16, 16), NAN), ["a"]), ValueError, "attributions"),
        (lambda: word_scores(torch.full((1, 2), NAN), ["a", "b"], "probability"), ValueError, "cosines"),
        (lambda: analyse(np.full((8, 8, 3), NAN)), ValueError, "image"),  # NaN pixels were compared silently
        (lambda: render("a red circle", -1), ValueError, "generator"),  # numpy's 'expected non-negative integer'
        (lambda: analyse(picture, min_area=NAN), ValueError, "min_area"),  # every object dropped
        (lambda: SAMSegmenter(checkpoint=5), TypeError, "checkpoint"),  # pathlib's 'expected str, bytes or ...'
        (lambda: SAMSegmenter(checkpoint="sam.pth", device="nonsense"), ValueError, "device"),
    ]
    for call, error, word in cases:
        if error is None:
            call()
            continue
        with pytest.raises(error, match=word):
            call()
        CALLS["regressions"] += 1


def test_generation_regressions(pipe, clip):
    network = AffineGenerator(8, z_dim=4, channels=4, image_size=8)

    def encoder(texts):
        return torch.ones(len(texts), 8)

    cases = [
        (lambda: TextToImage(tiny_generator, cache_key=5), TypeError, "cache_key"),
        (lambda: TextToImage(pipe, guidance_scale=1e21), ValueError, "guidance_scale"),  # black images
        (lambda: TextToImage(pipe, device="nonsense"), ValueError, "device"),  # RuntimeError
        (lambda: TextToImage(pipe, dtype="float16"), TypeError, "dtype"),  # torch's to() error
        (lambda: TextToImage(tiny_generator, progress="no"), TypeError, "progress"),  # was True
        (lambda: AffineGenerator(8, image_size=NAN), ValueError, "image_size"),  # cannot convert NaN
        (lambda: AffineGenerator(8, image_size=0), ValueError, "image_size"),  # math domain error
        (lambda: AffineGenerator(0), ValueError, "cond_dim"),  # was accepted
        (lambda: AffineGenerator(8, channels=1.5), ValueError, "channels"),  # torch.empty's error
        (lambda: CLIPConditionedGenerator(network, encoder, value_range=(1, 1)), ValueError, "value_range"),  # black
        (lambda: CLIPConditionedGenerator(network, encoder, value_range=(NAN, 1)), ValueError, "value_range"),
        (lambda: CLIPConditionedGenerator(network, encoder, value_range=5), ValueError, "value_range"),
        (lambda: CLIPConditionedGenerator(network, encoder)(["a"], generator=5), TypeError, "generator"),
        (lambda: CLIPConditionedGenerator(lambda z, s: torch.full((1, 3, 8, 8), NAN), encoder, z_dim=4)(["a"]),
         ValueError, "generator"),  # was a black image
        (lambda: PromptScore(TextToImage(tiny_generator, progress=False), clip, "a red")(None), TypeError,
         "prompts"),  # 'NoneType' object is not iterable
        (lambda: CLIPConditionedGenerator(AffineGenerator(2, z_dim=4, channels=4, image_size=8), encoder)(["a"]),
         ValueError, "text_encoder"),  # torch's 'mat1 and mat2 shapes cannot be multiplied'
        (lambda: CLIPConditionedGenerator(network, encoder, z_dim=5), ValueError, "z_dim"),  # the same, at call
    ]
    for call, error, word in cases:
        with pytest.raises(error, match=word):
            call()
        CALLS["regressions"] += 1


def test_zz_cases_tried(capsys, request):
    """Prints how many cases hypothesis tried (examples) and how many public calls they made (per function with
    ``-v``)."""
    with capsys.disabled():
        print(f"\nproperty suite: {sum(EXAMPLES.values())} hypothesis examples over {len(EXAMPLES)} properties, "
              f"{sum(CALLS.values())} public calls, {sum(ACCEPTED.values())} of them returned a checked result "
              f"({CALLS['regressions']} regression checks)")
        if request.config.getoption("verbose") > 0:
            for label, n in sorted(CALLS.items()):
                print(f"  {label}: {n} calls, {ACCEPTED[label]} returned")
    if EXAMPLES:  # the whole file ran (not a single test picked with -k)
        assert sum(CALLS.values()) >= sum(EXAMPLES.values())
