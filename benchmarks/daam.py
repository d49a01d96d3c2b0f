"""DAAM benchmark: tracing overhead, trace memory at 10 vs 50 steps, and mIoU on ShapesWorld.

    OMP_NUM_THREADS=1 python benchmarks/daam.py                  # overhead + memory (+ mIoU if weights exist)
    OMP_NUM_THREADS=1 python benchmarks/daam.py --skip-miou      # overhead + memory only
    OMP_NUM_THREADS=1 python benchmarks/daam.py --only-miou      # ShapesWorld mIoU only (--limit N: first N prompts)
    OMP_NUM_THREADS=1 python benchmarks/daam.py --only-miou --resolutions 16 --steps 5 6 7 8 9   # a restricted DAAM
    OMP_NUM_THREADS=1 python benchmarks/daam.py --model tiny     # overhead/memory on the random tiny SD 1.x
    OMP_NUM_THREADS=1 python benchmarks/daam.py --family all     # overhead/memory on tiny UNet, SD3, FLUX, PixArt
    OMP_NUM_THREADS=1 python benchmarks/daam.py --family flux --repeats 5     # one family
    OMP_NUM_THREADS=1 python benchmarks/daam.py --model shapes-world-transformer --skip-miou   # the SD3-style one
    OMP_NUM_THREADS=1 python benchmarks/daam.py --model shapes-world-transformer --only-miou --text-softmax joint

1. Wall time of a traced generation over a plain one (same prompt, seed and settings), interleaved
   repeats, median of each: goal <= 1.3x.
2. Memory at 10 and at 50 denoising steps: the bytes the trace holds, what storing every layer/head/step
   map would take (castorini/daam's approach), and the peak of CPU allocations during the traced and the
   plain generation (torch.profiler with profile_memory): goal, the same at 10 and 50 steps.
3. mIoU of binarised shape-word (and colour-word) maps against the ShapesWorld analyser's object masks on
   generated images, tau in {0.3, 0.4, 0.5}, over every ShapesWorld prompt (204: 12 single, 48 positioned,
   144 two-object), objects the generation left out excluded (as the paper scores only present nouns);
   baselines: a random mask of the same area and the whole image. Pair binding, on two-object prompts with
   both objects generated: how often a shape word's map is stronger (mean over the object's pixels) on its own
   object than on the other one (chance 50%).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


#: generation settings of the tiny random pipelines per family (64x64 px; each family's default T5 length:
#: SD3 256, FLUX 512, PixArt 300; classifier-free guidance on where the family has it, FLUX's distilled guidance)
TINY_SETTINGS = {"unet": dict(guidance_scale=7.5), "sd3": dict(guidance_scale=5.0), "flux": dict(guidance_scale=3.5),
                 "pixart": dict(guidance_scale=4.5, use_resolution_binning=False, clean_caption=False)}


def load_tiny(family: str):
    """``(pipeline, generation kwargs, name)``: the tiny random pipeline of ``family`` at 64x64 px, 10 steps."""
    from captum_diffusion.testing import tiny_stable_diffusion, tiny_transformer_pipeline

    pipe = tiny_stable_diffusion("sd1") if family == "unet" else tiny_transformer_pipeline(family)
    return pipe, dict(num_inference_steps=10, height=64, width=64, **TINY_SETTINGS[family]), f"tiny random {family}"


def load_model(kind: str):
    """``(pipeline, generation kwargs, name)`` for ``kind`` in {"auto", "shapes-world", "shapes-world-transformer",
    "tiny"}."""
    if kind == "shapes-world-transformer":
        from captum_diffusion.shapes_world import TRANSFORMER_GENERATION, load_shapes_world

        pipe, _ = load_shapes_world(family="transformer")
        return pipe, TRANSFORMER_GENERATION.pipeline_kwargs(), "ShapesWorld transformer"
    if kind in ("auto", "shapes-world"):
        try:
            from captum_diffusion.shapes_world import DEFAULT_GENERATION, load_shapes_world

            pipe, _ = load_shapes_world()
            return pipe, DEFAULT_GENERATION.pipeline_kwargs(), "ShapesWorld"
        except (ImportError, OSError, FileNotFoundError) as error:
            if kind == "shapes-world":
                raise
            print(f"(ShapesWorld weights unavailable: {error}; using the tiny random SD 1.x)")
    return load_tiny("unet")


def overhead(pipe, kwargs, repeats: int) -> None:
    from captum_diffusion.attention import DAAM

    daam = DAAM(pipe)
    prompt = "a red circle and a blue square"
    n_words = len(prompt.split())

    def plain():
        pipe(prompt, generator=torch.Generator().manual_seed(0), **kwargs)

    def traced():
        daam.explain(prompt, generator=torch.Generator().manual_seed(0), **kwargs)

    plain(), traced()  # warm-up
    times = {"plain": [], "traced": []}
    for _ in range(repeats):
        for name, fn in (("plain", plain), ("traced", traced)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    p, t = statistics.median(times["plain"]), statistics.median(times["traced"])
    print(f"overhead: {kwargs['num_inference_steps']} steps, {kwargs['height']}x{kwargs['width']} px, "
          f"{n_words} words, {repeats} interleaved repeats")
    print(f"  plain generation   median {p * 1000:8.1f} ms")
    print(f"  traced (DAAM maps) median {t * 1000:8.1f} ms   ratio traced/plain = {t / p:.3f}x (goal <= 1.3x)")


def _peak_allocation(fn) -> int:
    """Peak of net CPU allocations (bytes) while ``fn`` runs, from torch.profiler's memory events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    return int(np.cumsum([e.self_cpu_memory_usage for e in events]).max())


