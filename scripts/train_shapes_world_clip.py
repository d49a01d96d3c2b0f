"""Train the ShapesWorld CLIP (transformers CLIPModel, small config) contrastively on rendered prompts.

Each step renders a batch of TRAIN_PROMPTS (held-out prompts are never seen) and minimises the symmetric
contrastive loss with *multi-positive* targets: every pair whose prompts are equal counts as a match, so
duplicate prompts in a batch are not pushed apart. Saves ``CLIPModel`` + ``CLIPProcessor``
(``save_pretrained``) atomically to ``$SHAPES_WORLD_RUNS/clip`` (default /tmp/shapes_world_runs) every
``--save-every`` steps and at the end.

Command (run 2026-11-22 on the shared 2-core machine, under load from other jobs):
    nohup python scripts/train_shapes_world_clip.py --minutes 20 --threads 1 > /tmp/sw_clip.log 2>&1 &
Measured (run with --minutes 20, load average 5-8 from other jobs): 472 steps of batch 128 in 20 minutes;
top-1 among the 12 "a {colour} {shape}" prompts on 120 fresh renders: 0.60 at step 100, 0.97 at the end.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from train_shapes_world_common import (CLIP_PROJECTION, CLIP_TEXT, CLIP_VISION, IMAGE_MEAN, IMAGE_STD, RUNS,
                                       Log, random_train_prompts, render_batch, save_atomic, setup, tokenizer, world)


def build(tok):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    text = dict(CLIP_TEXT, vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)
    config = CLIPConfig(text_config=text, vision_config=CLIP_VISION, projection_dim=CLIP_PROJECTION)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64},
                                         image_mean=IMAGE_MEAN, image_std=IMAGE_STD, do_convert_rgb=True)
    return CLIPModel(config), CLIPProcessor(image_processor=image_processor, tokenizer=tok)


def multi_positive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, prompts, scale: torch.Tensor):
    """Symmetric cross-entropy of scaled cosine logits (n, n) against row-normalised equal-prompt targets."""
    same = torch.tensor([[a == b for b in prompts] for a in prompts], dtype=torch.float32)
    target = same / same.sum(1, keepdim=True)
    logits = scale * F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T
    return 0.5 * (-(target * logits.log_softmax(1)).sum(1).mean() - (target * logits.T.log_softmax(1)).sum(1).mean())


@torch.no_grad()
def top1(model, processor, seed: int = 123, per_prompt: int = 10) -> float:
    """Top-1 accuracy of picking the right "a {colour} {shape}" among the 12 for fresh renders."""
    rng = np.random.default_rng(seed)
    prompts = world.SINGLE_PROMPTS
    images = [world.render(p, rng).image for p in prompts for _ in range(per_prompt)]
    inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True)
    model.eval()
    logits = model(**inputs).logits_per_image
    model.train()
    return float((logits.argmax(1) == torch.arange(len(prompts)).repeat_interleave(per_prompt)).float().mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=25)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save-every", type=int, default=100)
    args = ap.parse_args()
    rng = setup(args.seed, args.threads)
    tok = tokenizer()
    model, processor = build(tok)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    log, deadline, step = Log(), time.time() + 60 * args.minutes, 0
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)

    def save(path):
        model.save_pretrained(path)
        processor.save_pretrained(path)

    while time.time() < deadline:
        prompts = random_train_prompts(rng, args.batch)
        pixels = ((render_batch(prompts, rng) + 1) / 2 - mean) / std
        text = tok(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 100)
        out = model(input_ids=text.input_ids, attention_mask=text.attention_mask, pixel_values=pixels)
        loss = multi_positive_loss(out.image_embeds, out.text_embeds, prompts, model.logit_scale.exp().clamp(max=100))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 20 == 0:
            log(step, loss=loss.item())
        if step % args.save_every == 0:
            log(step, top1=top1(model, processor))
            save_atomic(save, RUNS / "clip")
    save_atomic(save, RUNS / "clip")
    log(step, top1=top1(model, processor), done=1)


if __name__ == "__main__":
    main()
