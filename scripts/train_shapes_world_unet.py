"""Train the ShapesWorld UNet and write the StableDiffusionPipeline + CLIP into the package.

diffusers ``UNet2DConditionModel`` on the 16x16x4 latent of the trained VAE (``train_shapes_world_vae.py``),
conditioned on the frozen CLIP text tower (``CLIPTextModel`` from ``train_shapes_world_clip.py``) last hidden
states of the prompt padded to 77 tokens, exactly as Stable Diffusion. Noise: DDPM, 1000 steps, SD's
scaled-linear betas, epsilon prediction, Min-SNR-5 loss weighting. Conditioning per example: 10% the
empty prompt "" (unconditional, so classifier-free guidance works), 15% a random sub-prompt of the prompt
(each word kept with p=1/2; the image stays a fair sample of it), else the full prompt; prompts are
TRAIN_PROMPTS only, the template (plain / position / two objects) picked uniformly. Latents are scaled by
``vae.config.scaling_factor = 1 / std(latents)``. An EMA of the weights (decay 0.998) is what gets shipped.

Every ``--save-minutes`` (and at the end) it writes, atomically: the training state to
``$SHAPES_WORLD_RUNS/unet_state.pt`` (resume with ``--resume``) and the full pipeline
(``save_pretrained``: unet, vae, text_encoder, tokenizer, DPMSolverMultistep scheduler, no safety checker)
to ``captum_diffusion/shapes_world/weights/pipeline`` plus the CLIP to ``.../weights/clip``.

Commands (run 2026-11-22 on the shared 2-core machine, load average 2-8 from other jobs):
    nohup python scripts/train_shapes_world_unet.py --minutes 85 --save-minutes 6 --threads 1 > /tmp/sw_unet.log 2>&1 &
    # then, from its state at step 2496, fine-tune to zero terminal SNR + v-prediction (the shipped model):
    nohup python scripts/train_shapes_world_unet.py --resume --zero-snr-v --min-snr 0 --fresh-schedule \
        --minutes 19 --lr 5e-4 --ema 0.995 --save-minutes 4 --threads 1 > /tmp/sw_unet2.log 2>&1 &
Actual run: phase 1 started 21:26 UTC with --threads 2 and was resumed (``--resume``, same --minutes 85)
three times from its saved state: at step 121 to add Min-SNR weighting, at step 295 to switch to --threads 1
(two threads under this load ran at 3-7 s/step, one thread at ~1 s/step for batch 32), at step 639 to
balance the templates; stopped at step 2496 (~69 training minutes) because colour ignored the text (guidance
1: 21% right colour on plain prompts = chance, shape 83%). Phase 2 (22:42-23:01 UTC, 19 minutes) is the second
command; after 240 of its steps colour was already 79% right at guidance 5; it ended at step 3503 (1007
steps, ~1.1 s/step), the shipped EMA weights. Quality: ``python benchmarks/shapes_world_quality.py``.
"""
from __future__ import annotations

import argparse
import copy
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler, StableDiffusionPipeline,
                       UNet2DConditionModel)
from transformers import CLIPTextModel

from train_shapes_world_common import (PACKAGE, RUNS, UNET_CONFIG, Log, random_subprompt, render_batch,
                                       save_atomic, setup, tokenizer, world)

WEIGHTS = PACKAGE / "weights"
NOISE = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
             prediction_type="epsilon", clip_sample=False, steps_offset=1)
