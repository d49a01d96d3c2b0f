"""Train the ShapesWorld transformer: an SD3-style MMDiT written as a StableDiffusion3Pipeline into the package.

diffusers ``SD3Transformer2DModel`` (patch 2 on the 16x16x4 latent of the shipped VAE = 64 image tokens,
``TRANSFORMER_CONFIG``: 4 joint blocks, width 64, one head, RMS q/k norm as SD3.5), conditioned exactly as
``StableDiffusion3Pipeline`` conditions it: the shipped ShapesWorld CLIP text tower, loaded as
``CLIPTextModelWithProjection``, serves as both ``text_encoder`` and ``text_encoder_2`` (SD3's two CLIPs), so
the text sequence is its penultimate hidden states of the prompt padded to 77 tokens, twice, concatenated on
the feature axis (77, 128), followed by the 256 zero tokens the pipeline puts where T5 would be
(``text_encoder_3=None``); the pooled vector is its projected EOS embedding, twice (128). Rectified flow as
SD3: x_t = (1 - s) x_0 + s noise, target noise - x_0, s drawn logit-normal(0, 1), timestep 1000 s, plain MSE;
sampling with ``FlowMatchEulerDiscreteScheduler`` (shift 1: the latent is 16x16, SD3's shift 3 is for
128x128). Latents are ``(z - shift_factor) * scaling_factor`` with the mean and 1 / std of the VAE latents
written into the VAE config (SD3's convention). Conditioning per example as the UNet: 10% the empty prompt
(CFG), 15% a random sub-prompt, else the full prompt; TRAIN_PROMPTS only, templates weighted 1:2:2
(plain, position, pair). AdamW, 200 warm-up steps, then cosine to 5%; an EMA of the weights is shipped.

Speed: the 256 zero tokens stay identical to each other through every block (same input, same
token-wise layers, same queries), so during training they are carried as one token whose attention logit
gets + log 256 (``CollapsedZerosAttnProcessor``): the same function, checked against the full 333-token
forward at start-up, at 78 instead of 333 text tokens (3x faster per step on one core).

Inputs: the shipped ``weights/clip`` and ``weights/pipeline/vae``. Every ``--save-minutes`` (and at the end)
it writes, atomically, the training state to ``$SHAPES_WORLD_RUNS/transformer_state.pt`` (``--resume``
continues it) and the pipeline (``save_pretrained``) to ``--out`` (default
``captum_diffusion/shapes_world/weights/transformer``). The learning-rate schedule runs over whichever
ends first, ``--steps`` or ``--minutes`` of training time.

Command of the shipped weights (2026-11-30, 07:40-08:56 UTC, on this 2-core CPU shared with a GAN training,
benchmarks and tests of 4 engineers, one torch thread, 0.60 M parameters):
    nohup python scripts/train_shapes_world_transformer.py --threads 1 --minutes 75 > /tmp/transformer_train.log
8408 steps of batch 32 (269k rendered examples) in 75 min, 0.3-1.2 s per step with the load (loss 1.14 at step
100, ~0.67 at the end). A first start at width 128 (2.3 M parameters) ran at 2.4 s per step under that load and
was stopped after 6 minutes for width 64. Sampling settings (``TRANSFORMER_GENERATION``: 20 Euler steps,
guidance 5, shift 1) were compared on training prompts only: shift 3 drew the same figures to within 2%.
Quality: ``python benchmarks/shapes_world_quality.py --model transformer``.
"""
from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
from diffusers.models.attention_processor import JointAttnProcessor2_0
from transformers import CLIPModel, CLIPTextConfig, CLIPTextModelWithProjection

from train_shapes_world_common import (RUNS, Log, add_diffusion_arguments, balanced_prompts, conditioning_prompt,
                                       render_batch, save_atomic, setup, tokenizer)

from captum_diffusion.shapes_world import CLIP_DIR, PIPELINE_DIR, WEIGHTS_DIR

TRANSFORMER_CONFIG = dict(sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=4,
                          attention_head_dim=64, num_attention_heads=1, joint_attention_dim=128,
                          caption_projection_dim=64, pooled_projection_dim=128, pos_embed_max_size=16,
                          qk_norm="rms_norm")
CLIP_TOKENS = 77
T5_ZERO_TOKENS = 256  # StableDiffusion3Pipeline's default max_sequence_length, zeros without a T5
SCHEDULER = dict(num_train_timesteps=1000, shift=1.0)


