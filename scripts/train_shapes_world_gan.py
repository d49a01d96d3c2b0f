"""Train the ShapesWorld GAN (RATLIP-style) and write its generator into the package (``weights/gan``).

Generator: ``captum_diffusion.generation.ratgan.RATGenerator`` (64x64, recurrent affine blocks driven by one
LSTM cell whose state starts from the noise, shuffle attention after every second block), conditioned on the
unit-normalised sentence embedding (``get_text_features``) of the shipped ShapesWorld CLIP, whose text tower
is frozen. Discriminator (GALIP's idea): the frozen CLIP image tower of the same CLIP, its patch tokens of all
three layers as an 8x8 feature map, next to a small trainable conv head on the pixels (3 stride-2 convs,
64 -> 8); the two maps and the sentence (broadcast over the grid) go through a 3x3 conv and an 8x8 conv to one
logit. Losses (DF-GAN / GALIP): hinge; D sees (real, its sentence) as real and (fake, sentence) and (real,
another example's sentence) as fake with weight 1/2 each, plus the matching-aware gradient penalty
``2 * mean(||grad_(image, sentence) D(real, sentence)||^6)``; G gets ``-D(fake, sentence)`` minus
``--clip-weight`` x the cosine of the CLIP image embedding of the fake and the sentence (GALIP's term).
Adam (beta 0, 0.9), lr 2e-4 for G and 4e-4 for D. Data: TRAIN_PROMPTS only (the held-out split is never
seen), the template (plain / position / two objects) drawn with ``--template-weights``; 15% of examples are
conditioned on a random sub-prompt of their prompt (each word kept with p=1/2, "" possible; the rendering of the
full prompt is a fair sample of it, as in the UNet recipe) so that the sub-prompts explainers ask for are on the
training distribution. An EMA of the generator (decay ``--ema``) is what gets shipped.

Every ``--save-minutes`` (and at the end) it writes, atomically: the EMA generator (``save_pretrained``:
``config.json`` + ``model.safetensors``) to ``--out`` (default ``captum_diffusion/shapes_world/weights/gan``),
the training state to ``$SHAPES_WORLD_RUNS/gan_state.pt`` (``--resume``), a sample grid to
``$SHAPES_WORLD_RUNS/gan_samples.png`` and a line of held-out quality (analyser, 24 single-object prompts).
It stops after ``--steps`` steps or ``--minutes`` of wall time, whichever comes first.

Command of the shipped weights (2026-11-30, this 2-core CPU shared with four other jobs, 1 torch thread, no GPU):
    nohup python scripts/train_shapes_world_gan.py > /tmp/gan_train.log 2>&1 &
(the defaults: batch 32, stopped by the 75-minute limit after 3718 steps, 119k rendered examples; 1.2-2.5 s per
step depending on the load). Quality: ``python benchmarks/shapes_world_quality.py --model gan``: on held-out
prompts right colour 100%, shape 72.5%, position 50% (chance: positions were not learned in this budget), both
colours of a pair 33.3%; CLIP score 67.6 (the UNet: 88.1). Objects appeared after ~300 steps, right colours
after ~1400; the generator is 310k parameters (1.2 MB).
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel

from train_shapes_world_common import (RUNS, Log, balanced_prompts, random_subprompt, render_batch, save_atomic, setup,
                                       world)

from captum_diffusion.generation.ratgan import RATGenerator
from captum_diffusion.shapes_world import CLIP_DIR, WEIGHTS_DIR

GENERATOR_CONFIG = dict(cond_dim=64, z_dim=32, channels=(128, 64, 32, 16, 8), lstm_hidden=64, shuffle_groups=4)


class Discriminator(nn.Module):
    """``D(image (B, 3, 64, 64) in [-1, 1], sentence (B, 64)) -> logits (B,)`` on frozen CLIP patch features plus
    a trainable pixel head; ``clip_features`` also returns the CLIP image embedding (for G's CLIP term)."""

    def __init__(self, clip: CLIPModel, cond_dim: int = 64):
        super().__init__()
        self.clip = clip  # frozen, not in parameters() of the optimiser
        width = clip.config.vision_config.hidden_size * clip.config.vision_config.num_hidden_layers
        self.pixels = nn.Sequential(
            nn.Conv2d(3, 16, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(16, 32, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(32, 64, 4, 2, 1), nn.LeakyReLU(0.2))
        self.joint = nn.Sequential(nn.Conv2d(width + 64 + cond_dim, 128, 3, padding=1), nn.LeakyReLU(0.2),
                                   nn.Conv2d(128, 1, 8))

    def trainable(self):
        return [p for n, p in self.named_parameters() if not n.startswith("clip.")]

    def clip_features(self, images: torch.Tensor):
        """(patch-token map (B, 3*64, 8, 8), CLIP image embedding (B, 64)). The CLIP processor's mean/std are 0.5,
        so images in [-1, 1] are already its pixel_values."""
        out = self.clip.vision_model(pixel_values=images, output_hidden_states=True)
        tokens = torch.cat([h[:, 1:] for h in out.hidden_states[1:]], dim=-1)  # drop the class token
        b, n, c = tokens.shape
        grid = tokens.transpose(1, 2).reshape(b, c, int(n ** 0.5), int(n ** 0.5))
        return grid, self.clip.visual_projection(out.pooler_output)

    def forward(self, images: torch.Tensor, sentence: torch.Tensor, grid=None) -> torch.Tensor:
        if grid is None:
            grid, _ = self.clip_features(images)
        s = sentence[:, :, None, None].expand(-1, -1, *grid.shape[2:])
        return self.joint(torch.cat([grid, self.pixels(images), s], dim=1)).flatten()


class SentenceBank:
    """Unit-normalised CLIP sentence embeddings of prompts, computed once each (the text tower is frozen)."""

    def __init__(self, clip: CLIPModel):
        from transformers import CLIPProcessor

        self.clip, self.tok, self.cache = clip, CLIPProcessor.from_pretrained(str(CLIP_DIR)).tokenizer, {}

    @torch.no_grad()
    def __call__(self, prompts) -> torch.Tensor:
        new = sorted({p for p in prompts if p not in self.cache})
        if new:
            t = self.tok(new, padding=True, return_tensors="pt")
            out = self.clip.get_text_features(input_ids=t["input_ids"], attention_mask=t["attention_mask"])
            emb = F.normalize(out.pooler_output, dim=-1)  # transformers 5: the projected embedding
            self.cache.update(zip(new, emb))
        return torch.stack([self.cache[p] for p in prompts])


def matching_aware_penalty(disc: Discriminator, images: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
    """DF-GAN's MA-GP: ``2 * mean(||d D(real, s) / d(real, s)||_2 ^ 6)``."""
    images = images.detach().requires_grad_(True)
    sentence = sentence.detach().requires_grad_(True)
    out = disc(images, sentence)
    gi, gs = torch.autograd.grad(out.sum(), (images, sentence), create_graph=True)
    norm = torch.cat([gi.flatten(1), gs.flatten(1)], dim=1).norm(dim=1)
    return 2.0 * (norm ** 6).mean()


@torch.no_grad()
def held_out_check(gen: RATGenerator, bank: SentenceBank, n_seeds: int = 2) -> dict:
    """Analyser figures on the 12 held-out position prompts x ``n_seeds`` (a quick look, not the benchmark)."""
    prompts = [p for p in world.HELD_OUT_PROMPTS if p in world.POSITION_PROMPTS] * n_seeds
    z = torch.randn(len(prompts), gen.z_dim, generator=torch.Generator().manual_seed(123))
    images = ((gen(z, bank(prompts)) + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    hits = []
    for p, im in zip(prompts, images):
        spec, found = world.parse_prompt(p)[0], world.analyse(im)
        main = max(found, key=lambda o: o.area) if found else None
        hits.append((main is not None and main.colour == spec.colour, main is not None and main.shape == spec.shape,
                     main is not None and main.in_region(spec.region)))
    colour, shape, position = np.mean(hits, axis=0)
    return dict(colour=float(colour), shape=float(shape), position=float(position))


@torch.no_grad()
def save_samples(gen: RATGenerator, bank: SentenceBank, path: Path) -> None:
    from PIL import Image

    prompts = ["a red circle", "a green square on the left", "a blue triangle on the top", "a yellow circle",
               "a red square and a blue circle", "a green triangle and a yellow square", "a blue square on the bottom",
               "a yellow triangle on the right"]
    z = torch.randn(len(prompts) * 4, gen.z_dim, generator=torch.Generator().manual_seed(7))
    x = gen(z, bank(prompts * 4))
    grid = ((x + 1) * 127.5).clamp(0, 255).byte().view(4, len(prompts), 3, 64, 64).permute(0, 3, 1, 4, 2)
    Image.fromarray(grid.reshape(4 * 64, len(prompts) * 64, 3).numpy()).save(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--minutes", type=float, default=75.0, help="wall-time limit")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr-g", type=float, default=2e-4)
    ap.add_argument("--lr-d", type=float, default=4e-4)
    ap.add_argument("--clip-weight", type=float, default=4.0)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--subprompt-prob", type=float, default=0.15)
    ap.add_argument("--template-weights", type=float, nargs=3, default=(0.2, 0.4, 0.4))
    ap.add_argument("--gp-every", type=int, default=2, help="matching-aware penalty every k steps, weight k")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-minutes", type=float, default=4.0)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR / "gan")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    rng = setup(args.seed, args.threads)

    clip = CLIPModel.from_pretrained(str(CLIP_DIR), attn_implementation="eager").eval().requires_grad_(False)
    bank = SentenceBank(clip)
    gen = RATGenerator(**GENERATOR_CONFIG)
    disc = Discriminator(clip, GENERATOR_CONFIG["cond_dim"])
    ema = copy.deepcopy(gen).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(gen.parameters(), lr=args.lr_g, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(disc.trainable(), lr=args.lr_d, betas=(0.0, 0.9))
    state_path, step = RUNS / "gan_state.pt", 0
    if args.resume and state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        gen.load_state_dict(state["gen"])
        ema.load_state_dict(state["ema"])
        disc.load_state_dict(state["disc"], strict=False)
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        step, rng = state["step"], state["rng"]
    RUNS.mkdir(parents=True, exist_ok=True)
    print(f"generator {sum(p.numel() for p in gen.parameters())} parameters, discriminator head "
          f"{sum(p.numel() for p in disc.trainable())}; {vars(args)}", flush=True)

    def save():
        save_atomic(ema.save_pretrained, args.out)
        tmp = state_path.with_suffix(".tmp")
        torch.save(dict(gen=gen.state_dict(), ema=ema.state_dict(),
                        disc={k: v for k, v in disc.state_dict().items() if not k.startswith("clip.")},
                        opt_g=opt_g.state_dict(), opt_d=opt_d.state_dict(), step=step, rng=rng), tmp)
        tmp.replace(state_path)
        save_samples(ema, bank, RUNS / "gan_samples.png")
        save_samples(gen, bank, RUNS / "gan_samples_raw.png")
        log(step, saved=str(args.out), **held_out_check(ema, bank))

    log, start, last_save = Log(), time.time(), time.time()
    b, penalty = args.batch_size, torch.zeros(())  # penalty: the last one computed, for the log
    while step < args.steps and time.time() - start < args.minutes * 60:
        prompts = balanced_prompts(rng, b, args.template_weights)
        real = render_batch(prompts, rng)
        cond = [random_subprompt(p, rng) if rng.random() < args.subprompt_prob else p for p in prompts]
        sentence = bank(cond)
        mismatched = sentence.roll(1, dims=0)

        # generator first; the discriminator then trains on the same (detached) fakes, saving a forward pass
        fake = gen(torch.randn(b, gen.z_dim), sentence)
        grid, embeds = disc.clip_features(fake)
        adv = -disc(fake, sentence, grid).mean()
        cosine = F.cosine_similarity(embeds, sentence, dim=-1).mean()
        opt_g.zero_grad(set_to_none=True)
        (adv - args.clip_weight * cosine).backward()
        opt_g.step()
        with torch.no_grad():  # EMA decay warmed up as min(ema, (1 + step) / (10 + step)): early saves are usable
            decay = min(args.ema, (1 + step) / (10 + step))
            for pe, pg in zip(ema.parameters(), gen.parameters()):
                pe.lerp_(pg, 1 - decay)

        real_grid, _ = disc.clip_features(real)
        d_real = disc(real, sentence, real_grid)
        d_fake = disc(fake.detach(), sentence, grid.detach())
        d_mis = disc(real, mismatched, real_grid)
        loss_d = (F.relu(1 - d_real).mean() + 0.5 * F.relu(1 + d_fake).mean() + 0.5 * F.relu(1 + d_mis).mean())
        opt_d.zero_grad(set_to_none=True)
        if step % args.gp_every == 0:  # lazy regularisation (StyleGAN2): every k steps, weighted k
            penalty = matching_aware_penalty(disc, real, sentence)
            (loss_d + args.gp_every * penalty).backward()
        else:
            loss_d.backward()
        opt_d.step()
        step += 1

        if step % args.log_every == 0:
            log(step, loss_d=loss_d.item(), gp_last=penalty.item(), d_real=d_real.mean().item(),
                d_fake=d_fake.mean().item(), d_mis=d_mis.mean().item(), g_adv=adv.item(), clip_cos=cosine.item())
        if time.time() - last_save > args.save_minutes * 60:
            save()
            last_save = time.time()
    save()
    print(f"done: {step} steps in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
