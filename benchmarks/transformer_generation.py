"""Seconds per image of TextToImage on the tiny random-weight pipelines of each family (CPU), side by side.

    OMP_NUM_THREADS=1 python benchmarks/transformer_generation.py                 # 10 steps, batches 1 and 8
    OMP_NUM_THREADS=1 python benchmarks/transformer_generation.py --steps 2 --repeats 5

For each family (SD 1.x and SDXL UNets for reference, SD3, FLUX.1, PixArt-Σ; 32x32 images): the median over
``--repeats`` of the wall time of generating 8 distinct prompts (cache cleared each time) at ``batch_size`` 1 and
8, per image, with classifier-free guidance (FLUX: embedded guidance, one transformer row per image), and the
share of that time spent in the token-limit check (every text encoder's tokenizer on every prompt). Ratios are
against the tiny SD 1.x at the same batch size. Tiny models: this measures the per-family overhead of the
pipelines and of TextToImage, not the cost of real checkpoints.
"""
from __future__ import annotations

import argparse
import statistics
import time

PROMPTS = ["a red circle", "a blue square", "a green triangle", "a yellow circle on the left",
           "a red square and a blue circle", "a triangle", "a green square at the top", ""]


def build(family: str):
    from captum_diffusion.testing import tiny_stable_diffusion, tiny_transformer_pipeline

    return tiny_stable_diffusion(family) if family in ("sd1", "sdxl") else tiny_transformer_pipeline(family)


def seconds_per_image(pipe, family: str, steps: int, batch_size: int, repeats: int) -> tuple[float, float]:
    """(median seconds per image, median seconds of the token-limit check per image)."""
    from captum_diffusion.generation import TextToImage, families

    guidance = 3.5 if family == "flux" else 4.0
    generator = TextToImage(pipe, num_inference_steps=steps, guidance_scale=guidance, height=32, width=32,
                            batch_size=batch_size, progress=False)
    generator(PROMPTS[:1])  # warm-up
    totals, checks = [], []
    for _ in range(repeats):
        generator.clear_cache()
        start = time.perf_counter()
        generator(PROMPTS)
        totals.append((time.perf_counter() - start) / len(PROMPTS))
        start = time.perf_counter()
        families.check_token_limits(pipe, PROMPTS, generator.max_sequence_length)
        checks.append((time.perf_counter() - start) / len(PROMPTS))
    return statistics.median(totals), statistics.median(checks)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--families", nargs="+", default=["sd1", "sdxl", "sd3", "flux", "pixart"])
    args = parser.parse_args(argv)
    import torch

    print(f"TextToImage, tiny random-weight pipelines, 32x32, {args.steps} steps, CPU threads "
          f"{torch.get_num_threads()}, median of {args.repeats}")
    print(f"{'family':8} {'batch':>5} {'s/image':>9} {'vs sd1':>7} {'token check ms/image':>21}")
    reference = {}
    for family in args.families:
        pipe = build(family)
        for batch_size in (1, 8):
            per_image, check = seconds_per_image(pipe, family, args.steps, batch_size, args.repeats)
            reference.setdefault(batch_size, per_image if family == "sd1" else None)
            base = reference[batch_size]
            ratio = f"{per_image / base:6.2f}x" if base else "    n/a"
            print(f"{family:8} {batch_size:5d} {per_image:9.4f} {ratio:>7} {check * 1e3:21.3f}")


if __name__ == "__main__":
    main()