def memory(pipe, kwargs) -> None:
    from captum_diffusion.attention import DAAM

    daam = DAAM(pipe)
    prompt = "a red circle and a blue square"
    height, width = kwargs["height"], kwargs["width"]
    print("memory: trace state and peak CPU allocation during one generation")
    transformer = getattr(pipe, "transformer", None)
    joint_heads = transformer.config.num_attention_heads if transformer is not None else 1
    for steps in (10, 50):
        call = {**kwargs, "num_inference_steps": steps}
        store_all = [0]
        with daam.tracing(1, height, width) as trace:
            add = trace.add

            def counting_add(probs, size, batch=None, *, add=add):
                # keeping every (step, layer, head) map of the whole batch; joint attention arrives head-summed
                rows, heads = probs.shape[0], probs.shape[1] if probs.shape[1] > 1 else joint_heads
                store_all[0] += probs[:, :1].numel() * heads * 4 * (batch or rows) // rows
                add(probs, size, batch)

            trace.add = counting_add
            pipe(prompt, generator=torch.Generator().manual_seed(0), **call)
        traced = _peak_allocation(lambda: daam.explain(prompt, generator=torch.Generator().manual_seed(0), **call))
        plain = _peak_allocation(lambda: pipe(prompt, generator=torch.Generator().manual_seed(0), **call))
        print(f"  {steps:2d} steps: trace holds {trace.nbytes / 1e6:7.3f} MB (store-every-map would hold "
              f"{store_all[0] / 1e6:8.2f} MB); peak allocation traced {traced / 1e6:7.2f} MB, plain "
              f"{plain / 1e6:7.2f} MB, difference {(traced - plain) / 1e6:+6.2f} MB")


def _object_mask(objects, colour: str, side):
    """The detected object of ``colour`` (on ``side`` when given), or ``None`` if the generation lacks it."""
    candidates = [o for o in objects if o.colour == colour]
    if side is not None:
        candidates = [o for o in candidates if o.horizontal == side] or candidates
    if not candidates:
        return None
    return max(candidates, key=lambda o: o.area).mask


