"""Train the ShapesWorld UNet and write the StableDiffusionPipeline + CLIP into the package.

diffusers ``UNet2DConditionModel`` on the 16x16x4 latent of the trained VAE (``train_shapes_world_vae.py``),
conditioned on the frozen CLIP text tower (``CLIPTextModel`` from ``train_shapes_world_clip.py``) last hidden
states of the prompt padded to 77 tokens, exactly as Stable Diffusion. Noise: DDPM, 1000 steps, SD's
scaled-linear betas rescaled to zero terminal SNR, v-prediction, plain MSE. Conditioning per example: 10% the
empty prompt "" (unconditional, so classifier-free guidance works), 15% a random sub-prompt of the prompt
(each word kept with p=1/2; the image stays a fair sample of it), else the full prompt; prompts are
TRAIN_PROMPTS only, the template (plain / position / two objects) drawn with ``--template-weights``. Latents
are scaled by ``vae.config.scaling_factor = 1 / std(latents)``. Learning rate: 100 warm-up steps, then cosine
over ``--steps`` down to 5%. An EMA of the weights is what gets shipped.

Inputs: ``$SHAPES_WORLD_RUNS/clip`` and ``$SHAPES_WORLD_RUNS/vae`` (default /tmp/shapes_world_runs) from the
CLIP and VAE scripts; to retrain only the UNet, copy the shipped ones there:
    mkdir -p /tmp/shapes_world_runs
    cp -r captum_diffusion/shapes_world/weights/clip /tmp/shapes_world_runs/clip
    cp -r captum_diffusion/shapes_world/weights/pipeline/vae /tmp/shapes_world_runs/vae
Every ``--save-minutes`` (and at the end) it writes, atomically: the training state to
``$SHAPES_WORLD_RUNS/unet_state.pt`` (resume with ``--resume``) and the full pipeline (``save_pretrained``:
unet, vae, text_encoder, tokenizer, DPMSolverMultistep scheduler, no safety checker) to ``--out``
(default ``captum_diffusion/shapes_world/weights``: ``pipeline/`` plus the CLIP in ``clip/``).

Command of the shipped weights (2026-11-23, NVIDIA H100 through the device tool, 16 CPU cores rendering):
    python scripts/train_shapes_world_unet.py --device cuda
3500 steps of batch 256 (896k rendered examples) in 460 s, with a second run sharing the GPU (7.6 steps/s).
``--heads 2`` ran beside it, and ``--heads 8`` (the earlier config) in an earlier pair of runs with seeds 0 and
1, which gave the same quality to within one image in 100 (see ``UNET_CONFIG`` for the comparison). On this 2-core CPU one step of batch 32 takes ~1 s, so the recipe would take hours; an
earlier CPU model (3.5k steps of batch 32 in 104 minutes) reached only 79% right colours on held-out prompts.
Quality: ``python benchmarks/shapes_world_quality.py``.
"""
from __future__ import annotations

import argparse
import copy
import math
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import (AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler, StableDiffusionPipeline,
                       UNet2DConditionModel)
from transformers import CLIPTextModel

from train_shapes_world_common import (RUNS, UNET_CONFIG, Log, add_diffusion_arguments, balanced_prompts,
                                       conditioning_prompt, random_train_prompts, render_batch, save_atomic, setup,
                                       tokenizer)

from captum_diffusion.shapes_world import WEIGHTS_DIR

# Zero terminal SNR + v-prediction (Lin et al. 2024, "Common diffusion noise schedules and sample steps are
# flawed"): with SD's schedule 6.8% of the signal survives at t=999, and on a 16x16 latent an object's colour
# is visible through that noise, so an epsilon model learns to read colour from the noise instead of the text
# (measured here: 21% right colours, chance, with SD's epsilon schedule).
NOISE = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
             prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing",
             clip_sample=False, steps_offset=1)


