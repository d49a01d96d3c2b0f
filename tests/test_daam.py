"""DAAM on small random-weight SD 1.x / 2.x / XL pipelines (exact values against an independent computation)
and on the trained ShapesWorld model (meaning: a shape word's map covers its object)."""
import math
import types
from functools import lru_cache

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from captum.attr import Attribution

from captum_diffusion.attention.daam import DAAM, DAAMResult, threshold_maps
from captum_diffusion.generation.settings import GenerationSettings
from captum_diffusion.protocols import AttentionMethod
from captum_diffusion.testing import tiny_stable_diffusion, tiny_tokenizer
from captum_diffusion.words import word_labels
from captum_diffusion.words.attribution import WordAttribution
from captum_diffusion.words.tokens import resolve_words, word_token_positions

LAYOUTS = ("sd1", "sd2", "sdxl")
STEPS = 2


@lru_cache(maxsize=None)
def _pipe(layout):
    return tiny_stable_diffusion(layout, seed=0)


def _gen(seed, n=1):
    gens = [torch.Generator().manual_seed(seed + i) for i in range(n)]
    return gens[0] if n == 1 else gens


# ------------------------------------------------------------------ the independent reference computation

def reference_maps(pipe, positions, *, prompt, height, width, guidance_scale, seed, steps=None, uncond=False,
                   negative_prompt=None):
    """DAAM maps of one image computed without DAAM: record queries and keys of every cross-attention layer
    with plain forward hooks on to_q / to_k during an untraced generation, recompute softmax(QK^T * scale)
    per head, upsample every head's map bicubically to the image and sum heads, layers and steps."""
    unet = pipe.unet
    records, handles, state = [], [], {"step": -1}
    for name, module in unet.named_modules():
        if getattr(module, "is_cross_attention", False):
            entry = {"attn": module}
            handles.append(module.to_q.register_forward_hook(lambda m, i, o, e=entry: e.__setitem__("q", o)))
            handles.append(module.to_k.register_forward_hook(
                lambda m, i, o, e=entry: records.append((state["step"], e["attn"], e["q"], o))))
    handles.append(unet.register_forward_pre_hook(lambda m, a: state.__setitem__("step", state["step"] + 1)))
    try:
        pipe(prompt, height=height, width=width, num_inference_steps=STEPS, guidance_scale=guidance_scale,
             generator=_gen(seed), negative_prompt=negative_prompt, output_type="np")
    finally:
        for h in handles:
            h.remove()
    guided = guidance_scale > 1
    latent = (height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    total = torch.zeros(len(positions), height, width, dtype=torch.float64)
    for step, attn, q, k in records:
        if steps is not None and step not in steps:
            continue
        row = (0 if uncond else 1) if guided else 0
        heads = attn.heads
        q = q[row].reshape(q.shape[1], heads, -1).transpose(0, 1).double()  # (heads, hw, d)
        k = k[row].reshape(k.shape[1], heads, -1).transpose(0, 1).double()  # (heads, tokens, d)
        probs = torch.softmax(q @ k.transpose(1, 2) * attn.scale, dim=-1)  # (heads, hw, tokens)
        hw = probs.shape[1]
        level = next(i for i in range(6) if math.ceil(latent[0] / 2 ** i) * math.ceil(latent[1] / 2 ** i) == hw)
        h, w = math.ceil(latent[0] / 2 ** level), math.ceil(latent[1] / 2 ** level)
        for head in range(heads):
            grid = torch.stack([probs[head][:, list(p)].sum(-1) for p in positions]).reshape(1, -1, h, w)
            total += F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)[0]
    return total.float()


def _assert_maps_close(actual, expected):
    scale = expected.abs().max()
    assert scale > 0
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4 * float(scale))


# ------------------------------------------------------------------ exactness on SD 1.x / 2.x / XL layouts

@pytest.mark.parametrize("layout", LAYOUTS)
def test_traced_image_equals_untraced_and_processors_come_back(layout):
    pipe = _pipe(layout)
    daam = DAAM(pipe)
    before = dict(pipe.unet.attn_processors)
    kwargs = dict(num_inference_steps=STEPS, guidance_scale=7.5, height=32, width=32, output_type="np")
    plain = pipe("a red circle", generator=_gen(0), **kwargs).images
    with daam.tracing(1, 32, 32) as trace:
        traced = pipe("a red circle", generator=_gen(0), **kwargs).images
    assert np.abs(traced - plain).max() <= 1e-5
    assert trace.n_traced == STEPS * len(daam.attention_layers)
    assert all(pipe.unet.attn_processors[k] is p for k, p in before.items())
    assert not pipe.unet._forward_pre_hooks


