"""Shared pieces of the ShapesWorld training scripts: model configs, batches, atomic checkpoints.

Not a training script itself. The three scripts (``train_shapes_world_clip.py``, ``..._vae.py``,
``..._unet.py``) import it; each is seeded and writes its checkpoint atomically (temp dir + rename) so a
crash never leaves a half-written model. Images are float tensors (n, 3, 64, 64) in [-1, 1].
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from captum_diffusion.shapes_world import TOKENIZER_DIR, world  # noqa: E402
from captum_diffusion.words import subprompt  # noqa: E402

RUNS = Path(os.environ.get("SHAPES_WORLD_RUNS", "/tmp/shapes_world_runs"))

CLIP_TEXT = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
                 max_position_embeddings=77)
CLIP_VISION = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
                   image_size=64, patch_size=8, num_channels=3)
CLIP_PROJECTION = 64
IMAGE_MEAN = [0.5, 0.5, 0.5]
IMAGE_STD = [0.5, 0.5, 0.5]

VAE_CONFIG = dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
                  down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                  block_out_channels=(16, 16, 32), layers_per_block=1, norm_num_groups=8)

# One attention head per block (diffusers names the head count attention_head_dim): measured on the same recipe,
# DAAM mIoU of shape words at tau 0.4 was 0.32 with 1 head, 0.26 with 2 and 0.20 with 8 (heads of 4-8 channels
# attend diffusely), and one head is also faster on the CPU (0.25 vs 0.35 s per image).
UNET_CONFIG = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                   block_out_channels=(32, 64, 64),
                   down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                   cross_attention_dim=CLIP_TEXT["hidden_size"], attention_head_dim=1, norm_num_groups=32)


def setup(seed: int, threads: int = 2) -> np.random.Generator:
    """Offline mode, ``threads`` torch threads, torch + numpy seeded with ``seed``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR), model_max_length=77)


def to_tensor(images) -> torch.Tensor:
    """PIL images -> float tensor (n, 3, 64, 64) in [-1, 1]."""
    arr = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def render_batch(prompts, rng: np.random.Generator) -> torch.Tensor:
    """Render each prompt once with seeds drawn from ``rng``; (n, 3, 64, 64) in [-1, 1]."""
    return to_tensor([world.render(p, rng).image for p in prompts])


def random_train_prompts(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` prompts drawn uniformly, with replacement, from TRAIN_PROMPTS."""
    return [world.TRAIN_PROMPTS[i] for i in rng.integers(0, len(world.TRAIN_PROMPTS), n)]


def random_subprompt(prompt: str, rng: np.random.Generator) -> str:
    """``prompt`` with each word kept with probability 1/2 (may give ""): the image of the full prompt is
    a fair sample for the sub-prompt, because the dropped attributes are uniform over the prompt set."""
    words = prompt.split()
    return subprompt(words, rng.random(len(words)) < 0.5)


# TRAIN_PROMPTS by template: plain, position, two objects
TEMPLATE_GROUPS = [[p for p in world.TRAIN_PROMPTS if p in group]
                   for group in (world.SINGLE_PROMPTS, world.POSITION_PROMPTS, world.PAIR_PROMPTS)]


def balanced_prompts(rng, n: int, template_weights=(1.0, 1.0, 1.0)) -> list[str]:
    """``n`` TRAIN_PROMPTS, each drawn from a template picked with probability proportional to
    ``template_weights`` (plain, position, two objects), so the 108 two-object prompts do not take 70% of the
    batches by their number alone."""
    weights = np.asarray(template_weights, dtype=float)
    return [TEMPLATE_GROUPS[g][rng.integers(len(TEMPLATE_GROUPS[g]))]
            for g in rng.choice(len(TEMPLATE_GROUPS), n, p=weights / weights.sum())]


def conditioning_prompt(prompt: str, rng, p_empty: float, p_sub: float) -> str:
    """What a training example is conditioned on: "" with probability ``p_empty`` (so classifier-free guidance
    works), a random sub-prompt with ``p_sub``, else the prompt."""
    u = rng.random()
    return "" if u < p_empty else random_subprompt(prompt, rng) if u < p_empty + p_sub else prompt


def add_diffusion_arguments(parser) -> None:
    """The options the diffusion trainers (UNet, transformer) share, with their common defaults: learning rate, EMA
    decay, template weights, empty / sub-prompt conditioning rates, seed."""
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--template-weights", type=float, nargs=3, default=(1.0, 2.0, 2.0),
                        metavar=("PLAIN", "POSITION", "PAIR"), help="relative frequency of the three prompt templates")
    parser.add_argument("--p-empty", type=float, default=0.1)
    parser.add_argument("--p-sub", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)


def save_atomic(save_fn, target: Path) -> None:
    """Call ``save_fn(tmp_dir)`` then swap ``tmp_dir`` into ``target`` (old copy removed after the swap)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    old = target.with_name(target.name + f".old{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save_fn(str(tmp))
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


class Log:
    """Prints ``step``, seconds since start and named values, flushed (for ``nohup ... > log``)."""

    def __init__(self):
        self.start = time.time()

    def __call__(self, step: int, **values) -> None:
        text = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        print(f"step={step} t={time.time() - self.start:.0f}s {text}", flush=True)