# Zero terminal SNR + v-prediction (Lin et al. 2024, "Common diffusion noise schedules and sample steps are
# flawed"): with SD's schedule 6.8% of the signal survives at t=999, and on a 16x16 latent an object's colour
# is visible through that noise, so an epsilon model learns to read colour from the noise instead of the text.
ZERO_SNR_V = dict(NOISE, prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing")


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


def min_snr_weight(noise: DDPMScheduler, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights for epsilon prediction, min(SNR, gamma) / SNR (Hang et al. 2023): faster
    convergence by not spending the budget on the nearly-clean timesteps. gamma <= 0 gives weight 1."""
    if gamma <= 0:
        return torch.ones(len(t), device=t.device)
    alpha_bar = noise.alphas_cumprod.to(t.device)[t]
    snr = alpha_bar / (1 - alpha_bar)
    return snr.clamp(max=gamma) / snr


def balanced_prompts(rng, n: int, template_weights=(1.0, 1.0, 1.0)) -> list[str]:
    """``n`` TRAIN_PROMPTS, each drawn from a template picked with probability proportional to
    ``template_weights`` (plain, position, two objects), so the 108 two-object prompts do not take 70% of the
    batches by their number alone."""
    groups = [[p for p in world.TRAIN_PROMPTS if p in group]
              for group in (world.SINGLE_PROMPTS, world.POSITION_PROMPTS, world.PAIR_PROMPTS)]
    weights = np.asarray(template_weights, dtype=float)
    return [groups[g][rng.integers(len(groups[g]))] for g in rng.choice(len(groups), n, p=weights / weights.sum())]


def conditioning_prompt(prompt: str, rng, p_empty: float, p_sub: float) -> str:
    u = rng.random()
    return "" if u < p_empty else random_subprompt(prompt, rng) if u < p_empty + p_sub else prompt


@torch.no_grad()
def latent_std(vae: AutoencoderKL, rng, n: int = 256) -> float:
    x = render_batch([world.TRAIN_PROMPTS[i] for i in rng.integers(0, len(world.TRAIN_PROMPTS), n)], rng)
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
    ap.add_argument("--minutes", type=float, default=70)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--min-snr", type=float, default=5.0, help="Min-SNR-gamma loss weighting (0: plain MSE)")
    ap.add_argument("--p-empty", type=float, default=0.1)
    ap.add_argument("--p-sub", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save-minutes", type=float, default=5)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--zero-snr-v", action="store_true",
                    help="zero-terminal-SNR schedule with v-prediction (use --min-snr 0 with it)")
    ap.add_argument("--fresh-schedule", action="store_true",
                    help="with --resume: restart the learning-rate schedule over --minutes")
    ap.add_argument("--template-weights", type=float, nargs=3, default=(1.0, 1.0, 1.0),
                    metavar=("PLAIN", "POSITION", "PAIR"), help="relative frequency of the three prompt templates")
    ap.add_argument("--device", default="cpu", help="torch device for training, e.g. cuda")
    ap.add_argument("--out", type=Path, default=WEIGHTS, help="where pipeline/ and clip/ are written")
    args = ap.parse_args()
    rng = setup(args.seed, args.threads)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    tok = tokenizer()
    text_encoder = CLIPTextModel.from_pretrained(RUNS / "clip").eval().requires_grad_(False).to(device)
    vae = AutoencoderKL.from_pretrained(RUNS / "vae").eval().requires_grad_(False).to(device)
    vae.register_to_config(scaling_factor=1.0 / latent_std(vae, rng))
    unet = UNet2DConditionModel(**UNET_CONFIG).to(device)
    ema = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    step, elapsed = 0, 0.0
    if args.resume:
        state = torch.load(RUNS / "unet_state.pt", map_location=device)
        unet.load_state_dict(state["unet"]), ema.load_state_dict(state["ema"]), opt.load_state_dict(state["opt"])
        step, elapsed = state["step"], 0.0 if args.fresh_schedule else state["elapsed"]
    noise = DDPMScheduler(**(ZERO_SNR_V if args.zero_snr_v else NOISE))
    texts = TextCache(tok, text_encoder)
    sf = vae.config.scaling_factor
    log = Log()
    print(f"unet params {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M scaling_factor {sf:.4f}", flush=True)
    start, last_save, total = time.time() - elapsed, time.time(), 60 * args.minutes

    def checkpoint():
        state = dict(unet=unet.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(), step=step,
                     elapsed=time.time() - start)
        tmp = RUNS / "unet_state.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(RUNS / "unet_state.pt")
        save_pipeline(ema, vae, text_encoder, tok, args.out, noise)
        log(step, saved=1)

    while time.time() - start < total:
        frac = (time.time() - start) / total
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 100) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        prompts = balanced_prompts(rng, args.batch, args.template_weights)
        with torch.no_grad():
            latents = vae.encode(render_batch(prompts, rng).to(device)).latent_dist.sample() * sf
        cond = texts([conditioning_prompt(p, rng, args.p_empty, args.p_sub) for p in prompts])
        eps = torch.randn_like(latents)
        t = torch.randint(0, noise.config.num_train_timesteps, (len(prompts),), device=device)
        target = noise.get_velocity(latents, eps, t) if args.zero_snr_v else eps
        per_example = F.mse_loss(unet(noise.add_noise(latents, eps, t), t, cond).sample, target, reduction="none")
        loss = (per_example.mean((1, 2, 3)) * min_snr_weight(noise, t, args.min_snr)).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        step += 1
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), unet.parameters()):
                e.lerp_(p, 1 - decay)
        if step % 20 == 0:
            log(step, loss=loss.item(), lr=opt.param_groups[0]["lr"])
        if time.time() - last_save > 60 * args.save_minutes:
            checkpoint()
            last_save = time.time()
    checkpoint()
    log(step, done=1)


if __name__ == "__main__":
    main()
