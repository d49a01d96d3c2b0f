"""``diffusion-explain``: explain prompts from a terminal, keep the run, re-render and show it.

    diffusion-explain explain "a red circle on the left" --seeds 0 1 --out outputs/demo
    diffusion-explain explain --prompts prompts.txt --config run.toml --out outputs/audit
    diffusion-explain report outputs/demo        # re-render report.html from the saved run, no model needed
    diffusion-explain show outputs/demo          # a table: prompt, top words, values

Bad input (a missing model folder, an unknown method, a broken prompt file line, an unwritable --out) prints one
line and exits with code 2, before anything is written.
"""
from __future__ import annotations

import argparse
import sys

EXIT_USAGE = 2


def _explain_parser(sub) -> None:
    from captum_diffusion.runs.config import DEFAULT_EXACT_WORDS, WORD_METHODS

    p = sub.add_parser("explain", help="explain prompts and save the run (manifest, values, maps, images, report)",
                       description="Explain which words of each prompt shaped the image, where each word lives "
                                   "(DAAM), and optionally which segments answer to which word. Options may also "
                                   "come from --config run.toml (keys = option names); flags override the file.")
    p.add_argument("prompts", nargs="*", help="prompts to explain (or --prompts FILE)")
    p.add_argument("--prompts", dest="prompts_file", metavar="FILE",
                   help="one prompt per line, or JSON lines {\"prompt\": ..., \"seed\": 0 | [0, 1], \"words\": [...]}")
    p.add_argument("--model", help="'shapes-world' (default: the embedded UNet), 'shapes-world-transformer' (the "
                   "embedded SD3-style transformer), 'shapes-world-gan' (the embedded RATLIP-style GAN), a diffusers "
                   "id or a local folder")
    p.add_argument("--clip", help="scorer: a transformers CLIP id/folder or open_clip:NAME[:PRETRAINED] "
                                  "(default: the model's own scorer where it ships one)")
    p.add_argument("--device", help="torch device, e.g. cuda (default: cpu)")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"))
    p.add_argument("--seeds", nargs="+", type=int, help="seeds whose games are averaged (default: 0)")
    p.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    p.add_argument("--guidance", type=float, help="guidance scale (default: the model's)")
    p.add_argument("--max-sequence-length", type=int, help="T5 token limit of SD3 / FLUX / PixArt pipelines "
                                                           "(default: the pipeline's own: 256, 512, 300)")
    p.add_argument("--size", type=_size, help="image size in pixels: N or HxW (default: the model's)")
    p.add_argument("--words", nargs="+", metavar="METHOD",
                   help=f"word-attribution methods, several allowed: {', '.join(WORD_METHODS)} (default: shap-exact "
                        f"up to {DEFAULT_EXACT_WORDS} words, shap-permutation above); add 'interactions' for the "
                        "strongest word pairs in the report (exact k-SII, from exact SHAP's sub-prompts)")
    p.add_argument("--attention", choices=("daam", "none"), help="attention maps (default: daam where the "
                                                                 "pipeline is a UNet, SD3, FLUX or PixArt one)")
    p.add_argument("--segments", metavar="KIND", help="segment-by-word table: slic, daam-kmeans or sam:CHECKPOINT "
                                                      "(default: off)")
    p.add_argument("--lime-samples", type=int, help="lime's perturbation samples (default 200)")
    p.add_argument("--faithfulness", action="store_true", default=None,
                   help="show the deletion curve of the word ranking beside random orders in the report (from exact "
                        "SHAP's sub-prompts, no extra image)")
    p.add_argument("--max-evals", type=int, help="budget of the sampling methods (default: each library's)")
    p.add_argument("--batch-size", type=int, help="images per pipeline call (default 8)")
    p.add_argument("--out", help="the run folder (default: outputs/run)")
    p.add_argument("--config", metavar="TOML", help="a TOML file with any of these options")
    p.add_argument("--quiet", action="store_true", help="no progress bars, no library loading bars or warnings")
    p.add_argument("--resume", action="store_true", help="resume the run in --out (the default when it holds a run "
                                                         "with the same settings)")
    p.add_argument("--force", action="store_true", help="replace the results of a run with other settings in --out")


