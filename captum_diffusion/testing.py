"""Small random-weight models built in-process: real transformers / diffusers classes, tiny configs.

They exercise shapes, layouts and edge cases (SD 1.x, 2.x, XL; the diffusion transformers SD3, FLUX.1 and
PixArt-Σ with a T5 text encoder) in tests and benchmarks without any hub access. Their outputs mean nothing;
for explanations that must be *right* use the trained ShapesWorld model
(``captum_diffusion.shapes_world.load_shapes_world``).
"""
from __future__ import annotations

import string
from functools import lru_cache

import torch

from captum_diffusion.shapes_world import TOKENIZER_DIR

LAYOUTS = ("sd1", "sd2", "sdxl")
TRANSFORMER_FAMILIES = ("sd3", "flux", "pixart")
#: words of the tiny T5 vocabulary that have no piece of their own: each is split into these sentencepiece pieces
#: (other words absent from the vocabulary fall back to shorter pieces and single characters, e.g. "hotdog" ->
#: "▁hot" "d" "o" "g"; a plural such as "astronauts" is "▁astronaut" "s")
T5_SPLIT_WORDS = {"triangle": ("▁tri", "angle"), "yellow": ("▁yel", "low"), "circle": ("▁cir", "cle")}


@lru_cache(maxsize=None)
def _load_tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(TOKENIZER_DIR, model_max_length=77)


def tiny_tokenizer():
    """The project's CLIP BPE tokenizer (ShapesWorld words plus common English words; 77-token limit)."""
    import copy

    return copy.deepcopy(_load_tokenizer())


@lru_cache(maxsize=None)
def _load_t5_tokenizer():
    import json

    from transformers import T5TokenizerFast

    vocabulary = json.loads((TOKENIZER_DIR / "vocab.json").read_text())
    words = [piece[:-4] for piece in vocabulary
             if piece.endswith("</w>") and piece[:-4].isascii() and piece[:-4].isalpha()]
    # (piece, log-probability): whole words beat any split into pieces, pieces beat single characters
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    for word in words:
        if word in T5_SPLIT_WORDS:
            pieces += [(piece, -6.0) for piece in T5_SPLIT_WORDS[word]]
        elif len(word) > 1 or word in "aAI":
            pieces.append(("▁" + word, -5.0))
    pieces.append(("▁", -8.0))
    pieces += [(character, -10.0) for character in string.ascii_letters + string.digits + string.punctuation]
    unique = {}
    for piece, score in pieces:
        unique.setdefault(piece, score)
    return T5TokenizerFast(vocab=list(unique.items()), extra_ids=0, model_max_length=512)


def tiny_t5_tokenizer():
    """An offline sentencepiece-style T5 tokenizer (``T5TokenizerFast`` over a ``tokenizers`` Unigram model built
    here from the project's vocabulary): ``▁``-prefixed word pieces, ``</s>`` appended, ``<pad>`` = 0, no extra ids,
    ``model_max_length`` 512. The words of ``T5_SPLIT_WORDS`` are split into several pieces, unknown words into
    shorter pieces and characters, so multi-piece words are exercised."""
    import copy

    return copy.deepcopy(_load_t5_tokenizer())