@pytest.mark.parametrize("layout,guidance,size", [("sd1", 7.5, (32, 48)), ("sd2", 1.0, (32, 32)),
                                                   ("sdxl", 7.5, (48, 32)), ("sdxl", 1.0, (32, 48))])
def test_heatmaps_equal_independent_computation(layout, guidance, size):
    pipe = _pipe(layout)
    prompt = "a red circle and a hotdog"
    height, width = size
    result = DAAM(pipe).explain(prompt, generator=_gen(3), num_inference_steps=STEPS, guidance_scale=guidance,
                                height=height, width=width)
    targets = resolve_words(prompt, pipe.tokenizer)
    expected = reference_maps(pipe, [t.positions for t in targets], prompt=prompt, height=height, width=width,
                              guidance_scale=guidance, seed=3)
    assert result.heatmaps[0].shape == (len(targets), height, width)
    assert result.images[0].size == (width, height)
    assert result.words[0] == ["a#0", "red", "circle", "and", "a#1", "hotdog"]
    _assert_maps_close(result.heatmaps[0], expected)


def test_negative_prompt_maps_equal_independent_computation_on_the_unconditional_half():
    pipe = _pipe("sd1")
    result = DAAM(pipe).explain("a red circle", negative_prompt="blue square", negative_maps=True,
                                generator=_gen(4), num_inference_steps=STEPS, guidance_scale=5.0, height=32, width=32)
    negative = resolve_words("blue square", pipe.tokenizer)
    expected = reference_maps(pipe, [t.positions for t in negative], prompt="a red circle", height=32, width=32,
                              guidance_scale=5.0, seed=4, uncond=True, negative_prompt="blue square")
    assert result.negative_words == [["blue", "square"]]
    _assert_maps_close(result.negative_heatmaps[0], expected)


def test_chosen_steps_equal_independent_computation_and_split_the_total():
    pipe = _pipe("sd2")
    daam = DAAM(pipe)
    common = dict(num_inference_steps=STEPS, guidance_scale=7.5, height=32, width=32, words=["circle"])
    early = daam.explain("a red circle", generator=_gen(5), steps=[0], **common).heatmaps[0]
    late = daam.explain("a red circle", generator=_gen(5), steps=[1], **common).heatmaps[0]
    total = daam.explain("a red circle", generator=_gen(5), **common).heatmaps[0]
    positions = [resolve_words("a red circle", pipe.tokenizer, ["circle"])[0].positions]
    _assert_maps_close(early, reference_maps(pipe, positions, prompt="a red circle", height=32, width=32,
                                             guidance_scale=7.5, seed=5, steps={0}))
    _assert_maps_close(early + late, total)
    assert not torch.allclose(early / early.sum(), late / late.sum(), rtol=1e-3)  # attention moves over time


def test_layers_and_resolutions_partition_the_total():
    pipe = _pipe("sdxl")
    daam = DAAM(pipe)
    common = dict(generator=None, num_inference_steps=1, height=32, width=32, words=["red", "circle"])
    runs = {}
    for key, option in {"all": {}, "down": {"layers": ["down_blocks"]}, "mid": {"layers": "mid_block"},
                        "up": {"layers": ["up_blocks.0", "up_blocks.1"]}, "r16": {"resolutions": [16]},
                        "r8": {"resolutions": [(8, 8)]}}.items():
        common["generator"] = _gen(6)
        runs[key] = daam.explain("a red circle", **common, **option).heatmaps[0]
    _assert_maps_close(runs["down"] + runs["mid"] + runs["up"], runs["all"])
    _assert_maps_close(runs["r16"] + runs["r8"], runs["all"])
    assert runs["r8"].abs().sum() > 0 and runs["r16"].abs().sum() > 0