def _size(text: str):
    parts = text.lower().split("x")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or HxW in pixels, got {text!r}") from None
    if len(numbers) not in (1, 2):
        raise argparse.ArgumentTypeError(f"size must be N or HxW in pixels, got {text!r}")
    return numbers[0] if len(numbers) == 1 else tuple(numbers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffusion-explain", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _explain_parser(sub)
    report = sub.add_parser("report", help="re-render DIR/report.html from a saved run (no model needed)")
    report.add_argument("directory", metavar="DIR")
    show = sub.add_parser("show", help="print a table of a saved run: prompt, top words, values")
    show.add_argument("directory", metavar="DIR")
    show.add_argument("--top", type=int, default=3, help="words shown per prompt (default 3)")
    cache = sub.add_parser("cache", help="list, size or prune an image cache (DIR: a cache folder or a run folder)")
    actions = cache.add_subparsers(dest="action", required=True)
    actions.add_parser("ls", help="one line per image: when written, size, model, settings, prompt").add_argument(
        "directory", metavar="DIR")
    actions.add_parser("du", help="disk usage, by model").add_argument("directory", metavar="DIR")
    prune = actions.add_parser("prune", help="remove images by model, age or to fit a size (at least one option)")
    prune.add_argument("directory", metavar="DIR")
    prune.add_argument("--model", metavar="SUBSTRING", help="remove images whose model identity contains this")
    prune.add_argument("--older-than", metavar="AGE", help="remove images written longer ago than this, e.g. 7d, 12h")
    prune.add_argument("--max-size", metavar="SIZE", help="remove the oldest (selected) images until the cache "
                                                          "fits, e.g. 2GB, 500MB")
    return parser


def config_from_args(args: argparse.Namespace):
    """The ``RunConfig`` and output folder that ``args`` (and ``--config``) describe; ``ValueError`` on bad input."""
    from captum_diffusion.runs.config import (PromptSpec, RunConfig, read_config_file, read_prompt_file)

    options = read_config_file(args.config) if args.config else {}
    for name in ("model", "clip", "device", "dtype", "seeds", "steps", "guidance", "size", "max_sequence_length",
                 "words", "attention", "segments", "lime_samples", "max_evals", "batch_size", "faithfulness", "out",
                 "prompts_file"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    prompts = [PromptSpec(p) for p in args.prompts]
    prompts += list(options.pop("prompts", []))
    if options.get("prompts_file"):
        prompts += read_prompt_file(options["prompts_file"])
    options.pop("prompts_file", None)
    out = options.pop("out", "outputs/run")
    specs = [_spec(p) for p in prompts]
    return RunConfig(prompts=tuple(specs), **options), out


def _spec(item):
    from captum_diffusion.runs.config import PromptSpec

    if isinstance(item, PromptSpec):
        return item
    if isinstance(item, str):
        return PromptSpec(item)
    if isinstance(item, dict):
        unknown = set(item) - {"prompt", "seed", "seeds", "words"}
        if unknown or "prompt" not in item:
            raise ValueError(f"prompts entries must have 'prompt' and optionally seed/seeds/words, got {sorted(item)}")
        seeds = item.get("seeds", item.get("seed"))
        return PromptSpec(item["prompt"], seeds, None if item.get("words") is None else tuple(item["words"]))
    raise ValueError(f"prompts entries must be strings or tables, got {item!r}")


def quiet_libraries() -> None:
    """Silence diffusers' / transformers' loading bars and warnings, and accelerate's notices."""
    import logging
    import os
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    for name in ("diffusers", "transformers", "accelerate", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def show(directory, top: int = 3) -> str:
    """A plain-text table of a saved run: prompt, status, its ``top`` words by seed-averaged value (first method)."""
    from captum_diffusion.runs.store import load_run

    run = load_run(directory)
    done = {p.prompt: p for p in run.prompts}
    rows = [("prompt", "status", "method", "top words (value)")]
    for entry in run.manifest["prompts"]:
        result = done.get(entry["prompt"])
        if result is None or result.status != "done":
            rows.append((entry["prompt"], entry["status"], "", entry.get("error") or ""))
            continue
        for method in result.methods:
            mean = result.values[method].mean(0)
            order = sorted(range(len(mean)), key=lambda i: -mean[i])[:top]
            rows.append((result.prompt, "done", method, ", ".join(f"{result.labels[i]} ({mean[i]:+.3f})" for i in order)))
    widths = [max(len(row[k]) for row in rows) for k in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3] for row in rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "explain":
            if args.quiet:
                quiet_libraries()
            from captum_diffusion.runs.distributed import OtherRankFailed, leave_process_group, is_main_rank

            try:
                config, out = config_from_args(args)
            except (TypeError, ValueError, FileNotFoundError) as error:
                if not is_main_rank():  # every process of a launched job read the same input: rank 0 reports it
                    return EXIT_USAGE
                if isinstance(error, TypeError):  # a wrong type in --config: still the user's input
                    raise ValueError(str(error)) from None
                raise
            from captum_diffusion.runs.execute import explain_run

            try:  # one process, or each process of `accelerate launch ... -m captum_diffusion explain ...`
                run = explain_run(config, out, command=["diffusion-explain", *argv], force=args.force,
                                  progress=not args.quiet)
            except OtherRankFailed as stopped:  # another process failed and printed its error
                return stopped.exit_code
            finally:
                leave_process_group()
            failed = [p["prompt"] for p in run.manifest["prompts"] if p["status"] == "failed"]
            if not args.quiet and is_main_rank():
                print(f"saved {len(run.prompts)} prompt(s) to {run.directory} (report: {run.directory / 'report.html'})")
            for prompt in failed if is_main_rank() else ():
                print(f"diffusion-explain: prompt {prompt!r} failed; see {run.directory / 'manifest.json'}",
                      file=sys.stderr)
            return 1 if failed else 0
        if args.command == "report":
            from captum_diffusion.runs import load_run, write_report

            print(write_report(load_run(args.directory)))
            return 0
        if args.command == "cache":
            from captum_diffusion.generation.cache import cache_command

            print(cache_command(args.action, args.directory, model=getattr(args, "model", None),
                                older_than=getattr(args, "older_than", None), max_size=getattr(args, "max_size", None)))
            return 0
        print(show(args.directory, args.top))
        return 0
    except (ValueError, FileNotFoundError) as error:
        print(f"diffusion-explain: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