class TextCache:
    """Frozen CLIP text tower last hidden states (77, d) per prompt string, computed once per string."""

    def __init__(self, tok, encoder: CLIPTextModel):
        self.tok, self.encoder, self.cache = tok, encoder, {}
        self.device = encoder.device

    @torch.no_grad()
    def __call__(self, prompts) -> torch.Tensor:
        missing = sorted({p for p in prompts if p not in self.cache})
        if missing:
            ids = self.tok(missing, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
            for p, h in zip(missing, self.encoder(ids.input_ids.to(self.device))[0]):
                self.cache[p] = h
        return torch.stack([self.cache[p] for p in prompts])


@torch.no_grad()
def latent_std(vae: AutoencoderKL, rng, n: int = 256) -> float:
    x = render_batch(random_train_prompts(rng, n), rng)
    return float(vae.encode(x.to(vae.device)).latent_dist.sample().std())


def save_pipeline(ema, vae, text_encoder, tok, out, noise: DDPMScheduler) -> None:
    scheduler = DPMSolverMultistepScheduler.from_config(noise.config)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=ema,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    save_atomic(pipe.save_pretrained, out / "pipeline")
    save_atomic(lambda d: shutil.copytree(RUNS / "clip", d), out / "clip")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3500, help="optimiser steps (the learning-rate schedule's length)")
    ap.add_argument("--batch", type=int, default=256)
    add_diffusion_arguments(ap)
    ap.add_argument("--heads", type=int, default=UNET_CONFIG["attention_head_dim"],
                    help="attention heads per transformer block (diffusers calls it attention_head_dim)")
    ap.add_argument("--device", default="cpu", help="torch device for training, e.g. cuda")
    ap.add_argument("--threads", type=int, default=4, help="torch CPU threads")
    ap.add_argument("--save-minutes", type=float, default=5)
    ap.add_argument("--resume", action="store_true", help="continue from $SHAPES_WORLD_RUNS/unet_state.pt")
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="where pipeline/ and clip/ are written")
    args = ap.parse_args()
    rng = setup(args.seed, args.threads)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    tok = tokenizer()
    text_encoder = CLIPTextModel.from_pretrained(RUNS / "clip").eval().requires_grad_(False).to(device)
    vae = AutoencoderKL.from_pretrained(RUNS / "vae").eval().requires_grad_(False).to(device)
    vae.register_to_config(scaling_factor=1.0 / latent_std(vae, rng))
    unet = UNet2DConditionModel(**{**UNET_CONFIG, "attention_head_dim": args.heads}).to(device)
    ema = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    step = 0
    if args.resume:
        state = torch.load(RUNS / "unet_state.pt", map_location=device)
        unet.load_state_dict(state["unet"]), ema.load_state_dict(state["ema"]), opt.load_state_dict(state["opt"])
        step = state["step"]
    noise = DDPMScheduler(**NOISE)
    texts = TextCache(tok, text_encoder)
    sf = vae.config.scaling_factor
    log = Log()
    print(f"unet params {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M scaling_factor {sf:.4f}", flush=True)
    last_save = time.time()

    def checkpoint():
        state = dict(unet=unet.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(), step=step)
        tmp = RUNS / "unet_state.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(RUNS / "unet_state.pt")
        save_pipeline(ema, vae, text_encoder, tok, args.out, noise)
        log(step, saved=1)

    while step < args.steps:
        for group in opt.param_groups:
            cosine = 0.5 * (1 + math.cos(math.pi * step / args.steps))
            group["lr"] = args.lr * min(1.0, (step + 1) / 100) * (0.05 + 0.95 * cosine)
        prompts = balanced_prompts(rng, args.batch, args.template_weights)
        with torch.no_grad():
            latents = vae.encode(render_batch(prompts, rng).to(device)).latent_dist.sample() * sf
        cond = texts([conditioning_prompt(p, rng, args.p_empty, args.p_sub) for p in prompts])
        eps = torch.randn_like(latents)
        t = torch.randint(0, noise.config.num_train_timesteps, (len(prompts),), device=device)
        loss = F.mse_loss(unet(noise.add_noise(latents, eps, t), t, cond).sample, noise.get_velocity(latents, eps, t))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        step += 1
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), unet.parameters()):
                e.lerp_(p, 1 - decay)
        if step % 100 == 0:
            log(step, loss=loss.item(), lr=opt.param_groups[0]["lr"])
        if time.time() - last_save > 60 * args.save_minutes:
            checkpoint()
            last_save = time.time()
    checkpoint()
    log(step, done=1)


if __name__ == "__main__":
    main()