def test_batch_of_prompts_and_images_per_prompt_matches_single_generations():
    pipe = _pipe("sd1")
    daam = DAAM(pipe)
    prompts = ["a red circle", "a blue square and a hotdog"]
    common = dict(num_inference_steps=STEPS, guidance_scale=7.5, height=32, width=32)
    batch = daam.explain(prompts, words=[["circle"], ["square", "hotdog"]], num_images_per_prompt=2,
                         generator=_gen(10, 4), **common)
    assert batch.prompts == [prompts[0], prompts[0], prompts[1], prompts[1]]
    assert batch.words == [["circle"], ["circle"], ["square", "hotdog"], ["square", "hotdog"]]
    for i in (1, 2):  # the second image of prompt 0 and the first of prompt 1
        prompt = batch.prompts[i]
        single = daam.explain(prompt, words=batch.words[i], generator=_gen(10 + i), **common)
        _assert_maps_close(batch.heatmaps[i], single.heatmaps[0])
        np.testing.assert_allclose(np.asarray(batch.images[i], float), np.asarray(single.images[0], float), atol=2)


def test_processors_are_restored_when_generation_raises():
    pipe = _pipe("sd1")
    daam = DAAM(pipe)
    before = dict(pipe.unet.attn_processors)

    def fail(pipeline, step, timestep, callback_kwargs):
        raise RuntimeError("boom at step %d" % step)

    with pytest.raises(RuntimeError, match="boom"):
        daam.explain("a red circle", num_inference_steps=STEPS, height=32, width=32, callback_on_step_end=fail)
    assert all(pipe.unet.attn_processors[k] is p for k, p in before.items())
    assert not pipe.unet._forward_pre_hooks
    with pytest.raises(ValueError, match="steps"):
        daam.explain("a red circle", num_inference_steps=STEPS, height=32, width=32, steps=[STEPS])
    assert all(pipe.unet.attn_processors[k] is p for k, p in before.items())
    with daam.tracing(1, 32, 32):
        with pytest.raises(ValueError, match="CrossAttentionProcessor"):  # no trace inside a trace
            daam.explain("a red circle", num_inference_steps=STEPS, height=32, width=32)
    assert all(pipe.unet.attn_processors[k] is p for k, p in before.items())


# ------------------------------------------------------------------ captum's contract: attribute -> tensor

def test_attribute_returns_the_stacked_maps_of_explain():
    pipe = _pipe("sd1")
    daam = DAAM(pipe)
    assert isinstance(daam, AttentionMethod)
    prompts = ["a red circle", "a blue square and a hotdog"]
    words = [["red", "circle"], ["square", "hotdog"]]
    common = dict(words=words, num_images_per_prompt=2, num_inference_steps=STEPS, guidance_scale=7.5, height=32,
                  width=48)
    maps = daam.attribute(prompts, generator=_gen(20, 4), **common)
    result = daam.explain(prompts, generator=_gen(20, 4), **common)
    assert isinstance(maps, torch.Tensor) and not isinstance(maps, DAAMResult)
    assert maps.dtype == torch.float32 and maps.device.type == "cpu" and maps.shape == (4, 2, 32, 48)
    assert torch.equal(maps, torch.stack(result.heatmaps))
    single = daam.attribute("a red circle and a hotdog", generator=_gen(3), num_inference_steps=STEPS,
                            guidance_scale=7.5, height=32, width=48)
    assert single.shape == (1, 6, 32, 48)  # every word, the two "a"s separately (a#0, a#1)


def test_attribute_refuses_what_a_tensor_cannot_hold_before_generating():
    daam = DAAM(_pipe("sd1"))
    daam.explain = lambda *args, **kwargs: pytest.fail("generated before refusing")
    with pytest.raises(ValueError, match=r"different numbers of words \[3, 6\].*explain"):
        daam.attribute(["a red circle", "a blue square and a hotdog"], num_inference_steps=1, height=32, width=32)
    with pytest.raises(ValueError, match=r"different numbers of words \[1, 2\]"):
        daam.attribute(["a red circle", "a blue square"], words=[["red"], ["blue", "square"]])
    with pytest.raises(ValueError, match=r"explain\(\.\.\., negative_maps=True\)"):
        daam.attribute("a red circle", negative_prompt="blue", negative_maps=True)
    with pytest.raises(ValueError, match="empty"):
        daam.attribute([])
    with pytest.raises(ValueError, match=r"\['a', 'red', 'circle'\]"):
        daam.attribute("a red circle", words=["dog"])