def tiny_t5(seed: int = 0, d_model: int = 32):
    """A random-weight ``T5EncoderModel`` (2 layers, 4 heads, ``d_model``-d, gated GELU) for ``tiny_t5_tokenizer``."""
    from transformers import T5Config, T5EncoderModel

    tokenizer = _load_t5_tokenizer()
    config = T5Config(vocab_size=len(tokenizer), d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                      relative_attention_num_buckets=8, relative_attention_max_distance=32, dropout_rate=0.0,
                      feed_forward_proj="gated-gelu", pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return T5EncoderModel(config).eval()


def _text_config(tokenizer, hidden_size: int = 32, projection_dim: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length, projection_dim=projection_dim,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_act="gelu",
    )


def tiny_clip(seed: int = 0, image_size: int = 64):
    """A random-weight ``(CLIPModel, CLIPProcessor)``: ``image_size`` px images, 32-d projections."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPVisionConfig

    tokenizer = tiny_tokenizer()
    vision = CLIPVisionConfig(image_size=image_size, patch_size=16, hidden_size=32, intermediate_size=37,
                              num_hidden_layers=2, num_attention_heads=4, hidden_act="gelu")
    config = CLIPConfig(text_config=_text_config(tokenizer).to_dict(), vision_config=vision.to_dict(), projection_dim=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size})
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def tiny_stable_diffusion(layout: str = "sd1", seed: int = 0):
    """A random-weight Stable Diffusion pipeline of the given layout, 32x32 images, DDIM scheduler.

    ``"sd1"``: integer head count, conv projections (SD 1.x); ``"sd2"``: per-block head dims, linear
    projections, v-prediction (SD 2.x); ``"sdxl"``: two text encoders, ``text_time`` added conditioning,
    two transformer layers in the inner block (``StableDiffusionXLPipeline``). Cross-attention at 16x16 and 8x8
    latent resolution (UNet input 16x16x4; the VAE downsamples by 2).
    """
    from diffusers import (AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    tokenizer = tiny_tokenizer()
    unet_kwargs = dict(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=8,
    )
    if layout == "sd1":
        unet_kwargs.update(attention_head_dim=4, cross_attention_dim=32)
    elif layout == "sd2":
        unet_kwargs.update(attention_head_dim=(2, 4), use_linear_projection=True, cross_attention_dim=32)
    else:
        unet_kwargs.update(attention_head_dim=(2, 4), use_linear_projection=True, cross_attention_dim=64,
                           addition_embed_type="text_time", addition_time_embed_dim=8,
                           transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=6 * 8 + 32)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1,
                              prediction_type="v_prediction" if layout == "sd2" else "epsilon")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**unet_kwargs)
        vae = AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            norm_num_groups=8, sample_size=32)
        text_encoder = CLIPTextModel(_text_config(tokenizer))
        if layout == "sdxl":
            text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer))
    if layout == "sdxl":
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                         tokenizer=tokenizer, tokenizer_2=tiny_tokenizer(), unet=unet,
                                         scheduler=scheduler, force_zeros_for_empty_prompt=False)
    else:
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _transformer_vae(latent_channels: int, scaling_factor: float, shift_factor: float | None):
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=latent_channels,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         norm_num_groups=8, sample_size=32, scaling_factor=scaling_factor, shift_factor=shift_factor,
                         use_quant_conv=shift_factor is None, use_post_quant_conv=shift_factor is None)


def tiny_sd3(seed: int = 0):
    """A random-weight ``StableDiffusion3Pipeline`` (MMDiT), 32x32 images, flow-matching Euler scheduler.

    Two ``SD3Transformer2DModel`` joint-attention blocks (4 heads of 8, patch 2: an 8x8 grid of image tokens); a
    16-channel ``AutoencoderKL`` with SD3's ``scaling_factor`` / ``shift_factor`` (latents 16x16x16, the VAE
    downsamples by 2); two CLIP text encoders with projection (16-d each, concatenated to 32-d, 77 tokens) and a
    T5 encoder (``tiny_t5``, 32-d) as the third. The pipeline's T5 ``max_sequence_length`` default (256) applies.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    tokenizer = tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=16, out_channels=16, num_layers=2,
                                            attention_head_dim=8, num_attention_heads=4, joint_attention_dim=32,
                                            caption_projection_dim=32, pooled_projection_dim=32, pos_embed_max_size=16)
        vae = _transformer_vae(16, scaling_factor=1.5305, shift_factor=0.0609)
        text_encoder = CLIPTextModelWithProjection(_text_config(tokenizer, hidden_size=16, projection_dim=16))
        text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer, hidden_size=16, projection_dim=16))
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                    vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                    text_encoder_2=text_encoder_2,
                                    tokenizer_2=tiny_tokenizer(), text_encoder_3=tiny_t5(seed + 1),
                                    tokenizer_3=tiny_t5_tokenizer())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_flux(seed: int = 0):
    """A random-weight ``FluxPipeline`` (FLUX.1-dev layout: guidance embedded, no classifier-free guidance), 32x32.

    ``FluxTransformer2DModel`` with one double-stream and one single-stream block (2 heads of 16, RoPE axes
    (4, 4, 8)); a 16-channel ``AutoencoderKL`` with FLUX's ``scaling_factor`` / ``shift_factor`` (16x16x16 latents,
    packed 2x2 into 64 tokens of 64 channels); CLIP (32-d pooled, 77 tokens) and T5 (``tiny_t5``, 32-d). The
    scheduler shifts its sigmas by image size as FLUX.1's does. T5 ``max_sequence_length`` default: 512.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    tokenizer = tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                             attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                             pooled_projection_dim=32, guidance_embeds=True, axes_dims_rope=(4, 4, 8))
        vae = _transformer_vae(16, scaling_factor=0.3611, shift_factor=0.1159)
        text_encoder = CLIPTextModel(_text_config(tokenizer))
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                        text_encoder_2=tiny_t5(seed + 1), tokenizer_2=tiny_t5_tokenizer(), transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_pixart(seed: int = 0):
    """A random-weight ``PixArtSigmaPipeline``, 32x32 images, DPM-Solver++ scheduler.

    Two ``PixArtTransformer2DModel`` blocks (self-attention, cross-attention to T5, 4 heads of 8, patch 2: an 8x8
    grid) predicting noise and variance (8 output channels); a 4-channel ``AutoencoderKL`` (16x16x4 latents);
    T5 (``tiny_t5``, 32-d) as the only text encoder. Call it with ``use_resolution_binning=False`` (its aspect-ratio
    bins exist for 256 px and up) and ``clean_caption=False``; T5 ``max_sequence_length`` default: 300.
    """
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = PixArtTransformer2DModel(sample_size=16, num_layers=2, patch_size=2, attention_head_dim=8,
                                               num_attention_heads=4, caption_channels=32, in_channels=4,
                                               out_channels=8, cross_attention_dim=32)
        vae = _transformer_vae(4, scaling_factor=0.13025, shift_factor=None)
    pipe = PixArtSigmaPipeline(tokenizer=tiny_t5_tokenizer(), text_encoder=tiny_t5(seed + 1), vae=vae,
                               transformer=transformer, scheduler=DPMSolverMultistepScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_transformer_pipeline(family: str = "sd3", seed: int = 0):
    """``tiny_sd3``, ``tiny_flux`` or ``tiny_pixart`` by name (one of ``TRANSFORMER_FAMILIES``)."""
    builders = {"sd3": tiny_sd3, "flux": tiny_flux, "pixart": tiny_pixart}
    if family not in builders:
        raise ValueError(f"family must be one of {TRANSFORMER_FAMILIES}, got {family!r}")
    return builders[family](seed=seed)


def tiny_open_clip(seed: int = 0, image_size: int = 64):
    """A random-weight open_clip ``CLIP`` as an ``OpenCLIPSimilarity``: a 2-block ViT (16 px patches, so a 4x4
    grid at 64 px) and a 2-block text tower, 32-d embeddings, open_clip's own offline BPE tokenizer
    (``SimpleTokenizer``, 77 tokens) and its eval transform (shortest-edge bicubic resize to ``image_size``,
    centre crop, OpenAI mean / std) set as ``model.visual.preprocess_cfg`` as ``open_clip.create_model`` does."""
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    from open_clip.transform import PreprocessCfg, image_transform_v2

    from captum_diffusion.scoring.open_clip import OpenCLIPSimilarity

    vision = CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=16, image_size=image_size)
    text = CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=2, layers=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(embed_dim=32, vision_cfg=vision, text_cfg=text).eval()
    cfg = PreprocessCfg(size=image_size)
    open_clip.set_model_preprocess_cfg(model, dict(cfg.__dict__))
    return OpenCLIPSimilarity(model, preprocess=image_transform_v2(cfg, is_train=False),
                              tokenizer=open_clip.tokenizer.SimpleTokenizer(context_length=77))