def clip_text_encoder() -> CLIPTextModelWithProjection:
    """The shipped ShapesWorld CLIP's text tower and text projection as a ``CLIPTextModelWithProjection``."""
    clip = CLIPModel.from_pretrained(str(CLIP_DIR)).eval()
    config = CLIPTextConfig(**{**clip.config.text_config.to_dict(), "projection_dim": clip.config.projection_dim})
    encoder = CLIPTextModelWithProjection(config)
    encoder.text_model.load_state_dict(clip.text_model.state_dict())
    encoder.text_projection.load_state_dict(clip.text_projection.state_dict())
    return encoder.eval().requires_grad_(False)


class TextCache:
    """Per prompt string, once: SD3's CLIP part of the text sequence (77, 2d) and pooled vector (2d)."""

    def __init__(self, tok, encoder: CLIPTextModelWithProjection):
        self.tok, self.encoder, self.cache = tok, encoder, {}

    @torch.no_grad()
    def __call__(self, prompts) -> tuple[torch.Tensor, torch.Tensor]:
        missing = sorted({p for p in prompts if p not in self.cache})
        if missing:
            ids = self.tok(missing, padding="max_length", max_length=CLIP_TOKENS, truncation=True,
                           return_tensors="pt").input_ids
            out = self.encoder(ids, output_hidden_states=True)
            for p, h, pooled in zip(missing, out.hidden_states[-2], out.text_embeds):
                self.cache[p] = (torch.cat([h, h], -1), torch.cat([pooled, pooled], -1))
        return (torch.stack([self.cache[p][0] for p in prompts]), torch.stack([self.cache[p][1] for p in prompts]))


class CollapsedZerosAttnProcessor:
    """diffusers' joint attention where the last text token stands for ``copies`` identical tokens.

    Identical keys and values contribute ``copies`` times one key's exponential to the softmax, i.e. one key
    with its logit raised by ``log(copies)``; the rest is ``JointAttnProcessor2_0`` step for step.
    """

    def __init__(self, copies: int):
        self.log_copies = math.log(copies)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        n_image, batch = hidden_states.shape[1], hidden_states.shape[0]

        def heads(x, norm):
            x = x.view(batch, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)
            return norm(x) if norm is not None else x

        query = torch.cat([heads(attn.to_q(hidden_states), attn.norm_q),
                           heads(attn.add_q_proj(encoder_hidden_states), attn.norm_added_q)], 2)
        key = torch.cat([heads(attn.to_k(hidden_states), attn.norm_k),
                         heads(attn.add_k_proj(encoder_hidden_states), attn.norm_added_k)], 2)
        value = torch.cat([heads(attn.to_v(hidden_states), None),
                           heads(attn.add_v_proj(encoder_hidden_states), None)], 2)
        bias = torch.zeros(key.shape[2], dtype=query.dtype, device=query.device)
        bias[-1] = self.log_copies
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias.expand(query.shape[2], -1))
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * query.shape[-1])
        image, text = out[:, :n_image], out[:, n_image:]
        if not attn.context_pre_only:
            text = attn.to_add_out(text)
        return attn.to_out[1](attn.to_out[0](image)), text


@torch.no_grad()
def check_collapsed_equals_full(model: SD3Transformer2DModel, clip_part, pooled) -> float:
    """Max |difference| between the model on the full 77 + 256 token sequence and on the collapsed 77 + 1."""
    full = copy.deepcopy(model)
    full.set_attn_processor(JointAttnProcessor2_0())
    x = torch.randn(len(clip_part), 4, 16, 16)
    t = torch.rand(len(clip_part)) * 1000
    zeros = clip_part.new_zeros(len(clip_part), T5_ZERO_TOKENS, clip_part.shape[-1])
    a = full(x, torch.cat([clip_part, zeros], 1), pooled, t).sample
    b = model(x, torch.cat([clip_part, zeros[:, :1]], 1), pooled, t).sample
    return float((a - b).abs().max())


@torch.no_grad()
def latent_stats(vae: AutoencoderKL, rng, n: int = 512) -> tuple[float, float]:
    prompts = balanced_prompts(rng, n)
    z = vae.encode(render_batch(prompts, rng)).latent_dist.sample()
    return float(z.mean()), float(z.std())