def test_generation_settings_object_gives_the_same_maps_as_the_keywords():
    pipe = _pipe("sd1")
    daam = DAAM(pipe)
    assert isinstance(daam, Attribution) and daam.forward_func is pipe
    loose = dict(num_inference_steps=STEPS, guidance_scale=7.5, height=32, width=48)
    settings = GenerationSettings(**loose)
    keywords = daam.attribute("a red circle", generator=_gen(30), **loose)
    shared = daam.attribute("a red circle", generator=_gen(30), settings=settings)
    assert shared.shape == (1, 3, 32, 48) and torch.equal(shared, keywords)
    mixed = daam.explain("a red circle", generator=_gen(30), settings=settings.replace(height=None), height=32)
    assert torch.equal(mixed.heatmaps[0], keywords[0])  # a setting left None in the object may come as a keyword
    other = daam.attribute("a red circle", generator=_gen(30), settings=settings.replace(num_inference_steps=1))
    assert not torch.allclose(other, keywords)  # the object's settings reach the pipeline
    with pytest.raises(TypeError, match=r"\['height'\] given both as keywords and in settings"):
        daam.explain("a red circle", settings=settings, height=32)
    with pytest.raises(TypeError, match="settings must be a .*GenerationSettings"):
        daam.attribute("a red circle", settings={"num_inference_steps": 1})
    with pytest.raises(ValueError, match="num_inference_steps must be a positive int"):
        daam.explain("a red circle", num_inference_steps=0, height=32, width=32)


# ------------------------------------------------------------------ words

def test_word_alignment_merges_sub_tokens_and_matches_whole_words_only():
    tok = tiny_tokenizer()
    prompt = "a hotdog and a Dog, red red"
    aligned = word_token_positions(prompt, tok)
    assert [w for w, _ in aligned] == ["a", "hotdog", "and", "a", "Dog,", "red", "red"]
    assert len(aligned[1][1]) > 1  # "hotdog" is several BPE pieces, all of them kept
    dog, = resolve_words(prompt, tok, ["dog"])
    assert dog.word_indices == (4,) and dog.positions == aligned[4][1]  # not inside "hotdog"
    both, first, second, tup, by_index = resolve_words(prompt, tok, ["red", "red#0", "red#1", ("red", 1), 6])
    assert both.positions == first.positions + second.positions
    assert second.positions == tup.positions == by_index.positions and by_index.label == "red#1"
    with pytest.raises(ValueError, match=r"\['a', 'hotdog', 'and', 'a', 'Dog,', 'red', 'red'\]"):
        resolve_words(prompt, tok, ["cat"])
    with pytest.raises(ValueError, match="occurrence"):
        resolve_words(prompt, tok, ["red#2"])


def test_repeated_words_have_the_one_naming_scheme_of_word_attribution():
    """DAAM's map labels, WordAttribution's input_tokens and words.word_labels agree: a#0, a#1."""
    tok = tiny_tokenizer()
    prompt = "a red circle and a Red, square"
    labels = [t.label for t in resolve_words(prompt, tok)]
    assert labels == word_labels(prompt.split()) == ["a#0", "red#0", "circle", "and", "a#1", "Red,#1", "square"]
    result = WordAttribution(lambda ps: np.array([len(p) for p in ps], float), "feature_ablation",
                             progress=False).attribute(prompt)
    assert result.input_tokens == labels
    assert [t.label for t in resolve_words(prompt, tok, ["a#1", ("red", 0), 5])] == ["a#1", "red#0", "Red,#1"]


def test_words_past_the_token_limit_are_an_error():
    tok = tiny_tokenizer()
    prompt = " ".join(["red"] * 80)
    assert len(resolve_words(prompt, tok)) == 75  # 77 = start + 75 + end
    with pytest.raises(ValueError, match="77-token limit"):
        resolve_words(prompt, tok, ["red#75"])


