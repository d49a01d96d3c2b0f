"""Small random-weight models built in-process: real transformers / diffusers classes, tiny configs.

They exercise shapes, layouts and edge cases (SD 1.x, 2.x, XL) in tests and benchmarks without any hub
access. Their outputs mean nothing; for explanations that must be *right* use the trained ShapesWorld
model (``captum_diffusion.shapes_world.load_shapes_world``).
"""
from __future__ import annotations

from functools import lru_cache

import torch

from captum_diffusion.shapes_world import TOKENIZER_DIR

LAYOUTS = ("sd1", "sd2", "sdxl")


@lru_cache(maxsize=None)
def _load_tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(TOKENIZER_DIR, model_max_length=77)


def tiny_tokenizer():
    """The project's CLIP BPE tokenizer (ShapesWorld words plus common English words; 77-token limit)."""
    import copy

    return copy.deepcopy(_load_tokenizer())


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