def save_pipeline(ema, vae, text_encoder, tok, out: Path) -> None:
    ema = copy.deepcopy(ema)
    ema.set_attn_processor(JointAttnProcessor2_0())
    pipe = StableDiffusion3Pipeline(transformer=ema, scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER), vae=vae,
                                    text_encoder=text_encoder, tokenizer=tok, text_encoder_2=text_encoder,
                                    tokenizer_2=tok, text_encoder_3=None, tokenizer_3=None)
    save_atomic(pipe.save_pretrained, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100_000, help="optimiser steps at most")
    ap.add_argument("--minutes", type=float, default=75, help="training minutes at most (schedule ends there)")
    ap.add_argument("--batch", type=int, default=32)
    add_diffusion_arguments(ap)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--save-minutes", type=float, default=5)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--resume", action="store_true", help="continue from $SHAPES_WORLD_RUNS/transformer_state.pt")
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR / "transformer", help="the pipeline folder written")
    args = ap.parse_args()
    rng = setup(args.seed, args.threads)
    tok = tokenizer()
    text_encoder = clip_text_encoder()
    vae = AutoencoderKL.from_pretrained(str(PIPELINE_DIR / "vae")).eval().requires_grad_(False)
    shift, std = latent_stats(vae, rng)
    vae.register_to_config(shift_factor=shift, scaling_factor=1.0 / std)
    model = SD3Transformer2DModel(**TRANSFORMER_CONFIG)
    model.set_attn_processor(CollapsedZerosAttnProcessor(T5_ZERO_TOKENS))
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    texts = TextCache(tok, text_encoder)
    error = check_collapsed_equals_full(model, *texts(["a red circle", "", "a blue square and a green circle"]))
    assert error < 1e-4, f"collapsed zero tokens differ from the full sequence by {error}"
    step, trained_s = 0, 0.0
    state_path = RUNS / "transformer_state.pt"
    if args.resume:
        state = torch.load(state_path)
        model.load_state_dict(state["model"]), ema.load_state_dict(state["ema"]), opt.load_state_dict(state["opt"])
        step, trained_s = state["step"], state["trained_s"]
    zero_token = torch.zeros(args.batch, 1, TRANSFORMER_CONFIG["joint_attention_dim"])
    log = Log()
    print(f"transformer params {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M shift_factor {shift:.4f} "
          f"scaling_factor {1 / std:.4f} collapsed-vs-full max error {error:.2e}", flush=True)
    start, last_save = time.time() - trained_s, time.time()

    def checkpoint():
        state = dict(model=model.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(), step=step,
                     trained_s=time.time() - start)
        RUNS.mkdir(parents=True, exist_ok=True)
        torch.save(state, state_path.with_suffix(".tmp"))
        state_path.with_suffix(".tmp").replace(state_path)
        save_pipeline(ema, vae, text_encoder, tok, args.out)
        log(step, saved=1)

    def progress() -> float:
        return max(step / args.steps, (time.time() - start) / (60 * args.minutes))

    while progress() < 1:
        for group in opt.param_groups:
            cosine = 0.5 * (1 + math.cos(math.pi * progress()))
            group["lr"] = args.lr * min(1.0, (step + 1) / 200) * (0.05 + 0.95 * cosine)
        prompts = balanced_prompts(rng, args.batch, args.template_weights)
        with torch.no_grad():
            x0 = (vae.encode(render_batch(prompts, rng)).latent_dist.sample() - shift) / std
        clip_part, pooled = texts([conditioning_prompt(p, rng, args.p_empty, args.p_sub) for p in prompts])
        noise = torch.randn_like(x0)
        sigma = torch.sigmoid(torch.randn(args.batch))
        s = sigma.view(-1, 1, 1, 1)
        pred = model((1 - s) * x0 + s * noise, torch.cat([clip_part, zero_token], 1), pooled, sigma * 1000).sample
        loss = F.mse_loss(pred, noise - x0)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters()):
                e.lerp_(p, 1 - decay)
        if step % args.log_every == 0:
            log(step, loss=loss.item(), lr=f"{opt.param_groups[0]['lr']:.2e}")
        if time.time() - last_save > 60 * args.save_minutes:
            checkpoint()
            last_save = time.time()
    checkpoint()
    log(step, done=1)


if __name__ == "__main__":
    main()