def test_heatmap_of_a_word_is_the_sum_of_its_tokens_and_occurrences():
    pipe = _pipe("sd1")
    daam = DAAM(pipe)
    prompt = "a hotdog and red red"
    common = dict(num_inference_steps=2, height=32, width=32)
    result = daam.explain(prompt, words=["hotdog", "red", "red#0", "red#1"], generator=_gen(7), **common)
    pieces = resolve_words(prompt, pipe.tokenizer, ["hotdog"])[0].positions
    with daam.tracing(1, 32, 32) as trace:
        pipe(prompt, generator=_gen(7), **common)
    per_token = trace.word_maps(0, [[p] for p in pieces], (32, 32))
    _assert_maps_close(result.heatmap("hotdog"), per_token.sum(0))
    _assert_maps_close(result.heatmap("red"), result.heatmap("red#0") + result.heatmap("red#1"))


# ------------------------------------------------------------------ threshold and plot

def test_threshold_normalises_each_map_then_keeps_pixels_above_tau():
    maps = torch.tensor([[[1.0, 2.0], [3.0, 5.0]], [[2.0, 2.0], [2.0, 2.0]]])
    # min-max: (0, .25, .5, 1) -> > 0.4 keeps the bottom row
    np.testing.assert_array_equal(threshold_maps(maps, 0.4)[0].numpy(), [[False, False], [True, True]])
    np.testing.assert_array_equal(threshold_maps(maps, 0.0)[0].numpy(), [[False, True], [True, True]])
    assert not threshold_maps(maps, 1.0)[0].any()
    # divide by the max: (.2, .4, .6, 1) -> > 0.4 keeps the bottom row; > 0.3 also keeps 2.0
    np.testing.assert_array_equal(threshold_maps(maps, 0.3, "max")[0].numpy(), [[False, True], [True, True]])
    assert not threshold_maps(maps, 0.4)[1].any()  # a constant map has no region
    for tau in (-0.1, 1.5, float("nan"), "0.4"):
        with pytest.raises(ValueError, match="tau"):
            threshold_maps(maps, tau)
    with pytest.raises(ValueError, match="normalization"):
        threshold_maps(maps, 0.4, "softmax")


def test_result_threshold_and_plot():
    pipe = _pipe("sd1")
    result = DAAM(pipe).explain("a red circle", words=["red", "circle"], generator=_gen(8),
                                num_inference_steps=2, height=32, width=48)
    masks = result.threshold(0.4)
    assert masks[0].dtype == torch.bool and masks[0].shape == (2, 32, 48)
    for mask, heat in zip(masks[0], result.heatmaps[0]):
        assert mask[np.unravel_index(int(heat.argmax()), heat.shape)]
    result.heatmaps[0][1] = 0  # an all-zero map must not trip captum's assertion
    fig = result.plot(words=["red", "circle"])
    assert [ax.get_title() for ax in fig.axes] == ["a red circle", "red", "circle"]
    assert type(fig).__name__ == "Figure"


# ------------------------------------------------------------------ bad input

def test_daam_is_a_captum_attribution_and_rejects_unsupported_pipelines():
    from diffusers import UNet2DConditionModel

    pipe = _pipe("sd1")
    assert isinstance(DAAM(pipe), Attribution) and DAAM(pipe).forward_func is pipe
    with pytest.raises(TypeError, match="UNet"):
        DAAM(lambda prompts: None)
    plain_unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=8, norm_num_groups=8,
                                      down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2,
                                      mid_block_type=None, cross_attention_dim=8)
    with pytest.raises(ValueError, match="no cross-attention"):
        DAAM(types.SimpleNamespace(unet=plain_unet, tokenizer=pipe.tokenizer))
    with pytest.raises(TypeError, match="tokenizer"):
        DAAM(types.SimpleNamespace(unet=pipe.unet, tokenizer=None))


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(prompts="a red circle", words=["dog"]), ValueError, r"\['a', 'red', 'circle'\]"),
    (dict(prompts="   "), ValueError, "empty"),
    (dict(prompts=[]), ValueError, "empty"),
    (dict(prompts=3), TypeError, "prompts"),
    (dict(prompts="a red circle", resolutions=[5]), ValueError, r"grids.*\(16, 16\)"),
    (dict(prompts="a red circle", layers=["up_blocks.7"]), ValueError, "layers"),
    (dict(prompts="a red circle", negative_maps=True), ValueError, "negative_prompt"),
    (dict(prompts="a red circle", negative_prompt="blue", negative_maps=True, guidance_scale=1.0), ValueError,
     "guidance"),
    (dict(prompts="a red circle", num_images_per_prompt=0), ValueError, "num_images_per_prompt"),
    (dict(prompts="a red circle", steps=[-1]), ValueError, "steps"),
    (dict(prompts=["a red circle", "a blue square"], words=[["red"]]), ValueError, "per-prompt"),
])
def test_bad_input_is_a_clear_error(kwargs, error, match):
    daam = DAAM(_pipe("sd1"))
    with pytest.raises(error, match=match):
        daam.explain(**kwargs, num_inference_steps=1, height=32, width=32)
    assert not any(type(p).__name__ == "CrossAttentionProcessor" for p in _pipe("sd1").unet.attn_processors.values())


