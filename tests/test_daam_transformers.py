"""DAAM on tiny random-weight SD3 (MMDiT joint attention), FLUX.1 (double- and single-stream joint attention) and
PixArt-Σ (cross-attention to T5) pipelines: maps against an independent recomputation from recorded queries and
keys, traced image = untraced image, processors restored, batching, T5 word matching."""
from functools import lru_cache

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from captum_diffusion.attention import DAAM, DAAMResult
from captum_diffusion.generation.settings import GenerationSettings
from captum_diffusion.testing import T5_SPLIT_WORDS, tiny_t5_tokenizer, tiny_transformer_pipeline
from captum_diffusion.words.tokens import resolve_words, word_token_positions

FAMILIES = ("sd3", "flux", "pixart")
STEPS = 2
T5_LENGTH = 24  # max_sequence_length of every call: short, so the tests stay fast
EXTRA = {"sd3": dict(max_sequence_length=T5_LENGTH), "flux": dict(max_sequence_length=T5_LENGTH),
         "pixart": dict(max_sequence_length=T5_LENGTH, use_resolution_binning=False, clean_caption=False)}


@lru_cache(maxsize=None)
def _pipe(family):
    return tiny_transformer_pipeline(family, seed=0)


def _gen(seed, n=1):
    gens = [torch.Generator().manual_seed(seed + i) for i in range(n)]
    return gens[0] if n == 1 else gens


def _call(family, **kwargs):
    return {"num_inference_steps": STEPS, **EXTRA[family], **kwargs}


# ------------------------------------------------------------------ the independent reference computation

def _rotate(x, cos, sin):
    """Rotary embedding on (batch, n, heads, d) from first principles: consecutive channel pairs (a, b) turn
    into (a cos - b sin, b cos + a sin) with FLUX's per-position angles (cos / sin repeated per pair)."""
    a, b = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack([-b, a], dim=-1).flatten(-2)
    return x * cos[None, :, None, :] + rotated * sin[None, :, None, :]


def _record(pipe, family, prompt, call, negative_prompt=None):
    """Run the pipeline untraced with plain forward hooks; return, per denoiser call, a list of
    ``(query_image, key_text, key_all, text_bias)`` per text-attention layer, each (batch, heads, n, d) float64."""
    model = pipe.transformer
    calls, state, handles = [], {}, []

    def heads(x, attn):  # (batch, n, heads * d) or (batch, n, heads, d) -> (batch, heads, n, d)
        return x.reshape(x.shape[0], x.shape[1], attn.heads, -1).transpose(1, 2).double()

    def on_call(module, args, kwargs):
        state["text"] = (kwargs["encoder_hidden_states"] if "encoder_hidden_states" in kwargs else args[1]).shape[1]
        calls.append([])

    handles.append(model.register_forward_pre_hook(on_call, with_kwargs=True))
    for name, attn in model.named_modules():
        if family == "sd3" and name.endswith(".attn") and getattr(attn, "add_k_proj", None) is not None:
            entry = {}
            handles.append(attn.to_q.register_forward_hook(lambda m, i, o, e=entry: e.__setitem__("q", o)))
            handles.append(attn.to_k.register_forward_hook(lambda m, i, o, e=entry: e.__setitem__("k", o)))

            def text_keys(m, i, o, e=entry, attn=attn):
                q, k, kt = heads(e["q"], attn), heads(e["k"], attn), heads(o, attn)
                calls[-1].append((q, kt, torch.cat([k, kt], dim=2), None))
            handles.append(attn.add_k_proj.register_forward_hook(text_keys))
        elif family == "flux" and name.endswith(".attn"):
            entry = {}
            handles.append(attn.norm_q.register_forward_hook(lambda m, i, o, e=entry: e.__setitem__("q", o)))
            handles.append(attn.norm_k.register_forward_hook(lambda m, i, o, e=entry: e.__setitem__("k", o)))
            single = name.startswith("single_transformer_blocks")

            def flux_keys(m, i, o, e=entry, attn=attn, single=single):
                n = state["text"]
                q, k = (e["q"], e["k"]) if single else (torch.cat([e["q_text"], e["q"]], 1), torch.cat([o, e["k"]], 1))
                cos, sin = state["rope"]
                q, k = heads(_rotate(q.double(), cos.double(), sin.double()), attn), \
                    heads(_rotate(k.double(), cos.double(), sin.double()), attn)
                calls[-1].append((q[:, :, n:], k[:, :, :n], k, None))
            if single:
                handles.append(attn.norm_k.register_forward_hook(flux_keys))
            else:
                handles.append(attn.norm_added_q.register_forward_hook(
                    lambda m, i, o, e=entry: e.__setitem__("q_text", o)))
                handles.append(attn.norm_added_k.register_forward_hook(flux_keys))
        elif family == "pixart" and name.endswith(".attn2"):
            entry = {}
            handles.append(attn.to_q.register_forward_hook(lambda m, i, o, e=entry: e.__setitem__("q", o)))

            def cross_keys(m, i, o, e=entry, attn=attn):  # the padding mask is rebuilt from the tokenizer below
                calls[-1].append((heads(e["q"], attn), heads(o, attn), None, None))
            handles.append(attn.to_k.register_forward_hook(cross_keys))
    if family == "flux":
        handles.append(model.pos_embed.register_forward_hook(lambda m, i, o: state.__setitem__("rope", o)))
    try:
        negative = {} if negative_prompt is None else {"negative_prompt": negative_prompt}
        pipe(prompt, output_type="np", **negative, **call)
    finally:
        for h in handles:
            h.remove()
    return calls