def miou_shapes_world(pipe, kwargs, batch: int, limit: int, options: dict, text_softmax: str = "text") -> None:
    from captum_diffusion.attention import DAAM
    from captum_diffusion.metrics import iou, miou
    from captum_diffusion.shapes_world import ALL_PROMPTS, analyse, parse_prompt

    daam = DAAM(pipe, text_softmax=text_softmax)
    prompts = ALL_PROMPTS[:limit] if limit else ALL_PROMPTS
    taus = (0.3, 0.4, 0.5)
    pairs = {(kind, tau): ([], []) for kind in ("shape", "colour") for tau in taus}
    rng = np.random.default_rng(0)
    random_iou, whole_iou, binding, missing, total = [], [], [], 0, 0
    start = time.perf_counter()
    for first in range(0, len(prompts), batch):
        chunk = prompts[first:first + batch]
        words, specs = [], []
        for prompt in chunk:
            objects = parse_prompt(prompt)
            shape_count, colour_count, spec_words = {}, {}, []
            for obj in objects:
                spec_words.append((obj.shape, shape_count.get(obj.shape, 0)))
                spec_words.append((obj.colour, colour_count.get(obj.colour, 0)))
                shape_count[obj.shape] = shape_count.get(obj.shape, 0) + 1
                colour_count[obj.colour] = colour_count.get(obj.colour, 0) + 1
            words.append(spec_words)
            specs.append(objects)
        generators = [torch.Generator().manual_seed(1000 + first + i) for i in range(len(chunk))]
        result = daam.explain(chunk, words=words, generator=generators, **kwargs, **options)
        thresholded = {tau: result.threshold(tau) for tau in taus}
        for i, objects in enumerate(specs):
            detected = analyse(result.images[i])
            masks = {tau: thresholded[tau][i].numpy() for tau in taus}
            truths = [_object_mask(detected, obj.colour, obj.region if len(objects) == 2 else None)
                      for obj in objects]
            if len(objects) == 2 and all(t is not None for t in truths) and not (truths[0] & truths[1]).any():
                heat = result.heatmaps[i].numpy()
                binding += [heat[2 * j][truths[j]].mean() > heat[2 * j][truths[1 - j]].mean() for j in (0, 1)]
            for j, (obj, truth) in enumerate(zip(objects, truths)):
                total += 1
                if truth is None:
                    missing += 1
                    continue
                for kind, index in (("shape", 2 * j), ("colour", 2 * j + 1)):
                    for tau in taus:
                        pairs[(kind, tau)][0].append(masks[tau][index])
                        pairs[(kind, tau)][1].append(truth)
                shape_mask = masks[0.4][2 * j]
                random_iou.append(iou(rng.random(truth.shape) < shape_mask.mean(), truth))
                whole_iou.append(iou(np.ones_like(truth), truth))
    elapsed = time.perf_counter() - start
    print(f"mIoU on ShapesWorld ({options or 'all steps, layers and grids'}): {len(prompts)} prompts, {total} objects asked for, {missing} absent from the "
          f"generated image (left out), {elapsed:.0f} s")
    for kind in ("shape", "colour"):
        row = "  ".join(f"tau={tau}: {miou(*pairs[(kind, tau)]):.3f}" for tau in taus)
        print(f"  {kind:6s} words  {row}")
    print(f"  baselines (shape words): random mask of the same area {np.nanmean(random_iou):.3f}, "
          f"whole image {np.nanmean(whole_iou):.3f}")
    share = f"{np.mean(binding):.1%}" if binding else "-"
    print(f"  pair binding: a shape word's map is stronger on its own object than on the other in {share} of "
          f"{len(binding)} words (two-object prompts with both objects generated; chance 50%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("auto", "shapes-world", "shapes-world-transformer", "tiny"), default="auto")
    parser.add_argument("--family", choices=("unet", "sd3", "flux", "pixart", "all"),
                        help="overhead and memory on the tiny random pipeline of this family (or all four)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-miou", action="store_true", help="only the overhead and memory figures")
    parser.add_argument("--only-miou", action="store_true", help="only the ShapesWorld mIoU")
    parser.add_argument("--batch", type=int, default=12, help="prompts per DAAM call in the mIoU run")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N prompts (0 = all 204)")
    parser.add_argument("--resolutions", type=int, nargs="+", help="mIoU run: only these square attention grids")
    parser.add_argument("--steps", type=int, nargs="+", help="mIoU run: only these denoising steps")
    parser.add_argument("--text-softmax", choices=("text", "joint"), default="text",
                        help="mIoU run: joint attention's text columns renormalised over the text (default) "
                             "or as they are")
    args = parser.parse_args()
    options = {k: v for k, v in (("resolutions", args.resolutions), ("steps", args.steps)) if v}
    torch.set_num_threads(1)
    if args.family:
        for family in ("unet", "sd3", "flux", "pixart") if args.family == "all" else (args.family,):
            pipe, kwargs, name = load_tiny(family)
            pipe.set_progress_bar_config(disable=True)
            print(f"model: {name}; torch threads: {torch.get_num_threads()}")
            for steps in (10, 50):
                overhead(pipe, {**kwargs, "num_inference_steps": steps}, args.repeats)
            memory(pipe, kwargs)
        return
    pipe, kwargs, name = load_model(args.model)
    pipe.set_progress_bar_config(disable=True)
    print(f"model: {name}; torch threads: {torch.get_num_threads()}")
    if not args.only_miou:
        overhead(pipe, kwargs, args.repeats)
        memory(pipe, kwargs)
    if not args.skip_miou:
        if not name.startswith("ShapesWorld"):
            print("mIoU: skipped (needs the ShapesWorld weights)")
        else:
            miou_shapes_world(pipe, kwargs, args.batch, args.limit, options, args.text_softmax)


if __name__ == "__main__":
    main()