# ------------------------------------------------------------------ meaning, on the trained ShapesWorld model

@lru_cache(maxsize=None)
def _load_shapes_world():
    from captum_diffusion.shapes_world import DEFAULT_GENERATION, load_shapes_world

    pipe, _ = load_shapes_world()
    return pipe, DEFAULT_GENERATION.pipeline_kwargs()


def _shapes_world():
    try:
        return _load_shapes_world()
    except (ImportError, FileNotFoundError, OSError) as error:
        pytest.skip(f"ShapesWorld weights not available yet: {error}")


def _object(objects, colour, side=None):
    found = [o for o in objects if o.colour == colour and (side is None or o.horizontal == side)]
    return max(found, key=lambda o: o.area).mask if found else None


def test_shapes_world_shape_word_map_overlaps_its_object():
    from captum_diffusion.metrics import iou
    from captum_diffusion.shapes_world import analyse

    pipe, settings = _shapes_world()
    rng = np.random.default_rng(0)
    prompts = ["a red circle", "a blue square", "a green triangle", "a yellow circle", "a red square on the left",
               "a blue triangle on the right", "a green circle on the top", "a yellow square on the bottom"]
    result = DAAM(pipe).explain(prompts, words=[[p.split()[2]] for p in prompts],
                                generator=[_gen(100 + i) for i in range(len(prompts))], **settings)
    masks = result.threshold(0.4)
    scores, random_scores = [], []
    for i, prompt in enumerate(prompts):
        truth = _object(analyse(result.images[i]), prompt.split()[1])
        if truth is None:
            continue
        mask = masks[i][0].numpy()
        scores.append(iou(mask, truth))
        random_scores.append(iou(rng.random(truth.shape) < mask.mean(), truth))
    assert len(scores) >= 6, "the model drew too few of the asked objects"
    scores, random_scores = np.array(scores), np.array(random_scores)
    assert scores.mean() > 2 * random_scores.mean(), (scores, random_scores)
    assert (scores > random_scores).mean() >= 0.6, (scores, random_scores)


def test_shapes_world_two_object_prompt_each_shape_word_covers_its_own_object():
    """In "a {c1} {s1} and a {c2} {s2}" the map of s1 is stronger on the c1 object than on the c2 object and
    vice versa (objects found by colour in the generated image, wherever the model put them). On the shipped
    weights 36 of 48 comparisons are won (colour words: 29 of 48; with 8 heads per block 32 and 18)."""
    from captum_diffusion.shapes_world import analyse

    pipe, settings = _shapes_world()
    from captum_diffusion.shapes_world import PAIR_PROMPTS

    distinct = [p for p in PAIR_PROMPTS if p.split()[1] != p.split()[5] and p.split()[2] != p.split()[6]]
    prompts = list(np.random.default_rng(1).choice(distinct, 24, replace=False))
    words = [[p.split()[2], p.split()[6]] for p in prompts]
    result = DAAM(pipe).explain(prompts, words=words, generator=[_gen(200 + i) for i in range(len(prompts))],
                                **settings)
    wins = []
    for i, prompt in enumerate(prompts):
        objects = analyse(result.images[i])
        first, second = _object(objects, prompt.split()[1]), _object(objects, prompt.split()[5])
        if first is None or second is None or (first & second).any():
            continue
        heat = result.heatmaps[i]
        wins += [heat[0][first].mean() > heat[0][second].mean(), heat[1][second].mean() > heat[1][first].mean()]
    assert len(wins) >= 6, f"the model drew both colours in only {len(wins) // 2} of {len(prompts)} images"
    assert np.mean(wins) > 0.5, [bool(w) for w in wins]