def _pixart_bias(pipe, prompts, length):
    """The text-key bias PixArt applies: 0 for the (lowercased) prompt's tokens and </s>, -10000 for padding."""
    mask = pipe.tokenizer([p.lower().strip() for p in prompts], padding="max_length", max_length=length,
                          truncation=True, return_tensors="pt").attention_mask
    return ((1 - mask.double()) * -10000.0)[:, None, None, :]


def reference_maps(pipe, family, prompt, positions, call, *, negative_prompt=None, uncond=False, steps=None,
                   text_softmax="text"):
    """DAAM maps of one image computed without DAAM: softmax of the recorded image queries against the text keys
    (alone, or against every key and then the text columns for ``text_softmax="joint"``) per head, each head
    upsampled bicubically to the image and summed over heads, layers and conditional steps."""
    calls = _record(pipe, family, prompt, call, negative_prompt)
    height, width = call["height"], call["width"]
    separate = family == "flux" and negative_prompt is not None and call.get("true_cfg_scale", 1.0) > 1
    total = torch.zeros(len(positions), height, width, dtype=torch.float64)
    grid = (height // 4, width // 4)  # VAE / 2, then patch 2 (SD3, PixArt) or 2x2 packing (FLUX)
    for index, layers in enumerate(calls):
        step, is_uncond = (index // 2, index % 2 == 1) if separate else (index, False)
        if steps is not None and step not in steps:
            continue
        for q, k_text, k_all, bias in layers:
            if separate:
                row = 0
                if is_uncond != uncond:
                    continue
            else:
                row = (0 if uncond else 1) if q.shape[0] == 2 else 0
            scale = q.shape[-1] ** -0.5
            scores = q[row] @ k_text[row].transpose(-1, -2) * scale  # (heads, image, text)
            if family == "pixart":
                text = [negative_prompt or ""] if row == 0 and q.shape[0] == 2 else [prompt]
                scores = scores + _pixart_bias(pipe, text, k_text.shape[2])[0]
            if text_softmax == "text" or k_all is None:
                probs = torch.softmax(scores, dim=-1)
            else:
                probs = torch.exp(scores - torch.logsumexp(q[row] @ k_all[row].transpose(-1, -2) * scale, -1, True))
            for head in range(probs.shape[0]):
                maps = torch.stack([probs[head][:, list(p)].sum(-1) for p in positions]).reshape(1, -1, *grid)
                total += F.interpolate(maps, size=(height, width), mode="bicubic", align_corners=False)[0]
    return total.float()


def _assert_maps_close(actual, expected):
    scale = expected.abs().max()
    assert scale > 0
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4 * float(scale))


def _positions(daam, prompt, words=None):
    return [t.positions for t in daam.word_tokens(prompt, words, max_sequence_length=T5_LENGTH)]


# ------------------------------------------------------------------ exactness

@pytest.mark.parametrize("family,guidance", [("sd3", 5.0), ("sd3", 1.0), ("flux", 3.5), ("pixart", 4.5)])
def test_maps_equal_independent_recomputation_non_square(family, guidance):
    pipe = _pipe(family)
    daam = DAAM(pipe)
    prompt = "a red circle and a hotdog"
    call = _call(family, guidance_scale=guidance, height=32, width=48)
    result = daam.explain(prompt, generator=_gen(3), **call)
    expected = reference_maps(pipe, family, prompt, _positions(daam, prompt), {**call, "generator": _gen(3)})
    assert isinstance(result, DAAMResult)
    assert result.words[0] == ["a#0", "red", "circle", "and", "a#1", "hotdog"]
    assert result.heatmaps[0].shape == (6, 32, 48) and result.images[0].size == (48, 32)
    _assert_maps_close(result.heatmaps[0], expected)


def test_joint_softmax_columns_equal_independent_recomputation_and_are_smaller():
    pipe = _pipe("sd3")
    prompt = "a blue square"
    call = _call("sd3", guidance_scale=5.0, height=32, width=32)
    daam = DAAM(pipe, text_softmax="joint")
    joint = daam.explain(prompt, generator=_gen(4), **call).heatmaps[0]
    expected = reference_maps(pipe, "sd3", prompt, _positions(daam, prompt), {**call, "generator": _gen(4)},
                              text_softmax="joint")
    _assert_maps_close(joint, expected)
    renormalised = DAAM(pipe).explain(prompt, generator=_gen(4), **call).heatmaps[0]
    assert joint.sum() < renormalised.sum()  # the text's columns of a softmax over image and text keys


def test_flux_true_cfg_negative_prompt_maps_come_from_the_separate_negative_call():
    pipe = _pipe("flux")
    daam = DAAM(pipe)
    call = _call("flux", height=32, width=32, true_cfg_scale=2.0)
    result = daam.explain("a red circle", negative_prompt="blue square", negative_maps=True, generator=_gen(5), **call)
    common = dict(negative_prompt="blue square", steps=None)
    cond = reference_maps(pipe, "flux", "a red circle", _positions(daam, "a red circle"),
                          {**call, "generator": _gen(5)}, **common)
    uncond = reference_maps(pipe, "flux", "a red circle", _positions(daam, "blue square"),
                            {**call, "generator": _gen(5)}, uncond=True, **common)
    _assert_maps_close(result.heatmaps[0], cond)
    assert result.negative_words == [["blue", "square"]]
    _assert_maps_close(result.negative_heatmaps[0], uncond)


def test_sd3_negative_prompt_maps_equal_independent_recomputation_on_the_unconditional_half():
    pipe = _pipe("sd3")
    daam = DAAM(pipe)
    call = _call("sd3", height=32, width=32, guidance_scale=5.0)
    result = daam.explain("a red circle", negative_prompt="blue square", negative_maps=True, generator=_gen(13), **call)
    expected = reference_maps(pipe, "sd3", "a red circle", _positions(daam, "blue square"),
                              {**call, "generator": _gen(13)}, negative_prompt="blue square", uncond=True)
    _assert_maps_close(result.negative_heatmaps[0], expected)
    plain = daam.explain("a red circle", negative_prompt="blue square", generator=_gen(13), **call)
    _assert_maps_close(result.heatmaps[0], plain.heatmaps[0])  # the conditional maps do not depend on keeping both


@pytest.mark.parametrize("text_softmax", ["text", "joint"])
def test_image_text_attention_in_head_groups_equals_the_softmax_from_first_principles(monkeypatch, text_softmax):
    from captum_diffusion.attention import families

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 5, 12, 8, generator=g), torch.randn(2, 5, 7, 8, generator=g)  # keys: 4 image, 3 text
    scores = (q.double() @ k.double().transpose(-1, -2)) * 8 ** -0.5
    if text_softmax == "text":
        expected = torch.softmax(scores[..., 4:], -1)
    else:
        expected = torch.softmax(scores, -1)[..., 4:]
    monkeypatch.setattr(families, "SCORE_BUDGET", 2 * 12 * 7 * 2)  # two heads per group: groups 2, 2, 1
    actual = families.image_text_attention(q, k[:, :, 4:], k, 8 ** -0.5, text_softmax)
    torch.testing.assert_close(actual, expected.sum(1, keepdim=True).float(), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ the guarantees of the UNet path

@pytest.mark.parametrize("family", FAMILIES)
def test_traced_image_equals_untraced_and_processors_come_back_also_after_an_exception(family):
    pipe = _pipe(family)
    daam = DAAM(pipe)
    before = dict(pipe.transformer.attn_processors)
    call = _call(family, height=32, width=32, output_type="np")
    plain = pipe("a red circle", generator=_gen(0), **call).images
    with daam.tracing(1, 32, 32) as trace:
        traced = pipe("a red circle", generator=_gen(0), **call).images
    assert np.abs(traced - plain).max() <= 1e-5
    assert trace.n_traced == STEPS * len(daam.attention_layers)
    assert all(pipe.transformer.attn_processors[k] is p for k, p in before.items())
    assert not pipe.transformer._forward_pre_hooks

    def fail(*args, **kwargs):
        raise KeyboardInterrupt("stop")

    stop = dict(callback=fail, callback_steps=1) if family == "pixart" else dict(callback_on_step_end=fail)
    with pytest.raises(KeyboardInterrupt):
        daam.explain("a red circle", **stop, **_call(family, height=32, width=32))
    assert all(pipe.transformer.attn_processors[k] is p for k, p in before.items())
    assert not pipe.transformer._forward_pre_hooks


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_and_images_per_prompt_match_single_generations(family):
    pipe = _pipe(family)
    daam = DAAM(pipe)
    prompts = ["a red circle", "a blue triangle and a hotdog"]
    call = _call(family, height=32, width=32)
    maps = daam.attribute(prompts, words=[["circle"], ["triangle"]], num_images_per_prompt=2, generator=_gen(10, 4),
                          **call)
    assert maps.shape == (4, 1, 32, 32) and maps.dtype == torch.float32
    for i in (1, 2):  # the second image of prompt 0 and the first of prompt 1
        single = daam.attribute(prompts[i // 2], words=[["circle"], ["triangle"]][i // 2], generator=_gen(10 + i),
                                **call)
        _assert_maps_close(maps[i], single[0])


def test_steps_and_blocks_partition_the_total_flux_double_and_single_stream():
    pipe = _pipe("flux")
    daam = DAAM(pipe)
    assert daam.attention_layers == ["transformer_blocks.0.attn", "single_transformer_blocks.0.attn"]
    call = _call("flux", height=32, width=32, words=["red", "circle"])
    runs = {key: daam.explain("a red circle", generator=_gen(6), **call, **option).heatmaps[0]
            for key, option in {"all": {}, "double": {"layers": "transformer_blocks"},
                                "single": {"layers": ["single_transformer_blocks"]}, "first": {"steps": [0]},
                                "second": {"steps": 1}, "grid": {"resolutions": [8]}}.items()}
    _assert_maps_close(runs["double"] + runs["single"], runs["all"])
    _assert_maps_close(runs["first"] + runs["second"], runs["all"])
    _assert_maps_close(runs["grid"], runs["all"])
    assert runs["single"].abs().sum() > 0 and runs["double"].abs().sum() > 0


def test_trace_memory_is_flat_in_steps():
    pipe = _pipe("sd3")
    daam = DAAM(pipe)
    sizes = [daam.explain("a red circle", generator=_gen(7), **{**_call("sd3", height=32, width=32),
                                                                "num_inference_steps": n}).trace_bytes for n in (1, 3)]
    assert sizes[0] == sizes[1] == 1 * 8 * 8 * (77 + T5_LENGTH) * 4  # one (image, grid, text) float32 sum


def test_sd3_skip_layer_guidance_pass_is_not_a_step_and_not_traced():
    pipe = _pipe("sd3")
    daam = DAAM(pipe)
    call = _call("sd3", height=32, width=32, guidance_scale=5.0, skip_guidance_layers=[1],
                 skip_layer_guidance_start=0.0, skip_layer_guidance_stop=1.0)
    calls = []
    hook = pipe.transformer.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        with daam.tracing(1, 32, 32) as trace:
            pipe("a red circle", generator=_gen(12), **call)
    finally:
        hook.remove()
    assert len(calls) == STEPS + 1  # the second step runs a third, layer-skipping pass
    assert trace.step == STEPS - 1 and trace.n_traced == STEPS * len(daam.attention_layers)


# ------------------------------------------------------------------ SD3's two text encoders

def test_sd3_maps_sum_clip_and_t5_positions_by_default_and_each_can_be_chosen():
    pipe = _pipe("sd3")
    call = _call("sd3", height=32, width=32, words=["red", "circle"])
    maps = {encoder: DAAM(pipe, text_encoder=encoder).attribute("a red circle", generator=_gen(8), **call)
            for encoder in (None, "clip", "t5")}
    _assert_maps_close(maps["clip"] + maps["t5"], maps[None])
    clip, = DAAM(pipe, text_encoder="clip").word_tokens("a red circle", ["circle"])
    t5, = DAAM(pipe, text_encoder="t5").word_tokens("a red circle", ["circle"], max_sequence_length=T5_LENGTH)
    assert clip.positions == (3,) and t5.positions == (77 + 2, 77 + 3)  # CLIP after its start token; ▁cir cle
    with pytest.raises(ValueError, match="text_encoder"):
        DAAM(_pipe("flux"), text_encoder="clip")  # FLUX's CLIP gives only a pooled vector


def test_sd3_without_t5_maps_the_clip_positions():
    import copy

    pipe = copy.copy(_pipe("sd3"))
    pipe.text_encoder_3, pipe.tokenizer_3 = None, None
    daam = DAAM(pipe)
    call = _call("sd3", height=32, width=32, guidance_scale=5.0)
    result = daam.explain("a red circle", generator=_gen(9), **call)
    expected = reference_maps(pipe, "sd3", "a red circle", _positions(daam, "a red circle"),
                              {**call, "generator": _gen(9)})
    _assert_maps_close(result.heatmaps[0], expected)
    with pytest.raises(ValueError, match=r"\['clip'\]"):
        DAAM(pipe, text_encoder="t5")


# ------------------------------------------------------------------ T5 (sentencepiece) words

def test_t5_words_whole_only_by_occurrence_and_pieces_summed():
    tok = tiny_t5_tokenizer()
    prompt = "a hotdog and a Dog, circle circle"
    aligned = word_token_positions(prompt, tok, max_length=T5_LENGTH)
    pieces = tok.convert_ids_to_tokens(tok(prompt)["input_ids"])
    assert [w for w, _ in aligned] == prompt.split()
    assert aligned[0][1] == (0,)  # no start token: the first word is at 0
    assert [pieces[p] for p in aligned[5][1]] == list(T5_SPLIT_WORDS["circle"])  # ▁cir, cle
    assert pieces[aligned[1][1][0]].startswith("▁") and len(aligned[1][1]) > 1  # hotdog: several pieces
    dog, = resolve_words(prompt, tok, ["dog"], max_length=T5_LENGTH)
    assert dog.word_indices == (4,)  # "Dog," only, not inside "hotdog"
    both, second = resolve_words(prompt, tok, ["circle", "circle#1"], max_length=T5_LENGTH)
    assert both.positions == aligned[5][1] + aligned[6][1] and second.positions == aligned[6][1]
    short = word_token_positions(prompt, tok, max_length=4)  # 3 content pieces, then </s>
    assert [p for _, positions in short for p in positions] == [0, 1, 2]
    with pytest.raises(ValueError, match="4-token limit"):
        resolve_words(prompt, tok, ["circle"], max_length=4)


@pytest.mark.parametrize("family", ["flux", "pixart"])
def test_map_of_a_multi_piece_word_is_the_sum_of_its_pieces(family):
    pipe = _pipe(family)
    daam = DAAM(pipe)
    call = _call(family, height=32, width=32)
    result = daam.explain("a yellow triangle", words=["yellow", "triangle"], generator=_gen(11), **call)
    with daam.tracing(1, 32, 32) as trace:
        pipe("a yellow triangle", generator=_gen(11), **call)
    for word, spec in zip(("yellow", "triangle"), _positions(daam, "a yellow triangle", ["yellow", "triangle"])):
        assert len(spec) == 2
        _assert_maps_close(result.heatmap(word), trace.word_maps(0, [[p] for p in spec], (32, 32)).sum(0))


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_settings_object_gives_the_same_maps_and_its_t5_limit_matches_the_words(family):
    daam = DAAM(_pipe(family))
    call = _call(family, height=32, width=32)
    extra = {k: v for k, v in call.items() if k not in ("num_inference_steps", "height", "width", "max_sequence_length")}
    settings = GenerationSettings(num_inference_steps=STEPS, height=32, width=32, max_sequence_length=T5_LENGTH)
    keywords = daam.attribute("a red circle", generator=_gen(14), **call)
    shared = daam.attribute("a red circle", generator=_gen(14), settings=settings, **extra)
    assert shared.shape == (1, 3, 32, 32) and torch.equal(shared, keywords)
    if family == "sd3":  # "square" is still among SD3's CLIP positions: map the T5 positions alone
        daam = DAAM(_pipe(family), text_encoder="t5")
    short = settings.replace(max_sequence_length=4)  # the object's T5 limit is the one words are matched under
    with pytest.raises(ValueError, match="4-token limit"):
        daam.attribute("a red circle and a blue square", words=["square"], settings=short, **extra)


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("family,kwargs,error,match", [
    ("pixart", dict(clean_caption=True), ValueError, "clean_caption"),
    ("flux", dict(layers=["up_blocks"]), ValueError, "single_transformer_blocks"),
    ("sd3", dict(resolutions=[16]), ValueError, r"grids.*\(8, 8\)"),
    ("flux", dict(negative_prompt="blue", negative_maps=True), ValueError, "true_cfg_scale"),
    ("sd3", dict(words=["dog"]), ValueError, r"\['a', 'red', 'circle'\]"),
])
def test_bad_input_is_a_clear_error(family, kwargs, error, match):
    pipe = _pipe(family)
    with pytest.raises(error, match=match):
        DAAM(pipe).explain("a red circle", **{**_call(family, height=32, width=32, num_inference_steps=1), **kwargs})
    assert not any("Tracing" in type(p).__name__ or "CrossAttentionProcessor" == type(p).__name__
                   for p in pipe.transformer.attn_processors.values())
    with pytest.raises(ValueError, match="text_softmax"):
        DAAM(pipe, text_softmax="raw")
